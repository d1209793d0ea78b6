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
    /// skald's own timer: look at this deploy again (it was last seen at `seq`).
    Wake { deploy: String, seq: u64 },
}

impl Message {
    /// Decodes a message body; the error says what is wrong, for the log line and the DLQ.
    pub fn from_json(body: &str) -> Result<Message, String> {
        serde_json::from_str(body).map_err(|e| format!("not a skald message: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialise")
    }
}
