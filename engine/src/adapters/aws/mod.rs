//! The cloud on the real AWS APIs: EC2, Auto Scaling, classic ELB, ELBv2, IAM, STS and CloudWatch,
//! and SNS or EventBridge for notifications. Traffic shifting (`traffic`) clones target groups
//! and weighs an ALB listener rule's forward between them.
//!
//! Invariants:
//! - Every create is idempotent: what exists already under our deterministic name and carries our
//!   release id counts as done (AWS answers AlreadyExists; moto silently replaces an ASG, so the
//!   adapter looks before it creates). What exists under our name without our release id is an error.
//! - Every delete of something already gone succeeds.
//! - A listener rule is found by its priority on every shift, so a repeated or racing shift ends
//!   with the rule forwarding exactly as asked.
//! - Lookups report every match with its tags; whether a match may be used is the workflow's call
//!   (`workflow::resources`), never this adapter's.
//! - Errors keep the API's code and say whether a retry may help (`errors`).
//! - A release naming another account (`aws_account_id`) is deployed with credentials from
//!   sts:AssumeRole on the role `<target role name>` in that account ([`AwsCloud::in_account`]);
//!   the deployer's own account, or no account, uses the deployer's credentials as they are.
//!   Assumed credentials are cached per account and refreshed by the SDK before they expire.
//! - A release naming another region (`aws_region`) is deployed with clients of that region, on
//!   the same credentials, made once per account and region ([`AwsCloud::in_place`]).
//!
//! Deliberately absent: launch configurations (AWS no longer offers them to new accounts).

mod errors;
mod launch;
mod lookup;
mod notify;
mod observe;
mod provision;
mod template;
mod traffic;

pub use errors::{cloud_error, is_missing};
pub use notify::{Destination, EVENT_DETAIL_TYPE, EVENT_SOURCE};

use crate::notify::Notification;
use crate::ports::Cloud;
use crate::workflow::command::HealthTarget;
use crate::workflow::health::ServiceReport;
use crate::workflow::listener_rule::NewRule;
use crate::workflow::resources::{Lookup, Query, Tags, TargetGroupShape, Weighted};
use crate::workflow::{CloudError, LaunchSpec};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The role skald assumes in a target account unless told otherwise (infra/target-account.yaml
/// creates it).
pub const TARGET_ROLE_DEFAULT: &str = "skald-deployer";
/// The session name on assumed-role credentials: what CloudTrail in the target account shows.
const SESSION_NAME: &str = "skald";

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
    /// For the lifecycle hooks' topics: that they exist.
    sns: aws_sdk_sns::Client,
    region: String,
    /// Where transitions are published; nowhere unless configured.
    publisher: Option<notify::Publisher>,
    config: aws_config::SdkConfig,
    target_role_name: String,
    /// Shared by clones: who we are, and the clouds of the accounts assumed so far.
    accounts: Arc<Mutex<Accounts>>,
}

#[derive(Debug, Default)]
struct Accounts {
    /// The deployer's own account id and partition, from GetCallerIdentity.
    own: Option<(String, String)>,
    assumed: BTreeMap<String, AwsCloud>,
    /// This account's clouds in other regions than its own.
    regional: BTreeMap<String, AwsCloud>,
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
            sns: aws_sdk_sns::Client::new(config),
            region: config.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".to_string()),
            publisher: None,
            config: config.clone(),
            target_role_name: TARGET_ROLE_DEFAULT.to_string(),
            accounts: Arc::default(),
        }
    }

    /// The same cloud, publishing every transition to `destination`.
    pub fn with_notifications(mut self, config: &aws_config::SdkConfig, destination: Destination) -> AwsCloud {
        self.publisher = Some(notify::Publisher::new(config, destination));
        self
    }

    /// The name of the role assumed in target accounts (default [`TARGET_ROLE_DEFAULT`]).
    pub fn with_target_role(mut self, name: impl Into<String>) -> AwsCloud {
        self.target_role_name = name.into();
        self
    }

    /// This cloud in `account`: itself for `None` or the deployer's own account, else a cloud on
    /// credentials of `arn:<partition>:iam::<account>:role/<target role name>`. The first use of
    /// an account assumes the role and checks, with GetCallerIdentity, that the credentials are
    /// that account's; a failure is a [`CloudError`] (code `AssumeRole` or `WrongAccount`) and
    /// nothing is cached, so the workflow's retry tries again.
    pub async fn in_account(&self, account: Option<&str>) -> Result<AwsCloud, CloudError> {
        let Some(account) = account else { return Ok(self.clone()) };
        let (own, partition) = self.own_account().await?;
        if own == account {
            return Ok(self.clone());
        }
        if let Some(cloud) = self.accounts.lock().expect("accounts lock").assumed.get(account) {
            return Ok(cloud.clone());
        }
        let role_arn = format!("arn:{partition}:iam::{account}:role/{}", self.target_role_name);
        let provider =
            aws_config::sts::AssumeRoleProvider::builder(&role_arn).configure(&self.config).session_name(SESSION_NAME).build().await;
        let config =
            self.config.to_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider)).build();
        let cloud = AwsCloud::new(&config).with_target_role(self.target_role_name.clone());
        let identity = cloud.sts.get_caller_identity().send().await.map_err(|e| {
            let error = cloud_error("GetCallerIdentity", e);
            CloudError { code: Some("AssumeRole".into()), message: format!("assuming {role_arn}: {}", error.message), ..error }
        })?;
        if identity.account() != Some(account) {
            return Err(CloudError::permanent(
                "WrongAccount",
                format!("assumed {role_arn} but the credentials are account {:?}'s", identity.account()),
            ));
        }
        self.accounts.lock().expect("accounts lock").assumed.insert(account.to_string(), cloud.clone());
        Ok(cloud)
    }

    /// This cloud in `account` and `region` (see [`AwsCloud::in_account`]): in another region, the
    /// same credentials on clients of that region, made once per account and region. Every
    /// lookup, create, observe and delete of a deploy then happens where its release says.
    pub async fn in_place(&self, account: Option<&str>, region: Option<&str>) -> Result<AwsCloud, CloudError> {
        let in_account = self.in_account(account).await?;
        match region {
            Some(region) if region != in_account.region => Ok(in_account.in_region(region)),
            _ => Ok(in_account),
        }
    }

    fn in_region(&self, region: &str) -> AwsCloud {
        if let Some(cloud) = self.accounts.lock().expect("accounts lock").regional.get(region) {
            return cloud.clone();
        }
        let config = self.config.to_builder().region(aws_config::Region::new(region.to_string())).build();
        let mut cloud = AwsCloud::new(&config).with_target_role(self.target_role_name.clone());
        // The same account: what it knows of itself holds in every region.
        cloud.accounts.lock().expect("accounts lock").own = self.accounts.lock().expect("accounts lock").own.clone();
        cloud.publisher = self.publisher.clone();
        self.accounts.lock().expect("accounts lock").regional.insert(region.to_string(), cloud.clone());
        cloud
    }

    /// The deployer's own account id and partition, asked once and remembered.
    async fn own_account(&self) -> Result<(String, String), CloudError> {
        if let Some(own) = self.accounts.lock().expect("accounts lock").own.clone() {
            return Ok(own);
        }
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| cloud_error("GetCallerIdentity", e))?;
        let account = identity.account().unwrap_or_default().to_string();
        // arn:<partition>:sts::<account>:assumed-role/...
        let partition = identity.arn().and_then(|arn| arn.split(':').nth(1)).filter(|p| !p.is_empty()).unwrap_or("aws").to_string();
        let own = (account, partition);
        self.accounts.lock().expect("accounts lock").own = Some(own.clone());
        Ok(own)
    }
}

impl Cloud for AwsCloud {
    fn in_place(&self, account_id: Option<&str>, region: Option<&str>) -> impl Future<Output = Result<AwsCloud, CloudError>> + Send {
        AwsCloud::in_place(self, account_id, region)
    }

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

    fn create_target_group(
        &self,
        name: &str,
        shape: &TargetGroupShape,
        tags: &Tags,
    ) -> impl Future<Output = Result<String, CloudError>> + Send {
        self.create_own_target_group(name, shape, tags)
    }

    fn shift_traffic(
        &self,
        listener_arn: &str,
        priority: u32,
        rule: NewRule<'_>,
        forward: &[Weighted],
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.shift_rule(listener_arn, priority, rule, forward)
    }

    fn delete(
        &self,
        asg: &str,
        launch_template: Option<&str>,
        target_group: Option<&str>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.delete_release(asg, launch_template, target_group)
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
