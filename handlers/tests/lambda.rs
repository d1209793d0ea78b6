//! The Lambda's handler as SQS invokes it: real SQS event JSON in, a partial batch response out,
//! over the real runner with the in-memory store and queue and the simulated cloud. Each test
//! reads given (a world, a batch) / when (the batch is handled) / then (exactly which records
//! were reported failed, and what the log holds).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::sim::Timings;
use skald_engine::codec::StoredEvent;
use skald_engine::message::Message;
use skald_engine::ports::{Append, AppendError, EventStore, IndexEntry, LockKey, StoreError, Tail};
use skald_engine::runner::{Runner, RunnerConfig};
use skald_engine::workflow::event::{Event, Freeze};
use skald_engine::workflow::{Release, Timestamp};
use skald_handlers::lambda::{handle_batch, invoke, log_subscriber, LogFormat};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// 2026-11-21T12:00:00Z: the local clock's start, and `created_at` of the requests in
/// `events/mixed-batch.json`.
const START: Timestamp = Timestamp(1_795_262_400_000);

/// The ids in `events/mixed-batch.json`, in the batch's order.
const NOT_JSON: &str = "1b7e2c34-5f1a-4d0e-9a6b-0c2f8e4d7a91";
const GOOD: &str = "5d4a0f6e-8b3c-4e27-a1d9-6f0b2c7e9d14";
const FOREIGN: &str = "9c2e7b1a-3d6f-4a58-b0e4-2d8f1c6a5e73";
const BAD_RELEASE_ID: &str = "e6a9d3c7-0b4f-4e12-8c5a-7f1d2b9e4a06";
/// The good record's release id and sender (an assumed role: `<role id>:<session name>`).
const GOOD_RELEASE_ID: &str = "01JD4XM5ZQ8R2VN6T3KWBHC7PY";
const GOOD_SENDER: &str = "AROA3XFRBF535PLBIFPI4:ci-deploy";

/// The example release, its user data inlined as `skald deploy` would send it.
fn release() -> Release {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\necho {{SERVICE_NAME}} {{RELEASE_ID}}\n".into());
    release
}

/// Given: the in-memory world, its cloud provisioned for the example release.
fn world() -> Local {
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, &release());
    local
}

fn deploy_requested(local: &Local, release_id: &str) -> String {
    Message::DeployRequested { release: Box::new(release()), release_id: release_id.into(), created_at: local.now() }.to_json()
}

/// An SQS event as Lambda delivers it, one record per `(message id, body)`, each sent by `sender`
/// and received for the first time. (`md5OfBody` is SQS's checksum; nothing on the Lambda's side
/// reads it, so it is a fixed one here. `events/mixed-batch.json` has real ones.)
fn sqs_event(sender: &str, records: &[(&str, &str)]) -> SqsEvent {
    let records: Vec<String> = records
        .iter()
        .map(|(message_id, body)| {
            let body = serde_json::to_string(body).unwrap();
            format!(
                r#"{{
                    "messageId": "{message_id}",
                    "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq==",
                    "body": {body},
                    "attributes": {{
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "1795262399000",
                        "SenderId": "{sender}",
                        "ApproximateFirstReceiveTimestamp": "1795262399500"
                    }},
                    "messageAttributes": {{}},
                    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:skald-inbox",
                    "awsRegion": "us-east-1"
                }}"#
            )
        })
        .collect();
    serde_json::from_str(&format!(r#"{{"Records": [{}]}}"#, records.join(","))).expect("an SQS event")
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
}

/// Log lines written while the returned guard lives, as the Lambda writes them with
/// `AWS_LAMBDA_LOG_FORMAT=JSON`. (The default subscriber is per thread; `#[tokio::test]` runs the
/// test on this one.)
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let guard = tracing::subscriber::set_default(log_subscriber(LogFormat::Json, None, move || writer.clone()));
        (logs, guard)
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap().lines().map(|line| serde_json::from_str(line).expect("a JSON log line")).collect()
    }

    /// The lines logged on the record `message_id`'s span.
    fn of(&self, message_id: &str) -> Vec<serde_json::Value> {
        self.lines().into_iter().filter(|line| line["span"]["message_id"] == message_id).collect()
    }
}

/// The line a failed record leaves: its level and its reason.
fn failure_line(logs: &Logs, message_id: &str) -> (String, String) {
    let lines = logs.of(message_id);
    assert_eq!(lines.len(), 1, "one line for {message_id}: {lines:?}");
    (lines[0]["level"].as_str().unwrap().to_string(), lines[0]["fields"]["reason"].as_str().unwrap_or_default().to_string())
}

// Pins: records are judged one by one. Garbage (not JSON, JSON that is not a skald message, a
// request the runner refuses) is reported by message id and logged with the reason; the good
// request among them is handled, not reported, and records its sender as `requested_by`.
#[tokio::test]
async fn a_mixed_batch_reports_exactly_its_bad_records() {
    // Given: the example world, and a batch exactly as SQS hands it to Lambda: "not json", a
    // good deploy request, an SNS notification, and a request whose release id is no ULID.
    let local = world();
    let event: SqsEvent = serde_json::from_str(include_str!("events/mixed-batch.json")).expect("SQS event JSON");
    let (logs, _guard) = Logs::capture();

    // When: the Lambda handles it.
    let response = handle_batch(&local.runner, event).await;

    // Then: exactly the three bad records are reported, in the batch's order.
    assert_eq!(failed_ids(&response), [NOT_JSON, FOREIGN, BAD_RELEASE_ID]);
    // And: each is logged on its span with why.
    for (message_id, why) in [(NOT_JSON, "not a skald message"), (FOREIGN, "not a skald message"), (BAD_RELEASE_ID, "release_id")] {
        let (level, reason) = failure_line(&logs, message_id);
        assert_eq!(level, "WARN", "{message_id}");
        assert!(reason.contains(why), "{message_id}: {reason}");
    }
    // And: the good request started its deploy, recording who asked for it; nothing else did.
    assert_eq!(local.store.deploy_ids(), [GOOD_RELEASE_ID]);
    let history = local.history(GOOD_RELEASE_ID);
    match &history[0].event {
        Event::DeployRequested { requested_by, created_at, .. } => {
            assert_eq!(requested_by.as_deref(), Some(GOOD_SENDER));
            assert_eq!(*created_at, START);
        }
        other => panic!("the first event is the request, not {other:?}"),
    }
    assert!(history.len() > 1, "the deploy moved on: {history:?}");
    let good_lines = logs.of(GOOD);
    assert_eq!(good_lines.len(), 1, "{good_lines:?}");
    assert_eq!(good_lines[0]["level"], "INFO");
    assert_eq!(good_lines[0]["span"]["receive_count"], 1);
}

// Pins: a deploy request delivered twice (SQS is at-least-once; producers retry) is one deploy,
// and neither copy is reported: the second finds its own request already recorded.
#[tokio::test]
async fn the_same_request_twice_in_a_batch_is_one_deploy_and_no_failure() {
    // Given: one deploy request, in a batch twice under two message ids.
    let local = world();
    let body = deploy_requested(&local, GOOD_RELEASE_ID);
    let event = sqs_event(GOOD_SENDER, &[("first-copy", &body), ("second-copy", &body)]);

    // When: the Lambda handles it.
    let response = handle_batch(&local.runner, event).await;

    // Then: no record is reported, and there is one deploy with one request.
    assert_eq!(failed_ids(&response), Vec::<&str>::new());
    assert_eq!(local.store.deploy_ids(), [GOOD_RELEASE_ID]);
    let requests = local.history(GOOD_RELEASE_ID).iter().filter(|r| matches!(r.event, Event::DeployRequested { .. })).count();
    assert_eq!(requests, 1);
}

/// The in-memory store, except that an append to `poisoned` panics: a bug deep in a record's
/// handling.
struct PanicsOnAppend {
    inner: skald_engine::adapters::memory::MemoryStore,
    poisoned: String,
}

impl EventStore for PanicsOnAppend {
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        self.inner.load(deploy)
    }

    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send {
        self.inner.load_tail(deploy)
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        assert_ne!(append.deploy, self.poisoned, "test store: appends to {} panic", self.poisoned);
        self.inner.append(append).await
    }

    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send {
        self.inner.watched()
    }

    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send {
        self.inner.deploys(key, limit)
    }

    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send {
        self.inner.freeze(key)
    }

    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.notified(deploy)
    }

    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.mark_notified(deploy, seq)
    }
}

// Pins: a panic while handling one record fails that record only; the records before and after
// it are handled, and the panic is logged as an error with its message.
#[tokio::test]
async fn a_record_whose_handling_panics_fails_alone() {
    // Given: a store that panics on appends to one deploy, and a batch of a good request, a
    // request for that deploy, and a wake for the good deploy.
    let local = world();
    let poisoned = "01JD4XM5ZQ8R2VN6T3KWBHC7PZ";
    let runner = Runner {
        store: PanicsOnAppend { inner: local.store.clone(), poisoned: poisoned.into() },
        queue: local.queue.clone(),
        cloud: local.cloud.clone(),
        clock: local.clock.clone(),
        config: RunnerConfig::default(),
    };
    let wake = Message::Wake { deploy: GOOD_RELEASE_ID.into(), seq: 1 }.to_json();
    let event = sqs_event(
        GOOD_SENDER,
        &[("good", &deploy_requested(&local, GOOD_RELEASE_ID)), ("panics", &deploy_requested(&local, poisoned)), ("wake", &wake)],
    );
    let (logs, _guard) = Logs::capture();

    // When: the Lambda handles it.
    let response = handle_batch(&runner, event).await;

    // Then: only the record that panicked is reported, and the panic is logged as an error.
    assert_eq!(failed_ids(&response), ["panics"]);
    let (level, reason) = failure_line(&logs, "panics");
    assert_eq!(level, "ERROR");
    assert!(reason.contains("panic") && reason.contains("appends to"), "{reason}");
    // And: the good deploy exists; the poisoned one recorded nothing.
    assert_eq!(local.store.deploy_ids(), [GOOD_RELEASE_ID]);
    assert_eq!(logs.of("wake")[0]["level"], "INFO");
}

// Pins: the Lambda checks its configuration at cold start and names what is missing, before it
// talks to anything.
#[test]
fn without_its_table_the_lambda_does_not_start_and_names_the_variable() {
    // Given: a queue URL but no table.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skald-lambda"));
    command.env_remove("SKALD_TABLE").env("SKALD_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/skald-inbox");
    command.env("AWS_LAMBDA_LOG_FORMAT", "JSON").env_remove("AWS_LAMBDA_LOG_LEVEL").env_remove("RUST_LOG");

    // When: it starts.
    let out = command.output().expect("skald-lambda runs");

    // Then: it exits with a failure, and its one JSON log line names SKALD_TABLE only.
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(line["level"], "ERROR");
    let error = line["fields"]["error"].as_str().unwrap();
    assert!(error.contains("SKALD_TABLE") && !error.contains("SKALD_QUEUE_URL"), "{error}");
}

// Pins: the schedule's tick (an EventBridge Scheduled Event, as AWS sends it) sweeps: a deploy
// whose wakes were lost is woken, and the answer names it.
#[tokio::test]
async fn a_scheduled_event_sweeps_for_stalled_deploys() {
    // Given: a deploy waiting for its first health check, every queued message lost, and the
    // clock well past its due time
    let local = world();
    local.queue.push(&serde_json::from_str(&deploy_requested(&local, GOOD_RELEASE_ID)).unwrap(), 0);
    local.deliver_next().unwrap();
    local.queue.lose_all();
    local.clock.advance_ms((skald_engine::workflow::decide::STALL_GRACE_SECS + 120) * 1000);
    let tick = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events",
        "account":"123456789012","time":"2026-11-21T12:10:00Z","region":"us-east-1",
        "resources":["arn:aws:events:us-east-1:123456789012:rule/skald-sweeper"],"detail":{}}"#;

    // When: the Lambda is invoked with the tick
    let answer = invoke(&local.runner, serde_json::from_str(tick).unwrap()).await.unwrap();

    // Then: the deploy was woken, and a wake for it is on the queue
    assert_eq!(answer["woken"], serde_json::json!([GOOD_RELEASE_ID]));
    assert_eq!(local.queue.len(), 1);
    assert!(invoke(&local.runner, serde_json::json!({"hello": "world"})).await.is_err(), "anything else is refused");
}
