//! `skald demo --endpoint URL`: the demo against an AWS API at URL (a local emulator such as
//! moto), in real time: DynamoDB holds the log, SQS carries requests and wakes, and the EC2, Auto
//! Scaling and ELB APIs hold the services. The worker loop runs in this process.

use crate::timeline::Printer;
use crate::{ulid, worker};
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::adapters::dynamodb::{self, DynamoStore};
use skald_engine::adapters::memory::SystemClock;
use skald_engine::adapters::sqs::{self, SqsQueue};
use skald_engine::codec::read_history;
use skald_engine::message::Message;
use skald_engine::ports::{Clock, Cloud, EventStore, LockKey, Queue};
use skald_engine::runner::{Runner, RunnerConfig};
use skald_engine::workflow::resources::Query;
use skald_engine::workflow::{End, Release};
use std::io::Write;
use std::time::{Duration, Instant};

pub const TABLE: &str = "skald-demo-events";
pub const QUEUE: &str = "skald-demo-inbox";
/// The wall-clock bound on one deploy: far above what the emulator needs.
const DEPLOY_WALL_SECS_MAX: u64 = 600;
/// Short enough that the demo finishes in about a minute per deploy: the first health check
/// comes at half the timeout, then every 15 s.
const DEMO_TIMEOUT_SECS: u64 = 60;

type AwsRunner = Runner<DynamoStore, SqsQueue, AwsCloud, SystemClock>;

/// Runs both deploys against `endpoint`. Returns whether both reached Success and only the second
/// release's ASGs remain, with no lock left.
pub async fn run(endpoint: &str, first: Release, out: &mut dyn Write) -> Result<bool, String> {
    let config = sdk_config(endpoint).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    dynamodb::create_table(&dynamo, TABLE).await.map_err(|e| e.to_string())?;
    let (queue_url, _dlq) =
        sqs::create_queue_with_dlq(&aws_sdk_sqs::Client::new(&config), QUEUE, 60, 5).await.map_err(|e| e.to_string())?;
    let cloud = AwsCloud::new(&config);
    let mut first = first;
    first.timeout = Some(DEMO_TIMEOUT_SECS);
    cloud.provision_example(&first).await.map_err(|e| format!("provisioning the example: {e}"))?;
    let runner = Runner {
        store: DynamoStore::new(dynamo, TABLE),
        queue: SqsQueue::new(aws_sdk_sqs::Client::new(&config), queue_url),
        cloud,
        clock: SystemClock,
        config: RunnerConfig::default(),
    };
    let say = |out: &mut dyn Write, text: String| writeln!(out, "{text}").map_err(|e| e.to_string());
    say(out, format!("skald demo against {endpoint}: table {TABLE}, queue {QUEUE}, real time"))?;

    let mut second = first.clone();
    second.services.get_mut("web").ok_or("the example has a web service")?.instance_type = "t3.small".into();
    let first_id = ulid::generate().map_err(|e| e.to_string())?;
    let first_end = deploy(&runner, out, &first, &first_id, "first release: creates web and worker").await?;
    let second_id = ulid::generate().map_err(|e| e.to_string())?;
    let second_end = deploy(&runner, out, &second, &second_id, "second release: web on t3.small, replaces the first").await?;

    let asgs = runner.cloud.lookup(&Query::for_release(&first)).await.map_err(|e| e.to_string())?.asgs;
    let names: Vec<&str> = asgs.iter().map(|a| a.name.as_str()).collect();
    let only_second = names.len() == second.services.len() && names.iter().all(|n| n.ends_with(&second_id));
    let lock = runner
        .store
        .lock_owner(&LockKey { project: first.project_name.clone(), config: first.config_name.clone() })
        .await
        .map_err(|e| e.to_string())?;
    say(out, format!("\n  ASGs now: {}", names.join(", ")))?;
    say(out, format!("  lock: {}", lock.as_deref().unwrap_or("free")))?;
    let ok = first_end == Some(End::Success) && second_end == Some(End::Success) && only_second && lock.is_none();
    say(out, (if ok { "demo: both deploys reached Success" } else { "demo: FAILED" }).to_string())?;
    Ok(ok)
}

/// Sends one release and works the queue until its deploy ends.
async fn deploy(runner: &AwsRunner, out: &mut dyn Write, release: &Release, release_id: &str, title: &str) -> Result<Option<End>, String> {
    writeln!(out, "\n== {title}\n   release {release_id}").map_err(|e| e.to_string())?;
    let message =
        Message::DeployRequested { release: Box::new(release.clone()), release_id: release_id.into(), created_at: runner.clock.now() };
    runner.queue.send(&message, 0).await.map_err(|e| e.to_string())?;
    let mut printer = Printer::new(runner.clock.now());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(DEPLOY_WALL_SECS_MAX) {
        for processed in worker::poll_once(runner, 1).await.map_err(|e| e.to_string())? {
            if let worker::Processed::Failed { message_id, error } = processed {
                writeln!(out, "  worker: message {message_id} left for retry: {error}").map_err(|e| e.to_string())?;
            }
        }
        let history = runner.store.load(release_id).await.map_err(|e| e.to_string())?;
        let (recorded, state) = read_history(&history)?;
        printer.print_new(out, &recorded).map_err(|e| e.to_string())?;
        if let Some(end) = state.end {
            writeln!(out, "   => {}", end.name()).map_err(|e| e.to_string())?;
            return Ok(Some(end));
        }
    }
    writeln!(out, "   => did not finish within {DEPLOY_WALL_SECS_MAX} s").map_err(|e| e.to_string())?;
    Ok(None)
}

/// The SDK configuration for a local emulator: its endpoint, the region from the environment
/// (us-east-1 if none) and, when no credentials are configured, dummy ones (emulators take any).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(endpoint);
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
        loader =
            loader.credentials_provider(aws_credential_types::Credentials::new("skald-local", "skald-local", None, None, "skald-demo"));
    }
    loader.load().await
}
