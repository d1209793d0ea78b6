//! `skald-lambda`: the SQS-triggered Lambda. Each invocation is one batch of queue records, handled
//! by [`skald_handlers::lambda::handle_batch`]; failed records are reported by message id (the
//! event source mapping needs `ReportBatchItemFailures`).
//!
//! Configuration: `SKALD_TABLE` and `SKALD_QUEUE_URL`, and the standard AWS chain (the function's
//! role, `AWS_REGION`, `AWS_ENDPOINT_URL`). Logs: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`,
//! plain text otherwise; the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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
    let runner = lambda::aws_runner(&config).await;
    tracing::info!(table = %config.table, queue_url = %config.queue_url, "skald-lambda ready");

    match lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| invoke(&runner, event))).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// One invocation. It never fails as a whole: failures are per record, in the response.
async fn invoke(runner: &AwsRunner, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(lambda::handle_batch(runner, event.payload).await)
}
