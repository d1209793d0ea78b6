//! Shared given/when/then helpers for the engine's tests.
#![allow(dead_code)] // each test binary uses its own subset

use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::sim::Timings;
use skald_engine::workflow::{Recorded, Release, State, Timestamp};

/// 2026-11-21T12:00:00Z.
pub const START: Timestamp = Timestamp(1_795_262_400_000);
/// Far more messages than any scenario needs: a bound, so a bug fails instead of spinning.
pub const MESSAGES_MAX: usize = 5_000;

/// The example release, user data inlined.
pub fn release() -> Release {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\necho {{SERVICE_NAME}} {{RELEASE_ID}}\n".into());
    release
}

/// A deterministic release id: `n` formatted into 26 alphanumerics.
pub fn id(n: u32) -> String {
    format!("01JTEST{n:019}")
}

/// Given: a simulated cloud provisioned for `release`, opted in and tagged.
pub fn world(release: &Release) -> Local {
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, release);
    local
}

/// When: messages are delivered until `deploy` ends (or the bound is hit, which fails the test).
pub fn run_until_end(local: &Local, deploy: &str) -> State {
    for _ in 0..MESSAGES_MAX {
        let state = local.state(deploy);
        if state.is_finished() {
            return state;
        }
        if local.deliver_next().is_none() {
            break;
        }
    }
    let state = local.state(deploy);
    assert!(state.is_finished(), "deploy {deploy} did not finish: {:#?}", types(&local.history(deploy)));
    state
}

/// When: messages are delivered until `deploy` has recorded an event of type `name`.
pub fn run_until_event(local: &Local, deploy: &str, name: &str) {
    for _ in 0..MESSAGES_MAX {
        if local.history(deploy).iter().any(|r| r.event.name() == name) {
            return;
        }
        assert!(local.deliver_next().is_some(), "queue ran dry before {name}: {:?}", types(&local.history(deploy)));
    }
    panic!("no {name} within {MESSAGES_MAX} messages");
}

/// Then: the event types of a history, in order.
pub fn types(history: &[Recorded]) -> Vec<&'static str> {
    history.iter().map(|r| r.event.name()).collect()
}

/// The event types, without the intent/outcome detail of effects and health polls.
pub fn milestones(history: &[Recorded]) -> Vec<&'static str> {
    types(history)
        .into_iter()
        .filter(|t| !matches!(*t, "CommandStarted" | "HealthObserved" | "CapacitySet" | "Detached" | "DetachConfirmed"))
        .collect()
}
