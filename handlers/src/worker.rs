//! The worker loop: receive a batch from SQS, hand each message to the runner, delete what was
//! handled. The same function serves `skald demo --endpoint` now and `skald worker` later.
//!
//! A message is deleted only once the runner handled it (its events appended, its next wake
//! sent). A message that is not skald's, or that the runner refused for good, is left alone:
//! it comes back until the queue's redrive moves it to the dead-letter queue, where a person
//! sees it. Nothing is dropped silently.

use skald_engine::adapters::sqs::SqsQueue;
use skald_engine::message::Message;
use skald_engine::ports::{Clock, Cloud, EventStore, Queue, QueueError};
use skald_engine::runner::{Handled, Runner};

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

/// Decodes one message body and hands it to the runner: the one step the worker loop and the
/// Lambda share. `Err` says why the message must stay on the queue (and is logged by the caller).
pub async fn process<S, Q, C, K>(
    runner: &Runner<S, Q, C, K>,
    body: &str,
    sender: Option<String>,
    receive_count: u32,
) -> Result<Handled, String>
where
    S: EventStore,
    Q: Queue,
    C: Cloud,
    K: Clock,
{
    let message = Message::from_json(body)?;
    runner.handle(message, sender, receive_count > 1).await.map_err(|e| e.to_string())
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
        match process(runner, &received.body, received.sender_id.clone(), received.receive_count).await {
            Ok(handled) => {
                runner.queue.delete(&received.receipt_handle).await?;
                processed.push(Processed::Handled(handled));
            }
            Err(error) => processed.push(Processed::Failed { message_id: received.message_id, error }),
        }
    }
    Ok(processed)
}
