//! Whole deploys through the real runner, on the in-memory store and queue and a virtual clock,
//! against any cloud: the workflow's waits pass at once while every cloud call is real.
//!
//! Every loop is bounded ([`MESSAGES_MAX`]): a deploy that does not get there fails the test
//! instead of spinning.

use crate::adapters::local::{self, MemoryRunner};
use crate::adapters::memory::VirtualClock;
use crate::codec::read_history;
use crate::message::Message;
use crate::ports::{Clock, Cloud};
use crate::workflow::{Event, Recorded, Release, State, Timestamp};

/// 2026-11-21T12:00:00Z.
pub const T0: Timestamp = Timestamp(1_795_262_400_000);
/// Far more messages than a deploy needs.
pub const MESSAGES_MAX: usize = 2_000;

/// A runner for `cloud` whose clock starts at [`T0`].
pub fn memory_runner<C: Cloud>(cloud: C) -> MemoryRunner<C> {
    local::memory_runner(VirtualClock::starting_at(T0), cloud)
}

/// Queues a request to deploy `release` as `release_id`, made now.
pub fn submit<C>(runner: &MemoryRunner<C>, release: &Release, release_id: &str) {
    let message =
        Message::DeployRequested { release: Box::new(release.clone()), release_id: release_id.into(), created_at: runner.clock.now() };
    runner.queue.push(&message, 0);
}

/// Queues an on-call halt of `release`'s project-config.
pub fn halt<C>(runner: &MemoryRunner<C>, release: &Release) {
    let message =
        Message::HaltRequested { project: release.project_name.clone(), config: release.config_name.clone(), reason: "test".into() };
    runner.queue.push(&message, 0);
}

/// Queues an undeploy of `release`'s project-config as `undeploy_id`.
pub fn undeploy<C>(runner: &MemoryRunner<C>, release: &Release, undeploy_id: &str) {
    runner.queue.push(&Message::undeploy_of(release, undeploy_id, "test"), 0);
}

/// Handles the next message (see `local::deliver_next_to`); `false` when the queue is empty.
pub async fn deliver_next<C: Cloud>(runner: &MemoryRunner<C>) -> bool {
    local::deliver_next_to(runner).await.is_some()
}

/// The recorded history of `deploy`, and the state it folds to.
pub fn history<C>(runner: &MemoryRunner<C>, deploy: &str) -> (Vec<Recorded>, State) {
    read_history(&runner.store.history(deploy)).expect("the history reads back")
}

/// Delivers messages until `deploy` ends; its final state.
pub async fn run_until_end<C: Cloud>(runner: &MemoryRunner<C>, deploy: &str) -> State {
    for _ in 0..MESSAGES_MAX {
        let state = history(runner, deploy).1;
        if state.is_finished() {
            return state;
        }
        assert!(deliver_next(runner).await, "the queue ran dry before {deploy} ended: {:?}", failures(runner, deploy));
    }
    panic!("deploy {deploy} did not finish within {MESSAGES_MAX} messages");
}

/// Delivers messages until `deploy` has recorded an event that `wanted` accepts.
pub async fn run_until_event<C: Cloud>(runner: &MemoryRunner<C>, deploy: &str, wanted: impl Fn(&Event) -> bool) {
    for _ in 0..MESSAGES_MAX {
        if history(runner, deploy).0.iter().any(|r| wanted(&r.event)) {
            return;
        }
        assert!(deliver_next(runner).await, "the queue ran dry before the event: {:?}", failures(runner, deploy));
    }
    panic!("no such event in {deploy} within {MESSAGES_MAX} messages");
}

/// The problems a deploy's `ResourcesRejected` named, each as `path: message`.
pub fn resource_problems<C>(runner: &MemoryRunner<C>, deploy: &str) -> Vec<String> {
    let events = history(runner, deploy).0;
    let rejected = events.iter().filter_map(|r| if let Event::ResourcesRejected { problems } = &r.event { Some(problems) } else { None });
    rejected.flatten().map(ToString::to_string).collect()
}

/// The failures a history recorded, for assertion messages.
pub fn failures<C>(runner: &MemoryRunner<C>, deploy: &str) -> Vec<String> {
    let events = history(runner, deploy).0;
    events
        .iter()
        .filter(|r| matches!(r.event, Event::CommandFailed { .. } | Event::TeardownAbandoned { .. } | Event::DeployFailed { .. }))
        .map(|r| r.event.to_string())
        .collect()
}
