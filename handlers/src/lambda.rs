//! The SQS-triggered Lambda: a batch of queue records in, a partial batch response out.
//!
//! Each record goes through [`worker::process`], the step `skald worker` takes for a message it
//! received itself. What the Lambda adds is SQS's event JSON and its reporting rules:
//! - A record that was handled (its events appended, its next wake sent) is not reported: the
//!   event source mapping, with `ReportBatchItemFailures`, deletes it.
//! - A record that failed (a body that is not a skald message, an error of the runner, a panic)
//!   is reported by message id in `batchItemFailures` and logged with the reason: it comes back
//!   after the visibility timeout and, after `maxReceiveCount` receives, goes to the dead-letter
//!   queue. One bad record never fails the others, and records are handled in order.
//! - The `SenderId` attribute (the IAM principal SQS authenticated) is the sender, recorded as
//!   `requested_by` on a deploy request; `ApproximateReceiveCount` tells a redelivery.
//!
//! Nothing is kept between records or invocations beyond the runner's clients: a panic in one
//! record leaves nothing behind for the next one to trip on (see [`handle_batch`]).

use crate::worker;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::FutureExt;
use skald_engine::adapters::dynamodb::DynamoStore;
use skald_engine::adapters::memory::SystemClock;
use skald_engine::adapters::sqs::SqsQueue;
use skald_engine::ports::{Clock, Cloud, EventStore, Queue};
use skald_engine::runner::Runner;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use tracing::Instrument;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

/// The SQS system attribute naming the principal that sent a message.
pub const SENDER_ID: &str = "SenderId";
/// The SQS system attribute counting receives of a message, this one included.
pub const RECEIVE_COUNT: &str = "ApproximateReceiveCount";

/// The environment variable naming the events table.
pub const ENV_TABLE: &str = crate::aws_env::TABLE_VAR;
/// The environment variable holding the queue's URL (where wakes go).
pub const ENV_QUEUE_URL: &str = crate::aws_env::QUEUE_URL_VAR;

/// The runner the Lambda uses: the event log on DynamoDB, the queue on SQS, the cloud on AWS.
pub use crate::aws_env::AwsRunner;

/// One invocation: a batch of queue records (answered with the batch item failures), or the
/// schedule's tick (an EventBridge "Scheduled Event", or `{"sweep": true}`), which sweeps for
/// deploys whose wakes were lost. Anything else is an error of the invocation.
pub async fn invoke<S, Q, C, K>(runner: &Runner<S, Q, C, K>, payload: serde_json::Value) -> Result<serde_json::Value, String>
where
    S: EventStore,
    Q: Queue,
    C: Cloud,
    K: Clock,
{
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload).map_err(|e| format!("not an SQS event: {e}"))?;
        let response = handle_batch(runner, event).await;
        return Ok(serde_json::to_value(response).expect("batch responses serialise"));
    }
    let scheduled = payload.get("detail-type").and_then(|d| d.as_str()) == Some("Scheduled Event");
    if scheduled || payload.get("sweep") == Some(&serde_json::Value::Bool(true)) {
        let sweep = runner.sweep().await.map_err(|e| e.to_string())?;
        tracing::info!(woken = ?sweep.woken, unreadable = ?sweep.unreadable, "swept");
        for unreadable in &sweep.unreadable {
            tracing::error!(deploy = %unreadable, "a running deploy's history cannot be read");
        }
        return Ok(serde_json::json!({ "woken": sweep.woken, "unreadable": sweep.unreadable }));
    }
    Err("the event is neither SQS records nor a scheduled sweep".into())
}

/// Handles every record of `event`, in order, and reports those that failed.
///
/// Each record runs on its own span (`message_id`, `receive_count`) under a panic guard: a panic
/// fails that record only. Resuming after an unwind is sound because the runner keeps no state
/// between messages: its AWS ports are clients, and what a half-done record did is in the event
/// log, which the next delivery reads. (A panic that poisons a lock inside an in-memory adapter
/// would make later records fail too, each reported on its own.) Needs `panic = "unwind"`, the
/// default.
///
/// A record without a message id (SQS always sends one) that fails is reported with an empty id:
/// Lambda then treats the whole batch as failed and redelivers all of it, which is harmless
/// (handling is idempotent) where dropping the record silently would not be.
pub async fn handle_batch<S, Q, C, K>(runner: &Runner<S, Q, C, K>, event: SqsEvent) -> SqsBatchResponse
where
    S: EventStore,
    Q: Queue,
    C: Cloud,
    K: Clock,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = receive_count(&record);
        let span = tracing::info_span!("record", message_id = %message_id, receive_count);
        if !handle_record(runner, record, receive_count).instrument(span).await {
            response.add_failure(message_id);
        }
    }
    response
}

/// Handles one record and logs what came of it; `false` if it must be reported as failed.
async fn handle_record<S, Q, C, K>(runner: &Runner<S, Q, C, K>, record: SqsMessage, receive_count: u32) -> bool
where
    S: EventStore,
    Q: Queue,
    C: Cloud,
    K: Clock,
{
    let Some(body) = record.body else {
        tracing::warn!(reason = "the record has no body", "record failed; SQS will deliver it again");
        return false;
    };
    let sender = record.attributes.get(SENDER_ID).cloned();
    // Boxed: the runner's future is deep (runner, AWS SDK calls), and inside the Lambda runtime's
    // own layers its layout would overflow the compiler's query depth.
    let processing = Box::pin(worker::process(runner, &body, sender, receive_count));
    match AssertUnwindSafe(processing).catch_unwind().await {
        Ok(Ok(handled)) => {
            tracing::info!(outcome = ?handled, "record handled");
            let table = std::env::var(ENV_TABLE).unwrap_or_default();
            if let Some(line) = crate::metrics::failure_dirty_line(&table, &handled, runner.clock.now().as_ms()) {
                // Its own line on stdout, as EMF requires; CloudWatch makes it the FailureDirty metric.
                println!("{line}");
            }
            true
        }
        Ok(Err(reason)) => {
            tracing::warn!(reason = %reason, "record failed; SQS will deliver it again");
            false
        }
        Err(panic) => {
            tracing::error!(reason = %panic_message(panic.as_ref()), "record handling panicked; SQS will deliver it again");
            false
        }
    }
}

/// `ApproximateReceiveCount`, or 1 (a first delivery) when it is missing or unreadable.
fn receive_count(record: &SqsMessage) -> u32 {
    record.attributes.get(RECEIVE_COUNT).and_then(|count| count.parse().ok()).unwrap_or(1)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    format!("panic: {}", text.unwrap_or("(no message)"))
}

/// What the Lambda reads from its environment, besides the standard AWS chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub table: String,
    pub queue_url: String,
}

impl Config {
    /// Reads `SKALD_TABLE` and `SKALD_QUEUE_URL` through `var`; an unset or empty variable is an
    /// error naming every one that is missing.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let wanted = [(ENV_TABLE, "the DynamoDB events table's name"), (ENV_QUEUE_URL, "the SQS queue's URL, where wakes are sent")];
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for (name, what) in wanted {
            match var(name).filter(|value| !value.is_empty()) {
                Some(value) => values.push(value),
                None => missing.push(format!("{name} ({what})")),
            }
        }
        match <[String; 2]>::try_from(values) {
            Ok([table, queue_url]) => Ok(Config { table, queue_url }),
            Err(_) => Err(format!("missing environment variable: {}", missing.join(", "))),
        }
    }
}

/// The runner on AWS, built once per cold start: credentials, region and endpoint come from the
/// standard chain (environment, profile, the Lambda's role).
pub async fn aws_runner(config: &Config) -> Result<AwsRunner, String> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(Runner {
        store: DynamoStore::from_sdk_config(&sdk, config.table.clone()),
        queue: SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.queue_url.clone()),
        cloud: crate::aws_env::cloud(&sdk)?,
        clock: SystemClock,
        config: crate::aws_env::runner_config(&sdk)?,
    })
}

/// How log lines look: Lambda's `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with the record's span (message id, receive count) in it.
    Json,
    /// Plain text; CloudWatch stamps each line with the time.
    Text,
}

impl LogFormat {
    /// `JSON` (in any case) means JSON lines; anything else, or nothing, means plain text.
    pub fn from_env_value(value: Option<&str>) -> LogFormat {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// The log subscriber for the Lambda, writing to `writer`. `filter` takes `RUST_LOG` syntax (a
/// level such as `INFO` or `debug`, or per-target directives); what it cannot parse is ignored,
/// and the level is INFO unless it says otherwise.
pub fn log_subscriber<W>(format: LogFormat, filter: Option<&str>, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).parse_lossy(filter.unwrap_or_default());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(false).with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text => Box::new(builder.without_time().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_missing_variable() {
        let none = Config::from_env(|_| None).unwrap_err();
        assert!(none.contains(ENV_TABLE) && none.contains(ENV_QUEUE_URL), "{none}");

        let no_queue = Config::from_env(|name| (name == ENV_TABLE).then(|| "skald-events".to_string())).unwrap_err();
        assert!(no_queue.contains(ENV_QUEUE_URL) && !no_queue.contains(ENV_TABLE), "{no_queue}");

        let empty_table = Config::from_env(|name| Some(if name == ENV_TABLE { String::new() } else { "https://q".into() })).unwrap_err();
        assert!(empty_table.contains(ENV_TABLE) && !empty_table.contains(ENV_QUEUE_URL), "{empty_table}");

        let both = Config::from_env(|name| Some(format!("value of {name}"))).unwrap();
        assert_eq!(both, Config { table: "value of SKALD_TABLE".into(), queue_url: "value of SKALD_QUEUE_URL".into() });
    }

    #[test]
    fn log_format_is_json_only_when_lambda_says_so() {
        assert_eq!(LogFormat::from_env_value(Some("JSON")), LogFormat::Json);
        assert_eq!(LogFormat::from_env_value(Some("json")), LogFormat::Json);
        assert_eq!(LogFormat::from_env_value(Some("Text")), LogFormat::Text);
        assert_eq!(LogFormat::from_env_value(None), LogFormat::Text);
    }
}
