//! What a [`Connector`](super::Connector) does after it loses its connection or is
//! refused one: try again (not before a given time), or stop. Pure decisions, no I/O.
//!
//! | what happened | decision |
//! |---|---|
//! | close 1000, 1005, 1006, 1011, 1012 (service restart), 1013, 1014, any other code | retry |
//! | close 1001 (going away) | retry; stop when the connector is told it is final |
//! | close 1002, 1003, 1007, 1008 (policy), 1009, 1010, 4400-4499 | stop: a refusal |
//! | the connection dropped (reset, end of stream, read error), the TCP connect failed | retry |
//! | upgrade refused with HTTP 429 or 503 | retry, not before its `Retry-After` (seconds) |
//! | upgrade refused with another 5xx | retry |
//! | upgrade refused with 401, 403 or another 4xx | stop |
//! | `JOIN` answered by a retryable `ERROR` (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `INTERNAL`) | retry, not before its `retryAfterMs` |
//! | `JOIN` answered by any other `ERROR` (`UNAUTHENTICATED`, `INVALID_ARGUMENT`, ...) | stop |
//!
//! The close codes are the TypeScript client's (`stopsOnClose`): 4400-4499 are this
//! project's refusals (4401 for a token refused after the upgrade), like HTTP's 4xx.

use std::time::Duration;

use crate::protocol::ErrorCode;

/// What to do after a connection ended or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Connect again, after the backoff delay and at least `at_least`.
    Retry {
        /// What the server asked for (`Retry-After`, `retryAfterMs`); zero when it did not.
        at_least: Duration,
    },
    /// Do not connect again: the server refused this client, or said it was going away
    /// for good.
    Stop,
}

const RETRY: Verdict = Verdict::Retry {
    at_least: Duration::ZERO,
};

/// After a close frame with `code`.
pub(crate) fn after_close(code: u16, going_away_is_final: bool) -> Verdict {
    match code {
        1001 if going_away_is_final => Verdict::Stop,
        1002 | 1003 | 1007 | 1008 | 1009 | 1010 | 4400..=4499 => Verdict::Stop,
        _ => RETRY,
    }
}

/// After the upgrade was refused with HTTP `status` and a `Retry-After` header.
pub(crate) fn after_refused_upgrade(status: u16, retry_after: Option<&str>) -> Verdict {
    match status {
        429 | 503 => Verdict::Retry {
            at_least: retry_after
                .and_then(retry_after_seconds)
                .unwrap_or_default(),
        },
        500..=599 => RETRY,
        _ => Verdict::Stop,
    }
}

/// After the `JOIN` was answered by an `ERROR` with wire `code`.
pub(crate) fn after_join_error(code: &str, retry_after_ms: Option<u64>) -> Verdict {
    let retryable = code.parse::<ErrorCode>().is_ok_and(ErrorCode::retryable);
    if !retryable {
        return Verdict::Stop;
    }
    Verdict::Retry {
        at_least: Duration::from_millis(retry_after_ms.unwrap_or(0)),
    }
}

/// A `Retry-After` of delay-seconds (`"5"`); the HTTP-date form is not used by servers
/// of this protocol and counts as absent.
fn retry_after_seconds(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_least(secs: u64) -> Verdict {
        Verdict::Retry {
            at_least: Duration::from_secs(secs),
        }
    }

    #[test]
    fn come_back_codes_retry_and_refusals_stop() {
        for code in [
            1000, 1005, 1006, 1011, 1012, 1013, 1014, 3000, 4000, 4399, 4500,
        ] {
            assert_eq!(after_close(code, false), RETRY, "{code}");
            assert_eq!(after_close(code, true), RETRY, "{code}");
        }
        for code in [1002, 1003, 1007, 1008, 1009, 1010, 4400, 4401, 4499] {
            assert_eq!(after_close(code, false), Verdict::Stop, "{code}");
        }
        assert_eq!(after_close(1001, false), RETRY);
        assert_eq!(after_close(1001, true), Verdict::Stop);
    }

    #[test]
    fn refused_upgrades_are_waited_out_or_final() {
        assert_eq!(after_refused_upgrade(503, Some("5")), at_least(5));
        assert_eq!(after_refused_upgrade(429, Some(" 2 ")), at_least(2));
        assert_eq!(after_refused_upgrade(503, None), at_least(0));
        assert_eq!(
            after_refused_upgrade(503, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            at_least(0)
        );
        assert_eq!(after_refused_upgrade(502, Some("9")), RETRY);
        for status in [400, 401, 403, 404, 426] {
            assert_eq!(after_refused_upgrade(status, Some("1")), Verdict::Stop);
        }
    }

    #[test]
    fn a_join_error_retries_only_when_retryable() {
        assert_eq!(
            after_join_error("RESOURCE_EXHAUSTED", Some(1500)),
            Verdict::Retry {
                at_least: Duration::from_millis(1500)
            }
        );
        assert_eq!(after_join_error("UNAVAILABLE", None), RETRY);
        for code in [
            "UNAUTHENTICATED",
            "INVALID_ARGUMENT",
            "PERMISSION_DENIED",
            "TEAPOT",
        ] {
            assert_eq!(after_join_error(code, Some(10)), Verdict::Stop, "{code}");
        }
    }
}
