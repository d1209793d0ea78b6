//! The fault layer: wrappers around the in-memory store and queue and the simulated cloud that
//! the real runner is built over. Each wrapper yields once before every call, so the scheduler can
//! interleave workers at every port call, and draws its faults from the seed's fault mix.
//!
//! The deliberately broken variants ([`Mutation`]) live here too, at the adapter edge: the
//! production runner carries no test knobs.

use super::rng::Rng;
use skald_engine::adapters::memory::MemoryStore;
use skald_engine::adapters::sim::SimCloud;
use skald_engine::codec::{decode, StoredEvent};
use skald_engine::message::Message;
use skald_engine::ports::{Append, AppendError, Cloud, EventStore, IndexEntry, LockKey, LockOp, Queue, QueueError, StoreError, Tail};
use skald_engine::workflow::command::HealthTarget;
use skald_engine::workflow::event::Freeze;
use skald_engine::workflow::health::ServiceReport;
use skald_engine::workflow::listener_rule::NewRule;
use skald_engine::workflow::names::TAG_RELEASE;
use skald_engine::workflow::resources::{Lookup, Query, Tags, TargetGroupShape, Weighted};
use skald_engine::workflow::{CloudError, Command, Event, LaunchSpec, Recorded};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// A deliberately broken skald, to prove the simulator notices. Test-only, and only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The store drops every lock change: each deploy believes it took the project-config's lock.
    SkipLock,
    /// Launches are not idempotent: a launch that finds its ASG already there makes another one
    /// beside it, as a create without the deterministic name and look-before-create would.
    SkipIdempotency,
}

impl Mutation {
    pub fn name(self) -> &'static str {
        match self {
            Mutation::SkipLock => "skip-lock",
            Mutation::SkipIdempotency => "skip-idempotency",
        }
    }

    pub fn parse(text: &str) -> Option<Mutation> {
        [Mutation::SkipLock, Mutation::SkipIdempotency].into_iter().find(|m| m.name() == text)
    }
}

/// Which faults a seed injects and how often (per mille per opportunity). Swarm testing: each seed
/// switches every kind on or off on its own, so some seeds hammer one fault in isolation and
/// others combine many, which finds more than every fault at a low rate everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultMix {
    /// Worker slots stepping deploys at once (the sweeper has its own).
    pub workers: usize,
    /// A worker in flight dies between two port calls (so between an effect and its append).
    pub crash: u32,
    /// A wake is sent twice.
    pub duplicate_wake: u32,
    /// A wake arrives late (reordering it among the others).
    pub delay_wake: u32,
    /// A wake is lost; the sweeper must notice.
    pub lose_wake: u32,
    /// Sending a wake fails (SQS throttling): the message is left for redelivery.
    pub queue_error: u32,
    /// A handled message is not deleted and comes again.
    pub redeliver: u32,
    /// A store read or write is refused (throttled): nothing happens.
    pub store_refuse: u32,
    /// An append lands but reports a timeout ("unknown result").
    pub store_unknown: u32,
    /// A cloud call is throttled or fails transiently before doing anything.
    pub cloud_transient: u32,
    /// A cloud effect lands, then the call reports a transient error.
    pub cloud_unknown: u32,
    /// One worker is polled rarely and may sleep through time passing: a stale, slow worker.
    pub slow_worker: bool,
    /// Virtual milliseconds that may pass during each port call (0: calls take no time).
    pub call_ms_max: u64,
}

impl FaultMix {
    pub fn draw(rng: &mut Rng) -> FaultMix {
        let mut rate = |max: u64| if rng.chance(500) { rng.between(1, max) as u32 } else { 0 };
        let mix = FaultMix {
            workers: 0,
            crash: rate(60),
            duplicate_wake: rate(200),
            delay_wake: rate(200),
            lose_wake: rate(100),
            queue_error: rate(50),
            redeliver: rate(150),
            store_refuse: rate(60),
            store_unknown: rate(60),
            cloud_transient: rate(150),
            cloud_unknown: rate(100),
            slow_worker: false,
            call_ms_max: 0,
        };
        FaultMix {
            workers: rng.between(1, 4) as usize,
            slow_worker: rng.chance(400),
            call_ms_max: if rng.chance(500) { rng.between(1, 3_000) } else { 0 },
            ..mix
        }
    }
}

/// How many faults of each kind were injected: the report of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub crashes: u64,
    pub duplicated_wakes: u64,
    pub delayed_wakes: u64,
    pub lost_wakes: u64,
    pub queue_errors: u64,
    pub redeliveries: u64,
    pub store_refused: u64,
    pub store_unknown: u64,
    pub cloud_transient: u64,
    pub cloud_unknown: u64,
    pub cloud_permanent: u64,
}

/// The state every wrapper shares: the fault generator, the phase, and what the checks need to
/// know about calls as they happen.
pub struct Chaos {
    rng: Rng,
    pub mix: FaultMix,
    /// Faults are injected only while this is true; then the world is calm and every deploy must
    /// finish.
    pub active: bool,
    pub mutation: Option<Mutation>,
    /// The worker slot being polled: set by the scheduler before each poll.
    pub current_worker: usize,
    /// The deploy each worker slot loaded last: the deploy on whose behalf it acts.
    pub loaded: Vec<Option<String>>,
    /// Releases whose teardown calls fail permanently while faults are on.
    pub doomed_cleanup: BTreeSet<String>,
    /// Releases whose launches fail permanently while faults are on.
    pub doomed_launch: BTreeSet<String>,
    /// Failures injected into teardown calls (detach, is_detached, delete), by ASG.
    pub teardown_failures: BTreeMap<String, u32>,
    /// Effects that changed the cloud on behalf of a deploy that had already ended, without its
    /// history having announced them.
    pub after_end: Vec<String>,
    /// Announced effects a stale worker carried out after its deploy ended (see `check_actor`).
    pub stale_repeats: Vec<String>,
    pub injected: Injected,
    store: MemoryStore,
    launch_copies: u64,
}

pub type Shared = Arc<Mutex<Chaos>>;

impl Chaos {
    pub fn new(rng: Rng, mix: FaultMix, mutation: Option<Mutation>, store: MemoryStore) -> Shared {
        let slots = mix.workers + 1;
        Arc::new(Mutex::new(Chaos {
            rng,
            mix,
            active: true,
            mutation,
            current_worker: 0,
            loaded: vec![None; slots],
            doomed_cleanup: BTreeSet::new(),
            doomed_launch: BTreeSet::new(),
            teardown_failures: BTreeMap::new(),
            after_end: Vec::new(),
            stale_repeats: Vec::new(),
            injected: Injected::default(),
            store,
            launch_copies: 0,
        }))
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        self.active && self.rng.chance(per_mille)
    }

    fn note_load(&mut self, deploy: &str) {
        let worker = self.current_worker;
        self.loaded[worker] = Some(deploy.to_string());
    }

    fn has_ended(&self, deploy: &str) -> bool {
        // Only the closing events end a deploy, and nothing may follow them.
        self.store.events_after(deploy, 0).last().is_some_and(|e| e.kind == "DeploySucceeded" || e.kind == "DeployFailed")
    }

    /// Records an effect that would change the cloud on behalf of a deploy that has ended.
    /// `no_op` says the call changes nothing (a repeated delete of what is gone); `announced`
    /// recognises the command the call carries out.
    ///
    /// A stale worker (one that loaded the history, then stalled while others carried the deploy
    /// to its end) may still carry out the command its history had announced: nothing on AWS can
    /// fence it off. That is counted in `stale_repeats`, and its consequences are judged by the
    /// end-state checks. Any other effect after the end is a new decision made after the end: a
    /// violation.
    fn check_actor(&mut self, call: &str, no_op: bool, announced: impl Fn(&Command) -> bool) {
        let Some(actor) = self.loaded[self.current_worker].clone() else { return };
        if no_op || !self.has_ended(&actor) {
            return;
        }
        let history = self.store.events_after(&actor, 0);
        let was_announced = history
            .iter()
            .filter(|e| e.kind == "CommandStarted")
            .any(|stored| matches!(decode(stored), Ok(Recorded { event: Event::CommandStarted { command }, .. }) if announced(&command)));
        if was_announced {
            self.stale_repeats.push(format!("{call} on behalf of {actor}, after its end"));
        } else {
            self.after_end.push(format!("{call} on behalf of {actor}, which had already ended, and its history never announced it"));
        }
    }
}

/// A future that is pending once: the point where the scheduler may switch workers.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

fn yield_now() -> YieldOnce {
    YieldOnce(false)
}

/// The event store, as flaky as DynamoDB can be, and optionally without its lock conditions.
#[derive(Clone)]
pub struct ChaosStore {
    pub inner: MemoryStore,
    pub chaos: Shared,
}

impl ChaosStore {
    fn refuse_read(&self) -> Result<(), StoreError> {
        let mut chaos = self.chaos.lock().unwrap();
        let refuse = chaos.mix.store_refuse;
        if chaos.roll(refuse) {
            chaos.injected.store_refused += 1;
            return Err(StoreError("injected: ProvisionedThroughputExceededException".into()));
        }
        Ok(())
    }
}

impl EventStore for ChaosStore {
    fn load(&self, deploy: &str) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        let (this, deploy) = (self.clone(), deploy.to_string());
        async move {
            yield_now().await;
            this.refuse_read()?;
            this.chaos.lock().unwrap().note_load(&deploy);
            this.inner.load(&deploy).await
        }
    }

    fn load_tail(&self, deploy: &str) -> impl Future<Output = Result<Tail, StoreError>> + Send {
        let (this, deploy) = (self.clone(), deploy.to_string());
        async move {
            yield_now().await;
            this.refuse_read()?;
            this.chaos.lock().unwrap().note_load(&deploy);
            this.inner.load_tail(&deploy).await
        }
    }

    fn append(&self, append: Append) -> impl Future<Output = Result<(), AppendError>> + Send {
        let this = self.clone();
        async move {
            yield_now().await;
            let mut append = append;
            let (refuse, unknown) = {
                let mut chaos = this.chaos.lock().unwrap();
                // A worker acts for the deploy it appends to: after reading another deploy (the
                // one a rollback cancels), its next effects are again its own deploy's.
                chaos.note_load(&append.deploy);
                // Drops the lock item and its condition; a deploy's watch note still goes as it would.
                if chaos.mutation == Some(Mutation::SkipLock) {
                    append.lock = match append.lock.take() {
                        Some(LockOp::Acquire { key, owner, .. }) => Some(LockOp::Unwatch { key, owner }),
                        Some(LockOp::Release { .. }) => None,
                        note => note,
                    };
                }
                let (refuse_rate, unknown_rate) = (chaos.mix.store_refuse, chaos.mix.store_unknown);
                let refuse = chaos.roll(refuse_rate);
                let unknown = !refuse && chaos.roll(unknown_rate);
                chaos.injected.store_refused += u64::from(refuse);
                chaos.injected.store_unknown += u64::from(unknown);
                (refuse, unknown)
            };
            if refuse {
                return Err(AppendError::Store(StoreError("injected: TransactWriteItems throttled".into())));
            }
            let result = this.inner.append(append).await;
            match result {
                Ok(()) if unknown => Err(AppendError::Store(StoreError("injected: timed out after the write landed".into()))),
                other => other,
            }
        }
    }

    fn watched(&self) -> impl Future<Output = Result<Vec<(LockKey, String)>, StoreError>> + Send {
        let this = self.clone();
        async move {
            yield_now().await;
            this.refuse_read()?;
            this.inner.watched().await
        }
    }

    fn deploys(&self, key: &LockKey, limit: usize) -> impl Future<Output = Result<Vec<IndexEntry>, StoreError>> + Send {
        let (this, key) = (self.clone(), key.clone());
        async move {
            yield_now().await;
            this.refuse_read()?;
            this.inner.deploys(&key, limit).await
        }
    }

    // The simulation freezes nothing, so every request reads `None`. Passed straight through, not
    // yielded or refused: one more poll per request would reshuffle every seed's schedule, and
    // the seeds CI pins (the bug seeds, the stale-worker seed, the mutations' seeds) would stop
    // meaning what they say. (With a yield and refusals here seed 1956 meets a stale worker that
    // recreates a target group after its deploy ended: the known hazard, not a freeze's.)
    fn freeze(&self, key: &LockKey) -> impl Future<Output = Result<Option<Freeze>, StoreError>> + Send {
        self.inner.freeze(key)
    }

    // The simulated cloud publishes nothing (notifications are off), so the runner never asks.
    fn notified(&self, deploy: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.notified(deploy)
    }

    fn mark_notified(&self, deploy: &str, seq: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.mark_notified(deploy, seq)
    }
}

/// The queue, losing, duplicating, delaying and refusing wakes.
#[derive(Clone)]
pub struct ChaosQueue {
    pub inner: Arc<skald_engine::adapters::memory::MemoryQueue>,
    pub chaos: Shared,
}

impl Queue for ChaosQueue {
    fn send(&self, message: &Message, delay_secs: u32) -> impl Future<Output = Result<(), QueueError>> + Send {
        let (this, message) = (self.clone(), message.clone());
        async move {
            yield_now().await;
            let mut chaos = this.chaos.lock().unwrap();
            let mix = chaos.mix.clone();
            if chaos.roll(mix.queue_error) {
                chaos.injected.queue_errors += 1;
                return Err(QueueError("injected: SendMessage throttled".into()));
            }
            if chaos.roll(mix.lose_wake) {
                chaos.injected.lost_wakes += 1;
                return Ok(());
            }
            let mut delay_secs = delay_secs;
            if chaos.roll(mix.delay_wake) {
                chaos.injected.delayed_wakes += 1;
                delay_secs = (delay_secs + chaos.rng.between(1, 120) as u32).min(Self::DELAY_SECS_MAX);
            }
            this.inner.push(&message, delay_secs);
            if chaos.roll(mix.duplicate_wake) {
                chaos.injected.duplicated_wakes += 1;
                let again_secs = (delay_secs + chaos.rng.below(30) as u32).min(Self::DELAY_SECS_MAX);
                this.inner.push(&message, again_secs);
            }
            Ok(())
        }
    }
}

/// The simulated cloud, throttled, timing out after effects, failing teardowns of doomed
/// releases; it also notes every effect made on behalf of a deploy that had already ended.
#[derive(Clone)]
pub struct ChaosCloud {
    pub inner: SimCloud,
    pub chaos: Shared,
}

impl ChaosCloud {
    /// The fault to inject before a call, if any: `teardown_asg` names the ASG of a teardown call,
    /// `launch_release` the release of a launch.
    fn before(&self, teardown_asg: Option<&str>, launch_release: Option<&str>) -> Result<(), CloudError> {
        let mut chaos = self.chaos.lock().unwrap();
        let doomed_teardown =
            chaos.active && teardown_asg.is_some_and(|asg| chaos.doomed_cleanup.iter().any(|release| asg.ends_with(release.as_str())));
        let doomed_launch = chaos.active && launch_release.is_some_and(|release| chaos.doomed_launch.contains(release));
        let transient_rate = chaos.mix.cloud_transient;
        let error = if doomed_teardown || doomed_launch {
            chaos.injected.cloud_permanent += 1;
            Some(CloudError::permanent("AccessDenied", "injected: not authorized to perform this operation"))
        } else if chaos.roll(transient_rate) {
            chaos.injected.cloud_transient += 1;
            Some(CloudError::transient("injected: Throttling: Rate exceeded"))
        } else {
            None
        };
        match error {
            Some(error) => {
                if let Some(asg) = teardown_asg {
                    *chaos.teardown_failures.entry(asg.to_string()).or_default() += 1;
                }
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// After an effect landed: perhaps report a timeout anyway.
    fn after(&self, result: Result<(), CloudError>, teardown_asg: Option<&str>) -> Result<(), CloudError> {
        let mut chaos = self.chaos.lock().unwrap();
        let rate = chaos.mix.cloud_unknown;
        if result.is_ok() && chaos.roll(rate) {
            chaos.injected.cloud_unknown += 1;
            if let Some(asg) = teardown_asg {
                *chaos.teardown_failures.entry(asg.to_string()).or_default() += 1;
            }
            return Err(CloudError::transient("injected: RequestTimeout after the call completed"));
        }
        result
    }

    fn check_actor(&self, call: String, no_op: bool, announced: impl Fn(&Command) -> bool) {
        self.chaos.lock().unwrap().check_actor(&call, no_op, announced);
    }
}

impl Cloud for ChaosCloud {
    fn lookup(&self, query: &Query) -> impl Future<Output = Result<Lookup, CloudError>> + Send {
        let (this, query) = (self.clone(), query.clone());
        async move {
            yield_now().await;
            this.before(None, None)?;
            this.inner.lookup(&query).await
        }
    }

    fn launch(&self, spec: &LaunchSpec, user_data: &str) -> impl Future<Output = Result<(), CloudError>> + Send {
        let (this, spec, user_data) = (self.clone(), spec.clone(), user_data.to_string());
        async move {
            yield_now().await;
            let release = spec.tags.get(TAG_RELEASE).cloned().unwrap_or_default();
            this.before(None, Some(&release))?;
            let existing = this.inner.asgs().get(&spec.asg_name).map(|a| a.tags.get(TAG_RELEASE) == Some(&release));
            this.check_actor(
                format!("launch {}", spec.asg_name),
                existing == Some(true),
                |c| matches!(c, Command::Launch { spec: announced } if announced.asg_name == spec.asg_name),
            );
            let mut spec = spec;
            let mutation = this.chaos.lock().unwrap().mutation;
            if mutation == Some(Mutation::SkipIdempotency) && existing.is_some() {
                let copy = {
                    let mut chaos = this.chaos.lock().unwrap();
                    chaos.launch_copies += 1;
                    chaos.launch_copies
                };
                spec.asg_name = format!("{}-copy{copy}", spec.asg_name);
                spec.launch_template_name = spec.asg_name.clone();
            }
            let result = this.inner.launch(&spec, &user_data).await;
            this.after(result, None)
        }
    }

    fn set_capacity(&self, asg: &str, min_size: u32, desired: u32) -> impl Future<Output = Result<(), CloudError>> + Send {
        let (this, asg) = (self.clone(), asg.to_string());
        async move {
            yield_now().await;
            this.before(None, None)?;
            let unchanged = this.inner.asgs().get(&asg).is_none_or(|a| (a.min_size, a.desired) == (min_size, desired));
            this.check_actor(format!("set_capacity {asg} {min_size} {desired}"), unchanged, |c| {
                matches!(c, Command::SetCapacity { asg: a, min_size: m, desired: d, .. } if *a == asg && (*m, *d) == (min_size, desired))
            });
            let result = this.inner.set_capacity(&asg, min_size, desired).await;
            this.after(result, None)
        }
    }

    fn observe(&self, targets: &[HealthTarget]) -> impl Future<Output = Result<BTreeMap<String, ServiceReport>, CloudError>> + Send {
        let (this, targets) = (self.clone(), targets.to_vec());
        async move {
            yield_now().await;
            this.before(None, None)?;
            this.inner.observe(&targets).await
        }
    }

    fn detach(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<(), CloudError>> + Send {
        let (this, asg, elbs, target_groups) = (self.clone(), asg.to_string(), elbs.to_vec(), target_groups.to_vec());
        async move {
            yield_now().await;
            this.before(Some(&asg), None)?;
            let unchanged = this.inner.asgs().get(&asg).is_none_or(|a| a.detached_at.is_some());
            this.check_actor(format!("detach {asg}"), unchanged, |c| matches!(c, Command::Detach { asg: a, .. } if *a == asg));
            let result = this.inner.detach(&asg, &elbs, &target_groups).await;
            this.after(result, Some(&asg))
        }
    }

    fn is_detached(&self, asg: &str, elbs: &[String], target_groups: &[String]) -> impl Future<Output = Result<bool, CloudError>> + Send {
        let (this, asg, elbs, target_groups) = (self.clone(), asg.to_string(), elbs.to_vec(), target_groups.to_vec());
        async move {
            yield_now().await;
            this.before(Some(&asg), None)?;
            this.inner.is_detached(&asg, &elbs, &target_groups).await
        }
    }

    fn delete(
        &self,
        asg: &str,
        launch_template: Option<&str>,
        target_group: Option<&str>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        let (this, asg) = (self.clone(), asg.to_string());
        let (launch_template, target_group) = (launch_template.map(str::to_string), target_group.map(str::to_string));
        async move {
            yield_now().await;
            this.before(Some(&asg), None)?;
            let gone = !this.inner.asgs().contains_key(&asg);
            this.check_actor(format!("delete {asg}"), gone, |c| matches!(c, Command::Delete { asg: a, .. } if *a == asg));
            let result = this.inner.delete(&asg, launch_template.as_deref(), target_group.as_deref()).await;
            this.after(result, Some(&asg))
        }
    }

    fn create_target_group(
        &self,
        name: &str,
        shape: &TargetGroupShape,
        tags: &Tags,
    ) -> impl Future<Output = Result<String, CloudError>> + Send {
        let (this, name, shape, tags) = (self.clone(), name.to_string(), shape.clone(), tags.clone());
        async move {
            yield_now().await;
            this.before(None, None)?;
            let exists = this.inner.own_target_groups().contains_key(&name);
            this.check_actor(
                format!("create_target_group {name}"),
                exists,
                |c| matches!(c, Command::CreateTargetGroup { name: n, .. } if *n == name),
            );
            let created = this.inner.create_target_group(&name, &shape, &tags).await?;
            this.after(Ok(()), None).map(|()| created)
        }
    }

    fn shift_traffic(
        &self,
        listener_arn: &str,
        priority: u32,
        rule: NewRule<'_>,
        forward: &[Weighted],
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        let (this, listener_arn, forward) = (self.clone(), listener_arn.to_string(), forward.to_vec());
        let (conditions, copy) = (rule.conditions.to_vec(), rule.copy.cloned());
        async move {
            yield_now().await;
            this.before(None, None)?;
            let current = this.inner.rule_at(&listener_arn, priority).map(|r| r.forward);
            let unchanged = current.unwrap_or_default() == forward;
            this.check_actor(format!("shift_traffic {listener_arn} {priority} {forward:?}"), unchanged, |c| {
                matches!(c, Command::ShiftTraffic { listener_arn: l, priority: p, forward: f, .. } if *l == listener_arn && *p == priority && *f == forward)
                    || matches!(c, Command::RemoveRule { listener_arn: l, priority: p, .. } if *l == listener_arn && *p == priority && forward.is_empty())
            });
            let result =
                this.inner.shift_traffic(&listener_arn, priority, NewRule { conditions: &conditions, copy: copy.as_ref() }, &forward).await;
            this.after(result, None)
        }
    }

    /// One account: the simulated cloud models the deployer's own.
    fn in_place(&self, _account: Option<&str>, _region: Option<&str>) -> impl Future<Output = Result<Self, CloudError>> + Send {
        let this = self.clone();
        async move { Ok(this) }
    }

    fn notifies(&self) -> bool {
        self.inner.notifies()
    }

    fn notify(&self, notification: &skald_engine::notify::Notification) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.inner.notify(notification)
    }
}
