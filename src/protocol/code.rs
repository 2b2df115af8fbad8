//! The wire error codes: one table, mirroring `protocol.md`.

use std::fmt;
use std::str::FromStr;

/// An error code of the `ERROR` message (the gRPC-style set ws-kit uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not joined, or a bad token. Not retryable.
    Unauthenticated,
    /// The connection may not do this (e.g. change another participant).
    PermissionDenied,
    /// Malformed JSON, wrong schema, unknown type, a value out of bounds.
    InvalidArgument,
    /// Message too large, rate or connection limit; with `retryAfterMs` when known.
    ResourceExhausted,
    /// The request is well formed but the state does not allow it.
    FailedPrecondition,
    /// What the request names does not exist.
    NotFound,
    /// The server cannot serve this now; try again.
    Unavailable,
    /// A bug on the server side.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of `protocol.md`.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::InvalidArgument,
        ErrorCode::ResourceExhausted,
        ErrorCode::FailedPrecondition,
        ErrorCode::NotFound,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Whether repeating the same request later may succeed (the `retryable` field).
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::ResourceExhausted | ErrorCode::Unavailable | ErrorCode::Internal
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the wire codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_protocol_md() {
        let table: Vec<(&str, bool)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.retryable()))
            .collect();
        assert_eq!(
            table,
            [
                ("UNAUTHENTICATED", false),
                ("PERMISSION_DENIED", false),
                ("INVALID_ARGUMENT", false),
                ("RESOURCE_EXHAUSTED", true),
                ("FAILED_PRECONDITION", false),
                ("NOT_FOUND", false),
                ("UNAVAILABLE", true),
                ("INTERNAL", true),
            ]
        );
    }

    #[test]
    fn codes_round_trip_through_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
        assert!("REVISION_GAP".parse::<ErrorCode>().is_err());
    }
}
