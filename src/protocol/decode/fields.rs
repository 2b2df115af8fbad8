//! Reading the fields of one JSON object, with errors that say where.
//!
//! A [`Fields`] takes keys out of an object one by one; whatever is left at the end is an
//! unknown key. Every error names the field by its path (`payload.rev`) and, for unknown
//! keys, the object and the message type (`unknown key "foo" in payload of UPDATE`).

use serde_json::{Map, Value};

use super::DecodeError;

/// The longest peer string quoted back in an error message, in characters.
const MAX_SHOWN_CHARS: usize = 64;

/// A peer's string as shown in an error: quoted, and cut short when long.
pub(super) fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// The fields of one object, taken out as they are read.
pub(super) struct Fields {
    map: Map<String, Value>,
    /// Where the object is: `""` for the root, `"payload"`, `"payload.operations[2]"`.
    path: String,
    /// The message type, for unknown-key errors.
    kind: &'static str,
}

impl Fields {
    pub(super) fn new(
        map: Map<String, Value>,
        path: impl Into<String>,
        kind: &'static str,
    ) -> Self {
        Self {
            map,
            path: path.into(),
            kind,
        }
    }

    /// The path of `key` inside this object (`payload.rev`).
    pub(super) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, problem: &str) -> DecodeError {
        DecodeError::new(format!("{} {problem}", self.path_of(key)))
    }

    /// Sets the message type once it is known (the root is read before it).
    pub(super) fn set_kind(&mut self, kind: &'static str) {
        self.kind = kind;
    }

    /// Takes `key` out, if present.
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    /// Takes `key` out, or says it is missing.
    pub(super) fn required(&mut self, key: &str) -> Result<Value, DecodeError> {
        self.take(key).ok_or_else(|| self.error(key, "is missing"))
    }

    /// An optional non-negative integer.
    pub(super) fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, DecodeError> {
        self.take(key)
            .map(|value| {
                value
                    .as_u64()
                    .ok_or_else(|| self.error(key, "must be a non-negative integer"))
            })
            .transpose()
    }

    /// A required non-negative integer.
    pub(super) fn u64(&mut self, key: &str) -> Result<u64, DecodeError> {
        self.opt_u64(key)?
            .ok_or_else(|| self.error(key, "is missing"))
    }

    /// An optional string.
    pub(super) fn opt_string(&mut self, key: &str) -> Result<Option<String>, DecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    /// A required string.
    pub(super) fn string(&mut self, key: &str) -> Result<String, DecodeError> {
        self.opt_string(key)?
            .ok_or_else(|| self.error(key, "is missing"))
    }

    /// An optional string of at most `limit` bytes, and not empty when `non_empty`.
    pub(super) fn opt_bounded(
        &mut self,
        key: &str,
        limit: usize,
        non_empty: bool,
    ) -> Result<Option<String>, DecodeError> {
        let Some(value) = self.opt_string(key)? else {
            return Ok(None);
        };
        if non_empty && value.is_empty() {
            return Err(self.error(key, "must not be empty"));
        }
        if value.len() > limit {
            let problem = format!("is {} bytes long; the limit is {limit}", value.len());
            return Err(self.error(key, &problem));
        }
        Ok(Some(value))
    }

    /// A required string of at most `limit` bytes, and not empty when `non_empty`.
    pub(super) fn bounded(
        &mut self,
        key: &str,
        limit: usize,
        non_empty: bool,
    ) -> Result<String, DecodeError> {
        self.opt_bounded(key, limit, non_empty)?
            .ok_or_else(|| self.error(key, "is missing"))
    }

    /// An optional boolean.
    pub(super) fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, DecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(self.error(key, "must be a boolean")),
        }
    }

    /// An optional number.
    pub(super) fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, DecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(self.error(key, "must be a number")),
        }
    }

    /// An optional object.
    pub(super) fn opt_object(
        &mut self,
        key: &str,
    ) -> Result<Option<Map<String, Value>>, DecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(self.error(key, "must be an object")),
        }
    }

    /// A required object, as the fields of `key` (path `self.key`).
    pub(super) fn object(&mut self, key: &str) -> Result<Fields, DecodeError> {
        let map = self
            .opt_object(key)?
            .ok_or_else(|| self.error(key, "is missing"))?;
        Ok(Fields::new(map, self.path_of(key), self.kind))
    }

    /// Says the first key left, if any, is unknown.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        let Some(key) = self.map.keys().next() else {
            return Ok(());
        };
        let place = if self.path.is_empty() {
            format!("at the root of {}", self.kind)
        } else {
            format!("in {} of {}", self.path, self.kind)
        };
        Err(DecodeError::new(format!(
            "unknown key {} {place}",
            shown(key)
        )))
    }

    /// What is left, for a model's type to deserialize.
    pub(super) fn into_rest(self) -> Map<String, Value> {
        self.map
    }
}

/// Deserializes a model type from the fields left in an object; serde's message is
/// prefixed with `what` (`invalid payload of UPDATE: unknown field ...`).
pub(super) fn model_value<T: serde::de::DeserializeOwned>(
    rest: Map<String, Value>,
    what: &str,
) -> Result<T, DecodeError> {
    serde_json::from_value(Value::Object(rest))
        .map_err(|e| DecodeError::new(format!("invalid {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        Fields::new(map, "payload", "TEST")
    }

    #[test]
    fn long_peer_strings_are_cut_when_shown() {
        assert_eq!(shown("foo"), "\"foo\"");
        let long = "é".repeat(100);
        assert_eq!(shown(&long), format!("{:?}...", "é".repeat(64)));
    }

    #[test]
    fn errors_name_the_path() {
        let mut f = fields(json!({"a": -1, "b": 1.5, "c": "x", "d": null}));
        assert_eq!(
            f.u64("a").unwrap_err().message,
            "payload.a must be a non-negative integer"
        );
        assert_eq!(
            f.opt_u64("b").unwrap_err().message,
            "payload.b must be a non-negative integer"
        );
        assert_eq!(f.u64("z").unwrap_err().message, "payload.z is missing");
        assert_eq!(
            f.bounded("c", 0, true).unwrap_err().message,
            "payload.c is 1 bytes long; the limit is 0"
        );
        assert_eq!(
            f.opt_string("d").unwrap_err().message,
            "payload.d must be a string"
        );
        assert!(f.finish().is_ok());
    }

    #[test]
    fn the_first_key_left_is_unknown() {
        let f = fields(json!({"b": 1, "a": 2}));
        assert_eq!(
            f.finish().unwrap_err().message,
            "unknown key \"a\" in payload of TEST"
        );
        let Value::Object(map) = json!({"x": 1}) else {
            unreachable!()
        };
        assert_eq!(
            Fields::new(map, "", "JOIN").finish().unwrap_err().message,
            "unknown key \"x\" at the root of JOIN"
        );
    }
}
