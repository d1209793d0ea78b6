//! Turning what the cloud reports about a service's instances into counts the workflow judges.
//!
//! An instance is healthy only if every source agrees: its ASG says Healthy and InService, and
//! every classic ELB and target group it should be in says so too. Terminating beats unhealthy
//! beats healthy. An instance a load balancer doesn't mention is not healthy there.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the cloud said about one instance of an ASG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub instance_id: String,
    /// The ASG's lifecycle state: `Pending`, `InService`, `Terminating`, `Terminating:Wait`, …
    pub lifecycle_state: String,
    /// The ASG's health status: `Healthy` or `Unhealthy`.
    pub health_status: String,
}

/// Everything one health check learned about a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub instances: Vec<InstanceReport>,
    /// Per load balancer (classic ELB name or target group ARN): the instances it calls healthy.
    pub load_balancers: BTreeMap<String, Vec<String>>,
    /// The target's alarms that are in ALARM.
    pub alarms_firing: Vec<String>,
}

/// How a service's instances stand at one health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounts {
    pub healthy: u32,
    /// Instances that are neither healthy nor terminating: booting, or failing their checks.
    pub launching: u32,
    pub terminating: u32,
}

impl HealthCounts {
    pub fn total(&self) -> u32 {
        self.healthy + self.launching + self.terminating
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum InstanceHealth {
    Healthy,
    Unhealthy,
    Terminating,
}

/// Counts a service's instances. `expected_load_balancers` are the ELB names and target group
/// ARNs the service must be healthy in; a load balancer missing from the report counts as one
/// that calls every instance unhealthy.
pub fn count(report: &ServiceReport, expected_load_balancers: &[String]) -> HealthCounts {
    let mut counts = HealthCounts::default();
    for instance in &report.instances {
        let asg_view = asg_health(instance);
        let lb_view = expected_load_balancers.iter().map(|lb| {
            let healthy_there = report.load_balancers.get(lb).is_some_and(|ids| ids.contains(&instance.instance_id));
            if healthy_there {
                InstanceHealth::Healthy
            } else {
                InstanceHealth::Unhealthy
            }
        });
        // The worst view wins: the order of the enum is the merge rule.
        match lb_view.fold(asg_view, Ord::max) {
            InstanceHealth::Healthy => counts.healthy += 1,
            InstanceHealth::Unhealthy => counts.launching += 1,
            InstanceHealth::Terminating => counts.terminating += 1,
        }
    }
    counts
}

fn asg_health(instance: &InstanceReport) -> InstanceHealth {
    if instance.lifecycle_state.starts_with("Terminating") {
        InstanceHealth::Terminating
    } else if instance.lifecycle_state == "InService" && instance.health_status == "Healthy" {
        InstanceHealth::Healthy
    } else {
        InstanceHealth::Unhealthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, lifecycle: &str, health: &str) -> InstanceReport {
        InstanceReport { instance_id: id.into(), lifecycle_state: lifecycle.into(), health_status: health.into() }
    }

    #[test]
    fn every_source_must_agree_and_terminating_wins() {
        let report = ServiceReport {
            instances: vec![
                instance("i-1", "InService", "Healthy"),
                instance("i-2", "InService", "Healthy"),
                instance("i-3", "Pending", "Healthy"),
                instance("i-4", "Terminating:Wait", "Healthy"),
                instance("i-5", "InService", "Unhealthy"),
            ],
            load_balancers: BTreeMap::from([
                ("elb".into(), vec!["i-1".into(), "i-2".into(), "i-4".into()]),
                ("tg".into(), vec!["i-1".into(), "i-3".into(), "i-4".into()]),
            ]),
            alarms_firing: Vec::new(),
        };
        let lbs = ["elb".to_string(), "tg".to_string()];
        assert_eq!(count(&report, &lbs), HealthCounts { healthy: 1, launching: 3, terminating: 1 });
        assert_eq!(count(&report, &[]), HealthCounts { healthy: 2, launching: 2, terminating: 1 });
    }

    #[test]
    fn a_load_balancer_missing_from_the_report_is_unhealthy_everywhere() {
        let report = ServiceReport { instances: vec![instance("i-1", "InService", "Healthy")], ..ServiceReport::default() };
        assert_eq!(count(&report, &["tg".to_string()]).healthy, 0);
    }
}
