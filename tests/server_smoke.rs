//! Quick end-to-end check: join, snapshot, update, ack over a real socket.
mod common;

use common::{TestServer, Ws, update};
use serde_json::json;

#[test]
fn join_snapshot_update_ack() {
    let server = TestServer::start();
    let mut alice = Ws::connect(&server.url("/"));
    let snapshot = alice.join("user-1", "Alice");
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT");
    assert_eq!(snapshot["payload"]["rev"], 1);
    alice.send(update("away", "req-1"));
    assert_eq!(
        alice.recv(),
        json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {"fromRev": 1, "toRev": 2, "operations": [
            {"rev": 2, "type": "participant.updated", "payload": {"id": "user-1", "status": "away"}, "clientReqId": "req-1"}]}})
    );
}
