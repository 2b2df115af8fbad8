//! The soak's short run through the real binary: clients killed mid-frame, stalled and
//! reconnecting against a `deltasync serve` child with a tiny ring, and nothing lost.
//! (The long run is the same command with `--secs` or `DELTASYNC_SOAK_SECS`; see
//! `docs/reliability.md`.)

mod common;

#[test]
fn a_short_soak_with_faults_loses_nothing() {
    let (code, report) = common::soak(&[
        "--secs",
        "2",
        "--clients",
        "60",
        "--rooms",
        "3",
        "--ring-capacity",
        "8",
        "--fault-rate",
        "0.5",
        "--seed",
        "7",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report.lines().last(), Some("violations: 0"), "{report}");
    let answers = report
        .lines()
        .find(|line| line.starts_with("answers: "))
        .expect("an answers line");
    assert!(
        answers.ends_with(" rejected (each update exactly once)"),
        "{answers}"
    );
}

#[test]
fn twenty_sigkills_of_the_server_lose_and_duplicate_nothing() {
    let (code, report) = common::soak(&[
        "--kill-server",
        "--kills",
        "20",
        "--kill-interval-ms",
        "200",
        "--rooms",
        "2",
        "--seed",
        "3",
    ]);
    assert_eq!(code, Some(0), "{report}");
    let counters: Vec<&str> = report
        .lines()
        .filter(|line| {
            [
                "lost",
                "duplicated",
                "non-contiguous",
                "inconsistent",
                "unanswered",
            ]
            .iter()
            .any(|name| line.starts_with(&format!("{name}: ")))
        })
        .collect();
    assert_eq!(
        counters,
        [
            "lost: 0",
            "duplicated: 0",
            "non-contiguous: 0",
            "inconsistent: 0",
            "unanswered: 0"
        ],
        "{report}"
    );
    assert!(
        report.starts_with("soak --kill-server: 20 kills (SIGKILL) and restarts"),
        "{report}"
    );
    let acked = report
        .lines()
        .find_map(|line| line.strip_prefix("acknowledged updates: "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("an acknowledged line");
    assert!(acked > 0, "{report}");
}

#[test]
fn the_kill_server_checker_counts_what_a_server_without_durability_loses() {
    // The same run against memory storage: the checker must see the losses (a checker that
    // cannot fail proves nothing).
    let (code, report) = common::soak(&[
        "--kill-server",
        "--in-memory",
        "--kills",
        "3",
        "--kill-interval-ms",
        "400",
        "--rooms",
        "1",
        "--seed",
        "3",
    ]);
    assert_eq!(code, Some(1), "{report}");
    let lost: u64 = common::report_line(&report, "lost").parse().unwrap();
    assert!(lost > 0, "{report}");
    assert!(report.contains("result: VIOLATIONS"), "{report}");
}

/// The bad-actor phases with the attackers in a child process: the report names where
/// they ran, gives each window's latencies for both groups of probes and its CPU line
/// (the attackers' share counted from the child: a flood takes some CPU to write), the
/// phase's factor over the quiet windows either side, and the factors over the rounds.
/// One phase of one second, between two quiet windows, twice.
#[test]
fn bad_actors_apart_report_each_phase_and_where_the_cpu_went() {
    let (code, report) = common::soak(&[
        "--bad-actors",
        "--secs",
        "1",
        "--phases",
        "flood",
        "--actors-apart",
        "--repeat",
        "2",
        "--server-set",
        "server.flush_interval_us=0",
    ]);
    assert_eq!(code, Some(0), "{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 19, "{report}");
    assert!(
        lines[0].starts_with(
            "bad actors: 1 s windows, 2 round(s), 2 probes in the attacked room and 2 in a room of their own on the same shard; "
        ) && lines[0]
            .contains("default limits, each attacker from a loopback address of its own, server set server.flush_interval_us=0; open files ")
            && lines[0].ends_with("; attackers in a child process under SCHED_IDLE"),
        "{report}"
    );
    for round in [0, 1] {
        let at = 1 + round * 7;
        assert_eq!(lines[at], format!("round {} of 2", round + 1), "{report}");
        assert!(
            lines[at + 1].starts_with("quiet        in room: "),
            "{report}"
        );
        assert!(
            lines[at + 3].starts_with("flood        in room: "),
            "{report}"
        );
        assert!(lines[at + 3].contains("x); elsewhere: "), "{report}");
        assert!(lines[at + 3].ends_with("x)"), "{report}");
        assert!(
            lines[at + 5].starts_with("quiet        in room: "),
            "{report}"
        );
        for cpu in [lines[at + 2], lines[at + 4], lines[at + 6]] {
            assert!(
                cpu.trim_start()
                    .starts_with("cpu % of a core (ran/waited): shards "),
                "{report}"
            );
        }
    }
    assert_eq!(
        lines[15], "p99 over the quiet windows either side, median [range] over 2 round(s):",
        "{report}"
    );
    assert!(lines[16].starts_with("flood        in room "), "{report}");
    assert!(lines[16].contains(" of 2; elsewhere "), "{report}");
    assert_eq!(
        lines[17..],
        ["probe errors: 0", "violations: 0"],
        "{report}"
    );
}

#[test]
fn an_unknown_bad_actor_phase_is_refused_naming_the_phases() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(["soak", "--bad-actors", "--phases", "quiet,storm"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: invalid value 'storm' for '--phases <PHASES>'\n  \
             [possible values: quiet, slowloris, gib-header, byte-frames, busy-room, flood, all]\n"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_server_setting_for_the_bad_actors_is_refused_before_they_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args([
            "soak",
            "--bad-actors",
            "--server-set",
            "server.flush_interval=5",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: unknown key server.flush_interval (from --server-set)\n"
    );
}
