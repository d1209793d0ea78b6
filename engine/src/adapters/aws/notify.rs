//! Publishing transitions: to an SNS topic (fan out to email, chat, other queues; subscriptions
//! can filter on the `phase` and `failure` message attributes) or to an EventBridge bus (rules
//! match on `detail.phase`, `detail.failure`, `detail.project`…). The body is the notification's
//! JSON (`skald.notification/1`) either way.

use super::cloud_error;
use crate::notify::Notification;
use crate::workflow::CloudError;

/// The EventBridge `source` and `detail-type` of skald's events.
pub const EVENT_SOURCE: &str = "skald";
pub const EVENT_DETAIL_TYPE: &str = "skald deploy transition";

/// Where transitions go, as configured: `sns:<topic ARN>` or `eventbridge:<bus name or ARN>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Sns { topic_arn: String },
    EventBridge { bus: String },
}

impl Destination {
    pub fn parse(text: &str) -> Result<Destination, String> {
        match text.split_once(':') {
            Some(("sns", arn)) if arn.starts_with("arn:") => Ok(Destination::Sns { topic_arn: arn.to_string() }),
            Some(("eventbridge", bus)) if !bus.is_empty() => Ok(Destination::EventBridge { bus: bus.to_string() }),
            _ => Err(format!("`{text}` is neither `sns:<topic ARN>` nor `eventbridge:<bus name or ARN>`")),
        }
    }
}

/// A destination and the client that reaches it.
#[derive(Clone, Debug)]
pub(super) enum Publisher {
    Sns { client: aws_sdk_sns::Client, topic_arn: String },
    EventBridge { client: aws_sdk_eventbridge::Client, bus: String },
}

impl Publisher {
    pub(super) fn new(config: &aws_config::SdkConfig, destination: Destination) -> Publisher {
        match destination {
            Destination::Sns { topic_arn } => Publisher::Sns { client: aws_sdk_sns::Client::new(config), topic_arn },
            Destination::EventBridge { bus } => Publisher::EventBridge { client: aws_sdk_eventbridge::Client::new(config), bus },
        }
    }

    pub(super) async fn publish(&self, notification: &Notification) -> Result<(), CloudError> {
        let body = serde_json::to_string(notification).expect("notifications serialise");
        match self {
            Publisher::Sns { client, topic_arn } => {
                let attribute = |value: &str| {
                    aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .expect("data type is set")
                };
                client
                    .publish()
                    .topic_arn(topic_arn)
                    .message(body)
                    .message_attributes("phase", attribute(&notification.phase))
                    .message_attributes("failure", attribute(if notification.failure { "true" } else { "false" }))
                    .send()
                    .await
                    .map_err(|e| cloud_error("Publish", e))?;
                Ok(())
            }
            Publisher::EventBridge { client, bus } => {
                let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(EVENT_DETAIL_TYPE)
                    .detail(body)
                    .event_bus_name(bus)
                    .build();
                let sent = client.put_events().entries(entry).send().await.map_err(|e| cloud_error("PutEvents", e))?;
                // PutEvents answers 200 with per-entry failures: one failed entry is a failed publish.
                match sent.entries().first().and_then(|e| e.error_code()) {
                    Some(code) => {
                        let message = sent.entries()[0].error_message().unwrap_or("").to_string();
                        Err(CloudError { transient: true, code: Some(code.to_string()), message })
                    }
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Destination;

    #[test]
    fn destinations_are_parsed_or_refused_with_the_accepted_forms() {
        let topic = "arn:aws:sns:us-east-1:123456789012:skald";
        assert_eq!(Destination::parse(&format!("sns:{topic}")), Ok(Destination::Sns { topic_arn: topic.into() }));
        assert_eq!(Destination::parse("eventbridge:default"), Ok(Destination::EventBridge { bus: "default".into() }));
        for bad in ["sns:skald", "slack:#deploys", "eventbridge:", ""] {
            assert!(Destination::parse(bad).unwrap_err().contains("sns:<topic ARN>"), "{bad}");
        }
    }
}
