//! The loaded configuration together with where each value came from.

use std::path::{Path, PathBuf};

use super::keys::{self, KEYS};
use super::value::{self, Raw};
use super::{Config, ConfigError, ConfigWarning, Source};

/// A loaded [`Config`] and, for every key, the [`Source`] its value came from. Made by
/// [`Loader::load`](super::Loader::load); printed by [`to_toml`](Self::to_toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    config: Config,
    /// One per key, in the order of the key table.
    sources: Vec<Source>,
    file: Option<PathBuf>,
    warnings: Vec<ConfigWarning>,
}

impl Effective {
    /// The defaults, every key from [`Source::Default`].
    pub(crate) fn defaults() -> Self {
        Self {
            config: Config::default(),
            sources: vec![Source::Default; KEYS.len()],
            file: None,
            warnings: Vec::new(),
        }
    }

    /// Sets the key at `index` of the key table from `raw`, which came from `origin`.
    pub(crate) fn set(
        &mut self,
        index: usize,
        raw: Raw<'_>,
        origin: &Source,
    ) -> Result<(), ConfigError> {
        value::apply(&KEYS[index], &mut self.config, raw, origin)?;
        self.sources[index] = origin.clone();
        Ok(())
    }

    /// The source of the key at `index` of the key table.
    pub(crate) fn source_at(&self, index: usize) -> &Source {
        &self.sources[index]
    }

    /// Records what loading ignored.
    pub(crate) fn set_warnings(&mut self, warnings: Vec<ConfigWarning>) {
        self.warnings = warnings;
    }

    /// Records the configuration file that was read.
    pub(crate) fn set_file(&mut self, path: PathBuf) {
        self.file = Some(path);
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, without the sources.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// Where the value of `key` (`room.ring_capacity`) came from; `None` for a key that
    /// does not exist.
    pub fn source(&self, key: &str) -> Option<&Source> {
        keys::find(key).map(|(index, _)| &self.sources[index])
    }

    /// Every key (`section.key`) with the source of its value, in the printed order.
    pub fn sources(&self) -> impl Iterator<Item = (String, &Source)> {
        KEYS.iter().map(|key| key.path()).zip(&self.sources)
    }

    /// What loading ignored but its user should hear of (unknown `DELTASYNC_*`
    /// variables), in the order of the variables' names.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The configuration file that was read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}
