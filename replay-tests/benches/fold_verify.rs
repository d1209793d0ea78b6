//! Fold and verify throughput on a 100,000-event history: how fast an auditor (or a runner
//! without a snapshot) reads a deploy back. `cargo bench -p skald-replay-tests --bench fold_verify`

mod common;

use skald_engine::codec::{decode, read_history, verify_chain};
use skald_engine::workflow::{fold, Recorded};

const EVENTS: usize = 100_000;
const RUNS: usize = 5;

fn main() {
    let history = long_history_checked();
    println!("fold and verify, {EVENTS} events ({}), best of {RUNS}", common::machine());
    println!("| operation | time | events/s |");
    println!("|---|---:|---:|");
    let report = |name: &str, took: std::time::Duration| {
        println!("| {name} | {:.1} ms | {:.0} |", took.as_secs_f64() * 1e3, EVENTS as f64 / took.as_secs_f64());
    };
    let (took, _) = common::best_of(RUNS, || verify_chain(&history).expect("the chain holds"));
    report("verify the hash chain (`codec::verify_chain`)", took);
    let (took, decoded) = common::best_of(RUNS, || history.iter().map(|e| decode(e).expect("decodes")).collect::<Vec<Recorded>>());
    report("decode every event (`codec::decode`)", took);
    let (took, _) = common::best_of(RUNS, || fold(&decoded).expect("folds"));
    report("fold decoded events (`workflow::fold`)", took);
    let (took, _) = common::best_of(RUNS, || read_history(&history).expect("reads"));
    report("all three (`codec::read_history`)", took);
}

fn long_history_checked() -> Vec<skald_engine::codec::StoredEvent> {
    let history = common::long_history(EVENTS);
    assert_eq!(history.len(), EVENTS);
    history
}
