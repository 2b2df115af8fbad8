//! Executes a fixture against a [`FixtureServer`] with the project's client replica.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::ConformanceModel;
use super::fixture::{Action, DEFAULT_CLIENT, Fixture, Step, envelope};
use super::server::{FixtureServer, START_MS};
use crate::client::Replica;
use crate::protocol::Dialect;

/// Where and why a fixture failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The 1-based step that failed, or `None` for the end-of-run checks and assertions.
    pub step: Option<usize>,
    /// What was expected and what happened.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One client of the run: its replica and what it joined as.
struct Client<M: ConformanceModel> {
    replica: Option<Replica<M>>,
    joined_as: Option<(String, String)>,
    connected: bool,
    ever_connected: bool,
}

impl<M: ConformanceModel> Default for Client<M> {
    fn default() -> Self {
        Self {
            replica: None,
            joined_as: None,
            connected: false,
            ever_connected: false,
        }
    }
}

/// Runs every step and assertion of `fixture` against `server`.
///
/// # Errors
///
/// The first [`Failure`]: a message the server did not send or sent differently, a
/// replica that saw a protocol violation, a message nobody expected, an assertion.
pub fn run<M: ConformanceModel>(
    fixture: &Fixture,
    server: &mut impl FixtureServer<M>,
) -> Result<(), Failure> {
    let mut run = Run {
        server,
        clients: BTreeMap::new(),
        now_ms: START_MS,
    };
    for (i, step) in fixture.steps.iter().enumerate() {
        run.step(step)
            .and_then(|()| run.server.flush())
            .map_err(|message| Failure {
                step: Some(i + 1),
                message,
            })?;
    }
    run.finish(&fixture.assertions).map_err(|message| Failure {
        step: None,
        message,
    })
}

struct Run<'s, M: ConformanceModel, S: FixtureServer<M>> {
    server: &'s mut S,
    clients: BTreeMap<String, Client<M>>,
    now_ms: u64,
}

impl<M: ConformanceModel, S: FixtureServer<M>> Run<'_, M, S> {
    fn client(&mut self, name: &str) -> &mut Client<M> {
        self.clients.entry(name.to_owned()).or_default()
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        let name = step.client.as_str();
        match &step.action {
            Action::ClientSend(flat) => self.client_send(name, flat),
            Action::ClientSendRaw(text) => {
                self.ensure_connected(name)?;
                self.server.send(name, text.as_bytes())
            }
            Action::ClientDisconnect => {
                self.server.disconnect(name);
                self.client(name).connected = false;
                Ok(())
            }
            Action::ClientReconnect => self.reconnect(name),
            Action::ClientPause => {
                self.server.set_reading(name, false);
                Ok(())
            }
            Action::ClientResume => {
                self.server.set_reading(name, true);
                Ok(())
            }
            Action::ClientState { server_rev, state } => self.state(name, *server_rev, state),
            Action::ClientOptimisticApply { state, pending_ops } => {
                self.optimistic_apply(name, state, *pending_ops)
            }
            Action::ClientAckPending(id) => self.ack_pending(name, id),
            Action::ServerSend(expected) => self.server_send(name, expected),
            Action::ServerProcessOperations(count) => self.server.process_operations(*count),
            Action::ServerClock(now) => {
                self.now_ms = *now;
                self.server.set_clock(*now)
            }
        }
    }

    fn ensure_connected(&mut self, name: &str) -> Result<(), String> {
        let client = self.client(name);
        if client.connected {
            return Ok(());
        }
        if client.ever_connected {
            return Err(format!("client {name:?} is disconnected; RECONNECT first"));
        }
        client.connected = true;
        client.ever_connected = true;
        self.server.connect(name)
    }

    fn client_send(&mut self, name: &str, flat: &Map<String, Value>) -> Result<(), String> {
        self.ensure_connected(name)?;
        let now = self.now_ms;
        let client = self.client(name);
        match flat.get("type").and_then(Value::as_str) {
            Some("JOIN") => {
                let field = |key| flat.get(key).and_then(Value::as_str).map(str::to_owned);
                if let (Some(id), Some(display)) = (field("participantId"), field("name")) {
                    if client.replica.is_none() {
                        client.replica = Some(Replica::new(&id));
                    }
                    client.joined_as = Some((id, display));
                }
            }
            Some("UPDATE") => {
                if let (Some(replica), Some((input, id, base_rev))) =
                    (client.replica.as_mut(), parse_update::<M>(flat))
                {
                    let _ = replica.update_with_id(input, id, base_rev, now);
                }
            }
            _ => {}
        }
        let text = envelope(flat).to_string();
        self.server.send(name, text.as_bytes())
    }

    fn reconnect(&mut self, name: &str) -> Result<(), String> {
        self.server.connect(name)?;
        let client = self.client(name);
        client.connected = true;
        client.ever_connected = true;
        let mut messages = Vec::new();
        if let (Some((id, display)), Some(replica)) = (&client.joined_as, &client.replica) {
            messages.push(replica.join_message(id, display, Dialect::WsKit));
            messages.extend(replica.resend_messages());
        }
        for message in messages {
            self.server.send(name, &message)?;
        }
        Ok(())
    }

    fn state(&mut self, name: &str, rev: u64, state: &Map<String, Value>) -> Result<(), String> {
        let model = M::from_fixture(state)?;
        let actors = model.actors();
        let single = match actors.as_slice() {
            [(id, display)] => Some((id.clone(), display.clone())),
            _ => None,
        };
        let bind = single.as_ref().map(|(id, _)| (name, id.as_str()));
        let epoch = self.server.restore(rev, model.clone(), bind)?;
        for client in self.clients.values_mut() {
            client.connected = false;
        }
        let client = self.client(name);
        let mut replica = Replica::new(single.as_ref().map_or("", |(id, _)| id.as_str()));
        replica.restore(model, rev, Some(epoch));
        client.replica = Some(replica);
        client.connected = single.is_some();
        client.ever_connected = true;
        client.joined_as = single;
        Ok(())
    }

    fn optimistic_apply(
        &mut self,
        name: &str,
        state: &Value,
        pending_ops: u64,
    ) -> Result<(), String> {
        let client = self.client(name);
        let replica = client
            .replica
            .as_ref()
            .ok_or("the client has no state yet")?;
        let visible = replica
            .visible()
            .map_or(Value::Null, ConformanceModel::fixture_view);
        if &visible != state {
            return Err(format!(
                "OPTIMISTIC_APPLY: expected visible state {state}, the client shows {visible}"
            ));
        }
        let pending = replica.pending().len() as u64;
        if pending != pending_ops {
            return Err(format!(
                "OPTIMISTIC_APPLY: expected {pending_ops} pending operations, the client has {pending}"
            ));
        }
        Ok(())
    }

    fn ack_pending(&mut self, name: &str, id: &str) -> Result<(), String> {
        let client = self.client(name);
        let replica = client
            .replica
            .as_ref()
            .ok_or("the client has no state yet")?;
        if replica.pending().iter().any(|p| p.client_req_id == id) {
            return Err(format!("ACK_PENDING: {id:?} is still pending"));
        }
        if !replica.was_acked(id) {
            return Err(format!("ACK_PENDING: {id:?} was not acknowledged"));
        }
        Ok(())
    }

    fn server_send(&mut self, name: &str, expected: &Map<String, Value>) -> Result<(), String> {
        let expected_message = envelope(expected);
        let Some(bytes) = self.server.receive(name) else {
            return Err(format!(
                "expected {expected_message}, the server sent nothing"
            ));
        };
        let actual = parse(&bytes)?;
        if !same_message(&expected_message, &actual) {
            return Err(format!(
                "expected {expected_message}, got {}",
                without_meta(&actual)
            ));
        }
        let now = self.now_ms;
        if let Some(replica) = self.client(name).replica.as_mut() {
            replica
                .handle_text(&bytes, now)
                .map_err(|e| format!("the client refused {}: {e}", without_meta(&actual)))?;
        }
        Ok(())
    }

    fn finish(&mut self, assertions: &[(String, Value)]) -> Result<(), String> {
        self.server.flush()?;
        let names: Vec<String> = self.clients.keys().cloned().collect();
        for name in &names {
            if let Some(bytes) = self.server.receive_unexpected(name) {
                let message = parse(&bytes).map(|m| without_meta(&m).to_string());
                return Err(format!(
                    "the server sent {} to {name:?}, which no step expected",
                    message.unwrap_or_else(|e| e)
                ));
            }
        }
        for (path, expected) in assertions {
            let actual = self.lookup(path)?;
            if &actual != expected {
                return Err(format!(
                    "assertion {path}: expected {expected}, got {actual}"
                ));
            }
        }
        Ok(())
    }

    fn lookup(&mut self, path: &str) -> Result<Value, String> {
        if path == "server.rev" {
            return self.server.rev().map(Value::from);
        }
        let (name, field) = match path.split_once('.') {
            Some(("client", field)) => (DEFAULT_CLIENT, field),
            Some(("clients", rest)) => rest.split_once('.').ok_or(format!("bad path {path}"))?,
            _ => return Err(format!("unknown assertion path {path:?}")),
        };
        let replica = self.clients.get(name).and_then(|c| c.replica.as_ref());
        Ok(match (field, replica) {
            ("serverRev", r) => Value::from(r.map_or(0, Replica::server_rev)),
            ("pendingOps", r) => Value::from(r.map_or(0, |r| r.pending().len())),
            ("detectedGap", r) => Value::from(r.is_some_and(Replica::detected_gap)),
            (field, r) => {
                let path = field
                    .strip_prefix("state.")
                    .ok_or(format!("unknown assertion path {path:?}"))?;
                let view = r
                    .and_then(Replica::visible)
                    .map_or(Value::Null, ConformanceModel::fixture_view);
                path.split('.')
                    .try_fold(&view, |value, key| value.get(key))
                    .cloned()
                    .unwrap_or(Value::Null)
            }
        })
    }
}

fn parse_update<M: ConformanceModel>(
    flat: &Map<String, Value>,
) -> Option<(M::Input, String, Option<u64>)> {
    let mut fields = flat.clone();
    fields.remove("type");
    let id = match fields.remove("clientReqId")? {
        Value::String(id) => id,
        _ => return None,
    };
    let base_rev = match fields.remove("baseRev") {
        None => None,
        Some(rev) => Some(rev.as_u64()?),
    };
    let input = serde_json::from_value(Value::Object(fields)).ok()?;
    Some((input, id, base_rev))
}

fn parse(bytes: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "the server sent something that is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Same type and same payload; `meta` is not compared.
fn same_message(expected: &Value, actual: &Value) -> bool {
    let empty = Value::Object(Map::new());
    expected.get("type") == actual.get("type")
        && expected.get("payload").unwrap_or(&empty) == actual.get("payload").unwrap_or(&empty)
}

fn without_meta(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(map) = message.as_object_mut() {
        map.remove("meta");
    }
    message
}
