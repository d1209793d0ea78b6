//! Static checks of a release: every rule that needs nothing but the release itself.
//!
//! Each problem names the path of the offending field (`services.web.autoscaling.min_size`), so a
//! producer can fix a release without reading skald's code. All problems are reported at once.

use super::names::{is_aws_tag, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_MANAGED_BY, TAG_PROJECT, TAG_RELEASE, TAG_SERVICE};
use super::names::{CONFIG_NAME_LEN_MAX, PROJECT_NAME_LEN_MAX, SERVICE_NAME_LEN_MAX, UNFILLABLE_TEMPLATE_VARIABLES};
use super::release::{AmiRef, AMI_LAUNCH_TEMPLATE, AUTOMATIC_UNDEPLOY_MINUTES_MAX, TRANSITION_LAUNCHING, TRANSITION_TERMINATING};
use super::release::{
    Autoscaling, LifecycleHook, PolicyKind, Release, Service, Traffic, EXEMPLAR_PRIORITY_OFFSET, TIMEOUT_SECS_MAX, TRAFFIC_ALARMS_MAX,
};
use super::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub const SERVICES_MAX: usize = 16;
pub const SUBNETS_MAX: usize = 32;
pub const SECURITY_GROUPS_MAX: usize = 5;
pub const LOAD_BALANCERS_MAX: usize = 10;
pub const LIFECYCLE_HOOKS_MAX: usize = 10;
pub const USER_TAGS_MAX: usize = 40;
/// EC2 refuses user data over 16 KiB.
pub const USER_DATA_BYTES_MAX: usize = 16 * 1024;
/// A bound on instances per service: far above any sane ASG, low enough to keep every count small.
pub const INSTANCES_PER_SERVICE_MAX: u32 = 1_000;
const NAME_REF_LEN_MAX: usize = 255;
/// A policy's own name: short enough that `<asg>-<type>-<name>` stays within AWS's 255.
pub const POLICY_NAME_LEN_MAX: usize = 64;
const COOLDOWN_SECS_MAX: u64 = 86_400;
const ALARM_WINDOW_SECS_MAX: u64 = 86_400;
const HEARTBEAT_SECS: std::ops::RangeInclusive<u64> = 30..=7_200;
/// An ALB takes rule priorities 1 to 50,000; the exemplar sits `EXEMPLAR_PRIORITY_OFFSET` higher.
const RULE_PRIORITY_MAX: u32 = 50_000 - EXEMPLAR_PRIORITY_OFFSET;
const WAIT_PER_STEP_SECS_MAX: u64 = 3_600;
const BAKE_TIME_SECS_MAX: u64 = 86_400;
const HEALTH_TIMEOUT_SECS_MAX: u64 = 7_200;
const EBS_VOLUME_GIB: std::ops::RangeInclusive<u32> = 1..=16_384;
const EBS_VOLUME_TYPES: [&str; 7] = ["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"];
const PLACEMENT_STRATEGIES: [&str; 3] = ["cluster", "spread", "partition"];
const PLACEMENT_TENANCIES: [&str; 2] = ["default", "dedicated"];
const RESERVED_TAGS: [&str; 6] = [TAG_MANAGED_BY, TAG_PROJECT, TAG_CONFIG, TAG_SERVICE, TAG_RELEASE, TAG_DEPLOY_WITH];

/// One thing wrong with a release: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every static problem of `release`; empty when it is valid.
pub fn validate(release: &Release) -> Vec<Problem> {
    let mut out = Problems::default();
    check_name(&mut out, "project_name", &release.project_name, PROJECT_NAME_LEN_MAX, true);
    check_name(&mut out, "config_name", &release.config_name, CONFIG_NAME_LEN_MAX, false);
    out.check(!release.ami.trim().is_empty(), "ami", "must name an AMI id or Name tag");
    out.check(release.ami.len() <= NAME_REF_LEN_MAX, "ami", format!("is longer than {NAME_REF_LEN_MAX} characters"));
    check_ami(&mut out, release);
    // Clones take their subnets from their template.
    let all_templates = !release.services.is_empty() && release.services.values().all(|s| s.template.is_some());
    if all_templates {
        out.check(release.subnets.is_empty(), "subnets", "must be absent: template services take their template's subnets");
    } else {
        check_refs(&mut out, "subnets", &release.subnets, 1, SUBNETS_MAX);
    }
    if let Some(timeout) = release.timeout {
        let ok = (1..=TIMEOUT_SECS_MAX).contains(&timeout);
        out.check(ok, "timeout", format!("must be between 1 and {TIMEOUT_SECS_MAX} seconds"));
    }
    if let Some(user_data) = &release.user_data {
        check_user_data(&mut out, user_data);
    }
    check_account(&mut out, release);
    check_undeploy(&mut out, release);
    out.check(release.lifecycle.len() <= LIFECYCLE_HOOKS_MAX, "lifecycle", format!("has more than {LIFECYCLE_HOOKS_MAX} hooks"));
    for (name, hook) in &release.lifecycle {
        check_hook(&mut out, &format!("lifecycle.{name}"), name, hook);
    }
    out.check(!release.services.is_empty(), "services", "must name at least one service");
    out.check(release.services.len() <= SERVICES_MAX, "services", format!("has more than {SERVICES_MAX} services"));
    for (name, service) in &release.services {
        let path = format!("services.{name}");
        check_name(&mut out, &path, name, SERVICE_NAME_LEN_MAX, false);
        check_service(&mut out, &path, service, release.timeout_secs());
    }
    out.0
}

/// EC2's size limit, and no template variable skald cannot fill: left verbatim it would reach the
/// instance as the literal text.
fn check_user_data(out: &mut Problems, user_data: &str) {
    let ok = user_data.len() <= USER_DATA_BYTES_MAX;
    out.check(ok, "user_data", format!("is {} bytes; EC2 takes at most {USER_DATA_BYTES_MAX}", user_data.len()));
    for (variable, meaning) in UNFILLABLE_TEMPLATE_VARIABLES {
        let message = format!("`{variable}` ({meaning}) cannot be filled by skald, which has no release bucket: remove it");
        out.check(!user_data.contains(variable), "user_data", message);
    }
}

/// An automatic undeploy is an undeploy: the release must allow it, and the wait is bounded.
fn check_undeploy(out: &mut Problems, release: &Release) {
    let Some(minutes) = release.automatic_undeploy_minutes else { return };
    let ok = (1..=AUTOMATIC_UNDEPLOY_MINUTES_MAX).contains(&minutes);
    out.check(ok, "automatic_undeploy_minutes", format!("must be between 1 and {AUTOMATIC_UNDEPLOY_MINUTES_MAX} minutes"));
    let message = match release.allow_undeploy {
        Some(false) => "needs undeploy allowed, but `allow_undeploy` is false",
        _ => "needs `allow_undeploy: true` on a production config (production releases may not be undeployed by default)",
    };
    out.check(release.allow_undeploy(), "automatic_undeploy_minutes", message);
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn check(&mut self, ok: bool, path: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(Problem::new(path, message));
        }
    }
}

/// Names become parts of AWS names, tag values and the lock key: alphanumerics, `-`, `_`, `.`,
/// starting with an alphanumeric (so `_all` can never be a name); projects may hold `/`.
fn check_name(out: &mut Problems, path: &str, name: &str, len_max: usize, slash_ok: bool) {
    out.check(!name.is_empty(), path, "must not be empty");
    out.check(name.len() <= len_max, path, format!("is longer than {len_max} characters"));
    let segment_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ok = if slash_ok { name.split('/').all(segment_ok) } else { segment_ok(name) };
    let allowed = if slash_ok { "letters, digits, `-`, `_`, `.` and `/` between parts" } else { "letters, digits, `-`, `_` and `.`" };
    out.check(name.is_empty() || ok, path, format!("`{name}` must start with a letter or digit and hold only {allowed}"));
}

/// A list of resource references: non-empty entries, unique, within bounds.
fn check_refs(out: &mut Problems, path: &str, refs: &[String], len_min: usize, len_max: usize) {
    if refs.len() < len_min {
        out.check(false, path, format!("must list at least {len_min}"));
    }
    out.check(refs.len() <= len_max, path, format!("lists more than {len_max}"));
    let mut seen = BTreeSet::new();
    for (i, r) in refs.iter().enumerate() {
        let at = format!("{path}[{i}]");
        out.check(!r.trim().is_empty(), &at, "must not be empty");
        out.check(r.len() <= NAME_REF_LEN_MAX, &at, format!("is longer than {NAME_REF_LEN_MAX} characters"));
        out.check(seen.insert(r.as_str()), &at, format!("`{r}` is listed twice"));
    }
}

fn check_account(out: &mut Problems, release: &Release) {
    if let Some(account) = &release.aws_account_id {
        let ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
        out.check(ok, "aws_account_id", "must be 12 digits");
    }
    if let Some(region) = &release.aws_region {
        let parts: Vec<&str> = region.split('-').collect();
        let ok = parts.len() >= 3
            && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
            && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
            && !parts[parts.len() - 1].is_empty();
        out.check(ok, "aws_region", format!("`{region}` is not a region name such as us-east-1"));
    }
}

fn check_hook(out: &mut Problems, path: &str, name: &str, hook: &LifecycleHook) {
    // AWS's LifecycleHookName grammar: `[A-Za-z0-9\-_\/]+`, at most 255 characters.
    let name_ok = !name.is_empty()
        && name.len() <= NAME_REF_LEN_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    out.check(name_ok, path, "a hook name must be 1 to 255 letters, digits, `-`, `_` or `/`");
    if let Some(given) = &hook.name {
        out.check(
            given == name,
            &format!("{path}.name"),
            format!("`{given}` differs from the hook's key `{name}`; a hook is named by its key"),
        );
    }
    let transition_ok = [TRANSITION_LAUNCHING, TRANSITION_TERMINATING].contains(&hook.transition.as_str());
    out.check(transition_ok, &format!("{path}.transition"), format!("must be {TRANSITION_LAUNCHING} or {TRANSITION_TERMINATING}"));
    out.check(!(hook.role.is_some() && hook.role_arn.is_some()), &format!("{path}.role"), "give role or role_arn, not both");
    out.check(
        !(hook.sns.is_some() && hook.notification_target_arn.is_some()),
        &format!("{path}.sns"),
        "give sns or notification_target_arn, not both",
    );
    let has_role = hook.role.is_some() || hook.role_arn.is_some();
    let has_target = hook.sns.is_some() || hook.notification_target_arn.is_some();
    out.check(has_role == has_target, path, "a role and a notification target go together: give both or neither");
    if let Some(secs) = hook.heartbeat_timeout {
        let ok = HEARTBEAT_SECS.contains(&secs);
        out.check(
            ok,
            &format!("{path}.heartbeat_timeout"),
            format!("must be between {} and {} seconds", HEARTBEAT_SECS.start(), HEARTBEAT_SECS.end()),
        );
    }
}

/// The `$…` forms of `ami`: a name prefix needs the owners it may come from; a launch template
/// version exists only for template services.
fn check_ami(out: &mut Problems, release: &Release) {
    match AmiRef::parse(&release.ami) {
        Err(message) => out.check(false, "ami", message),
        // Whose images a prefix may pick is the deployer's setting (`settings`), judged with it.
        Ok(AmiRef::NamePrefix(_)) => {}
        Ok(AmiRef::LaunchTemplate(_)) => {
            let ok = release.services.values().all(|s| s.template.is_some());
            out.check(ok, "ami", format!("`{AMI_LAUNCH_TEMPLATE}` needs every service to be cloned from a template"));
        }
        Ok(AmiRef::Image(_)) => {}
    }
    for (i, owner) in release.ami_owners.iter().enumerate() {
        out.check(Settings::is_owner(owner), &format!("ami_owners[{i}]"), format!("`{owner}` is neither a 12-digit account id nor `self`"));
    }
}

/// A service is described here (`instance_type` …) or cloned from a template ASG, not both: what
/// the template brings cannot also be given.
fn check_template_service(out: &mut Problems, path: &str, service: &Service, template: &str) {
    let name_ok = !template.is_empty() && template.len() <= 255 && !template.contains(['\n', '\r']);
    out.check(name_ok, &format!("{path}.template"), "must be an Auto Scaling group's name");
    let brought = [
        ("instance_type", !service.instance_type.is_empty()),
        ("security_groups", !service.security_groups.is_empty()),
        ("elbs", !service.elbs.is_empty()),
        ("target_groups", !service.target_groups.is_empty()),
        ("profile", service.profile.is_some()),
        ("ebs_volume_size", service.ebs_volume_size.is_some()),
        ("ebs_volume_type", service.ebs_volume_type.is_some()),
        ("ebs_device_name", service.ebs_device_name.is_some()),
        ("placement_group_name", service.placement_group_name.is_some()),
        ("placement_tenancy", service.placement_tenancy.is_some()),
        ("spot_price", service.spot_price.is_some()),
        ("associate_public_ip_address", service.associate_public_ip_address.is_some()),
        ("autoscaling.policies", !service.autoscaling.policies.is_empty()),
    ];
    for (field, given) in brought {
        out.check(!given, &format!("{path}.{field}"), "comes from the template: remove it, or remove `template`");
    }
}

fn check_service(out: &mut Problems, path: &str, service: &Service, timeout_secs: u64) {
    if let Some(template) = &service.template {
        check_template_service(out, path, service, template);
        check_tags(out, path, service);
        check_autoscaling(out, &format!("{path}.autoscaling"), &service.autoscaling, timeout_secs);
        if let Some(traffic) = &service.traffic {
            check_traffic(out, &format!("{path}.traffic"), traffic);
        }
        return;
    }
    let it = &service.instance_type;
    let type_ok = it.split_once('.').is_some_and(|(family, size)| {
        let part_ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        part_ok(family) && part_ok(size)
    });
    let message = match it.is_empty() {
        true => "is missing: give an instance type such as t3.micro, or a `template` to clone".to_string(),
        false => format!("`{it}` is not an instance type such as t3.micro"),
    };
    out.check(type_ok, &format!("{path}.instance_type"), message);
    check_refs(out, &format!("{path}.security_groups"), &service.security_groups, 1, SECURITY_GROUPS_MAX);
    check_refs(out, &format!("{path}.elbs"), &service.elbs, 0, LOAD_BALANCERS_MAX);
    check_refs(out, &format!("{path}.target_groups"), &service.target_groups, 0, LOAD_BALANCERS_MAX);
    if let Some(profile) = &service.profile {
        out.check(!profile.trim().is_empty(), &format!("{path}.profile"), "must not be empty");
    }
    check_tags(out, path, service);
    check_ebs(out, path, service);
    check_placement(out, path, service);
    if let Some(price) = &service.spot_price {
        let ok = price.parse::<f64>().is_ok_and(|p| p.is_finite() && p > 0.0);
        out.check(ok, &format!("{path}.spot_price"), format!("`{price}` is not a positive price in dollars"));
    }
    check_autoscaling(out, &format!("{path}.autoscaling"), &service.autoscaling, timeout_secs);
    if let Some(traffic) = &service.traffic {
        check_traffic(out, &format!("{path}.traffic"), traffic);
    }
}

/// Every step must be valid on an ALB and every wait bounded: a step of 0 would never finish (as
/// deployomat's could loop), and a wait as long as the health timeout would time out every step.
fn check_traffic(out: &mut Problems, path: &str, traffic: &Traffic) {
    let listener_ok = traffic.listener.starts_with("arn:") && traffic.listener.contains(":listener/app/");
    out.check(listener_ok, &format!("{path}.listener"), "must be an application load balancer listener's ARN");
    let priority_ok = (1..=RULE_PRIORITY_MAX).contains(&traffic.priority);
    out.check(priority_ok, &format!("{path}.priority"), format!("must be between 1 and {RULE_PRIORITY_MAX}"));
    let name_ok = !traffic.target_group.is_empty()
        && traffic.target_group.len() <= 32
        && traffic.target_group.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    out.check(name_ok, &format!("{path}.target_group"), "must be a target group name: 1 to 32 letters, digits or `-`");
    if let Some(step) = traffic.shift_per_step {
        out.check((1..=100).contains(&step), &format!("{path}.shift_per_step"), "must be between 1 and 100 percent");
    }
    let bounded = [
        ("wait_per_step", traffic.wait_per_step, 0, WAIT_PER_STEP_SECS_MAX),
        ("bake_time", traffic.bake_time, 0, BAKE_TIME_SECS_MAX),
        ("health_timeout", traffic.health_timeout, 1, HEALTH_TIMEOUT_SECS_MAX),
    ];
    for (field, secs, min, max) in bounded {
        let ok = secs.is_none_or(|secs| (min..=max).contains(&secs));
        out.check(ok, &format!("{path}.{field}"), format!("must be between {min} and {max} seconds"));
    }
    let wait_ok = traffic.wait_per_step_secs() < traffic.health_timeout_secs();
    out.check(wait_ok, &format!("{path}.wait_per_step"), "must be shorter than health_timeout, which bounds each step");
    check_refs(out, &format!("{path}.alarms"), &traffic.alarms, 0, TRAFFIC_ALARMS_MAX);
}

fn check_tags(out: &mut Problems, path: &str, service: &Service) {
    out.check(service.tags.len() <= USER_TAGS_MAX, &format!("{path}.tags"), format!("has more than {USER_TAGS_MAX} tags"));
    for (key, value) in &service.tags {
        let at = format!("{path}.tags.{key}");
        out.check(!RESERVED_TAGS.contains(&key.as_str()), &at, "is set by skald and cannot be given");
        out.check(!is_aws_tag(key), &at, "tags starting with `aws:` (in any case) are reserved by AWS");
        // EC2 takes tag keys of up to 127 characters (Auto Scaling 128): ASG tags reach instances.
        out.check(!key.is_empty() && key.chars().count() <= 127, &at, "a tag key must be 1 to 127 characters");
        out.check(value.chars().count() <= 256, &at, "a tag value must be at most 256 characters");
    }
}

fn check_ebs(out: &mut Problems, path: &str, service: &Service) {
    if let Some(size) = service.ebs_volume_size {
        let ok = EBS_VOLUME_GIB.contains(&size);
        out.check(
            ok,
            &format!("{path}.ebs_volume_size"),
            format!("must be between {} and {} GiB", EBS_VOLUME_GIB.start(), EBS_VOLUME_GIB.end()),
        );
    }
    let kind = service.ebs_volume_type();
    out.check(
        EBS_VOLUME_TYPES.contains(&kind),
        &format!("{path}.ebs_volume_type"),
        format!("`{kind}` is not one of {}", EBS_VOLUME_TYPES.join(", ")),
    );
    let device = service.ebs_device_name();
    let ok = device.starts_with("/dev/")
        && !device.ends_with('/')
        && !device.contains("//")
        && device.chars().all(|c| c.is_ascii_alphanumeric() || c == '/');
    out.check(ok, &format!("{path}.ebs_device_name"), format!("`{device}` is not a device name such as /dev/xvda"));
}

fn check_placement(out: &mut Problems, path: &str, service: &Service) {
    let strategy = service.placement_group_strategy.as_deref();
    let strategy_path = format!("{path}.placement_group_strategy");
    match (&service.placement_group_name, strategy) {
        (Some(_), None) => out.check(false, &strategy_path, "is required with placement_group_name"),
        (None, Some(_)) => out.check(false, &format!("{path}.placement_group_name"), "is required with placement_group_strategy"),
        (_, Some(s)) => {
            out.check(PLACEMENT_STRATEGIES.contains(&s), &strategy_path, format!("`{s}` is not one of {}", PLACEMENT_STRATEGIES.join(", ")))
        }
        (None, None) => {}
    }
    let count_path = format!("{path}.placement_group_partition_count");
    match (strategy, service.placement_group_partition_count) {
        (Some("partition"), None) => out.check(false, &count_path, "is required with the partition strategy"),
        (Some("partition"), Some(n)) => out.check((1..=7).contains(&n), &count_path, "must be between 1 and 7"),
        (_, Some(_)) => out.check(false, &count_path, "is allowed only with the partition strategy"),
        (_, None) => {}
    }
    if let Some(tenancy) = &service.placement_tenancy {
        let ok = PLACEMENT_TENANCIES.contains(&tenancy.as_str());
        out.check(ok, &format!("{path}.placement_tenancy"), format!("`{tenancy}` is not one of {}", PLACEMENT_TENANCIES.join(", ")));
    }
}

fn check_autoscaling(out: &mut Problems, path: &str, scaling: &Autoscaling, timeout_secs: u64) {
    let (min, max) = (scaling.min_size(), scaling.max_size());
    out.check(min <= max, &format!("{path}.min_size"), format!("{min} is above max_size {max}"));
    out.check(max <= INSTANCES_PER_SERVICE_MAX, &format!("{path}.max_size"), format!("must be at most {INSTANCES_PER_SERVICE_MAX}"));
    out.check(max >= 1, &format!("{path}.max_size"), "must be at least 1");
    if let Some(spread) = scaling.spread {
        out.check(spread.is_finite() && (0.0..=1.0).contains(&spread), &format!("{path}.spread"), "must be between 0 and 1");
    }
    if let Some(grace) = scaling.health_check_grace_period {
        let at = format!("{path}.health_check_grace_period");
        out.check(grace <= timeout_secs, &at, format!("{grace} s is longer than the release's timeout of {timeout_secs} s"));
    }
    let at = format!("{path}.max_terms");
    out.check(scaling.max_terms() <= INSTANCES_PER_SERVICE_MAX, &at, format!("must be at most {INSTANCES_PER_SERVICE_MAX}"));
    let cooldown_ok = scaling.default_cooldown_secs() <= COOLDOWN_SECS_MAX;
    out.check(cooldown_ok, &format!("{path}.default_cooldown"), format!("must be at most {COOLDOWN_SECS_MAX} seconds"));
    check_policies(out, path, scaling);
}

fn check_policies(out: &mut Problems, path: &str, scaling: &Autoscaling) {
    check_policy_names(out, path, scaling);
    for (i, policy) in scaling.policies.iter().enumerate() {
        let at = format!("{path}.policies[{i}]");
        let adjustment = policy.scaling_adjustment();
        let sign_ok = match policy.kind {
            PolicyKind::CpuScaleUp => adjustment > 0,
            PolicyKind::CpuScaleDown => adjustment < 0,
        };
        out.check(sign_ok, &format!("{at}.scaling_adjustment"), format!("{adjustment} points the wrong way for {}", policy.kind.name()));
        let threshold = policy.threshold();
        out.check(
            threshold.is_finite() && (0.0..=100.0).contains(&threshold),
            &format!("{at}.threshold"),
            "must be a CPU percentage between 0 and 100",
        );
        let period = policy.period_secs();
        out.check(period >= 60 && period % 60 == 0, &format!("{at}.period"), "must be a positive multiple of 60 seconds");
        out.check(policy.evaluation_periods() >= 1, &format!("{at}.evaluation_periods"), "must be at least 1");
        // CloudWatch evaluates alarms over at most one day.
        let window = u64::from(period) * u64::from(policy.evaluation_periods());
        out.check(
            window <= ALARM_WINDOW_SECS_MAX,
            &format!("{at}.evaluation_periods"),
            format!("period × evaluation_periods is {window} s; CloudWatch allows {ALARM_WINDOW_SECS_MAX}"),
        );
        out.check(
            u64::from(policy.cooldown_secs()) <= COOLDOWN_SECS_MAX,
            &format!("{at}.cooldown"),
            format!("must be at most {COOLDOWN_SECS_MAX} seconds"),
        );
    }
    let thresholds = |kind| scaling.policies.iter().filter(move |p| p.kind == kind).map(|p| p.threshold());
    let lowest_up = thresholds(PolicyKind::CpuScaleUp).reduce(f64::min);
    let highest_down = thresholds(PolicyKind::CpuScaleDown).reduce(f64::max);
    if let (Some(up), Some(down)) = (lowest_up, highest_down) {
        // Overlapping thresholds make the alarms fight: the group would scale out and in forever.
        out.check(
            down < up,
            &format!("{path}.policies"),
            format!("cpu_scale_down threshold {down} must be below cpu_scale_up threshold {up}"),
        );
    }
}

/// Policies are named on AWS `<asg>-<type>[-<name>]` (Odin's names), so two of one type need
/// different names; a name becomes part of AWS names.
fn check_policy_names(out: &mut Problems, path: &str, scaling: &Autoscaling) {
    let mut seen: BTreeMap<(PolicyKind, Option<&str>), usize> = BTreeMap::new();
    for (i, policy) in scaling.policies.iter().enumerate() {
        let at = format!("{path}.policies[{i}].name");
        let name = policy.name.as_deref();
        if let Some(name) = name {
            let ok = !name.is_empty()
                && name.len() <= POLICY_NAME_LEN_MAX
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            out.check(ok, &at, format!("`{name}` must be 1 to {POLICY_NAME_LEN_MAX} letters, digits, `-`, `_` or `.`"));
        }
        let Some(&first) = seen.get(&(policy.kind, name)) else {
            seen.insert((policy.kind, name), i);
            continue;
        };
        let kind = policy.kind.name();
        let message = match name {
            Some(name) => format!("`{name}` is already the name of policies[{first}], also {kind}: give each its own name"),
            None => format!("policies[{first}] is also {kind} without a name: name them apart"),
        };
        out.check(false, &at, message);
    }
}
