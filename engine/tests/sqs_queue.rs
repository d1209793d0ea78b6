//! The SQS queue against a local AWS API (moto, started by the test support unless
//! `SKALD_TEST_AWS_ENDPOINT` names one). Each test uses its own queues.

use skald_engine::adapters::sqs::{create_queue_with_dlq, Received, SqsQueue};
use skald_engine::message::Message;
use skald_engine::ports::Queue;
use skald_engine::testing::moto;
use std::time::{Duration, Instant};

/// A queue with a 2 s visibility timeout whose messages go to the DLQ on their third receive.
async fn new_queue(label: &str) -> (SqsQueue, SqsQueue) {
    let config = moto::aws_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let (url, dlq_url) = create_queue_with_dlq(&client, &moto::unique_name(label), 2, 2).await.expect("the queues are created");
    (SqsQueue::new(client.clone(), url), SqsQueue::new(client, dlq_url))
}

fn wake() -> Message {
    Message::Wake { deploy: "01JD0000000000000000000001".into(), seq: 7 }
}

/// Long-polls until one message arrives or `within` passes.
async fn receive_one(queue: &SqsQueue, within: Duration) -> Option<Received> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let wait = deadline.saturating_duration_since(Instant::now()).as_secs().clamp(1, 20) as u32;
        let mut received = queue.receive(1, wait).await.expect("receive works");
        assert!(received.len() <= 1);
        if let Some(message) = received.pop() {
            return Some(message);
        }
    }
    None
}

/// Pins: a delayed message is invisible for its delay, then a long poll delivers it with the
/// sender's id and a receive count of 1, its body exactly `Message::to_json`.
#[tokio::test]
async fn a_delayed_message_arrives_after_its_delay_with_sender_and_count() {
    // Given a wake sent with a 2 s delay
    let (queue, _) = new_queue("delay").await;
    let sent = Instant::now();
    queue.send(&wake(), 2).await.expect("sent");

    // When the queue is read at once, and then long-polled
    let early = queue.receive(10, 0).await.unwrap();
    let received = receive_one(&queue, Duration::from_secs(10)).await.expect("the message arrives");

    // Then nothing came early, and the message came after its delay, whole, with its sender
    assert_eq!(early, vec![], "nothing is visible during the delay");
    assert!(sent.elapsed() >= Duration::from_millis(1_500), "delivered after {:?}", sent.elapsed());
    assert_eq!(received.body, wake().to_json());
    assert_eq!(Message::from_json(&received.body), Ok(wake()));
    assert!(received.sender_id.as_deref().is_some_and(|s| !s.is_empty()), "SenderId is present: {received:?}");
    assert_eq!(received.receive_count, 1);
    assert!(!received.message_id.is_empty() && !received.receipt_handle.is_empty());
    queue.delete(&received.receipt_handle).await.unwrap();
}

/// Pins: a message received and not deleted comes back after the visibility timeout with
/// receive count 2; once deleted it is gone.
#[tokio::test]
async fn an_undeleted_message_comes_back_and_a_deleted_one_does_not() {
    // Given a message received once and not deleted
    let (queue, _) = new_queue("visibility").await;
    queue.send(&wake(), 0).await.unwrap();
    let first = receive_one(&queue, Duration::from_secs(5)).await.expect("first receive");
    assert_eq!(first.receive_count, 1);

    // When the visibility timeout (2 s) passes
    let again = receive_one(&queue, Duration::from_secs(10)).await.expect("the message comes back");

    // Then it is the same message, received a second time
    assert_eq!((again.message_id.as_str(), again.receive_count), (first.message_id.as_str(), 2));

    // When it is deleted, then it never comes back (not even after the visibility timeout)
    queue.delete(&again.receipt_handle).await.unwrap();
    assert_eq!(receive_one(&queue, Duration::from_secs(4)).await, None);
}

/// Pins: a body that is not a skald message is delivered as it was sent, undecoded, so the
/// consumer can log it and let it go to the dead-letter queue.
#[tokio::test]
async fn a_garbage_body_is_delivered_undecoded() {
    let (queue, _) = new_queue("garbage").await;
    let garbage = "{\"type\": \"Teleport\", not json at all ✗";
    queue.send_raw(garbage, 0).await.unwrap();
    let received = receive_one(&queue, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!(received.body, garbage);
    assert!(Message::from_json(&received.body).is_err());
    queue.delete(&received.receipt_handle).await.unwrap();
}

/// Pins: the redrive policy: a message received max_receive_count (2) times without being
/// deleted moves to the dead-letter queue.
#[tokio::test]
async fn a_message_received_too_often_moves_to_the_dead_letter_queue() {
    // Given a message received twice and never deleted
    let (queue, dlq) = new_queue("redrive").await;
    queue.send_raw("poison", 0).await.unwrap();
    for count in 1..=2 {
        let received = receive_one(&queue, Duration::from_secs(10)).await.expect("received");
        assert_eq!(received.receive_count, count);
    }

    // When its visibility timeout runs out once more
    let third = receive_one(&queue, Duration::from_secs(5)).await;

    // Then the queue does not deliver it again: the dead-letter queue has it
    assert_eq!(third, None);
    let dead = receive_one(&dlq, Duration::from_secs(5)).await.expect("the DLQ has it");
    assert_eq!(dead.body, "poison");
}

/// Pins: creating the queues twice finds the same queues.
#[tokio::test]
async fn create_queue_with_dlq_is_idempotent() {
    let config = moto::aws_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = moto::unique_name("idempotent");
    let first = create_queue_with_dlq(&client, &name, 30, 5).await.unwrap();
    let second = create_queue_with_dlq(&client, &name, 30, 5).await.unwrap();
    assert_eq!(first, second);
    assert_ne!(first.0, first.1);
}

/// Pins: delays over SQS's 900 s are a caller's bug, refused before anything is sent.
#[tokio::test]
#[should_panic(expected = "over the queue's limit")]
async fn a_delay_over_900_seconds_is_refused() {
    let (queue, _) = new_queue("too-long").await;
    let _ = queue.send(&wake(), 901).await;
}
