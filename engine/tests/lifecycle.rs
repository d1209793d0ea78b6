//! Every branch of a deploy's lifecycle, end to end: the real runner over the in-memory store
//! and queue and the simulated cloud. Each test reads given (a world, a release) / when (the
//! deploy runs, perhaps with a fault or an interruption) / then (the history and the cloud).

mod support;

use skald_engine::adapters::memory::{block_on, AppendFault};
use skald_engine::adapters::sim::{Fate, Op};
use skald_engine::message::Message;
use skald_engine::ports::LockKey;
use skald_engine::runner::{Handled, RunError};
use skald_engine::workflow::event::{Cleanliness, ErrorKind, Event, Freeze};
use skald_engine::workflow::names::TAG_DEPLOY_WITH;
use skald_engine::workflow::placement::FoundPlacementGroup;
use skald_engine::workflow::release::{DetachStrategy, Strategy};
use skald_engine::workflow::state::End;
use skald_engine::workflow::CloudError;
use support::*;

fn failure(error: ErrorKind, cleanliness: Cleanliness) -> impl Fn(&Option<End>) -> bool {
    move |end| matches!(end, Some(End::Failure { error: e, cleanliness: c, .. }) if *e == error && *c == cleanliness)
}

/// The capacities the web service was launched and resized to, in order.
fn web_capacities(local: &skald_engine::adapters::local::Local, deploy: &str) -> Vec<u32> {
    local
        .history(deploy)
        .iter()
        .filter_map(|r| match &r.event {
            Event::ServiceLaunched { service, desired, .. } | Event::CapacitySet { service, desired, .. } if service == "web" => {
                Some(*desired)
            }
            _ => None,
        })
        .collect()
}

fn lock_key() -> LockKey {
    let r = release();
    LockKey { project: r.project_name, config: r.config_name }
}

// ---- success ---------------------------------------------------------------------------------

#[test]
fn a_first_release_launches_every_service_and_succeeds() {
    let release = release();
    let local = world(&release);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    assert_eq!(
        milestones(&local.history(&id(1))),
        [
            "DeployRequested",
            "ReleaseValidated",
            "LockAcquired",
            "ResourcesResolved",
            "ServiceLaunched",
            "ServiceLaunched",
            "ServicesHealthy",
            "LockReleased",
            "DeploySucceeded"
        ]
    );
    let asgs = local.cloud.asgs();
    assert_eq!(asgs.len(), 2);
    // web: min 2, spread 0.5 -> launched 3 during the deploy, back to 2 after (no ratchet).
    let web = &asgs[&format!("coinbase/deploy-test-production-web-{}", id(1))];
    assert_eq!((web.min_size, web.desired, web.instance_count()), (2, 2, 2));
    assert!(local.store.locks().is_empty(), "the lock is released");
}

#[test]
fn a_second_release_replaces_the_first_and_deletes_its_asgs_and_templates() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    local.submit(&release, &id(2));
    let state = run_until_end(&local, &id(2));

    assert_eq!(state.end, Some(End::Success));
    let names = local.cloud.asg_names();
    assert!(names.iter().all(|n| n.ends_with(&id(2))), "{names:?}");
    assert_eq!(names.len(), 2);
    assert_eq!(local.cloud.launch_template_names(), names, "old launch templates are deleted with their ASGs");
    let history = local.history(&id(2));
    let deleted: Vec<&str> = history
        .iter()
        .filter_map(|r| match &r.event {
            Event::AsgDeleted { asg } => Some(asg.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|asg| asg.ends_with(&id(1))));
    // The web ASG sat behind load balancers: it is detached and drained before deletion.
    let web_old = format!("coinbase/deploy-test-production-web-{}", id(1));
    let position = |wanted: &Event| history.iter().position(|r| r.event == *wanted).unwrap();
    assert!(position(&Event::Detached { asg: web_old.clone() }) < position(&Event::AsgDeleted { asg: web_old }));
}

#[test]
fn the_new_service_starts_at_the_previous_capacity() {
    // Given a live web ASG scaled to 4 (by its CPU policy, say)
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    let old_web = format!("coinbase/deploy-test-production-web-{}", id(1));
    block_on(skald_engine::ports::Cloud::set_capacity(&local.cloud, &old_web, 2, 4)).unwrap();

    // When the next release deploys
    local.submit(&release, &id(2));
    run_until_end(&local, &id(2));

    // Then its web service plans for 4 (max 4, so no spread headroom) and keeps 4
    let state = local.state(&id(2));
    let plan = state.services["web"].plan;
    assert_eq!((plan.desired, plan.launch, plan.healthy_needed), (4, 4, 2));
    assert_eq!(local.cloud.asgs()[&format!("coinbase/deploy-test-production-web-{}", id(2))].desired, 4);
}

#[test]
fn a_service_dropped_from_the_release_is_deleted_on_success() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    let mut web_only = release.clone();
    web_only.services.remove("worker");
    local.submit(&web_only, &id(2));
    let state = run_until_end(&local, &id(2));

    assert_eq!(state.end, Some(End::Success));
    assert_eq!(local.cloud.asg_names(), [format!("coinbase/deploy-test-production-web-{}", id(2))]);
}

#[test]
fn step_rollouts_raise_capacity_one_step_per_healthy_check() {
    let mut release = release();
    let web = release.services.get_mut("web").unwrap();
    web.autoscaling.min_size = Some(8);
    web.autoscaling.max_size = Some(8);
    web.autoscaling.spread = None;
    web.autoscaling.strategy = Some(Strategy::Percent25Steps);
    let local = world(&release);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    let steps = web_capacities(&local, &id(1));
    assert_eq!(steps, [2, 4, 6, 8]);
}

// ---- Odin's strategy and health rules ----------------------------------------------------------

fn web_asg(n: u32) -> String {
    format!("coinbase/deploy-test-production-web-{}", id(n))
}

#[test]
fn a_step_rollout_keeps_stepping_past_an_instance_that_never_becomes_healthy() {
    // Given web rolling out 25 % at a time to 6 instances, 4 of them needed healthy, and its first
    // instance never healthy
    let mut release = release();
    let web = &mut release.services.get_mut("web").unwrap().autoscaling;
    (web.min_size, web.max_size, web.spread, web.strategy) = (Some(5), Some(6), Some(0.2), Some(Strategy::Percent25Steps));
    let local = world(&release);
    local.cloud.set_fate("-web-", Fate::FirstNeverHealthy);

    // When it deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then every check adds a step although the first is never healthy, and the release goes live
    assert_eq!(state.end, Some(End::Success));
    assert_eq!(web_capacities(&local, &id(1)), [1, 2, 3, 4, 5, 6, 5]);
}

#[test]
fn an_asg_deleted_mid_deploy_fails_the_deploy_at_the_next_health_check() {
    // Given a deploy whose web ASG someone deletes after its first health check
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "HealthObserved");
    local.cloud.remove_asg(&web_asg(1));

    // When it runs on
    let state = run_until_end(&local, &id(1));

    // Then the next check finds it gone and the deploy halts at once, cleaning up what is left
    assert!(failure(ErrorKind::Halt, Cleanliness::Clean)(&state.end), "{:?}", state.end);
    let history = local.history(&id(1));
    let missing_at = history.iter().find(|r| matches!(r.event, Event::AsgMissing { .. })).expect("AsgMissing recorded").at;
    let deadline = state.deadline.expect("locked");
    assert!(deadline.ms_since(missing_at) > 400_000, "found gone long before the timeout");
    assert!(local.cloud.asg_names().is_empty());
}

#[test]
fn capacity_someone_lowered_mid_deploy_is_set_back_at_the_next_health_check() {
    // Given web launched all at once (min 2, desired 3), then lowered to (1, 1) by a person
    let mut release = release();
    release.services.get_mut("web").unwrap().autoscaling.strategy = Some(Strategy::AllAtOnce);
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");
    local.cloud.resize_asg(&web_asg(1), 1, 1);

    // When the deploy runs on
    let state = run_until_end(&local, &id(1));

    // Then the first check finds the smaller ASG and sets it back, and the release goes live
    assert_eq!(state.end, Some(End::Success));
    let set_back = local
        .history(&id(1))
        .iter()
        .any(|r| matches!(&r.event, Event::CapacitySet { service, min_size: 2, desired: 3, .. } if service == "web"));
    assert!(set_back, "{:?}", types(&local.history(&id(1))));
    assert_eq!(web_capacities(&local, &id(1)), [3, 3, 2]);
}

// ---- refusals before anything is launched -----------------------------------------------------

#[test]
fn an_invalid_release_is_rejected_without_taking_the_lock() {
    let mut release = release();
    release.services.get_mut("web").unwrap().autoscaling.min_size = Some(9);
    let local = world(&release);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&state.end));
    assert_eq!(types(&local.history(&id(1))), ["DeployRequested", "ReleaseRejected", "DeployFailed"]);
    assert!(local.cloud.calls().is_empty(), "nothing touched the cloud");
}

// ---- deploy freeze ---------------------------------------------------------------------------

fn freeze() -> Freeze {
    Freeze { by: "arn:aws:iam::123456789012:user/odin-oncall".into(), reason: "black friday".into(), since: START }
}

// Pins: a frozen project-config refuses every deploy before the lock, FailureClean as a
// BadRelease, and the deploy's own history says who froze it, when and why; nothing is launched.
#[test]
fn a_deploy_of_a_frozen_project_config_is_refused_naming_who_froze_it_when_and_why() {
    // Given a project-config someone froze
    let release = release();
    let local = world(&release);
    local.store.put_freeze(&lock_key(), freeze()).expect("not frozen before");

    // When a release of it is deployed
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then the request records the freeze, the release is rejected naming it, and the deploy
    // fails clean without the lock or the cloud
    let history = local.history(&id(1));
    assert_eq!(types(&history), ["DeployRequested", "ReleaseRejected", "DeployFailed"]);
    let Event::DeployRequested { frozen, .. } = &history[0].event else { panic!("a history starts with its request") };
    assert_eq!(frozen.as_ref(), Some(&freeze()));
    let Event::ReleaseRejected { problems } = &history[1].event else { panic!("{:?}", types(&history)) };
    assert_eq!(problems[0].path, "freeze");
    for part in ["arn:aws:iam::123456789012:user/odin-oncall", "black friday", &START.to_string()] {
        assert!(problems[0].message.contains(part), "{}", problems[0]);
    }
    let Some(End::Failure { error: ErrorKind::BadRelease, cleanliness: Cleanliness::Clean, reason }) = &state.end else {
        panic!("{:?}", state.end)
    };
    assert!(reason.starts_with("freeze: ") && reason.contains("black friday"), "{reason}");
    assert!(local.cloud.calls().is_empty(), "nothing touched the cloud");
    assert!(local.store.locks().is_empty() && local.store.watch_notes().is_empty());
    // And the history verifies against today's code, the refusal included
    let stored = local.store.history(&id(1));
    skald_engine::replay::verify(&stored).expect("the refused deploy's history verifies");
}

// Pins: lifting the freeze lets the next deploy through; a freeze of another project-config
// changes nothing.
#[test]
fn an_unfrozen_project_config_deploys_again() {
    // Given a frozen project-config whose deploy was refused, and a freeze of another config
    let release = release();
    let local = world(&release);
    local.store.put_freeze(&lock_key(), freeze()).unwrap();
    local.store.put_freeze(&LockKey { project: release.project_name.clone(), config: "staging".into() }, freeze()).unwrap();
    local.submit(&release, &id(1));
    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&run_until_end(&local, &id(1)).end));

    // When it is unfrozen and deployed again
    assert_eq!(local.store.delete_freeze(&lock_key()), Some(freeze()));
    local.submit(&release, &id(2));
    let state = run_until_end(&local, &id(2));

    // Then the deploy records no freeze and succeeds
    assert_eq!(state.end, Some(End::Success));
    let Event::DeployRequested { frozen, .. } = &local.history(&id(2))[0].event else { panic!("a request first") };
    assert_eq!(*frozen, None);
    assert_eq!(local.cloud.asg_names().len(), 2);
}

// Pins: a freeze stops deploys only: an undeploy and a halt of the frozen project-config still run.
#[test]
fn a_freeze_lets_halts_and_undeploys_through() {
    // Given a live release and a deploy of the next one under way, then a freeze
    let mut release = release();
    release.allow_undeploy = Some(true);
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "ServiceLaunched");
    local.store.put_freeze(&lock_key(), freeze()).unwrap();

    // When the running deploy is halted and the live release undeployed
    local.halt(&release, "stop it");
    assert!(failure(ErrorKind::Halt, Cleanliness::Clean)(&run_until_end(&local, &id(2)).end));
    local.undeploy(&release, &id(3), "frozen and going away");
    let state = run_until_end(&local, &id(3));

    // Then both ran: the halt cleaned up, the undeploy removed the live release
    assert_eq!(state.end, Some(End::Success));
    assert!(local.cloud.asg_names().is_empty(), "{:?}", local.cloud.asg_names());
}

#[test]
fn a_stale_created_at_is_rejected_as_a_bad_release() {
    let release = release();
    let local = world(&release);
    local.clock.advance_ms(16 * 60 * 1000);

    let stale = Message::DeployRequested { release: Box::new(release), release_id: id(1), created_at: START };
    local.queue.push(&stale, 0);
    let state = run_until_end(&local, &id(1));

    let history = local.history(&id(1));
    let Event::ReleaseRejected { problems } = &history[1].event else { panic!("{:?}", types(&history)) };
    assert_eq!(problems[0].path, "created_at");
    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&state.end));
}

#[test]
fn a_resource_missing_its_opt_in_tag_is_rejected_and_nothing_is_launched() {
    let release = release();
    let local = world(&release);
    // An AMI named like the release's, but not opted in: it shadows nothing, the real one goes.
    local.cloud.add_image("ami-0ffffffffffffffff", &[("Name", "ubuntu")]);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&state.end));
    assert_eq!(
        types(&local.history(&id(1))),
        ["DeployRequested", "ReleaseValidated", "LockAcquired", "ResourcesRejected", "LockReleased", "DeployFailed"]
    );
    let Some(End::Failure { reason, .. }) = &state.end else { unreachable!() };
    assert!(reason.contains("ami: 2 AMIs match `ubuntu`"), "{reason}");
    assert!(!local.cloud.calls().iter().any(|c| c.starts_with("launch")));
    assert!(local.store.locks().is_empty());
}

#[test]
fn an_untagged_subnet_is_rejected_naming_the_field() {
    let mut release = release();
    release.subnets.push("subnet-0123".into());
    let local = world(&release);
    local.cloud.add_subnet("subnet-0123", &[("Name", "hand-made")]);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    let Some(End::Failure { reason, .. }) = &state.end else { panic!("{state:?}") };
    assert!(reason.contains(&format!("subnets[2]: subnet `subnet-0123` (subnet-0123) is not tagged {TAG_DEPLOY_WITH}=skald")), "{reason}");
}

// ---- placement groups (Odin's FindOrCreatePartitionGroup) -------------------------------------

fn placed(mut release: skald_engine::workflow::Release, group: &str) -> skald_engine::workflow::Release {
    let web = release.services.get_mut("web").unwrap();
    web.placement_group_name = Some(group.into());
    web.placement_group_strategy = Some("partition".into());
    web.placement_group_partition_count = Some(3);
    release
}

#[test]
fn a_placement_group_under_the_configs_prefix_is_created_by_the_first_deploy_and_reused_by_the_next() {
    // Given a release whose web service names a partition group under skald/<project>/<config>/
    // that does not exist yet
    let group = "skald/coinbase/deploy-test/production/web";
    let release = placed(release(), group);
    let local = world(&release);

    // When two releases deploy one after the other
    local.submit(&release, &id(1));
    let first = run_until_end(&local, &id(1));
    local.submit(&release, &id(2));
    let second = run_until_end(&local, &id(2));

    // Then the first created the group (partitioned as the release says) and the second used it
    assert_eq!((&first.end, &second.end), (&Some(End::Success), &Some(End::Success)));
    let creates = |state: &skald_engine::workflow::State| state.resolved.as_ref().unwrap().services["web"].create_placement_group;
    assert_eq!((creates(&first), creates(&second)), (true, false));
    let groups = local.cloud.placement_groups();
    assert_eq!(groups.keys().collect::<Vec<_>>(), [group]);
    assert_eq!((groups[group].strategy.as_str(), groups[group].partition_count), ("partition", Some(3)));
}

#[test]
fn a_missing_placement_group_named_outside_the_configs_prefix_is_refused_before_anything_launches() {
    // Given a release naming a group another project could own, which does not exist
    let release = placed(release(), "coinbase/other-project/web");
    let local = world(&release);

    // When it deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then nothing launches, no group is created, and the refusal names the field
    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&state.end));
    let Some(End::Failure { reason, .. }) = &state.end else { unreachable!() };
    assert!(reason.contains("services.web.placement_group_name: no placement group `coinbase/other-project/web` found"), "{reason}");
    assert!(!local.cloud.calls().iter().any(|c| c.starts_with("launch")));
    assert!(local.cloud.placement_groups().is_empty());
}

#[test]
fn an_existing_placement_group_with_another_partition_count_is_refused() {
    // Given the group exists with 2 partitions and the release asks for 3
    let group = "skald/coinbase/deploy-test/production/web";
    let release = placed(release(), group);
    let local = world(&release);
    let found = FoundPlacementGroup { strategy: "partition".into(), partition_count: Some(2), state: "available".into() };
    local.cloud.add_placement_group(group, found);

    // When it deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then it is refused naming the count, and nothing launches
    let Some(End::Failure { reason, .. }) = &state.end else { panic!("{state:?}") };
    assert!(reason.contains("services.web.placement_group_partition_count: placement group"), "{reason}");
    assert!(reason.contains("has 2 partitions, not 3"), "{reason}");
    assert!(!local.cloud.calls().iter().any(|c| c.starts_with("launch")));
}

#[test]
fn a_lock_held_by_another_deploy_fails_the_second_and_leaves_the_first_alone() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");

    local.submit(&release, &id(2));
    let second = run_until_end(&local, &id(2));
    let first = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::LockExists, Cleanliness::Clean)(&second.end));
    assert_eq!(types(&local.history(&id(2))), ["DeployRequested", "ReleaseValidated", "LockDenied", "DeployFailed"]);
    assert_eq!(first.end, Some(End::Success));
    assert!(local.cloud.asg_names().iter().all(|n| n.ends_with(&id(1))));
    assert!(local.store.locks().is_empty());
}

#[test]
fn replaying_a_release_id_starts_nothing_new() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    let events_before = local.history(&id(1)).len();
    let calls_before = local.cloud.calls().len();

    // The same request again (a duplicate delivery or a replay): the deploy is already over.
    local.submit(&release, &id(1));
    let handled = local.deliver_next().unwrap();
    assert!(matches!(handled.result, Ok(Handled::Finished { .. })), "{:?}", handled.result);

    // A different release under the same id: refused outright.
    let mut other = release.clone();
    other.ami = "something-else".into();
    local.submit(&other, &id(1));
    let handled = local.deliver_next().unwrap();
    assert!(matches!(&handled.result, Err(RunError::Rejected(reason)) if reason.contains("already used")), "{:?}", handled.result);

    assert_eq!(local.history(&id(1)).len(), events_before, "no event was added");
    assert_eq!(local.cloud.calls().len(), calls_before, "nothing was launched");
    assert!(local.queue.is_empty());
}

// ---- failures after launch: cleanup -----------------------------------------------------------

#[test]
fn never_healthy_until_the_timeout_fails_clean_and_removes_the_new_asgs() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    local.cloud.set_fate(&id(2), Fate::NeverHealthy);

    local.submit(&release, &id(2));
    let state = run_until_end(&local, &id(2));

    assert!(failure(ErrorKind::Timeout, Cleanliness::Clean)(&state.end));
    let history = local.history(&id(2));
    let timed_out = history.iter().find(|r| matches!(r.event, Event::TimedOut { .. })).unwrap();
    let locked = history.iter().find(|r| matches!(r.event, Event::LockAcquired { .. })).unwrap();
    assert_eq!(timed_out.at.ms_since(locked.at), 600_000, "the timeout runs from the lock");
    assert!(local.cloud.asg_names().iter().all(|n| n.ends_with(&id(1))), "only the old release remains");
    assert_eq!(local.cloud.asg_names().len(), 2);
    assert!(local.store.locks().is_empty());
}

#[test]
fn a_halt_mid_deploy_fails_clean_and_removes_what_was_launched() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");

    local.halt(&release, "wrong build");
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::Halt, Cleanliness::Clean)(&state.end));
    let history = local.history(&id(1));
    assert!(history.iter().any(|r| matches!(&r.event, Event::HaltRequested { reason, .. } if reason == "wrong build")));
    assert!(local.cloud.asg_names().is_empty());
    assert!(local.cloud.launch_template_names().is_empty());
    assert!(local.store.locks().is_empty());
}

#[test]
fn a_halt_after_the_release_is_live_changes_nothing() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServicesHealthy");

    local.halt(&release, "too late");
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    assert_eq!(local.cloud.asg_names().len(), 2);
}

#[test]
fn a_halt_with_no_running_deploy_is_ignored() {
    let release = release();
    let local = world(&release);

    local.halt(&release, "nothing to stop");
    let handled = local.deliver_next().unwrap();

    assert!(matches!(handled.result, Ok(Handled::Ignored { .. })), "{:?}", handled.result);
}

#[test]
fn terminations_above_max_terms_halt_the_deploy() {
    let mut release = release();
    release.services.get_mut("worker").unwrap().autoscaling.max_terms = Some(0);
    let local = world(&release);
    local.cloud.set_fate("worker", Fate::TerminatesAfterMs(60_000));

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::Halt, Cleanliness::Clean)(&state.end));
    let history = local.history(&id(1));
    assert!(history
        .iter()
        .any(|r| matches!(&r.event, Event::TerminationsExceeded { service, terminating: 1, max_terms: 0 } if service == "worker")));
    assert!(local.cloud.asg_names().is_empty());
}

#[test]
fn a_canary_that_fails_on_its_first_instance_never_launches_the_rest() {
    let release = release();
    let local = world(&release);
    local.cloud.set_fate("-web-", Fate::TerminatesAfterMs(60_000));

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::Halt, Cleanliness::Clean)(&state.end));
    assert_eq!(web_capacities(&local, &id(1)), [1], "the canary alone was launched");
    assert!(local.cloud.asg_names().is_empty());
}

#[test]
fn a_cleanup_that_fails_permanently_ends_failure_dirty_and_still_unlocks() {
    let release = release();
    let local = world(&release);
    local.cloud.set_fate("-web-", Fate::NeverHealthy);
    local.cloud.fail(Op::Delete, CloudError::permanent("AccessDenied", "not allowed"), None);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::Timeout, Cleanliness::Dirty)(&state.end));
    let history = local.history(&id(1));
    let abandoned = history.iter().filter(|r| matches!(r.event, Event::TeardownAbandoned { .. })).count();
    assert_eq!(abandoned, 2, "both new ASGs were given up on, each after its bounded retries");
    let delete_calls = local.cloud.calls().iter().filter(|c| c.starts_with("delete")).count();
    assert_eq!(delete_calls, 2 * skald_engine::workflow::state::ATTEMPTS_MAX as usize);
    assert!(local.store.locks().is_empty(), "a dirty deploy still gives the lock back");
}

#[test]
fn a_permanent_launch_error_fails_clean_and_removes_the_services_already_launched() {
    let release = release();
    let local = world(&release);
    local.cloud.fail(Op::Launch, CloudError::permanent("ValidationError", "bad instance type"), None);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert!(failure(ErrorKind::Deploy, Cleanliness::Clean)(&state.end));
    let Some(End::Failure { reason, .. }) = &state.end else { unreachable!() };
    assert!(reason.contains("ValidationError: bad instance type"), "{reason}");
    assert!(local.cloud.asg_names().is_empty());
    assert!(local.store.locks().is_empty());
}

// ---- faults the runner must absorb --------------------------------------------------------------

#[test]
fn transient_cloud_errors_are_retried_with_backoff() {
    let release = release();
    let local = world(&release);
    local.cloud.fail(Op::Observe, CloudError::transient("Throttling"), Some(3));

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    let failures: Vec<u32> = local
        .history(&id(1))
        .iter()
        .filter_map(|r| match &r.event {
            Event::CommandFailed { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [1, 2, 3]);
}

#[test]
fn a_launch_that_fails_transiently_is_tried_again() {
    // Regression (found by the simulation, seed 0): a launch that failed transiently was
    // counted as started and never retried; the deploy went on to the next service and then
    // panicked looking for the instant of a launch that never happened.
    let release = release();
    let local = world(&release);
    local.cloud.fail(Op::Launch, CloudError::transient("Throttling"), Some(1));

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    let launches: Vec<String> = local.cloud.calls().into_iter().filter(|c| c.starts_with("launch")).collect();
    let web = format!("launch coinbase/deploy-test-production-web-{}", id(1));
    assert_eq!(launches.iter().filter(|c| **c == web).count(), 2, "web's launch was tried again: {launches:?}");
    assert_eq!(local.cloud.asg_names().len(), 2);
}

#[test]
fn a_crash_between_an_effect_and_its_record_is_resumed_without_leaking() {
    let release = release();
    let local = world(&release);
    // Given appends 1-4 (request .. resources) and 5 (web's launch intent) land, and the 6th,
    // the launch's outcome, is lost: the worker died after creating the ASG, before recording it.
    local.store.inject(&[None, None, None, None, None, Some(AppendFault::Refuse)]);
    local.submit(&release, &id(1));
    let handled = local.deliver_next().unwrap();
    assert!(matches!(handled.result, Err(RunError::Store(_))), "{:?}", handled.result);
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    let launches = local.cloud.calls().iter().filter(|c| c.starts_with("launch")).count();
    assert_eq!(launches, 3, "web's launch ran twice (once lost) and worker's once");
    let history = local.history(&id(1));
    let intents = history.iter().filter(|r| matches!(&r.event, Event::CommandStarted { command } if command.name() == "launch")).count();
    assert_eq!(intents, 2, "the resumed launch reused its recorded intent");
    assert_eq!(local.cloud.asg_names().len(), 2, "no ASG leaked");
}

#[test]
fn a_wake_for_a_malformed_deploy_id_is_rejected_before_reading_the_store() {
    let release = release();
    let local = world(&release);
    let reads_before = local.store.stats();

    local.queue.push(&Message::Wake { deploy: "../../etc/passwd".into(), seq: 3 }, 0);
    let handled = local.deliver_next().unwrap();

    assert!(matches!(&handled.result, Err(RunError::Rejected(reason)) if reason.starts_with("deploy: ")), "{:?}", handled.result);
    assert_eq!(local.store.stats(), reads_before, "the store was not touched");
}

#[test]
fn duplicate_wakes_do_not_duplicate_work() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");

    for _ in 0..5 {
        local.queue.push(&Message::Wake { deploy: id(1), seq: 1 }, 0);
    }
    let state = run_until_end(&local, &id(1));

    assert_eq!(state.end, Some(End::Success));
    let launches = local.cloud.calls().iter().filter(|c| c.starts_with("launch")).count();
    assert_eq!(launches, 2);
    skald_engine::codec::verify_chain(&local.store.history(&id(1))).unwrap();
}

#[test]
fn the_lock_names_the_running_deploy() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "LockAcquired");

    assert_eq!(local.store.lock_item(&lock_key()).unwrap().owner, id(1));
}

#[test]
fn a_long_history_is_read_from_its_latest_snapshot() {
    // Given a worker that never becomes healthy and web instances that flap, so health changes
    // at every check of a long deploy
    let mut release = release();
    release.timeout = Some(1_799);
    let local = world(&release);
    local.cloud.set_fate("-web-", Fate::Flapping(15_000));
    local.cloud.set_fate("-worker-", Fate::NeverHealthy);

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then the history is long, yet no step read more than a snapshot and its window of events
    assert!(failure(ErrorKind::Timeout, Cleanliness::Clean)(&state.end));
    let length = local.history(&id(1)).len() as u64;
    assert!(
        length > 2 * skald_engine::runner::SNAPSHOT_EVERY_EVENTS,
        "history of {length} events: {:#?}",
        local.history(&id(1)).iter().map(|r| format!("{} {}", r.at, r.event)).collect::<Vec<_>>()
    );
    let stats = local.store.stats();
    assert!(stats.events_read_max <= skald_engine::runner::SNAPSHOT_EVERY_EVENTS + 1, "{stats:?}");
}

#[test]
fn a_deploy_whose_wakes_were_lost_is_woken_by_the_sweeper() {
    // Given a deploy waiting for its first health check, and every queued message lost
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");
    local.queue.lose_all();

    // When the sweeper runs before the deploy is overdue, and again after
    let early = block_on(local.runner.sweep()).unwrap();
    local.clock.advance_ms((skald_engine::workflow::decide::STALL_GRACE_SECS + 120) * 1000);
    let late = block_on(local.runner.sweep()).unwrap();
    let state = run_until_end(&local, &id(1));

    // Then only the overdue sweep woke it, and it went on to release its lock
    assert!(early.woken.is_empty(), "{early:?}");
    assert_eq!(late.woken, [id(1)]);
    assert!(state.end.is_some());
    assert!(local.store.locks().is_empty());
}

#[test]
fn the_sweeper_leaves_patient_deploys_alone() {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    for _ in 0..MESSAGES_MAX {
        if local.state(&id(1)).is_finished() {
            break;
        }
        let swept = block_on(local.runner.sweep()).unwrap();
        assert!(swept.woken.is_empty(), "a deploy that keeps its schedule is never woken: {swept:?}");
        local.deliver_next();
    }
    assert_eq!(local.state(&id(1)).end, Some(End::Success));
}

#[test]
fn a_worker_that_loses_an_append_race_carries_the_deploy_on() {
    // Regression (found by the simulation, seed 2890): two workers held the same request; the
    // one that recorded LockDenied died before the closing event, and the other, having lost the
    // race, deleted the message and left. The deploy held no lock, so no sweeper ever woke it.
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");
    // (The LockDenied append lands as another worker's, which then dies.)
    local.store.inject_for("LockDenied", AppendFault::RaceLost);

    // When the second release's request is handled by a worker that loses the LockDenied race
    let request = Message::DeployRequested { release: Box::new(release.clone()), release_id: id(2), created_at: local.now() };
    let handled = block_on(local.runner.handle(request, None, false)).unwrap();

    // Then it re-reads the history and closes the deploy itself
    assert!(matches!(handled, Handled::Finished { .. }), "{handled:?}");
    assert_eq!(types(&local.history(&id(2))), ["DeployRequested", "ReleaseValidated", "LockDenied", "DeployFailed"]);
}

// ---- safe_release (Odin's ValidateSafeRelease) -------------------------------------------------

/// Given: the example release live as deploy 1 (not itself a safe release).
fn world_with_live_release() -> skald_engine::adapters::local::Local {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    assert_eq!(run_until_end(&local, &id(1)).end, Some(End::Success));
    local
}

fn safe(mut release: skald_engine::workflow::Release) -> skald_engine::workflow::Release {
    release.safe_release = true;
    release
}

#[test]
fn a_safe_release_changing_instance_type_and_subnets_is_refused_naming_each_and_launches_nothing() {
    // Given a live release, and a safe release changing web's instance type and the subnets
    let local = world_with_live_release();
    let mut changed = safe(release());
    changed.services.get_mut("web").unwrap().instance_type = "m5.large".into();
    changed.subnets = vec!["other_subnet_a".into()];
    let launches_before = local.cloud.calls().iter().filter(|c| c.starts_with("launch")).count();

    // When it deploys
    local.submit(&changed, &id(2));
    let state = run_until_end(&local, &id(2));

    // Then the live release is found once the lock is held, and the refusal names both fields
    assert!(failure(ErrorKind::BadRelease, Cleanliness::Clean)(&state.end));
    let history = local.history(&id(2));
    assert_eq!(
        types(&history),
        ["DeployRequested", "ReleaseValidated", "LockAcquired", "LiveReleaseFound", "SafeReleaseRefused", "LockReleased", "DeployFailed"]
    );
    assert!(matches!(&history[3].event, Event::LiveReleaseFound { release_id: Some(live), .. } if *live == id(1)));
    let Event::SafeReleaseRefused { live_release, problems } = &history[4].event else { unreachable!() };
    assert_eq!(*live_release, id(1));
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["subnets", "services.web.instance_type"]);
    // And nothing was looked up or launched, the live release is untouched and the lock is free
    let launches_after = local.cloud.calls().iter().filter(|c| c.starts_with("launch")).count();
    assert_eq!(launches_after, launches_before);
    assert!(local.cloud.asg_names().iter().all(|n| n.ends_with(&id(1))));
    assert!(local.store.locks().is_empty());
}

#[test]
fn a_safe_release_changing_only_the_ami_deploys_and_replaces_the_live_release() {
    // Given a live release, and a safe release whose only change is its AMI (opted in)
    let local = world_with_live_release();
    let mut new_ami = safe(release());
    new_ami.ami = "ubuntu-next".into();
    local.cloud.add_image("ami-0bbbbbbbbbbbbbbbb", &[("Name", "ubuntu-next"), (TAG_DEPLOY_WITH, "skald")]);

    // When it deploys
    local.submit(&new_ami, &id(2));
    let state = run_until_end(&local, &id(2));

    // Then it passes the check and goes live in place of the first
    assert_eq!(state.end, Some(End::Success));
    let history = local.history(&id(2));
    assert_eq!(types(&history)[3..5], ["LiveReleaseFound", "ResourcesResolved"]);
    assert!(local.cloud.asg_names().iter().all(|n| n.ends_with(&id(2))));
}

#[test]
fn a_safe_release_with_no_live_release_deploys() {
    // Given nothing live
    let release = safe(release());
    let local = world(&release);

    // When a safe release deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then there is nothing to compare with: it goes live
    assert_eq!(state.end, Some(End::Success));
    let history = local.history(&id(1));
    assert_eq!(history[3].event, Event::LiveReleaseFound { release_id: None, release: None });
    assert_eq!(history[4].event.name(), "ResourcesResolved");
}

#[test]
fn a_safe_release_after_an_undeploy_finds_nothing_live() {
    // Given a release that was live and then undeployed (the example's config allows it here)
    let mut release = release();
    release.config_name = "development".into();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    local.undeploy(&release, &id(2), "done with it");
    assert_eq!(run_until_end(&local, &id(2)).end, Some(End::Success));

    // When a safe release with another instance type deploys
    let mut changed = safe(release.clone());
    changed.services.get_mut("web").unwrap().instance_type = "m5.large".into();
    local.submit(&changed, &id(3));
    let state = run_until_end(&local, &id(3));

    // Then nothing is live to compare with, and it deploys
    assert_eq!(state.end, Some(End::Success));
    assert_eq!(local.history(&id(3))[3].event, Event::LiveReleaseFound { release_id: None, release: None });
}

#[test]
fn a_safe_release_is_not_judged_safe_against_a_history_that_cannot_be_read() {
    // Given a live release whose history was altered in place (its chain no longer verifies)
    let local = world_with_live_release();
    local.store.tamper(&id(1), 2, |event| event.at = event.at.plus_ms(1));

    // When a safe release deploys
    local.submit(&safe(release()), &id(2));
    let state = run_until_end(&local, &id(2));

    // Then finding the live release fails for good: the deploy fails clean before any launch
    assert!(failure(ErrorKind::Deploy, Cleanliness::Clean)(&state.end), "{state:?}");
    let history = local.history(&id(2));
    let failed = history.iter().find_map(|r| match &r.event {
        Event::CommandFailed { command, error, .. } if command == "find_live_release" => Some(error.clone()),
        _ => None,
    });
    assert_eq!(failed.and_then(|e| e.code).as_deref(), Some("CorruptHistory"));
    assert!(!history.iter().any(|r| r.event.name() == "ServiceLaunched"));
    assert!(local.store.locks().is_empty());
}

// ---- detach_strategy and the slow-start wait (Odin's DetachForSuccess, wait_for_detach) --------

fn old_web() -> String {
    web_asg(1)
}

/// The calls retiring `asg` made on the cloud, in order: detach, is_detached, delete.
fn calls_on(local: &skald_engine::adapters::local::Local, asg: &str) -> Vec<String> {
    let retiring = ["detach", "is_detached", "delete"].map(|call| format!("{call} {asg}"));
    local.cloud.calls().into_iter().filter(|c| retiring.contains(c)).map(|c| c.replace(&format!(" {asg}"), "")).collect()
}

/// When: a second release with `strategy` replaces the live first one.
fn replace_with(strategy: Option<DetachStrategy>) -> skald_engine::adapters::local::Local {
    let local = world_with_live_release();
    let mut second = release();
    second.detach_strategy = strategy;
    local.submit(&second, &id(2));
    assert_eq!(run_until_end(&local, &id(2)).end, Some(End::Success));
    local
}

/// The teardown events recorded for `asg`.
fn retirement_of(local: &skald_engine::adapters::local::Local, deploy: &str, asg: &str) -> Vec<&'static str> {
    local
        .history(deploy)
        .iter()
        .filter(|r| match &r.event {
            Event::Detached { asg: a } | Event::DetachConfirmed { asg: a, .. } | Event::AsgDeleted { asg: a } => a == asg,
            Event::CommandStarted { command } => command.teardown_asg() == Some(asg),
            _ => false,
        })
        .map(|r| match &r.event {
            Event::CommandStarted { command } => command.name(),
            other => other.name(),
        })
        .collect()
}

#[test]
fn detach_detaches_the_old_asg_waits_until_it_has_left_its_load_balancers_then_deletes_it() {
    // Given a live release; when the next one, with the default strategy, replaces it
    let local = replace_with(Some(DetachStrategy::Detach));

    // Then the old web ASG is detached, seen to be detached (the drain), then deleted
    assert_eq!(retirement_of(&local, &id(2), &old_web()), ["detach", "Detached", "DetachConfirmed", "delete", "AsgDeleted"]);
    let calls = calls_on(&local, &old_web());
    assert_eq!(calls.first().map(String::as_str), Some("detach"));
    assert!(calls.iter().any(|c| c == "is_detached"), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("delete"));
}

#[test]
fn an_absent_detach_strategy_retires_the_old_asg_as_detach_does() {
    let local = replace_with(None);

    assert_eq!(retirement_of(&local, &id(2), &old_web()), ["detach", "Detached", "DetachConfirmed", "delete", "AsgDeleted"]);
}

#[test]
fn skip_detach_check_detaches_the_old_asg_and_deletes_it_without_waiting_to_see_it_detached() {
    let local = replace_with(Some(DetachStrategy::SkipDetachCheck));

    assert_eq!(retirement_of(&local, &id(2), &old_web()), ["detach", "Detached", "delete", "AsgDeleted"]);
    assert_eq!(calls_on(&local, &old_web()), ["detach", "delete"], "never asked whether it is detached");
}

#[test]
fn skip_detach_deletes_the_old_asg_without_detaching_it() {
    let local = replace_with(Some(DetachStrategy::SkipDetach));

    assert_eq!(retirement_of(&local, &id(2), &old_web()), ["delete", "AsgDeleted"]);
    assert_eq!(calls_on(&local, &old_web()), ["delete"]);
    assert!(local.cloud.asg_names().iter().all(|n| n.ends_with(&id(2))));
}

#[test]
fn a_failed_deploy_still_detaches_its_own_asgs_whatever_the_strategy() {
    // Given a live release and a second one with SkipDetach that never gets healthy
    let local = world_with_live_release();
    let mut second = release();
    second.detach_strategy = Some(DetachStrategy::SkipDetach);
    local.cloud.set_fate(&id(2), Fate::NeverHealthy);

    // When it times out
    local.submit(&second, &id(2));
    let state = run_until_end(&local, &id(2));

    // Then its new web ASG is drained before it goes (the strategy is about the old release)
    assert!(failure(ErrorKind::Timeout, Cleanliness::Clean)(&state.end));
    assert_eq!(retirement_of(&local, &id(2), &web_asg(2))[..2], ["detach", "Detached"]);
}

#[test]
fn the_old_release_is_detached_only_once_the_new_target_groups_slow_start_is_over() {
    // Given a live release, and the web target group with a 120 s slow start
    let local = world_with_live_release();
    local.cloud.set_slow_start("coinbase-deploy-test-web-tg", 120);

    // When the next release deploys
    local.submit(&release(), &id(2));
    let state = run_until_end(&local, &id(2));

    // Then the lookup's slow start is recorded, and the old web ASG is detached 120 s or more
    // after the new release was healthy
    assert_eq!(state.end, Some(End::Success));
    let history = local.history(&id(2));
    let Some(Event::ResourcesResolved { resolved }) = history.iter().map(|r| &r.event).find(|e| e.name() == "ResourcesResolved") else {
        unreachable!()
    };
    assert_eq!(resolved.wait_for_detach_secs, 120);
    let at = |name: &str| history.iter().find(|r| r.event.name() == name).map(|r| r.at).unwrap();
    let healthy_at = at("ServicesHealthy");
    assert!(at("Detached").ms_since(healthy_at) >= 120_000, "detached {} ms after healthy", at("Detached").ms_since(healthy_at));
}

#[test]
fn without_slow_start_the_old_release_is_detached_as_soon_as_the_new_one_is_final() {
    let local = replace_with(None);

    let history = local.history(&id(2));
    let Some(Event::ResourcesResolved { resolved }) = history.iter().map(|r| &r.event).find(|e| e.name() == "ResourcesResolved") else {
        unreachable!()
    };
    assert_eq!(resolved.wait_for_detach_secs, 0);
    let at = |name: &str| history.iter().find(|r| r.event.name() == name).map(|r| r.at).unwrap();
    assert!(at("Detached").ms_since(at("ServicesHealthy")) < 120_000);
}

#[test]
fn a_slow_start_wait_is_bounded_by_elbv2s_longest() {
    // Given a target group reporting a slow start longer than ELBv2 allows
    let local = world_with_live_release();
    local.cloud.set_slow_start("coinbase-deploy-test-web-tg", 86_400);

    local.submit(&release(), &id(2));
    run_until_end(&local, &id(2));

    let history = local.history(&id(2));
    let Some(Event::ResourcesResolved { resolved }) = history.iter().map(|r| &r.event).find(|e| e.name() == "ResourcesResolved") else {
        unreachable!()
    };
    assert_eq!(resolved.wait_for_detach_secs, skald_engine::workflow::resources::SLOW_START_SECS_MAX);
}
