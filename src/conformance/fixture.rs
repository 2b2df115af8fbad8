//! The fixture file format, parsed strictly.
//!
//! A fixture is `{schemaVersion, fixtureVersion, name, description, steps, assertions}`
//! (plus this project's optional `config`). A step is `{actor, action, ...}`; its other
//! keys depend on the action. Anything the runner would not understand is a parse error,
//! so a fixture can never be half-run.

use std::path::Path;

use serde_json::{Map, Value};

/// The schema version this runner reads.
pub const SCHEMA_VERSION: &str = "1.0.0";

/// The client a step talks about when it names none.
pub const DEFAULT_CLIENT: &str = "default";

/// One parsed fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// The fixture's name (`NNN-name`).
    pub name: String,
    /// What it checks.
    pub description: String,
    /// The version of this fixture.
    pub fixture_version: String,
    /// Server settings (this project's extension): the ring capacity.
    pub ring_capacity: Option<usize>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The assertions checked after the last step, as `(path, expected)`.
    pub assertions: Vec<(String, Value)>,
}

/// One step: which client it concerns and what happens.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The client (connection and replica) the step concerns.
    pub client: String,
    /// What happens.
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// `client SEND msg`: the client sends `msg` (flat: every key but `type` goes into
    /// the payload).
    ClientSend(Map<String, Value>),
    /// `client SEND_RAW text` (extension): the client sends `text` as it is.
    ClientSendRaw(String),
    /// `client DISCONNECT`.
    ClientDisconnect,
    /// `client RECONNECT`: reconnect and resume from the client's `serverRev`.
    ClientReconnect,
    /// `client PAUSE` (extension): the client stops reading; the server cannot write to it.
    ClientPause,
    /// `client RESUME` (extension): the client reads again.
    ClientResume,
    /// `client STATE serverRev ...state`: restore server and client to a known state.
    ClientState {
        /// The revision of the state.
        server_rev: u64,
        /// The state (presence: `{"participants": {...}}`).
        state: Map<String, Value>,
    },
    /// `client OPTIMISTIC_APPLY state pendingOps`: the client's visible state and pending
    /// count must be these.
    ClientOptimisticApply {
        /// The expected visible state (presence: the participants map).
        state: Value,
        /// The expected number of pending operations.
        pending_ops: u64,
    },
    /// `client ACK_PENDING clientReqId`: that operation must now be acknowledged.
    ClientAckPending(String),
    /// `server SEND msg`: the server must send exactly this message next (flat).
    ServerSend(Map<String, Value>),
    /// `server PROCESS_OPERATIONS count`: the server commits `count` operations.
    ServerProcessOperations(u64),
    /// `server CLOCK now`: the test clock shows `now` (ms).
    ServerClock(u64),
}

/// Why a fixture file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FixtureError(pub String);

fn err(message: impl Into<String>) -> FixtureError {
    FixtureError(message.into())
}

impl Fixture {
    /// Reads and parses a fixture file.
    ///
    /// # Errors
    ///
    /// If the file cannot be read or is not a fixture this runner understands whole.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let text =
            std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses a fixture.
    ///
    /// # Errors
    ///
    /// If the text is not a fixture this runner understands whole: an unknown key,
    /// actor, action or assertion path is an error, never skipped.
    pub fn parse(text: &[u8]) -> Result<Self, FixtureError> {
        let value: Value =
            serde_json::from_slice(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let mut root = into_object(value, "the fixture")?;
        let schema = take_str(&mut root, "schemaVersion", "the fixture")?;
        if schema != SCHEMA_VERSION {
            return Err(err(format!(
                "schemaVersion {schema:?} is not supported (this runner reads {SCHEMA_VERSION:?})"
            )));
        }
        let fixture_version = take_str(&mut root, "fixtureVersion", "the fixture")?;
        let name = take_str(&mut root, "name", "the fixture")?;
        let description = take_str(&mut root, "description", "the fixture")?;
        let ring_capacity = match root.remove("config") {
            None => None,
            Some(config) => parse_config(config)?,
        };
        let steps = take_array(&mut root, "steps", "the fixture")?
            .into_iter()
            .enumerate()
            .map(|(i, step)| parse_step(step).map_err(|e| err(format!("step {}: {}", i + 1, e.0))))
            .collect::<Result<_, _>>()?;
        let assertions = take_array(&mut root, "assertions", "the fixture")?
            .into_iter()
            .map(parse_assertion)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        no_more_keys(&root, "the fixture")?;
        Ok(Self {
            name,
            description,
            fixture_version,
            ring_capacity,
            steps,
            assertions,
        })
    }
}

fn parse_config(config: Value) -> Result<Option<usize>, FixtureError> {
    let mut config = into_object(config, "config")?;
    let capacity = match config.remove("ringCapacity") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| err("config.ringCapacity must be a non-negative integer"))?,
        ),
    };
    no_more_keys(&config, "config")?;
    Ok(capacity)
}

fn parse_step(step: Value) -> Result<Step, FixtureError> {
    let mut step = into_object(step, "a step")?;
    let actor = take_str(&mut step, "actor", "a step")?;
    let action = take_str(&mut step, "action", "a step")?;
    let client = match step.remove("client") {
        None => DEFAULT_CLIENT.to_owned(),
        Some(Value::String(client)) => client,
        Some(other) => return Err(err(format!("\"client\" must be a string, not {other}"))),
    };
    let what = format!("{actor} {action}");
    let action = match (actor.as_str(), action.as_str()) {
        ("client", "SEND") => Action::ClientSend(take_message(&mut step, &what)?),
        ("client", "SEND_RAW") => Action::ClientSendRaw(take_str(&mut step, "raw", &what)?),
        ("client", "DISCONNECT") => Action::ClientDisconnect,
        ("client", "RECONNECT") => Action::ClientReconnect,
        ("client", "PAUSE") => Action::ClientPause,
        ("client", "RESUME") => Action::ClientResume,
        ("client", "STATE") => Action::ClientState {
            server_rev: take_u64(&mut step, "serverRev", &what)?,
            state: std::mem::take(&mut step),
        },
        ("client", "OPTIMISTIC_APPLY") => Action::ClientOptimisticApply {
            state: step
                .remove("state")
                .ok_or_else(|| err(format!("{what} needs \"state\"")))?,
            pending_ops: take_u64(&mut step, "pendingOps", &what)?,
        },
        ("client", "ACK_PENDING") => {
            Action::ClientAckPending(take_str(&mut step, "clientReqId", &what)?)
        }
        ("server", "SEND") => Action::ServerSend(take_message(&mut step, &what)?),
        ("server", "PROCESS_OPERATIONS") => {
            Action::ServerProcessOperations(take_u64(&mut step, "count", &what)?)
        }
        ("server", "CLOCK") => Action::ServerClock(take_u64(&mut step, "now", &what)?),
        _ => return Err(err(format!("unknown step {what:?}"))),
    };
    no_more_keys(&step, &what)?;
    Ok(Step { client, action })
}

/// The assertion paths this runner can check: anything else is an error.
fn known_path(path: &str) -> bool {
    let path = match path.split_once('.') {
        Some(("server", rest)) => return rest == "rev",
        Some(("client", rest)) => rest,
        Some(("clients", rest)) => match rest.split_once('.') {
            Some((_, rest)) => rest,
            None => return false,
        },
        _ => return false,
    };
    matches!(path, "serverRev" | "pendingOps" | "detectedGap")
        || path.strip_prefix("state.").is_some_and(|p| !p.is_empty())
}

fn parse_assertion(assertion: Value) -> Result<Vec<(String, Value)>, FixtureError> {
    let assertion = into_object(assertion, "an assertion")?;
    assertion
        .into_iter()
        .map(|(path, expected)| {
            if known_path(&path) {
                Ok((path, expected))
            } else {
                Err(err(format!("unknown assertion path {path:?}")))
            }
        })
        .collect()
}

fn take_message(
    step: &mut Map<String, Value>,
    what: &str,
) -> Result<Map<String, Value>, FixtureError> {
    let msg = step
        .remove("msg")
        .ok_or_else(|| err(format!("{what} needs \"msg\"")))?;
    let msg = into_object(msg, "msg")?;
    if !msg.get("type").is_some_and(Value::is_string) {
        return Err(err(format!("{what}: msg needs a string \"type\"")));
    }
    Ok(msg)
}

fn into_object(value: Value, what: &str) -> Result<Map<String, Value>, FixtureError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(err(format!("{what} must be an object, not {other}"))),
    }
}

fn take_str(map: &mut Map<String, Value>, key: &str, what: &str) -> Result<String, FixtureError> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(err(format!(
            "{what}: \"{key}\" must be a string, not {other}"
        ))),
        None => Err(err(format!("{what} needs \"{key}\""))),
    }
}

fn take_u64(map: &mut Map<String, Value>, key: &str, what: &str) -> Result<u64, FixtureError> {
    match map.remove(key) {
        Some(v) => v.as_u64().ok_or_else(|| {
            err(format!(
                "{what}: \"{key}\" must be a non-negative integer, not {v}"
            ))
        }),
        None => Err(err(format!("{what} needs \"{key}\""))),
    }
}

fn take_array(
    map: &mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Vec<Value>, FixtureError> {
    match map.remove(key) {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(err(format!(
            "{what}: \"{key}\" must be an array, not {other}"
        ))),
        None => Err(err(format!("{what} needs \"{key}\""))),
    }
}

fn no_more_keys(map: &Map<String, Value>, what: &str) -> Result<(), FixtureError> {
    match map.keys().next() {
        Some(key) => Err(err(format!("unknown key {key:?} in {what}"))),
        None => Ok(()),
    }
}

/// Turns a flat fixture message into a wire envelope: every key but `type` goes into the
/// payload; a message with no other key has no payload.
pub(super) fn envelope(flat: &Map<String, Value>) -> Value {
    let mut payload = flat.clone();
    let kind = payload.remove("type").unwrap_or(Value::Null);
    let mut envelope = Map::new();
    envelope.insert("type".into(), kind);
    if !payload.is_empty() {
        envelope.insert("payload".into(), Value::Object(payload));
    }
    Value::Object(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(steps: Value, assertions: Value) -> Result<Fixture, FixtureError> {
        Fixture::parse(
            json!({"schemaVersion": "1.0.0", "fixtureVersion": "1.0.0", "name": "n",
                "description": "d", "steps": steps, "assertions": assertions})
            .to_string()
            .as_bytes(),
        )
    }

    #[test]
    fn parses_every_action() {
        let parsed = fixture(
            json!([
                {"actor": "client", "action": "SEND", "msg": {"type": "JOIN", "participantId": "u", "name": "A"}},
                {"actor": "server", "action": "PROCESS_OPERATIONS", "count": 3},
                {"actor": "server", "action": "CLOCK", "now": 2000},
                {"actor": "client", "action": "ACK_PENDING", "clientReqId": "r", "client": "bob"},
            ]),
            json!([{"server.rev": 4}, {"clients.bob.serverRev": 4, "client.state.u.name": "A"}]),
        )
        .unwrap();
        assert_eq!(parsed.steps.len(), 4);
        assert_eq!(parsed.steps[3].client, "bob");
        assert_eq!(parsed.steps[1].action, Action::ServerProcessOperations(3));
        assert_eq!(parsed.assertions.len(), 3);
    }

    #[test]
    fn anything_not_understood_is_an_error() {
        let cases = [
            (
                json!([{"actor": "client", "action": "DANCE"}]),
                json!([]),
                "step 1: unknown step \"client DANCE\"",
            ),
            (
                json!([{"actor": "server", "action": "CLOCK", "now": 5, "extra": 1}]),
                json!([]),
                "step 1: unknown key \"extra\" in server CLOCK",
            ),
            (
                json!([{"actor": "server", "action": "PROCESS_OPERATIONS", "count": -1}]),
                json!([]),
                "step 1: server PROCESS_OPERATIONS: \"count\" must be a non-negative integer, not -1",
            ),
            (
                json!([]),
                json!([{"client.mood": "happy"}]),
                "unknown assertion path \"client.mood\"",
            ),
            (
                json!([{"actor": "client", "action": "SEND", "msg": {"name": "x"}}]),
                json!([]),
                "step 1: client SEND: msg needs a string \"type\"",
            ),
        ];
        for (steps, assertions, message) in cases {
            assert_eq!(
                fixture(steps, assertions),
                Err(FixtureError(message.into()))
            );
        }
        assert_eq!(
            Fixture::parse(br#"{"schemaVersion": "2.0.0"}"#),
            Err(FixtureError(
                "schemaVersion \"2.0.0\" is not supported (this runner reads \"1.0.0\")".into()
            ))
        );
    }

    #[test]
    fn flat_messages_become_envelopes() {
        let flat = json!({"type": "UPDATE", "patch": {"status": "away"}, "clientReqId": "r"});
        assert_eq!(
            envelope(flat.as_object().unwrap()),
            json!({"type": "UPDATE", "payload": {"patch": {"status": "away"}, "clientReqId": "r"}})
        );
        assert_eq!(
            envelope(json!({"type": "LEAVE"}).as_object().unwrap()),
            json!({"type": "LEAVE"})
        );
    }
}
