//! The HTTP upgrade of RFC 6455 §4, as small as the load generator and the ceiling server
//! need, both ways. The frames themselves go through the library's codec
//! (`deltasync::frame`).

use std::fmt::Write as _;

/// The HTTP request that asks `host` to upgrade `path` to a WebSocket.
pub(crate) fn upgrade_request(host: &str, path: &str, key: &str, protocol: Option<&str>) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(protocol) = protocol {
        let _ = write!(request, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    request.push_str("\r\n");
    request
}

/// How an upgrade response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upgraded {
    /// Not all of the response has arrived.
    Partial,
    /// `101` with the right accept key; the response used this many bytes.
    Done(usize),
    /// Anything else, with the status line or the reason.
    Refused(String),
}

/// Reads the server's answer to [`upgrade_request`] with key `key`.
pub(crate) fn upgrade_response(buf: &[u8], key: &str) -> Upgraded {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Upgraded::Partial,
        Err(e) => return Upgraded::Refused(format!("malformed HTTP response: {e}")),
    };
    if response.code != Some(101) {
        return Upgraded::Refused(format!(
            "HTTP {} {}",
            response.code.unwrap_or(0),
            response.reason.unwrap_or("")
        ));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"));
    match accept {
        Some(h) if h.value == expected.as_bytes() => Upgraded::Done(used),
        _ => Upgraded::Refused("wrong Sec-WebSocket-Accept".into()),
    }
}

/// What the ceiling server needs of an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The path (with its query), which names the room.
    pub(crate) path: String,
    /// The `101` response to send.
    pub(crate) response: Vec<u8>,
}

/// Reads an upgrade request (for the ceiling server): `Ok(None)` while incomplete.
///
/// # Errors
///
/// A reason when the request is malformed or not an upgrade.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP request: {e}")),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let key = header("Sec-WebSocket-Key").ok_or("no Sec-WebSocket-Key")?;
    let native = header("Sec-WebSocket-Protocol").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|p| p.trim_ascii() == b"deltasync.v1")
    });
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(key)
    );
    if native {
        response.push_str("Sec-WebSocket-Protocol: deltasync.v1\r\n");
    }
    response.push_str("\r\n");
    let path = request.path.unwrap_or("/").to_owned();
    Ok(Some((
        Request {
            path,
            response: response.into_bytes(),
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_is_checked_both_ways() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = upgrade_request("h:1", "/rooms/a?x=1", key, Some("deltasync.v1"));
        let (parsed, used) = parse_request(request.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (parsed.path.as_str(), used),
            ("/rooms/a?x=1", request.len())
        );
        let response = String::from_utf8(parsed.response.clone()).unwrap();
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: deltasync.v1\r\n"));
        let mut answer = parsed.response.clone();
        answer.extend_from_slice(b"\x81\x00");
        assert_eq!(
            upgrade_response(&answer, key),
            Upgraded::Done(parsed.response.len())
        );
        assert_eq!(upgrade_response(&answer[..10], key), Upgraded::Partial);
        assert_eq!(
            upgrade_response(&answer, "another key"),
            Upgraded::Refused("wrong Sec-WebSocket-Accept".into())
        );
        let refused = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            upgrade_response(refused, key),
            Upgraded::Refused("HTTP 503 Service Unavailable".into())
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert!(parse_request(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
