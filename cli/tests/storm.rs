//! The reconnect storm, small: 300 clients of one room drop and reconnect at once, half
//! within the ring and half beyond it, through the real binary (`deltasync soak --storm`,
//! whose clients run in a child process). One snapshot encoding for the 150 that need
//! one, every client current with the room's state, and a client of another room served
//! without an error. The 10,000-client run is the same command without `--clients`.

mod common;

#[test]
fn three_hundred_clients_reconnecting_at_once_cost_one_snapshot_and_all_end_current() {
    let (code, report) = common::soak(&["--storm", "--clients", "300"]);
    assert_eq!(code, Some(0), "{report}");
    let line = |prefix: &str| {
        report
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {report}"))
            .to_owned()
    };
    assert_eq!(
        line("snapshots encoded"),
        "snapshots encoded during the storm: 1"
    );
    assert_eq!(line("other room, errors"), "other room, errors: 0");
    // The 150 resuming beyond the ring got a gap each, and nobody else did.
    assert!(line("reconnect: ").ends_with(" 150"), "{report}");
    assert_eq!(report.lines().last(), Some("violations: 0"), "{report}");
}
