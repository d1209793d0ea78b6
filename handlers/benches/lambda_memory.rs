//! Peak memory of the Lambda's code handling one SQS batch, against a local AWS API (moto).
//!
//! The parent process starts moto (see `engine::testing::moto`), creates a table and a queue, and
//! provisions the example world; then it starts this binary again as a child with `--child`, which
//! does exactly what `skald-lambda` does per cold start and invocation: builds the runner from the
//! environment (`lambda::aws_runner`: the standard AWS config chain, DynamoDB, SQS and the cloud
//! clients) and hands a batch of 10 records to `lambda::handle_batch`. The child reports its peak
//! resident set (`VmHWM` in /proc/self/status) after start-up and after the batch: the parent's
//! moto set-up is not in it. `cargo bench -p skald-handlers --bench lambda_memory`

use aws_lambda_events::event::sqs::SqsEvent;
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::adapters::dynamodb::create_table;
use skald_engine::adapters::memory::SystemClock;
use skald_engine::adapters::sqs::create_queue_with_dlq;
use skald_engine::message::Message;
use skald_engine::ports::Clock;
use skald_engine::testing::{example_release_for, moto};
use skald_engine::workflow::Release;
use skald_handlers::lambda::{aws_runner, handle_batch, Config};
use std::process::Command;

/// SQS's largest batch for a Lambda event source mapping without a batching window.
const BATCH_RECORDS: usize = 10;

/// Peak and current resident set of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn batch(release: &Release) -> SqsEvent {
    let now = SystemClock.now();
    let records: Vec<serde_json::Value> = (0..BATCH_RECORDS)
        .map(|n| {
            let message =
                Message::DeployRequested { release: Box::new(release.clone()), release_id: format!("01JMEM{n:020}"), created_at: now };
            serde_json::json!({
                "messageId": format!("00000000-0000-4000-8000-{n:012}"),
                "receiptHandle": "AQEB",
                "body": message.to_json(),
                "attributes": { "ApproximateReceiveCount": "1", "SenderId": "AROAEXAMPLE:bench" },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "awsRegion": moto::REGION
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

fn child() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let config = Config::from_env(|name| std::env::var(name).ok()).expect("configured by the parent");
        let release: Release = serde_json::from_str(&std::env::var("BENCH_RELEASE").expect("set by the parent")).expect("a release");
        let runner = aws_runner(&config).await.expect("a runner");
        let (started_peak, _) = memory_kib();
        let response = handle_batch(&runner, batch(&release)).await;
        let (peak, current) = memory_kib();
        assert!(response.batch_item_failures.is_empty(), "every record is handled");
        println!("{started_peak} {peak} {current}");
    });
}

fn main() {
    if std::env::args().any(|a| a == "--child") {
        return child();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let (table, queue_url, release) = runtime.block_on(async {
        let config = moto::aws_config().await;
        let table = moto::unique_name("mem");
        create_table(&aws_sdk_dynamodb::Client::new(&config), &table).await.expect("a table");
        let (queue_url, _) =
            create_queue_with_dlq(&aws_sdk_sqs::Client::new(&config), &moto::unique_name("mem"), 30, 5).await.expect("a queue");
        let release = example_release_for("mem");
        AwsCloud::new(&config).provision_example(&release).await.expect("the example world");
        (table, queue_url, release)
    });
    let output = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--child")
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", moto::REGION)
        .env("SKALD_TABLE", &table)
        .env("SKALD_QUEUE_URL", &queue_url)
        .env("BENCH_RELEASE", serde_json::to_string(&release).expect("serialises"))
        .output()
        .expect("the child runs");
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [started, peak, current] = numbers[..] else { panic!("unexpected child output: {text}") };
    println!(
        "Lambda handler memory, one batch of {BATCH_RECORDS} DeployRequested records against moto ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| measure | KiB | MiB |");
    println!("|---|---:|---:|");
    for (name, kib) in [
        ("peak RSS after start-up (runtime, AWS config, clients)", started),
        ("peak RSS after the batch (VmHWM)", peak),
        ("RSS after the batch (VmRSS)", current),
    ] {
        println!("| {name} | {kib} | {:.1} |", kib as f64 / 1024.0);
    }
}
