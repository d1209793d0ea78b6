//! A simulated cloud on a virtual clock: AMIs, subnets, security groups, instance profiles, classic
//! ELBs and target groups with tags, and Auto Scaling groups whose instances boot, pass or fail
//! health, and terminate, after configurable delays. Faults are injected per operation.
//!
//! It answers the same questions the AWS adapter will, in the same shapes, so the runner cannot
//! tell them apart; it is how the workflow is tested end to end without a network.

use crate::notify::Notification;
use crate::ports::{Clock, Cloud};
use crate::workflow::command::{HealthTarget, Placement};
use crate::workflow::health::{AsgSize, InstanceReport, ServiceReport};
use crate::workflow::listener_rule::{self, NewRule, RuleAction};
use crate::workflow::names::{TAG_CONFIG, TAG_PROJECT, TAG_RELEASE};
use crate::workflow::placement::{FoundPlacementGroup, STATE_AVAILABLE};
use crate::workflow::release::AMI_NAME_PREFIX;
use crate::workflow::resources::{ExistingAsg, Found, FoundProfile, FoundRule, FoundTargetGroup, Lookup, Query, RuleCondition, Tags};
use crate::workflow::resources::{FoundImage, FoundTemplate, TargetGroupShape, Weighted};
use crate::workflow::{CloudError, LaunchSpec, Timestamp};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// How an instance of a given ASG behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Boots and passes every health check.
    Healthy,
    /// Boots, but never passes its health checks.
    NeverHealthy,
    /// Boots, then starts terminating this long after launch.
    TerminatesAfterMs(u64),
    /// Boots, then passes and fails its load balancer checks by turns, each turn this long.
    Flapping(u64),
    /// The ASG's first instance never passes its health checks; every later one does. One bad
    /// instance, which must not stall a step rollout.
    FirstNeverHealthy,
}

/// The cloud operations faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Lookup,
    Launch,
    SetCapacity,
    Observe,
    Detach,
    IsDetached,
    Delete,
    Notify,
    CreateTargetGroup,
    ShiftTraffic,
}

#[derive(Clone, Debug)]
struct Fault {
    error: CloudError,
    /// How many more calls fail; `None` fails them all.
    remaining: Option<u32>,
}

/// Timings of the simulated world.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// From launch to InService.
    pub boot_ms: u64,
    /// From InService to healthy in load balancers.
    pub lb_healthy_ms: u64,
    /// From detach to the load balancers having drained the instances.
    pub drain_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { boot_ms: 40_000, lb_healthy_ms: 20_000, drain_ms: 10_000 }
    }
}

#[derive(Clone, Debug)]
struct Instance {
    id: String,
    launched_at: Timestamp,
    fate: Fate,
}

#[derive(Clone, Debug)]
pub struct SimAsg {
    pub tags: Tags,
    pub launch_template: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    pub elbs: Vec<String>,
    pub target_groups: Vec<String>,
    pub detached_at: Option<Timestamp>,
    instances: Vec<Instance>,
}

impl SimAsg {
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }
}

#[derive(Default)]
struct World {
    account_id: String,
    region: String,
    images: Vec<Found>,
    subnets: Vec<Found>,
    security_groups: Vec<Found>,
    elbs: BTreeMap<String, Found>,
    target_groups: BTreeMap<String, Found>,
    /// Slow-start durations of target groups, by name (none: slow start off).
    slow_starts: BTreeMap<String, u32>,
    instance_profiles: BTreeMap<String, FoundProfile>,
    roles: BTreeMap<String, String>,
    topics: BTreeMap<String, String>,
    placement_groups: BTreeMap<String, FoundPlacementGroup>,
    launch_templates: BTreeMap<String, Tags>,
    asgs: BTreeMap<String, SimAsg>,
    /// Template target groups, by name, with the settings a release's group copies.
    template_target_groups: BTreeMap<String, FoundTargetGroup>,
    /// Template ASGs, by name.
    templates: BTreeMap<String, FoundTemplate>,
    /// Images found by name prefix (and owner).
    named_images: Vec<FoundImage>,
    /// CloudWatch alarms, by name: whether each is in ALARM.
    alarms: BTreeMap<String, bool>,
    /// Target groups skald created, by name.
    own_target_groups: BTreeMap<String, Found>,
    /// Listener rules, by listener ARN.
    listeners: BTreeMap<String, Vec<FoundRule>>,
    next_rule: u64,
    fates: Vec<(String, Fate)>,
    faults: BTreeMap<Op, Fault>,
    next_instance: u64,
    calls: Vec<String>,
    timings: Timings,
    /// Whether transitions are published, and those that were (in order, repeats included).
    notifying: bool,
    notifications: Vec<Notification>,
}

/// The simulated cloud. Cloning shares the world.
#[derive(Clone)]
pub struct SimCloud {
    clock: Arc<dyn Clock + Send + Sync>,
    world: Arc<Mutex<World>>,
}

impl SimCloud {
    pub fn new(clock: Arc<dyn Clock + Send + Sync>, timings: Timings) -> SimCloud {
        let world = World { account_id: "123456789012".into(), region: "us-east-1".into(), timings, ..World::default() };
        SimCloud { clock, world: Arc::new(Mutex::new(world)) }
    }

    /// Publishes transitions from now on (off by default, as for a deployer with no topic).
    pub fn enable_notifications(&self) {
        self.with(|w| w.notifying = true);
    }

    /// Every notification published, in order, repeats included.
    pub fn notifications(&self) -> Vec<Notification> {
        self.with(|w| w.notifications.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    pub fn add_image(&self, id: &str, tags: &[(&str, &str)]) {
        self.with(|w| w.images.push(found(id, tags)));
    }

    pub fn add_subnet(&self, id: &str, tags: &[(&str, &str)]) {
        self.with(|w| w.subnets.push(found(id, tags)));
    }

    pub fn add_security_group(&self, id: &str, tags: &[(&str, &str)]) {
        self.with(|w| w.security_groups.push(found(id, tags)));
    }

    pub fn add_elb(&self, name: &str, tags: &[(&str, &str)]) {
        self.with(|w| w.elbs.insert(name.into(), found(name, tags)));
    }

    pub fn add_target_group(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let arn = target_group_arn(name);
        self.with(|w| w.target_groups.insert(name.into(), found(&arn, tags)));
        arn
    }

    /// A template target group a traffic-shifted service clones; returns its ARN.
    /// Turns on slow start for a target group added with `add_target_group`: new targets get
    /// their full share of requests over `secs`.
    pub fn set_slow_start(&self, name: &str, secs: u32) {
        self.with(|w| w.slow_starts.insert(name.into(), secs));
    }

    pub fn add_template_target_group(&self, name: &str, tags: &[(&str, &str)], shape: TargetGroupShape) -> String {
        let arn = target_group_arn(name);
        let template = FoundTargetGroup { arn: arn.clone(), tags: found(&arn, tags).tags, shape };
        self.with(|w| w.template_target_groups.insert(name.into(), template));
        arn
    }

    /// A template ASG that services may be cloned from.
    pub fn add_template(&self, name: &str, template: FoundTemplate) {
        self.with(|w| w.templates.insert(name.into(), template));
    }

    pub fn template(&self, name: &str) -> Option<FoundTemplate> {
        self.with(|w| w.templates.get(name).cloned())
    }

    /// Creates an alarm, or sets whether it is in ALARM.
    pub fn set_alarm(&self, name: &str, firing: bool) {
        self.with(|w| w.alarms.insert(name.into(), firing));
    }

    /// An image that `$name-prefix:` AMIs may resolve to.
    pub fn add_named_image(&self, image: FoundImage) {
        self.with(|w| w.named_images.push(image));
    }

    /// A rule on an ALB listener (the listener is created with its first rule).
    pub fn add_rule(&self, listener_arn: &str, priority: u32, conditions: &[RuleCondition], forward: &[Weighted]) {
        self.with(|w| {
            let rule = w.rule(priority, conditions, forward);
            let rules = w.listeners.entry(listener_arn.into()).or_default();
            rules.retain(|r| r.priority != Some(priority));
            rules.push(rule);
            rules.sort_by_key(|r| r.priority);
        });
    }

    /// Gives the rule at `priority` these actions before its forward (authentication, say) and
    /// these tags, as a person shapes an exemplar rule.
    pub fn shape_rule(&self, listener_arn: &str, priority: u32, before_forward: &[RuleAction], tags: &Tags) {
        self.with(|w| {
            let rule = w.listeners.get_mut(listener_arn).and_then(|rules| rules.iter_mut().find(|r| r.priority == Some(priority)));
            let rule = rule.unwrap_or_else(|| panic!("no rule at {priority} on {listener_arn}"));
            let order = before_forward.len() as u32 + 1;
            let forward = RuleAction {
                kind: listener_rule::ACTION_FORWARD.into(),
                order: Some(order),
                forward: rule.forward.clone(),
                ..RuleAction::default()
            };
            rule.actions = before_forward.iter().cloned().chain([forward]).collect();
            rule.tags = tags.clone();
        });
    }

    /// Every listener's rules.
    pub fn listeners(&self) -> BTreeMap<String, Vec<FoundRule>> {
        self.with(|w| w.listeners.clone())
    }

    /// A listener's rule at `priority`, if there is one.
    pub fn rule_at(&self, listener_arn: &str, priority: u32) -> Option<FoundRule> {
        self.with(|w| w.listeners.get(listener_arn)?.iter().find(|r| r.priority == Some(priority)).cloned())
    }

    /// Every target group skald created that still exists: name to ARN.
    pub fn own_target_groups(&self) -> BTreeMap<String, String> {
        self.with(|w| w.own_target_groups.iter().map(|(name, found)| (name.clone(), found.id.clone())).collect())
    }

    pub fn add_instance_profile(&self, name: &str, path: &str) {
        let arn = format!("arn:aws:iam::123456789012:instance-profile{path}{name}");
        self.with(|w| w.instance_profiles.insert(name.into(), FoundProfile { arn, path: path.into() }));
    }

    pub fn add_role(&self, name: &str) {
        self.with(|w| w.roles.insert(name.into(), format!("arn:aws:iam::123456789012:role/{name}")));
    }

    pub fn add_topic(&self, name: &str) {
        self.with(|w| w.topics.insert(name.into(), format!("arn:aws:sns:us-east-1:123456789012:{name}")));
    }

    pub fn add_placement_group(&self, name: &str, group: FoundPlacementGroup) {
        self.with(|w| w.placement_groups.insert(name.into(), group));
    }

    /// The placement groups that exist, by name.
    pub fn placement_groups(&self) -> BTreeMap<String, FoundPlacementGroup> {
        self.with(|w| w.placement_groups.clone())
    }

    /// Instances launched from now on into ASGs whose name contains `asg_part` behave as `fate`.
    pub fn set_fate(&self, asg_part: &str, fate: Fate) {
        self.with(|w| w.fates.push((asg_part.into(), fate)));
    }

    /// The next `times` calls of `op` (all of them with `None`) fail with `error`.
    pub fn fail(&self, op: Op, error: CloudError, times: Option<u32>) {
        self.with(|w| w.faults.insert(op, Fault { error, remaining: times }));
    }

    pub fn clear_faults(&self) {
        self.with(|w| w.faults.clear());
    }

    pub fn asgs(&self) -> BTreeMap<String, SimAsg> {
        self.with(|w| w.asgs.clone())
    }

    /// Someone other than skald deletes an ASG (and its instances).
    pub fn remove_asg(&self, name: &str) {
        self.with(|w| w.asgs.remove(name));
    }

    /// Someone other than skald (a scaling policy, a person) resizes an ASG.
    pub fn resize_asg(&self, name: &str, min_size: u32, desired: u32) {
        let now = self.clock.now();
        self.with(|w| {
            let Some(mut group) = w.asgs.remove(name) else { return };
            group.min_size = min_size;
            w.resize(name, &mut group, desired, now);
            w.asgs.insert(name.to_string(), group);
        });
    }

    pub fn asg_names(&self) -> Vec<String> {
        self.with(|w| w.asgs.keys().cloned().collect())
    }

    pub fn launch_template_names(&self) -> Vec<String> {
        self.with(|w| w.launch_templates.keys().cloned().collect())
    }

    /// Every cloud call made, in order: `launch web-…`, `delete …`, ….
    pub fn calls(&self) -> Vec<String> {
        self.with(|w| w.calls.clone())
    }

    /// Records the call and returns the injected fault for it, if any.
    fn enter(&self, op: Op, call: String) -> Result<(), CloudError> {
        self.with(|w| {
            w.calls.push(call);
            let fault = w.faults.get_mut(&op)?;
            let error = fault.error.clone();
            match &mut fault.remaining {
                Some(0) => {
                    w.faults.remove(&op);
                    None
                }
                Some(n) => {
                    *n -= 1;
                    Some(error)
                }
                None => Some(error),
            }
        })
        .map_or(Ok(()), Err)
    }

    fn lookup_now(&self, query: &Query) -> Lookup {
        self.with(|w| {
            let by_ref = |pool: &[Found], reference: &str, id_prefix: &str| -> Vec<Found> {
                pool.iter()
                    .filter(|r| {
                        if reference.starts_with(id_prefix) {
                            r.id == reference
                        } else {
                            r.tags.get("Name").map(String::as_str) == Some(reference)
                        }
                    })
                    .cloned()
                    .collect()
            };
            let asgs = w
                .asgs
                .iter()
                .filter(|(_, a)| a.tags.get(TAG_PROJECT) == Some(&query.project) && a.tags.get(TAG_CONFIG) == Some(&query.config))
                .map(|(name, a)| ExistingAsg {
                    name: name.clone(),
                    desired_capacity: a.desired,
                    tags: a.tags.clone(),
                    launch_template: Some(a.launch_template.clone()),
                    elbs: a.elbs.clone(),
                    target_groups: a.target_groups.clone(),
                })
                .chain(
                    // As on AWS, a template ASG scoped to the project-config is among its ASGs.
                    w.templates
                        .iter()
                        .filter(|(_, t)| t.tags.get(TAG_PROJECT) == Some(&query.project) && t.tags.get(TAG_CONFIG) == Some(&query.config))
                        .map(|(name, t)| ExistingAsg {
                            name: name.clone(),
                            desired_capacity: 0,
                            tags: t.tags.clone(),
                            launch_template: t.launch_template.as_ref().map(|lt| lt.name.clone()),
                            elbs: t.elbs.clone(),
                            target_groups: t.target_group_arns.clone(),
                        }),
                )
                .collect();
            Lookup {
                account_id: w.account_id.clone(),
                region: w.region.clone(),
                amis: by_ref(&w.images, &query.ami, "ami-"),
                subnets: query.subnets.iter().map(|s| (s.clone(), by_ref(&w.subnets, s, "subnet-"))).collect(),
                security_groups: query.security_groups.iter().map(|s| (s.clone(), by_ref(&w.security_groups, s, "sg-"))).collect(),
                elbs: pick(&w.elbs, &query.elbs),
                target_groups: pick(&w.target_groups, &query.target_groups),
                instance_profiles: pick(&w.instance_profiles, &query.instance_profiles),
                roles: pick(&w.roles, &query.roles),
                topics: pick(&w.topics, &query.topics),
                asgs,
                listeners: pick(&w.listeners, &query.listeners),
                template_target_groups: pick(&w.template_target_groups, &query.template_target_groups),
                templates: pick(&w.templates, &query.templates),
                images_by_prefix: images_by_prefix(&w.named_images, query),
                alarms: query.alarms.iter().filter(|a| w.alarms.contains_key(*a)).cloned().collect(),
                slow_start_secs: pick(&w.slow_starts, &query.target_groups),
                placement_groups: (!query.placement_groups.is_empty()).then(|| pick(&w.placement_groups, &query.placement_groups)),
            }
        })
    }

    fn launch_now(&self, spec: &LaunchSpec) -> Result<(), CloudError> {
        let now = self.clock.now();
        self.with(|w| {
            if let Some(existing) = w.asgs.get(&spec.asg_name) {
                // Idempotent create: the ASG a crashed worker made for this release is ours.
                return if existing.tags.get(TAG_RELEASE) == spec.tags.get(TAG_RELEASE) {
                    Ok(())
                } else {
                    Err(CloudError::permanent("AlreadyExists", format!("an ASG named {} exists and is not this release's", spec.asg_name)))
                };
            }
            place(&mut w.placement_groups, spec.placement.as_ref())?;
            let launch_template = match &spec.template {
                // A clone runs on a new version of its template's launch template (a rollback on
                // the version it names): the launch template is the template's, not the ASG's own.
                Some(clone) => {
                    let template =
                        w.templates.values_mut().find_map(|t| t.launch_template.as_mut().filter(|lt| lt.id == clone.launch_template_id));
                    let template = template.ok_or_else(|| CloudError::permanent("ValidationError", "no such launch template"))?;
                    if clone.image_id.is_some() {
                        template.latest_version += 1;
                    }
                    template.name.clone()
                }
                None => {
                    w.launch_templates.insert(spec.launch_template_name.clone(), spec.tags.clone());
                    spec.launch_template_name.clone()
                }
            };
            let mut asg = SimAsg {
                tags: spec.tags.clone(),
                launch_template,
                min_size: spec.min_size,
                max_size: spec.max_size,
                desired: 0,
                elbs: spec.elbs.clone(),
                target_groups: spec.target_group_arns.clone(),
                detached_at: None,
                instances: Vec::new(),
            };
            w.resize(&spec.asg_name, &mut asg, spec.desired_capacity, now);
            w.asgs.insert(spec.asg_name.clone(), asg);
            Ok(())
        })
    }

    fn observe_now(&self, targets: &[HealthTarget]) -> BTreeMap<String, ServiceReport> {
        let now = self.clock.now();
        self.with(|w| targets.iter().map(|t| (t.service.clone(), w.report(t, now))).collect())
    }
}

fn target_group_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123456789abcdef")
}

fn found(id: &str, tags: &[(&str, &str)]) -> Found {
    Found { id: id.into(), tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
}

/// For a `$name-prefix:` AMI: the images so named of the owners asked for.
fn images_by_prefix(images: &[FoundImage], query: &Query) -> Vec<FoundImage> {
    let Some(prefix) = query.ami.strip_prefix(AMI_NAME_PREFIX) else { return Vec::new() };
    images.iter().filter(|i| i.name.starts_with(prefix) && query.ami_owners.contains(&i.owner)).cloned().collect()
}

/// As EC2 does: the group a launch asks to create is made (once: a second create finds it), and
/// an ASG may not name a group that does not exist.
fn place(groups: &mut BTreeMap<String, FoundPlacementGroup>, placement: Option<&Placement>) -> Result<(), CloudError> {
    let Some(placement) = placement else { return Ok(()) };
    if placement.create {
        let group = FoundPlacementGroup {
            strategy: placement.strategy.clone(),
            partition_count: placement.partition_count,
            state: STATE_AVAILABLE.to_string(),
        };
        groups.entry(placement.group_name.clone()).or_insert(group);
    }
    match groups.contains_key(&placement.group_name) {
        true => Ok(()),
        false => Err(CloudError::permanent("ValidationError", format!("placement group {} does not exist", placement.group_name))),
    }
}

fn pick<V: Clone>(pool: &BTreeMap<String, V>, wanted: &std::collections::BTreeSet<String>) -> BTreeMap<String, V> {
    wanted.iter().filter_map(|name| pool.get(name).map(|v| (name.clone(), v.clone()))).collect()
}

impl World {
    /// A rule made by hand: its conditions, then a forward.
    fn rule(&mut self, priority: u32, conditions: &[RuleCondition], forward: &[Weighted]) -> FoundRule {
        self.next_rule += 1;
        let arn = format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/sim/{:016x}", self.next_rule);
        let actions = listener_rule::with_forward(&[], forward);
        FoundRule {
            arn,
            priority: Some(priority),
            conditions: conditions.to_vec(),
            forward: forward.to_vec(),
            actions,
            tags: Tags::new(),
            transforms: vec![],
        }
    }

    /// A rule a shift creates: the exemplar's actions and tags where the shift copies them.
    fn copied_rule(&mut self, priority: u32, new: NewRule<'_>, forward: &[Weighted]) -> FoundRule {
        let mut rule = self.rule(priority, new.conditions, forward);
        if let Some(copy) = new.copy {
            rule.actions = listener_rule::with_forward(&copy.actions, forward);
            rule.tags = copy.tags.clone();
        }
        rule
    }

    fn target_group_exists(&self, arn: &str) -> bool {
        let own = self.own_target_groups.values().any(|f| f.id == arn);
        own || self.target_groups.values().any(|f| f.id == arn) || self.template_target_groups.values().any(|t| t.arn == arn)
    }

    fn create_target_group(&mut self, name: &str, tags: &Tags) -> Result<String, CloudError> {
        if let Some(existing) = self.own_target_groups.get(name) {
            return match existing.tags.get(TAG_RELEASE) == tags.get(TAG_RELEASE) {
                true => Ok(existing.id.clone()),
                false => Err(CloudError::permanent("DuplicateTargetGroupName", format!("a target group named {name} exists"))),
            };
        }
        let arn = target_group_arn(name);
        self.own_target_groups.insert(name.into(), Found { id: arn.clone(), tags: tags.clone() });
        Ok(arn)
    }

    fn shift_traffic(&mut self, listener: &str, priority: u32, rule: NewRule<'_>, forward: &[Weighted]) -> Result<(), CloudError> {
        if let Some(missing) = forward.iter().find(|w| !self.target_group_exists(&w.target_group)) {
            return Err(CloudError::permanent("TargetGroupNotFound", format!("no target group {}", missing.target_group)));
        }
        let fresh = (!forward.is_empty()).then(|| self.copied_rule(priority, rule, forward));
        let rules = self.listeners.get_mut(listener).ok_or_else(|| CloudError::permanent("ListenerNotFound", listener.to_string()))?;
        match (rules.iter().position(|r| r.priority == Some(priority)), fresh) {
            (Some(at), None) => drop(rules.remove(at)),
            (Some(at), Some(_)) => {
                let existing = &mut rules[at];
                existing.actions = listener_rule::with_forward(&existing.actions, forward);
                existing.forward = forward.to_vec();
            }
            (None, Some(rule)) => rules.push(rule),
            (None, None) => {}
        }
        rules.sort_by_key(|r| r.priority);
        Ok(())
    }

    /// Like ELB's DeleteTargetGroup: refused while a listener rule forwards to it.
    fn delete_target_group(&mut self, name: &str) -> Result<(), CloudError> {
        let Some(arn) = self.own_target_groups.get(name).map(|found| found.id.clone()) else { return Ok(()) };
        let in_use = self.listeners.values().flatten().any(|r| r.forward.iter().any(|w| w.target_group == arn));
        if in_use {
            return Err(CloudError::transient(format!("ResourceInUse: target group {name} is in use by a listener rule")));
        }
        self.own_target_groups.remove(name);
        Ok(())
    }

    fn resize(&mut self, asg_name: &str, asg: &mut SimAsg, desired: u32, now: Timestamp) {
        let fate = self.fates.iter().rev().find(|(part, _)| asg_name.contains(part.as_str())).map_or(Fate::Healthy, |(_, f)| *f);
        while asg.instances.len() < desired as usize {
            self.next_instance += 1;
            let fate = match fate {
                Fate::FirstNeverHealthy if asg.instances.is_empty() => Fate::NeverHealthy,
                Fate::FirstNeverHealthy => Fate::Healthy,
                fate => fate,
            };
            asg.instances.push(Instance { id: format!("i-{:017x}", self.next_instance), launched_at: now, fate });
        }
        // Scale-in removes the newest instances first.
        asg.instances.truncate(desired as usize);
        asg.desired = desired;
    }

    fn report(&self, target: &HealthTarget, now: Timestamp) -> ServiceReport {
        let alarms_firing = target.alarms.iter().filter(|a| self.alarms.get(*a) == Some(&true)).cloned().collect();
        let mut report = ServiceReport { alarms_firing, ..ServiceReport::default() };
        // Like DescribeAutoScalingGroups, which leaves out a name it does not know.
        let Some(asg) = self.asgs.get(&target.asg) else { return ServiceReport { missing: true, ..report } };
        report.size = Some(AsgSize { min_size: asg.min_size, desired: asg.desired });
        let timings = self.timings;
        for instance in &asg.instances {
            let age = now.ms_since(instance.launched_at);
            let terminating = matches!(instance.fate, Fate::TerminatesAfterMs(after) if age >= after);
            let in_service = age >= timings.boot_ms;
            let lifecycle_state = match (terminating, in_service) {
                (true, _) => "Terminating",
                (false, true) => "InService",
                (false, false) => "Pending",
            };
            let ready_at = timings.boot_ms + timings.lb_healthy_ms;
            let checks_pass = match instance.fate {
                Fate::Healthy | Fate::TerminatesAfterMs(_) => true,
                Fate::NeverHealthy | Fate::FirstNeverHealthy => false,
                Fate::Flapping(turn_ms) => age < ready_at || ((age - ready_at) / turn_ms.max(1)).is_multiple_of(2),
            };
            // Without load balancers, failing checks show in the ASG's own health status.
            let no_load_balancers = target.elbs.is_empty() && target.target_groups.is_empty();
            let ec2_healthy = !(no_load_balancers && in_service && !checks_pass);
            report.instances.push(InstanceReport {
                instance_id: instance.id.clone(),
                lifecycle_state: lifecycle_state.into(),
                health_status: if ec2_healthy { "Healthy" } else { "Unhealthy" }.into(),
            });
            let lb_healthy = !terminating && checks_pass && age >= ready_at && asg.detached_at.is_none();
            for lb in target.elbs.iter().chain(&target.target_groups) {
                let members = report.load_balancers.entry(lb.clone()).or_default();
                if lb_healthy && (asg.elbs.contains(lb) || asg.target_groups.contains(lb)) {
                    members.push(instance.id.clone());
                }
            }
        }
        report
    }
}

impl Cloud for SimCloud {
    /// One simulated world stands for every account: releases naming another account deploy into it.
    fn in_place(&self, _account_id: Option<&str>, _region: Option<&str>) -> impl Future<Output = Result<SimCloud, CloudError>> + Send {
        let same = self.clone();
        async move { Ok(same) }
    }

    fn lookup(&self, query: &Query) -> impl Future<Output = Result<Lookup, CloudError>> + Send {
        let result = self.enter(Op::Lookup, "lookup".into()).map(|()| self.lookup_now(query));
        async move { result }
    }

    fn launch(&self, spec: &LaunchSpec, _user_data: &str) -> impl Future<Output = Result<(), CloudError>> + Send {
        let result = self.enter(Op::Launch, format!("launch {}", spec.asg_name)).and_then(|()| self.launch_now(spec));
        async move { result }
    }

    fn set_capacity(&self, asg: &str, min_size: u32, desired: u32) -> impl Future<Output = Result<(), CloudError>> + Send {
        let now = self.clock.now();
        let result = self.enter(Op::SetCapacity, format!("set_capacity {asg} {min_size} {desired}")).and_then(|()| {
            self.with(|w| {
                let mut group =
                    w.asgs.remove(asg).ok_or_else(|| CloudError::permanent("ValidationError", format!("no ASG named {asg}")))?;
                group.min_size = min_size;
                w.resize(asg, &mut group, desired, now);
                w.asgs.insert(asg.to_string(), group);
                Ok(())
            })
        });
        async move { result }
    }

    fn observe(&self, targets: &[HealthTarget]) -> impl Future<Output = Result<BTreeMap<String, ServiceReport>, CloudError>> + Send {
        let result = self.enter(Op::Observe, "observe".into()).map(|()| self.observe_now(targets));
        async move { result }
    }

    fn detach(&self, asg: &str, _elbs: &[String], _target_groups: &[String]) -> impl Future<Output = Result<(), CloudError>> + Send {
        let now = self.clock.now();
        let result = self.enter(Op::Detach, format!("detach {asg}")).map(|()| {
            self.with(|w| {
                if let Some(group) = w.asgs.get_mut(asg) {
                    group.detached_at.get_or_insert(now);
                }
            })
        });
        async move { result }
    }

    fn is_detached(&self, asg: &str, _elbs: &[String], _target_groups: &[String]) -> impl Future<Output = Result<bool, CloudError>> + Send {
        let now = self.clock.now();
        let result = self.enter(Op::IsDetached, format!("is_detached {asg}")).map(|()| {
            self.with(|w| match w.asgs.get(asg) {
                Some(group) => group.detached_at.is_some_and(|at| now.ms_since(at) >= w.timings.drain_ms),
                None => true,
            })
        });
        async move { result }
    }

    fn create_target_group(
        &self,
        name: &str,
        _shape: &TargetGroupShape,
        tags: &Tags,
    ) -> impl Future<Output = Result<String, CloudError>> + Send {
        let result = self
            .enter(Op::CreateTargetGroup, format!("create_target_group {name}"))
            .and_then(|()| self.with(|w| w.create_target_group(name, tags)));
        async move { result }
    }

    fn shift_traffic(
        &self,
        listener_arn: &str,
        priority: u32,
        rule: NewRule<'_>,
        forward: &[Weighted],
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        let weights: Vec<String> =
            forward.iter().map(|w| format!("{}={}", w.target_group.split('/').nth(1).unwrap_or(&w.target_group), w.weight)).collect();
        let call = format!("shift_traffic {priority} [{}]", weights.join(","));
        let result =
            self.enter(Op::ShiftTraffic, call).and_then(|()| self.with(|w| w.shift_traffic(listener_arn, priority, rule, forward)));
        async move { result }
    }

    fn delete(
        &self,
        asg: &str,
        launch_template: Option<&str>,
        target_group: Option<&str>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        let result = self.enter(Op::Delete, format!("delete {asg}")).and_then(|()| {
            self.with(|w| {
                // The group first, as the AWS adapter does: one a rule still uses keeps its ASG.
                target_group.map_or(Ok(()), |tg| w.delete_target_group(tg))?;
                w.asgs.remove(asg);
                // A template is an ASG like any other to the API: deleting it by name works.
                w.templates.remove(asg);
                if let Some(lt) = launch_template {
                    w.launch_templates.remove(lt);
                }
                Ok(())
            })
        });
        async move { result }
    }

    fn notifies(&self) -> bool {
        self.with(|w| w.notifying)
    }

    fn notify(&self, notification: &Notification) -> impl Future<Output = Result<(), CloudError>> + Send {
        let result = self.enter(Op::Notify, format!("notify {} {}", notification.deploy, notification.phase));
        let result = result.map(|()| self.with(|w| w.notifications.push(notification.clone())));
        async move { result }
    }
}
