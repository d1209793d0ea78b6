//! The event store on DynamoDB: one table, keys `pk` (S) and `sk` (N), with the semantics of
//! [`MemoryStore`](super::memory::MemoryStore).
//!
//! Items:
//! - an event: `pk = "deploy#<deploy>"`, `sk = seq`, with `type` (S), `v` (N), `at` (S, RFC 3339 as
//!   [`Timestamp`] displays it), `body` (M, the JSON body through serde_dynamo), `state_hash` (S), `hash` (S), and
//!   `floats` (M, only when the body holds floating-point numbers; see below);
//! - a lock: `pk = "lock#<project>#<config>"`, `sk = 0`, with `owner` (S), `lease_until` (N, ms)
//!   and `since` (N, ms);
//! - a freeze: `pk = "freeze#<project>#<config>"`, `sk = 0`, with `by` (S), `reason` (S) and
//!   `since` (N, ms): while it exists every deploy of the project-config is refused; written
//!   (only if absent) and deleted by `skald freeze` / `skald unfreeze`, read with each request;
//! - a notification cursor: `pk = "notified#<deploy>"`, `sk = 0`, with `seq` (N): every transition
//!   up to that seq was published; only ever moved forward (a conditional put);
//! - an index entry: `pk = "index#<project>#<config>"`, `sk = created_at_ms * 1_000_000 + n` where
//!   `n < 1_000_000` comes from the sha256 of the deploy id, with `deploy` (S) and `created_at`
//!   (S, RFC 3339). Entries sort by creation time and two deploys collide only if they were created
//!   in the same millisecond *and* their ids hash alike (about one in a million).
//!
//! What it guarantees:
//! - An [`Append`] is ONE `TransactWriteItems`: every event Put carries `attribute_not_exists(sk)`,
//!   the lock change and the index entry ride along, and a `ConditionCheck` on the previous seq
//!   keeps the log gapless. All of it lands or none of it does. Cancellations map to the typed
//!   errors exactly as the memory store reports them: an event that exists already is
//!   [`AppendError::Conflict`] with that event's seq (checked before the lock, as in memory), a
//!   lock held by another deploy is [`AppendError::LockHeld`] naming the holder (read from the
//!   cancellation reason, or by a consistent GetItem when the reason carries no item). A
//!   cancellation for a transient reason (a concurrent transaction on the same item, throttling,
//!   a lock that vanished between the failed condition and the read of its holder) is retried,
//!   at most [`APPEND_ATTEMPTS_MAX`] times in all; it wrote nothing, so a retry is safe.
//! - Loads are strongly consistent Queries that follow `LastEvaluatedKey` to the end, in seq
//!   order, and give back the stored event byte for byte as it was appended: every string,
//!   integer, map and list round-trips through serde_dynamo, and floats, which DynamoDB would
//!   hand back as bare numbers (`1.0` as `1`, which changes the event's canonical bytes and so its
//!   hash), are kept exactly as JSON text in `floats`, keyed by JSON pointer, and put back on load.
//! - `deploys` reads the index newest first and breaks ties of one millisecond by deploy id,
//!   as the memory store does.
//! - Throttling and transient errors of single requests (loads, index queries, the transaction's
//!   own HTTP attempts) are retried by the SDK's standard retry strategy, which
//!   [`DynamoStore::from_sdk_config`] sets to [`SDK_ATTEMPTS_MAX`] attempts with exponential
//!   backoff and jitter; `TransactWriteItems` carries the SDK's automatic `ClientRequestToken`,
//!   the same on every attempt, so a retry of a write that landed but whose answer was lost is
//!   idempotent on AWS (not on moto, which ignores the token).
//!
//! What it deliberately does not do:
//! - Update or delete an event: the only writes to an event item are conditional Puts of new seqs.
//!   (Tests tamper with items through the raw client to show that the hash chain notices.)
//! - Check the hash chain: loading returns what is stored, and `codec::verify_chain` judges it.
//! - Accept more than [`TRANSACT_ITEMS_MAX`] items in one append: that is refused with a
//!   [`StoreError`] (the runner appends a handful of events at a time).
//! - Store floats DynamoDB cannot hold: numbers beyond its range (magnitudes outside
//!   1e-130..1e126) make the append fail with a `StoreError`.

use crate::codec::{Snapshot, StoredEvent};
use crate::ports::{Append, AppendError, EventStore, IndexEntry, LockKey, LockOp, StoreError, Tail};
use crate::workflow::event::Freeze;
use crate::workflow::Timestamp;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, ConditionCheck, Delete, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// DynamoDB's limit on the items of one transaction.
pub const TRANSACT_ITEMS_MAX: usize = 100;
/// Attempts of one request the SDK makes (with backoff) before a throttled or failing request
/// becomes a [`StoreError`], when the client comes from [`DynamoStore::from_sdk_config`].
pub const SDK_ATTEMPTS_MAX: u32 = 5;
/// Attempts of one append cancelled for a transient reason before it becomes a [`StoreError`].
pub const APPEND_ATTEMPTS_MAX: u32 = 5;
/// How long [`create_table`] waits for a new table to become ACTIVE.
pub const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(30);

/// Index sort keys are `created_at_ms * INDEX_SPREAD + (a number below INDEX_SPREAD)`.
const INDEX_SPREAD: u128 = 1_000_000;

/// Attribute names.
const PK: &str = "pk";
const SK: &str = "sk";
const TYPE: &str = "type";
const VERSION: &str = "v";
const AT: &str = "at";
const BODY: &str = "body";
const FLOATS: &str = "floats";
const HASH: &str = "hash";
/// The notification cursor's attribute: the last seq whose transition was published.
const NOTIFIED_SEQ: &str = "seq";
const STATE_HASH: &str = "state_hash";
const OWNER: &str = "owner";
const LEASE_UNTIL: &str = "lease_until";
const SINCE: &str = "since";
const DEPLOY: &str = "deploy";
const CREATED_AT: &str = "created_at";
const SCHEMA: &str = "schema";
/// A freeze's attributes (`since` is shared with the lock).
const FROZEN_BY: &str = "by";
const FROZEN_REASON: &str = "reason";
/// Set on lock items only: the key of the sparse `locks` index the sweeper queries.
const HELD: &str = "held";
const HELD_VALUE: &str = "lock";
pub const LOCKS_INDEX: &str = "locks";
const STATE: &str = "state";
/// A bound on the pages one load follows: at 1 MB a page, far beyond any history (and any
/// snapshot's tail), so a misbehaving API cannot keep a load going forever.
const PAGES_MAX: usize = 10_000;

/// The event store on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub client: Client,
    pub table: String,
}

/// The partition key of a deploy's events.
pub fn event_pk(deploy: &str) -> String {
    format!("deploy#{deploy}")
}

/// The partition key of a project-config's lock item (whose sort key is 0).
/// Snapshots live beside a deploy's events, in a partition of their own.
pub fn snapshot_pk(deploy: &str) -> String {
    format!("snap#{deploy}")
}

fn snapshot_from_item(item: &HashMap<String, AttributeValue>) -> Result<Snapshot, String> {
    Ok(Snapshot {
        seq: number(item, SK)?,
        hash: string(item, HASH)?.to_string(),
        schema: number(item, SCHEMA)?,
        state: serde_json::from_str(string(item, STATE)?).map_err(|e| e.to_string())?,
    })
}

/// The project-config of a lock item's `pk` (`lock#<project>#<config>`; neither holds `#`).
fn lock_key_of(pk: &str) -> Option<LockKey> {
    let (project, config) = pk.strip_prefix("lock#")?.split_once('#')?;
    Some(LockKey { project: project.to_string(), config: config.to_string() })
}

pub fn lock_pk(key: &LockKey) -> String {
    format!("lock#{}#{}", key.project, key.config)
}

/// The sort key of a deploy's watch note (see `LockOp::Watch`) in its lock's partition (the lock itself is at 0): 1 plus 63
/// bits of the deploy id's sha256, so notes of different deploys never share an item. The notes
/// carry `held` too, so the sweeper's query of the `locks` index finds holders and deploys yet to take their lock alike.
pub fn watch_sk(owner: &str) -> u64 {
    let digest = Sha256::digest(owner.as_bytes());
    1 + (u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes")) >> 1)
}

/// The partition key of a project-config's deploy freeze (beside its lock).
pub fn freeze_pk(key: &LockKey) -> String {
    format!("freeze#{}#{}", key.project, key.config)
}

fn freeze_from_item(item: &HashMap<String, AttributeValue>) -> Result<Freeze, String> {
    Ok(Freeze {
        by: string(item, FROZEN_BY)?.to_string(),
        reason: string(item, FROZEN_REASON)?.to_string(),
        since: Timestamp(number(item, SINCE)?),
    })
}

/// The partition key of a project-config's index of deploys.
pub fn index_pk(key: &LockKey) -> String {
    format!("index#{}#{}", key.project, key.config)
}

/// The sort key of an index entry: ordered by creation time, spread within a millisecond by the
/// deploy id's sha256.
pub fn index_sk(entry: &IndexEntry) -> u128 {
    let digest = Sha256::digest(entry.deploy.as_bytes());
    let spread = u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"));
    u128::from(entry.created_at.as_ms()) * INDEX_SPREAD + u128::from(spread) % INDEX_SPREAD
}

/// The item an event is stored as. Fails only for a body DynamoDB cannot hold.
pub fn event_item(deploy: &str, event: &StoredEvent) -> Result<HashMap<String, AttributeValue>, String> {
    let body: AttributeValue = serde_dynamo::to_attribute_value(&event.body).map_err(|e| format!("seq {}: body: {e}", event.seq))?;
    let mut item = HashMap::from([
        (PK.to_string(), AttributeValue::S(event_pk(deploy))),
        (SK.to_string(), AttributeValue::N(event.seq.to_string())),
        (TYPE.to_string(), AttributeValue::S(event.kind.clone())),
        (VERSION.to_string(), AttributeValue::N(event.v.to_string())),
        (AT.to_string(), AttributeValue::S(event.at.to_string())),
        (BODY.to_string(), body),
        (STATE_HASH.to_string(), AttributeValue::S(event.state_hash.clone())),
        (HASH.to_string(), AttributeValue::S(event.hash.clone())),
    ]);
    let mut floats = HashMap::new();
    collect_floats(&event.body, &mut String::new(), &mut floats);
    if !floats.is_empty() {
        item.insert(FLOATS.to_string(), AttributeValue::M(floats));
    }
    Ok(item)
}

/// Reads an event item back into the event that was appended.
pub fn event_from_item(item: &HashMap<String, AttributeValue>) -> Result<StoredEvent, String> {
    let seq: u64 = number(item, SK)?;
    let error = |message: String| format!("seq {seq}: {message}");
    let mut body: Value = serde_dynamo::from_attribute_value(item.get(BODY).cloned().ok_or_else(|| error(format!("no `{BODY}`")))?)
        .map_err(|e| error(format!("`{BODY}`: {e}")))?;
    if let Some(floats) = item.get(FLOATS) {
        let floats = floats.as_m().map_err(|_| error(format!("`{FLOATS}` is not a map")))?;
        for (pointer, text) in floats {
            let text = text.as_s().map_err(|_| error(format!("`{FLOATS}` {pointer} is not a string")))?;
            let number: Value = serde_json::from_str(text).map_err(|e| error(format!("`{FLOATS}` {pointer}: {e}")))?;
            // A pointer to nothing is left alone: the body then differs from the appended one,
            // and the hash chain says so.
            if let Some(slot) = body.pointer_mut(pointer).filter(|slot| slot.is_number()) {
                *slot = number;
            }
        }
    }
    let at = Timestamp::parse_rfc3339(string(item, AT).map_err(&error)?).map_err(&error)?;
    Ok(StoredEvent {
        seq,
        at,
        kind: string(item, TYPE).map_err(&error)?.to_string(),
        v: number(item, VERSION).map_err(&error)?,
        body,
        state_hash: string(item, STATE_HASH).map_err(&error)?.to_string(),
        hash: string(item, HASH).map_err(&error)?.to_string(),
    })
}

/// Records the exact JSON text of every float in `value`, keyed by its JSON pointer (RFC 6901).
fn collect_floats(value: &Value, pointer: &mut String, out: &mut HashMap<String, AttributeValue>) {
    match value {
        Value::Number(n) if n.is_f64() => {
            out.insert(pointer.clone(), AttributeValue::S(n.to_string()));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                collect_floats(item, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                collect_floats(item, pointer, out);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn string<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str, String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        Some(_) => Err(format!("`{name}` is not a string")),
        None => Err(format!("no `{name}`")),
    }
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Result<T, String> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| format!("`{name}` is {n}, not a number of the expected kind")),
        Some(_) => Err(format!("`{name}` is not a number")),
        None => Err(format!("no `{name}`")),
    }
}

/// What one item of an append's transaction is, to read its cancellation reason.
#[derive(Clone, Debug)]
enum Role {
    /// The check that the event before the first appended one exists.
    Previous(u64),
    Event(u64),
    Lock(LockKey),
    /// A watch note: written and deleted without conditions, so it never cancels an append.
    Waiter,
    /// A snapshot's seq is that of an appended event, so it can only collide when the event does.
    Snapshot,
    Index,
}

/// How a cancelled append ends.
enum Cancelled {
    Final(AppendError),
    /// Nothing was written and trying again may succeed.
    Transient(String),
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    /// A store whose client retries throttled and failing requests [`SDK_ATTEMPTS_MAX`] times.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        let config = aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS_MAX))
            .build();
        DynamoStore::new(Client::from_conf(config), table)
    }

    /// Deletes the note that `owner` has not taken the lock of `key` yet; gone already is no error.
    fn delete_watch(&self, key: &LockKey, owner: &str) -> Result<TransactWriteItem, String> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(lock_pk(key)))
            .key(SK, AttributeValue::N(watch_sk(owner).to_string()))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn transaction(&self, append: &Append) -> Result<(Vec<TransactWriteItem>, Vec<Role>), String> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| e.to_string();
        let mut items = Vec::new();
        let mut roles = Vec::new();
        if let Some(first) = append.events.first() {
            if first.seq > 1 {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .key(PK, AttributeValue::S(event_pk(&append.deploy)))
                    .key(SK, AttributeValue::N((first.seq - 1).to_string()))
                    .condition_expression("attribute_exists(#sk)")
                    .expression_attribute_names("#sk", SK)
                    .build()
                    .map_err(built)?;
                items.push(TransactWriteItem::builder().condition_check(check).build());
                roles.push(Role::Previous(first.seq - 1));
            }
        }
        for event in &append.events {
            items.push(self.put_new(event_item(&append.deploy, event)?)?);
            roles.push(Role::Event(event.seq));
        }
        match &append.lock {
            Some(LockOp::Watch { key, owner }) => {
                let put = Put::builder()
                    .table_name(&self.table)
                    .item(PK, AttributeValue::S(lock_pk(key)))
                    .item(SK, AttributeValue::N(watch_sk(owner).to_string()))
                    .item(OWNER, AttributeValue::S(owner.clone()))
                    .item(HELD, AttributeValue::S(HELD_VALUE.into()))
                    .build()
                    .map_err(built)?;
                items.push(TransactWriteItem::builder().put(put).build());
                roles.push(Role::Waiter);
            }
            Some(LockOp::Unwatch { key, owner }) => {
                items.push(self.delete_watch(key, owner)?);
                roles.push(Role::Waiter);
            }
            Some(LockOp::Acquire { key, owner, lease_until, now }) => {
                // The note goes once the lock is taken: the lock item takes over the watch.
                items.push(self.delete_watch(key, owner)?);
                roles.push(Role::Waiter);
                let put = Put::builder()
                    .table_name(&self.table)
                    .item(PK, AttributeValue::S(lock_pk(key)))
                    .item(SK, AttributeValue::N("0".into()))
                    .item(OWNER, AttributeValue::S(owner.clone()))
                    .item(HELD, AttributeValue::S(HELD_VALUE.into()))
                    .item(LEASE_UNTIL, AttributeValue::N(lease_until.as_ms().to_string()))
                    .item(SINCE, AttributeValue::N(now.as_ms().to_string()))
                    .condition_expression("attribute_not_exists(#pk) OR #lease < :now OR #owner = :me")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#lease", LEASE_UNTIL)
                    .expression_attribute_names("#owner", OWNER)
                    .expression_attribute_values(":now", AttributeValue::N(now.as_ms().to_string()))
                    .expression_attribute_values(":me", AttributeValue::S(owner.clone()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()
                    .map_err(built)?;
                items.push(TransactWriteItem::builder().put(put).build());
                roles.push(Role::Lock(key.clone()));
            }
            Some(LockOp::Release { key, owner }) => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, AttributeValue::S(lock_pk(key)))
                    .key(SK, AttributeValue::N("0".into()))
                    .condition_expression("attribute_not_exists(#pk) OR #owner = :me")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#owner", OWNER)
                    .expression_attribute_values(":me", AttributeValue::S(owner.clone()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()
                    .map_err(built)?;
                items.push(TransactWriteItem::builder().delete(delete).build());
                roles.push(Role::Lock(key.clone()));
            }
            None => {}
        }
        if let Some(snapshot) = &append.snapshot {
            items.push(self.put_new(HashMap::from([
                (PK.to_string(), AttributeValue::S(snapshot_pk(&append.deploy))),
                (SK.to_string(), AttributeValue::N(snapshot.seq.to_string())),
                (HASH.to_string(), AttributeValue::S(snapshot.hash.clone())),
                (SCHEMA.to_string(), AttributeValue::N(snapshot.schema.to_string())),
                // JSON text, not a map: a cache has no need of DynamoDB's number model.
                (STATE.to_string(), AttributeValue::S(snapshot.state.to_string())),
            ]))?);
            roles.push(Role::Snapshot);
        }
        if let Some(entry) = &append.index {
            items.push(self.put_new(HashMap::from([
                (PK.to_string(), AttributeValue::S(index_pk(&entry.key))),
                (SK.to_string(), AttributeValue::N(index_sk(entry).to_string())),
                (DEPLOY.to_string(), AttributeValue::S(entry.deploy.clone())),
                (CREATED_AT.to_string(), AttributeValue::S(entry.created_at.to_string())),
            ]))?);
            roles.push(Role::Index);
        }
        Ok((items, roles))
    }

    /// A put of a new item: it fails the transaction if an item with its keys exists. Every item
    /// skald adds to the log is written this way; none is ever overwritten.
    fn put_new(&self, item: HashMap<String, AttributeValue>) -> Result<TransactWriteItem, String> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#sk)")
            .expression_attribute_names("#sk", SK)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Reads a cancellation the way the memory store would have refused the append.
    async fn cancelled(&self, append: &Append, reasons: &[CancellationReason], roles: &[Role]) -> Cancelled {
        let failed = |reason: &CancellationReason| reason.code() == Some("ConditionalCheckFailed");
        let paired = || roles.iter().zip(reasons);
        if let Some((Role::Event(seq), _)) = paired().find(|(role, reason)| matches!(role, Role::Event(_)) && failed(reason)) {
            return Cancelled::Final(AppendError::Conflict { seq: *seq });
        }
        if let Some((Role::Lock(key), reason)) = paired().find(|(role, reason)| matches!(role, Role::Lock(_)) && failed(reason)) {
            let owner = reason.item().and_then(|item| item.get(OWNER)).and_then(|owner| owner.as_s().ok()).cloned();
            let owner = match owner {
                Some(owner) => Some(owner),
                None => match self.lock_owner(key).await {
                    Ok(owner) => owner,
                    Err(e) => return Cancelled::Transient(e.0),
                },
            };
            return match owner {
                Some(holder) => Cancelled::Final(AppendError::LockHeld { holder }),
                None => Cancelled::Transient(format!("the lock {} changed while appending", lock_pk(key))),
            };
        }
        let codes: Vec<String> = paired()
            .filter(|(_, r)| r.code().is_some_and(|c| c != "None"))
            .map(|(role, r)| format!("{role:?}: {}", describe_reason(r)))
            .collect();
        let transient = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];
        if reasons.iter().any(|r| r.code().is_some_and(|c| transient.contains(&c))) {
            return Cancelled::Transient(format!("transaction cancelled ({})", codes.join(", ")));
        }
        if let Some((Role::Previous(seq), _)) = paired().find(|(role, reason)| matches!(role, Role::Previous(_)) && failed(reason)) {
            return Cancelled::Final(AppendError::Store(StoreError(format!(
                "appending to {} would leave a gap: seq {seq} is not stored",
                append.deploy
            ))));
        }
        if paired().any(|(role, reason)| matches!(role, Role::Index) && failed(reason)) {
            return Cancelled::Final(AppendError::Store(StoreError(format!(
                "the index entry of {} collides with another deploy's; append again",
                append.deploy
            ))));
        }
        Cancelled::Final(AppendError::Store(StoreError(format!("transaction cancelled ({})", codes.join(", ")))))
    }

    /// The current holder of a lock, read consistently.
    pub async fn lock_owner(&self, key: &LockKey) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(lock_pk(key)))
            .key(SK, AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError(format!("reading lock {}: {}", lock_pk(key), DisplayErrorContext(&e))))?;
        Ok(output.item().and_then(|item| item.get(OWNER)).and_then(|owner| owner.as_s().ok()).cloned())
    }

    async fn append_once(&self, append: &Append, items: Vec<TransactWriteItem>, roles: &[Role]) -> Result<(), Cancelled> {
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    Err(self.cancelled(append, cancelled.cancellation_reasons(), roles).await)
                }
                _ => Err(Cancelled::Final(AppendError::Store(StoreError(format!(
                    "appending to {}: {}",
                    append.deploy,
                    DisplayErrorContext(&error)
                ))))),
            },
        }
    }

    async fn append_events(&self, append: Append) -> Result<(), AppendError> {
        if let Some(first) = append.events.first() {
            assert!(first.seq >= 1, "seqs start at 1");
            for (offset, event) in append.events.iter().enumerate() {
                assert_eq!(event.seq, first.seq + offset as u64, "append would leave a gap in {}", append.deploy);
            }
        }
        let (items, roles) =
            self.transaction(&append).map_err(|e| AppendError::Store(StoreError(format!("appending to {}: {e}", append.deploy))))?;
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > TRANSACT_ITEMS_MAX {
            return Err(AppendError::Store(StoreError(format!(
                "an append of {} items to {} is over DynamoDB's {TRANSACT_ITEMS_MAX} items per transaction",
                items.len(),
                append.deploy
            ))));
        }
        let mut attempt = 1;
        loop {
            match self.append_once(&append, items.clone(), &roles).await {
                Ok(()) => return Ok(()),
                Err(Cancelled::Final(error)) => return Err(error),
                Err(Cancelled::Transient(why)) if attempt >= APPEND_ATTEMPTS_MAX => {
                    return Err(AppendError::Store(StoreError(format!("appending to {} after {attempt} attempts: {why}", append.deploy))))
                }
                Err(Cancelled::Transient(_)) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// The events of `deploy` after seq `after`, in order, following every page.
    async fn load_events(&self, deploy: String, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..PAGES_MAX {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(event_pk(&deploy)))
                .expression_attribute_values(":after", AttributeValue::N(after.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError(format!("loading {deploy}: {}", DisplayErrorContext(&e))))?;
            for item in page.items() {
                let event = event_from_item(item).map_err(|e| StoreError(format!("loading {deploy}: {e}")))?;
                if events.last().is_some_and(|last| last.seq >= event.seq) {
                    return Err(StoreError(format!("loading {deploy}: seq {} came after seq {}", event.seq, events[events.len() - 1].seq)));
                }
                events.push(event);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(events),
            }
        }
        Err(StoreError(format!("loading {deploy}: more than {PAGES_MAX} pages")))
    }

    /// The latest snapshot of `deploy`, read consistently. One that cannot be read is reported as
    /// none: snapshots are a cache, and the runner then folds from the start.
    async fn latest_snapshot(&self, deploy: &str) -> Result<Option<Snapshot>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(snapshot_pk(deploy)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError(format!("loading the snapshot of {deploy}: {}", DisplayErrorContext(&e))))?;
        Ok(page.items().first().and_then(|item| snapshot_from_item(item).ok()))
    }

    /// Every lock item, from the sparse `locks` index.
    async fn locks_held(&self) -> Result<Vec<(LockKey, String)>, StoreError> {
        let mut held = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..PAGES_MAX {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(LOCKS_INDEX)
                .key_condition_expression("#held = :lock")
                .expression_attribute_names("#held", HELD)
                .expression_attribute_values(":lock", AttributeValue::S(HELD_VALUE.into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError(format!("listing locks: {}", DisplayErrorContext(&e))))?;
            for item in page.items() {
                let key = string(item, PK).ok().and_then(lock_key_of);
                if let (Some(key), Ok(owner)) = (key, string(item, OWNER)) {
                    held.push((key, owner.to_string()));
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(held),
            }
        }
        Err(StoreError(format!("listing locks: more than {PAGES_MAX} pages")))
    }

    async fn load_tail_of(&self, deploy: String) -> Result<Tail, StoreError> {
        let snapshot = self.latest_snapshot(&deploy).await?;
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        let events = self.load_events(deploy, after).await?;
        Ok(Tail { snapshot, events })
    }

    async fn index_entries(&self, key: LockKey, limit: usize) -> Result<Vec<IndexEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let error = |message: String| StoreError(format!("listing deploys of {}: {message}", index_pk(&key)));
        let mut entries: Vec<IndexEntry> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        // Page until `limit` entries are in hand and the next one is older than the last kept:
        // entries of the same millisecond are then all here to be ordered by deploy id.
        let page_size = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX).min(1000);
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(index_pk(&key)))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| error(DisplayErrorContext(&e).to_string()))?;
            for item in page.items() {
                let created_at = Timestamp::parse_rfc3339(string(item, CREATED_AT).map_err(error)?).map_err(error)?;
                entries.push(IndexEntry { key: key.clone(), deploy: string(item, DEPLOY).map_err(error)?.to_string(), created_at });
            }
            let complete = entries.len() > limit && entries[limit].created_at < entries[limit - 1].created_at;
            match page.last_evaluated_key() {
                Some(next) if !next.is_empty() && !complete => start = Some(next.clone()),
                _ => break,
            }
        }
        entries.sort_by(|a, b| (b.created_at, &b.deploy).cmp(&(a.created_at, &a.deploy)));
        entries.truncate(limit);
        Ok(entries)
    }
}

impl DynamoStore {
    /// The deploy's notification cursor: one small item beside its events (never an event).
    async fn notification_cursor(&self, deploy: String) -> Result<u64, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(notified_pk(&deploy)))
            .key(SK, AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError(format!("reading {}: {}", notified_pk(&deploy), DisplayErrorContext(&e))))?;
        match read.item() {
            Some(item) => number(item, NOTIFIED_SEQ).map_err(StoreError),
            None => Ok(0),
        }
    }

    /// Moves the cursor forward only: the condition keeps a slower worker from moving it back.
    async fn advance_notification_cursor(&self, deploy: String, seq: u64) -> Result<(), StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(notified_pk(&deploy)))
            .item(SK, AttributeValue::N("0".into()))
            .item(NOTIFIED_SEQ, AttributeValue::N(seq.to_string()))
            .condition_expression("attribute_not_exists(#pk) OR #seq < :seq")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#seq", NOTIFIED_SEQ)
            .expression_attribute_values(":seq", AttributeValue::N(seq.to_string()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(StoreError(format!("writing {}: {}", notified_pk(&deploy), DisplayErrorContext(&e)))),
        }
    }
}

impl DynamoStore {
    /// The project-config's freeze, read consistently: a deploy requested right after
    /// `skald freeze` returned is refused.
    async fn read_freeze(&self, key: LockKey) -> Result<Option<Freeze>, StoreError> {
        let pk = freeze_pk(&key);
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.clone()))
            .key(SK, AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError(format!("reading {pk}: {}", DisplayErrorContext(&e))))?;
        read.item().map(freeze_from_item).transpose().map_err(|e| StoreError(format!("{pk}: {e}")))
    }

    /// Freezes the project-config unless it is frozen already: `Ok(Err(standing))` is the freeze
    /// that stands (a conditional put, so two people freezing at once do not overwrite each other).
    pub async fn put_freeze(&self, key: &LockKey, freeze: &Freeze) -> Result<Result<(), Freeze>, StoreError> {
        let pk = freeze_pk(key);
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(freeze_pk(key)))
            .item(SK, AttributeValue::N("0".into()))
            .item(FROZEN_BY, AttributeValue::S(freeze.by.clone()))
            .item(FROZEN_REASON, AttributeValue::S(freeze.reason.clone()))
            .item(SINCE, AttributeValue::N(freeze.since.as_ms().to_string()))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match written {
            Ok(_) => Ok(Ok(())),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                match self.read_freeze(key.clone()).await? {
                    Some(standing) => Ok(Err(standing)),
                    None => Err(StoreError(format!("writing {pk}: a freeze stood and was lifted meanwhile; try again"))),
                }
            }
            Err(e) => Err(StoreError(format!("writing {pk}: {}", DisplayErrorContext(&e)))),
        }
    }

    /// Lifts the project-config's freeze; the freeze that stood, if any.
    pub async fn delete_freeze(&self, key: &LockKey) -> Result<Option<Freeze>, StoreError> {
        let pk = freeze_pk(key);
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(freeze_pk(key)))
            .key(SK, AttributeValue::N("0".into()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| StoreError(format!("deleting {pk}: {}", DisplayErrorContext(&e))))?;
        deleted.attributes().filter(|item| !item.is_empty()).map(freeze_from_item).transpose().map_err(|e| StoreError(format!("{pk}: {e}")))
    }
}

/// The partition key of a deploy's notification cursor.
pub fn notified_pk(deploy: &str) -> String {
    format!("notified#{deploy}")
}

fn describe_reason(reason: &CancellationReason) -> String {
    match reason.message() {
        Some(message) => format!("{} ({message})", reason.code().unwrap_or("?")),
        None => reason.code().unwrap_or("?").to_string(),
    }
}

/// 50 ms, 100 ms, 200 ms, … with up to half again of jitter, so racing workers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 50u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(base + u64::from(nanos) % (base / 2 + 1))
}

impl EventStore for DynamoStore {
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        self.load_events(deploy.to_string(), 0)
    }

    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send {
        self.load_tail_of(deploy.to_string())
    }

    fn append(&self, append: Append) -> impl Future<Output = Result<(), AppendError>> + Send {
        self.append_events(append)
    }

    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send {
        self.locks_held()
    }

    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send {
        self.index_entries(key.clone(), limit)
    }

    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send {
        self.read_freeze(key.clone())
    }

    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.notification_cursor(deploy.to_string())
    }

    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.advance_notification_cursor(deploy.to_string(), seq)
    }
}

/// Creates the events table (on-demand billing) unless it exists, and waits until it is ACTIVE,
/// at most [`TABLE_ACTIVE_WAIT`]. For local runs and tests; on AWS the table comes from infra/.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let error = |message: String| StoreError(format!("creating table {name}: {message}"));
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(|e| error(e.to_string()))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(|e| error(e.to_string()))
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SK, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(HELD, ScalarAttributeType::S)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(LOCKS_INDEX)
                .key_schema(key(HELD, KeyType::Hash)?)
                .key_schema(key(PK, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(|e| error(e.to_string()))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if matches!(e.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {}
        Err(e) => return Err(error(DisplayErrorContext(&e).to_string())),
    }
    let deadline = std::time::Instant::now() + TABLE_ACTIVE_WAIT;
    loop {
        let described = client.describe_table().table_name(name).send().await;
        let status = match &described {
            Ok(output) => output.table().and_then(|t| t.table_status()).cloned(),
            // Just created: DescribeTable may not see it yet.
            Err(e) if e.code() == Some("ResourceNotFoundException") => None,
            Err(e) => return Err(error(DisplayErrorContext(e).to_string())),
        };
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(error(format!("not ACTIVE after {} s (status {status:?})", TABLE_ACTIVE_WAIT.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(body: Value) -> StoredEvent {
        StoredEvent {
            seq: 3,
            at: Timestamp(1_795_477_116_123),
            kind: "DeployRequested".into(),
            v: 1,
            body,
            state_hash: "cd".into(),
            hash: "ab".into(),
        }
    }

    /// Given a body with floats, integers, strings, empty maps and lists, when it is written as an
    /// item and the item read back as DynamoDB would return its numbers, then the event is identical.
    #[test]
    fn items_round_trip_floats_exactly() {
        let event = stored(json!({
            "spread": 1.0, "threshold": 0.25, "big": 1e20, "negative": -0.0, "count": 3, "max": u64::MAX, "min": i64::MIN,
            "a/b~c": [1.5, {"x": 2.0}], "empty": {}, "none": [], "text": "", "null": null, "yes": true,
        }));
        let mut item = event_item("d", &event).unwrap();
        // DynamoDB normalises numbers: 1.0 is stored (and returned) as 1.
        let AttributeValue::M(body) = item.get_mut(BODY).unwrap() else { panic!("body is a map") };
        body.insert("spread".into(), AttributeValue::N("1".into()));
        assert_eq!(event_from_item(&item).unwrap(), event);
        let AttributeValue::M(floats) = &item[FLOATS] else { panic!("floats is a map") };
        let mut pointers: Vec<&String> = floats.keys().collect();
        pointers.sort();
        assert_eq!(pointers, ["/a~1b~0c/0", "/a~1b~0c/1/x", "/big", "/negative", "/spread", "/threshold"]);
    }

    /// Given a body without floats, then the item has no `floats` attribute.
    #[test]
    fn items_without_floats_have_no_floats_attribute() {
        let item = event_item("d", &stored(json!({"n": 1, "s": "x"}))).unwrap();
        assert!(!item.contains_key(FLOATS));
        assert_eq!(item[PK], AttributeValue::S("deploy#d".into()));
    }

    /// Index sort keys order by creation time first, whatever the deploy id.
    #[test]
    fn index_keys_sort_by_creation_time() {
        let key = LockKey { project: "p".into(), config: "c".into() };
        let entry = |deploy: &str, ms: u64| IndexEntry { key: key.clone(), deploy: deploy.into(), created_at: Timestamp(ms) };
        assert!(index_sk(&entry("zzz", 1_000)) < index_sk(&entry("aaa", 1_001)));
        assert_ne!(index_sk(&entry("a", 1_000)), index_sk(&entry("b", 1_000)));
        assert!(index_sk(&entry("a", 253_402_300_799_999)) > index_sk(&entry("a", 1_000)));
    }
}
