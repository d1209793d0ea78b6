//! Messages on the queue: JSON objects tagged by `type`.
//!
//! Messages carry ids, never state: everything about a deploy lives in its event log.

use crate::workflow::{Release, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Message {
    /// From a producer: deploy this release.
    DeployRequested { release: Box<Release>, release_id: String, created_at: Timestamp },
    /// From a person: stop the running deploy of this project-config and clean up.
    HaltRequested { project: String, config: String, reason: String },
    /// From a person (`skald undeploy`), or scheduled by a release's `automatic_undeploy_minutes`
    /// (then `of_release` names the release to remove, and nothing happens if another release
    /// went live since): remove the live release of this project-config.
    UndeployRequested {
        project: String,
        config: String,
        reason: String,
        /// The undeploy's id (a ULID), chosen by the sender: a message delivered twice is one undeploy.
        undeploy_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of_release: Option<String>,
    },
    /// skald's own timer: look at this deploy again (it was last seen at `seq`).
    Wake { deploy: String, seq: u64 },
}

impl Message {
    /// A person's request to undeploy the live release of `release`'s project-config.
    pub fn undeploy_of(release: &Release, undeploy_id: &str, reason: &str) -> Message {
        Message::UndeployRequested {
            project: release.project_name.clone(),
            config: release.config_name.clone(),
            reason: reason.into(),
            undeploy_id: undeploy_id.into(),
            of_release: None,
        }
    }

    /// Decodes a message body; the error says what is wrong, for the log line and the DLQ.
    pub fn from_json(body: &str) -> Result<Message, String> {
        serde_json::from_str(body).map_err(|e| format!("not a skald message: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialise")
    }
}
