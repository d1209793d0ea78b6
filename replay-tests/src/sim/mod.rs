//! Deterministic simulation: many concurrent deploys through the real runner, over the in-memory
//! store and queue and the simulated cloud, with faults drawn from one seed.
//!
//! One seed fixes everything: the world ([`world::Scenario`]), the fault mix ([`chaos::FaultMix`]),
//! and every choice of the scheduler below. The scheduler is a single thread that owns a few
//! worker slots, each holding the future of one `Runner::handle` (or `Runner::sweep`) call. The
//! fault wrappers yield once before every port call, so polling a slot performs exactly one store,
//! queue or cloud call; the scheduler picks which slot to poll, when to start a slot on the next
//! visible message, when a worker dies (its future is dropped, its message comes back after the
//! visibility timeout), and when virtual time moves. After every poll the invariants are checked
//! ([`check::Checker`]). After the fault phase the world is calm, and every deploy must finish.

pub mod chaos;
pub mod check;
pub mod rng;
pub mod world;

use chaos::{Chaos, ChaosCloud, ChaosQueue, ChaosStore, FaultMix, Injected, Mutation, Shared};
use check::Checker;
use rng::Rng;
use skald_engine::adapters::local::VISIBILITY_SECS;
use skald_engine::adapters::memory::{MemoryQueue, MemoryStore, StoreStats, VirtualClock};
use skald_engine::adapters::sim::SimCloud;
use skald_engine::codec::StoredEvent;
use skald_engine::message::Message;
use skald_engine::ports::Clock;
use skald_engine::runner::{Handled, RunError, Runner, RunnerConfig, Sweep};
use skald_engine::workflow::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use world::Scenario;

/// 2026-11-21T12:00:00Z, as the other tests.
pub const START: Timestamp = Timestamp(1_795_262_400_000);
/// Seeds CI runs; `SKALD_SIM_SEEDS` asks for more.
pub const CI_SEEDS: u64 = 2_000;
/// Every deploy must have ended this long after the faults stopped: the longest timeout, every
/// bounded cleanup step, and the sweeper's grace for lost wakes, with room to spare.
pub const LIVENESS_MS: u64 = 4 * 3600 * 1000;
/// Polls one seed may take: a bound, so a livelock fails instead of spinning.
pub const STEPS_MAX: u64 = 400_000;
/// A slow worker is polled this many times less often than the others.
const SLOW_WORKER_ODDS: u64 = 16;

pub type SimRunner = Runner<ChaosStore, ChaosQueue, ChaosCloud, Arc<VirtualClock>>;

/// What a seed came to when every invariant held.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub mix: FaultMix,
    pub injected: Injected,
    /// Polls: port calls made by workers.
    pub steps: u64,
    /// Virtual time the run covered.
    pub virtual_ms: u64,
    /// How many deploys ended in each end state.
    pub ends: BTreeMap<String, u64>,
    pub histories: BTreeMap<String, Vec<StoredEvent>>,
    pub store_stats: StoreStats,
    /// Messages handled to completion (each a runner invocation).
    pub messages: u64,
    /// Announced effects stale workers carried out after their deploy ended.
    pub stale_repeats: Vec<String>,
}

impl Report {
    /// Every history as NDJSON, deploys in id order: equal reports are equal byte for byte.
    pub fn ndjson(&self) -> String {
        self.histories.values().map(|h| crate::to_ndjson(h)).collect()
    }
}

/// A broken invariant, with what it takes to see it again.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub mutation: Option<Mutation>,
    pub step: u64,
    pub at: Timestamp,
    pub message: String,
    /// Every history as it stood when the invariant broke.
    pub histories: BTreeMap<String, Vec<StoredEvent>>,
    /// The simulated cloud's last calls, oldest first (`FAILURE_CALLS_MAX` at most).
    pub calls: Vec<String>,
}

/// How many of the cloud's last calls a failure keeps: enough to see the effects around it.
const FAILURE_CALLS_MAX: usize = 60;

impl Failure {
    /// The command that replays this seed, printing every deploy's history.
    pub fn command(&self) -> String {
        let mutation = self.mutation.map(|m| format!(" --mutation {}", m.name())).unwrap_or_default();
        format!("cargo run -p skald-replay-tests --release --bin simulate -- --seed {}{mutation} --verbose", self.seed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {} failed at step {} ({}): {}\n  reproduce: {}", self.seed, self.step, self.at, self.message, self.command())
    }
}

/// What a finished job came to.
enum Done {
    Message { receipt: u64, result: Result<Handled, RunError> },
    Sweep(Result<Sweep, RunError>),
}

type Job = Pin<Box<dyn Future<Output = Done>>>;

/// Something outside skald that happens at a set instant.
enum External {
    Submit(usize),
    Halt(String),
    /// (config, undeploy id)
    Undeploy(String, String),
    /// An alarm goes off (true) or quiet again.
    Alarm(String, bool),
}

struct Sim {
    seed: u64,
    rng: Rng,
    scenario: Scenario,
    clock: Arc<VirtualClock>,
    store: MemoryStore,
    queue: Arc<MemoryQueue>,
    cloud: SimCloud,
    chaos: Shared,
    runner: Arc<SimRunner>,
    /// Worker slots `0..workers`, then the sweeper's.
    slots: Vec<Option<Job>>,
    externals: Vec<(Timestamp, External)>,
    next_sweep_at: Timestamp,
    fault_end: Timestamp,
    checker: Checker,
    step: u64,
    messages: u64,
}

/// Runs one seed to the end; `Err` names the first broken invariant.
/// A panic anywhere (an assertion of the runner or the workflow) is a failure of the seed too.
pub fn run(seed: u64, mutation: Option<Mutation>) -> Result<Report, Failure> {
    let mut sim = Sim::new(seed, mutation);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    let message = match outcome {
        Ok(Ok(())) => return Ok(sim.report()),
        Ok(Err(message)) => message,
        Err(panic) => {
            let text = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            format!("panicked: {}", text.unwrap_or_else(|| "(no message)".into()))
        }
    };
    let calls = sim.cloud.calls();
    let calls = calls[calls.len().saturating_sub(FAILURE_CALLS_MAX)..].to_vec();
    Err(Failure { seed, mutation, step: sim.step, at: sim.clock.now(), message, histories: sim.histories(), calls })
}

/// Runs `seeds` and returns the first failure, if any, with how many seeds passed before it.
pub fn run_seeds(seeds: impl IntoIterator<Item = u64>, mutation: Option<Mutation>) -> Result<u64, Failure> {
    let mut passed = 0;
    for seed in seeds {
        run(seed, mutation)?;
        passed += 1;
    }
    Ok(passed)
}

impl Sim {
    fn new(seed: u64, mutation: Option<Mutation>) -> Sim {
        let mut root = Rng::new(seed);
        let mut world_rng = root.fork();
        let mix = FaultMix::draw(&mut root.fork());
        let chaos_rng = root.fork();
        let rng = root.fork();
        let scenario = Scenario::draw(&mut world_rng, seed);

        let clock = VirtualClock::starting_at(START);
        let store = MemoryStore::new();
        let queue = Arc::new(MemoryQueue::new(clock.clone(), VISIBILITY_SECS));
        let cloud = SimCloud::new(clock.clone(), scenario.timings);
        scenario.provision(&cloud);
        let chaos = Chaos::new(chaos_rng, mix.clone(), mutation, store.clone());
        {
            let mut c = chaos.lock().unwrap();
            for planned in &scenario.deploys {
                if planned.doomed_cleanup {
                    c.doomed_cleanup.insert(planned.release_id.clone());
                }
                if planned.doomed_launch {
                    c.doomed_launch.insert(planned.release_id.clone());
                }
            }
        }
        let runner = Arc::new(Runner {
            store: ChaosStore { inner: store.clone(), chaos: chaos.clone() },
            queue: ChaosQueue { inner: queue.clone(), chaos: chaos.clone() },
            cloud: ChaosCloud { inner: cloud.clone(), chaos: chaos.clone() },
            clock: clock.clone(),
            config: RunnerConfig::default(),
        });
        let mut externals: Vec<(Timestamp, External)> = scenario
            .deploys
            .iter()
            .enumerate()
            .map(|(i, d)| (START.plus_ms(d.submit_ms), External::Submit(i)))
            .chain(scenario.halts.iter().map(|(at_ms, config)| (START.plus_ms(*at_ms), External::Halt(config.clone()))))
            .chain(
                scenario
                    .undeploys
                    .iter()
                    .map(|(at_ms, config, id)| (START.plus_ms(*at_ms), External::Undeploy(config.clone(), id.clone()))),
            )
            .chain(scenario.alarms.iter().flat_map(|(name, on_ms, off_ms)| {
                [
                    (START.plus_ms(*on_ms), External::Alarm(name.clone(), true)),
                    (START.plus_ms(*off_ms), External::Alarm(name.clone(), false)),
                ]
            }))
            .collect();
        // Latest first, so the next one due pops off the end; ties keep their drawn order.
        externals.reverse();
        externals.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let fault_end = START.plus_ms(scenario.fault_phase_ms);
        Sim {
            seed,
            rng,
            clock,
            store,
            queue,
            cloud,
            chaos,
            runner,
            slots: (0..=mix.workers).map(|_| None).collect(),
            externals,
            next_sweep_at: START.plus_ms(scenario.sweep_every_ms),
            fault_end,
            scenario,
            checker: Checker::default(),
            step: 0,
            messages: 0,
        }
    }

    fn workers(&self) -> usize {
        self.slots.len() - 1
    }

    fn sweeper_slot(&self) -> usize {
        self.slots.len() - 1
    }

    fn faults_on(&self) -> bool {
        self.chaos.lock().unwrap().active
    }

    fn run(&mut self) -> Result<(), String> {
        let slow_worker = self.chaos.lock().unwrap().mix.slow_worker;
        loop {
            self.step += 1;
            if self.step > STEPS_MAX {
                return Err(format!("liveness: still running after {STEPS_MAX} steps"));
            }
            let now = self.clock.now();
            if self.faults_on() && now >= self.fault_end {
                self.chaos.lock().unwrap().active = false;
            }
            self.release_externals(now);
            if now >= self.next_sweep_at && self.slots[self.sweeper_slot()].is_none() {
                let runner = self.runner.clone();
                let slot = self.sweeper_slot();
                self.slots[slot] = Some(Box::pin(async move { Done::Sweep(runner.sweep().await) }));
                self.next_sweep_at = now.plus_ms(self.scenario.sweep_every_ms);
            }
            let busy: Vec<usize> = (0..self.slots.len()).filter(|s| self.slots[*s].is_some()).collect();
            // At rest once nothing is queued either: a queued automatic undeploy is still to come.
            let queued = self.queue.next_visible_at().is_some();
            if !self.faults_on() && self.externals.is_empty() && busy.is_empty() && !queued && self.all_ended() {
                return self.at_rest();
            }
            if now.ms_since(self.fault_end) > LIVENESS_MS {
                return Err(format!("liveness: deploys still running {} h after the faults stopped", LIVENESS_MS / 3_600_000));
            }
            let crash_rate = self.chaos.lock().unwrap().mix.crash;
            if self.faults_on() && !busy.is_empty() && self.rng.chance(crash_rate) {
                // A worker dies between two port calls: whatever it did so far stands, the rest
                // never happens, and its message comes back after the visibility timeout.
                let victim = *self.rng.pick(&busy);
                self.slots[victim] = None;
                self.chaos.lock().unwrap().injected.crashes += 1;
                continue;
            }
            let idle: Vec<usize> = (0..self.workers()).filter(|s| self.slots[*s].is_none()).collect();
            let visible = self.queue.next_visible_at().is_some_and(|at| at <= now);
            let mut choices: Vec<Option<usize>> = busy
                .iter()
                .filter(|s| !(slow_worker && **s == 0 && busy.len() > 1 && self.rng.below(SLOW_WORKER_ODDS) != 0))
                .map(|s| Some(*s))
                .collect();
            if visible && !idle.is_empty() {
                choices.push(None);
            }
            let only_the_slow_one = slow_worker && busy == [0];
            if choices.is_empty() || (only_the_slow_one && self.faults_on() && self.rng.chance(300)) {
                // Nothing can move now (or the slow worker sleeps on): time passes.
                if !self.advance_time(now) {
                    if let Some(slot) = busy.first() {
                        self.poll(*slot)?;
                        continue;
                    }
                    return Err("liveness: nothing is queued or running, yet deploys have not ended".into());
                }
                continue;
            }
            match *self.rng.pick(&choices) {
                Some(slot) => self.poll(slot)?,
                None => {
                    let slot = *self.rng.pick(&idle);
                    self.start(slot);
                }
            }
        }
    }

    /// Producers submit, people halt, at their instants.
    fn release_externals(&mut self, now: Timestamp) {
        while self.externals.last().is_some_and(|(at, _)| *at <= now) {
            let (_, external) = self.externals.pop().expect("checked");
            if let External::Alarm(name, firing) = &external {
                self.cloud.set_alarm(name, *firing);
                continue;
            }
            let message = match external {
                External::Submit(i) => {
                    let planned = &self.scenario.deploys[i];
                    Message::DeployRequested {
                        release: Box::new(planned.release.clone()),
                        release_id: planned.release_id.clone(),
                        created_at: now,
                    }
                }
                External::Halt(config) => Message::HaltRequested {
                    project: self.scenario.deploys[0].release.project_name.clone(),
                    config,
                    reason: format!("halted by the simulation at {now}"),
                },
                External::Alarm(..) => unreachable!("alarms are set in the cloud, not sent"),
                External::Undeploy(config, undeploy_id) => Message::UndeployRequested {
                    project: self.scenario.deploys[0].release.project_name.clone(),
                    config,
                    reason: format!("undeployed by the simulation at {now}"),
                    undeploy_id,
                    of_release: None,
                },
            };
            self.queue.push(&message, 0);
        }
    }

    /// Moves the clock to the next instant something happens; false if nothing ever will.
    fn advance_time(&mut self, now: Timestamp) -> bool {
        let next = [self.queue.next_visible_at(), self.externals.last().map(|(at, _)| *at), Some(self.next_sweep_at)]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min();
        let still_work = !self.all_ended() || !self.externals.is_empty() || self.queue.next_visible_at().is_some();
        match next {
            Some(at) if still_work || self.faults_on() => {
                self.clock.advance_to(at);
                true
            }
            _ => false,
        }
    }

    fn start(&mut self, slot: usize) {
        let Some(delivery) = self.queue.receive() else { return };
        let runner = self.runner.clone();
        let redelivered = delivery.receive_count > 1;
        let receipt = delivery.receipt;
        self.chaos.lock().unwrap().loaded[slot] = None;
        self.slots[slot] = Some(Box::pin(async move {
            let result = runner.handle(delivery.message, None, redelivered).await;
            Done::Message { receipt, result }
        }));
    }

    /// Runs one slot up to its next port call (performing the one it was waiting at), then checks
    /// every invariant.
    fn poll(&mut self, slot: usize) -> Result<(), String> {
        self.chaos.lock().unwrap().current_worker = slot;
        let job = self.slots[slot].as_mut().expect("polling a busy slot");
        let polled = job.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(done) = polled {
            self.slots[slot] = None;
            self.finish(done)?;
        }
        let call_ms_max = self.chaos.lock().unwrap().mix.call_ms_max;
        if call_ms_max > 0 {
            self.clock.advance_ms(self.rng.below(call_ms_max + 1));
        }
        let chaos = self.chaos.lock().unwrap();
        let in_flight = (0..self.slots.len()).filter(|s| self.slots[*s].is_some()).filter_map(|s| chaos.loaded[s].clone()).collect();
        self.checker.after_step(&self.store, &self.cloud, &chaos, &in_flight)
    }

    fn finish(&mut self, done: Done) -> Result<(), String> {
        match done {
            Done::Message { receipt, result } => {
                self.messages += 1;
                match result {
                    Ok(_) => {
                        let mut chaos = self.chaos.lock().unwrap();
                        let rate = chaos.mix.redeliver;
                        if chaos.active && self.rng.chance(rate) {
                            chaos.injected.redeliveries += 1;
                        } else {
                            self.queue.delete(receipt);
                        }
                    }
                    Err(RunError::Store(_) | RunError::Queue(_) | RunError::Notify(_)) => {}
                    Err(e @ (RunError::Corrupt { .. } | RunError::Rejected(_))) => {
                        return Err(format!("the runner refused a message: {e}"))
                    }
                }
            }
            Done::Sweep(Ok(sweep)) if !sweep.unreadable.is_empty() => {
                return Err(format!("the sweeper found unreadable histories: {:?}", sweep.unreadable));
            }
            Done::Sweep(_) => {}
        }
        Ok(())
    }

    /// Every planned deploy, and every undeploy that was started, has ended.
    fn all_ended(&self) -> bool {
        self.expected().iter().all(|deploy| {
            let history = self.store.events_after(deploy, 0);
            history.last().is_some_and(|e| e.kind == "DeploySucceeded" || e.kind == "DeployFailed")
        })
    }

    fn expected(&self) -> BTreeSet<String> {
        self.scenario.deploys.iter().map(|d| d.release_id.clone()).chain(self.store.deploy_ids()).collect()
    }

    fn at_rest(&self) -> Result<(), String> {
        // Templates are what clones are made from: no deploy or undeploy may delete one.
        if let Some(gone) = self.scenario.template_names().into_iter().find(|name| self.cloud.template(name).is_none()) {
            return Err(format!("at rest: the template ASG {gone} was deleted"));
        }
        let expected: Vec<String> = self.expected().into_iter().collect();
        let chaos = self.chaos.lock().unwrap();
        self.checker.at_rest(&self.store, &self.cloud, &chaos, &expected)
    }

    fn histories(&self) -> BTreeMap<String, Vec<StoredEvent>> {
        self.store.deploy_ids().into_iter().map(|d| (d.clone(), self.store.history(&d))).collect()
    }

    fn report(&self) -> Report {
        let chaos = self.chaos.lock().unwrap();
        Report {
            seed: self.seed,
            mix: chaos.mix.clone(),
            injected: chaos.injected.clone(),
            steps: self.step,
            virtual_ms: self.clock.now().ms_since(START),
            ends: self.checker.ends(),
            histories: self.histories(),
            store_stats: self.store.stats(),
            messages: self.messages,
            stale_repeats: chaos.stale_repeats.clone(),
        }
    }
}
