//! Auditing a history against today's code: would `decide` have done what the history says?
//!
//! A history holds three kinds of events:
//! - inputs from outside (the request, a halt, news that the lock was freed), which no code of
//!   this deploy decided;
//! - decisions: events `decide` emitted, or the `CommandStarted` that announced an effect;
//! - outcomes: what the cloud answered to a command.
//!
//! For every decision, today's `decide`, on the state folded so far and at the instant the event
//! was recorded, must give the same events, or the same command with the same payload. Every
//! outcome must answer the command that was due: the right kind of event for it, the right service
//! and ASG, the right attempt count, and where the outcome carries nothing from the cloud (a
//! launch that succeeded, a lock taken), exactly the events `record` writes. What the cloud said
//! (health counts, resources found, error messages) cannot be re-derived and is taken as recorded.
//!
//! The runner stamps decisions with the instant it decided at, which is what makes this possible:
//! `decide(state, at)` is the very call the runner made.

use super::command::{Command, Outcome};
use super::decide::{decide, Decision};
use super::event::{Event, Recorded};
use super::outcome::record;
use super::state::{check_shape, evolve, State};
use super::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// Where a history and today's code part ways.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// The first event that today's code would not have recorded.
    pub seq: u64,
    /// The events recorded from `seq` on, as many as the expectation covers.
    pub recorded: Vec<Event>,
    pub expected: Expected,
}

/// What today's code would have recorded at that point instead.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expected {
    /// `decide` emits these events.
    Events { events: Vec<Event> },
    /// `decide` carries out this command: its intent, or an outcome of it, comes next.
    Command { command: Box<Command> },
    /// `decide` waits: nothing is due before `until`.
    Wait { until: Timestamp },
    /// The deploy has ended: nothing may follow.
    Nothing,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded: Vec<String> = self.recorded.iter().map(|e| format!("{}: {e}", e.name())).collect();
        write!(f, "seq {}: recorded [{}], but today's decide ", self.seq, recorded.join("; "))?;
        match &self.expected {
            Expected::Events { events } => {
                let expected: Vec<String> = events.iter().map(|e| format!("{}: {e}", e.name())).collect();
                write!(f, "records [{}]", expected.join("; "))
            }
            Expected::Command { command } => write!(f, "runs `{command}` ({})", command.name()),
            Expected::Wait { until } => write!(f, "waits until {until}"),
            Expected::Nothing => write!(f, "does nothing: the deploy has ended"),
        }
    }
}

/// Checks every decision and outcome in `history` (which must fold: see `state::fold`) against
/// today's `decide` and `record`. Returns the first divergence.
pub fn check(history: &[Recorded]) -> Result<(), Divergence> {
    let mut state = State::default();
    let mut rest = history;
    while !rest.is_empty() {
        let explained = explain(&state, rest)?;
        for recorded in &rest[..explained] {
            assert!(check_shape(&state, recorded).is_ok(), "audit::check on a history that does not fold");
            state = evolve(state, recorded);
        }
        rest = &rest[explained..];
    }
    Ok(())
}

/// How many events at the head of `rest` one input or one decision of today's code accounts for.
fn explain(state: &State, rest: &[Recorded]) -> Result<usize, Divergence> {
    let first = &rest[0];
    let input = matches!(
        first.event,
        Event::DeployRequested { .. } | Event::UndeployRequested { .. } | Event::HaltRequested { .. } | Event::LockFreed { .. }
    );
    if input {
        return Ok(1);
    }
    match decide(state, first.at) {
        Decision::Emit(events) => expect_exactly(rest, Expected::Events { events: events.clone() }, &events),
        Decision::Act(command) if command.needs_intent() && state.pending.as_ref() != Some(&command) => {
            let started = [Event::CommandStarted { command: command.clone() }];
            expect_exactly(rest, Expected::Command { command: Box::new(command) }, &started)
        }
        Decision::Act(command) => expect_outcome(state, &command, rest),
        Decision::Wait { until } => Err(diverged(rest, 1, Expected::Wait { until })),
        Decision::Finished => Err(diverged(rest, 1, Expected::Nothing)),
    }
}

/// The next events are `events`, recorded together at the instant of the first.
fn expect_exactly(rest: &[Recorded], expected: Expected, events: &[Event]) -> Result<usize, Divergence> {
    let at = rest[0].at;
    let matches = rest.len() >= events.len() && rest.iter().zip(events).all(|(r, e)| r.event == *e && r.at == at);
    if matches {
        Ok(events.len())
    } else {
        Err(diverged(rest, events.len(), expected))
    }
}

/// The next event answers `command`.
fn expect_outcome(state: &State, command: &Command, rest: &[Recorded]) -> Result<usize, Divergence> {
    let first = &rest[0];
    let expected = || Expected::Command { command: Box::new(command.clone()) };
    if let Event::CommandFailed { command: name, attempt, .. } = &first.event {
        let answers = name == command.name() && *attempt == state.retry.attempts + 1;
        return if answers { Ok(1) } else { Err(diverged(rest, 1, expected())) };
    }
    // The outcomes whose events carry nothing from the cloud are re-recorded and compared whole.
    let exact = |outcome: Outcome| record(state, command, outcome, first.at).events;
    let answers = match command {
        Command::AcquireLock { .. } => {
            return match &first.event {
                Event::LockDenied { .. } => Ok(1),
                _ => expect_exactly(rest, expected(), &exact(Outcome::LockAcquired)),
            };
        }
        Command::ReleaseLock { .. } => return expect_exactly(rest, expected(), &exact(Outcome::LockReleased)),
        Command::Launch { .. }
        | Command::CancelDeploy { .. }
        | Command::SetCapacity { .. }
        | Command::ShiftTraffic { .. }
        | Command::RemoveRule { .. }
        | Command::Detach { .. }
        | Command::Delete { .. } => {
            return expect_exactly(rest, expected(), &exact(Outcome::Done(Ok(()))));
        }
        Command::CheckDetached { .. } => return expect_exactly(rest, expected(), &exact(Outcome::Detached(Ok(true)))),
        // What the log held is taken as recorded, like what the cloud said.
        Command::FindLiveRelease { .. } => matches!(first.event, Event::LiveReleaseFound { .. }),
        Command::ResolveResources { .. } => match &first.event {
            Event::UndeployPlanned { .. } => state.undeploy.is_some(),
            Event::ResourcesResolved { resolved } => {
                let wanted: BTreeSet<&String> = state.release().services.keys().collect();
                resolved.services.keys().collect::<BTreeSet<_>>() == wanted
            }
            Event::ResourcesRejected { .. } => true,
            _ => false,
        },
        Command::CreateTargetGroup { service, .. } => {
            matches!(&first.event, Event::TargetGroupCreated { service: created, .. } if created == service)
        }
        Command::ObserveHealth { targets } => match &first.event {
            Event::HealthObserved { services } if services.keys().eq(targets.iter().map(|t| &t.service).collect::<BTreeSet<_>>()) => {
                // An alarm that fired is recorded with the check, at its instant.
                let alarm = rest.get(1).filter(|r| r.at == first.at && matches!(r.event, Event::AlarmFiring { .. }));
                return Ok(1 + usize::from(alarm.is_some()));
            }
            _ => false,
        },
    };
    if answers {
        Ok(1)
    } else {
        Err(diverged(rest, 1, expected()))
    }
}

fn diverged(rest: &[Recorded], covered: usize, expected: Expected) -> Divergence {
    let recorded = rest.iter().take(covered.max(1)).map(|r| r.event.clone()).collect();
    Divergence { seq: rest[0].seq, recorded, expected }
}
