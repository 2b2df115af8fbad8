//! Conformance fixtures: the protocol's scenarios as data, executed.
//!
//! A fixture (`fixtures/NNN-name.json`) lists steps taken by a client and a server and
//! assertions checked at the end; the format is that of `protocol.md` (ws-kit's delta-sync
//! fixtures), with a few extensions of this project for multi-client scenarios. The runner
//! executes every step against the real [`Room`](crate::room::Room),
//! [`Session`](crate::session::Session) and client [`Replica`](crate::client::Replica)
//! (in process, on a test clock: [`InProcess`]), or against any [`FixtureServer`].
//! A step or assertion the runner does not understand makes the fixture fail to load;
//! it is never skipped.
//!
//! See `docs/conformance.md` for the format and how to run it.

mod fixture;
mod model;
#[cfg(feature = "blocking-client")]
mod remote;
mod runner;
mod server;

use std::path::{Path, PathBuf};

pub use fixture::{Action, DEFAULT_CLIENT, Fixture, FixtureError, SCHEMA_VERSION, Step};
pub use model::ConformanceModel;
#[cfg(feature = "blocking-client")]
pub use remote::{Remote, not_drivable};
pub use runner::{Failure, run};
pub use server::{FixtureServer, InProcess, START_MS};

use crate::model::presence::Presence;
use crate::room::RoomConfig;

/// The outcome of one fixture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file's name.
    pub file: String,
    /// What happened.
    pub outcome: Outcome,
}

/// How a fixture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step and assertion held.
    Passed,
    /// The first failure (including a file that does not load).
    Failed(Failure),
    /// Not run: this runner cannot drive one of its steps (over the wire), and why.
    NotRun(String),
}

impl From<Result<(), Failure>> for Outcome {
    fn from(result: Result<(), Failure>) -> Self {
        result.map_or_else(Outcome::Failed, |()| Outcome::Passed)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn load(path: &Path) -> Result<Fixture, Failure> {
    Fixture::load(path).map_err(|e| Failure {
        step: None,
        message: e.to_string(),
    })
}

/// The fixture files of `dir` (`*.json`), sorted by name.
///
/// # Errors
///
/// If the directory cannot be read.
pub fn fixture_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs one fixture file with the presence model on a fresh in-process server.
pub fn run_file_in_process(path: &Path) -> Report {
    let outcome = load(path)
        .and_then(|fixture| run_in_process::<Presence>(&fixture, Presence::default()))
        .into();
    Report {
        file: file_name(path),
        outcome,
    }
}

/// Runs one fixture file with the presence model against the server at `url`, in a room
/// of its own, over real WebSocket connections (see [`Remote`]).
#[cfg(feature = "blocking-client")]
pub fn run_file_over_wire(path: &Path, url: &str) -> Report {
    let file = file_name(path);
    let fixture = match load(path) {
        Ok(fixture) => fixture,
        Err(failure) => {
            return Report {
                file,
                outcome: Outcome::Failed(failure),
            };
        }
    };
    if let Some(reason) = not_drivable(&fixture) {
        return Report {
            file,
            outcome: Outcome::NotRun(reason),
        };
    }
    let suffix =
        crate::epoch::Epoch::random().map_or_else(|_| "0".into(), |e| e.as_str()[..8].to_owned());
    let mut server = Remote::new(url, &format!("conformance-{}-{suffix}", fixture.name));
    let outcome = run::<Presence>(&fixture, &mut server).into();
    Report { file, outcome }
}

/// Runs `fixture` on a fresh in-process server whose room starts as `initial`.
///
/// # Errors
///
/// The fixture's first [`Failure`].
pub fn run_in_process<M: ConformanceModel>(fixture: &Fixture, initial: M) -> Result<(), Failure> {
    let mut config = RoomConfig::default();
    if let Some(capacity) = fixture.ring_capacity {
        config.ring_capacity = crate::room::ring_capacity(capacity).map_err(|e| Failure {
            step: None,
            message: e.to_string(),
        })?;
    }
    let mut server = InProcess::new(initial, config).map_err(|message| Failure {
        step: None,
        message,
    })?;
    run(fixture, &mut server)
}
