//! The invariants, checked after every step of the simulation (every port call of every worker),
//! not only at the end. Each check reads the store and the cloud as an outside observer would;
//! histories are read incrementally, so a check costs what the step added.

use super::chaos::Chaos;
use skald_engine::adapters::memory::MemoryStore;
use skald_engine::adapters::sim::SimCloud;
use skald_engine::codec;
use skald_engine::ports::LockKey;
use skald_engine::workflow::command::Command;
use skald_engine::workflow::event::Cleanliness;
use skald_engine::workflow::names::{target_group_name, TAG_CONFIG, TAG_PROJECT, TAG_RELEASE, TAG_SERVICE};
use skald_engine::workflow::release::Traffic;
use skald_engine::workflow::resources::Weighted;
use skald_engine::workflow::state::{Lock, TeardownStage, ATTEMPTS_MAX};
use skald_engine::workflow::{evolve, End, Event, Recorded, State};
use std::collections::{BTreeMap, BTreeSet};

/// What the checker knows of one deploy: its folded state and where its chain stands.
struct Tracked {
    state: State,
    last_hash: String,
    /// The project-config's ASGs when the deploy took the lock: what a clean failure leaves.
    asgs_at_lock: Option<BTreeSet<String>>,
    /// The order in which deploys took locks, to find each project-config's last holder.
    locked_as: Option<u64>,
    /// What the production rule of web's listener forwarded to when the deploy took the lock
    /// (traffic-shifted releases): what a clean failure restores.
    forward_at_lock: Option<Option<Vec<Weighted>>>,
}

#[derive(Default)]
pub struct Checker {
    deploys: BTreeMap<String, Tracked>,
    /// Every ASG some history announced a launch of.
    mentioned: BTreeSet<String>,
    /// Every target group some history announced the creation of, with the deploy.
    mentioned_groups: BTreeMap<String, String>,
    locks_taken: u64,
    after_end_reported: usize,
    /// Deploys that ended, whose end state is judged once no worker holding them is in flight.
    ended_unjudged: Vec<String>,
}

/// A rollout is bounded by its timeout whatever its instances do (Odin's rules step past a bad
/// instance instead of waiting on it): once every service is launched, nothing but the timeout
/// (or a halt from outside) is decided for a deploy past its deadline that is still getting
/// healthy, not one more health check, not one more step. An outcome of a command decided before
/// the deadline may land after it; traffic shifts have deadlines of their own.
fn check_within_timeout(deploy: &str, before: &State, recorded: &Recorded) -> Result<(), String> {
    let Some(deadline) = before.deadline else { return Ok(()) };
    let rolling_out = before.resolved.is_some()
        && before.failure.is_none()
        && !before.healthy
        && !before.is_shifting()
        && before.pending.is_none()
        && before.services.values().all(|p| p.launched);
    let decided = matches!(recorded.event, Event::CommandStarted { .. } | Event::HealthObserved { .. } | Event::ServicesHealthy);
    if rolling_out && decided && recorded.at > deadline {
        return Err(format!(
            "deploy {deploy} recorded {} at seq {}, {} ms past its deadline, instead of timing out",
            recorded.event.name(),
            recorded.seq,
            recorded.at.ms_since(deadline)
        ));
    }
    Ok(())
}

/// The ASGs the cloud holds for a project-config, with their release ids.
fn asgs_of(cloud: &SimCloud, key: &LockKey) -> BTreeMap<String, String> {
    cloud
        .asgs()
        .into_iter()
        .filter(|(_, a)| a.tags.get(TAG_PROJECT) == Some(&key.project) && a.tags.get(TAG_CONFIG) == Some(&key.config))
        .map(|(name, a)| (name, a.tags.get(TAG_RELEASE).cloned().unwrap_or_default()))
        .collect()
}

fn key_of(state: &State) -> LockKey {
    let release = state.release();
    LockKey { project: release.project_name.clone(), config: release.config_name.clone() }
}

impl Checker {
    /// Reads what the last step appended and checks every invariant. The error says which broke.
    ///
    /// `in_flight` names the deploys some running worker has loaded. A deploy's end state is judged
    /// once none has: a stale worker may still be carrying out a launch it loaded long ago, and
    /// undoes it when its append loses (see `runner::undo_stale_create`).
    pub fn after_step(&mut self, store: &MemoryStore, cloud: &SimCloud, chaos: &Chaos, in_flight: &BTreeSet<String>) -> Result<(), String> {
        for deploy in store.deploy_ids() {
            self.read_new_events(&deploy, store, cloud)?;
        }
        let (judge_now, wait): (Vec<String>, Vec<String>) = self.ended_unjudged.drain(..).partition(|d| !in_flight.contains(d));
        self.ended_unjudged = wait;
        for deploy in judge_now {
            let tracked = &self.deploys[&deploy];
            check_end(&deploy, tracked, cloud, chaos, !self.locked_since(tracked))?;
        }
        self.check_locks(store)?;
        self.check_cloud_is_explained(cloud)?;
        check_weights(cloud)?;
        if let Some(acted) = chaos.after_end.get(self.after_end_reported) {
            self.after_end_reported = chaos.after_end.len();
            return Err(format!("a deploy acted after its end: {acted}"));
        }
        Ok(())
    }

    /// Sequences gapless and hash-chained, every event decodes and folds, nothing after the end;
    /// and the end state, checked against the cloud the moment it is recorded.
    /// Whether another deploy of the same project-config took the lock after `tracked` did: then
    /// the project-config's ASGs are that deploy's business, and only `tracked`'s own are judged.
    fn locked_since(&self, tracked: &Tracked) -> bool {
        let key = key_of(&tracked.state);
        let mine = tracked.locked_as.unwrap_or(0);
        self.deploys.values().any(|other| other.locked_as.is_some_and(|order| order > mine) && key_of(&other.state) == key)
    }

    fn read_new_events(&mut self, deploy: &str, store: &MemoryStore, cloud: &SimCloud) -> Result<(), String> {
        let tracked = self.deploys.entry(deploy.to_string()).or_insert_with(|| Tracked {
            state: State::default(),
            last_hash: String::new(),
            asgs_at_lock: None,
            locked_as: None,
            forward_at_lock: None,
        });
        let new = store.events_after(deploy, tracked.state.seq);
        if new.is_empty() {
            return Ok(());
        }
        let (recorded, state) = codec::read_after(tracked.state.clone(), &tracked.last_hash, &new)
            .map_err(|e| format!("deploy {deploy}: the history does not verify and fold: {e}"))?;
        let mut before = tracked.state.clone();
        for r in &recorded {
            check_within_timeout(deploy, &before, r)?;
            before = evolve(before, r);
        }
        for r in &recorded {
            match &r.event {
                Event::CommandStarted { command: Command::Launch { spec } } => {
                    self.mentioned.insert(spec.asg_name.clone());
                }
                Event::ServiceLaunched { asg, .. } => {
                    self.mentioned.insert(asg.clone());
                }
                Event::CommandStarted { command: Command::CreateTargetGroup { name, .. } } => {
                    self.mentioned_groups.insert(name.clone(), deploy.to_string());
                }
                Event::LockAcquired { .. } => {
                    self.locks_taken += 1;
                    tracked.locked_as = Some(self.locks_taken);
                    tracked.asgs_at_lock = Some(asgs_of(cloud, &key_of(&state)).into_keys().collect());
                    tracked.forward_at_lock = traffic_of(&state).map(|t| production_forward(cloud, t));
                }
                _ => {}
            }
        }
        tracked.last_hash = new.last().expect("not empty").hash.clone();
        let newly_ended = tracked.state.end.is_none() && state.end.is_some();
        tracked.state = state;
        if newly_ended {
            self.ended_unjudged.push(deploy.to_string());
        }
        Ok(())
    }

    /// At most one deploy holds a project-config's lock (by the histories), and a lock item in
    /// the store always belongs to a deploy whose history holds it.
    fn check_locks(&self, store: &MemoryStore) -> Result<(), String> {
        let mut holders: BTreeMap<LockKey, Vec<&str>> = BTreeMap::new();
        for (deploy, tracked) in &self.deploys {
            if matches!(tracked.state.lock, Lock::Held { .. }) && tracked.state.end.is_none() {
                holders.entry(key_of(&tracked.state)).or_default().push(deploy);
            }
        }
        if let Some((key, deploys)) = holders.iter().find(|(_, d)| d.len() > 1) {
            return Err(format!("{} deploys hold the lock of {} {} at once: {deploys:?}", deploys.len(), key.project, key.config));
        }
        for (key, item) in store.locks() {
            let holder = holders.get(&key).map(|d| d[0]);
            if holder != Some(item.owner.as_str()) {
                return Err(format!(
                    "the lock item of {} {} names {}, but the histories say {holder:?} holds it",
                    key.project, key.config, item.owner
                ));
            }
        }
        // The sweeper sees every unfinished deploy: a deploy that has not taken its lock has a
        // watch note, exactly until it takes the lock or ends.
        let notes = store.watch_notes();
        for (deploy, tracked) in &self.deploys {
            let state = &tracked.state;
            let unlocked = state.request.is_some() && matches!(state.lock, Lock::Untried | Lock::Denied) && state.end.is_none();
            if unlocked != notes.contains_key(deploy) {
                return Err(format!("deploy {deploy} is yet to take its lock: {unlocked}, but its watch note says {}", !unlocked));
            }
        }
        Ok(())
    }

    /// The cloud never holds an ASG or a target group of skald's that no history mentions.
    fn check_cloud_is_explained(&self, cloud: &SimCloud) -> Result<(), String> {
        if let Some(name) = cloud.asg_names().into_iter().find(|name| !self.mentioned.contains(name)) {
            return Err(format!("the cloud holds ASG {name}, which no history mentions"));
        }
        match cloud.own_target_groups().into_keys().find(|name| !self.mentioned_groups.contains_key(name)) {
            Some(name) => Err(format!("the cloud holds target group {name}, which no history mentions")),
            None => Ok(()),
        }
    }

    /// At rest, a release's target group exists only with its ASG (or left by a dirty end).
    fn check_groups_at_rest(&self, cloud: &SimCloud) -> Result<(), String> {
        let asgs = cloud.asgs();
        let with_asg: BTreeSet<String> =
            asgs.iter().map(|(name, asg)| target_group_name(asg.tags.get(TAG_SERVICE).map_or("", String::as_str), name)).collect();
        for name in cloud.own_target_groups().into_keys().filter(|name| !with_asg.contains(name)) {
            let deploy = &self.mentioned_groups[&name];
            let dirty = self.deploys.get(deploy).and_then(|t| t.state.end.as_ref()).is_some_and(|end| end.name() == "FailureDirty");
            if !dirty {
                return Err(format!("target group {name} of deploy {deploy} outlived its ASG"));
            }
        }
        Ok(())
    }

    /// Once the world is calm and quiet: every deploy ended (liveness), no lock is held, and each
    /// project-config's cloud is what its last lock holder's end says it should be.
    pub fn at_rest(&self, store: &MemoryStore, cloud: &SimCloud, chaos: &Chaos, expected: &[String]) -> Result<(), String> {
        for deploy in expected {
            match self.deploys.get(deploy) {
                Some(tracked) if tracked.state.end.is_some() => {}
                Some(tracked) => {
                    return Err(format!("deploy {deploy} never finished: stuck at seq {} ({})", tracked.state.seq, tracked.state.phase()))
                }
                None => return Err(format!("deploy {deploy} was never recorded")),
            }
        }
        if let Some((key, item)) = store.locks().into_iter().next() {
            return Err(format!("every deploy ended, yet {} holds the lock of {} {}", item.owner, key.project, key.config));
        }
        let mut last_holders: BTreeMap<LockKey, (u64, &str, &Tracked)> = BTreeMap::new();
        for (deploy, tracked) in &self.deploys {
            if let Some(order) = tracked.locked_as {
                let entry = last_holders.entry(key_of(&tracked.state)).or_insert((order, deploy, tracked));
                if order > entry.0 {
                    *entry = (order, deploy, tracked);
                }
            }
        }
        for (_, deploy, tracked) in last_holders.values() {
            check_end(deploy, tracked, cloud, chaos, true).map_err(|e| format!("at rest: {e}"))?;
        }
        self.check_groups_at_rest(cloud)?;
        self.check_cloud_is_explained(cloud)
    }

    pub fn ends(&self) -> BTreeMap<String, u64> {
        let mut ends = BTreeMap::new();
        for tracked in self.deploys.values() {
            let name = tracked.state.end.as_ref().map_or("unfinished", End::name);
            *ends.entry(name.to_string()).or_default() += 1;
        }
        ends
    }
}

/// Every weighted forward of every listener rule sums to 100: no step, crash or stale worker
/// ever leaves a rule sending part of the traffic nowhere.
fn check_weights(cloud: &SimCloud) -> Result<(), String> {
    for (listener, rules) in cloud.listeners() {
        for rule in rules.iter().filter(|r| !r.forward.is_empty()) {
            let total: u32 = rule.forward.iter().map(|w| w.weight).sum();
            if total != 100 {
                return Err(format!(
                    "the rule at priority {:?} of {listener} forwards weights summing to {total}: {:?}",
                    rule.priority, rule.forward
                ));
            }
        }
    }
    Ok(())
}

/// The traffic block of a deploy's release, if it shifts traffic.
fn traffic_of(state: &State) -> Option<&Traffic> {
    state.release().services.values().find_map(|s| s.traffic.as_ref())
}

/// What the production rule forwards to now; `None` when there is no production rule.
fn production_forward(cloud: &SimCloud, traffic: &Traffic) -> Option<Vec<Weighted>> {
    cloud.rule_at(&traffic.listener, traffic.priority).map(|r| r.forward)
}

/// Traffic after an end: Success leaves the rule forwarding all of it to the release's own
/// group; a clean failure leaves it as it was when the deploy took the lock.
fn check_traffic_end(deploy: &str, tracked: &Tracked, cloud: &SimCloud) -> Result<(), String> {
    let state = &tracked.state;
    let Some(traffic) = traffic_of(state) else { return Ok(()) };
    let now = production_forward(cloud, traffic);
    match state.end.as_ref().expect("checked at the end") {
        End::Success => {
            let own = state.services.values().find_map(|s| s.traffic.as_ref()?.target_group.clone());
            let wanted = own.map(|target_group| vec![Weighted { target_group, weight: 100 }]);
            if now != wanted {
                return Err(format!("deploy {deploy} succeeded, yet its rule forwards {now:?}, not {wanted:?}"));
            }
        }
        End::Failure { cleanliness: Cleanliness::Clean, .. } => {
            let before = tracked.forward_at_lock.clone().flatten();
            if tracked.forward_at_lock.is_some() && now != before {
                return Err(format!("deploy {deploy} failed clean, but its rule went from {before:?} to {now:?}"));
            }
        }
        End::Failure { cleanliness: Cleanliness::Dirty, .. } => {}
    }
    Ok(())
}

/// Success leaves only the new release's ASGs for its project-config; FailureClean leaves exactly
/// those there when it took the lock; FailureDirty only after a cleanup error that persisted past
/// its retry bound.
/// With `whole` false (another deploy has the project-config since), only the deploy's own ASGs
/// are judged.
fn check_end(deploy: &str, tracked: &Tracked, cloud: &SimCloud, chaos: &Chaos, whole: bool) -> Result<(), String> {
    let state = &tracked.state;
    let key = key_of(state);
    let release_id = &state.request.as_ref().expect("an ended deploy was requested").release_id;
    let asgs = asgs_of(cloud, &key);
    if whole {
        check_traffic_end(deploy, tracked, cloud)?;
    }
    match state.end.as_ref().expect("checked at the end") {
        End::Success => {
            if let Some((name, _)) = asgs.iter().find(|(_, release)| whole && *release != release_id) {
                return Err(format!("deploy {deploy} succeeded, yet {name} of another release remains"));
            }
            if let Some(service) = state.services.values().find(|s| whole && !asgs.contains_key(&s.asg)) {
                return Err(format!("deploy {deploy} succeeded without its ASG {}", service.asg));
            }
        }
        End::Failure { cleanliness: Cleanliness::Clean, .. } => {
            if let Some((name, _)) = asgs.iter().find(|(_, release)| *release == release_id) {
                return Err(format!("deploy {deploy} failed clean, yet its ASG {name} remains"));
            }
            if let Some(before) = tracked.asgs_at_lock.as_ref().filter(|_| whole) {
                let now: BTreeSet<String> = asgs.into_keys().collect();
                if now != *before {
                    return Err(format!("deploy {deploy} failed clean, but the ASGs went from {before:?} to {now:?}"));
                }
            }
        }
        End::Failure { cleanliness: Cleanliness::Dirty, .. } => {
            let abandoned: Vec<&str> =
                state.teardown.iter().filter(|t| matches!(t.stage, TeardownStage::Abandoned { .. })).map(|t| t.asg.as_str()).collect();
            if abandoned.is_empty() {
                return Err(format!("deploy {deploy} ended FailureDirty without abandoning any teardown"));
            }
            for asg in abandoned {
                let failures = chaos.teardown_failures.get(asg).copied().unwrap_or(0);
                if failures < ATTEMPTS_MAX {
                    return Err(format!(
                        "deploy {deploy} abandoned {asg} after {failures} failed teardown calls, fewer than its bound {ATTEMPTS_MAX}"
                    ));
                }
            }
        }
    }
    Ok(())
}
