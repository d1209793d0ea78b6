//! Notifications: every transition of a deploy, published for people and systems to react to.
//!
//! A transition is a change of `State::phase` (validating, taking the lock, deploying, …, Success,
//! FailureClean, FailureDirty). Notifications are a projection of the event log, not part of it:
//! after each message the runner publishes the transitions recorded since the deploy's
//! notification cursor (a separate item in the store), then moves the cursor. Publishing first and
//! moving the cursor second makes delivery at-least-once: a crash between the two repeats a
//! notification, never loses one; a publish that fails fails the message, whose redelivery
//! publishes again. A replay of the history gives exactly the notifications that were sent.
//!
//! A release with `skip_notifications` still notifies failures: the people on call hear about
//! those whatever the producer asked for.
//!
//! The schema (`skald.notification/1`) is small and stable: fields are only ever added.

use crate::workflow::state::{End, State};
use crate::workflow::{evolve, ErrorKind, Recorded, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const SCHEMA: &str = "skald.notification/1";

/// One transition of one deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub deploy: String,
    /// "deploy" or "undeploy" (absent from notifications older than undeploys: "deploy").
    #[serde(default = "deploy_kind")]
    pub kind: String,
    pub project: String,
    pub config: String,
    /// The event that made the transition, and when it was recorded.
    pub seq: u64,
    pub at: Timestamp,
    /// The phase entered (`State::phase`) and the one left.
    pub phase: String,
    pub previous_phase: String,
    /// Success, FailureClean or FailureDirty once the deploy has ended.
    pub end: Option<String>,
    /// Set from the first failure on: what went wrong.
    pub error: Option<ErrorKind>,
    pub reason: Option<String>,
    /// Whether this notification reports a failure (always sent).
    pub failure: bool,
    pub requested_by: Option<String>,
    pub release_digest: String,
}

fn deploy_kind() -> String {
    "deploy".to_string()
}

/// The transitions recorded in `events` (which follow `state`) with a seq above `after_seq`.
pub fn transitions(state: State, events: &[Recorded], after_seq: u64) -> Vec<Notification> {
    let mut state = state;
    let mut notifications = Vec::new();
    for recorded in events {
        let previous_phase = state.phase();
        state = evolve(state, recorded);
        if state.phase() == previous_phase || recorded.seq <= after_seq {
            continue;
        }
        let notification = notification(&state, recorded, previous_phase);
        let skipped = state.request.as_ref().is_some_and(|r| r.release.skip_notifications);
        if notification.failure || !skipped {
            notifications.push(notification);
        }
    }
    notifications
}

fn notification(state: &State, recorded: &Recorded, previous_phase: &str) -> Notification {
    let request = state.request.as_ref().expect("a transition after the request");
    let failure = state.failure.as_ref();
    let failed_end = matches!(state.end, Some(End::Failure { .. }));
    Notification {
        schema: SCHEMA.to_string(),
        deploy: request.release_id.clone(),
        kind: state.kind().to_string(),
        project: request.release.project_name.clone(),
        config: request.release.config_name.clone(),
        seq: recorded.seq,
        at: recorded.at,
        phase: state.phase().to_string(),
        previous_phase: previous_phase.to_string(),
        end: state.end.as_ref().map(|e| e.name().to_string()),
        error: failure.map(|f| f.error),
        reason: failure.map(|f| f.reason.clone()),
        failure: failure.is_some() || failed_end,
        requested_by: request.requested_by.clone(),
        release_digest: request.release_digest.clone(),
    }
}

/// The notification as a Slack message (an incoming webhook's or `chat.postMessage`'s payload).
pub fn slack(n: &Notification) -> Value {
    let icon = match (n.end.as_deref(), n.failure) {
        (Some("Success"), _) => ":white_check_mark:",
        (Some("FailureDirty"), _) => ":rotating_light:",
        (_, true) => ":x:",
        _ => ":arrow_forward:",
    };
    let headline = format!("{icon} *{} {}*: {} ({} `{}`)", n.project, n.config, n.phase, n.kind, n.deploy);
    let mut context = vec![format!("#{} at {}", n.seq, n.at), format!("requested by {}", n.requested_by.as_deref().unwrap_or("unknown"))];
    if let (Some(error), Some(reason)) = (n.error, n.reason.as_deref()) {
        context.insert(0, format!("{error:?}: {reason}"));
    }
    json!({
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "context", "elements": context.iter().map(|c| json!({"type": "mrkdwn", "text": c})).collect::<Vec<_>>()},
        ],
    })
}
