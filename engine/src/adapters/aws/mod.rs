//! The cloud on the real AWS APIs: EC2, Auto Scaling, classic ELB, ELBv2, IAM, STS and CloudWatch,
//! and SNS or EventBridge for notifications.
//!
//! Invariants:
//! - Every create is idempotent: what exists already under our deterministic name and carries our
//!   release id counts as done (AWS answers AlreadyExists; moto silently replaces an ASG, so the
//!   adapter looks before it creates). What exists under our name without our release id is an error.
//! - Every delete of something already gone succeeds.
//! - Lookups report every match with its tags; whether a match may be used is the workflow's call
//!   (`workflow::resources`), never this adapter's.
//! - Errors keep the API's code and say whether a retry may help (`errors`).
//!
//! Deliberately absent: launch configurations (AWS no longer offers them to new accounts), SNS
//! look-ups (a topic name becomes its ARN in this account and region), creating placement groups
//! (the named group must exist).

mod errors;
mod launch;
mod lookup;
mod notify;
mod observe;
mod provision;

pub use errors::{cloud_error, is_missing};
pub use notify::{Destination, EVENT_DETAIL_TYPE, EVENT_SOURCE};

use crate::notify::Notification;
use crate::ports::Cloud;
use crate::workflow::command::HealthTarget;
use crate::workflow::health::ServiceReport;
use crate::workflow::resources::{Lookup, Query};
use crate::workflow::{CloudError, LaunchSpec};
use std::collections::BTreeMap;
use std::future::Future;

/// The AWS clients skald's cloud needs, built from one SDK configuration (endpoint, region,
/// credentials: the standard chain, or a local emulator's endpoint).
#[derive(Clone, Debug)]
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    region: String,
    /// Where transitions are published; nowhere unless configured.
    publisher: Option<notify::Publisher>,
}

impl AwsCloud {
    pub fn new(config: &aws_config::SdkConfig) -> AwsCloud {
        AwsCloud {
            ec2: aws_sdk_ec2::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            elb: aws_sdk_elasticloadbalancing::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            region: config.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".to_string()),
            publisher: None,
        }
    }

    /// The same cloud, publishing every transition to `destination`.
    pub fn with_notifications(mut self, config: &aws_config::SdkConfig, destination: Destination) -> AwsCloud {
        self.publisher = Some(notify::Publisher::new(config, destination));
        self
    }
}

impl Cloud for AwsCloud {
    fn lookup(&self, query: &Query) -> impl Future<Output = Result<Lookup, CloudError>> + Send {
        self.lookup_all(query)
    }

    fn launch(&self, spec: &LaunchSpec, user_data: &str) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.launch_service(spec, user_data)
    }

    fn set_capacity(&self, asg: &str, min_size: u32, desired: u32) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.resize(asg, min_size, desired)
    }

    fn observe(&self, targets: &[HealthTarget]) -> impl Future<Output = Result<BTreeMap<String, ServiceReport>, CloudError>> + Send {
        self.observe_services(targets)
    }

    fn detach(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.detach_load_balancers(asg, elbs, target_groups)
    }

    fn is_detached(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<bool, CloudError>> + Send {
        self.detach_finished(asg, elbs, target_groups)
    }

    fn delete(&self, asg: &str, launch_template: Option<&str>) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.delete_service(asg, launch_template)
    }

    fn notifies(&self) -> bool {
        self.publisher.is_some()
    }

    fn notify(&self, notification: &Notification) -> impl Future<Output = Result<(), CloudError>> + Send {
        let publisher = self.publisher.clone();
        let notification = notification.clone();
        async move {
            match publisher {
                Some(publisher) => publisher.publish(&notification).await,
                None => Ok(()),
            }
        }
    }
}
