//! Reading one value, written as text (environment, flags) or as TOML (the file), into
//! its key's field, or saying precisely why not.

use std::net::SocketAddr;

use super::keys::{Key, Kind};
use super::{Config, ConfigError, Source};

/// A value as a source gives it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// Text from an environment variable or a flag: `4096`, `0.0.0.0:9000`.
    Text(&'a str),
    /// A value from the TOML file, typed by the file's syntax.
    Toml(&'a toml::Value),
}

/// A refused value: how to show it, and what the key accepts.
struct Refusal {
    value: String,
    reason: String,
}

/// Checks `raw` against `key` and writes it into `config`.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the key, the value, `origin` and what the key accepts.
pub(crate) fn apply(
    key: &Key,
    config: &mut Config,
    raw: Raw<'_>,
    origin: &Source,
) -> Result<(), ConfigError> {
    let applied = match key.kind {
        Kind::Count { min, max, set, .. } => count(raw, min, max)
            .and_then(|n| set(config, n).map_err(|e| refusal(n.to_string(), e.reason))),
        Kind::Address { set, .. } => address(raw).map(|addr| set(config, addr)),
        Kind::Secret { set, .. } => secret(raw).map(|token| set(config, token)),
        Kind::Text { set, accepts, .. } => text(raw, accepts)
            .and_then(|text| set(config, text).map_err(|reason| refusal(quoted(text), reason))),
    };
    applied.map_err(|refused| ConfigError::Invalid {
        key: key.path(),
        value: refused.value,
        origin: origin.clone(),
        reason: refused.reason,
    })
}

fn refusal(value: String, reason: impl Into<String>) -> Refusal {
    Refusal {
        value,
        reason: reason.into(),
    }
}

/// An integer in `min..=max`.
fn count(raw: Raw<'_>, min: u64, max: u64) -> Result<u64, Refusal> {
    let n = match raw {
        Raw::Toml(toml::Value::Integer(n)) => *n,
        Raw::Text(text) => text.parse::<i64>().map_err(|_| {
            refusal(
                quoted(text),
                format!("must be an integer between {min} and {max}"),
            )
        })?,
        Raw::Toml(other) => {
            return Err(refusal(
                other.to_string(),
                format!(
                    "must be an integer between {min} and {max}, not {}",
                    a_type(other)
                ),
            ));
        }
    };
    u64::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| refusal(n.to_string(), format!("must be between {min} and {max}")))
}

/// An IP socket address, from text or a TOML string.
fn address(raw: Raw<'_>) -> Result<SocketAddr, Refusal> {
    const EXPECTED: &str = "must be an IP address and port such as \"127.0.0.1:7373\" or \
                            \"[::1]:7373\" (host names are not resolved)";
    match as_text(raw) {
        Ok(text) => text.parse().map_err(|_| refusal(quoted(text), EXPECTED)),
        Err(other) => Err(refusal(
            other.to_string(),
            format!("{EXPECTED}, not {}", a_type(other)),
        )),
    }
}

/// Text from the environment, a flag or a TOML string.
fn text<'a>(raw: Raw<'a>, accepts: &str) -> Result<&'a str, Refusal> {
    as_text(raw).map_err(|other| {
        refusal(
            other.to_string(),
            format!("must be {accepts}, not {}", a_type(other)),
        )
    })
}

/// A non-empty secret, from text or a TOML string. A refused secret is never shown.
fn secret(raw: Raw<'_>) -> Result<String, Refusal> {
    match as_text(raw) {
        Ok("") => Err(refusal(
            quoted(""),
            "must not be empty (leave the key unset to admit every client)",
        )),
        Ok(text) => Ok(text.to_owned()),
        Err(other) => Err(refusal(
            "<redacted>".into(),
            format!("must be a string, not {}", a_type(other)),
        )),
    }
}

/// The text of `raw` when it is text or a TOML string; the TOML value otherwise.
fn as_text<'a>(raw: Raw<'a>) -> Result<&'a str, &'a toml::Value> {
    match raw {
        Raw::Text(text) => Ok(text),
        Raw::Toml(toml::Value::String(text)) => Ok(text),
        Raw::Toml(other) => Err(other),
    }
}

/// `text` as a TOML string literal (quoted and escaped), to show a refused value.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// "an integer", "a string": the type of a TOML value, for messages.
pub(crate) fn a_type(value: &toml::Value) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}
