//! Where the commands that talk to AWS find it: the standard AWS configuration chain (profiles,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, …) and skald's own variables.

use skald_engine::adapters::aws::AwsCloud;
use skald_engine::adapters::dynamodb::DynamoStore;
use skald_engine::adapters::memory::SystemClock;
use skald_engine::adapters::sqs::SqsQueue;
use skald_engine::runner::{Runner, RunnerConfig};
use skald_engine::workflow::event::Freshness;

/// The events table; `skald-events` unless `SKALD_TABLE` says otherwise.
pub const TABLE_VAR: &str = "SKALD_TABLE";
pub const TABLE_DEFAULT: &str = "skald-events";
/// The inbox queue's URL. No default: sending to the wrong queue would be worse than an error.
pub const QUEUE_URL_VAR: &str = "SKALD_QUEUE_URL";

/// The role assumed in another account for a release whose `aws_account_id` names it; default
/// `skald-deployer` (infra/target-account.yaml creates it).
pub const TARGET_ROLE_VAR: &str = "SKALD_TARGET_ROLE_NAME";

/// How old (seconds) a request's `created_at` may be when it arrives; default 900 (15 minutes).
pub const MAX_AGE_VAR: &str = "SKALD_CREATED_AT_MAX_AGE_SECS";
/// How far (seconds) a request's `created_at` may lie ahead of the worker's clock; default 120.
pub const MAX_AHEAD_VAR: &str = "SKALD_CREATED_AT_MAX_AHEAD_SECS";

pub type AwsRunner = Runner<DynamoStore, SqsQueue, AwsCloud, SystemClock>;

pub struct AwsEnv {
    pub config: aws_config::SdkConfig,
    pub table: String,
}

impl AwsEnv {
    pub async fn load() -> AwsEnv {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let table = std::env::var(TABLE_VAR).ok().filter(|t| !t.is_empty()).unwrap_or_else(|| TABLE_DEFAULT.to_string());
        AwsEnv { config, table }
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::from_sdk_config(&self.config, &self.table)
    }

    /// The inbox, or an error naming the variable to set.
    pub fn queue(&self) -> Result<SqsQueue, String> {
        let url = std::env::var(QUEUE_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("set {QUEUE_URL_VAR} to the skald inbox queue's URL"))?;
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&self.config), url))
    }

    /// The whole runner, as the worker and the Lambda use it.
    pub fn runner(&self) -> Result<AwsRunner, String> {
        Ok(Runner {
            store: self.store(),
            queue: self.queue()?,
            cloud: cloud(&self.config),
            clock: SystemClock,
            config: RunnerConfig { freshness: freshness()? },
        })
    }
}

/// The cloud on AWS, assuming `SKALD_TARGET_ROLE_NAME` (or the default) in target accounts.
pub fn cloud(config: &aws_config::SdkConfig) -> AwsCloud {
    let cloud = AwsCloud::new(config);
    match std::env::var(TARGET_ROLE_VAR) {
        Ok(name) if !name.trim().is_empty() => cloud.with_target_role(name.trim()),
        _ => cloud,
    }
}

/// The window a request's `created_at` must fall in, from the environment or the defaults.
/// Recorded in each DeployRequested, so a replay judges with the window that was in force.
pub fn freshness() -> Result<Freshness, String> {
    let defaults = Freshness::default();
    let seconds = |var: &str, default: u64| match std::env::var(var) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| format!("{var}: `{text}` is not a number of seconds")),
        Err(_) => Ok(default),
    };
    Ok(Freshness {
        max_age_secs: seconds(MAX_AGE_VAR, defaults.max_age_secs)?,
        max_ahead_secs: seconds(MAX_AHEAD_VAR, defaults.max_ahead_secs)?,
    })
}
