//! The file layer: a TOML file with one table per section.

use std::fs;
use std::path::Path;

use super::effective::Effective;
use super::keys;
use super::value::{Raw, a_type};
use super::{ConfigError, Source};

/// Reads the TOML file at `path` into `effective`.
///
/// # Errors
///
/// [`ConfigError`] if the file cannot be read or parsed, or holds an unknown section or
/// key, or a value its key refuses.
pub(crate) fn apply(effective: &mut Effective, path: &Path) -> Result<(), ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    apply_table(effective, &table, path)?;
    effective.set_file(path.to_owned());
    Ok(())
}

/// Applies a parsed file (`path` is only for messages and sources).
pub(crate) fn apply_table(
    effective: &mut Effective,
    table: &toml::Table,
    path: &Path,
) -> Result<(), ConfigError> {
    let origin = Source::File(path.to_owned());
    for (section, value) in table {
        for (name, value) in section_table(section, value, path)? {
            let Some((index, _)) = keys::find_in(section, name) else {
                return Err(ConfigError::UnknownKey {
                    key: format!("{section}.{name}"),
                    path: path.to_owned(),
                });
            };
            effective.set(index, Raw::Toml(value), &origin)?;
        }
    }
    Ok(())
}

/// The table of the top-level entry `name`, which must be a known section.
fn section_table<'a>(
    name: &str,
    value: &'a toml::Value,
    path: &Path,
) -> Result<&'a toml::Table, ConfigError> {
    let known = keys::sections().contains(&name);
    match value {
        toml::Value::Table(table) if known => Ok(table),
        toml::Value::Table(_) => Err(ConfigError::UnknownSection {
            section: name.to_owned(),
            path: path.to_owned(),
        }),
        other if known => Err(ConfigError::NotASection {
            section: name.to_owned(),
            found: a_type(other),
            path: path.to_owned(),
        }),
        // A key outside any section (`ring_capacity = 5` above `[room]`).
        _ => Err(ConfigError::UnknownKey {
            key: name.to_owned(),
            path: path.to_owned(),
        }),
    }
}
