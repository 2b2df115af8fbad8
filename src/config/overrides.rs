//! Values given on the command line.

use std::fmt;

use super::effective::Effective;
use super::keys::{self, Kind};
use super::value::Raw;
use super::{ConfigError, Source};

/// Values given on the command line, as text, each with the flag that gave it: the
/// highest-precedence layer of a [`Loader`](super::Loader).
///
/// The command line fills it from its dedicated flags (`--ring-capacity 4096` is
/// `room.ring_capacity`) and from the generic `--set section.key=value`. Keys and values
/// are checked when the configuration is loaded, with the same rules and messages as the
/// file and the environment.
///
/// ```
/// use deltasync::config::{Loader, Overrides, Source};
///
/// let mut overrides = Overrides::new();
/// overrides.push("room.ring_capacity", "4096", "--ring-capacity");
/// overrides.push_set("room.dedup_window=0")?;
/// let effective = Loader::new().overrides(overrides).load()?;
/// assert_eq!(effective.config().room.ring_capacity.get(), 4096);
/// assert_eq!(effective.config().room.dedup_window, 0);
/// assert_eq!(effective.source("room.dedup_window"), Some(&Source::Flag("--set".into())));
/// # Ok::<(), deltasync::config::ConfigError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    entries: Vec<Override>,
}

#[derive(Clone, PartialEq, Eq)]
struct Override {
    key: String,
    value: String,
    flag: String,
}

impl Overrides {
    /// No override.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (`room.ring_capacity`) to `value`, as given by `flag` (`--ring-capacity`),
    /// which is what error messages and the printout name as the source.
    pub fn push(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        flag: impl Into<String>,
    ) -> &mut Self {
        self.entries.push(Override {
            key: key.into(),
            value: value.into(),
            flag: flag.into(),
        });
        self
    }

    /// Adds the argument of a `--set section.key=value` flag. The value is everything
    /// after the first `=` and may be empty.
    ///
    /// # Errors
    ///
    /// [`ConfigError::SetSyntax`] if `arg` has no `=` or nothing before it. An unknown key
    /// is reported when the configuration is loaded.
    pub fn push_set(&mut self, arg: &str) -> Result<&mut Self, ConfigError> {
        match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(self.push(key, value, "--set")),
            _ => Err(ConfigError::SetSyntax { arg: arg.into() }),
        }
    }

    /// `true` when nothing was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies the overrides to `effective`, in the order given.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownOverride`] for a key that does not exist,
    /// [`ConfigError::Repeated`] for a key given twice, [`ConfigError::Invalid`] for a
    /// value its key refuses.
    pub(crate) fn apply(&self, effective: &mut Effective) -> Result<(), ConfigError> {
        let mut given: Vec<(usize, &str)> = Vec::new();
        for (key, value, flag) in self.iter() {
            let origin = Source::Flag(flag.to_owned());
            let Some((index, found)) = keys::find(key) else {
                let key = key.to_owned();
                return Err(ConfigError::UnknownOverride { key, origin });
            };
            if let Some((_, first)) = given.iter().find(|(i, _)| *i == index) {
                return Err(ConfigError::Repeated {
                    key: found.path(),
                    first: (*first).to_owned(),
                    second: flag.to_owned(),
                });
            }
            given.push((index, flag));
            effective.set(index, Raw::Text(value), &origin)?;
        }
        Ok(())
    }

    /// Each override as `(key, value, flag)`, in the order given.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.entries
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str(), o.flag.as_str()))
    }
}

/// Shows each override as `key = value (flag)`, with the value of a secret (`--token`)
/// redacted.
impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.iter().map(|(key, value, flag)| {
            let secret =
                keys::find(key).is_some_and(|(_, k)| matches!(k.kind, Kind::Secret { .. }));
            let value = if secret { "<redacted>" } else { value };
            format!("{key} = {value} ({flag})")
        });
        f.debug_list().entries(shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_takes_everything_after_the_first_equals_sign() {
        let mut overrides = Overrides::new();
        overrides.push_set("server.token=a=b").unwrap();
        overrides.push_set("room.dedup_window=").unwrap();
        assert_eq!(
            overrides.iter().collect::<Vec<_>>(),
            [
                ("server.token", "a=b", "--set"),
                ("room.dedup_window", "", "--set")
            ]
        );
    }

    #[test]
    fn set_without_a_key_or_an_equals_sign_is_refused() {
        let mut overrides = Overrides::new();
        let messages = ["room.ring_capacity", "=5", ""]
            .map(|arg| overrides.push_set(arg).map(|_| ()).unwrap_err().to_string());
        assert_eq!(
            messages,
            [
                r#"--set "room.ring_capacity" is not of the form section.key=value"#,
                r#"--set "=5" is not of the form section.key=value"#,
                r#"--set "" is not of the form section.key=value"#,
            ]
        );
        assert!(overrides.is_empty());
    }

    #[test]
    fn debug_redacts_the_token() {
        let mut overrides = Overrides::new();
        overrides.push("server.token", "s3cret", "--token");
        overrides.push("server.shards", "4", "--shards");
        assert_eq!(
            format!("{overrides:?}"),
            r#"["server.token = <redacted> (--token)", "server.shards = 4 (--shards)"]"#
        );
    }
}
