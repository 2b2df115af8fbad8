//! The report of `deltasync soak --bad-actors`: each round's windows, then each phase's
//! p99 factor over the quiet windows either side of it, as the median and the range over
//! the rounds, for the probes in the attacked room and for those in a room of their own.

use super::bad_actors::{Figures, Plan, Round, Window};
use super::probe::Latencies;

/// The target: an attack phase keeps the probes' p99 within this factor of quiet.
pub(crate) const TARGET: f64 = 1.5;

/// One attack phase of one round: its p99 factors (in the room, elsewhere).
#[derive(Debug, Clone, Copy)]
struct Factors {
    in_room: f64,
    elsewhere: f64,
}

/// The p99 of `phase` over the p99 of the quiet windows either side of it, pooled.
fn factor(phase: &Latencies, before: &Latencies, after: &Latencies) -> f64 {
    phase.ms(0.99) / before.merged(after).ms(0.99).max(0.001)
}

/// The factors of the attack window at `index` (odd: quiet windows sit at even indices).
fn factors_at(round: &Round, index: usize) -> Option<Factors> {
    let before = round.windows.get(index.checked_sub(1)?)?;
    let phase = round.windows.get(index)?;
    let after = round.windows.get(index + 1)?;
    Some(Factors {
        in_room: factor(&phase.in_room, &before.in_room, &after.in_room),
        elsewhere: factor(&phase.elsewhere, &before.elsewhere, &after.elsewhere),
    })
}

/// The median and the range of `values` (not empty), as `1.23x [1.01x, 1.45x]`, and how
/// many are within the target.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    let within = values.iter().filter(|&&v| v <= TARGET).count();
    format!(
        "{median:.2}x [{:.2}x, {:.2}x], within {TARGET}x in {within} of {n}",
        values[0],
        values[n - 1]
    )
}

/// One window's lines: the latencies of both groups (and, for an attack phase, their
/// factors), then the CPU.
fn window_lines(window: &Window, factors: Option<Factors>) -> String {
    let factor = |f: Option<f64>| f.map_or_else(String::new, |f| format!(" ({f:.2}x)"));
    format!(
        "{:<12} in room: {}{}; elsewhere: {}{}\n{:<12} {}\n",
        window.name,
        window.in_room.summary(),
        factor(factors.map(|f| f.in_room)),
        window.elsewhere.summary(),
        factor(factors.map(|f| f.elsewhere)),
        "",
        window.cpu.summary()
    )
}

/// The report.
pub(crate) fn report(plan: &Plan, figures: &Figures) -> String {
    let actors = if plan.apart {
        "in a child process under SCHED_IDLE"
    } else {
        "in this process"
    };
    let settings = if plan.server_sets.is_empty() {
        String::new()
    } else {
        format!(", server set {}", plan.server_sets.join(" "))
    };
    let rounds = figures.rounds.len();
    let mut out = format!(
        "bad actors: {} s windows, {rounds} round(s), {} probes in the attacked room and {} in a room of their own on the same shard; handshake timeout {} ms, default limits, each attacker from a loopback address of its own{settings}; open files {} / {}; attackers {actors}\n",
        plan.secs, plan.probes, plan.probes, plan.handshake_ms, figures.nofile.0, figures.nofile.1
    );
    for (number, round) in figures.rounds.iter().enumerate() {
        out += &format!("round {} of {rounds}\n", number + 1);
        for (index, window) in round.windows.iter().enumerate() {
            let factors = (index % 2 == 1).then(|| factors_at(round, index)).flatten();
            out += &window_lines(window, factors);
        }
    }
    out += &format!(
        "p99 over the quiet windows either side, median [range] over {rounds} round(s):\n"
    );
    let phases = figures
        .rounds
        .first()
        .map_or(0, |round| round.windows.len() / 2);
    for phase in 0..phases {
        let index = 2 * phase + 1;
        let all: Vec<Factors> = figures
            .rounds
            .iter()
            .filter_map(|round| factors_at(round, index))
            .collect();
        let Some(name) = figures.rounds[0].windows.get(index).map(|w| w.name) else {
            continue;
        };
        if all.is_empty() {
            continue;
        }
        let mut in_room: Vec<f64> = all.iter().map(|f| f.in_room).collect();
        let mut elsewhere: Vec<f64> = all.iter().map(|f| f.elsewhere).collect();
        out += &format!(
            "{name:<12} in room {}; elsewhere {}\n",
            spread(&mut in_room),
            spread(&mut elsewhere)
        );
    }
    out += &format!("probe errors: {}\n", figures.probe_errors);
    out += &format!("violations: {}\n", usize::from(figures.probe_errors > 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_the_median_and_the_range_and_counts_the_rounds_within_the_target() {
        assert_eq!(
            spread(&mut [2.0, 1.0, 1.2]),
            "1.20x [1.00x, 2.00x], within 1.5x in 2 of 3"
        );
        assert_eq!(
            spread(&mut [1.6, 1.4]),
            "1.50x [1.40x, 1.60x], within 1.5x in 1 of 2"
        );
    }
}
