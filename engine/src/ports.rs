//! The ports: what the runner needs from the outside world, as traits.
//!
//! Each has an in-memory or simulated implementation in `adapters` and an AWS one. The
//! futures are `Send` so a multi-threaded runtime (Lambda's) can drive them; the in-memory
//! adapters complete at once and can be driven without any runtime.

use crate::codec::{Snapshot, StoredEvent};
use crate::message::Message;
use crate::notify::Notification;
use crate::workflow::command::HealthTarget;
use crate::workflow::event::Freeze;
use crate::workflow::health::ServiceReport;
use crate::workflow::listener_rule::NewRule;
use crate::workflow::resources::{Lookup, Query, Tags, TargetGroupShape, Weighted};
use crate::workflow::{CloudError, LaunchSpec, Timestamp};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

/// Names the lock of one project-config.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockKey {
    pub project: String,
    pub config: String,
}

/// A change to a lock, made atomically with the events it is appended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOp {
    /// Take the lock if it is free or its lease ended before `now`.
    Acquire { key: LockKey, owner: String, lease_until: Timestamp, now: Timestamp },
    /// Give the lock back if `owner` holds it; a lock already gone is no error.
    Release { key: LockKey, owner: String },
    /// A new deploy `owner` has not taken its lock yet: note it where the sweeper looks, since a
    /// deploy without the lock is otherwise invisible to it (one waiting for a cancelled deploy,
    /// or one whose worker died right after recording its request). Written with the first
    /// event; taking the lock (`Acquire`) removes the note.
    Watch { key: LockKey, owner: String },
    /// `owner` ends without ever taking the lock: remove its note. Gone already is no error.
    Unwatch { key: LockKey, owner: String },
}

/// One deploy of a project-config, as the per project-config index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: LockKey,
    pub deploy: String,
    pub created_at: Timestamp,
}

/// One atomic write: new events of one deploy, with the lock change and index entry that go with
/// them. All of it lands, or none of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Append {
    pub deploy: String,
    /// Consecutive seqs following the deploy's last event.
    pub events: Vec<StoredEvent>,
    pub lock: Option<LockOp>,
    /// Written with a deploy's first event.
    pub index: Option<IndexEntry>,
    /// The state after these events, stored with them now and then so steps read little.
    pub snapshot: Option<Snapshot>,
}

/// What a step reads: the latest snapshot, if any, and every event after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tail {
    pub snapshot: Option<Snapshot>,
    pub events: Vec<StoredEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// Another writer appended `seq` first: re-read and decide again.
    Conflict {
        seq: u64,
    },
    /// The lock belongs to another deploy.
    LockHeld {
        holder: String,
    },
    Store(StoreError),
}

/// The store failed (throttled, unreachable, misconfigured); the step may be retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event store: {}", self.0)
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Conflict { seq } => write!(f, "another writer appended seq {seq} first"),
            AppendError::LockHeld { holder } => write!(f, "the lock is held by deploy {holder}"),
            AppendError::Store(e) => e.fmt(f),
        }
    }
}

/// The event log. Append-only: nothing updates or deletes an event.
pub trait EventStore {
    /// Every event of a deploy, in seq order (empty for an unknown deploy).
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// The latest snapshot of a deploy and the events after it: what one step needs, at a cost
    /// that does not grow with the history.
    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send;

    fn append(&self, append: Append) -> impl Future<Output = Result<(), AppendError>> + Send;

    /// The deploys the sweeper watches, with their project-configs: every lock holder, and every
    /// deploy that has not taken its lock yet (see `LockOp::Watch`). (Eventually consistent on DynamoDB, which is all a periodic
    /// sweep needs.)
    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send;

    /// Deploys of a project-config, newest first, at most `limit`.
    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send;

    /// The project-config's deploy freeze, if one stands (`skald freeze`). The runner reads it
    /// for every new deploy request and records what it found with the request.
    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send;

    /// The deploy's notification cursor: every transition up to this seq was published (0: none).
    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Moves the cursor forward to `seq`; a cursor already further on stays where it is.
    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueError(pub String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue: {}", self.0)
    }
}

/// Where the runner sends itself wakes (and where producers send requests).
pub trait Queue {
    /// The longest delay one message can carry (SQS: 900 s); longer waits are chained.
    const DELAY_SECS_MAX: u32 = 900;

    fn send(&self, message: &Message, delay_secs: u32) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The cloud, as the workflow needs it. Every call that creates is idempotent: repeating it after
/// a crash finds what the first call made (by name and release tag) and succeeds.
pub trait Cloud {
    /// The cloud as seen from the account and region a release names (`aws_account_id`,
    /// `aws_region`); `None` means the deployer's own. The runner asks for it before every cloud
    /// command of a deploy, so one worker serves releases of many accounts and regions. A cloud
    /// that models one account and region is itself.
    fn in_place(&self, account_id: Option<&str>, region: Option<&str>) -> impl Future<Output = Result<Self, CloudError>> + Send
    where
        Self: Sized;

    fn lookup(&self, query: &Query) -> impl Future<Output = Result<Lookup, CloudError>> + Send;

    fn launch(&self, spec: &LaunchSpec, user_data: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    fn set_capacity(&self, asg: &str, min_size: u32, desired: u32) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// What each target's ASG and load balancers say about its instances, keyed by service.
    fn observe(&self, targets: &[HealthTarget]) -> impl Future<Output = Result<BTreeMap<String, ServiceReport>, CloudError>> + Send;

    fn detach(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Whether the ASG's instances have left its former load balancers.
    fn is_detached(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<bool, CloudError>> + Send;

    /// Creates a target group named `name` shaped like a template, returning its ARN. A group of
    /// that name carrying the same release tag is the one a crashed worker made: its ARN is returned.
    fn create_target_group(
        &self,
        name: &str,
        shape: &TargetGroupShape,
        tags: &Tags,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;

    /// Makes the listener's rule at `priority` forward to `forward` (weighted), creating it as
    /// `rule` says if there is none; an empty `forward` deletes the rule. Repeatable.
    fn shift_traffic(
        &self,
        listener_arn: &str,
        priority: u32,
        rule: NewRule<'_>,
        forward: &[Weighted],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes the ASG (terminating its instances), then the launch template and the target
    /// group (by name); gone already is done.
    fn delete(
        &self,
        asg: &str,
        launch_template: Option<&str>,
        target_group: Option<&str>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Whether transitions are published at all (a deployer may have nowhere to send them).
    fn notifies(&self) -> bool;

    /// Publishes one transition (SNS, EventBridge; see `crate::notify`). May be repeated.
    fn notify(&self, notification: &Notification) -> impl Future<Output = Result<(), CloudError>> + Send;
}

/// The only source of "now" the runner has.
pub trait Clock {
    fn now(&self) -> Timestamp;
}
