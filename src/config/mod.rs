//! The server's configuration: one typed [`Config`] with defaults, built from a TOML
//! file, the environment and the command line.
//!
//! # Layers
//!
//! Each key takes its value from the highest layer that sets it:
//!
//! | layer | example | precedence |
//! |---|---|---|
//! | command line ([`Overrides`]) | `--ring-capacity 4096`, `--set room.ring_capacity=4096` | highest |
//! | environment | `DELTASYNC_ROOM_RING_CAPACITY=4096` | |
//! | file (TOML, `--config FILE` or `DELTASYNC_CONFIG`) | `[room]` `ring_capacity = 4096` | |
//! | default | `1024` | lowest |
//!
//! Keys are written `section.key`; the file has one table per section (`[server]`,
//! `[limits]`, `[timeouts]`, `[room]`, `[presence]`) and the environment variable of a
//! key is `DELTASYNC_<SECTION>_<KEY>` in capitals. [`Loader`] puts the layers together
//! and gives an [`Effective`] configuration: the [`Config`] and, per key, its [`Source`].
//! `docs/configuration.md` describes every key.
//!
//! # Strictness
//!
//! A typo must not pass silently: an unknown section or key in the file, an unknown key
//! on the command line, a value of the wrong type or out of bounds are all a
//! [`ConfigError`] that names the key, the value and where it came from. The environment
//! is shared with other tools, so an unknown `DELTASYNC_*` variable (other than
//! [`CONFIG_FILE_VAR`] and [`LOG_VAR`]) is not an error but a [`ConfigWarning`] naming the
//! nearest known variable ([`Effective::warnings`]); the binary prints it on stderr:
//!
//! ```
//! use deltasync::config::Loader;
//!
//! let env = [("DELTASYNC_ROOM_RING_CAPACITY".to_owned(), "0".to_owned())];
//! let err = Loader::new().env(env).load().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "room.ring_capacity = 0 (from DELTASYNC_ROOM_RING_CAPACITY): must be between 1 and 16777216"
//! );
//!
//! let env = [("DELTASYNC_ROOM_RING_CAPACTY".to_owned(), "4096".to_owned())];
//! let effective = Loader::new().env(env).load()?;
//! assert_eq!(
//!     effective.warnings()[0].to_string(),
//!     "ignoring unknown environment variable DELTASYNC_ROOM_RING_CAPACTY (the nearest known \
//!      one is DELTASYNC_ROOM_RING_CAPACITY)"
//! );
//! # Ok::<(), deltasync::config::ConfigError>(())
//! ```
//!
//! # One table of keys
//!
//! Every key is a row of one table (its section, name, bounds, typed accessors and a
//! one-line description). The file, the environment, the command line, the printout of
//! [`Effective::to_toml`] and the reference table of the docs are all driven by it, and the
//! defaults are read from the `Default` impls of the section structs, so none of them can
//! drift from another.
//!
//! # Secrets
//!
//! `server.token` is never shown: it prints as `"<redacted>"`, and the `Debug` output of
//! [`ServerConfig`], [`Overrides`] and [`Loader`] hides it too.
//!
//! The library never reads the process environment: the caller passes it to
//! [`Loader::env`], so loading is deterministic in tests.

mod effective;
mod env;
mod error;
mod file;
mod keys;
mod load;
mod overrides;
mod render;
mod sections;
mod source;
mod value;

pub use effective::Effective;
pub use env::{CONFIG_FILE_VAR, ENV_PREFIX, LOG_VAR};
pub use error::{ConfigError, ConfigWarning};
pub use load::Loader;
pub use overrides::Overrides;
pub use sections::{
    Config, DEFAULT_FLUSH_INTERVAL_US, LimitsConfig, PublicEndpoints, ServerConfig, ShutdownClose,
    TimeoutsConfig,
};
pub use source::Source;

#[cfg(test)]
mod tests;
