//! Commands: what `decide` asks the runner to do, and the outcomes the runner reports back.
//!
//! A command is data, so it can be recorded (an intent event before an effect), compared (replay
//! verification asks whether today's `decide` would issue the same command) and executed by any
//! adapter. Outcomes are data too: `outcome::record` turns them into events without I/O.

use super::health::ServiceReport;
use super::listener_rule::RuleCopy;
use super::release::{Policy, Release};
use super::resources::{Lookup, Query, ResolvedHook, ResolvedTemplate, RuleCondition, Tags, TargetGroupShape, Weighted};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Take the project-config lock, atomically with the `LockAcquired` event.
    AcquireLock {
        project: String,
        config: String,
        lease_until: Timestamp,
    },
    /// Ask the older deploy holding the lock to stop and clean up (`on_concurrent_deploy:
    /// rollback`): a halt appended to its history. Repeatable: a deploy already stopping or
    /// finished is left as it is.
    CancelDeploy {
        deploy: String,
        reason: String,
    },
    /// Find the release live on the project-config in the log (not the cloud): what a
    /// `safe_release` is compared with. Asked once the lock is held, so it cannot change under
    /// the deploy. Repeating it is harmless.
    FindLiveRelease {
        project: String,
        config: String,
    },
    /// Look up every resource the release names.
    ResolveResources {
        query: Box<Query>,
    },
    /// Create a release's own target group for a traffic-shifted service, cloned from a template.
    CreateTargetGroup {
        service: String,
        name: String,
        shape: TargetGroupShape,
        tags: Tags,
    },
    /// Create a service's launch template and ASG.
    Launch {
        spec: Box<LaunchSpec>,
    },
    SetCapacity {
        service: String,
        asg: String,
        min_size: u32,
        desired: u32,
    },
    ObserveHealth {
        targets: Vec<HealthTarget>,
    },
    /// Detach an ASG from its load balancers, so traffic drains before it is deleted.
    Detach {
        asg: String,
        elbs: Vec<String>,
        target_groups: Vec<String>,
    },
    CheckDetached {
        asg: String,
        elbs: Vec<String>,
        target_groups: Vec<String>,
    },
    /// Set the production listener rule to forward `forward` (an empty forward removes the rule).
    /// The rule is found by its priority, so repeating the command after a crash is harmless.
    ShiftTraffic {
        service: String,
        listener_arn: String,
        priority: u32,
        conditions: Vec<RuleCondition>,
        forward: Vec<Weighted>,
        /// The percentage on the release's own group that this forward means.
        weight: u32,
        /// What a rule created by this shift copies from the exemplar (a first deploy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copy: Option<RuleCopy>,
    },
    /// Delete the listener rule at `priority` (an undeploy's, before the ASG behind it goes).
    /// Gone already is done.
    RemoveRule {
        asg: String,
        listener_arn: String,
        priority: u32,
    },
    /// Delete an ASG (terminating its instances), its launch template and its own target group
    /// (by name: a group whose creation was announced but never recorded has no known ARN).
    Delete {
        asg: String,
        launch_template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_group: Option<String>,
    },
    /// Give the lock back, atomically with the events that end the deploy.
    ReleaseLock {
        project: String,
        config: String,
    },
}

impl Command {
    /// Effects on the cloud are announced by an intent event before they run, so a crash between
    /// the effect and its outcome is visible in the history and the effect is resumed, not lost.
    /// Lookups need no intent (repeating them is harmless); lock commands are atomic with their
    /// events.
    pub fn needs_intent(&self) -> bool {
        matches!(
            self,
            Command::CreateTargetGroup { .. }
                | Command::Launch { .. }
                | Command::SetCapacity { .. }
                | Command::ShiftTraffic { .. }
                | Command::RemoveRule { .. }
                | Command::Detach { .. }
                | Command::Delete { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::AcquireLock { .. } => "acquire_lock",
            Command::CancelDeploy { .. } => "cancel_deploy",
            Command::FindLiveRelease { .. } => "find_live_release",
            Command::ResolveResources { .. } => "resolve_resources",
            Command::CreateTargetGroup { .. } => "create_target_group",
            Command::Launch { .. } => "launch",
            Command::ShiftTraffic { .. } => "shift_traffic",
            Command::SetCapacity { .. } => "set_capacity",
            Command::ObserveHealth { .. } => "observe_health",
            Command::Detach { .. } => "detach",
            Command::CheckDetached { .. } => "check_detached",
            Command::RemoveRule { .. } => "remove_rule",
            Command::Delete { .. } => "delete",
            Command::ReleaseLock { .. } => "release_lock",
        }
    }

    /// The ASG a teardown command works on.
    pub fn teardown_asg(&self) -> Option<&str> {
        match self {
            Command::RemoveRule { asg, .. }
            | Command::Detach { asg, .. }
            | Command::CheckDetached { asg, .. }
            | Command::Delete { asg, .. } => Some(asg),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AcquireLock { project, config, .. } => write!(f, "lock {project} {config}"),
            Command::CancelDeploy { deploy, .. } => write!(f, "cancel deploy {deploy}"),
            Command::FindLiveRelease { project, config } => write!(f, "find the live release of {project} {config}"),
            Command::ResolveResources { .. } => write!(f, "resolve resources"),
            Command::CreateTargetGroup { service, name, .. } => write!(f, "create target group {name} for {service}"),
            Command::Launch { spec } => {
                write!(f, "launch {} ({})", spec.asg_name, instances(spec.desired_capacity))?;
                match &spec.template {
                    Some(t) => match &t.image_id {
                        Some(ami) => write!(
                            f,
                            ", a clone of {} on a new version of {} v{} with {ami}",
                            t.asg, t.launch_template_id, t.source_version
                        ),
                        None => write!(f, ", a clone of {} on {} v{} as it is", t.asg, t.launch_template_id, t.source_version),
                    },
                    None => Ok(()),
                }
            }
            Command::ShiftTraffic { service, priority, weight, .. } => {
                write!(f, "shift {service} to {weight} % on the new target group (rule priority {priority})")
            }
            Command::SetCapacity { asg, min_size, desired, .. } => write!(f, "resize {asg} to min {min_size}, desired {desired}"),
            Command::ObserveHealth { targets } => write!(f, "check health of {} services", targets.len()),
            Command::RemoveRule { asg, priority, .. } => write!(f, "remove the rule at priority {priority} sending traffic to {asg}"),
            Command::Detach { asg, .. } => write!(f, "detach {asg}"),
            Command::CheckDetached { asg, .. } => write!(f, "check {asg} is detached"),
            Command::Delete { asg, .. } => write!(f, "delete {asg}"),
            Command::ReleaseLock { project, config } => write!(f, "unlock {project} {config}"),
        }
    }
}

/// "1 instance", "3 instances".
pub fn instances(n: u32) -> String {
    if n == 1 {
        "1 instance".to_string()
    } else {
        format!("{n} instances")
    }
}

/// Everything the cloud needs to create one service's launch template and ASG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub service: String,
    pub asg_name: String,
    pub launch_template_name: String,
    pub ami_id: String,
    pub instance_type: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    pub ebs: Ebs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associate_public_ip_address: Option<bool>,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// `ELB` when the service sits behind load balancers, `EC2` otherwise.
    pub health_check_type: String,
    pub health_check_grace_period_secs: u64,
    pub default_cooldown_secs: u64,
    pub elbs: Vec<String>,
    pub target_group_arns: Vec<String>,
    pub lifecycle_hooks: Vec<ResolvedHook>,
    pub policies: Vec<Policy>,
    /// skald's own tags and the service's, on the ASG (propagated to instances) and the template.
    pub tags: Tags,
    /// Clone this template instead: a new version of its launch template (or, for a rollback,
    /// the version as it is), and an ASG copying the template's settings, hooks, policies,
    /// metrics, warm pool and tags, with this spec's name, sizes, subnets, load balancers and
    /// tags. The fields above that describe instances are then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ResolvedTemplate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ebs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<u32>,
    pub volume_type: String,
    pub device_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub group_name: String,
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<u32>,
    /// Create the group (idempotently) before the ASG: it did not exist when resources were
    /// resolved, and its name is under the project-config's prefix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

/// One service to check: its ASG and the load balancers its instances must be healthy in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTarget {
    pub service: String,
    pub asg: String,
    pub elbs: Vec<String>,
    pub target_groups: Vec<String>,
    /// CloudWatch alarms whose state is read with the health (a traffic shift's gate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// Why a cloud call failed, as much as the workflow needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudError {
    /// Transient errors (throttling, timeouts, 5xx) are retried; permanent ones are not, where
    /// giving up is safe.
    pub transient: bool,
    /// The API's error code, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl CloudError {
    pub fn transient(message: impl Into<String>) -> Self {
        CloudError { transient: true, code: None, message: message.into() }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        CloudError { transient: false, code: Some(code.into()), message: message.into() }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What happened when the runner carried out a command.
// One outcome exists per step and lives for a moment: boxing the large lookup would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    LockAcquired,
    /// Another deploy holds the lock.
    LockHeld {
        holder: String,
    },
    Looked(Result<Lookup, CloudError>),
    /// The live release (its deploy's id and its release), or none.
    LiveFound(Result<Option<(String, Box<Release>)>, CloudError>),
    Done(Result<(), CloudError>),
    /// A target group exists: its ARN.
    Created(Result<String, CloudError>),
    Health(Result<BTreeMap<String, ServiceReport>, CloudError>),
    Detached(Result<bool, CloudError>),
    LockReleased,
}
