//! The environment layer: `DELTASYNC_<SECTION>_<KEY>` variables.

use std::path::PathBuf;

use super::effective::Effective;
use super::keys;
use super::value::Raw;
use super::{ConfigError, Source};

/// The prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "DELTASYNC_";
/// The variable naming the configuration file (like `--config`, which wins over it).
pub const CONFIG_FILE_VAR: &str = "DELTASYNC_CONFIG";
/// Reserved for the server's log filter; not a configuration key, and not an error.
pub const LOG_VAR: &str = "DELTASYNC_LOG";

/// The `DELTASYNC_*` variables of an environment, checked against the key table.
pub(crate) struct EnvLayer {
    config_file: Option<String>,
    /// `(key index, variable, value)`, sorted by variable.
    values: Vec<(usize, String, String)>,
}

impl EnvLayer {
    /// Sorts out `vars` (only `DELTASYNC_*` ones are looked at).
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownEnv`] for a `DELTASYNC_*` variable that names no key (the
    /// first by name, so the message does not depend on the environment's order).
    pub(crate) fn read(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let mut layer = Self {
            config_file: None,
            values: Vec::new(),
        };
        for (var, value) in vars {
            if var == CONFIG_FILE_VAR {
                layer.config_file = Some(value);
            } else if var != LOG_VAR {
                let Some((index, _)) = keys::find_env(&var) else {
                    return Err(ConfigError::UnknownEnv { var });
                };
                layer.values.push((index, var, value));
            }
        }
        Ok(layer)
    }

    /// The path in `DELTASYNC_CONFIG`, if set.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyPath`] if it is set but empty.
    pub(crate) fn config_file(&self) -> Result<Option<PathBuf>, ConfigError> {
        match self.config_file.as_deref() {
            Some("") => Err(ConfigError::EmptyPath {
                origin: Source::Env(CONFIG_FILE_VAR.into()),
            }),
            path => Ok(path.map(PathBuf::from)),
        }
    }

    /// Applies the variables to `effective`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for the first value its key refuses.
    pub(crate) fn apply(&self, effective: &mut Effective) -> Result<(), ConfigError> {
        for (index, var, value) in &self.values {
            effective.set(*index, Raw::Text(value), &Source::Env(var.clone()))?;
        }
        Ok(())
    }
}
