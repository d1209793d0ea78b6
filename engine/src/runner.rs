//! The runner: handles one message by stepping a deploy forward as far as it can go now.
//!
//! One step is: load the history, fold it, decide, execute, append the outcome (a conditional
//! write: the loser of a race re-reads the history and decides again), and repeat until the deploy
//! must wait;
//! then send a delayed wake. The runner keeps no state between messages; everything it knows
//! it reads from the event log, so any worker can pick up any deploy at any point.

use crate::codec::{self, Snapshot, StoredEvent};
use crate::message::Message;
use crate::ports::{Append, AppendError, Clock, Cloud, EventStore, IndexEntry, LockKey, LockOp, Queue, QueueError, StoreError};
use crate::workflow::command::{CloudError, Command, Outcome};
use crate::workflow::decide::shift_to_recorded;
use crate::workflow::event::{Event, Freshness, Recorded};
use crate::workflow::listener_rule::NewRule;
use crate::workflow::settings::Settings;
use crate::workflow::state::{Lock, TeardownStage, ATTEMPTS_MAX};
use crate::workflow::{decide, evolve, record, Decision, End, Next, State, Timestamp};
use std::fmt;

/// Bounds the work one message may do, so one invocation always ends; a deploy with more to do
/// sends itself an immediate wake and carries on in the next.
pub const ACTIONS_PER_MESSAGE_MAX: usize = 64;
/// How often the runner stores a snapshot of a deploy's state, in events.
pub const SNAPSHOT_EVERY_EVENTS: u64 = 50;
/// How many recent deploys of a project-config a halt looks through for the running one (and
/// a deploy's end for the ones waiting for its lock).
const HALT_SEARCH_DEPLOYS_MAX: usize = 10;
/// How many recent deploys of a project-config an undeploy looks through for the live release.
const LIVE_SEARCH_DEPLOYS_MAX: usize = 50;
/// Tries at recording an event in another deploy whose own worker keeps appending first.
const TELL_TRIES_MAX: usize = 3;

#[derive(Clone, Debug, Default)]
pub struct RunnerConfig {
    pub freshness: Freshness,
    /// The operator's settings, recorded with every request so a replay judges it the same.
    pub settings: Settings,
}

/// The runner with its four ports.
pub struct Runner<S, Q, C, K> {
    pub store: S,
    pub queue: Q,
    pub cloud: C,
    pub clock: K,
    pub config: RunnerConfig,
}

/// What handling a message came to. Every variant means the message may be deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum Handled {
    /// The deploy waits until `until`; a wake is scheduled if this worker owns the timer.
    Waiting { deploy: String, until: Timestamp },
    Finished {
        deploy: String,
        end: Option<End>,
        /// This message appended the end (rather than finding the deploy already finished): what
        /// reports an end once, such as the Lambda's FailureDirty metric, looks at this.
        ended_now: bool,
    },
    /// The message asks for nothing that can be done (a halt with no running deploy).
    Ignored { reason: String },
    /// The message is not due yet (an automatic undeploy) and was sent again to arrive later.
    Deferred { until: Timestamp },
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sweep {
    pub woken: Vec<String>,
    /// Deploys holding a lock whose history cannot be read: a person must look.
    pub unreadable: Vec<String>,
}

/// Why a message could not be handled. Store and queue errors are worth retrying (the message
/// stays on the queue); a rejected message never will succeed.
#[derive(Debug)]
pub enum RunError {
    Store(StoreError),
    Queue(QueueError),
    /// The stored history cannot be read: no action is taken on a history skald can't trust.
    Corrupt {
        deploy: String,
        message: String,
    },
    /// The message can never succeed, e.g. a release id already used for another release.
    Rejected(String),
    /// A transition could not be published; the message is retried, and publishes it then.
    Notify(CloudError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Store(e) => e.fmt(f),
            RunError::Queue(e) => e.fmt(f),
            RunError::Corrupt { deploy, message } => write!(f, "deploy {deploy}: history cannot be read: {message}"),
            RunError::Rejected(reason) => write!(f, "rejected: {reason}"),
            RunError::Notify(e) => write!(f, "publishing a transition: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Store(e)
    }
}

impl From<QueueError> for RunError {
    fn from(e: QueueError) -> Self {
        RunError::Queue(e)
    }
}

/// An undeploy message, unpacked.
struct UndeployRequest {
    key: LockKey,
    reason: String,
    undeploy_id: String,
    of_release: Option<String>,
}

/// A deploy's history as this worker has it: the state, and the hash the next event chains to.
struct Loaded {
    deploy: String,
    state: State,
    last_hash: String,
}

/// Whether this worker should keep the deploy's timer going when it ends up waiting.
#[derive(Clone, Copy)]
struct Delivery {
    /// The seq the message saw, for wakes.
    seen_seq: Option<u64>,
    /// The message was delivered before: a worker may have died holding it.
    redelivered: bool,
}

impl<S: EventStore, Q: Queue, C: Cloud, K: Clock> Runner<S, Q, C, K> {
    /// Handles one message. `sender` is the authenticated principal that sent it, if known;
    /// `redelivered` says the queue delivered this message before.
    pub async fn handle(&self, message: Message, sender: Option<String>, redelivered: bool) -> Result<Handled, RunError> {
        let handled = self.handle_message(message, sender, redelivered).await?;
        if let Handled::Waiting { deploy, .. } | Handled::Finished { deploy, .. } = &handled {
            self.publish_transitions(deploy).await?;
        }
        Ok(handled)
    }

    async fn handle_message(&self, message: Message, sender: Option<String>, redelivered: bool) -> Result<Handled, RunError> {
        match message {
            Message::DeployRequested { release, release_id, created_at } => {
                let deploy = self.request(*release, release_id, created_at, sender).await?;
                self.step(&deploy, Delivery { seen_seq: None, redelivered: true }).await
            }
            Message::HaltRequested { project, config, reason } => self.halt(LockKey { project, config }, reason, sender).await,
            Message::UndeployRequested { project, config, reason, undeploy_id, of_release } => {
                let request = UndeployRequest { key: LockKey { project, config }, reason, undeploy_id, of_release };
                self.undeploy(request, sender).await
            }
            Message::Wake { deploy, seq } => {
                // A deploy id is a release id: anything else is not a wake skald sent.
                crate::workflow::names::check_release_id(&deploy).map_err(|e| RunError::Rejected(format!("deploy: {e}")))?;
                self.step(&deploy, Delivery { seen_seq: Some(seq), redelivered }).await
            }
        }
    }

    /// Records a deploy request as the first event of its deploy. One release id starts at most
    /// one deploy: the same request delivered twice is one deploy; a different release under a
    /// used id is refused.
    async fn request(
        &self,
        release: crate::workflow::Release,
        release_id: String,
        created_at: Timestamp,
        sender: Option<String>,
    ) -> Result<String, RunError> {
        crate::workflow::names::check_release_id(&release_id).map_err(|e| RunError::Rejected(format!("release_id: {e}")))?;
        let deploy = crate::workflow::names::deploy_id(&release_id);
        let release_digest = codec::release_digest(&release);
        let key = LockKey { project: release.project_name.clone(), config: release.config_name.clone() };
        // What the freeze is when the request is recorded decides the deploy (`decide` refuses a
        // frozen one): recorded with the request, so the refusal explains itself on every replay.
        let frozen = self.store.freeze(&key).await?;
        let event = Event::DeployRequested {
            release_id,
            created_at,
            release: Box::new(release),
            release_digest: release_digest.clone(),
            requested_by: sender,
            freshness: self.config.freshness,
            settings: Some(self.config.settings.clone()),
            // New deploys run under today's rules; their histories say so, for every replay.
            rules: crate::workflow::event::RULES_CURRENT,
            frozen,
        };
        let first = Recorded { seq: 1, at: self.clock.now(), event };
        let first = codec::encode(&first, "", codec::state_hash(&evolve(State::default(), &first)));
        let lock = watch(&key, &deploy);
        let index = IndexEntry { key, deploy: deploy.clone(), created_at };
        match self.store.append(Append { deploy: deploy.clone(), events: vec![first], lock, index: Some(index), snapshot: None }).await {
            Ok(()) => Ok(deploy),
            Err(AppendError::Conflict { .. }) => {
                let existing = self.load(&deploy).await?;
                match &existing.state.request {
                    Some(request) if request.release_digest == release_digest => Ok(deploy),
                    _ => Err(RunError::Rejected(format!("release id {deploy} was already used for a different release"))),
                }
            }
            Err(AppendError::LockHeld { .. }) => unreachable!("a request takes no lock"),
            Err(AppendError::Store(e)) => Err(e.into()),
        }
    }

    async fn halt(&self, key: LockKey, reason: String, sender: Option<String>) -> Result<Handled, RunError> {
        for entry in self.store.deploys(&key, HALT_SEARCH_DEPLOYS_MAX).await? {
            let mut loaded = self.load(&entry.deploy).await?;
            if loaded.state.is_finished() {
                continue;
            }
            let event = Event::HaltRequested { reason: reason.clone(), requested_by: sender.clone() };
            return match self.append(&mut loaded, vec![event], self.clock.now(), None).await {
                Ok(()) => self.step(&entry.deploy, Delivery { seen_seq: None, redelivered: true }).await,
                Err(AppendError::Conflict { .. }) => Err(RunError::Store(StoreError("the deploy moved on while halting; retry".into()))),
                Err(e) => Err(append_error(e)),
            };
        }
        Ok(Handled::Ignored { reason: format!("no running deploy of {} {}", key.project, key.config) })
    }

    /// Asks `deploy` to stop and clean up (a halt in its history) unless it has stopped already.
    /// `on_concurrent_deploy: rollback` does this to the older deploy holding the lock.
    async fn cancel(&self, deploy: &str, reason: &str, by: &str) -> Result<(), RunError> {
        let halt = Event::HaltRequested { reason: reason.to_string(), requested_by: Some(by.to_string()) };
        self.tell(deploy, halt, |state| state.failure.is_none()).await
    }

    /// Records `event` in another deploy's history, if that deploy has not ended and `wanted`
    /// holds for it, and wakes it so it acts on the event now. Racing the deploy's own worker is
    /// retried a few times.
    async fn tell(&self, deploy: &str, event: Event, wanted: impl Fn(&State) -> bool) -> Result<(), RunError> {
        for _ in 0..TELL_TRIES_MAX {
            let mut loaded = self.load(deploy).await?;
            if loaded.state.request.is_none() {
                return Err(RunError::Rejected(format!("deploy {deploy} has no history")));
            }
            if loaded.state.is_finished() || !wanted(&loaded.state) {
                return Ok(());
            }
            match self.append(&mut loaded, vec![event.clone()], self.clock.now(), None).await {
                Ok(()) => {
                    let wake = Message::Wake { deploy: deploy.to_string(), seq: loaded.state.seq };
                    return Ok(self.queue.send(&wake, 0).await?);
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(e) => return Err(append_error(e)),
            }
        }
        Err(RunError::Store(StoreError(format!("deploy {deploy} kept moving on while {} was recorded in it", event.name()))))
    }

    /// Starts (or, for a message delivered again, continues) an undeploy of the live release.
    async fn undeploy(&self, request: UndeployRequest, sender: Option<String>) -> Result<Handled, RunError> {
        let UndeployRequest { key, reason, undeploy_id, of_release } = request;
        crate::workflow::names::check_release_id(&undeploy_id).map_err(|e| RunError::Rejected(format!("undeploy_id: {e}")))?;
        let deploy = crate::workflow::names::deploy_id(&undeploy_id);
        if self.load(&deploy).await?.state.request.is_some() {
            return self.step(&deploy, Delivery { seen_seq: None, redelivered: true }).await;
        }
        let Some((live, live_state)) = live_release(&self.store, &key).await? else {
            return Ok(Handled::Ignored { reason: format!("no release of {} {} is live", key.project, key.config) });
        };
        let live_request = live_state.request.as_ref().expect("a finished deploy has a request");
        if let Some(expected) = &of_release {
            if *expected != live {
                return Ok(Handled::Ignored { reason: format!("release {expected} is no longer live; {live} is") });
            }
            let message = Message::UndeployRequested {
                project: key.project.clone(),
                config: key.config.clone(),
                reason: reason.clone(),
                undeploy_id: undeploy_id.clone(),
                of_release: of_release.clone(),
            };
            if let Some(deferred) = self.defer_until_due(&live_state, &message).await? {
                return Ok(deferred);
            }
        }
        let release = live_request.release.clone();
        let event = Event::UndeployRequested {
            undeploy_id,
            of_release: live.clone(),
            release_digest: codec::release_digest(&release),
            release: Box::new(release),
            reason,
            requested_by: sender,
        };
        let now = self.clock.now();
        let first = Recorded { seq: 1, at: now, event };
        let first = codec::encode(&first, "", codec::state_hash(&evolve(State::default(), &first)));
        let lock = watch(&key, &deploy);
        let index = IndexEntry { key, deploy: deploy.clone(), created_at: now };
        let append = Append { deploy: deploy.clone(), events: vec![first], lock, index: Some(index), snapshot: None };
        match self.store.append(append).await {
            // Lost the race to a copy of this message: the undeploy exists; carry it on.
            Ok(()) | Err(AppendError::Conflict { .. }) => self.step(&deploy, Delivery { seen_seq: None, redelivered: true }).await,
            Err(e) => Err(append_error(e)),
        }
    }

    /// An automatic undeploy is due `automatic_undeploy_minutes` after its release went live.
    /// Before that its message goes back on the queue, as late as the queue allows (a chain of
    /// at most minutes / 15 hops: the minutes are bounded by validation).
    async fn defer_until_due(&self, live: &State, message: &Message) -> Result<Option<Handled>, RunError> {
        let minutes = live.release().automatic_undeploy_minutes.unwrap_or(0);
        let due = live.at.plus_secs(minutes * 60);
        let now = self.clock.now();
        if now >= due {
            return Ok(None);
        }
        self.queue.send(message, delay_secs::<Q>(due, now)).await?;
        Ok(Some(Handled::Deferred { until: due }))
    }

    /// What a deploy's end sets off: deploys waiting for its lock are told it is free (they would
    /// try it again within a minute anyway), and a release that went live with
    /// `automatic_undeploy_minutes` gets its undeploy scheduled. Both are repeatable, so a
    /// message delivered again after a worker died here does it all again.
    async fn after_end(&self, state: &State) -> Result<(), RunError> {
        let request = state.request.as_ref().expect("an ended deploy has a request");
        let release = &request.release;
        let key = LockKey { project: release.project_name.clone(), config: release.config_name.clone() };
        for entry in self.store.deploys(&key, HALT_SEARCH_DEPLOYS_MAX).await? {
            if entry.deploy == request.release_id {
                continue;
            }
            let freed = Event::LockFreed { holder: request.release_id.clone() };
            let waits_for_me = |other: &State| {
                let waiting = other.waiting.as_ref().is_some_and(|w| w.holder == request.release_id);
                waiting && other.lock == Lock::Untried && other.failure.is_none()
            };
            match self.tell(&entry.deploy, freed, waits_for_me).await {
                // A neighbour whose history cannot be read, or that keeps moving, is not this
                // deploy's to report: the waiting deploy's own retries still find the lock.
                Ok(()) | Err(RunError::Corrupt { .. } | RunError::Rejected(_) | RunError::Store(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(minutes) = release.automatic_undeploy_minutes.filter(|_| state.end == Some(End::Success) && state.undeploy.is_none())
        else {
            return Ok(());
        };
        let due = state.at.plus_secs(minutes * 60);
        let message = Message::UndeployRequested {
            project: key.project,
            config: key.config,
            reason: format!("automatic_undeploy_minutes: {minutes}"),
            undeploy_id: crate::workflow::names::automatic_undeploy_id(&request.release_id, due.as_ms()),
            of_release: Some(request.release_id.clone()),
        };
        Ok(self.queue.send(&message, delay_secs::<Q>(due, self.clock.now())).await?)
    }

    /// Wakes every running deploy whose wakes were lost (see `workflow::decide::stalled`): a
    /// lost message must not strand a deploy or hold its lock forever. Returns the deploys woken.
    /// A deploy whose history cannot be read is skipped (the error is the caller's to log).
    pub async fn sweep(&self) -> Result<Sweep, RunError> {
        let now = self.clock.now();
        let mut sweep = Sweep::default();
        for (_, deploy) in self.store.watched().await? {
            match self.load(&deploy).await {
                Ok(loaded) if crate::workflow::decide::stalled(&loaded.state, now) => {
                    self.queue.send(&Message::Wake { deploy: deploy.clone(), seq: loaded.state.seq }, 0).await?;
                    sweep.woken.push(deploy);
                }
                Ok(_) => {}
                Err(RunError::Corrupt { deploy, message }) => sweep.unreadable.push(format!("{deploy}: {message}")),
                Err(e) => return Err(e),
            }
        }
        Ok(sweep)
    }

    /// Publishes the deploy's transitions recorded since its notification cursor, moving the
    /// cursor after each (see `crate::notify`). Reads the latest snapshot and the events after it,
    /// like a step; only a cursor left behind the snapshot (publishing was failing for a while)
    /// makes it read the whole history.
    async fn publish_transitions(&self, deploy: &str) -> Result<(), RunError> {
        if !self.cloud.notifies() {
            return Ok(());
        }
        let cursor = self.store.notified(deploy).await?;
        let corrupt = |message| RunError::Corrupt { deploy: deploy.to_string(), message };
        let tail = self.store.load_tail(deploy).await?;
        let last_seq = tail.events.last().map(|e| e.seq).or(tail.snapshot.as_ref().map(|s| s.seq)).unwrap_or(0);
        if last_seq <= cursor {
            return Ok(());
        }
        let from_snapshot = tail.snapshot.as_ref().filter(|s| s.seq <= cursor).and_then(|s| Some((s.state()?, s.hash.clone())));
        let (recorded, start) = match from_snapshot {
            Some((state, hash)) => (codec::read_after(state.clone(), &hash, &tail.events).map_err(corrupt)?.0, state),
            None => (codec::read_history(&self.store.load(deploy).await?).map_err(corrupt)?.0, State::default()),
        };
        for notification in crate::notify::transitions(start, &recorded, cursor) {
            self.cloud.notify(&notification).await.map_err(RunError::Notify)?;
            self.store.mark_notified(deploy, notification.seq).await?;
        }
        // Events that changed no phase need no notification: the next message starts after them.
        self.store.mark_notified(deploy, last_seq).await?;
        Ok(())
    }

    /// Steps a deploy until it waits, ends, or has done `ACTIONS_PER_MESSAGE_MAX` actions.
    async fn step(&self, deploy: &str, delivery: Delivery) -> Result<Handled, RunError> {
        let mut loaded = self.load(deploy).await?;
        let mut seq_at_start = loaded.state.seq;
        for _ in 0..ACTIONS_PER_MESSAGE_MAX {
            let now = self.clock.now();
            let decision = decide(&loaded.state, now);
            let effect = match &decision {
                Decision::Act(command @ (Command::Launch { .. } | Command::CreateTargetGroup { .. } | Command::ShiftTraffic { .. })) => {
                    Some(command.clone())
                }
                _ => None,
            };
            let result = match decision {
                Decision::Finished => {
                    // A finished history takes no more events, so if this message appended any,
                    // the last of them was the end.
                    let ended_now = loaded.state.seq > seq_at_start;
                    // A message delivered again may be the one whose worker died before this.
                    if (ended_now || delivery.redelivered) && loaded.state.request.is_some() {
                        self.after_end(&loaded.state).await?;
                    }
                    return Ok(Handled::Finished { deploy: deploy.to_string(), end: loaded.state.end.clone(), ended_now });
                }
                Decision::Wait { until } => return self.wait(&loaded, until, now, delivery, seq_at_start).await,
                Decision::Emit(events) => {
                    let unwatch = events.iter().any(Event::is_terminal).then(|| unwatch(&loaded.state)).flatten();
                    self.append(&mut loaded, events, now, unwatch).await
                }
                Decision::Act(command) => match self.act(&mut loaded, command, now).await {
                    Ok(Some(wait_ms)) => return self.wait(&loaded, now.plus_ms(wait_ms), now, delivery, seq_at_start).await,
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => {}
                // Another worker appended first. It may die before it finishes what it started,
                // and this message may be the only one left for the deploy (a deploy without its
                // lock has no sweeper to wake it): re-read and decide again rather than leave.
                // What the other worker appended is not this worker's progress.
                Err(AppendError::Conflict { .. }) => {
                    loaded = self.load(deploy).await?;
                    seq_at_start = loaded.state.seq;
                    if let Some(effect) = effect {
                        self.fence_stale_effect(&loaded.state, effect).await;
                    }
                }
                Err(e) => return Err(append_error(e)),
            }
        }
        // Out of budget for this message, not out of work: continue in a fresh invocation.
        self.queue.send(&Message::Wake { deploy: deploy.to_string(), seq: loaded.state.seq }, 0).await?;
        Ok(Handled::Waiting { deploy: deploy.to_string(), until: self.clock.now() })
    }

    /// An effect whose outcome lost the race to append was carried out on a stale view; `state`
    /// is the history as it is now. Makes the cloud agree with the log again where it can (no AWS
    /// call can be conditioned on the log's seq, so this is the only fence a stale effect has).
    /// Best effort: when the account cannot be reached, the cloud is left as it is.
    async fn fence_stale_effect(&self, state: &State, effect: Command) {
        let Ok(cloud) = self.cloud_of(state).await else { return };
        match effect {
            Command::Launch { spec } => undo_stale_create(&cloud, state, &spec.asg_name, Some(&spec.launch_template_name), None).await,
            Command::CreateTargetGroup { service, name, .. } => {
                let asg = state.services.get(&service).map(|p| p.asg.clone()).unwrap_or_default();
                undo_stale_create(&cloud, state, &asg, None, Some(&name)).await
            }
            Command::ShiftTraffic { .. } => reassert_recorded_traffic(&cloud, state).await,
            _ => {}
        }
    }

    /// The cloud of the account and region the deploy's release names.
    async fn cloud_of(&self, state: &State) -> Result<C, CloudError> {
        let release = state.request.as_ref().map(|r| &r.release);
        let account = release.and_then(|r| r.aws_account_id.as_deref());
        self.cloud.in_place(account, release.and_then(|r| r.aws_region.as_deref())).await
    }

    /// Carries out a command and records its outcome. Returns how long to wait when the outcome
    /// changed nothing.
    async fn act(&self, loaded: &mut Loaded, command: Command, now: Timestamp) -> Result<Option<u64>, AppendError> {
        if command.needs_intent() && loaded.state.pending.as_ref() != Some(&command) {
            let started = Event::CommandStarted { command: command.clone() };
            self.append(loaded, vec![started], now, None).await?;
        }
        let (outcome, lock) = self.execute(&loaded.state, &command, now).await;
        // An effect's outcome is stamped when it completed; a lookup's with the instant it was
        // decided at, so replaying `decide` at that instant reproduces the decision.
        let at = if command.needs_intent() { self.clock.now() } else { now };
        let recording = record(&loaded.state, &command, outcome, at);
        if recording.events.is_empty() {
            let Next::WaitMs(wait_ms) = recording.next else { unreachable!("nothing recorded, yet told to continue") };
            return Ok(Some(wait_ms));
        }
        let appended = match self.append(loaded, recording.events.clone(), at, lock).await {
            Err(AppendError::LockHeld { holder }) if matches!(command, Command::AcquireLock { .. }) => {
                let denied = record(&loaded.state, &command, Outcome::LockHeld { holder }, at);
                self.append(loaded, denied.events, at, None).await
            }
            // The lease ran out and another deploy took the lock: it is not ours to give back.
            Err(AppendError::LockHeld { .. }) => self.append(loaded, recording.events, at, None).await,
            other => other,
        };
        appended.map(|()| None)
    }

    /// Runs a command against the cloud; lock commands only say which lock change to append.
    async fn execute(&self, state: &State, command: &Command, now: Timestamp) -> (Outcome, Option<LockOp>) {
        let owner = || state.request.as_ref().expect("a command without a request").release_id.clone();
        match command {
            Command::AcquireLock { project, config, lease_until } => {
                let key = LockKey { project: project.clone(), config: config.clone() };
                (Outcome::LockAcquired, Some(LockOp::Acquire { key, owner: owner(), lease_until: *lease_until, now }))
            }
            Command::ReleaseLock { project, config } => {
                let key = LockKey { project: project.clone(), config: config.clone() };
                (Outcome::LockReleased, Some(LockOp::Release { key, owner: owner() }))
            }
            Command::CancelDeploy { deploy, reason } => {
                let cancelled = self.cancel(deploy, reason, &format!("skald deploy {}", owner())).await;
                (Outcome::Done(cancelled.map_err(|e| CloudError::transient(e.to_string()))), None)
            }
            Command::FindLiveRelease { project, config } => {
                let key = LockKey { project: project.clone(), config: config.clone() };
                (Outcome::LiveFound(self.find_live_release(&key).await), None)
            }
            _ => (self.execute_in_cloud(state, command).await, None),
        }
    }

    /// The live release of a project-config, from the store: the outcome of `FindLiveRelease`.
    /// A store that fails is a failure worth retrying; a history that cannot be read never will
    /// be, and a release that must be compared with it cannot be judged safe.
    async fn find_live_release(&self, key: &LockKey) -> Result<Option<(String, Box<crate::workflow::Release>)>, CloudError> {
        match live_release(&self.store, key).await {
            Ok(live) => Ok(live.map(|(deploy, state)| (deploy, Box::new(state.release().clone())))),
            Err(e @ RunError::Corrupt { .. }) => Err(CloudError::permanent("CorruptHistory", e.to_string())),
            Err(e) => Err(CloudError::transient(e.to_string())),
        }
    }

    /// Runs a cloud command in the account the deploy's release names. Failing to reach that
    /// account (the role cannot be assumed) is the command's failure, retried like any other.
    async fn execute_in_cloud(&self, state: &State, command: &Command) -> Outcome {
        let cloud = match self.cloud_of(state).await {
            Ok(cloud) => cloud,
            Err(error) => {
                return match command {
                    Command::ResolveResources { .. } => Outcome::Looked(Err(error)),
                    Command::ObserveHealth { .. } => Outcome::Health(Err(error)),
                    Command::CheckDetached { .. } => Outcome::Detached(Err(error)),
                    Command::CreateTargetGroup { .. } => Outcome::Created(Err(error)),
                    _ => Outcome::Done(Err(error)),
                }
            }
        };
        match command {
            Command::ResolveResources { query } => Outcome::Looked(cloud.lookup(query).await),
            Command::Launch { spec } => Outcome::Done(cloud.launch(spec, &state.user_data(&spec.service)).await),
            Command::SetCapacity { asg, min_size, desired, .. } => Outcome::Done(cloud.set_capacity(asg, *min_size, *desired).await),
            Command::ObserveHealth { targets } => Outcome::Health(cloud.observe(targets).await),
            Command::Detach { asg, elbs, target_groups } => Outcome::Done(cloud.detach(asg, elbs, target_groups).await),
            Command::CheckDetached { asg, elbs, target_groups } => Outcome::Detached(cloud.is_detached(asg, elbs, target_groups).await),
            Command::CreateTargetGroup { name, shape, tags, .. } => Outcome::Created(cloud.create_target_group(name, shape, tags).await),
            Command::ShiftTraffic { listener_arn, priority, conditions, forward, copy, .. } => {
                let rule = NewRule { conditions, copy: copy.as_ref() };
                Outcome::Done(cloud.shift_traffic(listener_arn, *priority, rule, forward).await)
            }
            Command::Delete { asg, launch_template, target_group } => {
                if target_group.is_some() {
                    reassert_recorded_traffic(&cloud, state).await;
                }
                Outcome::Done(cloud.delete(asg, launch_template.as_deref(), target_group.as_deref()).await)
            }
            Command::RemoveRule { listener_arn, priority, .. } => {
                Outcome::Done(cloud.shift_traffic(listener_arn, *priority, NewRule { conditions: &[], copy: None }, &[]).await)
            }
            Command::AcquireLock { .. } | Command::ReleaseLock { .. } | Command::CancelDeploy { .. } | Command::FindLiveRelease { .. } => {
                unreachable!("lock, cancel and log commands never reach the cloud")
            }
        }
    }

    /// Keeps the deploy's timer going, unless this message was a stale copy of it: a wake for an
    /// older seq that changed nothing belongs to a chain another worker already continued.
    async fn wait(
        &self,
        loaded: &Loaded,
        until: Timestamp,
        now: Timestamp,
        delivery: Delivery,
        seq_at_start: u64,
    ) -> Result<Handled, RunError> {
        let progressed = loaded.state.seq > seq_at_start;
        let current = delivery.seen_seq.is_none_or(|seen| seen >= loaded.state.seq);
        if progressed || current || delivery.redelivered {
            let wake = Message::Wake { deploy: loaded.deploy.clone(), seq: loaded.state.seq };
            self.queue.send(&wake, delay_secs::<Q>(until, now)).await?;
        }
        Ok(Handled::Waiting { deploy: loaded.deploy.clone(), until })
    }

    /// Reads the deploy from its latest snapshot when there is a usable one, else from the start.
    async fn load(&self, deploy: &str) -> Result<Loaded, RunError> {
        load(&self.store, deploy).await
    }

    /// Appends events after the loaded state and folds them in once they have landed.
    async fn append(&self, loaded: &mut Loaded, events: Vec<Event>, at: Timestamp, lock: Option<LockOp>) -> Result<(), AppendError> {
        let mut previous = loaded.last_hash.clone();
        let mut next = loaded.state.clone();
        let mut stored: Vec<StoredEvent> = Vec::with_capacity(events.len());
        for event in events {
            let recorded = Recorded { seq: next.seq + 1, at, event };
            next = evolve(next, &recorded);
            let encoded = codec::encode(&recorded, &previous, codec::state_hash(&next));
            previous = encoded.hash.clone();
            stored.push(encoded);
        }
        // A snapshot each time the history crosses a multiple of SNAPSHOT_EVERY_EVENTS keeps
        // every step's read to one snapshot and fewer than that many events.
        let crossed = loaded.state.seq / SNAPSHOT_EVERY_EVENTS != next.seq / SNAPSHOT_EVERY_EVENTS;
        let snapshot = crossed.then(|| Snapshot::of(&next, &previous));
        self.store.append(Append { deploy: loaded.deploy.clone(), events: stored, lock, index: None, snapshot }).await?;
        loaded.last_hash = previous;
        loaded.state = next;
        Ok(())
    }
}

/// Reads a deploy from its latest snapshot when there is a usable one, else from the start.
async fn load<S: EventStore>(store: &S, deploy: &str) -> Result<Loaded, RunError> {
    let tail = store.load_tail(deploy).await?;
    let from_snapshot = tail.snapshot.as_ref().and_then(|snapshot| Some((snapshot.state()?, snapshot.hash.clone())));
    if let Some((state, hash)) = from_snapshot {
        let (_, state) =
            codec::read_after(state, &hash, &tail.events).map_err(|message| RunError::Corrupt { deploy: deploy.to_string(), message })?;
        let last_hash = tail.events.last().map_or(hash, |e| e.hash.clone());
        return Ok(Loaded { deploy: deploy.to_string(), state, last_hash });
    }
    let stored = if tail.snapshot.is_none() { tail.events } else { store.load(deploy).await? };
    let (_, state) = codec::read_history(&stored).map_err(|message| RunError::Corrupt { deploy: deploy.to_string(), message })?;
    let last_hash = stored.last().map(|e| e.hash.clone()).unwrap_or_default();
    Ok(Loaded { deploy: deploy.to_string(), state, last_hash })
}

/// The deploy whose release is live on a project-config, with its state: the newest deploy that
/// succeeded, unless an undeploy succeeded after it (then nothing is live). Looks through the
/// latest `LIVE_SEARCH_DEPLOYS_MAX` deploys.
pub async fn live_release<S: EventStore>(store: &S, key: &LockKey) -> Result<Option<(String, State)>, RunError> {
    for entry in store.deploys(key, LIVE_SEARCH_DEPLOYS_MAX).await? {
        let loaded = load(store, &entry.deploy).await?;
        match (&loaded.state.end, &loaded.state.undeploy) {
            (Some(End::Success), Some(_)) => return Ok(None),
            (Some(End::Success), None) => return Ok(Some((loaded.deploy, loaded.state))),
            _ => {}
        }
    }
    Ok(None)
}

/// A create (a launch, a target group) whose outcome lost the race to append: while this worker
/// stalled, others created the thing, recorded it, and may have deleted it since (a halt or a
/// failure tore it down). Then this create made it again, and the log says it is gone. Repeating
/// the recorded delete makes the cloud agree with the log. Bounded tries: a failure leaves a
/// resource tagged with its release for a person.
async fn undo_stale_create<C: Cloud>(cloud: &C, state: &State, asg: &str, launch_template: Option<&str>, target_group: Option<&str>) {
    let deleted = state.teardown.iter().any(|t| t.asg == asg && t.stage == TeardownStage::Deleted);
    if !deleted {
        return;
    }
    for _ in 0..ATTEMPTS_MAX {
        if cloud.delete(asg, launch_template, target_group).await.is_ok() {
            return;
        }
    }
}

/// A shift made on a stale view (by a worker that stalled, then lost the race to append, or
/// whose effect landed late after it died) can overwrite the shifts the log records since: then
/// the rule says what the stale worker set, not what the log says. Setting the weights the log
/// records again makes them agree; when they agreed already it changes nothing. The runner does
/// this when its own shift loses a race, and before it deletes a release's target group (where a
/// rule that disagrees would block the delete). Bounded tries. Once the deploy gave its lock back
/// the rule may be another deploy's: then it is left alone.
async fn reassert_recorded_traffic<C: Cloud>(cloud: &C, state: &State) {
    if !matches!(state.lock, Lock::Held { .. }) {
        return;
    }
    for service in state.services.keys() {
        let Some(Command::ShiftTraffic { listener_arn, priority, conditions, forward, copy, .. }) = shift_to_recorded(state, service)
        else {
            continue;
        };
        for _ in 0..ATTEMPTS_MAX {
            let rule = NewRule { conditions: &conditions, copy: copy.as_ref() };
            if cloud.shift_traffic(&listener_arn, priority, rule, &forward).await.is_ok() {
                break;
            }
        }
    }
}

/// The delay of a message due at `until`, sent at `now`: whole seconds, rounded up, at most what
/// the queue allows (a longer wait arrives early and is sent on again).
fn delay_secs<Q: Queue>(until: Timestamp, now: Timestamp) -> u32 {
    until.ms_since(now).div_ceil(1000).min(u64::from(Q::DELAY_SECS_MAX)) as u32
}

/// The watch note of a deploy (see `LockOp::Watch`), written with its first event.
fn watch(key: &LockKey, deploy: &str) -> Option<LockOp> {
    Some(LockOp::Watch { key: key.clone(), owner: deploy.to_string() })
}

/// The removal of a deploy's watch note as it ends, if it never took its lock (taking the lock
/// removed the note already).
fn unwatch(state: &State) -> Option<LockOp> {
    if !matches!(state.lock, Lock::Untried | Lock::Denied) {
        return None;
    }
    let release = state.release();
    let key = LockKey { project: release.project_name.clone(), config: release.config_name.clone() };
    let owner = state.request.as_ref().expect("an ending deploy has a request").release_id.clone();
    Some(LockOp::Unwatch { key, owner })
}

fn append_error(e: AppendError) -> RunError {
    match e {
        AppendError::Store(e) => RunError::Store(e),
        other => RunError::Store(StoreError(other.to_string())),
    }
}
