//! The environment layer: `DELTASYNC_<SECTION>_<KEY>` variables.
//!
//! The environment is shared with other tools, so a `DELTASYNC_*` variable that names no
//! key is ignored with a [`ConfigWarning`] naming the nearest known variable (by edit
//! distance), never refused.

use std::path::PathBuf;

use super::effective::Effective;
use super::keys;
use super::value::Raw;
use super::{ConfigError, ConfigWarning, Source};

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
    /// The variables that name no key, sorted by variable.
    warnings: Vec<ConfigWarning>,
}

impl EnvLayer {
    /// Sorts out `vars` (only `DELTASYNC_*` ones are looked at): a variable that names no
    /// key becomes a warning (in the order of the names, so that the output does not
    /// depend on the environment's order).
    pub(crate) fn read(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let mut layer = Self {
            config_file: None,
            values: Vec::new(),
            warnings: Vec::new(),
        };
        for (var, value) in vars {
            if var == CONFIG_FILE_VAR {
                layer.config_file = Some(value);
            } else if var != LOG_VAR {
                match keys::find_env(&var) {
                    Some((index, _)) => layer.values.push((index, var, value)),
                    None => {
                        let nearest = nearest_known(&var);
                        layer
                            .warnings
                            .push(ConfigWarning::UnknownEnv { var, nearest });
                    }
                }
            }
        }
        layer
    }

    /// The variables that were ignored.
    pub(crate) fn into_warnings(self) -> Vec<ConfigWarning> {
        self.warnings
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

/// The known variable nearest to `var` by edit distance: a key's variable,
/// [`CONFIG_FILE_VAR`] or [`LOG_VAR`]; the first in that order on a tie.
fn nearest_known(var: &str) -> String {
    let keys = keys::KEYS.iter().map(keys::Key::env_var);
    let reserved = [CONFIG_FILE_VAR, LOG_VAR].map(str::to_owned);
    let mut best: Option<(usize, String)> = None;
    for known in keys.chain(reserved) {
        let distance = edit_distance(var, &known);
        if best.as_ref().is_none_or(|(least, _)| distance < *least) {
            best = Some((distance, known));
        }
    }
    best.map(|(_, known)| known).unwrap_or_default()
}

/// The Levenshtein distance between `a` and `b`, in characters: the fewest insertions,
/// deletions and substitutions that turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // `row[j]`: the distance between the prefix of `a` read so far and `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        let cases = [
            ("", "", 0),
            ("abc", "", 3),
            ("", "abc", 3),
            ("kitten", "sitting", 3),
            ("CAPACTY", "CAPACITY", 1),
            ("flaw", "lawn", 2),
            ("é", "e", 1),
        ];
        for (a, b, distance) in cases {
            assert_eq!(edit_distance(a, b), distance, "{a:?} {b:?}");
            assert_eq!(edit_distance(b, a), distance, "{b:?} {a:?}");
        }
    }

    #[test]
    fn an_unknown_variable_names_the_nearest_known_one() {
        let cases = [
            (
                "DELTASYNC_ROOM_RING_CAPACTY",
                "DELTASYNC_ROOM_RING_CAPACITY",
            ),
            (
                "DELTASYNC_LIMITS_MAX_CONECTIONS",
                "DELTASYNC_LIMITS_MAX_CONNECTIONS",
            ),
            ("DELTASYNC_CONFG", "DELTASYNC_CONFIG"),
            ("DELTASYNC_BIN", "DELTASYNC_LOG"),
            ("DELTASYNC_SERVER_TOKN", "DELTASYNC_SERVER_TOKEN"),
        ];
        for (var, nearest) in cases {
            assert_eq!(nearest_known(var), nearest, "{var}");
        }
    }

    #[test]
    fn unknown_variables_are_warnings_in_the_order_of_their_names() {
        let vars = [
            ("DELTASYNC_BIN", "x"),
            ("PATH", "/bin"),
            ("DELTASYNC_ROOM_RING_CAPACITY", "8"),
            ("DELTASYNC_A", "1"),
            ("DELTASYNC_LOG", "debug"),
        ];
        let layer = EnvLayer::read(vars.map(|(var, value)| (var.to_owned(), value.to_owned())));
        let unknown = |var: &str| ConfigWarning::UnknownEnv {
            var: var.to_owned(),
            nearest: "DELTASYNC_LOG".to_owned(),
        };
        assert_eq!(layer.values.len(), 1);
        assert_eq!(
            layer.into_warnings(),
            [unknown("DELTASYNC_A"), unknown("DELTASYNC_BIN")]
        );
    }
}
