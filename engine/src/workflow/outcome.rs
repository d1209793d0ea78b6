//! Turning the outcome of a command into events, and saying when to look again.
//!
//! The runner carries out a command and hands the outcome here; what gets recorded is decided
//! without I/O, like everything else in the workflow.

use super::command::{Command, Outcome};
use super::decide::{closing_event, DETACH_POLL_SECS};
use super::event::Event;
use super::health;
use super::resources;
use super::settings::Settings;
use super::state::{State, TeardownStage};
use super::time::Timestamp;
use std::collections::BTreeMap;

/// What to record after a command, and what the runner does next.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub events: Vec<Event>,
    pub next: Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Decide again at once.
    Continue,
    /// Nothing changed: look again after this many milliseconds.
    WaitMs(u64),
}

fn recorded(events: Vec<Event>) -> Recording {
    Recording { events, next: Next::Continue }
}

/// The events an outcome of `command` adds to the history of `state`.
///
/// Panics when the outcome does not belong to the command: that is a bug in the runner.
pub fn record(state: &State, command: &Command, outcome: Outcome, now: Timestamp) -> Recording {
    let failed = |error| Event::CommandFailed { command: command.name().to_string(), error, attempt: state.retry.attempts + 1 };
    match (command, outcome) {
        (Command::AcquireLock { project, config, lease_until }, Outcome::LockAcquired) => {
            recorded(vec![Event::LockAcquired { project: project.clone(), config: config.clone(), lease_until: *lease_until }])
        }
        (Command::AcquireLock { .. }, Outcome::LockHeld { holder }) => recorded(vec![Event::LockDenied { holder }]),
        (Command::CancelDeploy { deploy, .. }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::ConcurrentDeployCancelled { holder: deploy.clone() },
            Err(error) => failed(error),
        }]),
        (Command::FindLiveRelease { .. }, Outcome::LiveFound(found)) => recorded(vec![match found {
            Ok(Some((release_id, release))) => Event::LiveReleaseFound { release_id: Some(release_id), release: Some(release) },
            Ok(None) => Event::LiveReleaseFound { release_id: None, release: None },
            Err(error) => failed(error),
        }]),
        (Command::ResolveResources { .. }, Outcome::Looked(looked)) if state.undeploy.is_some() => recorded(vec![match looked {
            Ok(lookup) => {
                let (asgs, rules) = resources::plan_undeploy(state.release(), &lookup);
                Event::UndeployPlanned { asgs, rules }
            }
            Err(error) => failed(error),
        }]),
        (Command::ResolveResources { query }, Outcome::Looked(looked)) => {
            let request = state.request.as_ref().expect("resolving without a request");
            let settings =
                Settings { ami_owners: query.ami_owners.clone(), ..Settings::judging(request.settings.as_ref(), &request.release) };
            let check = |lookup| resources::check(&request.release, &request.release_id, &lookup, &settings);
            recorded(vec![match looked.map(check) {
                Ok(Ok(resolved)) => Event::ResourcesResolved { resolved: Box::new(resolved) },
                Ok(Err(problems)) => Event::ResourcesRejected { problems },
                Err(error) => failed(error),
            }])
        }
        (Command::Launch { spec }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::ServiceLaunched { service: spec.service.clone(), asg: spec.asg_name.clone(), desired: spec.desired_capacity },
            Err(error) => failed(error),
        }]),
        (Command::CreateTargetGroup { service, .. }, Outcome::Created(created)) => recorded(vec![match created {
            Ok(target_group) => Event::TargetGroupCreated { service: service.clone(), target_group },
            Err(error) => failed(error),
        }]),
        (Command::ShiftTraffic { service, weight, .. }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::TrafficShifted { service: service.clone(), weight: *weight },
            Err(error) => failed(error),
        }]),
        (Command::SetCapacity { service, asg, min_size, desired }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::CapacitySet { service: service.clone(), asg: asg.clone(), min_size: *min_size, desired: *desired },
            Err(error) => failed(error),
        }]),
        (Command::ObserveHealth { targets }, Outcome::Health(reports)) => match reports {
            Err(error) => recorded(vec![failed(error)]),
            Ok(reports) => {
                let counts: BTreeMap<String, health::HealthCounts> = targets
                    .iter()
                    .map(|target| {
                        let report = reports.get(&target.service).cloned().unwrap_or_default();
                        let lbs: Vec<String> = target.elbs.iter().chain(&target.target_groups).cloned().collect();
                        (target.service.clone(), health::count(&report, &lbs))
                    })
                    .collect();
                // Every check is recorded, changed or not. The history then shows the deploy alive
                // at each poll, so a sweeper can tell a stalled deploy from a patient one; a
                // duplicate wake chain loses the race to append and dies out instead of polling
                // beside the real one; and a success after failures ends their run, so scattered
                // API errors never add up to giving up.
                // An alarm gating a shift that is in ALARM stops the deploy, recorded with the check.
                let firing = targets.iter().find_map(|t| {
                    let alarms = &reports.get(&t.service)?.alarms_firing;
                    (!alarms.is_empty()).then(|| Event::AlarmFiring { service: t.service.clone(), alarms: alarms.clone() })
                });
                recorded(std::iter::once(Event::HealthObserved { services: counts }).chain(firing).collect())
            }
        },
        (Command::RemoveRule { asg, .. }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::RuleRemoved { asg: asg.clone() },
            Err(error) => failed(error),
        }]),
        (Command::Detach { asg, .. }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::Detached { asg: asg.clone() },
            Err(error) => failed(error),
        }]),
        (Command::CheckDetached { asg, .. }, Outcome::Detached(detached)) => match detached {
            Ok(true) => {
                let since = state.teardown.iter().find(|t| t.asg == *asg).map(|t| match t.stage {
                    TeardownStage::AwaitDetach { since } => since,
                    _ => now,
                });
                let waited_ms = now.ms_since(since.unwrap_or(now));
                recorded(vec![Event::DetachConfirmed { asg: asg.clone(), waited_ms, expired: false }])
            }
            Ok(false) => Recording { events: Vec::new(), next: Next::WaitMs(DETACH_POLL_SECS * 1000) },
            Err(error) => recorded(vec![failed(error)]),
        },
        (Command::Delete { asg, .. }, Outcome::Done(done)) => recorded(vec![match done {
            Ok(()) => Event::AsgDeleted { asg: asg.clone() },
            Err(error) => failed(error),
        }]),
        (Command::ReleaseLock { .. }, Outcome::LockReleased) => recorded(vec![Event::LockReleased, closing_event(state)]),
        (command, outcome) => panic!("outcome {outcome:?} does not belong to command {command:?}"),
    }
}
