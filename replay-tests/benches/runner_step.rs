//! Runner step latency with the in-memory store at history lengths 10, 1,000 and 10,000 (it must
//! stay flat: a step reads the latest snapshot and the events after it), and the store operations
//! each step and each whole deploy costs: the numbers that decide DynamoDB's bill.
//! `cargo bench -p skald-replay-tests --bench runner_step`

mod common;

use common::RELEASE_ID;
use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::memory::StoreStats;
use skald_engine::adapters::sim::Timings;
use skald_engine::codec::{encode, read_history, Snapshot};
use skald_engine::message::Message;
use skald_engine::ports::{Append, EventStore};
use skald_engine::runner::SNAPSHOT_EVERY_EVENTS;
use skald_engine::workflow::{evolve, Recorded};
use std::time::{Duration, Instant};

const LENGTHS: [u64; 3] = [10, 1_000, 10_000];
/// Health-check steps timed at each length.
const STEPS: usize = 500;

/// Appends health checks (1 s apart) to the deploy until its history holds `length` events, with
/// a snapshot at every multiple of `SNAPSHOT_EVERY_EVENTS`, exactly as the runner writes them.
fn extend_to(local: &Local, length: u64) {
    let stored = local.store.history(RELEASE_ID);
    let (_, mut state) = read_history(&stored).expect("the history reads");
    let mut hash = stored.last().expect("a history").hash.clone();
    while state.seq < length {
        let before = state.seq;
        let chunk_end = length.min((before / SNAPSHOT_EVERY_EVENTS + 1) * SNAPSHOT_EVERY_EVENTS);
        let mut events = Vec::new();
        for seq in before + 1..=chunk_end {
            let recorded = Recorded { seq, at: state.at.plus_ms(1_000), event: common::health_check() };
            state = evolve(state, &recorded);
            let event = encode(&recorded, &hash, skald_engine::codec::state_hash(&state));
            hash = event.hash.clone();
            events.push(event);
        }
        let crossed = before / SNAPSHOT_EVERY_EVENTS != state.seq / SNAPSHOT_EVERY_EVENTS;
        let snapshot = crossed.then(|| Snapshot::of(&state, &hash));
        let append = Append { deploy: RELEASE_ID.into(), events, lock: None, index: None, snapshot };
        skald_engine::adapters::memory::block_on(local.store.append(append)).expect("the append lands");
    }
    // The next health check is due 120 s after the last one; one wake for it.
    local.clock.advance_to(state.at.plus_secs(120));
    local.queue.lose_all();
    local.queue.push(&Message::Wake { deploy: RELEASE_ID.into(), seq: state.seq }, 0);
}

fn per_step(before: StoreStats, after: StoreStats, steps: usize) -> [f64; 4] {
    let per = |a: u64, b: u64| (a - b) as f64 / steps as f64;
    [
        per(after.loads, before.loads),
        per(after.events_read, before.events_read),
        per(after.appends, before.appends),
        per(after.events_written, before.events_written),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    println!("runner step latency, in-memory store ({}), {STEPS} health-check steps per length", common::machine());
    println!("| history length | median µs | p90 µs | p99 µs | loads/step | events read/step | appends/step | events written/step |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for length in LENGTHS {
        let local = common::deploy_to_first_health_check();
        extend_to(&local, length);
        let before = local.store.stats();
        let mut took: Vec<Duration> = (0..STEPS)
            .map(|_| {
                let started = Instant::now();
                let handled = local.deliver_next().expect("the deploy keeps its timer");
                let took = started.elapsed();
                assert!(handled.result.is_ok(), "{:?}", handled.result);
                took
            })
            .collect();
        let stats = per_step(before, local.store.stats(), STEPS);
        took.sort();
        println!(
            "| {length} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} |",
            percentile(&took, 0.5),
            percentile(&took, 0.9),
            percentile(&took, 0.99),
            stats[0],
            stats[1],
            stats[2],
            stats[3]
        );
    }
    whole_deploys();
}

/// Store operations of whole deploys of the example release (two services, a canary): a first
/// release, then a second that replaces it (detaching, draining and deleting the first's ASGs).
fn whole_deploys() {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\n".into());
    let local = Local::new(common::START, Timings::default());
    provision_example(&local.cloud, &release);
    println!();
    println!("store operations per deploy (example release, in-memory store counting what DynamoDB would be asked)");
    println!("| deploy | messages | loads | events read | appends (TransactWriteItems) | events written | events in history |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, id) in [("first release", "01JBENCH000000000000000010"), ("second release, replacing it", "01JBENCH000000000000000011")] {
        let before = local.store.stats();
        local.submit(&release, id);
        let mut messages = 0;
        while !local.state(id).is_finished() {
            local.deliver_next().expect("the deploy runs to its end");
            messages += 1;
        }
        let after = local.store.stats();
        println!(
            "| {name} | {messages} | {} | {} | {} | {} | {} |",
            after.loads - before.loads,
            after.events_read - before.events_read,
            after.appends - before.appends,
            after.events_written - before.events_written,
            local.store.history(id).len()
        );
    }
}
