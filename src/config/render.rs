//! Printing the effective configuration as TOML, with each key's meaning and source.

use std::fmt::Write as _;

use super::Config;
use super::effective::Effective;
use super::keys::{KEYS, Key, Kind, sections};

/// How a secret is printed.
const REDACTED: &str = "\"<redacted>\"";

impl Effective {
    /// The effective configuration as a TOML file: every key, after a comment saying what
    /// it means, with its source as a trailing comment (`ring_capacity = 1024  # default`). The output parses back to
    /// the same configuration, except that a token is printed as `"<redacted>"`, and an
    /// unset token as a comment.
    ///
    /// ```
    /// use deltasync::config::Loader;
    ///
    /// let env = [("DELTASYNC_SERVER_TOKEN".to_owned(), "s3cret".to_owned())];
    /// let printed = Loader::new().env(env).load()?.to_toml();
    /// assert!(printed.contains("\nring_capacity = 1024  # default\n"));
    /// assert!(printed.contains("\ntoken = \"<redacted>\"  # from DELTASYNC_SERVER_TOKEN\n"));
    /// assert!(!printed.contains("s3cret"));
    /// # Ok::<(), deltasync::config::ConfigError>(())
    /// ```
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# deltasync configuration: each key's value and its source\n");
        let file = self.file().map(|path| path.display().to_string());
        let file = file.as_deref().unwrap_or("none");
        let _ = writeln!(out, "# configuration file: {}", comment_safe(file));
        for section in sections() {
            let _ = write!(out, "\n[{section}]\n");
            for (index, key) in KEYS.iter().enumerate() {
                if key.section != section {
                    continue;
                }
                let source = comment_safe(&self.source_at(index).to_string());
                let _ = writeln!(out, "# {}", key.described());
                let line = match shown(key, self.config()) {
                    Some(value) => format!("{} = {value}  # {source}\n", key.name),
                    None => format!("# {} is not set ({source})\n", key.name),
                };
                out.push_str(&line);
            }
        }
        out
    }
}

/// The value of `key` in `config` as TOML, the token redacted; `None` when unset.
fn shown(key: &Key, config: &Config) -> Option<String> {
    match key.kind {
        Kind::Count { get, .. } => Some(get(config).to_string()),
        // A socket address holds no quote or backslash: it needs no escaping.
        Kind::Address { get, .. } => Some(format!("\"{}\"", get(config))),
        Kind::Secret { get, .. } => get(config).map(|_| REDACTED.to_owned()),
        Kind::Text { get, .. } => Some(toml::Value::String(get(config)).to_string()),
    }
}

/// `text` with control characters (a newline in a path) escaped, so that it stays inside
/// one comment line.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
