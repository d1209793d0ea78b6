//! The pure core in isolation: given a history, when `decide` runs at an instant, then this
//! decision. No runner, no adapters: these pin the workflow's rules one at a time.

mod support;

use skald_engine::adapters::memory::block_on;
use skald_engine::adapters::sim::{SimCloud, Timings};
use skald_engine::codec::release_digest;
use skald_engine::ports::Cloud;
use skald_engine::workflow::command::{Command, HealthTarget, Outcome};
use skald_engine::workflow::decide::{FIRST_HEALTH_CHECK_SECS, LOCK_LEASE_MARGIN_SECS};
use skald_engine::workflow::event::{Event, Freshness, RULES_CURRENT, RULES_FIRST, RULES_ODIN};
use skald_engine::workflow::health::{AsgSize, HealthCounts};
use skald_engine::workflow::release::Strategy;
use skald_engine::workflow::resources::{check, Query};
use skald_engine::workflow::state::ATTEMPTS_MAX;
use skald_engine::workflow::{decide, fold, record, CloudError, Decision, FoldError, Next, Recorded, Release, State, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::{id, release, START};

/// A history under construction, one event at a time, each some seconds after the last.
struct Given {
    history: Vec<Recorded>,
}

impl Given {
    fn requested(release: &Release, created_at: Timestamp) -> Given {
        let event = Event::DeployRequested {
            release_id: id(1),
            created_at,
            release: Box::new(release.clone()),
            release_digest: release_digest(release),
            requested_by: Some("arn:aws:iam::123456789012:user/ci".into()),
            freshness: Freshness::default(),
            settings: None,
            rules: skald_engine::workflow::event::RULES_CURRENT,
            frozen: None,
        };
        Given { history: vec![Recorded { seq: 1, at: START, event }] }
    }

    /// Requested, validated, locked and resolved against a provisioned simulated cloud.
    fn resolved() -> Given {
        Given::resolved_with(release())
    }

    fn resolved_with(release: Release) -> Given {
        let cloud = SimCloud::new(Arc::new(skald_engine::adapters::memory::SystemClock), Timings::default());
        skald_engine::adapters::local::provision_example(&cloud, &release);
        let lookup = block_on(cloud.lookup(&Query::for_release(&release))).unwrap();
        let resolved = check(&release, &id(1), &lookup, &Default::default()).unwrap();
        Given::requested(&release, START)
            .then(0, Event::ReleaseValidated)
            .then(0, Event::LockAcquired { project: release.project_name.clone(), config: release.config_name.clone(), lease_until: START })
            .then(0, Event::ResourcesResolved { resolved: Box::new(resolved) })
    }

    /// Resolved, and every service's launch recorded.
    fn launched() -> Given {
        Given::launched_from(Given::resolved())
    }

    fn launched_from(given: Given) -> Given {
        let mut given = given;
        for service in ["web", "worker"] {
            let command = match given.decide(0) {
                Decision::Act(command @ Command::Launch { .. }) => command,
                other => panic!("expected a launch, got {other:?}"),
            };
            let Command::Launch { spec } = &command else { unreachable!() };
            assert_eq!(spec.service, service);
            let launched = Event::ServiceLaunched { service: service.into(), asg: spec.asg_name.clone(), desired: spec.desired_capacity };
            given = given.then(0, Event::CommandStarted { command }).then(1, launched);
        }
        given
    }

    /// The same history, its request recorded under strategy rules `rules`.
    fn under_rules(mut self, wanted: u32) -> Given {
        let Event::DeployRequested { rules, .. } = &mut self.history[0].event else { panic!("a history starts with a request") };
        *rules = wanted;
        self
    }

    fn then(mut self, secs_later: u64, event: Event) -> Given {
        let last = self.history.last().expect("a history starts with a request");
        let recorded = Recorded { seq: last.seq + 1, at: last.at.plus_secs(secs_later), event };
        self.history.push(recorded);
        self
    }

    fn last_at(&self) -> Timestamp {
        self.history.last().unwrap().at
    }

    fn state(&self) -> State {
        fold(&self.history).expect("a well-formed history")
    }

    /// Decides `secs_later` seconds after the last event.
    fn decide(&self, secs_later: u64) -> Decision {
        decide(&self.state(), self.last_at().plus_secs(secs_later))
    }
}

fn healthy_counts(web: u32, worker: u32) -> Event {
    let counts = |healthy| HealthCounts { healthy, launching: 0, terminating: 0, ..HealthCounts::default() };
    Event::HealthObserved { services: BTreeMap::from([("web".into(), counts(web)), ("worker".into(), counts(worker))]) }
}

#[test]
fn an_empty_history_needs_nothing() {
    assert_eq!(decide(&State::default(), START), Decision::Finished);
}

#[test]
fn a_valid_request_is_validated_then_locks_with_a_bounded_lease() {
    let given = Given::requested(&release(), START);
    assert_eq!(given.decide(0), Decision::Emit(vec![Event::ReleaseValidated]));

    let given = given.then(0, Event::ReleaseValidated);
    let Decision::Act(Command::AcquireLock { lease_until, .. }) = given.decide(3) else { panic!("{:?}", given.decide(3)) };
    assert_eq!(lease_until, START.plus_secs(3 + 600 + LOCK_LEASE_MARGIN_SECS));
}

#[test]
fn a_release_created_too_far_ahead_is_rejected_naming_created_at() {
    let given = Given::requested(&release(), START.plus_secs(3 * 60));
    let Decision::Emit(events) = given.decide(0) else { panic!() };
    let [Event::ReleaseRejected { problems }] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "created_at");
    assert!(problems[0].message.contains("more than 120 s after"), "{}", problems[0].message);
}

#[test]
fn freshness_is_judged_at_receipt_so_replays_agree_forever() {
    let given = Given::requested(&release(), START);
    let years_later = 10 * 365 * 24 * 3600;
    assert_eq!(given.decide(years_later), Decision::Emit(vec![Event::ReleaseValidated]));
}

#[test]
fn services_launch_one_at_a_time_in_name_order() {
    let given = Given::resolved();
    let Decision::Act(Command::Launch { spec }) = given.decide(0) else { panic!() };
    assert_eq!(spec.service, "web");
    assert_eq!(spec.desired_capacity, 1, "the canary goes first");
    assert_eq!(spec.tags["ReleaseId"], id(1));
    assert_eq!(spec.tags["ManagedBy"], "skald");
    assert_eq!(spec.health_check_type, "ELB");
    assert_eq!(spec.asg_name, format!("coinbase/deploy-test-production-web-{}", id(1)));
}

#[test]
fn an_announced_effect_is_resumed_before_anything_else_even_past_the_deadline() {
    let given = Given::resolved();
    let Decision::Act(launch) = given.decide(0) else { panic!() };
    let given = given.then(0, Event::CommandStarted { command: launch.clone() });

    assert_eq!(given.decide(0), Decision::Act(launch.clone()));
    assert_eq!(given.decide(10 * 3600), Decision::Act(launch));
}

#[test]
fn the_first_health_check_waits_for_instances_to_boot() {
    let given = Given::launched();
    let launched_at = given.last_at();

    assert_eq!(given.decide(0), Decision::Wait { until: launched_at.plus_secs(FIRST_HEALTH_CHECK_SECS) });
    let Decision::Act(Command::ObserveHealth { targets }) = given.decide(FIRST_HEALTH_CHECK_SECS) else { panic!() };
    let services: Vec<&str> = targets.iter().map(|t: &HealthTarget| t.service.as_str()).collect();
    assert_eq!(services, ["web", "worker"]);
}

#[test]
fn every_health_check_is_recorded_even_unchanged_then_the_next_waits_the_interval() {
    let given = Given::launched().then(90, healthy_counts(0, 0));
    let state = given.state();
    let Decision::Act(observe) = given.decide(15) else { panic!() };

    let reports = BTreeMap::new(); // nothing healthy yet: the same counts as before
    let recording = record(&state, &observe, Outcome::Health(Ok(reports)), given.last_at().plus_secs(15));

    assert_eq!(recording.events, vec![healthy_counts(0, 0)]);
    assert_eq!(recording.next, Next::Continue);
    let given = given.then(15, healthy_counts(0, 0));
    assert_eq!(given.decide(0), Decision::Wait { until: given.last_at().plus_secs(15) });
}

#[test]
fn a_healthy_canary_is_followed_by_the_rest() {
    let given = Given::launched().then(90, healthy_counts(1, 1));
    let Decision::Act(Command::SetCapacity { service, desired, min_size, .. }) = given.decide(0) else { panic!("{:?}", given.decide(0)) };
    assert_eq!((service.as_str(), desired, min_size), ("web", 3, 2));
}

#[test]
fn the_deploy_times_out_at_the_deadline_not_before() {
    let given = Given::launched().then(90, healthy_counts(0, 0));
    let locked_at = given.history[2].at;
    let until_deadline = 600 - given.last_at().ms_since(locked_at) / 1000;

    assert!(matches!(given.decide(until_deadline - 1), Decision::Act(Command::ObserveHealth { .. })));
    assert_eq!(given.decide(until_deadline), Decision::Emit(vec![Event::TimedOut { timeout_secs: 600 }]));
}

#[test]
fn a_failed_step_waits_out_its_backoff_then_retries_the_same_command() {
    let given = Given::launched().then(90, healthy_counts(0, 0));
    let Decision::Act(observe) = given.decide(15) else { panic!() };
    let given =
        given.then(15, Event::CommandFailed { command: "observe_health".into(), error: CloudError::transient("Throttling"), attempt: 1 });

    assert_eq!(given.decide(0), Decision::Wait { until: given.last_at().plus_secs(5) });
    assert_eq!(given.decide(5), Decision::Act(observe));
}

#[test]
fn a_halt_before_the_release_is_live_turns_to_cleanup_and_after_is_ignored() {
    let halt = || Event::HaltRequested { reason: "stop".into(), requested_by: None };
    let halted = Given::launched().then(1, halt());
    assert!(matches!(halted.decide(0), Decision::Act(Command::Detach { .. }) | Decision::Act(Command::Delete { .. })));
    assert_eq!(halted.state().teardown.len(), 2, "both new ASGs are to be removed");

    let live = Given::launched().then(90, healthy_counts(3, 1)).then(0, Event::ServicesHealthy).then(1, halt());
    assert!(live.state().failure.is_none());
}

#[test]
fn a_teardown_that_keeps_failing_is_abandoned_after_its_bound() {
    let mut given = Given::launched().then(1, Event::HaltRequested { reason: "stop".into(), requested_by: None });
    let Decision::Act(detach) = given.decide(0) else { panic!() };
    for attempt in 1..=ATTEMPTS_MAX {
        given = given.then(0, Event::CommandStarted { command: detach.clone() });
        given =
            given.then(1, Event::CommandFailed { command: "detach".into(), error: CloudError::permanent("AccessDenied", "no"), attempt });
        if attempt < ATTEMPTS_MAX {
            assert_eq!(given.decide(60), Decision::Act(detach.clone()));
        }
    }
    let Decision::Emit(events) = given.decide(0) else { panic!() };
    assert!(
        matches!(&events[..], [Event::TeardownAbandoned { reason, .. }] if reason.contains("5 attempts failed; last: AccessDenied: no"))
    );
}

#[test]
fn malformed_histories_are_errors_not_panics() {
    let given = Given::requested(&release(), START).then(0, Event::ReleaseValidated);
    let mut gap = given.history.clone();
    gap[1].seq = 3;
    assert_eq!(fold(&gap).unwrap_err(), FoldError::Gap { expected: 2, found: 3 });

    let headless = &given.history[1..];
    assert!(matches!(fold(headless).unwrap_err(), FoldError::Gap { .. }));

    let mut renumbered = given.history[1..].to_vec();
    renumbered[0].seq = 1;
    assert_eq!(fold(&renumbered).unwrap_err(), FoldError::MissingRequest { seq: 1 });

    let ended = given.then(0, Event::ReleaseRejected { problems: vec![] }).then(0, Event::LockReleased);
    let mut after_end = ended.history.clone();
    after_end.insert(3, Recorded { seq: 4, at: START, event: Event::DeploySucceeded });
    after_end[4].seq = 5;
    assert_eq!(fold(&after_end).unwrap_err(), FoldError::AfterEnd { seq: 5, event: "LockReleased" });

    let twice = Given::requested(&release(), START);
    let mut doubled = twice.history.clone();
    doubled.push(Recorded { seq: 2, ..twice.history[0].clone() });
    assert_eq!(fold(&doubled).unwrap_err(), FoldError::NotFirst { seq: 2, event: "DeployRequested" });
}

// ---- the strategy rules a history was recorded under ------------------------------------------

/// The example release with web rolling out 25 % at a time to 8 instances, all of them needed.
fn step_release() -> Release {
    let mut release = release();
    let web = &mut release.services.get_mut("web").expect("the example has web").autoscaling;
    (web.min_size, web.max_size, web.spread, web.strategy) = (Some(8), Some(8), None, Some(Strategy::Percent25Steps));
    release
}

/// A health check: web's counts (and the size its ASG reported), worker healthy.
fn web_check(web: HealthCounts) -> Event {
    let worker = HealthCounts { healthy: 1, ..HealthCounts::default() };
    Event::HealthObserved { services: BTreeMap::from([("web".into(), web), ("worker".into(), worker)]) }
}

fn launching(n: u32, size: Option<AsgSize>) -> HealthCounts {
    HealthCounts { launching: n, size, ..HealthCounts::default() }
}

fn set_capacity(given: &Given) -> Option<(String, u32, u32)> {
    match given.decide(0) {
        Decision::Act(Command::SetCapacity { service, min_size, desired, .. }) => Some((service, min_size, desired)),
        _ => None,
    }
}

#[test]
fn odins_step_rollout_steps_at_every_check_healthy_or_not_and_the_first_rules_wait() {
    // Given a 25 % step rollout launched with 2 instances, and a check finding both still unhealthy
    let launched = |rules| Given::launched_from(Given::resolved_with(step_release()).under_rules(rules));
    let odin = launched(RULES_ODIN).then(90, web_check(launching(2, None)));
    let first = launched(RULES_FIRST).then(90, web_check(launching(2, None)));

    // When decided, then Odin's rules add a step to the 2 instances (minimum as Odin raises it)
    assert_eq!(set_capacity(&odin), Some(("web".into(), 4, 4)));
    // And the first rules, which a history recorded without `rules` keeps, wait for health
    assert!(matches!(first.decide(0), Decision::Wait { .. }), "{:?}", first.decide(0));
}

#[test]
fn one_capacity_step_per_check_and_a_lowered_size_is_set_back_at_the_next() {
    // Given Odin's rules, a check that found web's ASG at (2, 2) with 2 instances, and the step set
    let given = Given::launched_from(Given::resolved_with(step_release()))
        .then(90, web_check(launching(2, Some(AsgSize { min_size: 2, desired: 2 }))));
    assert_eq!(set_capacity(&given), Some(("web".into(), 4, 4)));
    let given = given.then(1, Event::CapacitySet { service: "web".into(), asg: "web-asg".into(), min_size: 4, desired: 4 });

    // Then that check has had its say: the deploy waits for the next one
    assert!(matches!(given.decide(0), Decision::Wait { .. }), "{:?}", given.decide(0));

    // When the next check finds 4 instances, someone having lowered the minimum to 1 and a
    // scaling policy having raised the desired capacity to 7
    let given = given.then(15, web_check(launching(4, Some(AsgSize { min_size: 1, desired: 7 }))));
    // Then the step is taken from the instances found (6), the minimum set back, and the
    // desired capacity the policy raised kept: a deploy never lowers either
    assert_eq!(set_capacity(&given), Some(("web".into(), 6, 7)));
}

#[test]
fn a_vanished_asg_fails_the_deploy_at_the_check_that_finds_it_under_odins_rules_only() {
    // Given a check that found web's ASG gone
    let gone = HealthCounts { missing: true, ..HealthCounts::default() };
    let odin = Given::launched().then(90, web_check(gone));
    let first = Given::launched().under_rules(RULES_FIRST).then(90, web_check(gone));

    // When decided, then Odin's rules record it (a halt), the first rules wait for the timeout
    let missing = Event::AsgMissing { service: "web".into(), asg: odin.state().services["web"].asg.clone() };
    assert_eq!(odin.decide(0), Decision::Emit(vec![missing.clone()]));
    assert!(matches!(first.decide(0), Decision::Wait { .. }), "{:?}", first.decide(0));
    // And the deploy fails as a halt, as when its instances terminate
    let failed = odin.then(0, missing);
    assert_eq!(failed.state().failure.map(|f| f.error), Some(skald_engine::workflow::ErrorKind::Halt));
}

#[test]
fn a_canary_whose_only_instance_terminates_halts_whatever_max_terms_allows() {
    // Given the example's canary with max_terms 1, and a check finding the canary terminating
    let mut release = release();
    release.services.get_mut("web").expect("the example has web").autoscaling.max_terms = Some(1);
    let terminating = HealthCounts { terminating: 1, ..HealthCounts::default() };
    let given = Given::launched_from(Given::resolved_with(release.clone())).then(90, web_check(terminating));

    // When decided, then Odin's rules halt: no termination is tolerated while canarying
    let halt = Event::TerminationsExceeded { service: "web".into(), terminating: 1, max_terms: 0 };
    assert_eq!(given.decide(0), Decision::Emit(vec![halt]));
    // And the first rules tolerated it (max_terms 1)
    let first = Given::launched_from(Given::resolved_with(release).under_rules(RULES_FIRST)).then(90, web_check(terminating));
    assert!(matches!(first.decide(0), Decision::Wait { .. }), "{:?}", first.decide(0));
}

#[test]
fn a_request_under_rules_this_skald_does_not_know_does_not_fold() {
    // Given a request recorded by a newer skald, under rules past RULES_CURRENT
    let given = Given::requested(&release(), START).under_rules(RULES_CURRENT + 1);

    // When folded, then it is refused, naming the rules, rather than decided by older ones
    let FoldError::Content { seq: 1, message, .. } = fold(&given.history).unwrap_err() else { panic!() };
    assert!(message.contains(&format!("rules {}", RULES_CURRENT + 1)), "{message}");
}

// ---- safe_release: judged on the live release the log held once the lock was taken -----------

fn locked_safe(release: &Release) -> Given {
    let mut release = release.clone();
    release.safe_release = true;
    Given::requested(&release, START)
        .then(0, Event::ReleaseValidated)
        .then(0, Event::LockAcquired { project: release.project_name.clone(), config: release.config_name.clone(), lease_until: START })
}

#[test]
fn a_safe_release_finds_the_live_release_once_locked_and_before_any_lookup() {
    let given = locked_safe(&release());

    let Decision::Act(Command::FindLiveRelease { project, config }) = given.decide(0) else { panic!("{:?}", given.decide(0)) };
    assert_eq!((project, config), (release().project_name, release().config_name));
}

#[test]
fn a_release_not_asking_for_the_check_goes_straight_to_its_lookup() {
    let given = Given::requested(&release(), START)
        .then(0, Event::ReleaseValidated)
        .then(0, Event::LockAcquired { project: release().project_name, config: release().config_name, lease_until: START });

    assert!(matches!(given.decide(0), Decision::Act(Command::ResolveResources { .. })));
}

#[test]
fn a_safe_release_differing_from_the_live_one_is_refused_naming_each_field_then_unlocks() {
    let mut live = release();
    live.services.get_mut("worker").unwrap().instance_type = "c5.xlarge".into();
    let found = Event::LiveReleaseFound { release_id: Some(id(9)), release: Some(Box::new(live)) };
    let given = locked_safe(&release()).then(0, found);

    let Decision::Emit(events) = given.decide(0) else { panic!("{:?}", given.decide(0)) };
    let [Event::SafeReleaseRefused { live_release, problems }] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(*live_release, id(9));
    assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["services.worker.instance_type"]);
    let refused = given.then(0, events[0].clone());
    assert!(matches!(refused.decide(0), Decision::Act(Command::ReleaseLock { .. })), "nothing is looked up or launched");
}

#[test]
fn a_safe_release_equal_to_the_live_one_or_with_nothing_live_goes_on_to_its_lookup() {
    for live in [Some(release()), None] {
        let found = Event::LiveReleaseFound { release_id: live.as_ref().map(|_| id(9)), release: live.map(Box::new) };
        let given = locked_safe(&release()).then(0, found);

        assert!(matches!(given.decide(0), Decision::Act(Command::ResolveResources { .. })), "{:?}", given.decide(0));
    }
}

#[test]
fn live_release_events_out_of_place_are_fold_errors() {
    let validated = Given::requested(&release(), START).then(0, Event::ReleaseValidated);
    let nothing = || Event::LiveReleaseFound { release_id: None, release: None };
    let content_error = |given: Given| matches!(fold(&given.history), Err(FoldError::Content { .. }));

    assert!(content_error(validated.then(0, nothing())), "before the lock");
    assert!(content_error(locked_safe(&release()).then(0, nothing()).then(0, nothing())), "twice");
    let half = Event::LiveReleaseFound { release_id: Some(id(9)), release: None };
    assert!(content_error(locked_safe(&release()).then(0, half)), "an id without its release");
    let refused = Event::SafeReleaseRefused { live_release: id(9), problems: vec![] };
    assert!(content_error(locked_safe(&release()).then(0, refused)), "a refusal before the live release was found");
}

#[test]
fn the_old_release_waits_out_the_slow_start_then_retires_by_its_strategy() {
    use skald_engine::workflow::release::DetachStrategy;
    // Given a second release whose resources record a 60 s slow start, healthy and final
    let mut resolved_release = release();
    resolved_release.detach_strategy = Some(DetachStrategy::SkipDetachCheck);
    let mut given = Given::launched_from(Given::resolved_with(resolved_release));
    let Event::ResourcesResolved { resolved } = &mut given.history[3].event else { unreachable!() };
    resolved.wait_for_detach_secs = 60;
    let old = skald_engine::workflow::resources::ExistingAsg {
        name: "coinbase/deploy-test-production-web-01JOLD".into(),
        desired_capacity: 2,
        tags: BTreeMap::from([("ServiceName".to_string(), "web".to_string())]),
        launch_template: None,
        elbs: vec!["coinbase-deploy-test-web-elb".into()],
        target_groups: Vec::new(),
    };
    resolved.dropped = vec![old.clone()];
    let mut given = given.then(0, healthy_counts(3, 1)).then(0, Event::ServicesHealthy);
    while let Decision::Act(command @ Command::SetCapacity { .. }) = given.decide(0) {
        let Command::SetCapacity { service, asg, min_size, desired } = command.clone() else { unreachable!() };
        given = given.then(0, Event::CommandStarted { command }).then(0, Event::CapacitySet { service, asg, min_size, desired });
    }
    let healthy_at = given.history.iter().find(|r| r.event == Event::ServicesHealthy).unwrap().at;

    // When decide runs before and after the slow start is over
    let before = given.decide(0);
    let after = decide(&given.state(), healthy_at.plus_secs(60));

    // Then it waits until 60 s after healthy, then detaches; detached, it deletes at once
    assert_eq!(before, Decision::Wait { until: healthy_at.plus_secs(60) });
    let Decision::Act(detach @ Command::Detach { .. }) = after else { panic!("{after:?}") };
    let detached = given.then(60, Event::CommandStarted { command: detach }).then(0, Event::Detached { asg: old.name.clone() });
    assert!(matches!(detached.decide(0), Decision::Act(Command::Delete { asg, .. }) if asg == old.name));
}
