//! `decide`: given a deploy's state and the current instant, what happens next.
//!
//! The answer is one of: record facts that need no I/O (`Emit`), carry out a command (`Act`),
//! come back later (`Wait`), or nothing, ever again (`Finished`). `decide` is total and pure:
//! the same state and instant always give the same decision, which is what lets a replay check
//! that today's code would have done what the history says.

use super::capacity;
use super::command::{Command, Ebs, HealthTarget, LaunchSpec, Placement};
use super::event::{Cleanliness, ErrorKind, Event, Recorded};
use super::health::AsgSize;
use super::names;
use super::release::Traffic;
use super::resources::{Query, ResolvedTraffic};
use super::safe_release;
use super::settings::Settings;
use super::state::{Lock, LockWait, ServiceProgress, State, Teardown, TeardownStage, TrafficProgress, ATTEMPTS_MAX};
use super::time::Timestamp;
use super::validate::{validate, Problem};

/// Odin waits this long after launching before the first health check, so that instances with
/// broken user data have time to fail their EC2 checks instead of looking briefly healthy.
pub const FIRST_HEALTH_CHECK_SECS: u64 = 90;
pub const DETACH_POLL_SECS: u64 = 5;
/// How long to wait for load balancers to drain an old ASG before deleting it regardless.
pub const DETACH_WAIT_SECS_MAX: u64 = 300;
/// The lock's lease runs this long past the deploy's timeout: enough for every bounded cleanup
/// step to finish, so a lease only lapses for a deploy that is truly gone.
pub const LOCK_LEASE_MARGIN_SECS: u64 = 6 * 3600;
const RETRY_BACKOFF_SECS_MIN: u64 = 5;
/// Pauses between tries of a lock held by a cancelled deploy: 5 s, doubling, at most 60 s.
const LOCK_RETRY_SECS_MIN: u64 = 5;
const LOCK_RETRY_SECS_MAX: u64 = 60;
const RETRY_BACKOFF_SECS_MAX: u64 = 60;

// One decision exists per step and lives for a moment: boxing the command would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Append these events; nothing outside the log changes.
    Emit(Vec<Event>),
    /// Carry out this command and record its outcome.
    Act(Command),
    /// Nothing to do before this instant.
    Wait { until: Timestamp },
    /// The deploy has ended (or never began): nothing will ever be done.
    Finished,
}

pub fn decide(state: &State, now: Timestamp) -> Decision {
    if state.is_finished() || state.request.is_none() {
        return Decision::Finished;
    }
    // An announced effect is carried out (again) before anything else: effects are idempotent,
    // and leaving one half-done would leak what it created.
    if let Some(command) = &state.pending {
        return Decision::Act(command.clone());
    }
    if !state.validated && state.failure.is_none() {
        return validate_request(state);
    }
    if let Some(decision) = shift_back(state, now) {
        return decision;
    }
    if let Some(teardown) = next_teardown(state) {
        return slow_start_wait(state, now).unwrap_or_else(|| tear_down(state, teardown, now));
    }
    if let Some(wait) = retry_backoff(state, now) {
        return wait;
    }
    if cleanup_ready(state) {
        return end(state);
    }
    match (&state.lock, &state.waiting) {
        (Lock::Untried, Some(wait)) => return wait_for_lock(state, wait, now),
        (Lock::Untried, None) => return acquire_lock(state, now),
        (Lock::Held { .. }, _) => {}
        (Lock::Denied | Lock::Released, _) => unreachable!("lock {:?} without a failure or an end", state.lock),
    }
    if let Some(decision) = safe_release_step(state) {
        return decision;
    }
    if state.undeploy.is_some() {
        // Not planned yet, or `cleanup_ready` would have held.
        return Decision::Act(Command::ResolveResources { query: Box::new(Query::for_undeploy(state.release())) });
    }
    if state.resolved.is_none() {
        let request = state.request.as_ref().expect("checked by decide");
        let ami_owners = Settings::ami_owners(request.settings.as_ref(), &request.release);
        let mut query = Query { ami_owners, ..Query::for_release(&request.release) };
        if !state.placement_rules() {
            query.placement_groups.clear();
        }
        return Decision::Act(Command::ResolveResources { query: Box::new(query) });
    }
    if state.healthy {
        return final_capacity(state);
    }
    deploying(state, now)
}

/// Odin's `ValidateSafeRelease`, once the lock is held (so the live release cannot change under
/// the deploy) and before anything is looked up or launched: find the live release in the log,
/// then refuse a `safe_release` that changes more than its AMI and user data. Only a release
/// asking for the check takes this step, so every other history decides as it always did.
fn safe_release_step(state: &State) -> Option<Decision> {
    let request = state.request.as_ref().expect("checked by decide");
    if state.undeploy.is_some() || !request.release.safe_release || state.resolved.is_some() {
        return None;
    }
    let Some(live) = &state.live_release else {
        let release = &request.release;
        return Some(Decision::Act(Command::FindLiveRelease {
            project: release.project_name.clone(),
            config: release.config_name.clone(),
        }));
    };
    let problems = safe_release::check(live.release.as_ref(), &request.release);
    let live_release = live.release_id.clone().unwrap_or_default();
    (!problems.is_empty()).then(|| Decision::Emit(vec![Event::SafeReleaseRefused { live_release, problems }]))
}

fn validate_request(state: &State) -> Decision {
    let request = state.request.as_ref().expect("checked by decide");
    if let Some(undeploy) = &state.undeploy {
        return validate_undeploy(state, &undeploy.of_release);
    }
    let mut problems = Vec::new();
    // A freeze refuses the deploy before anything else, naming who froze it, when and why.
    if let Some(freeze) = &request.frozen {
        let release = &request.release;
        let message = format!(
            "{} {} is {freeze}; deploys are refused until `skald unfreeze {} {}`",
            release.project_name, release.config_name, release.project_name, release.config_name
        );
        problems.push(Problem::new("freeze", message));
    }
    problems.extend(validate(&request.release));
    problems.extend(Settings::check(request.settings.as_ref(), &request.release));
    if let Err(message) = names::check_release_id(&request.release_id) {
        problems.push(Problem::new("release_id", message));
    }
    // Freshness is judged against when skald recorded the request, not against `now`, so a replay
    // reaches the same verdict years later.
    let (created, received, window) = (request.created_at, request.requested_at, request.freshness);
    if received.ms_since(created) > window.max_age_secs * 1000 {
        let message = format!("{created} is more than {} s before skald received it at {received}", window.max_age_secs);
        problems.push(Problem::new("created_at", message));
    }
    if created.ms_since(received) > window.max_ahead_secs * 1000 {
        let message = format!("{created} is more than {} s after skald received it at {received}", window.max_ahead_secs);
        problems.push(Problem::new("created_at", message));
    }
    if problems.is_empty() {
        Decision::Emit(vec![Event::ReleaseValidated])
    } else {
        Decision::Emit(vec![Event::ReleaseRejected { problems }])
    }
}

/// The safety: an undeploy removes a live release only if that release allows it.
fn validate_undeploy(state: &State, of_release: &str) -> Decision {
    let release = state.release();
    if release.allow_undeploy() {
        return Decision::Emit(vec![Event::ReleaseValidated]);
    }
    let why = match release.allow_undeploy {
        Some(false) => "says `allow_undeploy: false`".to_string(),
        _ => format!("is of the `{}` config, where undeploy is off unless the release allows it", release.config_name),
    };
    let message = format!("the live release {of_release} {why}: deploy a release with `allow_undeploy: true` first");
    Decision::Emit(vec![Event::ReleaseRejected { problems: vec![Problem::new("allow_undeploy", message)] }])
}

/// Waiting out an older deploy that holds the lock (`on_concurrent_deploy: rollback`): ask it to
/// stop once, then try the lock again with a growing pause, or at once when told it ended
/// (`LockFreed`, recorded by its runner); the pauses only matter when that news is lost; `ROLLBACK_WAIT_SECS_MAX`
/// bounds the whole wait (the denial past it fails the deploy).
fn wait_for_lock(state: &State, wait: &LockWait, now: Timestamp) -> Decision {
    if !wait.cancelled {
        let request = state.request.as_ref().expect("waiting without a request");
        let reason = format!("cancelled by deploy {} (on_concurrent_deploy: rollback)", request.release_id);
        return Decision::Act(Command::CancelDeploy { deploy: wait.holder.clone(), reason });
    }
    let exponent = (wait.denials - 1).min(8);
    let until = wait.denied_at.plus_secs((LOCK_RETRY_SECS_MIN << exponent).min(LOCK_RETRY_SECS_MAX));
    if now < until && !wait.freed {
        return Decision::Wait { until };
    }
    acquire_lock(state, now)
}

fn acquire_lock(state: &State, now: Timestamp) -> Decision {
    let release = state.release();
    // A traffic shift runs past the release's timeout (its steps have their own bounds), so the
    // lease covers the longest shift too: a lease must only lapse for a deploy that is gone.
    let shifts_secs_max: u64 = release.services.values().filter_map(|s| s.traffic.as_ref()).map(Traffic::duration_secs_max).sum();
    let lease_until = now.plus_secs(release.timeout_secs() + shifts_secs_max + LOCK_LEASE_MARGIN_SECS);
    Decision::Act(Command::AcquireLock { project: release.project_name.clone(), config: release.config_name.clone(), lease_until })
}

/// After a failed step, wait out an exponential backoff before trying it again.
fn retry_backoff(state: &State, now: Timestamp) -> Option<Decision> {
    if state.retry.attempts == 0 {
        return None;
    }
    let exponent = (state.retry.attempts - 1).min(8);
    let backoff_secs = (RETRY_BACKOFF_SECS_MIN << exponent).min(RETRY_BACKOFF_SECS_MAX);
    let until = state.retry.last_failure_at.plus_secs(backoff_secs);
    (now < until).then_some(Decision::Wait { until })
}

fn deploying(state: &State, now: Timestamp) -> Decision {
    // Not `launch_started`: a launch whose last attempt failed transiently was started but not
    // done, and is tried again (after its backoff) until it lands or runs out of attempts.
    if let Some((name, _)) = state.services.iter().find(|(_, p)| p.traffic.as_ref().is_some_and(|t| t.target_group.is_none())) {
        return Decision::Act(create_target_group(state, name));
    }
    if let Some((name, _)) = state.services.iter().find(|(_, p)| !p.launched) {
        return Decision::Act(Command::Launch { spec: Box::new(launch_spec(state, name)) });
    }
    // While traffic shifts, the health timeout counts from the latest shift and only an
    // unhealthy check can run it out: a long bake of a healthy release is not a timeout.
    let (deadline, timeout_secs) = health_deadline(state);
    let healthy_while_shifting = state.is_shifting() && state.services.values().all(ServiceProgress::is_healthy);
    if now >= deadline && !healthy_while_shifting {
        return Decision::Emit(vec![Event::TimedOut { timeout_secs }]);
    }
    if let Some(decision) = judge_health(state, now) {
        return decision;
    }
    let next_check = match state.last_observed_at {
        Some(observed) => observed.plus_secs(state.release().health_poll_secs()),
        None => {
            let first_wait_secs = FIRST_HEALTH_CHECK_SECS.min(state.release().timeout_secs() / 2);
            state.last_launch_at.expect("launched without an instant").plus_secs(first_wait_secs)
        }
    };
    if now < next_check {
        return Decision::Wait { until: next_check.min(deadline) };
    }
    Decision::Act(Command::ObserveHealth { targets: health_targets(state) })
}

/// When services must be healthy by, and the timeout that sets it. Until traffic reaches the new
/// release that is the release's timeout; from then on, each step of the shift has its own
/// health timeout, counted from the latest shift.
fn health_deadline(state: &State) -> (Timestamp, u64) {
    let latest_shift =
        state.services.iter().filter_map(|(name, p)| Some((p.traffic.as_ref().filter(|t| t.weight > 0)?.shifted_at?, name))).max();
    match latest_shift {
        Some((shifted_at, name)) => {
            let timeout_secs = traffic_settings(state, name).health_timeout_secs();
            (shifted_at.plus_secs(timeout_secs), timeout_secs)
        }
        None => (state.deadline.expect("deploying without a deadline"), state.release().timeout_secs()),
    }
}

/// What the latest health counts call for: a halt, the next traffic step, success, or the next
/// step of a strategy.
fn judge_health(state: &State, now: Timestamp) -> Option<Decision> {
    if let Some(halt) = halt_on_health(state) {
        return Some(Decision::Emit(vec![halt]));
    }
    if state.services.values().all(ServiceProgress::is_healthy) {
        return Some(traffic_step(state, now).unwrap_or_else(|| Decision::Emit(vec![Event::ServicesHealthy])));
    }
    if state.odin_rules() {
        return state.services.iter().find_map(|(name, progress)| odin_capacity_step(name, progress));
    }
    state.services.iter().find_map(|(name, progress)| {
        let all_current_healthy = progress.health.is_some_and(|h| h.healthy >= progress.desired);
        let next = progress.plan.next(progress.desired).filter(|_| all_current_healthy)?;
        Some(set_capacity(name, progress, AsgSize { min_size: progress.plan.min_while_deploying(next), desired: next }))
    })
}

/// What in the latest health counts stops the deploy: an ASG gone (Odin's rules; the first rules
/// waited for the timeout), or more instances terminating than tolerated (under Odin's rules,
/// none while a canary is the only instance).
fn halt_on_health(state: &State) -> Option<Event> {
    let odin = state.odin_rules();
    state.services.iter().find_map(|(name, progress)| {
        let health = progress.health.unwrap_or_default();
        if odin && health.missing {
            return Some(Event::AsgMissing { service: name.clone(), asg: progress.asg.clone() });
        }
        let allowed = if odin { progress.plan.terminations_allowed(&health) } else { progress.plan.max_terms };
        (health.terminating > allowed).then(|| Event::TerminationsExceeded {
            service: name.clone(),
            terminating: health.terminating,
            max_terms: allowed,
        })
    })
}

/// Odin's rules, once per health check and service: the size the strategy asks for given the
/// instances found, never below what the ASG has (`capacity::never_lower`). What the ASG has is
/// what the check read from the cloud when the adapter reports it (so a size a scaling policy or
/// a person lowered is set back), else what skald last set.
fn odin_capacity_step(name: &str, progress: &ServiceProgress) -> Option<Decision> {
    let health = progress.health.filter(|_| !progress.resized_since_check)?;
    let current = health.size.unwrap_or(AsgSize { min_size: progress.min_size, desired: progress.desired });
    let safe = capacity::never_lower(progress.plan.wanted_size(&health), current)?;
    Some(set_capacity(name, progress, safe))
}

fn set_capacity(name: &str, progress: &ServiceProgress, size: AsgSize) -> Decision {
    Decision::Act(Command::SetCapacity {
        service: name.to_string(),
        asg: progress.asg.clone(),
        min_size: size.min_size,
        desired: size.desired,
    })
}

/// The next step of a traffic shift, once every service is healthy; `None` when every
/// traffic-shifted service has had all its traffic through its bake time (the release is live).
/// Services shift one at a time. Between steps: `wait_per_step`, then a health check made after
/// the latest shift must show every service healthy (the gate; an unhealthy service times out
/// at `health_deadline`).
fn traffic_step(state: &State, now: Timestamp) -> Option<Decision> {
    let latest_shift = state.services.values().filter_map(|p| p.traffic.as_ref()?.shifted_at).max();
    let checked = state.services.values().filter_map(|p| p.traffic.as_ref()).all(|t| t.observed_since_shift);
    let Some((name, traffic)) = state.services.iter().find_map(|(name, p)| Some((name, p.traffic.as_ref().filter(|t| t.weight < 100)?)))
    else {
        return latest_shift.and_then(|_| bake(state, now, checked));
    };
    let settings = traffic_settings(state, name);
    if let Some(shifted_at) = latest_shift {
        let due = shifted_at.plus_secs(settings.wait_per_step_secs());
        if now < due {
            return Some(Decision::Wait { until: due });
        }
        if !checked {
            return Some(Decision::Act(Command::ObserveHealth { targets: health_targets(state) }));
        }
    }
    let has_live_group = resolved_traffic(state, name).live_target_group.is_some();
    Some(Decision::Act(shift(state, name, settings.next_weight(traffic.weight, has_live_group))))
}

/// At 100 % the old release stays for `bake_time`, and halts are still honoured: the new release
/// is watched under full load, its health checked at the usual interval, with the way back
/// open. The bake ends with a health check made after the last shift. `None` once it is over.
fn bake(state: &State, now: Timestamp, checked: bool) -> Option<Decision> {
    let until = state
        .services
        .iter()
        .filter_map(|(name, p)| Some(p.traffic.as_ref()?.shifted_at?.plus_secs(traffic_settings(state, name).bake_time_secs())))
        .max()?;
    if now >= until && checked {
        return None;
    }
    let next_check = state.last_observed_at.map_or(now, |observed| observed.plus_secs(state.release().health_poll_secs()));
    if now >= until || now >= next_check {
        return Some(Decision::Act(Command::ObserveHealth { targets: health_targets(state) }));
    }
    Some(Decision::Wait { until: until.min(next_check) })
}

/// After a failure, the traffic that reached the new release goes back to the live one before
/// anything of the new release is deleted: deleting first would send users to instances on
/// their way out. A shift back that keeps failing is given up on with the ASG it would have
/// freed: that ASG still serves traffic, so it stays, and the deploy ends dirty.
fn shift_back(state: &State, now: Timestamp) -> Option<Decision> {
    state.failure.as_ref()?;
    let (name, progress) = state.services.iter().find(|(_, p)| {
        let has_traffic = p.traffic.as_ref().is_some_and(TrafficProgress::may_have_traffic);
        has_traffic && state.teardown.iter().any(|t| t.asg == p.asg && !t.is_finished())
    })?;
    if state.retry.attempts >= ATTEMPTS_MAX {
        let reason = format!("could not shift traffic back after {} attempts; last: {}", state.retry.attempts, state.retry.last_error);
        return Some(Decision::Emit(vec![Event::TeardownAbandoned { asg: progress.asg.clone(), reason }]));
    }
    Some(retry_backoff(state, now).unwrap_or_else(|| Decision::Act(shift(state, name, 0))))
}

/// The shift that sets what the log records for `service` now, when its group exists: what a
/// worker whose shift lost the race to append sets again (see the runner).
pub fn shift_to_recorded(state: &State, service: &str) -> Option<Command> {
    let traffic = state.services.get(service)?.traffic.as_ref()?;
    traffic.target_group.as_ref()?;
    Some(shift(state, service, traffic.weight))
}

fn shift(state: &State, name: &str, weight: u32) -> Command {
    let traffic = resolved_traffic(state, name);
    let progress = state.services[name].traffic.as_ref().expect("shifting a service without traffic");
    let group = progress.target_group.as_deref().expect("shifting before the release's group exists");
    Command::ShiftTraffic {
        service: name.to_string(),
        listener_arn: traffic.listener_arn.clone(),
        priority: traffic.priority,
        conditions: traffic.conditions.clone(),
        forward: traffic.forward(group, weight),
        weight,
        copy: traffic.copy.clone(),
    }
}

fn create_target_group(state: &State, name: &str) -> Command {
    let request = state.request.as_ref().expect("deploying without a request");
    let release = &request.release;
    let progress = &state.services[name];
    Command::CreateTargetGroup {
        service: name.to_string(),
        name: names::target_group_name(name, &progress.asg),
        shape: resolved_traffic(state, name).template.clone(),
        tags: names::copied_tags(
            &resolved_traffic(state, name).template_tags,
            names::managed_tags(&release.project_name, &release.config_name, name, &request.release_id),
        ),
    }
}

fn traffic_settings<'a>(state: &'a State, name: &str) -> &'a Traffic {
    state.release().services[name].traffic.as_ref().expect("a traffic-shifted service's release names its traffic")
}

fn resolved_traffic<'a>(state: &'a State, name: &str) -> &'a ResolvedTraffic {
    let resolved = state.resolved.as_ref().expect("shifting traffic before resources were resolved");
    resolved.services[name].traffic.as_ref().expect("a traffic-shifted service resolves its traffic")
}

/// The load balancers a service's new instances join: the release's, plus its own target group.
fn target_groups_of(state: &State, name: &str) -> Vec<String> {
    let resolved = state.resolved.as_ref().expect("deploying without resources");
    let own = state.services[name].traffic.as_ref().and_then(|t| t.target_group.clone());
    resolved.services[name].target_group_arns.iter().cloned().chain(own).collect()
}

/// After success, services go back to their size without spread (no ratchet across deploys).
fn final_capacity(state: &State) -> Decision {
    let (name, progress) = state.services.iter().find(|(_, p)| p.needs_final_capacity()).expect("checked by decide");
    Decision::Act(Command::SetCapacity {
        service: name.clone(),
        asg: progress.asg.clone(),
        min_size: progress.plan.min_size,
        desired: progress.plan.desired,
    })
}

/// Teardown runs after success (old ASGs, once capacity is final), after a failure (new ASGs),
/// or once an undeploy knows what it removes (the live ASGs); when it is over, the deploy ends.
fn cleanup_ready(state: &State) -> bool {
    state.failure.is_some()
        || state.undeploy.as_ref().is_some_and(|u| u.planned)
        || (state.healthy && !state.services.values().any(ServiceProgress::needs_final_capacity))
}

fn next_teardown(state: &State) -> Option<&Teardown> {
    cleanup_ready(state).then(|| state.teardown.iter().find(|t| !t.is_finished())).flatten()
}

/// Odin's `wait_for_detach`: after success the old release keeps serving until the new release's
/// target groups have ramped its instances up (their slow start), so they never take the whole
/// load at once. Only a release whose groups have a slow start waits.
fn slow_start_wait(state: &State, now: Timestamp) -> Option<Decision> {
    let until = state.detach_after.filter(|_| state.failure.is_none())?;
    (now < until).then_some(Decision::Wait { until })
}

fn tear_down(state: &State, teardown: &Teardown, now: Timestamp) -> Decision {
    if state.retry.attempts >= ATTEMPTS_MAX {
        let reason = format!("{} attempts failed; last: {}", state.retry.attempts, state.retry.last_error);
        return Decision::Emit(vec![Event::TeardownAbandoned { asg: teardown.asg.clone(), reason }]);
    }
    if let Some(wait) = retry_backoff(state, now) {
        return wait;
    }
    let (asg, elbs, target_groups) = (teardown.asg.clone(), teardown.elbs.clone(), teardown.target_groups.clone());
    match &teardown.stage {
        TeardownStage::Unroute => {
            let rule = teardown.rule.as_ref().expect("only a teardown with a rule starts by removing it");
            Decision::Act(Command::RemoveRule { asg, listener_arn: rule.listener_arn.clone(), priority: rule.priority })
        }
        TeardownStage::Detach => Decision::Act(Command::Detach { asg, elbs, target_groups }),
        TeardownStage::AwaitDetach { since } if now.ms_since(*since) >= DETACH_WAIT_SECS_MAX * 1000 => {
            Decision::Emit(vec![Event::DetachConfirmed { asg, waited_ms: now.ms_since(*since), expired: true }])
        }
        TeardownStage::AwaitDetach { .. } => Decision::Act(Command::CheckDetached { asg, elbs, target_groups }),
        TeardownStage::Delete => Decision::Act(Command::Delete {
            asg,
            launch_template: teardown.launch_template.clone(),
            target_group: teardown.target_group.clone(),
        }),
        TeardownStage::Deleted | TeardownStage::Abandoned { .. } => unreachable!("finished teardowns are skipped"),
    }
}

/// Everything is torn down: give the lock back with the closing events, or just close.
fn end(state: &State) -> Decision {
    match state.lock {
        Lock::Held { .. } => {
            let release = state.release();
            Decision::Act(Command::ReleaseLock { project: release.project_name.clone(), config: release.config_name.clone() })
        }
        _ => Decision::Emit(vec![closing_event(state)]),
    }
}

/// The event that ends the deploy, from how it went.
pub fn closing_event(state: &State) -> Event {
    let cleanliness = if state.is_dirty() { Cleanliness::Dirty } else { Cleanliness::Clean };
    let abandoned: Vec<&str> =
        state.teardown.iter().filter(|t| matches!(t.stage, TeardownStage::Abandoned { .. })).map(|t| t.asg.as_str()).collect();
    match &state.failure {
        Some(failure) => {
            let mut reason = failure.reason.clone();
            if !abandoned.is_empty() {
                reason.push_str(&format!("; could not remove {}", abandoned.join(", ")));
            }
            Event::DeployFailed { error: failure.error, cleanliness, reason }
        }
        None if abandoned.is_empty() => Event::DeploySucceeded,
        None if state.undeploy.is_some() => Event::DeployFailed {
            error: ErrorKind::Deploy,
            cleanliness,
            reason: format!("the undeploy could not remove {}", abandoned.join(", ")),
        },
        None => Event::DeployFailed {
            error: ErrorKind::Deploy,
            cleanliness,
            reason: format!("the release is live, but old ASGs could not be removed: {}", abandoned.join(", ")),
        },
    }
}

fn health_targets(state: &State) -> Vec<HealthTarget> {
    let resolved = state.resolved.as_ref().expect("deploying without resources");
    state
        .services
        .iter()
        .map(|(name, progress)| {
            let service = &resolved.services[name];
            HealthTarget {
                service: name.clone(),
                asg: progress.asg.clone(),
                elbs: service.elbs.clone(),
                target_groups: target_groups_of(state, name),
                alarms: service.traffic.as_ref().map(|t| t.alarms.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

fn launch_spec(state: &State, name: &str) -> LaunchSpec {
    let request = state.request.as_ref().expect("launch without a request");
    let release = &request.release;
    let service = &release.services[name];
    let resolved = state.resolved.as_ref().expect("launch without resources");
    let found = &resolved.services[name];
    let progress = &state.services[name];
    let initial = match state.odin_rules() {
        true => progress.plan.initial_size(),
        false => AsgSize { min_size: progress.plan.min_while_deploying(progress.plan.initial()), desired: progress.plan.initial() },
    };
    let mut tags = service.tags.clone();
    tags.entry("Name".to_string()).or_insert_with(|| progress.asg.clone());
    tags.extend(names::managed_tags(&release.project_name, &release.config_name, name, &request.release_id));
    let placement = service.placement_group_name.as_ref().map(|group_name| Placement {
        group_name: group_name.clone(),
        strategy: service.placement_group_strategy.clone().unwrap_or_default(),
        partition_count: service.placement_group_partition_count,
        create: found.create_placement_group,
    });
    LaunchSpec {
        service: name.to_string(),
        asg_name: progress.asg.clone(),
        launch_template_name: names::launch_template_name(&progress.asg),
        ami_id: resolved.ami_id.clone(),
        instance_type: service.instance_type.clone(),
        subnet_ids: found.template.as_ref().map_or_else(|| resolved.subnet_ids.clone(), |t| t.subnet_ids.clone()),
        security_group_ids: found.security_group_ids.clone(),
        instance_profile_arn: found.instance_profile_arn.clone(),
        ebs: Ebs {
            size_gib: service.ebs_volume_size,
            volume_type: service.ebs_volume_type().to_string(),
            device_name: service.ebs_device_name().to_string(),
        },
        placement,
        tenancy: service.placement_tenancy.clone(),
        spot_price: service.spot_price.clone(),
        associate_public_ip_address: service.associate_public_ip_address,
        min_size: initial.min_size,
        max_size: progress.plan.max_size,
        desired_capacity: initial.desired,
        health_check_type: if service.behind_load_balancer() { "ELB" } else { "EC2" }.to_string(),
        health_check_grace_period_secs: service.autoscaling.health_check_grace_period_secs(release.timeout_secs()),
        default_cooldown_secs: service.autoscaling.default_cooldown_secs(),
        elbs: found.elbs.clone(),
        target_group_arns: target_groups_of(state, name),
        lifecycle_hooks: resolved.lifecycle_hooks.clone(),
        policies: service.autoscaling.policies.clone(),
        tags,
        template: found.template.clone(),
    }
}

/// How long past its due time a running deploy may sit before the sweeper wakes it. Longer than
/// any wait that records nothing (a detach drains for at most `DETACH_WAIT_SECS_MAX`), so only a
/// deploy whose wakes were lost is ever woken.
pub const STALL_GRACE_SECS: u64 = DETACH_WAIT_SECS_MAX + 60;

/// Whether the deploy should have moved by `now` and hasn't: its chain of wakes was lost.
pub fn stalled(state: &State, now: Timestamp) -> bool {
    let due = match decide(state, now) {
        Decision::Finished => return false,
        Decision::Wait { until } => until,
        Decision::Emit(_) | Decision::Act(_) => state.at,
    };
    now.ms_since(due) > STALL_GRACE_SECS * 1000
}

/// Folds `history` and decides at `now`: the convenience most callers want.
pub fn decide_after(history: &[Recorded], now: Timestamp) -> Result<Decision, super::state::FoldError> {
    Ok(decide(&super::state::fold(history)?, now))
}
