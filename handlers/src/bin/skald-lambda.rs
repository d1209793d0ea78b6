//! `skald-lambda`: the SQS-triggered Lambda. An invocation is one batch of queue records, handled
//! by [`skald_handlers::lambda::handle_batch`], failed records reported by message id (the event
//! source mapping needs `ReportBatchItemFailures`); or a scheduled tick, which sweeps for
//! deploys whose wakes were lost.
//!
//! Configuration: `SKALD_TABLE` and `SKALD_QUEUE_URL`, and the standard AWS chain (the function's
//! role, `AWS_REGION`, `AWS_ENDPOINT_URL`). Logs: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`,
//! plain text otherwise; the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO.

use lambda_runtime::{service_fn, LambdaEvent};
use skald_handlers::lambda::{self, AwsRunner, Config, LogFormat};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let format = LogFormat::from_env_value(std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref());
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).ok();
    let subscriber = lambda::log_subscriber(format, filter.as_deref(), std::io::stdout);
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("skald-lambda: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }

    let config = match Config::from_env(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "skald-lambda cannot start");
            return ExitCode::FAILURE;
        }
    };
    // Built once per cold start; every invocation of this instance reuses its clients.
    let runner = match lambda::aws_runner(&config).await {
        Ok(runner) => runner,
        Err(e) => {
            tracing::error!(error = %e, "skald-lambda cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(table = %config.table, queue_url = %config.queue_url, "skald-lambda ready");

    match lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| invoke(&runner, event))).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// One invocation: a batch never fails as a whole (failures are per record, in the response); a
/// sweep fails only if the store cannot be read.
async fn invoke(runner: &AwsRunner, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, lambda_runtime::Error> {
    lambda::invoke(runner, event.payload).await.map_err(lambda_runtime::Error::from)
}
