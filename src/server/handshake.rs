//! The HTTP side of a connection: parsing the upgrade request, choosing the room and the
//! dialect, checking the token, and the plain HTTP answers for everything refused.
//!
//! Pure functions over bytes, so every refusal is unit-tested. The request is parsed
//! with `httparse`; the WebSocket rules of RFC 6455 (method, version, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Version`, `Sec-WebSocket-Key`) are checked, and the
//! `101` response built, by `tungstenite::handshake::server::create_response`.

use bytes::Bytes;
use tungstenite::handshake::server::{create_response, write_response};

use crate::protocol::Dialect;

/// The room that `/` selects.
pub(super) const DEFAULT_ROOM: &str = "default";
/// The longest room name accepted, in bytes.
pub(super) const MAX_ROOM_NAME: usize = 256;
const MAX_HEADERS: usize = 32;

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Upgrade {
    /// The room the request path selects.
    pub(super) room: String,
    /// The dialect the subprotocol selects.
    pub(super) dialect: Dialect,
    /// The `101 Switching Protocols` response to send.
    pub(super) response: Bytes,
}

/// An HTTP answer that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// The status code.
    pub(super) status: u16,
    /// The whole response to send.
    pub(super) response: Bytes,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The request is not complete yet.
    Partial,
    /// An upgrade; the request used `consumed` bytes (the rest are WebSocket frames).
    Upgrade {
        /// What was decided.
        upgrade: Upgrade,
        /// The length of the HTTP request.
        consumed: usize,
    },
    /// Refused with an HTTP answer.
    Refused(Refusal),
    /// A plain request (no `Upgrade`) for one of the HTTP endpoints (`/health`,
    /// `/ready`, `/metrics`: see `endpoints`), for the caller to answer; `otherwise` is
    /// the answer when it does not serve that endpoint (the `426` of any plain request).
    Plain {
        /// The request method.
        method: String,
        /// The path, without its query.
        path: String,
        /// The answer when the endpoint is not served.
        otherwise: Refusal,
    },
}

/// The paths of the plain HTTP endpoints.
pub(super) const ENDPOINT_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// What the upgrade must satisfy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy<'a> {
    /// The shared-secret token, if the server has one.
    pub(super) token: Option<&'a str>,
    /// The longest request accepted, in bytes.
    pub(super) max_request_bytes: usize,
}

/// A plain HTTP answer with a text body; the connection closes after it.
pub(super) fn refusal(status: u16, body: &str, extra_headers: &[(&str, &str)]) -> Refusal {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len() + 1
    );
    for (name, value) in extra_headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    response.push('\n');
    Refusal {
        status,
        response: Bytes::from(response),
    }
}

/// Decides what to do with the request bytes received so far.
pub(super) fn handshake(buf: &[u8], policy: Policy<'_>) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let consumed = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(consumed)) if consumed <= policy.max_request_bytes => {
            consumed
        }
        Ok(httparse::Status::Partial) if buf.len() <= policy.max_request_bytes => {
            return Outcome::Partial;
        }
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Outcome::Refused(refusal(431, "request headers too large", &[]));
        }
        Err(e) => {
            return Outcome::Refused(refusal(400, &format!("malformed HTTP request: {e}"), &[]));
        }
    };
    match upgrade(&parsed, policy) {
        Ok(upgrade) => Outcome::Upgrade { upgrade, consumed },
        Err(refused) => match plain_endpoint(&parsed) {
            Some((method, path)) if refused.status == 426 => Outcome::Plain {
                method,
                path,
                otherwise: refused,
            },
            _ => Outcome::Refused(refused),
        },
    }
}

/// The method and path of a request without `Upgrade` for an endpoint path.
fn plain_endpoint(parsed: &httparse::Request<'_, '_>) -> Option<(String, String)> {
    let upgrading = parsed
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let path = parsed.path?.split('?').next()?;
    if upgrading || !ENDPOINT_PATHS.contains(&path) {
        return None;
    }
    Some((parsed.method?.to_owned(), path.to_owned()))
}

fn upgrade(parsed: &httparse::Request<'_, '_>, policy: Policy<'_>) -> Result<Upgrade, Refusal> {
    let request =
        to_http(parsed).map_err(|e| refusal(400, &format!("malformed HTTP request: {e}"), &[]))?;
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    if header("Upgrade").is_none() {
        return Err(refusal(
            426,
            "this is a WebSocket endpoint: connect with a WebSocket client",
            &[("Upgrade", "websocket")],
        ));
    }
    if header("Sec-WebSocket-Version").is_some_and(|v| v.trim() != "13") {
        return Err(refusal(
            426,
            "unsupported WebSocket version: this server speaks version 13",
            &[("Sec-WebSocket-Version", "13")],
        ));
    }
    let accepted = create_response(&request)
        .map_err(|e| refusal(400, &format!("bad WebSocket upgrade: {e}"), &[]))?;
    let (path, query) = request
        .uri()
        .path_and_query()
        .map_or(("/", None), |pq| (pq.path(), pq.query()));
    let room = room_name(path)?;
    let offered: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(token) = policy.token {
        if !presents_token(token, query, header("Authorization"), &offered) {
            return Err(refusal(401, "missing or invalid token", &[]));
        }
    }
    let selected = offered
        .iter()
        .find(|p| **p == Dialect::NATIVE_SUBPROTOCOL)
        .or_else(|| offered.iter().find(|p| p.starts_with("bearer.")));
    let dialect = match selected {
        Some(&Dialect::NATIVE_SUBPROTOCOL) => Dialect::Native,
        _ => Dialect::WsKit,
    };
    let mut response = accepted;
    if let Some(protocol) = selected {
        let value = http::HeaderValue::from_str(protocol)
            .map_err(|_| refusal(400, "bad Sec-WebSocket-Protocol", &[]))?;
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let mut bytes = Vec::with_capacity(192);
    write_response(&mut bytes, &response).map_err(|e| refusal(500, &e.to_string(), &[]))?;
    Ok(Upgrade {
        room,
        dialect,
        response: Bytes::from(bytes),
    })
}

fn to_http(parsed: &httparse::Request<'_, '_>) -> Result<http::Request<()>, http::Error> {
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(if parsed.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder.body(())
}

/// `/` is `default`, `/rooms/{name}` is `name`, any other path is the room of that name.
fn room_name(path: &str) -> Result<String, Refusal> {
    let name = match path {
        "" | "/" => DEFAULT_ROOM,
        path => path.strip_prefix("/rooms/").unwrap_or(path),
    };
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(refusal(
            400,
            &format!("a room name must be 1 to {MAX_ROOM_NAME} bytes long"),
            &[],
        ));
    }
    Ok(name.to_owned())
}

/// Whether the request carries the token the way any of our clients may send it:
/// `?token=`, `?access_token=` (ws-kit's browser client), `Authorization: Bearer`, or a
/// subprotocol `bearer.<token>`.
fn presents_token(
    token: &str,
    query: Option<&str>,
    authorization: Option<&str>,
    offered: &[&str],
) -> bool {
    let from_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            matches!(key, "token" | "access_token").then_some(value)
        });
    let from_header = authorization.and_then(|value| {
        let (scheme, credentials) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(credentials.trim())
    });
    let from_protocol = offered.iter().filter_map(|p| p.strip_prefix("bearer."));
    from_query
        .map(percent_decode)
        .chain(from_header.map(str::to_owned))
        .chain(from_protocol.map(str::to_owned))
        .any(|candidate| constant_time_eq(candidate.as_bytes(), token.as_bytes()))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
