//! Ending connections and servers: the close handshake from either side, and a graceful
//! shutdown (close 1001 to everyone) of the library's server and of the real binary.
mod common;

use common::raw::{RawWs, frame};
use common::{TestServer, assert_serves};

#[test]
fn a_close_from_the_client_is_answered_with_a_close_frame() {
    let server = TestServer::start();
    let mut raw = RawWs::connect(server.addr(), "/");
    // regression: the answer tungstenite queued was never written, so a client's close
    // got no close frame back, only the end of the TCP connection.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    raw.write(&frame(0x8, true, &payload));
    assert_eq!(raw.read_close(), (1000, "bye".to_owned()));
    raw.expect_eof();
    assert_serves(&server.url(""));
}
