//! Resource checks: which cloud resources a release may use, judged from what the cloud reported.
//!
//! The cloud adapter only looks things up (by id, by Name tag, by name) and reports every match
//! with its tags; every rule about whether a match may be used lives here, once, for the simulated
//! and the real cloud alike. All resources must opt in: AMIs and subnets carry
//! `DeployWith=skald`; security groups, ELBs and target groups carry ProjectName, ConfigName and
//! ServiceName equal to the release's values or `_all`; instance profiles live under
//! `/skald/<project>/<config>/<service>/` with `_all` allowed from the right.

use super::capacity::CapacityPlan;
use super::listener_rule::{self, RuleCopy};
pub use super::listener_rule::{FoundRule, RuleCondition, Weighted};
use super::names::{
    self, ALL, DEPLOYER, TAG_ALLOWED_SERVICE, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_MANAGED_BY, TAG_PROJECT, TAG_RELEASE, TAG_SERVICE,
};
use super::placement::{self, FoundPlacementGroup};
use super::release::{AmiRef, Autoscaling, Release, Service, TemplateVersion, Traffic};
use super::release::{SIZE_TAG_MAX, SIZE_TAG_MIN, TEMPLATE_MAX_SIZE_DEFAULT, TEMPLATE_MIN_SIZE_DEFAULT};
use super::settings::{Settings, OWNER_SELF};
use super::validate::Problem;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub type Tags = BTreeMap<String, String>;

/// What the cloud must look up for a release. Built from the release alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub project: String,
    pub config: String,
    pub ami: String,
    pub subnets: Vec<String>,
    pub security_groups: BTreeSet<String>,
    pub elbs: BTreeSet<String>,
    pub target_groups: BTreeSet<String>,
    pub instance_profiles: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    pub topics: BTreeSet<String>,
    /// Listener ARNs whose rules traffic-shifted services use.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub listeners: BTreeSet<String>,
    /// Template target groups (names) to clone, with their settings.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub template_target_groups: BTreeSet<String>,
    /// Template ASGs (names) that services are cloned from.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub templates: BTreeSet<String>,
    /// The accounts a `$name-prefix:` AMI may come from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ami_owners: Vec<String>,
    /// CloudWatch alarms that gate traffic shifts.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub alarms: BTreeSet<String>,
    /// Placement groups the services name (looked up only under `event::RULES_PLACEMENT`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub placement_groups: BTreeSet<String>,
}

impl Query {
    pub fn for_release(release: &Release) -> Query {
        let services = release.services.values();
        let hooks = release.lifecycle.values();
        Query {
            project: release.project_name.clone(),
            config: release.config_name.clone(),
            ami: release.ami.clone(),
            subnets: release.subnets.clone(),
            security_groups: services.clone().flat_map(|s| s.security_groups.iter().cloned()).collect(),
            elbs: services.clone().flat_map(|s| s.elbs.iter().cloned()).collect(),
            target_groups: services.clone().flat_map(|s| s.target_groups.iter().cloned()).collect(),
            instance_profiles: services.flat_map(|s| s.profile.iter().cloned()).collect(),
            roles: hooks.clone().filter_map(|h| h.role.clone()).collect(),
            topics: hooks.filter_map(|h| h.sns.clone()).collect(),
            listeners: release.services.values().filter_map(|s| s.traffic.as_ref().map(|t| t.listener.clone())).collect(),
            template_target_groups: release.services.values().filter_map(|s| s.traffic.as_ref().map(|t| t.target_group.clone())).collect(),
            templates: release.services.values().filter_map(|s| s.template.clone()).collect(),
            ami_owners: release.ami_owners.clone(),
            alarms: release.services.values().filter_map(|s| s.traffic.as_ref()).flat_map(|t| t.alarms.iter().cloned()).collect(),
            placement_groups: release.services.values().filter_map(|s| s.placement_group_name.clone()).collect(),
        }
    }
}

impl Query {
    /// What an undeploy must look up: the project-config's ASGs, and the listeners whose rules
    /// send traffic to them. Nothing a deploy checks (AMIs, subnets, …) stands in its way.
    pub fn for_undeploy(release: &Release) -> Query {
        let listeners = release.services.values().filter_map(|s| s.traffic.as_ref().map(|t| t.listener.clone())).collect();
        Query { project: release.project_name.clone(), config: release.config_name.clone(), listeners, ..Query::default() }
    }
}

/// A production listener rule an undeploy removes before the ASG it sends traffic to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRule {
    pub asg: String,
    pub listener_arn: String,
    pub priority: u32,
}

/// What an undeploy of `release` removes, judged from a lookup: every ASG of the project-config
/// that skald manages (hand-made ones are not skald's to delete), and for each traffic-shifted
/// service the production rule, tied to the ASG behind the group it forwards to (or, when it
/// forwards elsewhere, the service's first ASG).
pub fn plan_undeploy(release: &Release, lookup: &Lookup) -> (Vec<ExistingAsg>, Vec<LiveRule>) {
    let asgs: Vec<ExistingAsg> =
        lookup.asgs.iter().filter(|a| a.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(DEPLOYER)).cloned().collect();
    let mut rules = Vec::new();
    for (name, service) in &release.services {
        let Some(traffic) = &service.traffic else { continue };
        let Some(rule) = lookup.listeners.get(&traffic.listener).and_then(|r| r.iter().find(|r| r.priority == Some(traffic.priority)))
        else {
            continue;
        };
        let of_service = || asgs.iter().filter(|a| a.service() == Some(name.as_str()));
        let behind = of_service().find(|a| rule.forward.iter().any(|w| a.target_groups.contains(&w.target_group)));
        if let Some(asg) = behind.or_else(|| of_service().next()) {
            rules.push(LiveRule { asg: asg.name.clone(), listener_arn: traffic.listener.clone(), priority: traffic.priority });
        }
    }
    (asgs, rules)
}

/// A resource the cloud found: its id (or ARN, or name for classic ELBs) and its tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub id: String,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundProfile {
    pub arn: String,
    pub path: String,
}

/// An Auto Scaling group of the release's project-config that exists now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingAsg {
    pub name: String,
    pub desired_capacity: u32,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<String>,
}

impl ExistingAsg {
    pub fn service(&self) -> Option<&str> {
        self.tags.get(TAG_SERVICE).map(String::as_str)
    }
}

/// The cloud's answer to a [`Query`]: every match for every reference, unjudged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub account_id: String,
    pub region: String,
    pub amis: Vec<Found>,
    pub subnets: BTreeMap<String, Vec<Found>>,
    pub security_groups: BTreeMap<String, Vec<Found>>,
    pub elbs: BTreeMap<String, Found>,
    pub target_groups: BTreeMap<String, Found>,
    pub instance_profiles: BTreeMap<String, FoundProfile>,
    pub roles: BTreeMap<String, String>,
    pub topics: BTreeMap<String, String>,
    /// Every ASG tagged with the query's ProjectName and ConfigName.
    pub asgs: Vec<ExistingAsg>,
    /// Every rule of each listener asked for; a listener that was not found is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, Vec<FoundRule>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_target_groups: BTreeMap<String, FoundTargetGroup>,
    /// Every template ASG asked for that exists; one that does not is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, FoundTemplate>,
    /// For a `$name-prefix:` AMI: the available images so named, of the owners asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images_by_prefix: Vec<FoundImage>,
    /// The alarms asked for that exist.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub alarms: BTreeSet<String>,
    /// The slow-start duration (ELBv2's `slow_start.duration_seconds`) of each target group in
    /// `target_groups` whose slow start is on, by the name asked for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slow_start_secs: BTreeMap<String, u32>,
    /// The placement groups asked for that exist, by name; `None` when none were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_groups: Option<BTreeMap<String, FoundPlacementGroup>>,
}

/// A template ASG as the cloud reports it: what a clone's plan needs (the adapter copies the
/// rest, such as hooks and scaling policies, when it creates the clone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundTemplate {
    #[serde(default)]
    pub tags: Tags,
    /// `None` when the template does not use a launch template (then it cannot be cloned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<FoundLaunchTemplate>,
    pub subnet_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_group_arns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundLaunchTemplate {
    pub id: String,
    pub name: String,
    pub latest_version: u64,
    pub default_version: u64,
}

/// An image found by name prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundImage {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// ISO 8601, as EC2 reports it: compares in time order.
    pub created: String,
}

/// A template target group: its ARN, tags and the settings a release's group copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundTargetGroup {
    pub arn: String,
    #[serde(default)]
    pub tags: Tags,
    pub shape: TargetGroupShape,
}

/// What makes two target groups interchangeable for a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupShape {
    pub protocol: String,
    pub port: u32,
    pub vpc_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_matcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_enabled: Option<bool>,
    /// `HTTP1`, `HTTP2` or `GRPC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// `ipv4` or `dualstack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_type: Option<String>,
    /// `instance` (the only kind an ASG registers its instances in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The group's attributes (deregistration delay, slow start, stickiness, algorithm, …) by
    /// their API keys, set on the clone once it exists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// The only target type an ASG registers its instances in.
pub const TARGET_TYPE_INSTANCE: &str = "instance";

/// The resources a release will use, checked. Recorded in `ResourcesResolved`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub account_id: String,
    pub region: String,
    pub ami_id: String,
    pub subnet_ids: Vec<String>,
    pub services: BTreeMap<String, ResolvedService>,
    pub lifecycle_hooks: Vec<ResolvedHook>,
    /// ASGs of services this release drops: deleted after success.
    pub dropped: Vec<ExistingAsg>,
    /// Odin's `wait_for_detach`: the longest slow start of the release's target groups. After
    /// success the old release is not detached (or deleted) before the new one has been healthy
    /// this long, so its instances reach their full share of traffic before they carry it all.
    /// Absent (0) in histories recorded before it was looked up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_for_detach_secs: u32,
}

fn is_zero(secs: &u32) -> bool {
    *secs == 0
}

/// ELBv2's longest slow start: a longer one reported is a bad answer, and every wait is bounded.
pub const SLOW_START_SECS_MAX: u32 = 900;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedService {
    pub security_group_ids: Vec<String>,
    pub elbs: Vec<String>,
    pub target_group_arns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// The live ASG this service replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ExistingAsg>,
    pub capacity: CapacityPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<ResolvedTraffic>,
    /// For a service cloned from a template ASG: what the clone is made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ResolvedTemplate>,
    /// The placement group the service names does not exist yet: its launch creates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_placement_group: bool,
}

/// A template to clone, checked: its launch template's version to start from, and the image a
/// new version of it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTemplate {
    /// The template ASG's name.
    pub asg: String,
    pub launch_template_id: String,
    /// The version the clone's version copies (or, for a rollback, uses as it is).
    pub source_version: u64,
    /// The image of the new version; `None` for a rollback (`$launchtemplate:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub subnet_ids: Vec<String>,
}

/// Where a traffic-shifted service's requests come from, and where they go now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTraffic {
    pub listener_arn: String,
    pub priority: u32,
    /// The production rule's conditions, or on a first deploy the exemplar's.
    pub conditions: Vec<RuleCondition>,
    /// The group the production rule forwards to now; `None` on a first deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_target_group: Option<String>,
    /// On a first deploy, the exemplar's actions and tags the production rule copies (absent in
    /// histories recorded before rules were copied whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<RuleCopy>,
    /// What the release's own group is cloned from.
    pub template: TargetGroupShape,
    /// Alarms that abort the shift when one is in ALARM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// The template group's own tags, which the release's group copies (skald's replace its
    /// scope and release tags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_tags: Tags,
}

impl ResolvedTraffic {
    /// The forward that puts `weight` percent on `new_group`: both groups while shifting, one
    /// group at either end, and nothing at all (remove the rule) at 0 on a first deploy. The
    /// weights always sum to 100 (or the forward is empty).
    pub fn forward(&self, new_group: &str, weight: u32) -> Vec<Weighted> {
        assert!(weight <= 100, "a weight is a percentage: {weight}");
        let new = Weighted { target_group: new_group.to_string(), weight };
        match (&self.live_target_group, weight) {
            (None, 0) => Vec::new(),
            (None, _) | (Some(_), 100) => vec![Weighted { weight: 100, ..new }],
            (Some(live), 0) => vec![Weighted { target_group: live.clone(), weight: 100 }],
            (Some(live), _) => vec![Weighted { target_group: live.clone(), weight: 100 - weight }, new],
        }
    }
}

impl ResolvedService {
    /// The load balancers (ELB names, target group ARNs) every instance must be healthy in.
    pub fn load_balancers(&self) -> Vec<String> {
        self.elbs.iter().chain(&self.target_group_arns).cloned().collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedHook {
    pub name: String,
    pub transition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_target_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_secs: Option<u64>,
}

/// Judges a lookup: the resolved resources, or every problem found (each naming the release field).
pub fn check(release: &Release, release_id: &str, lookup: &Lookup, settings: &Settings) -> Result<Resolved, Vec<Problem>> {
    let mut problems = Vec::new();
    let ami = check_ami(&mut problems, release, lookup, settings);
    let subnet_ids = release
        .subnets
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let matches = lookup.subnets.get(r).map(Vec::as_slice).unwrap_or(&[]);
            check_opted_in(&mut problems, &format!("subnets[{i}]"), r, matches, "subnet", &settings.opt_in)
        })
        .collect();
    let previous = check_previous(&mut problems, release, release_id, lookup);
    let mut services = BTreeMap::new();
    for (name, service) in &release.services {
        let path = format!("services.{name}");
        let scope = Scope { project: &release.project_name, config: &release.config_name, service: name, settings };
        let previous = previous.get(name.as_str()).cloned();
        let traffic = service.traffic.as_ref().and_then(|t| check_traffic(&mut problems, &format!("{path}.traffic"), t, lookup, &scope));
        let resolved = match &service.template {
            Some(template) => check_template(&mut problems, &path, service, template, ami.as_ref(), lookup, &scope, previous, traffic),
            None => Some(check_described(&mut problems, &path, service, lookup, &scope, previous, traffic)),
        };
        if let Some(mut resolved) = resolved {
            let prefix = placement::creatable_prefix(settings, &release.project_name, &release.config_name);
            resolved.create_placement_group = placement::check(&mut problems, &path, service, lookup.placement_groups.as_ref(), &prefix);
            services.insert(name.clone(), resolved);
        }
    }
    let lifecycle_hooks = check_hooks(&mut problems, release, lookup);
    let dropped = lookup
        .asgs
        .iter()
        .filter(|asg| !is_template(release, asg) && !asg.service().is_some_and(|s| release.services.contains_key(s)))
        .cloned()
        .collect();
    match (problems.is_empty(), ami) {
        (true, Some(ami)) => Ok(Resolved {
            account_id: lookup.account_id.clone(),
            region: lookup.region.clone(),
            ami_id: ami.image_id().unwrap_or_default().to_string(),
            subnet_ids,
            services,
            lifecycle_hooks,
            dropped,
            wait_for_detach_secs: wait_for_detach_secs(release, lookup),
        }),
        _ => Err(problems),
    }
}

/// Odin's `wait_for_detach`: the longest slow start among the target groups the release's
/// services join, within ELBv2's bound.
fn wait_for_detach_secs(release: &Release, lookup: &Lookup) -> u32 {
    let groups = release.services.values().flat_map(|s| &s.target_groups);
    groups.filter_map(|tg| lookup.slow_start_secs.get(tg)).max().map_or(0, |secs| (*secs).min(SLOW_START_SECS_MAX))
}

/// The AMI a release deploys, as checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AmiChoice {
    Image(String),
    /// A version of each template's launch template, as it is.
    Version(TemplateVersion),
}

impl AmiChoice {
    fn image_id(&self) -> Option<&str> {
        match self {
            AmiChoice::Image(id) => Some(id),
            AmiChoice::Version(_) => None,
        }
    }
}

/// An id or Name tag: exactly one image, opted in. A name prefix: the newest available image so
/// named from an allowed owner (deployomat's rule; the owners are the trust, not a tag).
fn check_ami(problems: &mut Vec<Problem>, release: &Release, lookup: &Lookup, settings: &Settings) -> Option<AmiChoice> {
    let ami_owners = &settings.ami_owners;
    match release.ami_ref() {
        AmiRef::Image(reference) => {
            check_opted_in(problems, "ami", &reference, &lookup.amis, "AMI", &settings.opt_in).map(AmiChoice::Image)
        }
        AmiRef::LaunchTemplate(version) => Some(AmiChoice::Version(version)),
        AmiRef::NamePrefix(prefix) => {
            let allowed = |owner: &str| ami_owners.iter().any(|o| o == owner || (o == OWNER_SELF && owner == lookup.account_id));
            let newest = lookup
                .images_by_prefix
                .iter()
                .filter(|i| i.name.starts_with(&prefix) && allowed(&i.owner))
                .max_by(|a, b| (&a.created, &a.name, &a.id).cmp(&(&b.created, &b.name, &b.id)));
            if newest.is_none() {
                let owners = ami_owners.join(", ");
                problems.push(Problem::new("ami", format!("no available AMI named `{prefix}…` owned by {owners}")));
            }
            newest.map(|i| AmiChoice::Image(i.id.clone()))
        }
    }
}

/// A service described in the release: its security groups, load balancers and profile.
fn check_described(
    problems: &mut Vec<Problem>,
    path: &str,
    service: &Service,
    lookup: &Lookup,
    scope: &Scope<'_>,
    previous: Option<ExistingAsg>,
    traffic: Option<ResolvedTraffic>,
) -> ResolvedService {
    let sgs = service.security_groups.iter().enumerate().filter_map(|(i, sg)| {
        let matches = lookup.security_groups.get(sg).map(Vec::as_slice).unwrap_or(&[]);
        check_scoped(problems, &format!("{path}.security_groups[{i}]"), sg, exactly_one(matches), scope, "security group")
    });
    let security_group_ids = sgs.collect();
    let elbs = service.elbs.iter().enumerate().filter_map(|(i, elb)| {
        check_scoped(problems, &format!("{path}.elbs[{i}]"), elb, lookup.elbs.get(elb).ok_or(0), scope, "classic ELB")
    });
    let elbs = elbs.collect();
    let tgs = service.target_groups.iter().enumerate().filter_map(|(i, tg)| {
        check_scoped(problems, &format!("{path}.target_groups[{i}]"), tg, lookup.target_groups.get(tg).ok_or(0), scope, "target group")
    });
    let target_group_arns = tgs.collect();
    let instance_profile_arn = service.profile.as_ref().and_then(|p| check_profile(problems, &format!("{path}.profile"), p, lookup, scope));
    let capacity = CapacityPlan::new(&service.autoscaling, previous.as_ref().map(|asg| asg.desired_capacity));
    ResolvedService {
        security_group_ids,
        elbs,
        target_group_arns,
        instance_profile_arn,
        previous,
        capacity,
        traffic,
        template: None,
        create_placement_group: false,
    }
}

/// A service cloned from a template ASG: the template exists, is scoped to the service like any
/// resource, uses a launch template (at the version a rollback names, if it does), and its size
/// tags are numbers. The clone joins the template's load balancers.
#[allow(clippy::too_many_arguments)]
fn check_template(
    problems: &mut Vec<Problem>,
    path: &str,
    service: &Service,
    name: &str,
    ami: Option<&AmiChoice>,
    lookup: &Lookup,
    scope: &Scope<'_>,
    previous: Option<ExistingAsg>,
    traffic: Option<ResolvedTraffic>,
) -> Option<ResolvedService> {
    let at = format!("{path}.template");
    let template = lookup.templates.get(name);
    let found = template.map(|t| Found { id: name.to_string(), tags: t.tags.clone() });
    check_scoped(problems, &at, name, found.as_ref().ok_or(0), scope, "template ASG")?;
    let template = template?;
    let Some(launch_template) = &template.launch_template else {
        problems.push(Problem::new(&at, format!("template ASG `{name}` uses no launch template, so it cannot be cloned")));
        return None;
    };
    let source_version = match ami? {
        AmiChoice::Image(_) => Some(launch_template.latest_version),
        AmiChoice::Version(version) => rollback_version(problems, &at, launch_template, *version),
    }?;
    let size = |tag: &str, given: Option<u32>, default: u32, problems: &mut Vec<Problem>| match (given, template.tags.get(tag)) {
        (Some(given), _) => Some(given),
        (None, None) => Some(default),
        (None, Some(text)) => {
            text.parse::<u32>().map_err(|_| problems.push(Problem::new(&at, format!("tag {tag} is `{text}`, not a size")))).ok()
        }
    };
    let (min_tag, max_tag) = (scope.settings.size_tag(SIZE_TAG_MIN), scope.settings.size_tag(SIZE_TAG_MAX));
    let min_size = size(&min_tag, service.autoscaling.min_size, TEMPLATE_MIN_SIZE_DEFAULT, problems);
    let max_size = size(&max_tag, service.autoscaling.max_size, TEMPLATE_MAX_SIZE_DEFAULT, problems);
    let (min_size, max_size) = (min_size?, max_size?);
    if min_size > max_size {
        problems.push(Problem::new(&at, format!("the clone's min_size {min_size} is above its max_size {max_size} (tags or autoscaling)")));
        return None;
    }
    let autoscaling = Autoscaling { min_size: Some(min_size), max_size: Some(max_size), ..service.autoscaling.clone() };
    let capacity = CapacityPlan::new(&autoscaling, previous.as_ref().map(|asg| asg.desired_capacity));
    Some(ResolvedService {
        security_group_ids: Vec::new(),
        elbs: template.elbs.clone(),
        target_group_arns: template.target_group_arns.clone(),
        instance_profile_arn: None,
        previous,
        capacity,
        traffic,
        template: Some(ResolvedTemplate {
            asg: name.to_string(),
            launch_template_id: launch_template.id.clone(),
            source_version,
            image_id: ami.and_then(AmiChoice::image_id).map(str::to_string),
            subnet_ids: template.subnet_ids.clone(),
        }),
        create_placement_group: false,
    })
}

/// The version a rollback names, which must exist: from 1 to the latest.
fn rollback_version(problems: &mut Vec<Problem>, at: &str, lt: &FoundLaunchTemplate, version: TemplateVersion) -> Option<u64> {
    let number = match version {
        TemplateVersion::Number(n) => Some(n),
        TemplateVersion::Latest => Some(lt.latest_version),
        TemplateVersion::Default => Some(lt.default_version),
        TemplateVersion::LatestMinus(k) => lt.latest_version.checked_sub(k),
    }
    .filter(|n| (1..=lt.latest_version).contains(n));
    if number.is_none() {
        let message = format!("launch template {} has versions 1 to {}: `ami` names none of them", lt.name, lt.latest_version);
        problems.push(Problem::new(at, message));
    }
    number
}

struct Scope<'a> {
    project: &'a str,
    config: &'a str,
    service: &'a str,
    /// The deployer's conventions the resources are judged by.
    settings: &'a Settings,
}

fn exactly_one(matches: &[Found]) -> Result<&Found, usize> {
    match matches {
        [one] => Ok(one),
        _ => Err(matches.len()),
    }
}

fn not_exactly_one(kind: &str, reference: &str, found: usize) -> String {
    match found {
        0 => format!("no {kind} `{reference}` found"),
        n => format!("{n} {kind}s match `{reference}`; it must name exactly one"),
    }
}

/// AMIs and subnets: exactly one match, tagged `DeployWith=<opt_in>` (`skald` unless the
/// deployer's settings say otherwise).
fn check_opted_in(problems: &mut Vec<Problem>, path: &str, reference: &str, matches: &[Found], kind: &str, opt_in: &str) -> Option<String> {
    let found = exactly_one(matches).map_err(|n| problems.push(Problem::new(path, not_exactly_one(kind, reference, n)))).ok()?;
    if found.tags.get(TAG_DEPLOY_WITH).map(String::as_str) != Some(opt_in) {
        problems.push(Problem::new(path, format!("{kind} `{reference}` ({}) is not tagged {TAG_DEPLOY_WITH}={opt_in}", found.id)));
        return None;
    }
    Some(found.id.clone())
}

/// Security groups, ELBs, target groups: found, and tagged for this project, config and service.
fn check_scoped(
    problems: &mut Vec<Problem>,
    path: &str,
    reference: &str,
    found: Result<&Found, usize>,
    scope: &Scope<'_>,
    kind: &str,
) -> Option<String> {
    let found = found.map_err(|n| problems.push(Problem::new(path, not_exactly_one(kind, reference, n)))).ok()?;
    if found.tags.get(TAG_ALLOWED_SERVICE) == Some(&names::allowed_service(scope.project, scope.config, scope.service)) {
        // Odin's opt-in, one tag naming the service whole; honoured for every scoped resource.
        return Some(found.id.clone());
    }
    let wanted = [(TAG_PROJECT, scope.project), (TAG_CONFIG, scope.config), (TAG_SERVICE, scope.service)];
    let wrong: Vec<String> = wanted
        .iter()
        .filter(|(key, value)| !found.tags.get(*key).is_some_and(|v| v == value || v == ALL))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if !wrong.is_empty() {
        problems.push(Problem::new(path, format!("{kind} `{reference}` is not tagged {} (or `{ALL}`)", wrong.join(", "))));
        return None;
    }
    Some(found.id.clone())
}

/// The template group is found and scoped to the service; the production rule, if there is
/// one, forwards to exactly one group (a weighted rule means an earlier deploy stopped mid-shift
/// and a person must decide which group is live); without one, the exemplar exists to copy.
fn check_traffic(
    problems: &mut Vec<Problem>,
    path: &str,
    traffic: &Traffic,
    lookup: &Lookup,
    scope: &Scope<'_>,
) -> Option<ResolvedTraffic> {
    let template = lookup.template_target_groups.get(&traffic.target_group);
    let template_found = template.map(|t| Found { id: t.arn.clone(), tags: t.tags.clone() });
    let template_path = format!("{path}.target_group");
    let scoped = check_scoped(problems, &template_path, &traffic.target_group, template_found.as_ref().ok_or(0), scope, "target group");
    let Some(rules) = lookup.listeners.get(&traffic.listener) else {
        problems.push(Problem::new(format!("{path}.listener"), format!("no listener `{}` found", traffic.listener)));
        return None;
    };
    let at = |priority: u32| rules.iter().find(|r| r.priority == Some(priority));
    let (conditions, live_target_group, copy) = match (at(traffic.priority), at(traffic.exemplar_priority())) {
        (Some(rule), _) => match rule.forward.as_slice() {
            [only] => (rule.conditions.clone(), Some(only.target_group.clone()), None),
            forward => {
                let message = format!(
                    "the rule at priority {} forwards to {} target groups; a deploy stopped mid-shift: set it to forward to the live group by hand",
                    traffic.priority,
                    forward.len()
                );
                problems.push(Problem::new(format!("{path}.priority"), message));
                return None;
            }
        },
        (None, Some(exemplar)) => {
            // Without the template group (a problem reported above) there is nothing to judge by.
            match template.map(|t| listener_rule::copy_of_exemplar(exemplar, &t.arn)) {
                None => (exemplar.conditions.clone(), None, None),
                Some(Ok(copy)) => (exemplar.conditions.clone(), None, Some(copy)),
                Some(Err(why)) => {
                    let at = format!("{path}.priority");
                    problems.extend(
                        why.into_iter().map(|w| Problem::new(&at, format!("{w} (rule at priority {})", traffic.exemplar_priority()))),
                    );
                    return None;
                }
            }
        }
        (None, None) => {
            let message = format!(
                "no rule at priority {} and no exemplar rule at priority {} to copy on a first deploy",
                traffic.priority,
                traffic.exemplar_priority()
            );
            problems.push(Problem::new(format!("{path}.priority"), message));
            return None;
        }
    };
    for (i, alarm) in traffic.alarms.iter().enumerate() {
        if !lookup.alarms.contains(alarm) {
            problems.push(Problem::new(format!("{path}.alarms[{i}]"), format!("no CloudWatch alarm `{alarm}` found")));
        }
    }
    let template = template?;
    if let Some(kind) = template.shape.target_type.as_deref().filter(|t| *t != TARGET_TYPE_INSTANCE) {
        let message = format!("target group `{}` has target type `{kind}`; an ASG registers instances only", traffic.target_group);
        problems.push(Problem::new(&template_path, message));
        return None;
    }
    scoped?;
    Some(ResolvedTraffic {
        listener_arn: traffic.listener.clone(),
        priority: traffic.priority,
        conditions,
        live_target_group,
        copy,
        template: template.shape.clone(),
        alarms: traffic.alarms.clone(),
        template_tags: template.tags.clone(),
    })
}

fn check_profile(problems: &mut Vec<Problem>, path: &str, name: &str, lookup: &Lookup, scope: &Scope<'_>) -> Option<String> {
    let Some(profile) = lookup.instance_profiles.get(name) else {
        problems.push(Problem::new(path, format!("no instance profile `{name}` found")));
        return None;
    };
    let allowed = names::instance_profile_paths(&scope.settings.path_prefix, scope.project, scope.config, scope.service);
    if !allowed.contains(&profile.path) {
        let message = format!("instance profile `{name}` has path `{}`; it must be one of {}", profile.path, allowed.join(", "));
        problems.push(Problem::new(path, message));
        return None;
    }
    Some(profile.arn.clone())
}

/// A template ASG the release clones: scoped like the release's own ASGs (so the project-config
/// lookup finds it), but never one of them: neither a service's previous ASG nor a dropped one.
fn is_template(release: &Release, asg: &ExistingAsg) -> bool {
    release.services.values().any(|s| s.template.as_deref() == Some(asg.name.as_str()))
}

/// At most one live ASG per service, and none already carrying this release id.
fn check_previous<'a>(
    problems: &mut Vec<Problem>,
    release: &Release,
    release_id: &str,
    lookup: &'a Lookup,
) -> BTreeMap<&'a str, ExistingAsg> {
    let mut previous: BTreeMap<&str, ExistingAsg> = BTreeMap::new();
    for asg in lookup.asgs.iter().filter(|asg| !is_template(release, asg)) {
        if asg.tags.get(TAG_RELEASE).map(String::as_str) == Some(release_id) {
            problems.push(Problem::new("release_id", format!("ASG `{}` already carries release id {release_id}", asg.name)));
        }
        let Some(service) = asg.service().filter(|s| release.services.contains_key(*s)) else { continue };
        if !asg.tags.contains_key(TAG_RELEASE) {
            // Odin's ValidatePrevASG: an ASG that says no release cannot be told apart from one a
            // person made; replacing it would delete what skald never created.
            let message = format!("the live ASG `{}` has no {TAG_RELEASE} tag; tag it with its release or remove it by hand", asg.name);
            problems.push(Problem::new(format!("services.{service}"), message));
        }
        if let Some(other) = previous.insert(service, asg.clone()) {
            let message = format!("two live ASGs serve it (`{}` and `{}`); remove one by hand first", other.name, asg.name);
            problems.push(Problem::new(format!("services.{service}"), message));
        }
    }
    previous
}

fn check_hooks(problems: &mut Vec<Problem>, release: &Release, lookup: &Lookup) -> Vec<ResolvedHook> {
    let mut hooks = Vec::new();
    for (name, hook) in &release.lifecycle {
        let by_name = |field: &str, wanted: &Option<String>, found: &BTreeMap<String, String>, kind: &str, problems: &mut Vec<Problem>| {
            let wanted = wanted.as_ref()?;
            let arn = found.get(wanted).cloned();
            if arn.is_none() {
                problems.push(Problem::new(format!("lifecycle.{name}.{field}"), format!("no {kind} `{wanted}` found")));
            }
            arn
        };
        let role_arn = by_name("role", &hook.role, &lookup.roles, "IAM role", problems).or_else(|| hook.role_arn.clone());
        let target = by_name("sns", &hook.sns, &lookup.topics, "SNS topic", problems).or_else(|| hook.notification_target_arn.clone());
        hooks.push(ResolvedHook {
            name: name.clone(),
            transition: hook.transition.clone(),
            role_arn,
            notification_target_arn: target,
            heartbeat_timeout_secs: hook.heartbeat_timeout,
        });
    }
    hooks
}
