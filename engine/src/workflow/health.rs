//! Turning what the cloud reports about a service's instances into counts the workflow judges.
//!
//! An instance is healthy only if every source agrees: its ASG says Healthy and InService, and
//! every classic ELB and target group it should be in says so too. Terminating beats unhealthy
//! beats healthy. An instance a load balancer doesn't mention is not healthy there. An instance
//! whose lifecycle state starts with `Term` (`Terminating`, `Terminating:Wait`, `Terminated`) is
//! terminating, as in Odin: a `Terminated` one is gone from the service just the same.

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

/// An ASG's minimum and desired capacity as the cloud reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsgSize {
    pub min_size: u32,
    pub desired: u32,
}

/// Everything one health check learned about a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The service's ASG does not exist (any more): deleted by someone other than this deploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// The ASG's minimum and desired capacity now, when the adapter reads them: what a scaling
    /// policy or a person may have changed since skald set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<AsgSize>,
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
    /// The ASG was not found. Skipped while false, so checks recorded before it existed keep
    /// their bytes and their states' hashes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// The ASG's capacity at the check, when the cloud told it (skipped while unknown, as above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<AsgSize>,
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
    let mut counts = HealthCounts { missing: report.missing, size: report.size, ..HealthCounts::default() };
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
    // Odin's test is the prefix `Term`: Terminating (and its hook states) and Terminated alike.
    if instance.lifecycle_state.starts_with("Term") {
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
            ..ServiceReport::default()
        };
        let lbs = ["elb".to_string(), "tg".to_string()];
        assert_eq!(count(&report, &lbs), HealthCounts { healthy: 1, launching: 3, terminating: 1, ..HealthCounts::default() });
        assert_eq!(count(&report, &[]), HealthCounts { healthy: 2, launching: 2, terminating: 1, ..HealthCounts::default() });
    }

    #[test]
    fn a_terminated_instance_counts_as_terminating_like_odins_term_prefix() {
        // Given an ASG reporting instances in every terminating lifecycle state, and one in service
        let states = ["Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "InService"];
        let instances = states.iter().enumerate().map(|(n, s)| instance(&format!("i-{n}"), s, "Healthy")).collect();
        let report = ServiceReport { instances, ..ServiceReport::default() };

        // When it is counted, then each of the four `Term…` states is terminating
        let counts = count(&report, &[]);

        assert_eq!((counts.healthy, counts.launching, counts.terminating), (1, 0, 4));
    }

    #[test]
    fn a_missing_asg_and_its_size_are_carried_into_the_counts() {
        // Given reports of a vanished ASG and of one whose size the cloud told
        let gone = ServiceReport { missing: true, ..ServiceReport::default() };
        let size = AsgSize { min_size: 2, desired: 5 };
        let sized = ServiceReport { size: Some(size), ..ServiceReport::default() };

        // When they are counted, then the counts say so, for the workflow to judge
        assert!(count(&gone, &[]).missing);
        assert_eq!(count(&sized, &[]).size, Some(size));
        assert_eq!(count(&sized, &[]), HealthCounts { size: Some(size), ..HealthCounts::default() });
    }

    #[test]
    fn a_load_balancer_missing_from_the_report_is_unhealthy_everywhere() {
        let report = ServiceReport { instances: vec![instance("i-1", "InService", "Healthy")], ..ServiceReport::default() };
        assert_eq!(count(&report, &["tg".to_string()]).healthy, 0);
    }
}
