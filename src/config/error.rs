//! Why a configuration could not be loaded.

use std::io;
use std::path::PathBuf;

use super::Source;

/// Why a configuration could not be loaded. Every variant names what was wrong and where
/// it came from: the key and its value, the file, the variable or the flag.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A known key has a value it does not accept (wrong type or out of bounds).
    #[error("{key} = {value} ({origin}): {reason}")]
    Invalid {
        /// The key, as `section.key`.
        key: String,
        /// The value as it was written (a secret shows as `<redacted>`).
        value: String,
        /// Where the value came from.
        origin: Source,
        /// What the key accepts.
        reason: String,
    },
    /// The configuration file has a key no section knows (`[limits] max_conections`).
    #[error("unknown key {key} in {}", path.display())]
    UnknownKey {
        /// The key, as `section.key` (or a bare name outside any section).
        key: String,
        /// The configuration file.
        path: PathBuf,
    },
    /// The configuration file has a section that does not exist (`[metrics]`).
    #[error("unknown section [{section}] in {}", path.display())]
    UnknownSection {
        /// The section's name.
        section: String,
        /// The configuration file.
        path: PathBuf,
    },
    /// The configuration file gives a section's name a plain value (`room = 5`).
    #[error("{section} in {} must be a section ([{section}]), not {found}", path.display())]
    NotASection {
        /// The section's name.
        section: String,
        /// What was found instead (`an integer`).
        found: String,
        /// The configuration file.
        path: PathBuf,
    },
    /// A command-line override names no key.
    #[error("unknown key {key} ({origin})")]
    UnknownOverride {
        /// The key as given.
        key: String,
        /// The flag it came with.
        origin: Source,
    },
    /// A `--set` argument is not of the form `section.key=value`.
    #[error("--set {arg:?} is not of the form section.key=value")]
    SetSyntax {
        /// The argument as given.
        arg: String,
    },
    /// The same key is given twice on the command line.
    #[error("{key} is given twice on the command line ({first} and {second})")]
    Repeated {
        /// The key, as `section.key`.
        key: String,
        /// The first flag that set it.
        first: String,
        /// The second flag that set it.
        second: String,
    },
    /// The path of the configuration file is empty (`DELTASYNC_CONFIG=`).
    #[error("the configuration file path is empty ({origin})")]
    EmptyPath {
        /// Where the empty path came from.
        origin: Source,
    },
    /// The configuration file is missing or unreadable.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("configuration file {} is not valid TOML: {source}", path.display())]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// What the parser said (with the line and column).
        source: toml::de::Error,
    },
}

/// Something in the configuration's sources that was ignored, and that its user should
/// hear of. Loading goes on; [`Effective::warnings`](super::Effective::warnings) lists
/// them and the `deltasync` binary prints each as `warning: ...` on stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A `DELTASYNC_*` environment variable names no key. The environment is shared with
    /// other tools (a script may set `DELTASYNC_BIN` for itself), so this is no error; the
    /// nearest known variable is named in case it is a typo.
    #[error("ignoring unknown environment variable {var} (the nearest known one is {nearest})")]
    UnknownEnv {
        /// The variable's name.
        var: String,
        /// The known variable (a key's, [`CONFIG_FILE_VAR`](super::CONFIG_FILE_VAR) or
        /// [`LOG_VAR`](super::LOG_VAR)) at the least edit distance from it.
        nearest: String,
    },
}
