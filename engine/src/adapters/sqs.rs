//! The queue on SQS: a standard queue with a dead-letter queue, with the delivery rules of
//! [`MemoryQueue`](super::memory::MemoryQueue) (delays, a visibility timeout, redelivery of what
//! was received and not deleted).
//!
//! What it guarantees:
//! - [`Queue::send`] sends the message's JSON ([`Message::to_json`]) with `DelaySeconds` set to the
//!   delay; a delay over [`Queue::DELAY_SECS_MAX`] (SQS's 900 s) is a bug of the caller and
//!   panics, as in memory (longer waits are chained by the runner).
//! - [`SqsQueue::receive`] long-polls and hands back bodies undecoded, with the `SenderId` (the
//!   authenticated principal that sent the message: the audit trail's "who") and the
//!   `ApproximateReceiveCount`: a consumer can log and dead-letter a body that is not a skald
//!   message, and knows a redelivery when it sees one.
//! - [`create_queue_with_dlq`] is idempotent: run twice, it finds both queues and sets the same
//!   attributes again.
//!
//! What it deliberately does not do:
//! - Delete a message on its own, decode bodies, or retry beyond the SDK's own retry strategy
//!   (standard mode): a message that was not handled stays on the queue, comes back after the
//!   visibility timeout and, after `maxReceiveCount` receives, goes to the dead-letter queue.
//! - Deduplicate: SQS standard queues deliver at least once, and wakes are harmless to repeat.

use crate::message::Message;
use crate::ports::{Queue, QueueError};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::future::Future;

/// SQS's limits on one ReceiveMessage.
pub const RECEIVE_MAX: u32 = 10;
pub const WAIT_SECS_MAX: u32 = 20;

/// A message as a consumer receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// What `delete` needs; valid for this receive only.
    pub receipt_handle: String,
    pub message_id: String,
    /// The body as sent, undecoded: it may not be a skald message at all.
    pub body: String,
    /// Who sent it (an IAM principal's id), as SQS authenticated it.
    pub sender_id: Option<String>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    pub client: Client,
    pub queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into() }
    }

    /// Waits up to `wait_secs` (at most 20) for messages, and takes at most `max` (1 to 10) of
    /// those that are visible; each is then invisible to others for the queue's visibility timeout.
    pub async fn receive(&self, max: u32, wait_secs: u32) -> Result<Vec<Received>, QueueError> {
        assert!((1..=RECEIVE_MAX).contains(&max), "SQS receives 1 to {RECEIVE_MAX} messages at a time, not {max}");
        assert!(wait_secs <= WAIT_SECS_MAX, "SQS long-polls at most {WAIT_SECS_MAX} s, not {wait_secs}");
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::SenderId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| QueueError(format!("receiving from {}: {}", self.queue_url, DisplayErrorContext(&e))))?;
        output
            .messages()
            .iter()
            .map(|message| {
                let attribute = |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name)).cloned();
                let missing = |what: &str| QueueError(format!("a message from {} has no {what}", self.queue_url));
                Ok(Received {
                    receipt_handle: message.receipt_handle().ok_or_else(|| missing("receipt handle"))?.to_string(),
                    message_id: message.message_id().ok_or_else(|| missing("message id"))?.to_string(),
                    body: message.body().unwrap_or_default().to_string(),
                    sender_id: attribute(MessageSystemAttributeName::SenderId),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|count| count.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect()
    }

    /// Deletes a received message: it was handled and must not come back.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(format!("deleting from {}: {}", self.queue_url, DisplayErrorContext(&e))))
    }

    async fn send_json(&self, body: String, delay_secs: u32) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(format!("sending to {}: {}", self.queue_url, DisplayErrorContext(&e))))
    }

    /// Sends a raw body: what a foreign or broken producer could put on the queue. For tests.
    pub async fn send_raw(&self, body: &str, delay_secs: u32) -> Result<(), QueueError> {
        self.send_json(body.to_string(), delay_secs).await
    }
}

impl Queue for SqsQueue {
    fn send(&self, message: &Message, delay_secs: u32) -> impl Future<Output = Result<(), QueueError>> + Send {
        assert!(delay_secs <= Self::DELAY_SECS_MAX, "delay {delay_secs} s is over the queue's limit");
        self.send_json(message.to_json(), delay_secs)
    }
}

/// Creates (or finds) the queue `name` and its dead-letter queue `<name>-dlq`, and sets the
/// queue's visibility timeout and redrive policy. Returns `(queue_url, dlq_url)`. For local runs
/// and tests; on AWS the queues come from infra/.
pub async fn create_queue_with_dlq(
    client: &Client,
    name: &str,
    visibility_secs: u32,
    max_receive_count: u32,
) -> Result<(String, String), QueueError> {
    let dlq_url = find_or_create(client, &format!("{name}-dlq")).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| QueueError(format!("reading the ARN of {dlq_url}: {}", DisplayErrorContext(&e))))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| QueueError(format!("{dlq_url} has no ARN")))?;
    let queue_url = find_or_create(client, name).await?;
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string() });
    client
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| QueueError(format!("setting the attributes of {queue_url}: {}", DisplayErrorContext(&e))))?;
    Ok((queue_url, dlq_url))
}

/// The URL of queue `name`, created (with default attributes) if there is none.
async fn find_or_create(client: &Client, name: &str) -> Result<String, QueueError> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(found) => return found.queue_url().map(str::to_string).ok_or_else(|| QueueError(format!("queue {name} has no URL"))),
        Err(e) if matches!(e.as_service_error(), Some(GetQueueUrlError::QueueDoesNotExist(_))) => {}
        Err(e) => return Err(QueueError(format!("looking up queue {name}: {}", DisplayErrorContext(&e)))),
    }
    // Without attributes, creating a queue that a racing creator just made returns its URL.
    let created = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| QueueError(format!("creating queue {name}: {}", DisplayErrorContext(&e))))?;
    created.queue_url().map(str::to_string).ok_or_else(|| QueueError(format!("queue {name} has no URL")))
}
