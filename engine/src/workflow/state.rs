//! A deploy's state: the fold of its events. `evolve` is the only way state changes.
//!
//! State holds nothing that isn't derived from the history, and `evolve` does no I/O and reads no
//! clock: the instant of each event comes with it. `fold` checks a history's shape (first event,
//! gapless sequence, nothing after the end) so that a damaged history is an error, never a panic;
//! `evolve` asserts the invariants that only a bug in skald could break.

use super::capacity::CapacityPlan;
use super::command::Command;
use super::event::{Cleanliness, ErrorKind, Event, Freeze, Freshness, Recorded, RULES_CURRENT, RULES_FIRST, RULES_ODIN, RULES_PLACEMENT};
use super::health::HealthCounts;
use super::names::{self, TemplateValues};
use super::release::{DetachStrategy, OnConcurrentDeploy, Release};
use super::resources::{ExistingAsg, LiveRule, Resolved, ResolvedService};
use super::settings::Settings;
use super::time::Timestamp;
use super::validate::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Attempts at one step before skald gives up on it.
pub const ATTEMPTS_MAX: u32 = 5;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The seq of the last event folded; 0 for an empty history.
    pub seq: u64,
    /// The instant of the last event folded.
    pub at: Timestamp,
    pub request: Option<Request>,
    pub validated: bool,
    pub lock: Lock,
    /// When services must be healthy by: the lock's instant plus the release's timeout.
    pub deadline: Option<Timestamp>,
    pub resolved: Option<Resolved>,
    pub services: BTreeMap<String, ServiceProgress>,
    /// An effect announced by `CommandStarted` whose outcome is not yet recorded.
    pub pending: Option<Command>,
    pub retry: Retry,
    pub last_launch_at: Option<Timestamp>,
    pub last_observed_at: Option<Timestamp>,
    /// Every service reached its healthy count: the release is live.
    pub healthy: bool,
    pub failure: Option<Failure>,
    /// ASGs to remove: the old ones after success, the new ones after a failure.
    pub teardown: Vec<Teardown>,
    pub end: Option<End>,
    /// Waiting for an older deploy to give the lock up (`on_concurrent_deploy: rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<LockWait>,
    /// This history is an undeploy, not a deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeploy: Option<Undeploy>,
    /// What was live when a `safe_release` took its lock (`LiveReleaseFound`); only such a
    /// release looks, so other states keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_release: Option<LiveRelease>,
    /// After success, when the old release may start to go: the new release's target groups'
    /// slow start is over (`Resolved::wait_for_detach_secs`). Set only when there is one, so
    /// other states keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach_after: Option<Timestamp>,
}

/// The release a `safe_release` is compared with: the live one, or none (then any release is
/// safe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveRelease {
    /// The deploy that made it live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// How long a deploy waits for the deploy it cancelled to clean up and give the lock back.
/// Cleanup is bounded (a shift back, a detach of at most `DETACH_WAIT_SECS_MAX`, retried
/// deletes); past this the cancelled deploy is stuck and the waiting one fails with LockExists.
pub const ROLLBACK_WAIT_SECS_MAX: u64 = 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockWait {
    /// The deploy holding the lock.
    pub holder: String,
    /// The first denial by this holder.
    pub since: Timestamp,
    /// The latest denial.
    pub denied_at: Timestamp,
    pub denials: u32,
    /// The holder was asked to stop.
    pub cancelled: bool,
    /// The holder ended since the latest denial (`LockFreed`): try the lock now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeploy {
    /// The deploy whose live release is removed.
    pub of_release: String,
    pub reason: String,
    /// What to remove is known (`UndeployPlanned`): from here on the undeploy only tears down,
    /// and a halt comes too late (half an undeploy serves no one).
    pub planned: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub release_id: String,
    pub created_at: Timestamp,
    pub release: Release,
    pub release_digest: String,
    pub requested_by: Option<String>,
    pub freshness: Freshness,
    /// When skald recorded the request.
    pub requested_at: Timestamp,
    /// The deployer's settings it is judged under (`None`: recorded before settings existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// The strategy and health rules the deploy runs under (see `event::RULES_ODIN`). Skipped
    /// at the first rules, so states of older histories keep their hashes.
    #[serde(default = "super::event::rules_first", skip_serializing_if = "super::event::is_rules_first")]
    pub rules: u32,
    /// The project-config's freeze found with the request (the deploy is refused). Skipped when
    /// absent, so states of older histories keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<Freeze>,
}

impl Request {
    /// The account the deploy runs in: the release's `aws_account_id`, or `None` for the
    /// deployer's own.
    pub fn account(&self) -> Option<&str> {
        self.release.aws_account_id.as_deref()
    }

    /// The region the deploy runs in: the release's `aws_region`, or the deployer's region as
    /// recorded with the request (`None` in histories from before it was).
    pub fn region(&self) -> Option<&str> {
        self.release.aws_region.as_deref().or(self.settings.as_ref().and_then(|s| s.home_region.as_deref()))
    }

    /// Where the deploy runs, for a person: `account 123456789012, us-west-2`.
    pub fn place(&self) -> String {
        let account = self.account().map_or("the deployer's account".to_string(), |a| format!("account {a}"));
        let region = self.region().unwrap_or("the deployer's region");
        format!("{account}, {region}")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lock {
    #[default]
    Untried,
    Held {
        lease_until: Timestamp,
    },
    Denied,
    Released,
}

/// Consecutive failures of the step the deploy is on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub last_failure_at: Timestamp,
    pub last_error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub error: ErrorKind,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProgress {
    pub asg: String,
    pub plan: CapacityPlan,
    pub launch_started: bool,
    pub launched: bool,
    pub min_size: u32,
    pub desired: u32,
    pub health: Option<HealthCounts>,
    /// Resetting capacity after success failed past its retries; the service keeps its deploy size.
    pub finalize_skipped: bool,
    /// For a traffic-shifted service: its own group and how much traffic it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficProgress>,
    /// Odin's rules: capacity was set since the latest health check, so that check has had its
    /// say; the next one may set it again (and re-asserts what someone else lowered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resized_since_check: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficProgress {
    /// The creation of the release's own target group was announced: it may exist.
    pub group_announced: bool,
    /// The release's own target group's ARN, once created.
    pub target_group: Option<String>,
    /// Percent of the service's traffic on the new group, 0 to 100.
    pub weight: u32,
    /// When the weight last changed.
    pub shifted_at: Option<Timestamp>,
    /// A health check was recorded after the latest shift of any service (the gate's evidence).
    pub observed_since_shift: bool,
    /// A shift was announced and its outcome not recorded: the rule may hold any weight the
    /// shift asked for (a call can land and still report a failure), so cleanup shifts back.
    pub unsettled: bool,
}

impl TrafficProgress {
    /// Whether the new release may be receiving traffic.
    pub fn may_have_traffic(&self) -> bool {
        self.weight > 0 || self.unsettled
    }
}

impl ServiceProgress {
    /// Healthy: the whole launch capacity requested (or more, when a scaling policy raised it and
    /// Odin's rules kept it), and enough of it healthy.
    pub fn is_healthy(&self) -> bool {
        let healthy = self.health.map_or(0, |h| h.healthy);
        self.desired >= self.plan.launch && healthy >= self.plan.healthy_needed
    }

    /// Capacity still differs from what the service should run after success.
    pub fn needs_final_capacity(&self) -> bool {
        !self.finalize_skipped && (self.min_size, self.desired) != (self.plan.min_size, self.plan.desired)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    pub asg: String,
    /// Deleted with the ASG, when it is the ASG's own (skald names templates after their ASG).
    pub launch_template: Option<String>,
    pub elbs: Vec<String>,
    pub target_groups: Vec<String>,
    /// The name of the ASG's own target group (a traffic-shifted release's), deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    /// The listener rule sending traffic to the ASG, removed first (an undeploy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<LiveRule>,
    pub stage: TeardownStage,
    /// Detached, it is deleted without waiting to see it leave its load balancers (an old ASG
    /// under `detach_strategy: SkipDetachCheck`). Skipped when false: older states keep their
    /// hashes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_detach_check: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeardownStage {
    /// Remove the listener rule that sends traffic to the ASG.
    Unroute,
    Detach,
    AwaitDetach {
        since: Timestamp,
    },
    Delete,
    Deleted,
    Abandoned {
        reason: String,
    },
}

impl Teardown {
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, TeardownStage::Deleted | TeardownStage::Abandoned { .. })
    }
}

/// How the deploy ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    Success,
    Failure { error: ErrorKind, cleanliness: Cleanliness, reason: String },
}

impl End {
    /// Odin's names for the end states: Success, FailureClean, FailureDirty.
    pub fn name(&self) -> &'static str {
        match self {
            End::Success => "Success",
            End::Failure { cleanliness: Cleanliness::Clean, .. } => "FailureClean",
            End::Failure { cleanliness: Cleanliness::Dirty, .. } => "FailureDirty",
        }
    }
}

/// Why a history cannot be folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoldError {
    Gap {
        expected: u64,
        found: u64,
    },
    NotFirst {
        seq: u64,
        event: &'static str,
    },
    MissingRequest {
        seq: u64,
    },
    AfterEnd {
        seq: u64,
        event: &'static str,
    },
    /// The event refers to something the history never introduced (a service that was never
    /// resolved, an ASG that is not being torn down), or starts a command while one is pending.
    Content {
        seq: u64,
        event: &'static str,
        message: String,
    },
}

impl fmt::Display for FoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoldError::Gap { expected, found } => write!(f, "seq {found}: expected seq {expected} (a gap or reordering in the history)"),
            FoldError::NotFirst { seq, event } => write!(f, "seq {seq}: {event} may only be the first event"),
            FoldError::MissingRequest { seq } => write!(f, "seq {seq}: the history must start with DeployRequested or UndeployRequested"),
            FoldError::AfterEnd { seq, event } => write!(f, "seq {seq}: {event} follows the deploy's end"),
            FoldError::Content { seq, event, message } => write!(f, "seq {seq}: {event} {message}"),
        }
    }
}

impl std::error::Error for FoldError {}

/// Folds a whole history, checking its shape first at every event.
pub fn fold<'a>(history: impl IntoIterator<Item = &'a Recorded>) -> Result<State, FoldError> {
    history.into_iter().try_fold(State::default(), |state, recorded| {
        check_shape(&state, recorded)?;
        Ok(evolve(state, recorded))
    })
}

/// The rules a history must follow for `evolve` to apply its next event, as errors rather than
/// assertions: histories come from storage and files, which can be damaged or forged. Structure
/// first (first event, gapless sequence, nothing after the end), then references (every service
/// and ASG an event names was introduced by an earlier event).
pub fn check_shape(state: &State, recorded: &Recorded) -> Result<(), FoldError> {
    let seq = recorded.seq;
    if seq != state.seq + 1 {
        return Err(FoldError::Gap { expected: state.seq + 1, found: seq });
    }
    let is_request = matches!(recorded.event, Event::DeployRequested { .. } | Event::UndeployRequested { .. });
    match (seq, is_request) {
        (1, false) => Err(FoldError::MissingRequest { seq }),
        (2.., true) => Err(FoldError::NotFirst { seq, event: recorded.event.name() }),
        _ if state.end.is_some() => Err(FoldError::AfterEnd { seq, event: recorded.event.name() }),
        _ => check_references(state, &recorded.event).map_err(|message| FoldError::Content { seq, event: recorded.event.name(), message }),
    }
}

/// What `apply` looks up must exist: these are the lookups it would otherwise panic on.
fn check_references(state: &State, event: &Event) -> Result<(), String> {
    let service = |name: &str| match state.services.contains_key(name) {
        true => Ok(()),
        false => Err(format!("names service `{name}`, which the deploy never resolved")),
    };
    let shifting = |name: &str| match state.services.get(name).map(|p| p.traffic.is_some()) {
        Some(true) => Ok(()),
        Some(false) => Err(format!("names service `{name}`, which does not shift traffic")),
        None => Err(format!("names service `{name}`, which the deploy never resolved")),
    };
    let torn_down = |asg: &str| match state.teardown.iter().any(|t| t.asg == asg) {
        true => Ok(()),
        false => Err(format!("names ASG `{asg}`, which the deploy is not tearing down")),
    };
    match event {
        // A newer skald's rules would be decided by older ones here: refused, not guessed at.
        Event::DeployRequested { rules, .. } if !(RULES_FIRST..=RULES_CURRENT).contains(rules) => {
            Err(format!("was recorded under strategy rules {rules}; this skald knows rules {RULES_FIRST} to {RULES_CURRENT}"))
        }
        Event::LockAcquired { .. } if state.request.is_none() => Err("comes before the request".into()),
        Event::ResourcesResolved { .. } if state.resolved.is_some() => Err("resolves resources a second time".into()),
        Event::CommandStarted { .. } if state.pending.is_some() => {
            Err(format!("starts a command while `{}` is still pending", state.pending.as_ref().map_or("", Command::name)))
        }
        Event::CommandStarted { command: Command::Launch { spec } } => service(&spec.service),
        Event::CommandStarted { command: Command::ShiftTraffic { service: name, .. } } => shifting(name),
        Event::ServiceLaunched { service: name, .. }
        | Event::CapacitySet { service: name, .. }
        | Event::AsgMissing { service: name, .. } => service(name),
        Event::TargetGroupCreated { service: name, .. } | Event::TrafficShifted { service: name, .. } => shifting(name),
        Event::HealthObserved { services } => services.keys().try_for_each(|name| service(name)),
        Event::AlarmFiring { service: name, .. } => shifting(name),
        Event::ServicesHealthy if state.resolved.is_none() => Err("comes before resources were resolved".into()),
        Event::ServicesHealthy | Event::ResourcesResolved { .. } if state.undeploy.is_some() => {
            Err("belongs to a deploy, not an undeploy".into())
        }
        Event::UndeployPlanned { .. } if state.undeploy.as_ref().is_none_or(|u| u.planned) => {
            Err("plans an undeploy in a history that is not an unplanned undeploy".into())
        }
        Event::LiveReleaseFound { .. } | Event::SafeReleaseRefused { .. } if state.undeploy.is_some() => {
            Err("belongs to a deploy, not an undeploy".into())
        }
        Event::LiveReleaseFound { .. } if !matches!(state.lock, Lock::Held { .. }) => Err("comes while the lock is not held".into()),
        Event::LiveReleaseFound { .. } if state.live_release.is_some() => Err("finds the live release a second time".into()),
        Event::LiveReleaseFound { release_id, release } if release_id.is_some() != release.is_some() => {
            Err("must name both the live release's id and its release, or neither".into())
        }
        Event::SafeReleaseRefused { .. } if state.live_release.is_none() => Err("comes before the live release was found".into()),
        Event::ConcurrentDeployCancelled { .. } if state.waiting.is_none() => Err("comes while no deploy was waiting for the lock".into()),
        Event::RuleRemoved { asg } => torn_down(asg),
        Event::Detached { asg } | Event::DetachConfirmed { asg, .. } | Event::AsgDeleted { asg } | Event::TeardownAbandoned { asg, .. } => {
            torn_down(asg)
        }
        _ => Ok(()),
    }
}

/// Applies one event. Panics only on a history that `check_shape` would refuse.
pub fn evolve(mut state: State, recorded: &Recorded) -> State {
    assert!(check_shape(&state, recorded).is_ok(), "evolve on a malformed history: {:?}", check_shape(&state, recorded));
    state.seq = recorded.seq;
    state.at = recorded.at;
    if !matches!(recorded.event, Event::CommandStarted { .. } | Event::CommandFailed { .. }) {
        state.retry = Retry::default();
    }
    apply(&mut state, &recorded.event, recorded.at);
    state
}

fn apply(state: &mut State, event: &Event, at: Timestamp) {
    match event {
        Event::DeployRequested { release_id, created_at, release, release_digest, requested_by, freshness, settings, rules, frozen } => {
            state.request = Some(Request {
                release_id: release_id.clone(),
                created_at: *created_at,
                release: (**release).clone(),
                release_digest: release_digest.clone(),
                requested_by: requested_by.clone(),
                freshness: *freshness,
                requested_at: at,
                settings: settings.clone(),
                rules: *rules,
                frozen: frozen.clone(),
            });
        }
        Event::UndeployRequested { undeploy_id, of_release, release, release_digest, reason, requested_by } => {
            state.request = Some(Request {
                release_id: undeploy_id.clone(),
                created_at: at,
                release: (**release).clone(),
                release_digest: release_digest.clone(),
                requested_by: requested_by.clone(),
                freshness: Freshness::default(),
                requested_at: at,
                settings: None,
                rules: RULES_FIRST,
                frozen: None,
            });
            state.undeploy = Some(Undeploy { of_release: of_release.clone(), reason: reason.clone(), planned: false });
        }
        Event::ReleaseValidated => state.validated = true,
        Event::ReleaseRejected { problems } | Event::ResourcesRejected { problems } => {
            fail(state, ErrorKind::BadRelease, summarize(problems))
        }
        Event::LockAcquired { lease_until, .. } => {
            state.lock = Lock::Held { lease_until: *lease_until };
            state.waiting = None;
            state.deadline = Some(at.plus_secs(state.release().timeout_secs()));
        }
        Event::LockDenied { holder } => match wait_for(state, holder, at) {
            Ok(wait) => state.waiting = Some(wait),
            Err(reason) => {
                // `waiting` stays as it was: a deploy that waited still has a note to remove.
                state.lock = Lock::Denied;
                fail(state, ErrorKind::LockExists, reason);
            }
        },
        Event::ConcurrentDeployCancelled { .. } => state.waiting.as_mut().expect("checked by check_shape").cancelled = true,
        // Told by the holder's runner, which may race this deploy taking the lock: only a wait
        // for that very holder is affected.
        Event::LockFreed { holder } => {
            if let Some(wait) = state.waiting.as_mut().filter(|w| w.holder == *holder && state.lock == Lock::Untried) {
                wait.freed = true;
            }
        }
        Event::UndeployPlanned { asgs, rules } => {
            state.undeploy.as_mut().expect("checked by check_shape").planned = true;
            state.teardown = asgs
                .iter()
                .map(|asg| {
                    let mut teardown = teardown_of_existing(asg);
                    if let Some(rule) = rules.iter().find(|r| r.asg == asg.name) {
                        // The rule goes first: deleting the ASG behind a live rule blackholes traffic.
                        teardown.rule = Some(rule.clone());
                        teardown.stage = TeardownStage::Unroute;
                    }
                    teardown
                })
                .collect();
        }
        Event::RuleRemoved { asg } => {
            state.pending = None;
            let teardown = state.teardown_mut(asg);
            teardown.stage = first_stage(&teardown.elbs, &teardown.target_groups);
        }
        Event::ResourcesResolved { resolved } => resolve(state, resolved),
        Event::LiveReleaseFound { release_id, release } => {
            state.live_release = Some(LiveRelease { release_id: release_id.clone(), release: release.as_deref().cloned() });
        }
        Event::SafeReleaseRefused { live_release, problems } => {
            let reason = format!("safe_release: differs from the live release {live_release}: {}", summarize(problems));
            fail(state, ErrorKind::BadRelease, reason);
        }
        Event::CommandStarted { command } => {
            assert!(state.pending.is_none(), "a second command started before {:?} finished", state.pending);
            match command {
                Command::Launch { spec } => state.service_mut(&spec.service).launch_started = true,
                Command::CreateTargetGroup { service, .. } => state.traffic_mut(service).group_announced = true,
                Command::ShiftTraffic { service, .. } => state.traffic_mut(service).unsettled = true,
                _ => {}
            }
            state.pending = Some(command.clone());
        }
        Event::CommandFailed { command, error, attempt } => {
            state.pending = None;
            state.retry = Retry { attempts: *attempt, last_failure_at: at, last_error: error.to_string() };
            // After a failure only cleanup is retried: an effect that was under way when the
            // deploy failed (a launch when a halt came) is not tried again, and its failures
            // must not count against the cleanup's bound.
            let abandoned = state.failure.is_some() && !is_cleanup_step(state, command);
            let give_up = !error.transient || *attempt >= ATTEMPTS_MAX || abandoned;
            if give_up {
                give_up_on(state, command, &error.to_string());
            }
        }
        Event::ServiceLaunched { service, desired, .. } => {
            state.pending = None;
            state.last_launch_at = Some(at);
            let odin = state.odin_rules();
            let progress = state.service_mut(service);
            progress.launched = true;
            progress.desired = *desired;
            // The minimum the launch asked for (`decide::launch_spec`), by the deploy's rules.
            progress.min_size = match odin {
                true => progress.plan.initial_size().min_size,
                false => progress.plan.min_while_deploying(*desired),
            };
        }
        Event::TargetGroupCreated { service, target_group } => {
            state.pending = None;
            state.traffic_mut(service).target_group = Some(target_group.clone());
        }
        Event::TrafficShifted { service, weight } => {
            assert!(*weight <= 100, "a weight above 100 %: {weight}");
            state.pending = None;
            let traffic = state.traffic_mut(service);
            traffic.weight = *weight;
            traffic.shifted_at = Some(at);
            traffic.unsettled = false;
            for traffic in state.services.values_mut().filter_map(|p| p.traffic.as_mut()) {
                traffic.observed_since_shift = false;
            }
        }
        Event::CapacitySet { service, min_size, desired, .. } => {
            state.pending = None;
            // Only Odin's rules look at this: the first rules' states keep their hashes.
            let odin = state.odin_rules();
            let progress = state.service_mut(service);
            progress.min_size = *min_size;
            progress.desired = *desired;
            progress.resized_since_check = odin;
        }
        Event::HealthObserved { services } => {
            state.last_observed_at = Some(at);
            for (name, counts) in services {
                let progress = state.service_mut(name);
                progress.health = Some(*counts);
                progress.resized_since_check = false;
            }
            for traffic in state.services.values_mut().filter_map(|p| p.traffic.as_mut()) {
                traffic.observed_since_shift = true;
            }
        }
        Event::ServicesHealthy => {
            state.healthy = true;
            let resolved = state.resolved.as_ref().expect("healthy before resources were resolved");
            let old = resolved.services.values().filter_map(|s| s.previous.as_ref()).chain(&resolved.dropped);
            let strategy = state.request.as_ref().expect("checked by check_shape").release.detach_strategy();
            let teardown = old.map(|asg| retiring(asg, strategy)).collect();
            let slow_start_secs = u64::from(resolved.wait_for_detach_secs);
            state.teardown = teardown;
            if slow_start_secs > 0 {
                state.detach_after = Some(at.plus_secs(slow_start_secs));
            }
        }
        Event::HaltRequested { reason, requested_by } => {
            // Halts are honoured until the release is live (or an undeploy knows what it removes);
            // after that it is too late to stop.
            if !state.healthy && !state.undeploy.as_ref().is_some_and(|u| u.planned) {
                let by = requested_by.as_deref().map(|who| format!(" (by {who})")).unwrap_or_default();
                fail(state, ErrorKind::Halt, format!("halted: {reason}{by}"));
            }
        }
        Event::AlarmFiring { service, alarms } => fail(state, ErrorKind::Halt, format!("{service}: alarm {} in ALARM", alarms.join(", "))),
        Event::TimedOut { timeout_secs } => fail(state, ErrorKind::Timeout, format!("services were not healthy within {timeout_secs} s")),
        Event::TerminationsExceeded { service, terminating, max_terms } => {
            let reason = format!("{service}: {} terminating, more than max_terms {max_terms}", super::command::instances(*terminating));
            fail(state, ErrorKind::Halt, reason);
        }
        // Someone else removed what the deploy launched: a halt, as when its instances terminate.
        Event::AsgMissing { service, asg } => fail(state, ErrorKind::Halt, format!("{service}: its ASG {asg} is gone")),
        Event::Detached { asg } => {
            state.pending = None;
            let teardown = state.teardown_mut(asg);
            teardown.stage = match teardown.skip_detach_check {
                true => TeardownStage::Delete,
                false => TeardownStage::AwaitDetach { since: at },
            };
        }
        Event::DetachConfirmed { asg, .. } => state.teardown_mut(asg).stage = TeardownStage::Delete,
        Event::AsgDeleted { asg } => {
            state.pending = None;
            state.teardown_mut(asg).stage = TeardownStage::Deleted;
        }
        Event::TeardownAbandoned { asg, reason } => state.teardown_mut(asg).stage = TeardownStage::Abandoned { reason: reason.clone() },
        Event::LockReleased => state.lock = Lock::Released,
        Event::DeploySucceeded => state.end = Some(End::Success),
        Event::DeployFailed { error, cleanliness, reason } => {
            state.end = Some(End::Failure { error: *error, cleanliness: *cleanliness, reason: reason.clone() });
        }
    }
}

fn summarize(problems: &[Problem]) -> String {
    let listed: Vec<String> = problems.iter().map(Problem::to_string).collect();
    listed.join("; ")
}

/// Records the first failure and turns the deploy toward cleanup of what it launched.
fn fail(state: &mut State, error: ErrorKind, reason: String) {
    if state.failure.is_some() || state.healthy {
        return;
    }
    state.failure = Some(Failure { error, reason });
    state.retry = Retry::default();
    let resolved = state.resolved.as_ref();
    state.teardown = state
        .services
        .iter()
        .filter(|(_, progress)| progress.launch_started || progress.traffic.as_ref().is_some_and(|t| t.group_announced))
        .map(|(name, progress)| {
            let service = resolved.and_then(|r| r.services.get(name)).expect("launched a service that was never resolved");
            teardown_of_new(name, progress, service)
        })
        .collect();
}

/// A step failed for good. Where it leaves the deploy depends on the step.
/// Steps that clean up, retried up to their bound even after a failure. Shifting traffic back
/// after a failure is cleanup too: it must not stop before its bound.
fn is_cleanup_step(state: &State, command: &str) -> bool {
    ["remove_rule", "detach", "check_detached", "delete"].contains(&command) || (command == "shift_traffic" && state.failure.is_some())
}

fn give_up_on(state: &mut State, command: &str, error: &str) {
    if is_cleanup_step(state, command) {
        // decide records the abandonment once the retry bound is reached; a permanent error on
        // a teardown step is still retried, because "in use" and eventual consistency look the same.
        return;
    }
    // The step is over: its failures must not count against the next one (a teardown after a
    // halt, the old ASG's teardown after final capacity was given up on).
    state.retry = Retry::default();
    if state.healthy {
        // Only resetting capacity can fail after success: the release is live at its deploy size.
        if let Some(progress) = state.services.values_mut().find(|p| p.needs_final_capacity()) {
            progress.finalize_skipped = true;
        }
        return;
    }
    fail(state, ErrorKind::Deploy, format!("{command} failed: {error}"));
}

fn resolve(state: &mut State, resolved: &Resolved) {
    let request = state.request.as_ref().expect("resolved before requested");
    let release = &request.release;
    state.services = resolved
        .services
        .iter()
        .map(|(name, service)| {
            let asg = names::asg_name(&release.project_name, &release.config_name, name, &request.release_id);
            let progress = ServiceProgress {
                asg,
                plan: service.capacity,
                launch_started: false,
                launched: false,
                min_size: 0,
                desired: 0,
                health: None,
                finalize_skipped: false,
                traffic: service.traffic.as_ref().map(|_| TrafficProgress::default()),
                resized_since_check: false,
            };
            (name.clone(), progress)
        })
        .collect();
    state.resolved = Some(resolved.clone());
}

fn teardown_of_new(service_name: &str, progress: &ServiceProgress, service: &ResolvedService) -> Teardown {
    let asg = &progress.asg;
    let own_group = progress.traffic.as_ref().filter(|t| t.group_announced).map(|_| names::target_group_name(service_name, asg));
    let launch_template = Some(names::launch_template_name(asg));
    if !progress.launch_started {
        // Only the group was created: there is no ASG to detach, only the group to delete.
        return teardown(asg, launch_template, Vec::new(), Vec::new(), own_group);
    }
    let own_arn = progress.traffic.as_ref().and_then(|t| t.target_group.clone());
    let target_groups = service.target_group_arns.iter().chain(&own_arn).cloned().collect();
    teardown(asg, launch_template, service.elbs.clone(), target_groups, own_group)
}

fn teardown_of_existing(asg: &ExistingAsg) -> Teardown {
    // Only a template (or target group) named after its ASG is that ASG's own; anything else may
    // be shared.
    let own_template = asg.launch_template.clone().filter(|lt| *lt == names::launch_template_name(&asg.name));
    let service = asg.service().unwrap_or_default();
    let own_group = asg
        .target_groups
        .iter()
        .any(|tg| names::is_own_target_group(service, &asg.name, tg))
        .then(|| names::target_group_name(service, &asg.name));
    teardown(&asg.name, own_template, asg.elbs.clone(), asg.target_groups.clone(), own_group)
}

/// An old ASG retired after success, as the release's `detach_strategy` says (Odin's
/// `DetachForSuccess`): detached and seen to leave its load balancers (`Detach`, the default and
/// what every history before the field decided), detached without waiting to see it
/// (`SkipDetachCheck`), or deleted as it is (`SkipDetach`). An ASG behind no load balancer is
/// deleted whatever the strategy.
fn retiring(asg: &ExistingAsg, strategy: DetachStrategy) -> Teardown {
    let mut teardown = teardown_of_existing(asg);
    if teardown.stage == TeardownStage::Detach {
        match strategy {
            DetachStrategy::Detach => {}
            DetachStrategy::SkipDetachCheck => teardown.skip_detach_check = true,
            DetachStrategy::SkipDetach => teardown.stage = TeardownStage::Delete,
        }
    }
    teardown
}

fn teardown(
    asg: &str,
    launch_template: Option<String>,
    elbs: Vec<String>,
    target_groups: Vec<String>,
    own_group: Option<String>,
) -> Teardown {
    let stage = first_stage(&elbs, &target_groups);
    Teardown {
        asg: asg.to_string(),
        launch_template,
        elbs,
        target_groups,
        target_group: own_group,
        rule: None,
        stage,
        skip_detach_check: false,
    }
}

/// An ASG behind load balancers is detached (and drained) before it is deleted.
fn first_stage(elbs: &[String], target_groups: &[String]) -> TeardownStage {
    if elbs.is_empty() && target_groups.is_empty() {
        TeardownStage::Delete
    } else {
        TeardownStage::Detach
    }
}

/// Whether a denial of the lock by `holder` at `at` is one to wait out: the release rolls back
/// concurrent deploys, the holder is older (release ids are ULIDs, which sort by creation time:
/// the newest release wins, so two waiting deploys never cancel each other in turn), and the
/// wait for this holder is within its bound. Otherwise the reason the deploy fails.
fn wait_for(state: &State, holder: &str, at: Timestamp) -> Result<LockWait, String> {
    let request = state.request.as_ref().expect("checked by check_shape");
    let held = format!("deploy {holder} holds the lock");
    // An undeploy never cancels a deploy: it runs on the live release's settings, not its own.
    if state.undeploy.is_some() || request.release.on_concurrent_deploy() != OnConcurrentDeploy::Rollback {
        return Err(held);
    }
    if holder >= request.release_id.as_str() {
        return Err(format!("{held} and is newer: the newest release wins"));
    }
    match &state.waiting {
        Some(wait) if wait.holder == holder => {
            if at.ms_since(wait.since) > ROLLBACK_WAIT_SECS_MAX * 1000 {
                return Err(format!("{held}: it was cancelled but did not clean up within {ROLLBACK_WAIT_SECS_MAX} s"));
            }
            Ok(LockWait { denied_at: at, denials: wait.denials + 1, freed: false, ..wait.clone() })
        }
        _ => Ok(LockWait { holder: holder.to_string(), since: at, denied_at: at, denials: 1, cancelled: false, freed: false }),
    }
}

impl State {
    pub fn release(&self) -> &Release {
        &self.request.as_ref().expect("no DeployRequested folded").release
    }

    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// The strategy and health rules recorded with the request (the first rules before one is).
    pub fn rules(&self) -> u32 {
        self.request.as_ref().map_or(RULES_FIRST, |r| r.rules)
    }

    /// Whether Odin's strategy and health rules decide this deploy.
    pub fn odin_rules(&self) -> bool {
        self.rules() >= RULES_ODIN
    }

    /// Whether placement groups are looked up, checked and created for this deploy.
    pub fn placement_rules(&self) -> bool {
        self.rules() >= RULES_PLACEMENT
    }

    /// "deploy" or "undeploy": what this history is, in the word a person reads.
    pub fn kind(&self) -> &'static str {
        if self.undeploy.is_some() {
            "undeploy"
        } else {
            "deploy"
        }
    }

    /// Where the deploy stands, in a word or two a person reads in `skald status`.
    pub fn phase(&self) -> &'static str {
        match (&self.end, &self.failure) {
            (Some(end), _) => end.name(),
            (None, Some(_)) => "cleaning up after a failure",
            (None, None) if self.undeploy.as_ref().is_some_and(|u| u.planned) => "removing the release",
            (None, None) if self.healthy => "retiring the old release",
            (None, None) if self.is_shifting() => "shifting traffic",
            (None, None) if self.resolved.is_some() => "deploying",
            (None, None) if matches!(self.lock, Lock::Held { .. }) => "checking resources",
            (None, None) if self.waiting.is_some() => "waiting for a cancelled deploy",
            (None, None) if self.validated => "taking the lock",
            (None, None) if self.request.is_some() => "validating",
            (None, None) => "not started",
        }
    }

    /// Whether some teardown was abandoned: the deploy can only end dirty.
    pub fn is_dirty(&self) -> bool {
        self.teardown.iter().any(|t| matches!(t.stage, TeardownStage::Abandoned { .. }))
    }

    /// The user data for one service's instances, templated.
    pub fn user_data(&self, service: &str) -> String {
        let request = self.request.as_ref().expect("no DeployRequested folded");
        let resolved = self.resolved.as_ref().expect("user data before resources were resolved");
        let values =
            TemplateValues { release_id: &request.release_id, service, account_id: &resolved.account_id, region: &resolved.region };
        names::render_user_data(&request.release, &values)
    }

    fn service_mut(&mut self, name: &str) -> &mut ServiceProgress {
        self.services.get_mut(name).unwrap_or_else(|| panic!("event for unknown service {name}"))
    }

    fn traffic_mut(&mut self, service: &str) -> &mut TrafficProgress {
        self.service_mut(service).traffic.as_mut().unwrap_or_else(|| panic!("traffic event for {service}, which does not shift traffic"))
    }

    /// Whether some traffic already reaches the new release: from then on the health gate, not
    /// the release's timeout, bounds the deploy, and a failure shifts traffic back first.
    pub fn is_shifting(&self) -> bool {
        self.services.values().any(|p| p.traffic.as_ref().is_some_and(TrafficProgress::may_have_traffic))
    }

    fn teardown_mut(&mut self, asg: &str) -> &mut Teardown {
        self.teardown.iter_mut().find(|t| t.asg == asg).unwrap_or_else(|| panic!("event for {asg}, which is not being torn down"))
    }
}
