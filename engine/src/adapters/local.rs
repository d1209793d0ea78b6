//! A whole skald on one machine: the real runner over the in-memory store and queue and the
//! simulated cloud, driven on a virtual clock. The demo, the workflow's end-to-end tests and the
//! simulation all run through this.

use super::memory::{block_on, MemoryQueue, MemoryStore, VirtualClock};
use super::sim::{SimCloud, Timings};
use crate::codec;
use crate::message::Message;
use crate::ports::{Clock, Cloud};
use crate::runner::{Handled, RunError, Runner, RunnerConfig};
use crate::workflow::names::{instance_profile_paths, ALL, DEPLOYER, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_PROJECT, TAG_SERVICE};
use crate::workflow::release::{Traffic, TAG_TEMPLATE_MAX_SIZE, TAG_TEMPLATE_MIN_SIZE};
use crate::workflow::resources::{FoundLaunchTemplate, FoundTemplate, RuleCondition, TargetGroupShape, Weighted};
use crate::workflow::{Recorded, Release, State, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// SQS's default visibility timeout: a message a worker took and did not delete comes back then.
pub const VISIBILITY_SECS: u64 = 30;

/// The real runner over the in-memory store and queue on a virtual clock, with any cloud.
pub type MemoryRunner<C> = Runner<MemoryStore, Arc<MemoryQueue>, C, Arc<VirtualClock>>;
pub type LocalRunner = MemoryRunner<SimCloud>;

/// A runner for `cloud` with a fresh in-memory store and queue on `clock`.
pub fn memory_runner<C: Cloud>(clock: Arc<VirtualClock>, cloud: C) -> MemoryRunner<C> {
    Runner {
        store: MemoryStore::new(),
        queue: Arc::new(MemoryQueue::new(clock.clone(), VISIBILITY_SECS)),
        cloud,
        clock,
        config: RunnerConfig::default(),
    }
}

/// Delivers the next message due to `runner`, moving its clock forward to it when none is due
/// yet. `None` when the queue is empty. A message whose handling failed for a retryable reason
/// stays on the queue and comes back after the visibility timeout, as on SQS.
pub async fn deliver_next_to<C: Cloud>(runner: &MemoryRunner<C>) -> Option<Handling> {
    let delivery = match runner.queue.receive() {
        Some(delivery) => delivery,
        None => {
            runner.clock.advance_to(runner.queue.next_visible_at()?);
            runner.queue.receive()?
        }
    };
    let at = runner.clock.now();
    let result = runner.handle(delivery.message.clone(), None, delivery.receive_count > 1).await;
    if matches!(result, Ok(_) | Err(RunError::Rejected(_))) {
        runner.queue.delete(delivery.receipt);
    }
    Some(Handling { at, message: delivery.message, result })
}

pub struct Local {
    pub clock: Arc<VirtualClock>,
    pub store: MemoryStore,
    pub queue: Arc<MemoryQueue>,
    pub cloud: SimCloud,
    pub runner: LocalRunner,
}

/// What one delivered message came to.
#[derive(Debug)]
pub struct Handling {
    pub at: Timestamp,
    pub message: Message,
    pub result: Result<Handled, RunError>,
}

impl Local {
    pub fn new(start: Timestamp, timings: Timings) -> Local {
        let clock = VirtualClock::starting_at(start);
        let cloud = SimCloud::new(clock.clone(), timings);
        let runner = memory_runner(clock.clone(), cloud.clone());
        Local { clock, store: runner.store.clone(), queue: runner.queue.clone(), cloud, runner }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Queues a deploy request as a producer would, created now.
    pub fn submit(&self, release: &Release, release_id: &str) {
        let message =
            Message::DeployRequested { release: Box::new(release.clone()), release_id: release_id.into(), created_at: self.now() };
        self.queue.push(&message, 0);
    }

    pub fn halt(&self, release: &Release, reason: &str) {
        let message =
            Message::HaltRequested { project: release.project_name.clone(), config: release.config_name.clone(), reason: reason.into() };
        self.queue.push(&message, 0);
    }

    /// Queues an undeploy of the release's project-config, as `skald undeploy` would.
    pub fn undeploy(&self, release: &Release, undeploy_id: &str, reason: &str) {
        self.queue.push(&Message::undeploy_of(release, undeploy_id, reason), 0);
    }

    /// Delivers the next message due, moving the clock forward to it when none is due yet.
    /// `None` when the queue is empty. A message whose handling failed for a retryable reason
    /// stays on the queue and comes back after the visibility timeout, as on SQS.
    pub fn deliver_next(&self) -> Option<Handling> {
        block_on(deliver_next_to(&self.runner))
    }

    /// Delivers messages until the queue is empty or `messages_max` were delivered.
    pub fn run(&self, messages_max: usize) -> Vec<Handling> {
        (0..messages_max).map_while(|_| self.deliver_next()).collect()
    }

    /// The decoded history of a deploy.
    pub fn history(&self, deploy: &str) -> Vec<Recorded> {
        self.read(deploy).0
    }

    pub fn state(&self, deploy: &str) -> State {
        self.read(deploy).1
    }

    fn read(&self, deploy: &str) -> (Vec<Recorded>, State) {
        codec::read_history(&self.store.history(deploy)).expect("the local store holds only histories skald wrote")
    }
}

/// The example's traffic block for web in `config`: the config's own ALB listener, production rule
/// priority 10 and template target group; default pacing.
pub fn example_traffic(config: &str) -> Traffic {
    Traffic {
        listener: format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/{config}/50dc6c495c0c9188/f2f7dc8efc522ab2"),
        priority: 10,
        target_group: format!("{config}-web-template"),
        shift_per_step: None,
        wait_per_step: None,
        bake_time: None,
        health_timeout: None,
        alarms: Vec::new(),
    }
}

/// A traffic-shifted service's template target group and the exemplar rule a first deploy copies.
pub fn provision_traffic(cloud: &SimCloud, traffic: &Traffic, scope: &[(&str, &str)]) {
    let shape = TargetGroupShape {
        protocol: "HTTP".into(),
        port: 8080,
        vpc_id: "vpc-0123456789abcdef0".into(),
        health_check_protocol: Some("HTTP".into()),
        health_check_path: Some("/health".into()),
        health_check_port: None,
        healthy_threshold: Some(2),
        unhealthy_threshold: Some(2),
        health_check_interval_secs: Some(10),
        matcher: Some("200".into()),
        ..TargetGroupShape::default()
    };
    let template = cloud.add_template_target_group(&traffic.target_group, scope, shape);
    let conditions = [RuleCondition::of_values("path-pattern", &["/*"])];
    cloud.add_rule(&traffic.listener, traffic.exemplar_priority(), &conditions, &[Weighted { target_group: template, weight: 100 }]);
}

/// A template ASG for `service` of `release`'s project-config, scoped to it, on launch template
/// `lt-0<service>` at version `latest_version`, sizing its clones by its tags; callers add its
/// subnets and load balancers.
pub fn template_for(release: &Release, service: &str, latest_version: u64, (min_size, max_size): (u32, u32)) -> FoundTemplate {
    let tags = [
        (TAG_PROJECT, release.project_name.clone()),
        (TAG_CONFIG, release.config_name.clone()),
        (TAG_SERVICE, service.to_string()),
        (TAG_TEMPLATE_MIN_SIZE, min_size.to_string()),
        (TAG_TEMPLATE_MAX_SIZE, max_size.to_string()),
    ];
    FoundTemplate {
        tags: tags.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        launch_template: Some(FoundLaunchTemplate {
            id: format!("lt-0{service}"),
            name: service.to_string(),
            latest_version,
            default_version: 1,
        }),
        subnet_ids: Vec::new(),
        elbs: Vec::new(),
        target_group_arns: Vec::new(),
    }
}

/// The example project the demo and the tests deploy.
pub const EXAMPLE_RELEASE: &str = include_str!("../../../examples/release.json");

pub fn example_release() -> Release {
    codec::parse_release(EXAMPLE_RELEASE).expect("the example release is valid")
}

/// Provisions what the example release uses, each resource opted in to skald with its tags.
pub fn provision_example(cloud: &SimCloud, release: &Release) {
    let (project, config) = (release.project_name.as_str(), release.config_name.as_str());
    let opt_in = [(TAG_DEPLOY_WITH, DEPLOYER)];
    cloud.add_image("ami-0a1b2c3d4e5f60718", &[("Name", release.ami.as_str()), opt_in[0]]);
    for (i, subnet) in release.subnets.iter().enumerate() {
        cloud.add_subnet(&format!("subnet-0{i:016x}"), &[("Name", subnet.as_str()), opt_in[0]]);
    }
    // A security group used by several services is tagged for all of them with `_all`.
    let mut sg_users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, service) in &release.services {
        for sg in &service.security_groups {
            sg_users.entry(sg).or_default().push(name);
        }
    }
    for (i, (sg, users)) in sg_users.iter().enumerate() {
        let service = if users.len() == 1 { users[0] } else { ALL };
        let tags = [("Name", *sg), (TAG_PROJECT, project), (TAG_CONFIG, config), (TAG_SERVICE, service)];
        cloud.add_security_group(&format!("sg-0{i:016x}"), &tags);
    }
    for (name, service) in &release.services {
        let scope = [(TAG_PROJECT, project), (TAG_CONFIG, config), (TAG_SERVICE, name.as_str())];
        for elb in &service.elbs {
            cloud.add_elb(elb, &scope);
        }
        for tg in &service.target_groups {
            cloud.add_target_group(tg, &scope);
        }
        if let Some(profile) = &service.profile {
            cloud.add_instance_profile(profile, &instance_profile_paths(DEPLOYER, project, config, name)[0]);
        }
        if let Some(traffic) = &service.traffic {
            provision_traffic(cloud, traffic, &scope);
        }
    }
    for hook in release.lifecycle.values() {
        if let Some(role) = &hook.role {
            cloud.add_role(role);
        }
        if let Some(topic) = &hook.sns {
            cloud.add_topic(topic);
        }
    }
}
