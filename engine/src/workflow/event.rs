//! The event vocabulary: every fact a deploy's history can hold.
//!
//! Events are immutable once appended. Each type carries a schema version (`version`); a change to
//! a type's body bumps its version and adds an upcast from the old one, so every recorded history
//! keeps folding. Names are in the past tense: they say what happened, not what to do.

use super::command::{instances, CloudError, Command};
use super::health::HealthCounts;
use super::release::Release;
use super::resources::{ExistingAsg, LiveRule, Resolved};
use super::settings::Settings;
use super::time::Timestamp;
use super::validate::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How old or how far in the future a release's `created_at` may be when it arrives: a captured
/// release cannot be replayed later, and a clock far ahead is caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    pub max_age_secs: u64,
    pub max_ahead_secs: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { max_age_secs: 15 * 60, max_ahead_secs: 2 * 60 }
    }
}

/// The strategy and health rules of the first skald: a step only once every instance of the last
/// is healthy, a vanished ASG waited out to the timeout. A request recorded without `rules` was
/// decided by these, and is audited by them forever.
pub const RULES_FIRST: u32 = 1;
/// Odin's rules (`capacity::CapacityPlan::wanted_size`): a step at every health check whatever
/// the last step's health, Odin's minimum while deploying, a canary that halts when its only
/// instance terminates, a deploy that never lowers its ASG's capacity, and a vanished ASG that
/// fails the deploy at the next check.
pub const RULES_ODIN: u32 = 2;
/// Odin's rules and placement groups: a service's named group is looked up, checked and, when
/// missing and named under the project-config's prefix, created (`workflow::placement`).
pub const RULES_PLACEMENT: u32 = 3;
/// The rules a runner stamps on the requests it records today.
pub const RULES_CURRENT: u32 = RULES_PLACEMENT;

pub(super) fn rules_first() -> u32 {
    RULES_FIRST
}

pub(super) fn is_rules_first(rules: &u32) -> bool {
    *rules == RULES_FIRST
}

/// A person's deploy freeze of a project-config (`skald freeze`), as skald found it when it
/// recorded a request: while it stands every deploy of the project-config is refused (undeploys
/// and halts still run). Recorded with the request so the refusal, and who asked for it, when and
/// why, is in that deploy's history for an auditor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// Who froze it: the caller identity (an IAM ARN) of `skald freeze`.
    pub by: String,
    pub reason: String,
    /// When it was frozen.
    pub since: Timestamp,
}

impl fmt::Display for Freeze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frozen by {} since {}: {}", self.by, self.since, self.reason)
    }
}

/// The kinds of failure a user sees (Odin's error names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The release, or a resource it names, is invalid.
    BadRelease,
    /// Another deploy holds the project-config's lock.
    LockExists,
    /// A cloud call failed.
    Deploy,
    /// A person halted the deploy, or instances terminated.
    Halt,
    /// Services did not become healthy in time.
    Timeout,
}

/// How a failed deploy left the cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cleanliness {
    /// Everything the deploy created was removed: the cloud is as it was.
    Clean,
    /// Cleanup gave up on something: a person must look (this raises an alarm).
    Dirty,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body")]
pub enum Event {
    /// A producer asked for a release to be deployed. Always the first event of a deploy.
    DeployRequested {
        release_id: String,
        created_at: Timestamp,
        release: Box<Release>,
        /// sha256 of the release's canonical JSON: what exactly was asked for.
        release_digest: String,
        /// The authenticated principal that sent the request, when the transport knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
        #[serde(default)]
        freshness: Freshness,
        /// The deployer's settings the request is judged under; absent in histories recorded
        /// before settings existed, which are judged as they were then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<Settings>,
        /// Which strategy and health rules decide this deploy (`RULES_FIRST`, `RULES_ODIN`).
        /// Recorded so a replay decides with the rules the deploy ran under; absent means the
        /// first rules, so histories recorded before the field existed keep their bytes.
        #[serde(default = "rules_first", skip_serializing_if = "is_rules_first")]
        rules: u32,
        /// The project-config's freeze when skald recorded the request: the deploy is refused.
        /// Absent when it was not frozen (and in histories recorded before freezes existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frozen: Option<Freeze>,
    },
    /// A person (or the release's own `automatic_undeploy_minutes`) asked for the live release of
    /// a project-config to be removed. The first event of an undeploy, which runs like a deploy:
    /// validated (the live release must allow it), locked, planned, torn down, unlocked.
    UndeployRequested {
        /// The undeploy's own id (a ULID): it keys this history and owns the lock.
        undeploy_id: String,
        /// The deploy whose release is live and is being removed.
        of_release: String,
        /// That deploy's release, copied so this history explains itself.
        release: Box<Release>,
        release_digest: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
    },
    ReleaseValidated,
    ReleaseRejected {
        problems: Vec<Problem>,
    },
    LockAcquired {
        project: String,
        config: String,
        lease_until: Timestamp,
    },
    /// Another deploy holds the lock. With `on_concurrent_deploy: rollback` and an older holder
    /// the deploy waits for it (see `ConcurrentDeployCancelled`); otherwise it fails.
    LockDenied {
        holder: String,
    },
    /// The deploy asked the older deploy holding its lock to stop and clean up, and waits for it.
    ConcurrentDeployCancelled {
        holder: String,
    },
    /// The deploy this one waits for has ended and given the lock back (recorded by that deploy's
    /// runner): try the lock now rather than at the next retry.
    LockFreed {
        holder: String,
    },
    ResourcesResolved {
        resolved: Box<Resolved>,
    },
    ResourcesRejected {
        problems: Vec<Problem>,
    },
    /// The release live on the project-config when the lock was taken, as the log records it
    /// (the newest deploy that succeeded, unless an undeploy succeeded after it): a
    /// `safe_release` is compared with it. Both fields are absent when nothing is live.
    LiveReleaseFound {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<Box<Release>>,
    },
    /// A `safe_release` changes more than the AMI and the user data of the live release: every
    /// field that differs, by path. The deploy fails with BadRelease before anything launches.
    SafeReleaseRefused {
        live_release: String,
        problems: Vec<Problem>,
    },
    /// What an undeploy removes: the project-config's ASGs that skald manages, and the listener
    /// rules that send traffic to them.
    UndeployPlanned {
        asgs: Vec<ExistingAsg>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rules: Vec<LiveRule>,
    },
    /// The runner is about to carry out an effect (recorded before it, so a crash shows).
    CommandStarted {
        command: Command,
    },
    CommandFailed {
        command: String,
        error: CloudError,
        attempt: u32,
    },
    /// A release's own target group exists (a traffic-shifted service's).
    TargetGroupCreated {
        service: String,
        target_group: String,
    },
    ServiceLaunched {
        service: String,
        asg: String,
        desired: u32,
    },
    /// The production rule now puts `weight` percent of the service's traffic on the new group.
    TrafficShifted {
        service: String,
        weight: u32,
    },
    CapacitySet {
        service: String,
        asg: String,
        min_size: u32,
        desired: u32,
    },
    /// Health counts, recorded at every check (the history doubles as the deploy's heartbeat).
    HealthObserved {
        services: BTreeMap<String, HealthCounts>,
    },
    ServicesHealthy,
    /// Alarms gating a service's traffic shift were in ALARM at a health check: the deploy
    /// stops and shifts traffic back (recorded with that check, before the release is live).
    AlarmFiring {
        service: String,
        alarms: Vec<String>,
    },
    HaltRequested {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
    },
    TimedOut {
        timeout_secs: u64,
    },
    TerminationsExceeded {
        service: String,
        terminating: u32,
        max_terms: u32,
    },
    /// A health check found a service's new ASG gone (deleted by someone else mid-deploy): the
    /// deploy fails at once rather than waiting out its timeout (Odin's rules only).
    AsgMissing {
        service: String,
        asg: String,
    },
    /// The listener rule that sent traffic to the ASG is gone (an undeploy's first teardown step).
    RuleRemoved {
        asg: String,
    },
    Detached {
        asg: String,
    },
    /// The ASG's instances left its load balancers (or the wait for that ran out).
    DetachConfirmed {
        asg: String,
        waited_ms: u64,
        expired: bool,
    },
    AsgDeleted {
        asg: String,
    },
    /// Cleanup of an ASG failed past its retry bound; the deploy will end dirty.
    TeardownAbandoned {
        asg: String,
        reason: String,
    },
    LockReleased,
    DeploySucceeded,
    DeployFailed {
        error: ErrorKind,
        cleanliness: Cleanliness,
        reason: String,
    },
}

impl Event {
    /// The name stored in the `type` attribute.
    pub fn name(&self) -> &'static str {
        match self {
            Event::DeployRequested { .. } => "DeployRequested",
            Event::UndeployRequested { .. } => "UndeployRequested",
            Event::ReleaseValidated => "ReleaseValidated",
            Event::ReleaseRejected { .. } => "ReleaseRejected",
            Event::LockAcquired { .. } => "LockAcquired",
            Event::LockDenied { .. } => "LockDenied",
            Event::ConcurrentDeployCancelled { .. } => "ConcurrentDeployCancelled",
            Event::LockFreed { .. } => "LockFreed",
            Event::ResourcesResolved { .. } => "ResourcesResolved",
            Event::ResourcesRejected { .. } => "ResourcesRejected",
            Event::LiveReleaseFound { .. } => "LiveReleaseFound",
            Event::SafeReleaseRefused { .. } => "SafeReleaseRefused",
            Event::UndeployPlanned { .. } => "UndeployPlanned",
            Event::CommandStarted { .. } => "CommandStarted",
            Event::CommandFailed { .. } => "CommandFailed",
            Event::TargetGroupCreated { .. } => "TargetGroupCreated",
            Event::ServiceLaunched { .. } => "ServiceLaunched",
            Event::TrafficShifted { .. } => "TrafficShifted",
            Event::CapacitySet { .. } => "CapacitySet",
            Event::HealthObserved { .. } => "HealthObserved",
            Event::ServicesHealthy => "ServicesHealthy",
            Event::AlarmFiring { .. } => "AlarmFiring",
            Event::HaltRequested { .. } => "HaltRequested",
            Event::TimedOut { .. } => "TimedOut",
            Event::TerminationsExceeded { .. } => "TerminationsExceeded",
            Event::AsgMissing { .. } => "AsgMissing",
            Event::RuleRemoved { .. } => "RuleRemoved",
            Event::Detached { .. } => "Detached",
            Event::DetachConfirmed { .. } => "DetachConfirmed",
            Event::AsgDeleted { .. } => "AsgDeleted",
            Event::TeardownAbandoned { .. } => "TeardownAbandoned",
            Event::LockReleased => "LockReleased",
            Event::DeploySucceeded => "DeploySucceeded",
            Event::DeployFailed { .. } => "DeployFailed",
        }
    }

    /// The schema version of this event's type, as this skald writes it.
    pub fn version(&self) -> u32 {
        current_version(self.name()).expect("every event type has a version")
    }

    /// Events that end a deploy: nothing may follow them.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::DeploySucceeded | Event::DeployFailed { .. })
    }
}

/// Every event type this skald knows, by its stored name.
pub const EVENT_TYPES: [&str; 34] = [
    "DeployRequested",
    "ReleaseValidated",
    "ReleaseRejected",
    "LockAcquired",
    "LockDenied",
    "ResourcesResolved",
    "ResourcesRejected",
    "CommandStarted",
    "CommandFailed",
    "ServiceLaunched",
    "CapacitySet",
    "HealthObserved",
    "ServicesHealthy",
    "HaltRequested",
    "TimedOut",
    "TerminationsExceeded",
    "Detached",
    "DetachConfirmed",
    "AsgDeleted",
    "TeardownAbandoned",
    "LockReleased",
    "DeploySucceeded",
    "DeployFailed",
    "TargetGroupCreated",
    "TrafficShifted",
    "UndeployRequested",
    "ConcurrentDeployCancelled",
    "UndeployPlanned",
    "RuleRemoved",
    "LockFreed",
    "AlarmFiring",
    "AsgMissing",
    "LiveReleaseFound",
    "SafeReleaseRefused",
];

/// The schema version this skald reads and writes for each event type; `None` for a type it
/// does not know. Every type starts at 1. A change to a type's body bumps its version here and adds
/// an upcast step from the old version (`crate::upcast`, outside this pure module), so that every
/// history ever recorded keeps folding.
pub fn current_version(kind: &str) -> Option<u32> {
    EVENT_TYPES.contains(&kind).then_some(1)
}

/// An event as the log holds it: its place in the sequence and when the runner recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    pub at: Timestamp,
    pub event: Event,
}

impl fmt::Display for Event {
    /// One line a person reads in a timeline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::DeployRequested { release_id, release, requested_by, frozen, .. } => {
                let services: Vec<&str> = release.services.keys().map(String::as_str).collect();
                write!(f, "deploy {release_id} of {} {} ({})", release.project_name, release.config_name, services.join(", "))?;
                if let Some(who) = requested_by {
                    write!(f, " requested by {who}")?;
                }
                match frozen {
                    Some(freeze) => write!(f, "; the project-config is {freeze}"),
                    None => Ok(()),
                }
            }
            Event::UndeployRequested { undeploy_id, of_release, release, reason, requested_by, .. } => {
                write!(f, "undeploy {undeploy_id} of {} {} (release {of_release}): {reason}", release.project_name, release.config_name)?;
                match requested_by {
                    Some(who) => write!(f, ", requested by {who}"),
                    None => Ok(()),
                }
            }
            Event::ReleaseValidated => write!(f, "release is valid"),
            Event::ReleaseRejected { problems } | Event::ResourcesRejected { problems } => {
                let listed: Vec<String> = problems.iter().map(Problem::to_string).collect();
                write!(f, "rejected: {}", listed.join("; "))
            }
            Event::LockAcquired { lease_until, .. } => write!(f, "lock acquired (lease until {lease_until})"),
            Event::LiveReleaseFound { release_id: Some(live), .. } => write!(f, "live release is {live}"),
            Event::LiveReleaseFound { release_id: None, .. } => write!(f, "no release is live"),
            Event::SafeReleaseRefused { live_release, problems } => {
                let listed: Vec<String> = problems.iter().map(Problem::to_string).collect();
                write!(f, "safe_release refused: differs from live release {live_release}: {}", listed.join("; "))
            }
            Event::LockDenied { holder } => write!(f, "lock held by deploy {holder}"),
            Event::ConcurrentDeployCancelled { holder } => write!(f, "cancelled deploy {holder}; waiting for its cleanup"),
            Event::LockFreed { holder } => write!(f, "deploy {holder} ended and gave the lock back"),
            Event::UndeployPlanned { asgs, rules } => {
                let names: Vec<&str> = asgs.iter().map(|a| a.name.as_str()).collect();
                match names.as_slice() {
                    [] => write!(f, "nothing of the release is left to remove"),
                    _ => write!(f, "undeploy removes {} and {} listener rules", names.join(", "), rules.len()),
                }
            }
            Event::RuleRemoved { asg } => write!(f, "removed the listener rule sending traffic to {asg}"),
            Event::ResourcesResolved { resolved } => {
                let plans: Vec<String> = resolved
                    .services
                    .iter()
                    .map(|(name, s)| {
                        let replaces = s.previous.as_ref().map(|p| format!(", replacing {}", p.name)).unwrap_or_default();
                        format!("{name}: launch {}, need {} healthy{replaces}", s.capacity.launch, s.capacity.healthy_needed)
                    })
                    .collect();
                match resolved.ami_id.as_str() {
                    "" => write!(f, "resources checked, AMI as in the launch template versions named; {}", plans.join("; "))?,
                    ami => write!(f, "resources checked, AMI {ami}; {}", plans.join("; "))?,
                }
                match resolved.wait_for_detach_secs {
                    0 => Ok(()),
                    secs => write!(f, "; the old release goes {secs} s after the new is healthy (slow start)"),
                }
            }
            Event::CommandStarted { command } => write!(f, "started: {command}"),
            Event::CommandFailed { command, error, attempt } => write!(f, "{command} failed (attempt {attempt}): {error}"),
            Event::TargetGroupCreated { service, target_group } => write!(f, "{service}: created target group {target_group}"),
            Event::TrafficShifted { service, weight } => write!(f, "{service}: {weight} % of traffic on the new release"),
            Event::ServiceLaunched { service, asg, desired } => write!(f, "{service}: launched {asg} with {}", instances(*desired)),
            Event::CapacitySet { service, min_size, desired, .. } => write!(f, "{service}: capacity now min {min_size}, desired {desired}"),
            Event::HealthObserved { services } => {
                let parts: Vec<String> = services
                    .iter()
                    .map(|(name, c)| match c.missing {
                        true => format!("{name} ASG missing"),
                        false => format!("{name} {} healthy, {} launching, {} terminating", c.healthy, c.launching, c.terminating),
                    })
                    .collect();
                write!(f, "health: {}", parts.join("; "))
            }
            Event::ServicesHealthy => write!(f, "every service is healthy"),
            Event::AlarmFiring { service, alarms } => write!(f, "{service}: in ALARM: {}", alarms.join(", ")),
            Event::HaltRequested { reason, requested_by } => {
                write!(f, "halt requested: {reason}")?;
                match requested_by {
                    Some(who) => write!(f, " (by {who})"),
                    None => Ok(()),
                }
            }
            Event::TimedOut { timeout_secs } => write!(f, "not healthy within {timeout_secs} s"),
            Event::TerminationsExceeded { service, terminating, max_terms } => {
                write!(f, "{service}: {} terminating, more than max_terms {max_terms}", instances(*terminating))
            }
            Event::AsgMissing { service, asg } => write!(f, "{service}: ASG {asg} is gone"),
            Event::Detached { asg } => write!(f, "detached {asg} from its load balancers"),
            Event::DetachConfirmed { asg, waited_ms, expired } => {
                let how = if *expired { "gave up waiting for" } else { "confirmed" };
                write!(f, "{how} detach of {asg} after {:.1} s", *waited_ms as f64 / 1000.0)
            }
            Event::AsgDeleted { asg } => write!(f, "deleted {asg}"),
            Event::TeardownAbandoned { asg, reason } => write!(f, "gave up removing {asg}: {reason}"),
            Event::LockReleased => write!(f, "lock released"),
            Event::DeploySucceeded => write!(f, "Success"),
            Event::DeployFailed { error, cleanliness, reason } => {
                let end = match cleanliness {
                    Cleanliness::Clean => "FailureClean",
                    Cleanliness::Dirty => "FailureDirty",
                };
                write!(f, "{end} ({error:?}): {reason}")
            }
        }
    }
}
