//! The second model (a game's entities, not presence) through the same fixture runner:
//! contiguous deltas, resume within the ring, gap and snapshot beyond it, inputs
//! rejected with a reason naming their `clientReqId`.

use std::path::Path;

use deltasync::conformance::{self, Fixture};
use deltasync::model::arena::Arena;

#[test]
fn every_arena_fixture_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arena");
    let files = conformance::fixture_files(&dir).unwrap();
    assert_eq!(files.len(), 6);
    for file in files {
        let fixture = Fixture::load(&file).unwrap();
        let outcome = conformance::run_in_process(&fixture, Arena::default());
        assert_eq!(outcome, Ok(()), "{}", file.display());
    }
}
