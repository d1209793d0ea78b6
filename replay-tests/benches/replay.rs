//! How fast a history replays: the figures behind "an on-call engineer can replay anything".
//!
//! `cargo bench -p skald-replay-tests --bench replay` prints, for a 100,000-event history file:
//! parsing the NDJSON, checking the hash chain, decoding and folding it (what `skald replay`
//! does), and folding with a state hash per event (what `--verify` adds). A real deploy cannot
//! record 100,000 events: its timeout (48 h at most) bounds it to about 1,500 health checks. So the
//! big file is a real deploy's start followed by health observations a second apart: it chains,
//! decodes, folds and state-hashes like a real history, but today's `decide` would not have polled
//! that often, so the full `--verify` (decision audit included) is measured on the longest history
//! a real deploy can record: 48 h of an instance that never becomes healthy.

mod common;

use skald_engine::adapters::sim::Fate;
use skald_engine::codec::{self, StoredEvent};
use skald_engine::replay;
use skald_engine::workflow::release::TIMEOUT_SECS_MAX;
use skald_engine::workflow::{evolve, State};
use skald_replay_tests::corpus;
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;
const RUNS: usize = 5;

fn main() {
    let big = common::long_history(EVENTS);
    let path = std::env::temp_dir().join(format!("skald-replay-bench-{}.ndjson", std::process::id()));
    std::fs::write(&path, codec::to_ndjson(&big)).expect("the bench file is written");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("history: {EVENTS} events, {:.1} MB of NDJSON ({})", bytes as f64 / 1e6, path.display());
    println!("{:<44} {:>10} {:>14}", "step (best of 5)", "time", "events/s");

    let parse = best(|| {
        let text = std::fs::read_to_string(&path).expect("readable");
        codec::from_ndjson(&text).expect("parses").len()
    });
    report("read + parse the NDJSON file", parse, EVENTS);
    report("check the hash chain", best(|| codec::verify_chain(&big).map(|()| big.len()).expect("intact")), EVENTS);
    let fold = best(|| replay::read(&big).expect("folds").0.len());
    report("decode + fold (skald replay)", fold, EVENTS);
    report("decode + fold + state hash per event", best(|| fold_with_state_hashes(&big)), EVENTS);
    report("whole replay from the file", parse + fold, EVENTS);

    let longest = longest_real_history();
    let verify = best(|| replay::verify(&longest).expect("verifies").events);
    report(&format!("full --verify, real {}-event history", longest.len()), verify, longest.len());
    let _ = std::fs::remove_file(&path);
}

/// The shortest of `RUNS` timings of `f`.
fn best(mut f: impl FnMut() -> usize) -> Duration {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(f());
            started.elapsed()
        })
        .min()
        .expect("RUNS > 0")
}

fn report(step: &str, took: Duration, events: usize) {
    let per_sec = events as f64 / took.as_secs_f64();
    println!("{step:<44} {:>8.1}ms {:>14.0}", took.as_secs_f64() * 1e3, per_sec);
}

fn fold_with_state_hashes(history: &[StoredEvent]) -> usize {
    let mut state = State::default();
    for stored in history {
        state = evolve(state, &codec::decode(stored).expect("decodes"));
        std::hint::black_box(codec::state_hash(&state));
    }
    history.len()
}

/// The longest history a real deploy records: the longest timeout, never healthy.
fn longest_real_history() -> Vec<StoredEvent> {
    let mut release = corpus::release();
    release.timeout = Some(TIMEOUT_SECS_MAX);
    release.services.remove("web");
    let local = skald_engine::adapters::local::Local::new(corpus::START, Default::default());
    skald_engine::adapters::local::provision_example(&local.cloud, &release);
    local.cloud.set_fate("worker", Fate::NeverHealthy);
    let id = corpus::id(99);
    local.submit(&release, &id);
    for _ in 0..100_000 {
        if local.state(&id).is_finished() {
            return local.store.history(&id);
        }
        local.deliver_next().expect("the deploy ends before the queue runs dry");
    }
    panic!("the 48 h deploy did not end");
}
