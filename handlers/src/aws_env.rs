//! Where the commands that talk to AWS find it: the standard AWS configuration chain (profiles,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, …) and skald's own variables.

use skald_engine::adapters::aws::{AwsCloud, Destination};
use skald_engine::adapters::dynamodb::DynamoStore;
use skald_engine::adapters::memory::SystemClock;
use skald_engine::adapters::sqs::SqsQueue;
use skald_engine::runner::{Runner, RunnerConfig};
use skald_engine::workflow::event::Freshness;
use skald_engine::workflow::settings::Settings;

/// The events table; `skald-events` unless `SKALD_TABLE` says otherwise.
pub const TABLE_VAR: &str = "SKALD_TABLE";
pub const TABLE_DEFAULT: &str = "skald-events";
/// The inbox queue's URL. No default: sending to the wrong queue would be worse than an error.
pub const QUEUE_URL_VAR: &str = "SKALD_QUEUE_URL";

/// Where every deploy's transitions are published: `sns:<topic ARN>` or
/// `eventbridge:<bus name or ARN>`. Unset: nowhere.
pub const NOTIFY_VAR: &str = "SKALD_NOTIFY";

/// The role assumed in another account for a release whose `aws_account_id` names it; default
/// `skald-deployer` (infra/target-account.yaml creates it).
pub const TARGET_ROLE_VAR: &str = "SKALD_TARGET_ROLE_NAME";

/// The accounts whose images a `$name-prefix:` AMI may come from, comma-separated (12-digit ids
/// or `self`); a release may narrow the list, never widen it. Unset: `self`, the account a deploy
/// runs in.
pub const AMI_OWNERS_VAR: &str = "SKALD_AMI_OWNERS";

/// skald's conventions, for an account set up for another deployer (Odin: `odin` for all three):
/// the `DeployWith` tag's value that opts AMIs and subnets in, the instance profiles' path prefix
/// (`/<prefix>/<project>/<config>/<service>/`), and the template size tags' prefix
/// (`<prefix>:min_size`; deployomat's `organization_prefix`). Unset: `skald`.
pub const OPT_IN_VAR: &str = "SKALD_OPT_IN_VALUE";
pub const PATH_PREFIX_VAR: &str = "SKALD_PATH_PREFIX";
pub const SIZE_TAG_PREFIX_VAR: &str = "SKALD_SIZE_TAG_PREFIX";

/// How old (seconds) a request's `created_at` may be when it arrives; default 900 (15 minutes).
pub const MAX_AGE_VAR: &str = "SKALD_CREATED_AT_MAX_AGE_SECS";
/// How far (seconds) a request's `created_at` may lie ahead of the worker's clock; default 120.
pub const MAX_AHEAD_VAR: &str = "SKALD_CREATED_AT_MAX_AHEAD_SECS";

pub type AwsRunner = Runner<DynamoStore, SqsQueue, AwsCloud, SystemClock>;

/// What the command line may set over the standard chain.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub region: Option<String>,
    pub profile: Option<String>,
}

pub struct AwsEnv {
    pub config: aws_config::SdkConfig,
    pub table: String,
}

impl AwsEnv {
    pub async fn load() -> AwsEnv {
        AwsEnv::load_with(&Overrides::default()).await
    }

    /// The standard chain, with the region and profile the command line names taking precedence.
    pub async fn load_with(overrides: &Overrides) -> AwsEnv {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = &overrides.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &overrides.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let config = loader.load().await;
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

    /// Who is calling: the ARN of the credentials in use (sts:GetCallerIdentity, which needs no
    /// permission). What `skald freeze` records as the freeze's `by`.
    pub async fn caller(&self) -> Result<String, String> {
        let identity = aws_sdk_sts::Client::new(&self.config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| format!("finding who you are (sts:GetCallerIdentity): {}", aws_sdk_sts::error::DisplayErrorContext(&e)))?;
        identity.arn().map(str::to_string).ok_or_else(|| "sts:GetCallerIdentity answered without an ARN".to_string())
    }

    /// The cloud as the environment configures it (see [`cloud`]).
    pub fn cloud(&self) -> Result<AwsCloud, String> {
        cloud(&self.config)
    }

    /// The whole runner, as the worker and the Lambda use it.
    pub fn runner(&self) -> Result<AwsRunner, String> {
        Ok(Runner {
            store: self.store(),
            queue: self.queue()?,
            cloud: self.cloud()?,
            clock: SystemClock,
            config: runner_config(&self.config)?,
        })
    }
}

/// The cloud on AWS, assuming `SKALD_TARGET_ROLE_NAME` (or the default) in target accounts.
pub fn cloud(config: &aws_config::SdkConfig) -> Result<AwsCloud, String> {
    let mut cloud = AwsCloud::new(config);
    if let Ok(name) = std::env::var(TARGET_ROLE_VAR).map(|n| n.trim().to_string()).and_then(|n| {
        if n.is_empty() {
            Err(std::env::VarError::NotPresent)
        } else {
            Ok(n)
        }
    }) {
        cloud = cloud.with_target_role(name);
    }
    match std::env::var(NOTIFY_VAR).ok().filter(|d| !d.is_empty()) {
        Some(text) => Ok(cloud.with_notifications(config, Destination::parse(&text).map_err(|e| format!("{NOTIFY_VAR}: {e}"))?)),
        None => Ok(cloud),
    }
}

/// What the environment sets of the runner: the freshness window and the operator's settings
/// (with the region of `sdk`, where a release without `aws_region` deploys), all recorded with
/// every request.
pub fn runner_config(sdk: &aws_config::SdkConfig) -> Result<RunnerConfig, String> {
    let settings = Settings { home_region: sdk.region().map(|r| r.to_string()), ..settings()? };
    Ok(RunnerConfig { freshness: freshness()?, settings })
}

/// The operator's settings (`SKALD_AMI_OWNERS`), or the defaults.
pub fn settings() -> Result<Settings, String> {
    let mut settings = Settings::default();
    if let Some(text) = std::env::var(AMI_OWNERS_VAR).ok().filter(|t| !t.trim().is_empty()) {
        settings.ami_owners = Settings::parse_ami_owners(&text).map_err(|e| format!("{AMI_OWNERS_VAR}: {e}"))?;
    }
    for (var, field) in [
        (OPT_IN_VAR, &mut settings.opt_in),
        (PATH_PREFIX_VAR, &mut settings.path_prefix),
        (SIZE_TAG_PREFIX_VAR, &mut settings.size_tag_prefix),
    ] {
        if let Some(text) = std::env::var(var).ok().filter(|t| !t.trim().is_empty()) {
            *field = Settings::parse_convention(&text).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    Ok(settings)
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
