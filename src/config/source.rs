//! Where a key's value came from.

use std::fmt;
use std::path::PathBuf;

/// Where the value of one key came from. The later a source in this list, the higher its
/// precedence: a flag beats the environment, which beats the file, which beats the default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Nobody set it: the built-in default.
    Default,
    /// The configuration file at this path.
    File(PathBuf),
    /// This environment variable (`DELTASYNC_ROOM_RING_CAPACITY`).
    Env(String),
    /// This command-line flag (`--ring-capacity`, or `--set` for the generic form).
    Flag(String),
}

/// `default`, or `from <path, variable or flag>`: the words used in error messages and in
/// the comments of the printed configuration.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "from {}", path.display()),
            Self::Env(var) => write!(f, "from {var}"),
            Self::Flag(flag) => write!(f, "from {flag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_as_words() {
        let shown = [
            Source::Default,
            Source::File("/etc/ds.toml".into()),
            Source::Env("DELTASYNC_SERVER_TOKEN".into()),
            Source::Flag("--ring-capacity".into()),
        ]
        .map(|source| source.to_string());
        assert_eq!(
            shown,
            [
                "default",
                "from /etc/ds.toml",
                "from DELTASYNC_SERVER_TOKEN",
                "from --ring-capacity"
            ]
        );
    }
}
