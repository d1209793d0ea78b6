//! In-memory event store, queue and clock, with the semantics the DynamoDB and SQS adapters have:
//! conditional appends per seq, lock items written atomically with their events, delayed
//! delivery, visibility timeouts and redelivery of messages that were not deleted.

use crate::codec::{Snapshot, StoredEvent};
use crate::message::Message;
use crate::ports::{Append, AppendError, Clock, EventStore, IndexEntry, LockKey, LockOp, Queue, QueueError, StoreError, Tail};
use crate::workflow::event::Freeze;
use crate::workflow::Timestamp;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A clock that moves only when told to: simulations run hours of deploy in milliseconds.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now_ms: AtomicU64,
}

impl VirtualClock {
    pub fn starting_at(start: Timestamp) -> Arc<VirtualClock> {
        Arc::new(VirtualClock { now_ms: AtomicU64::new(start.as_ms()) })
    }

    /// Moves the clock forward to `to`; never backwards.
    pub fn advance_to(&self, to: Timestamp) {
        self.now_ms.fetch_max(to.as_ms(), Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(Ordering::SeqCst))
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The wall clock, for real runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970");
        Timestamp(since_epoch.as_millis() as u64)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockItem {
    pub owner: String,
    pub lease_until: Timestamp,
}

#[derive(Debug, Default)]
struct Tables {
    events: BTreeMap<String, Vec<StoredEvent>>,
    snapshots: BTreeMap<String, Vec<Snapshot>>,
    locks: BTreeMap<LockKey, LockItem>,
    /// Deploys that have not taken their lock yet, by deploy (see `LockOp::Watch`).
    watches: BTreeMap<String, LockKey>,
    index: BTreeMap<LockKey, Vec<IndexEntry>>,
    notified: BTreeMap<String, u64>,
    /// Deploy freezes by project-config (`skald freeze`), beside the locks.
    freezes: BTreeMap<LockKey, Freeze>,
}

/// Counts of what the store was asked to do: the numbers that decide a real table's cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub loads: u64,
    /// Events (and snapshots) returned by loads: a real table's read cost.
    pub events_read: u64,
    /// The most any one load returned.
    pub events_read_max: u64,
    pub appends: u64,
    pub events_written: u64,
    pub conflicts: u64,
}

/// A failure the store injects into one append, as a flaky network or DynamoDB would cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendFault {
    /// The write is refused: nothing lands.
    Refuse,
    /// The write lands, but the caller is told it failed (a timeout after the commit).
    LandThenFail,
    /// The write lands as another worker's that got there first (and may then die): the caller
    /// finds its seq taken, a conflict.
    RaceLost,
}

#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    stats: Arc<Mutex<StoreStats>>,
    faults: Arc<Mutex<std::collections::VecDeque<Option<AppendFault>>>>,
    /// Faults for the next append holding an event of a type: (type, fault), used once each.
    kind_faults: Arc<Mutex<Vec<(String, AppendFault)>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn lock_item(&self, key: &LockKey) -> Option<LockItem> {
        self.tables.lock().unwrap().locks.get(key).cloned()
    }

    /// Freezes the project-config unless it is frozen already; `Err` is the freeze that stands.
    /// (The DynamoDB store's `put_freeze` does the same with a conditional put.)
    pub fn put_freeze(&self, key: &LockKey, freeze: Freeze) -> Result<(), Freeze> {
        let mut tables = self.tables.lock().unwrap();
        match tables.freezes.get(key) {
            Some(standing) => Err(standing.clone()),
            None => {
                tables.freezes.insert(key.clone(), freeze);
                Ok(())
            }
        }
    }

    /// Lifts the project-config's freeze; the freeze that stood, if any.
    pub fn delete_freeze(&self, key: &LockKey) -> Option<Freeze> {
        self.tables.lock().unwrap().freezes.remove(key)
    }

    pub fn locks(&self) -> BTreeMap<LockKey, LockItem> {
        self.tables.lock().unwrap().locks.clone()
    }

    /// The deploys noted as not having taken their lock yet, with the lock's key.
    pub fn watch_notes(&self) -> BTreeMap<String, LockKey> {
        self.tables.lock().unwrap().watches.clone()
    }

    pub fn deploy_ids(&self) -> Vec<String> {
        self.tables.lock().unwrap().events.keys().cloned().collect()
    }

    pub fn history(&self, deploy: &str) -> Vec<StoredEvent> {
        self.tables.lock().unwrap().events.get(deploy).cloned().unwrap_or_default()
    }

    /// The events of a deploy after `seq`, without counting a load: what an observer outside the
    /// runner (the simulator's invariant checks) reads, so the store's statistics stay the runner's.
    pub fn events_after(&self, deploy: &str, seq: u64) -> Vec<StoredEvent> {
        let tables = self.tables.lock().unwrap();
        let history = tables.events.get(deploy).map(Vec::as_slice).unwrap_or(&[]);
        // Seqs are gapless from 1, so event `seq + 1` sits at index `seq`.
        history.get(seq as usize..).map(<[StoredEvent]>::to_vec).unwrap_or_default()
    }

    /// Scripts the next appends, in order: `None` lets one through, `Some(fault)` fails one.
    pub fn inject(&self, faults: &[Option<AppendFault>]) {
        self.faults.lock().unwrap().extend(faults);
    }

    /// Fails the next append that holds an event of type `kind` (once): a crash between an
    /// effect and the record of its outcome, aimed at one step of a deploy.
    pub fn inject_for(&self, kind: &str, fault: AppendFault) {
        self.kind_faults.lock().unwrap().push((kind.to_string(), fault));
    }

    pub fn stats(&self) -> StoreStats {
        *self.stats.lock().unwrap()
    }

    fn count_load(&self, items: usize) {
        let mut stats = self.stats.lock().unwrap();
        stats.loads += 1;
        stats.events_read += items as u64;
        stats.events_read_max = stats.events_read_max.max(items as u64);
    }

    /// Overwrites a stored event in place: what an attacker with table access could do.
    /// Only tests use it; the store's own API never changes an event.
    pub fn tamper(&self, deploy: &str, seq: u64, change: impl FnOnce(&mut StoredEvent)) {
        let mut tables = self.tables.lock().unwrap();
        let event = tables.events.get_mut(deploy).and_then(|h| h.iter_mut().find(|e| e.seq == seq)).expect("no such event");
        change(event);
    }

    fn try_append(tables: &mut Tables, append: &Append) -> Result<(), AppendError> {
        let history = tables.events.get(&append.deploy).map(Vec::as_slice).unwrap_or(&[]);
        let next = history.len() as u64 + 1;
        for (offset, event) in append.events.iter().enumerate() {
            let seq = next + offset as u64;
            if event.seq < seq {
                return Err(AppendError::Conflict { seq: event.seq });
            }
            assert_eq!(event.seq, seq, "append would leave a gap in {}", append.deploy);
        }
        match &append.lock {
            Some(LockOp::Acquire { key, owner, now, .. }) => match tables.locks.get(key) {
                Some(item) if item.owner != *owner && item.lease_until >= *now => {
                    return Err(AppendError::LockHeld { holder: item.owner.clone() })
                }
                _ => {}
            },
            Some(LockOp::Release { key, owner }) => match tables.locks.get(key) {
                Some(item) if item.owner != *owner => return Err(AppendError::LockHeld { holder: item.owner.clone() }),
                _ => {}
            },
            Some(LockOp::Watch { .. } | LockOp::Unwatch { .. }) | None => {}
        }
        Ok(())
    }
}

impl EventStore for MemoryStore {
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        let history = self.history(deploy);
        self.count_load(history.len());
        async move { Ok(history) }
    }

    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send {
        let tail = {
            let tables = self.tables.lock().unwrap();
            let snapshot = tables.snapshots.get(deploy).and_then(|s| s.last()).cloned();
            let after = snapshot.as_ref().map_or(0, |s| s.seq);
            let events = tables.events.get(deploy).map(|h| h.iter().filter(|e| e.seq > after).cloned().collect()).unwrap_or_default();
            Tail { snapshot, events }
        };
        self.count_load(tail.events.len() + usize::from(tail.snapshot.is_some()));
        async move { Ok(tail) }
    }

    fn append(&self, append: Append) -> impl Future<Output = Result<(), AppendError>> + Send {
        let fault = self.faults.lock().unwrap().pop_front().flatten().or_else(|| {
            let mut kind_faults = self.kind_faults.lock().unwrap();
            let at = kind_faults.iter().position(|(kind, _)| append.events.iter().any(|e| e.kind == *kind))?;
            Some(kind_faults.remove(at).1)
        });
        let result = {
            let mut tables = self.tables.lock().unwrap();
            let checked = match fault {
                Some(AppendFault::Refuse) => Err(AppendError::Store(StoreError("injected: write refused".into()))),
                _ => Self::try_append(&mut tables, &append),
            };
            if checked.is_ok() {
                match &append.lock {
                    Some(LockOp::Acquire { key, owner, lease_until, .. }) => {
                        tables.locks.insert(key.clone(), LockItem { owner: owner.clone(), lease_until: *lease_until });
                        tables.watches.remove(owner);
                    }
                    Some(LockOp::Release { key, .. }) => {
                        tables.locks.remove(key);
                    }
                    Some(LockOp::Watch { key, owner }) => {
                        tables.watches.insert(owner.clone(), key.clone());
                    }
                    Some(LockOp::Unwatch { owner, .. }) => {
                        tables.watches.remove(owner);
                    }
                    None => {}
                }
                if let Some(snapshot) = &append.snapshot {
                    tables.snapshots.entry(append.deploy.clone()).or_default().push(snapshot.clone());
                }
                if let Some(entry) = &append.index {
                    tables.index.entry(entry.key.clone()).or_default().push(entry.clone());
                }
                tables.events.entry(append.deploy.clone()).or_default().extend(append.events.iter().cloned());
            }
            match (checked, fault) {
                (Ok(()), Some(AppendFault::LandThenFail)) => {
                    Err(AppendError::Store(StoreError("injected: timed out after landing".into())))
                }
                (Ok(()), Some(AppendFault::RaceLost)) => Err(AppendError::Conflict { seq: append.events.first().map_or(0, |e| e.seq) }),
                (checked, _) => checked,
            }
        };
        let mut stats = self.stats.lock().unwrap();
        stats.appends += 1;
        match &result {
            Ok(()) => stats.events_written += append.events.len() as u64,
            Err(AppendError::Conflict { .. }) => stats.conflicts += 1,
            Err(_) => {}
        }
        async move { result }
    }

    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send {
        let held = self.locks().into_iter().map(|(key, item)| (key, item.owner));
        let waiting = self.watch_notes().into_iter().map(|(owner, key)| (key, owner));
        let watched = held.chain(waiting).collect();
        async move { Ok(watched) }
    }

    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send {
        let tables = self.tables.lock().unwrap();
        let mut entries = tables.index.get(key).cloned().unwrap_or_default();
        // Newest first; ties (same created_at) broken by deploy id, as ULIDs sort by time.
        entries.sort_by(|a, b| (b.created_at, &b.deploy).cmp(&(a.created_at, &a.deploy)));
        entries.truncate(limit);
        async move { Ok(entries) }
    }

    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send {
        let freeze = self.tables.lock().unwrap().freezes.get(key).cloned();
        async move { Ok(freeze) }
    }

    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let seq = self.tables.lock().unwrap().notified.get(deploy).copied().unwrap_or(0);
        async move { Ok(seq) }
    }

    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut tables = self.tables.lock().unwrap();
        let cursor = tables.notified.entry(deploy.to_string()).or_insert(0);
        *cursor = (*cursor).max(seq);
        async move { Ok(()) }
    }
}

/// A message handed to a consumer, with what SQS would tell it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub receipt: u64,
    pub message: Message,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

#[derive(Debug)]
struct Queued {
    id: u64,
    body: String,
    visible_at: Timestamp,
    receive_count: u32,
}

/// A queue with SQS's delivery rules: delayed messages, a visibility timeout, redelivery of what
/// was received but not deleted. Bodies are stored as JSON, so what goes through it is exactly
/// what would go through SQS.
pub struct MemoryQueue {
    clock: Arc<dyn Clock + Send + Sync>,
    visibility_ms: u64,
    messages: Mutex<(u64, Vec<Queued>)>,
}

impl MemoryQueue {
    pub fn new(clock: Arc<dyn Clock + Send + Sync>, visibility_secs: u64) -> Self {
        MemoryQueue { clock, visibility_ms: visibility_secs * 1000, messages: Mutex::new((0, Vec::new())) }
    }

    /// The message that became visible first, made invisible for the visibility timeout.
    pub fn receive(&self) -> Option<Delivery> {
        let now = self.clock.now();
        let mut guard = self.messages.lock().unwrap();
        let queued = guard.1.iter_mut().filter(|m| m.visible_at <= now).min_by_key(|m| (m.visible_at, m.id))?;
        queued.visible_at = now.plus_ms(self.visibility_ms);
        queued.receive_count += 1;
        let message = Message::from_json(&queued.body).expect("only messages are queued");
        Some(Delivery { receipt: queued.id, message, receive_count: queued.receive_count })
    }

    pub fn delete(&self, receipt: u64) {
        self.messages.lock().unwrap().1.retain(|m| m.id != receipt);
    }

    /// When the next message becomes visible, if any is queued.
    pub fn next_visible_at(&self) -> Option<Timestamp> {
        self.messages.lock().unwrap().1.iter().map(|m| m.visible_at).min()
    }

    /// Drops every queued message: what a lost message (or a purged queue) looks like.
    pub fn lose_all(&self) {
        self.messages.lock().unwrap().1.clear();
    }

    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&self, message: &Message, delay_secs: u32) {
        let visible_at = self.clock.now().plus_secs(u64::from(delay_secs));
        let mut guard = self.messages.lock().unwrap();
        guard.0 += 1;
        let id = guard.0;
        guard.1.push(Queued { id, body: message.to_json(), visible_at, receive_count: 0 });
    }
}

impl Queue for MemoryQueue {
    fn send(&self, message: &Message, delay_secs: u32) -> impl Future<Output = Result<(), QueueError>> + Send {
        assert!(delay_secs <= Self::DELAY_SECS_MAX, "delay {delay_secs} s is over the queue's limit");
        self.push(message, delay_secs);
        async { Ok(()) }
    }
}

impl<T: Queue> Queue for Arc<T> {
    fn send(&self, message: &Message, delay_secs: u32) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(message, delay_secs)
    }
}

impl<T: EventStore + Sync> EventStore for Arc<T> {
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        (**self).load(deploy)
    }

    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send {
        (**self).load_tail(deploy)
    }

    fn append(&self, append: Append) -> impl Future<Output = Result<(), AppendError>> + Send {
        (**self).append(append)
    }

    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send {
        (**self).watched()
    }

    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send {
        (**self).deploys(key, limit)
    }

    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send {
        (**self).freeze(key)
    }

    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).notified(deploy)
    }

    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).mark_notified(deploy, seq)
    }
}

/// Drives a future that never waits on I/O (the in-memory and simulated adapters) to completion,
/// without any runtime. Panics if the future would block: that means a real adapter slipped in.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("block_on: the future waits on I/O; in-memory adapters never should"),
    }
}
