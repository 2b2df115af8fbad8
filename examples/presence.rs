//! Two presence clients in one room: joins, an optimistic update and its ack, a reconnect
//! that resumes by revision.
//!
//! ```sh
//! cargo run --example presence                        # starts its own server on loopback
//! cargo run --example presence -- ws://127.0.0.1:7373/rooms/demo   # or uses yours
//! ```

use std::time::Duration;

use deltasync::client::{Connector, ConnectorError};
use deltasync::config::Config;
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
use deltasync::server::Server;

fn show(who: &str, client: &Connector<Presence>) {
    let replica = client.replica();
    let people: Vec<String> = replica
        .visible()
        .map(|state| {
            state
                .participants()
                .values()
                .map(|p| format!("{} ({:?})", p.name, p.status))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{who:>5} sees rev {}: {} [{} pending]",
        replica.server_rev(),
        people.join(", "),
        replica.pending().len()
    );
}

fn main() -> Result<(), ConnectorError> {
    let wait = Duration::from_secs(5);
    let mut own_server = None;
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => {
            let mut config = Config::default();
            config.server.listen = "127.0.0.1:0".parse().expect("an address");
            let server =
                Server::presence(config)
                    .start()
                    .map_err(|source| ConnectorError::Connect {
                        address: "127.0.0.1:0".into(),
                        source,
                    })?;
            let url = format!("ws://{}/rooms/demo", server.local_addr());
            println!("started a server: {url}");
            own_server = Some(server);
            url
        }
    };

    let mut alice = Connector::<Presence>::connect(&url, "alice", "Alice")?;
    let mut bob = Connector::<Presence>::connect(&url, "bob", "Bob")?;
    alice.poll_until(wait, |r| r.server_rev() >= bob.replica().server_rev())?;
    show("alice", &alice);

    let away = PresenceInput {
        patch: Patch {
            status: Some(Status::Away),
            ..Patch::default()
        },
    };
    let id = alice.update(away)?;
    show("alice", &alice); // away at once, one pending
    alice.poll_until(wait, |r| r.was_acked(&id))?;
    show("alice", &alice); // acknowledged
    let rev = alice.replica().server_rev();
    bob.poll_until(wait, |r| r.server_rev() >= rev)?;
    show("bob", &bob);

    println!(
        "bob reconnects and resumes from rev {}",
        bob.replica().server_rev()
    );
    bob.reconnect()?;
    show("bob", &bob);

    alice.close();
    bob.close();
    if let Some(server) = own_server {
        server.shutdown();
    }
    Ok(())
}
