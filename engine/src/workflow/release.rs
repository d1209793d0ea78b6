//! The release: what a producer asks skald to deploy, exactly as written in its JSON file.
//!
//! The model keeps optional fields optional (what the user wrote is what the audit trail shows);
//! defaults are applied by the accessors below, in one place. Decoding is strict: every struct
//! denies unknown keys, so a typo is an error and never a silently ignored setting. Rules that
//! span fields live in `validate`.

use serde::de::{self, Deserializer, MapAccess};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Seconds a deploy may wait for its services to become healthy when the release says nothing.
pub const TIMEOUT_SECS_DEFAULT: u64 = 600;
/// The longest timeout a release may ask for: 48 hours.
pub const TIMEOUT_SECS_MAX: u64 = 172_800;
pub const EBS_VOLUME_TYPE_DEFAULT: &str = "gp2";
pub const EBS_DEVICE_NAME_DEFAULT: &str = "/dev/xvda";
pub const DEFAULT_COOLDOWN_SECS_DEFAULT: u64 = 300;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub project_name: String,
    pub config_name: String,
    /// Subnet ids (`subnet-…`) or Name tags, mixed freely.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// An AMI id (`ami-…`), the AMI's Name tag, `$name-prefix:<prefix>` (the newest available
    /// AMI whose name starts so, owned by one of `ami_owners`), or, for releases of template
    /// services only, `$launchtemplate:<N | $Latest | $Default | $LatestMinus:K>` (a version of
    /// the templates' launch templates as it is: a rollback).
    pub ami: String,
    /// The accounts a `$name-prefix:` AMI may come from (12-digit ids, or `self`): a subset of
    /// the deployer's own list (`settings::Settings::ami_owners`), which applies when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ami_owners: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Seconds the deploy may take to become healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "unique_keys")]
    pub lifecycle: BTreeMap<String, LifecycleHook>,
    #[serde(deserialize_with = "unique_keys")]
    pub services: BTreeMap<String, Service>,
    /// The account the release targets; the deployer's own account when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// Publish only this deploy's failures, not its other transitions (failures are always sent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_notifications: bool,
    /// What to do when another deploy of the project-config holds the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_concurrent_deploy: Option<OnConcurrentDeploy>,
    /// Whether `skald undeploy` may remove this release once it is live. The safety: it defaults
    /// to false for a `production` config and to true for any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_undeploy: Option<bool>,
    /// Undeploy this release by itself this many minutes after it went live (needs undeploy
    /// allowed): for short-lived test environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_undeploy_minutes: Option<u64>,
    /// Odin's safe release: refuse this release if anything but the AMI and the user data
    /// differs from the live release (`safe_release::differences`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub safe_release: bool,
    /// What happens to the old ASGs' instances before they are deleted (Odin's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach_strategy: Option<DetachStrategy>,
}

/// Odin's `detach_strategy`: how the old release leaves its load balancers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetachStrategy {
    /// Detach the old ASGs from their load balancers and wait for it, then delete them.
    #[default]
    Detach,
    /// Delete the old ASGs without detaching them first.
    SkipDetach,
    /// Detach the old ASGs, but do not wait to see them detached.
    SkipDetachCheck,
}

/// Keys Odin's client and deployer stamp on a release (client.go `prepareRelease`, bifrost's
/// `SetDefaults`, release.go): never written by a user, refused with a message saying so.
pub const STAMPED_KEYS: [&str; 11] = [
    "release_id",
    "uuid",
    "created_at",
    "started_at",
    "bucket",
    "user_data_sha256",
    "healthy",
    "wait_for_healthy",
    "wait_for_detach",
    "error",
    "success",
];
/// The keys Odin's deployer stamps on each service (service.go).
pub const STAMPED_SERVICE_KEYS: [&str; 6] =
    ["service_name", "resources", "created_asg", "previous_desired_capacity", "healthy_report", "Healthy"];

/// The config name whose releases may not be undeployed unless they say so.
pub const PRODUCTION_CONFIG: &str = "production";
/// The longest `automatic_undeploy_minutes`: a week.
pub const AUTOMATIC_UNDEPLOY_MINUTES_MAX: u64 = 7 * 24 * 60;

/// What a deploy does when it finds another deploy of its project-config holding the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConcurrentDeploy {
    /// Fail at once with LockExists (Odin's behaviour): the running deploy carries on.
    #[default]
    Fail,
    /// Cancel the running deploy (it shifts its traffic back and deletes what it created), wait
    /// for its cleanup, then deploy. Only an older deploy is cancelled: the newest release wins.
    Rollback,
}

/// What a release's `ami` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmiRef {
    /// `ami-…`, or an AMI's Name tag: opted in with `DeployWith=skald`.
    Image(String),
    /// `$name-prefix:<prefix>`: the newest available AMI so named, from `ami_owners`.
    NamePrefix(String),
    /// `$launchtemplate:…`: a version of each template's launch template, used as it is.
    LaunchTemplate(TemplateVersion),
}

/// A launch template version as a rollback names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateVersion {
    Number(u64),
    Latest,
    Default,
    /// `$LatestMinus:K`: K versions before the latest.
    LatestMinus(u64),
}

pub const AMI_NAME_PREFIX: &str = "$name-prefix:";
pub const AMI_LAUNCH_TEMPLATE: &str = "$launchtemplate:";
/// The tags of a template ASG that give its clones' sizes are `<prefix>:min_size` and
/// `<prefix>:max_size`, the prefix a deployer setting (`settings::Settings::size_tag_prefix`);
/// these are the tags under skald's own prefix.
pub const SIZE_TAG_MIN: &str = "min_size";
pub const SIZE_TAG_MAX: &str = "max_size";
pub const TAG_TEMPLATE_MIN_SIZE: &str = "skald:min_size";
pub const TAG_TEMPLATE_MAX_SIZE: &str = "skald:max_size";
/// A clone's sizes when neither the release nor the template's tags give them (deployomat's 4).
pub const TEMPLATE_MIN_SIZE_DEFAULT: u32 = 1;
pub const TEMPLATE_MAX_SIZE_DEFAULT: u32 = 4;

impl AmiRef {
    /// Reads `ami`; an `$…` form that does not parse is an error naming what is wrong.
    pub fn parse(ami: &str) -> Result<AmiRef, String> {
        if let Some(prefix) = ami.strip_prefix(AMI_NAME_PREFIX) {
            return match prefix.is_empty() {
                true => Err(format!("`{AMI_NAME_PREFIX}` needs a prefix")),
                false => Ok(AmiRef::NamePrefix(prefix.to_string())),
            };
        }
        if let Some(version) = ami.strip_prefix(AMI_LAUNCH_TEMPLATE) {
            let parsed = match version {
                "$Latest" => Some(TemplateVersion::Latest),
                "$Default" => Some(TemplateVersion::Default),
                _ => match version.strip_prefix("$LatestMinus:") {
                    Some(k) => k.parse().ok().filter(|k| *k > 0).map(TemplateVersion::LatestMinus),
                    None => version.parse().ok().filter(|n| *n > 0).map(TemplateVersion::Number),
                },
            };
            return parsed.map(AmiRef::LaunchTemplate).ok_or_else(|| {
                format!("`{version}` is not a launch template version: a number from 1, `$Latest`, `$Default` or `$LatestMinus:K`")
            });
        }
        if ami.starts_with('$') {
            return Err(format!("`{ami}` is none of `ami-…`, a Name tag, `{AMI_NAME_PREFIX}…` or `{AMI_LAUNCH_TEMPLATE}…`"));
        }
        Ok(AmiRef::Image(ami.to_string()))
    }
}

impl Release {
    /// What `ami` names; validation has refused a release whose `ami` does not parse.
    pub fn ami_ref(&self) -> AmiRef {
        AmiRef::parse(&self.ami).unwrap_or_else(|_| AmiRef::Image(self.ami.clone()))
    }

    pub fn timeout_secs(&self) -> u64 {
        self.timeout.unwrap_or(TIMEOUT_SECS_DEFAULT)
    }

    pub fn on_concurrent_deploy(&self) -> OnConcurrentDeploy {
        self.on_concurrent_deploy.unwrap_or_default()
    }

    pub fn detach_strategy(&self) -> DetachStrategy {
        self.detach_strategy.unwrap_or_default()
    }

    pub fn allow_undeploy(&self) -> bool {
        self.allow_undeploy.unwrap_or(self.config_name != PRODUCTION_CONFIG)
    }

    /// How often health is checked, derived from the timeout as Odin does: short deploys are
    /// watched closely, long ones are not polled needlessly.
    pub fn health_poll_secs(&self) -> u64 {
        match self.timeout_secs() {
            t if t < 30 * 60 => 15,
            t if t < 2 * 60 * 60 => 60,
            _ => 120,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleHook {
    /// Odin's hooks may repeat their key here; when given, it must be the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub transition: String,
    /// The IAM role the hook publishes with: a role name or (`role_arn`) an ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Where notifications go: an SNS topic name or (`notification_target_arn`) an ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_target_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<u64>,
}

pub const TRANSITION_LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TRANSITION_TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Empty for a service cloned from a template ASG (`template`), which brings its own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_type: String,
    /// The name of a template ASG to clone instead of describing the instances here
    /// (deployomat's way): its launch template gets a new version with the release's AMI, and the
    /// clone copies its subnets, load balancers, health check, termination policies, lifetime,
    /// placement, tags, lifecycle hooks, scaling policies, metrics and warm pool. Its sizes come
    /// from its `skald:min_size` / `skald:max_size` tags unless `autoscaling` gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<String>,
    /// An instance profile name; its path must place it under this project-config-service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "unique_keys")]
    pub tags: BTreeMap<String, String>,
    /// GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs_volume_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs_volume_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs_device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_partition_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_tenancy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associate_public_ip_address: Option<bool>,
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Shift an ALB listener rule's traffic to this release gradually (blue/green by weights),
    /// instead of letting new instances join the old ones' target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

/// Percent of traffic moved to the new target group per step when the release says nothing.
pub const SHIFT_PER_STEP_DEFAULT: u32 = 5;
pub const WAIT_PER_STEP_SECS_DEFAULT: u64 = 15;
pub const BAKE_TIME_SECS_DEFAULT: u64 = 60;
pub const HEALTH_TIMEOUT_SECS_DEFAULT: u64 = 300;
/// The exemplar rule a first deploy copies sits this far above the production rule's priority
/// (deployomat's convention), so it never matches a request before the production rule does.
pub const EXEMPLAR_PRIORITY_OFFSET: u32 = 40_000;

/// Gradual traffic shifting behind an ALB listener rule.
///
/// Each release gets its own target group, cloned from `target_group`. The production rule at
/// `priority` forwards to the live release's group; a deploy moves `shift_per_step` percent at a
/// time to the new group, each step after `wait_per_step` seconds and only once every new
/// instance is healthy (else, after `health_timeout` seconds, it shifts back and fails); at 100 the
/// rule forwards to the new group alone, and after `bake_time` seconds the old ASG and its group
/// are deleted. A first deploy (no production rule yet) copies the exemplar rule at
/// `priority + 40000` and forwards everything to the new group at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// The ALB listener's ARN.
    pub listener: String,
    pub priority: u32,
    /// The template target group (its name): protocol, port, VPC and health check to clone.
    pub target_group: String,
    /// Percent, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_per_step: Option<u32>,
    /// Seconds between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_per_step: Option<u64>,
    /// Seconds at 100 % before the old release is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<u64>,
    /// Seconds after a step within which every new instance must be healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout: Option<u64>,
    /// CloudWatch alarms (names) that gate the shift: one in ALARM at any health check, before
    /// the release is live, aborts the deploy and shifts traffic back (an error rate, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// The most alarms one service's traffic may be gated by (DescribeAlarms takes 100 names).
pub const TRAFFIC_ALARMS_MAX: usize = 10;

impl Traffic {
    pub fn shift_per_step(&self) -> u32 {
        self.shift_per_step.unwrap_or(SHIFT_PER_STEP_DEFAULT)
    }

    pub fn wait_per_step_secs(&self) -> u64 {
        self.wait_per_step.unwrap_or(WAIT_PER_STEP_SECS_DEFAULT)
    }

    pub fn bake_time_secs(&self) -> u64 {
        self.bake_time.unwrap_or(BAKE_TIME_SECS_DEFAULT)
    }

    pub fn health_timeout_secs(&self) -> u64 {
        self.health_timeout.unwrap_or(HEALTH_TIMEOUT_SECS_DEFAULT)
    }

    /// The longest a shift of this service can take once it starts: every step waits
    /// `wait_per_step` and may then need up to `health_timeout` of checks, and the bake may too.
    pub fn duration_secs_max(&self) -> u64 {
        let steps = u64::from(100u32.div_ceil(self.shift_per_step().clamp(1, 100)));
        let per_step_secs = self.wait_per_step_secs() + self.health_timeout_secs();
        steps * per_step_secs + self.bake_time_secs() + self.health_timeout_secs()
    }

    pub fn exemplar_priority(&self) -> u32 {
        self.priority + EXEMPLAR_PRIORITY_OFFSET
    }

    /// The weight (percent) on the new group after the step from `weight`: never past 100, so
    /// a step that does not divide 100 still ends exactly there (deployomat's could overshoot).
    /// A release without a live group has nothing to shift from and goes to 100 at once.
    pub fn next_weight(&self, weight: u32, has_live_group: bool) -> u32 {
        if !has_live_group {
            return 100;
        }
        weight.saturating_add(self.shift_per_step().clamp(1, 100)).min(100)
    }
}

impl Service {
    pub fn ebs_volume_type(&self) -> &str {
        self.ebs_volume_type.as_deref().unwrap_or(EBS_VOLUME_TYPE_DEFAULT)
    }

    pub fn ebs_device_name(&self) -> &str {
        self.ebs_device_name.as_deref().unwrap_or(EBS_DEVICE_NAME_DEFAULT)
    }

    /// Load balancers decide health when there are any; EC2 status checks otherwise.
    pub fn behind_load_balancer(&self) -> bool {
        !self.elbs.is_empty() || !self.target_groups.is_empty() || self.traffic.is_some()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
    /// The fraction (0 to 1) of extra instances launched, and of instances allowed to be unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    /// How many instances may be seen terminating before the deploy halts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_terms: Option<u32>,
    /// Seconds; defaults to and is capped at the release's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cooldown: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

impl Autoscaling {
    pub fn min_size(&self) -> u32 {
        self.min_size.unwrap_or(1)
    }

    pub fn max_size(&self) -> u32 {
        self.max_size.unwrap_or(1)
    }

    pub fn max_terms(&self) -> u32 {
        self.max_terms.unwrap_or(0)
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy.unwrap_or_default()
    }

    pub fn default_cooldown_secs(&self) -> u64 {
        self.default_cooldown.unwrap_or(DEFAULT_COOLDOWN_SECS_DEFAULT)
    }

    pub fn health_check_grace_period_secs(&self, timeout_secs: u64) -> u64 {
        self.health_check_grace_period.unwrap_or(timeout_secs).min(timeout_secs)
    }

    /// The spread in basis points (1/10,000), so capacity math is exact integer arithmetic:
    /// `10 × (1 + 0.2)` computed in floating point is 12.000000000000002, in basis points 12.
    pub fn spread_bp(&self) -> u32 {
        (self.spread.unwrap_or(0.0).clamp(0.0, 1.0) * 10_000.0).round() as u32
    }
}

/// How a service's new instances are brought up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Launch every instance at once.
    #[default]
    AllAtOnce,
    /// Launch one instance; once it is healthy, launch the rest.
    OneThenAllWithCanary,
    #[serde(rename = "25PercentStepRolloutNoCanary")]
    Percent25Steps,
    #[serde(rename = "10PercentStepRolloutNoCanary")]
    Percent10Steps,
    #[serde(rename = "10AtATimeNoCanary")]
    TenAtATime,
    #[serde(rename = "20AtATimeNoCanary")]
    TwentyAtATime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Tells apart policies of one type: the AWS name becomes `<asg>-<type>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_adjustment: Option<i32>,
    /// Average CPU utilisation, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Seconds per evaluation period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_periods: Option<u32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    CpuScaleUp,
    CpuScaleDown,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::CpuScaleUp => "cpu_scale_up",
            PolicyKind::CpuScaleDown => "cpu_scale_down",
        }
    }
}

impl Policy {
    pub fn scaling_adjustment(&self) -> i32 {
        self.scaling_adjustment.unwrap_or(match self.kind {
            PolicyKind::CpuScaleUp => 1,
            PolicyKind::CpuScaleDown => -1,
        })
    }

    pub fn threshold(&self) -> f64 {
        self.threshold.unwrap_or(match self.kind {
            PolicyKind::CpuScaleUp => 50.0,
            PolicyKind::CpuScaleDown => 20.0,
        })
    }

    pub fn period_secs(&self) -> u32 {
        self.period.unwrap_or(300)
    }

    pub fn evaluation_periods(&self) -> u32 {
        self.evaluation_periods.unwrap_or(2)
    }

    pub fn cooldown_secs(&self) -> u32 {
        self.cooldown.unwrap_or(60)
    }
}

/// Decodes a map in which a repeated key is an error. JSON allows repeats and serde keeps the
/// last one; for a release that would silently drop a whole service written twice.
fn unique_keys<'de, D: Deserializer<'de>, V: Deserialize<'de>>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error> {
    struct UniqueKeys<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> de::Visitor<'de> for UniqueKeys<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map with unique keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("`{key}` appears twice")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(UniqueKeys(PhantomData))
}
