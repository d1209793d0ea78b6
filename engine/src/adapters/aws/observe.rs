//! Reading health, and detaching an ASG from its load balancers.
//!
//! Health takes one DescribeAutoScalingGroups for every service, one DescribeInstanceHealth per
//! classic ELB and one DescribeTargetHealth per target group: as few calls as the APIs allow.

use super::errors::{cloud_error, gone_is_done};
use super::AwsCloud;
use crate::workflow::command::HealthTarget;
use crate::workflow::health::{AsgSize, InstanceReport, ServiceReport};
use crate::workflow::CloudError;
use std::collections::{BTreeMap, BTreeSet};

/// DescribeAutoScalingGroups takes at most this many names per call.
const ASG_NAMES_PER_CALL_MAX: usize = 50;

/// What Auto Scaling says of one ASG: its instances, and its size now (which a scaling policy or
/// a person may have changed since skald set it).
struct Group {
    instances: Vec<InstanceReport>,
    size: AsgSize,
}

impl AwsCloud {
    pub(super) async fn observe_services(&self, targets: &[HealthTarget]) -> Result<BTreeMap<String, ServiceReport>, CloudError> {
        let names: Vec<String> = targets.iter().map(|t| t.asg.clone()).collect();
        let groups = self.asg_groups(&names).await?;
        let elbs: BTreeSet<&String> = targets.iter().flat_map(|t| &t.elbs).collect();
        let target_groups: BTreeSet<&String> = targets.iter().flat_map(|t| &t.target_groups).collect();
        let mut healthy_in: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for elb in elbs {
            healthy_in.insert(elb.clone(), self.elb_in_service(elb).await?);
        }
        for tg in target_groups {
            let healthy =
                self.target_group_members(tg).await?.into_iter().filter(|(_, state)| state == "healthy").map(|(id, _)| id).collect();
            healthy_in.insert(tg.clone(), healthy);
        }
        let alarms: BTreeSet<String> = targets.iter().flat_map(|t| t.alarms.iter().cloned()).collect();
        let states = self.alarm_states(&alarms).await?;
        Ok(targets
            .iter()
            .map(|target| {
                // An ASG DescribeAutoScalingGroups leaves out does not exist: reported as missing.
                let group = groups.get(&target.asg);
                let report = ServiceReport {
                    missing: group.is_none(),
                    size: group.map(|g| g.size),
                    instances: group.map(|g| g.instances.clone()).unwrap_or_default(),
                    load_balancers: target
                        .elbs
                        .iter()
                        .chain(&target.target_groups)
                        .map(|lb| (lb.clone(), healthy_in[lb].clone()))
                        .collect(),
                    alarms_firing: target.alarms.iter().filter(|a| states.get(*a).is_some_and(|s| s == "ALARM")).cloned().collect(),
                };
                (target.service.clone(), report)
            })
            .collect())
    }

    /// The state (`OK`, `ALARM`, `INSUFFICIENT_DATA`) of each named CloudWatch alarm that exists.
    pub(super) async fn alarm_states(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, String>, CloudError> {
        let mut states = BTreeMap::new();
        let names: Vec<String> = names.iter().cloned().collect();
        // DescribeAlarms takes at most 100 names; a release names at most TRAFFIC_ALARMS_MAX per service.
        for chunk in names.chunks(100) {
            let out = self
                .cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .max_records(100)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeAlarms", e))?;
            for alarm in out.metric_alarms() {
                let state = alarm.state_value().map(|s| s.as_str().to_string()).unwrap_or_default();
                states.insert(alarm.alarm_name().unwrap_or_default().to_string(), state);
            }
        }
        Ok(states)
    }

    /// Each named ASG's instances and size, as Auto Scaling reports them. An ASG that doesn't
    /// exist is not in the map.
    async fn asg_groups(&self, names: &[String]) -> Result<BTreeMap<String, Group>, CloudError> {
        let mut by_asg = BTreeMap::new();
        for chunk in names.chunks(ASG_NAMES_PER_CALL_MAX) {
            let out = self
                .autoscaling
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
            for group in out.auto_scaling_groups() {
                let reports = group
                    .instances()
                    .iter()
                    .map(|i| InstanceReport {
                        instance_id: i.instance_id().unwrap_or_default().to_string(),
                        lifecycle_state: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                        health_status: i.health_status().unwrap_or_default().to_string(),
                    })
                    .collect();
                let size = AsgSize {
                    min_size: group.min_size().unwrap_or(0).max(0) as u32,
                    desired: group.desired_capacity().unwrap_or(0).max(0) as u32,
                };
                by_asg.insert(group.auto_scaling_group_name().unwrap_or_default().to_string(), Group { instances: reports, size });
            }
        }
        Ok(by_asg)
    }

    /// The instances a classic ELB calls InService.
    async fn elb_in_service(&self, elb: &str) -> Result<Vec<String>, CloudError> {
        let out = self
            .elb
            .describe_instance_health()
            .load_balancer_name(elb)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeInstanceHealth", e))?;
        Ok(out
            .instance_states()
            .iter()
            .filter(|s| s.state() == Some("InService"))
            .filter_map(|s| s.instance_id().map(str::to_string))
            .collect())
    }

    /// Every target of a target group with its state (`healthy`, `initial`, `draining`, …).
    async fn target_group_members(&self, arn: &str) -> Result<Vec<(String, String)>, CloudError> {
        let out =
            self.elbv2.describe_target_health().target_group_arn(arn).send().await.map_err(|e| cloud_error("DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_string();
                let state = d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default();
                Some((id, state))
            })
            .collect())
    }

    /// Detaches the ASG from those of its load balancers it is still attached to, and
    /// deregisters its instances from them, so they drain now rather than when they terminate.
    /// Repeating it after a crash finds less to do and succeeds.
    pub(super) async fn detach_load_balancers(&self, asg_name: &str, elbs: &[String], target_groups: &[String]) -> Result<(), CloudError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(asg_name)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
        let Some(group) = out.auto_scaling_groups().first() else { return Ok(()) };
        let ids: Vec<String> = group.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
        let attached_elbs: Vec<String> = elbs.iter().filter(|e| group.load_balancer_names().contains(e)).cloned().collect();
        let attached_tgs: Vec<String> = target_groups.iter().filter(|t| group.target_group_arns().contains(t)).cloned().collect();
        if !attached_elbs.is_empty() {
            let detached = self
                .autoscaling
                .detach_load_balancers()
                .auto_scaling_group_name(asg_name)
                .set_load_balancer_names(Some(attached_elbs))
                .send()
                .await;
            gone_is_done(detached.map(|_| ()).map_err(|e| cloud_error("DetachLoadBalancers", e)))?;
        }
        if !attached_tgs.is_empty() {
            let detached = self
                .autoscaling
                .detach_load_balancer_target_groups()
                .auto_scaling_group_name(asg_name)
                .set_target_group_arns(Some(attached_tgs))
                .send()
                .await;
            gone_is_done(detached.map(|_| ()).map_err(|e| cloud_error("DetachLoadBalancerTargetGroups", e)))?;
        }
        if ids.is_empty() {
            return Ok(());
        }
        for elb in elbs {
            let instances = ids.iter().map(|id| aws_sdk_elasticloadbalancing::types::Instance::builder().instance_id(id).build()).collect();
            let deregistered =
                self.elb.deregister_instances_from_load_balancer().load_balancer_name(elb).set_instances(Some(instances)).send().await;
            not_registered_is_done(deregistered.map(|_| ()).map_err(|e| cloud_error("DeregisterInstancesFromLoadBalancer", e)))?;
        }
        for tg in target_groups {
            let targets = ids.iter().map(|id| aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder().id(id).build()).collect();
            let deregistered = self.elbv2.deregister_targets().target_group_arn(tg).set_targets(Some(targets)).send().await;
            not_registered_is_done(deregistered.map(|_| ()).map_err(|e| cloud_error("DeregisterTargets", e)))?;
        }
        Ok(())
    }

    /// Detached once none of the ASG's instances is registered (or draining) in its former load
    /// balancers. An ASG that is gone is detached.
    pub(super) async fn detach_finished(&self, asg_name: &str, elbs: &[String], target_groups: &[String]) -> Result<bool, CloudError> {
        let Some(group) = self.asg_groups(&[asg_name.to_string()]).await?.remove(asg_name) else { return Ok(true) };
        let ids: BTreeSet<String> = group.instances.into_iter().map(|i| i.instance_id).collect();
        for elb in elbs {
            if self.elb_in_service(elb).await?.iter().any(|id| ids.contains(id)) {
                return Ok(false);
            }
        }
        for tg in target_groups {
            if self.target_group_members(tg).await?.iter().any(|(id, _)| ids.contains(id)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Deregistering an instance that is not registered (any more) is done.
fn not_registered_is_done(result: Result<(), CloudError>) -> Result<(), CloudError> {
    match result {
        Err(error) if matches!(error.code.as_deref(), Some("InvalidTarget" | "InvalidInstance")) => Ok(()),
        other => gone_is_done(other),
    }
}
