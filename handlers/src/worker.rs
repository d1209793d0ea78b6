//! The worker loop: receive a batch from SQS, hand each message to the runner, delete what was
//! handled. The same function serves `skald demo --endpoint` now and `skald worker` later.
//!
//! A message is deleted only once the runner handled it (its events appended, its next wake
//! sent). A message that is not skald's, or that the runner refused for good, is left alone:
//! it comes back until the queue's redrive moves it to the dead-letter queue, where a person
//! sees it. Nothing is dropped silently.

use skald_engine::adapters::sqs::SqsQueue;
use skald_engine::message::Message;
use skald_engine::ports::{Clock, Cloud, EventStore, QueueError};
use skald_engine::runner::{Handled, RunError, Runner};

/// What became of one received message.
#[derive(Debug)]
pub enum Processed {
    Handled(Handled),
    /// Left on the queue: retried after the visibility timeout, then dead-lettered.
    Failed {
        message_id: String,
        error: String,
    },
}

/// Receives up to one batch (waiting at most `wait_secs`) and processes it, in order.
pub async fn poll_once<S, C, K>(runner: &Runner<S, SqsQueue, C, K>, wait_secs: u32) -> Result<Vec<Processed>, QueueError>
where
    S: EventStore,
    C: Cloud,
    K: Clock,
{
    let batch = runner.queue.receive(skald_engine::adapters::sqs::RECEIVE_MAX, wait_secs).await?;
    let mut processed = Vec::with_capacity(batch.len());
    for received in batch {
        let message = match Message::from_json(&received.body) {
            Ok(message) => message,
            Err(error) => {
                processed.push(Processed::Failed { message_id: received.message_id, error });
                continue;
            }
        };
        match runner.handle(message, received.sender_id.clone(), received.receive_count > 1).await {
            Ok(handled) => {
                runner.queue.delete(&received.receipt_handle).await?;
                processed.push(Processed::Handled(handled));
            }
            Err(error @ (RunError::Rejected(_) | RunError::Corrupt { .. } | RunError::Store(_) | RunError::Queue(_))) => {
                processed.push(Processed::Failed { message_id: received.message_id, error: error.to_string() });
            }
        }
    }
    Ok(processed)
}
