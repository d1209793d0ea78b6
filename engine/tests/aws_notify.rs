//! Publishing transitions against a local AWS API (moto): to an SNS topic a queue subscribes to,
//! and to an EventBridge bus whose rule targets a queue. What arrives is the notification, whole.

use aws_sdk_sqs::types::QueueAttributeName;
use skald_engine::adapters::aws::{AwsCloud, Destination, EVENT_DETAIL_TYPE, EVENT_SOURCE};
use skald_engine::notify::{Notification, SCHEMA};
use skald_engine::ports::Cloud;
use skald_engine::testing::moto;
use skald_engine::workflow::{ErrorKind, Timestamp};
use std::time::{Duration, Instant};

fn notification(deploy: &str) -> Notification {
    Notification {
        schema: SCHEMA.into(),
        deploy: deploy.into(),
        kind: "deploy".into(),
        project: "acme/notify".into(),
        config: "prod".into(),
        seq: 41,
        at: Timestamp(1_795_262_400_000),
        phase: "cleaning up after a failure".into(),
        previous_phase: "deploying".into(),
        end: None,
        error: Some(ErrorKind::Timeout),
        reason: Some("services were not healthy within 600 s".into()),
        failure: true,
        requested_by: Some("AIDAEXAMPLE".into()),
        release_digest: "ab".repeat(32),
    }
}

/// A queue that accepts messages from anything in the account (moto does not check the policy).
async fn queue(sqs: &aws_sdk_sqs::Client, label: &str) -> (String, String) {
    let url = sqs.create_queue().queue_name(moto::unique_name(label)).send().await.unwrap().queue_url.unwrap();
    let attributes = sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    let arn = attributes.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
    (url, arn)
}

/// The first message on the queue, waiting at most 10 s.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let received = sqs.receive_message().queue_url(url).wait_time_seconds(1).send().await.unwrap();
        if let Some(message) = received.messages.unwrap_or_default().into_iter().next() {
            return message.body.unwrap();
        }
    }
    panic!("nothing arrived on {url}");
}

#[tokio::test]
async fn a_transition_published_to_sns_reaches_a_subscribed_queue_whole() {
    let config = moto::aws_config().await;
    let (sns, sqs) = (aws_sdk_sns::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let topic = sns.create_topic().name(moto::unique_name("notify-topic")).send().await.unwrap().topic_arn.unwrap();
    let (url, queue_arn) = queue(&sqs, "notify-sns").await;
    sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(queue_arn).attributes("RawMessageDelivery", "true").send().await.unwrap();
    let cloud = AwsCloud::new(&config).with_notifications(&config, Destination::Sns { topic_arn: topic });

    let sent = notification("01JNOTIFYSNS0000000000000");
    cloud.notify(&sent).await.unwrap();

    assert!(cloud.notifies());
    let arrived: Notification = serde_json::from_str(&receive(&sqs, &url).await).unwrap();
    assert_eq!(arrived, sent);
}

#[tokio::test]
async fn a_transition_published_to_eventbridge_reaches_the_rule_target_as_its_detail() {
    let config = moto::aws_config().await;
    let (events, sqs) = (aws_sdk_eventbridge::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let bus = moto::unique_name("notify-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let (url, queue_arn) = queue(&sqs, "notify-events").await;
    let rule = moto::unique_name("notify-rule");
    let pattern = serde_json::json!({"source": [EVENT_SOURCE], "detail": {"failure": [true]}}).to_string();
    events.put_rule().name(&rule).event_bus_name(&bus).event_pattern(pattern).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(queue_arn).build().unwrap();
    events.put_targets().rule(&rule).event_bus_name(&bus).targets(target).send().await.unwrap();
    let cloud = AwsCloud::new(&config).with_notifications(&config, Destination::EventBridge { bus });

    let sent = notification("01JNOTIFYEVENTS00000000000");
    cloud.notify(&sent).await.unwrap();

    let event: serde_json::Value = serde_json::from_str(&receive(&sqs, &url).await).unwrap();
    assert_eq!((event["source"].as_str(), event["detail-type"].as_str()), (Some(EVENT_SOURCE), Some(EVENT_DETAIL_TYPE)));
    let arrived: Notification = serde_json::from_value(event["detail"].clone()).unwrap();
    assert_eq!(arrived, sent);
}

#[tokio::test]
async fn publishing_to_a_topic_that_does_not_exist_is_an_error_naming_it() {
    let config = moto::aws_config().await;
    let topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic".to_string();
    let cloud = AwsCloud::new(&config).with_notifications(&config, Destination::Sns { topic_arn: topic });

    let error = cloud.notify(&notification("01JNOTIFYMISSING000000000")).await.unwrap_err();

    assert!(error.to_string().contains("NotFound"), "{error}");
}
