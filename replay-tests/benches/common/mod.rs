//! What the bench binaries share: a long history built from a real deploy, and timing helpers.
#![allow(dead_code)] // each bench uses its own subset

use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::sim::{Fate, Timings};
use skald_engine::codec::{encode, state_hash, StoredEvent};
use skald_engine::workflow::health::HealthCounts;
use skald_engine::workflow::{evolve, Event, Recorded, Release, Timestamp};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const START: Timestamp = Timestamp(1_795_262_400_000);
pub const RELEASE_ID: &str = "01JBENCH000000000000000001";

/// A release that stays in its health loop for 48 hours: web never becomes healthy.
pub fn patient_release() -> Release {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\n".into());
    release.timeout = Some(172_800);
    release
}

/// A world with the patient release deployed up to its first health check.
pub fn deploy_to_first_health_check() -> Local {
    let release = patient_release();
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, &release);
    local.cloud.set_fate("-web-", Fate::NeverHealthy);
    local.submit(&release, RELEASE_ID);
    for _ in 0..1_000 {
        if local.history(RELEASE_ID).iter().any(|r| r.event.name() == "HealthObserved") {
            return local;
        }
        local.deliver_next().expect("the deploy waits on its queue");
    }
    panic!("no health check within 1,000 messages");
}

/// A health check as the runner records it, the web service still launching.
pub fn health_check() -> Event {
    let counts = |healthy, launching| HealthCounts { healthy, launching, terminating: 0, ..HealthCounts::default() };
    Event::HealthObserved { services: BTreeMap::from([("web".to_string(), counts(0, 3)), ("worker".to_string(), counts(1, 0))]) }
}

/// A real deploy's history up to its first health check, then health checks (1 s apart) up to
/// `length` events, encoded and hash-chained as the runner writes them.
pub fn long_history(length: usize) -> Vec<StoredEvent> {
    let local = deploy_to_first_health_check();
    let mut stored = local.store.history(RELEASE_ID);
    let mut state = local.state(RELEASE_ID);
    let last = stored.last().expect("a history").clone();
    let (mut hash, mut at) = (last.hash, last.at);
    while stored.len() < length {
        at = at.plus_ms(1_000);
        let recorded = Recorded { seq: stored.len() as u64 + 1, at, event: health_check() };
        state = evolve(state, &recorded);
        let event = encode(&recorded, &hash, state_hash(&state));
        hash = event.hash.clone();
        stored.push(event);
    }
    stored
}

/// The fastest of `runs` timings of `f`: the least disturbed by other work on the machine.
pub fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = f();
        let took = started.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    best.expect("runs > 0")
}

/// The machine, for the figures' context.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
