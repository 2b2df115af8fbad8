//! The messages a client sends: `JOIN` and `UPDATE`, in the ws-kit envelope.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Serialize)]
struct Envelope<P> {
    #[serde(rename = "type")]
    kind: &'static str,
    meta: Map<String, Value>,
    payload: P,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinPayload<'a> {
    participant_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
}

fn encode<P: Serialize>(kind: &'static str, payload: P) -> Bytes {
    let envelope = Envelope {
        kind,
        meta: Map::new(),
        payload,
    };
    // Strings, integers and JSON values always serialize.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// `JOIN {participantId, name, [rev], [epoch]}`.
pub(super) fn join(
    participant_id: &str,
    name: &str,
    rev: Option<u64>,
    epoch: Option<&str>,
) -> Bytes {
    let payload = JoinPayload {
        participant_id,
        name,
        rev,
        epoch,
    };
    encode("JOIN", payload)
}

/// `UPDATE {...input, [baseRev], clientReqId}`.
///
/// An input that does not serialize as a JSON object breaks the model contract; its
/// fields are then left out, so the server rejects the update by its `clientReqId` and the
/// replica drops it, rather than the client failing here.
pub(super) fn update<I: Serialize>(input: &I, client_req_id: &str, base_rev: Option<u64>) -> Bytes {
    let mut payload = match serde_json::to_value(input) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    if let Some(base_rev) = base_rev {
        payload.insert("baseRev".to_owned(), base_rev.into());
    }
    payload.insert("clientReqId".to_owned(), client_req_id.into());
    encode("UPDATE", payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn join_carries_rev_and_epoch_only_when_given() {
        assert_eq!(
            parse(&join("u1", "Ann", None, None)),
            json!({"type": "JOIN", "meta": {}, "payload": {"participantId": "u1", "name": "Ann"}})
        );
        assert_eq!(
            parse(&join("u1", "Ann", Some(5), Some("e"))),
            json!({"type": "JOIN", "meta": {}, "payload": {
                "participantId": "u1", "name": "Ann", "rev": 5, "epoch": "e"}})
        );
    }

    #[test]
    fn update_puts_the_input_fields_beside_ours() {
        assert_eq!(
            parse(&update(
                &json!({"patch": {"status": "away"}}),
                "r1",
                Some(5)
            )),
            json!({"type": "UPDATE", "meta": {}, "payload": {
                "patch": {"status": "away"}, "baseRev": 5, "clientReqId": "r1"}})
        );
        assert_eq!(
            parse(&update(&json!([1]), "r2", None)),
            json!({"type": "UPDATE", "meta": {}, "payload": {"clientReqId": "r2"}})
        );
    }
}
