//! Putting the layers together: defaults, then the file, then the environment, then the
//! command line.

use std::fmt;
use std::path::PathBuf;

use super::effective::Effective;
use super::env::{ENV_PREFIX, EnvLayer};
use super::{ConfigError, Overrides, Source, file};

/// Loads a [`Config`](super::Config) from its layers. Each key takes its value from the
/// highest layer that sets it: flag > environment > file > default.
///
/// The loader never reads the process environment or the command line itself: the caller
/// hands them in, so that loading is deterministic and testable.
///
/// ```
/// use deltasync::config::{Loader, Overrides, Source};
///
/// let env = [("DELTASYNC_ROOM_RING_CAPACITY".to_owned(), "4096".to_owned())];
/// let mut flags = Overrides::new();
/// flags.push("limits.max_rooms", "50", "--max-rooms");
/// let effective = Loader::new().env(env).overrides(flags).load()?;
/// let config = effective.config();
/// assert_eq!(config.room.ring_capacity.get(), 4096);
/// assert_eq!(config.limits.max_rooms, 50);
/// assert_eq!(
///     effective.source("room.ring_capacity"),
///     Some(&Source::Env("DELTASYNC_ROOM_RING_CAPACITY".into()))
/// );
/// assert_eq!(effective.source("server.listen"), Some(&Source::Default));
/// # Ok::<(), deltasync::config::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct Loader {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    overrides: Overrides,
}

impl Loader {
    /// A loader with no file, no environment and no override: it loads the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the configuration file at `path` (the `--config` flag). It wins over a path
    /// in the environment's `DELTASYNC_CONFIG`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Takes the environment: `DELTASYNC_<SECTION>_<KEY>` variables and
    /// `DELTASYNC_CONFIG`; variables without the `DELTASYNC_` prefix are ignored.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let ours = vars
            .into_iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX));
        self.env.extend(ours);
        self
    }

    /// Takes the command line's values, the highest layer.
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Loads the configuration. Every layer is checked in full, even where a higher one
    /// overrides a value: a bad value is an error wherever it is.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, in this order: the file, the environment's values,
    /// the overrides. An unknown `DELTASYNC_*` variable is no error: it is ignored and
    /// listed in [`Effective::warnings`].
    pub fn load(self) -> Result<Effective, ConfigError> {
        let env = EnvLayer::read(self.env);
        let path = match self.file {
            Some(path) if path.as_os_str().is_empty() => {
                let origin = Source::Flag("--config".into());
                return Err(ConfigError::EmptyPath { origin });
            }
            Some(path) => Some(path),
            None => env.config_file()?,
        };
        let mut effective = Effective::defaults();
        if let Some(path) = path {
            file::apply(&mut effective, &path)?;
        }
        env.apply(&mut effective)?;
        self.overrides.apply(&mut effective)?;
        effective.set_warnings(env.into_warnings());
        Ok(effective)
    }
}

/// Shows the file, the names of the environment variables (never their values: one may be
/// the token) and the overrides (with the token redacted).
impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vars: Vec<&str> = self.env.iter().map(|(var, _)| var.as_str()).collect();
        f.debug_struct("Loader")
            .field("file", &self.file)
            .field("env", &vars)
            .field("overrides", &self.overrides)
            .finish()
    }
}
