//! Gradual ALB traffic shifting, end to end: the real runner over the in-memory store and queue and
//! the simulated cloud, whose listener rules hold weighted forwards. Each test reads given (a
//! world with a listener, an exemplar rule and a template target group) / when (deploys run,
//! perhaps with a halt or a fault) / then (the history, the rule's weights, what is left).

mod support;

use skald_engine::adapters::local::{example_traffic, Local};
use skald_engine::adapters::memory::AppendFault;
use skald_engine::adapters::sim::{Fate, Op};
use skald_engine::replay;
use skald_engine::workflow::event::{Cleanliness, ErrorKind, Event};
use skald_engine::workflow::names::target_group_name;
use skald_engine::workflow::release::Traffic;
use skald_engine::workflow::resources::{RuleCondition, Weighted};
use skald_engine::workflow::state::End;
use skald_engine::workflow::{CloudError, Recorded, Release, Timestamp};
use support::*;

const PRIORITY: u32 = 10;

/// The example release with web behind the listener rule at `PRIORITY`, shifting `step` % a time.
fn traffic_release(step: u32) -> Release {
    let mut release = release();
    let web = release.services.get_mut("web").unwrap();
    web.traffic = Some(Traffic { shift_per_step: Some(step), ..example_traffic(&release.config_name) });
    release
}

fn listener() -> String {
    example_traffic("production").listener
}

/// The forward of the production rule now; `None` when there is no rule at `PRIORITY`.
fn production_forward(local: &Local) -> Option<Vec<Weighted>> {
    local.cloud.rule_at(&listener(), PRIORITY).map(|r| r.forward)
}

fn own_group_arn(local: &Local, release_id: &str) -> String {
    let asg = local.state(release_id).services["web"].asg.clone();
    local.cloud.own_target_groups()[&target_group_name("web", &asg)].clone()
}

/// The weights `TrafficShifted` recorded, with their instants.
fn shifts(history: &[Recorded]) -> Vec<(u32, Timestamp)> {
    history
        .iter()
        .filter_map(|r| match r.event {
            Event::TrafficShifted { weight, .. } => Some((weight, r.at)),
            _ => None,
        })
        .collect()
}

/// Then: today's code would have recorded exactly this history (replay's `--verify`).
fn assert_verifies(local: &Local, deploy: &str) {
    let stored = local.store.history(deploy);
    replay::verify(&stored).unwrap_or_else(|failure| panic!("{deploy} does not verify: {failure}"));
}

/// Given: a first release of web behind the listener, deployed.
fn first_deployed(step: u32) -> (Local, Release) {
    let release = traffic_release(step);
    let local = world(&release);
    local.submit(&release, &id(1));
    assert_eq!(run_until_end(&local, &id(1)).end, Some(End::Success));
    (local, release)
}

/// When: messages are delivered until `deploy` ends, checking after each that the production
/// rule's weights sum to 100 (or that there is no rule yet).
fn run_checking_weights(local: &Local, deploy: &str) {
    for _ in 0..MESSAGES_MAX {
        if local.state(deploy).is_finished() {
            return;
        }
        local.deliver_next().expect("the queue keeps a running deploy's wake");
        if let Some(forward) = production_forward(local) {
            assert_eq!(forward.iter().map(|w| w.weight).sum::<u32>(), 100, "{forward:?}");
        }
    }
    panic!("{deploy} did not finish");
}

#[test]
fn a_first_deploy_copies_the_exemplar_rule_and_sends_everything_to_its_own_group() {
    // Given a listener with only the exemplar rule, when the first release deploys
    let (local, _) = first_deployed(25);

    // Then web got its own target group, and the production rule, with the exemplar's
    // conditions, forwards everything to it at once
    let group = own_group_arn(&local, &id(1));
    let rule = local.cloud.rule_at(&listener(), PRIORITY).expect("the production rule");
    assert_eq!(rule.conditions, [RuleCondition::of_values("path-pattern", &["/*"])]);
    assert_eq!(rule.forward, [Weighted { target_group: group, weight: 100 }]);
    let history = local.history(&id(1));
    assert_eq!(shifts(&history).iter().map(|(w, _)| *w).collect::<Vec<_>>(), [100]);
    let milestones = milestones(&history);
    let created = milestones.iter().position(|t| *t == "TargetGroupCreated").unwrap();
    let launched = milestones.iter().position(|t| *t == "ServiceLaunched").unwrap();
    assert!(created < launched, "the group exists before the ASG that joins it: {milestones:?}");
    assert_verifies(&local, &id(1));
}

#[test]
fn a_second_deploy_shifts_step_by_step_behind_a_health_gate_then_bakes_before_deleting_the_old() {
    // Given a first release live behind the rule
    let (local, release) = first_deployed(25);
    let old_group = own_group_arn(&local, &id(1));
    let old_asg = local.state(&id(1)).services["web"].asg.clone();

    // When a second release deploys
    local.submit(&release, &id(2));
    run_checking_weights(&local, &id(2));

    // Then traffic moved 25 % at a time, each step at least wait_per_step after the last and
    // only after a health check recorded since it
    let history = local.history(&id(2));
    assert_eq!(local.state(&id(2)).end, Some(End::Success));
    let steps = shifts(&history);
    assert_eq!(steps.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [25, 50, 75, 100]);
    for pair in steps.windows(2) {
        assert!(pair[1].1.ms_since(pair[0].1) >= 15_000, "{steps:?}");
    }
    let shifted_at: Vec<usize> =
        history.iter().enumerate().filter(|(_, r)| matches!(r.event, Event::TrafficShifted { .. })).map(|(i, _)| i).collect();
    for pair in shifted_at.windows(2) {
        let checked = history[pair[0]..pair[1]].iter().any(|r| matches!(r.event, Event::HealthObserved { .. }));
        assert!(checked, "no health check between the shifts at seq {} and {}", history[pair[0]].seq, history[pair[1]].seq);
    }
    // And the rule forwards to the new group alone
    let new_group = own_group_arn(&local, &id(2));
    assert_eq!(production_forward(&local).unwrap(), [Weighted { target_group: new_group, weight: 100 }]);
    // And the old ASG and its group were deleted only after the bake time at 100 %
    let full_at = steps.last().unwrap().1;
    let deleted_at = history.iter().find(|r| matches!(&r.event, Event::AsgDeleted { asg } if *asg == old_asg)).expect("old ASG deleted").at;
    assert!(deleted_at.ms_since(full_at) >= 60_000, "deleted {} ms after 100 %", deleted_at.ms_since(full_at));
    assert!(!local.cloud.asg_names().contains(&old_asg));
    assert!(!local.cloud.own_target_groups().values().any(|arn| *arn == old_group), "the old release's group is gone");
    assert_verifies(&local, &id(2));
}

#[test]
fn a_step_that_does_not_divide_100_ends_exactly_at_100() {
    let (local, release) = first_deployed(30);
    local.submit(&release, &id(2));
    run_checking_weights(&local, &id(2));
    assert_eq!(shifts(&local.history(&id(2))).iter().map(|(w, _)| *w).collect::<Vec<_>>(), [30, 60, 90, 100]);
}

#[test]
fn a_halt_during_the_shift_sends_traffic_back_before_deleting_the_new_release() {
    // Given a second release with some traffic
    let (local, release) = first_deployed(25);
    let old_group = own_group_arn(&local, &id(1));
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "TrafficShifted");
    let new_asg = local.state(&id(2)).services["web"].asg.clone();

    // When it is halted
    local.halt(&release, "bad canary");
    run_checking_weights(&local, &id(2));

    // Then the rule forwards everything to the old group again, before anything new is deleted
    let state = local.state(&id(2));
    assert!(matches!(state.end, Some(End::Failure { error: ErrorKind::Halt, cleanliness: Cleanliness::Clean, .. })), "{:?}", state.end);
    assert_eq!(production_forward(&local).unwrap(), [Weighted { target_group: old_group, weight: 100 }]);
    let history = local.history(&id(2));
    let back = history.iter().position(|r| matches!(r.event, Event::TrafficShifted { weight: 0, .. })).expect("shifted back");
    let first_teardown =
        history.iter().position(|r| matches!(&r.event, Event::Detached { asg } | Event::AsgDeleted { asg } if *asg == new_asg));
    assert!(back < first_teardown.expect("new ASG torn down"));
    // And the new ASG and its group are gone; the old release serves on
    assert!(!local.cloud.asg_names().contains(&new_asg));
    assert_eq!(local.cloud.own_target_groups().len(), 1, "only the old release's group remains");
    assert_verifies(&local, &id(2));
}

#[test]
fn an_alarm_firing_during_the_shift_stops_the_deploy_and_sends_traffic_back() {
    // Given a second release gated by an error-rate alarm, with some traffic on it
    let (local, mut release) = first_deployed(25);
    local.cloud.set_alarm("web-5xx", false);
    release.services.get_mut("web").unwrap().traffic.as_mut().unwrap().alarms = vec!["web-5xx".into()];
    let old_group = own_group_arn(&local, &id(1));
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "TrafficShifted");

    // When the alarm goes off
    local.cloud.set_alarm("web-5xx", true);
    run_checking_weights(&local, &id(2));

    // Then the next health check records it, the deploy stops (Halt) and all traffic goes back
    let state = local.state(&id(2));
    let Some(End::Failure { error: ErrorKind::Halt, cleanliness: Cleanliness::Clean, reason }) = &state.end else {
        panic!("{:?}", state.end)
    };
    assert!(reason.starts_with("web: alarm web-5xx in ALARM"), "{reason}");
    let history = local.history(&id(2));
    let fired = history.iter().position(|r| r.event == Event::AlarmFiring { service: "web".into(), alarms: vec!["web-5xx".into()] });
    assert!(matches!(history[fired.expect("the alarm is recorded") - 1].event, Event::HealthObserved { .. }), "with the check");
    assert_eq!(production_forward(&local).unwrap(), [Weighted { target_group: old_group, weight: 100 }]);
    assert_verifies(&local, &id(2));
}

#[test]
fn a_gate_alarm_that_does_not_exist_is_a_resource_problem() {
    // Given a release gated by an alarm no one created
    let (local, mut release) = first_deployed(25);
    release.services.get_mut("web").unwrap().traffic.as_mut().unwrap().alarms = vec!["web-5xx".into()];

    // When it deploys, then it is rejected naming the field, before anything changes
    local.submit(&release, &id(2));
    let state = run_until_end(&local, &id(2));
    let Some(End::Failure { error: ErrorKind::BadRelease, reason, .. }) = &state.end else { panic!("{:?}", state.end) };
    assert_eq!(reason, "services.web.traffic.alarms[0]: no CloudWatch alarm `web-5xx` found");
}

#[test]
fn a_first_deploy_that_never_gets_healthy_removes_its_group_and_creates_no_rule() {
    // Given a first release whose web instances never pass their checks
    let release = traffic_release(25);
    let local = world(&release);
    local.cloud.set_fate("web", Fate::NeverHealthy);

    // When it deploys
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    // Then it timed out on the release's timeout (no traffic was ever shifted), its group is
    // gone and the listener has no production rule
    let state = local.state(&id(1));
    assert!(matches!(state.end, Some(End::Failure { error: ErrorKind::Timeout, cleanliness: Cleanliness::Clean, .. })), "{:?}", state.end);
    assert!(shifts(&local.history(&id(1))).is_empty());
    assert!(local.cloud.own_target_groups().is_empty());
    assert_eq!(production_forward(&local), None);
    assert_verifies(&local, &id(1));
}

#[test]
fn new_instances_failing_the_health_gate_time_out_the_step_and_traffic_goes_back() {
    // Given a live first release, and a second whose instances pass their checks for a while,
    // then fail them for longer than the health timeout
    let (local, release) = first_deployed(5);
    let old_group = own_group_arn(&local, &id(1));
    local.cloud.set_fate(&id(2), Fate::Flapping(350_000));

    // When the second release deploys
    local.submit(&release, &id(2));
    run_checking_weights(&local, &id(2));

    // Then a step timed out on health_timeout, and the weights went back to the old group
    let history = local.history(&id(2));
    let state = local.state(&id(2));
    assert!(matches!(state.end, Some(End::Failure { error: ErrorKind::Timeout, cleanliness: Cleanliness::Clean, .. })), "{:?}", state.end);
    assert!(history.iter().any(|r| matches!(r.event, Event::TimedOut { timeout_secs: 300 })));
    let steps = shifts(&history);
    assert!(steps.iter().any(|(w, _)| *w > 0 && *w < 100), "{steps:?}");
    assert_eq!(steps.last().unwrap().0, 0);
    assert_eq!(production_forward(&local).unwrap(), [Weighted { target_group: old_group, weight: 100 }]);
    assert_verifies(&local, &id(2));
}

#[test]
fn a_shift_back_that_keeps_failing_keeps_the_new_release_serving_and_ends_dirty() {
    // Given a second release with some traffic, and a rule that can no longer be changed
    let (local, release) = first_deployed(25);
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "TrafficShifted");
    let new_asg = local.state(&id(2)).services["web"].asg.clone();
    local.cloud.fail(Op::ShiftTraffic, CloudError::permanent("AccessDenied", "elasticloadbalancing:ModifyRule"), None);

    // When it is halted
    local.halt(&release, "stop");
    run_until_end(&local, &id(2));

    // Then the shift back was tried to its bound, and the ASG that still takes traffic was kept
    let state = local.state(&id(2));
    assert!(matches!(state.end, Some(End::Failure { cleanliness: Cleanliness::Dirty, .. })), "{:?}", state.end);
    let history = local.history(&id(2));
    let attempts =
        history.iter().filter(|r| matches!(&r.event, Event::CommandFailed { command, .. } if command == "shift_traffic")).count();
    assert_eq!(attempts, 5);
    assert!(local.cloud.asg_names().contains(&new_asg), "an ASG with traffic is never deleted");
    assert_verifies(&local, &id(2));
}

#[test]
fn a_crash_between_a_shift_and_its_record_repeats_the_same_shift() {
    // Given a second release whose first shift lands in the cloud but not in the log
    let (local, release) = first_deployed(25);
    local.submit(&release, &id(2));
    local.store.inject_for("TrafficShifted", AppendFault::Refuse);

    // When it runs on
    run_checking_weights(&local, &id(2));

    // Then the announced shift was carried out again (same weights) and the deploy finished
    let history = local.history(&id(2));
    assert_eq!(local.state(&id(2)).end, Some(End::Success));
    assert_eq!(shifts(&history).iter().map(|(w, _)| *w).collect::<Vec<_>>(), [25, 50, 75, 100]);
    assert_verifies(&local, &id(2));
}

#[test]
fn a_rule_left_mid_shift_or_no_exemplar_is_a_resource_problem_naming_the_field() {
    // Given a listener whose production rule forwards to two groups
    let release = traffic_release(25);
    let local = world(&release);
    let split = [
        Weighted { target_group: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1".into(), weight: 50 },
        Weighted { target_group: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/2".into(), weight: 50 },
    ];
    local.cloud.add_rule(&listener(), PRIORITY, &[], &split);

    // When a release deploys
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    // Then its resources are rejected, naming the field, and nothing was created
    let rejected = local.history(&id(1)).iter().find_map(|r| match &r.event {
        Event::ResourcesRejected { problems } => Some(problems.clone()),
        _ => None,
    });
    let problems = rejected.expect("rejected");
    assert!(problems.iter().any(|p| p.path == "services.web.traffic.priority" && p.message.contains("2 target groups")), "{problems:?}");
    assert!(local.cloud.own_target_groups().is_empty());
    assert_verifies(&local, &id(1));
}

#[test]
fn the_lock_lease_outlasts_the_slowest_shift_the_release_allows() {
    // Given a release whose web shifts 1 % at a time, an hour apart, with two hours of health
    // timeout per step: far longer than the release's timeout
    let mut release = traffic_release(1);
    let traffic = release.services.get_mut("web").unwrap().traffic.as_mut().unwrap();
    (traffic.wait_per_step, traffic.health_timeout, traffic.bake_time) = (Some(3_600), Some(7_200), Some(86_400));
    let local = world(&release);

    // When it takes the lock
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "LockAcquired");

    // Then the lease runs past every step's bound and the bake, so it cannot lapse mid-shift
    let (locked_at, lease_until) = local
        .history(&id(1))
        .iter()
        .find_map(|r| match r.event {
            Event::LockAcquired { lease_until, .. } => Some((r.at, lease_until)),
            _ => None,
        })
        .unwrap();
    let slowest_shift_secs = 100 * (3_600 + 7_200) + 86_400 + 7_200;
    assert!(lease_until.ms_since(locked_at) >= (release.timeout_secs() + slowest_shift_secs) * 1_000);
}
