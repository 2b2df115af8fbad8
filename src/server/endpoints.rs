//! The plain HTTP endpoints: `/health`, `/ready` and `/metrics`.
//!
//! On the WebSocket port, a request without `Upgrade` for one of these paths is answered
//! (when `server.public_endpoints` allows it) and the connection closed; any other request
//! without `Upgrade` still gets `426`, since every other path is a room. On the admin
//! address (`server.admin_listen`) every path but these three is `404`. On both, a method
//! other than `GET` and `HEAD` is `405`, and no token is asked: a monitoring system holds
//! no client's secret; keep `/metrics` off a public port with `server.public_endpoints`.

use bytes::Bytes;

use super::handshake::Refusal;
use super::metrics;
use super::shared::Shared;
use crate::model::Model;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    /// The WebSocket port.
    Public,
    /// `server.admin_listen`.
    Admin,
}

/// Answers the plain HTTP endpoints, for the handshake of the WebSocket port.
pub(super) trait Endpoints {
    /// The whole response to `method path` on `port`; `None` when the path is not an
    /// endpoint there (the WebSocket port then answers as it does to any plain request).
    fn answer(&self, port: Port, method: &str, path: &str) -> Option<Refusal>;
}

impl<M: Model> Endpoints for Shared<M> {
    fn answer(&self, port: Port, method: &str, path: &str) -> Option<Refusal> {
        let known = matches!(path, "/health" | "/ready" | "/metrics");
        let here = match port {
            Port::Admin => true,
            Port::Public => known && self.public_endpoints.answers(path),
        };
        if !here {
            return None;
        }
        if !known {
            return Some(response(
                404,
                TEXT,
                format!("no such endpoint: {path}\n"),
                &[],
                false,
            ));
        }
        let head = match method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                let body = format!("{path} answers GET and HEAD only\n");
                return Some(response(405, TEXT, body, &[("Allow", "GET, HEAD")], false));
            }
        };
        let (status, content_type, body) = match path {
            "/health" => probe(self.health(), "ok"),
            "/ready" => probe(self.readiness(), "ready"),
            _ => (200, metrics::CONTENT_TYPE, metrics::render(self)),
        };
        Some(response(status, content_type, body, &[], head))
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// A probe's answer: 200 and `ok`, or 503 and the reason.
fn probe(outcome: Result<(), String>, ok: &str) -> (u16, &'static str, String) {
    match outcome {
        Ok(()) => (200, TEXT, format!("{ok}\n")),
        Err(reason) => (503, TEXT, format!("{reason}\n")),
    }
}

/// A whole HTTP/1.1 response that closes the connection; `head`: without the body (its
/// length still announced, as `HEAD` asks).
fn response(
    status: u16,
    content_type: &str,
    body: String,
    extra_headers: &[(&str, &str)],
    head: bool,
) -> Refusal {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(&body);
    }
    Refusal {
        status,
        response: Bytes::from(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_response_announces_the_body_it_leaves_out() {
        let get = response(200, TEXT, "ok\n".into(), &[], false);
        let head = response(200, TEXT, "ok\n".into(), &[], true);
        let expected = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
        assert_eq!(head.response, expected);
        assert_eq!(get.response, format!("{expected}ok\n"));
    }

    #[test]
    fn a_refused_method_is_told_which_are_allowed() {
        let refused = response(405, TEXT, "no\n".into(), &[("Allow", "GET, HEAD")], false);
        assert_eq!(
            refused.response,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\nno\n"
        );
    }
}
