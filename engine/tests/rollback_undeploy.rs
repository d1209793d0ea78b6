//! `on_concurrent_deploy: rollback` and undeploys, end to end: the real runner over the in-memory
//! store and queue and the simulated cloud. Each test reads given (a world, live releases) / when
//! (a second deploy, an undeploy, time passing) / then (the histories, the cloud, the lock).

mod support;

use skald_engine::adapters::local::{example_traffic, Local};
use skald_engine::adapters::memory::block_on;
use skald_engine::message::Message;
use skald_engine::replay;
use skald_engine::runner::Handled;
use skald_engine::workflow::event::{Cleanliness, ErrorKind, Event, Recorded};
use skald_engine::workflow::names::target_group_name;
use skald_engine::workflow::release::{OnConcurrentDeploy, Traffic};
use skald_engine::workflow::state::{fold, End, ROLLBACK_WAIT_SECS_MAX};
use skald_engine::workflow::{decide, Command, Decision, Release};
use support::*;

fn rolling_back(mut release: Release) -> Release {
    release.on_concurrent_deploy = Some(OnConcurrentDeploy::Rollback);
    release
}

fn failed(state_end: &Option<End>, error: ErrorKind) -> bool {
    matches!(state_end, Some(End::Failure { error: e, cleanliness: Cleanliness::Clean, .. }) if *e == error)
}

/// Then: today's code would have recorded exactly this history (replay's `--verify`).
fn assert_verifies(local: &Local, deploy: &str) {
    replay::verify(&local.store.history(deploy)).unwrap_or_else(|failure| panic!("{deploy} does not verify: {failure}"));
}

/// The ASGs of the example's project-config, by release id.
fn asgs_of_release(local: &Local, release_id: &str) -> usize {
    local.cloud.asg_names().iter().filter(|name| name.ends_with(release_id)).count()
}

// ---- on_concurrent_deploy ----------------------------------------------------------------------

#[test]
fn a_rollback_deploy_cancels_the_running_one_waits_for_its_cleanup_then_deploys() {
    // Given deploy 1 launching, and deploy 2 of the same project-config that rolls back
    let release = rolling_back(release());
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");

    // When deploy 2 arrives
    local.submit(&release, &id(2));
    let second = run_until_end(&local, &id(2));

    // Then deploy 1 was halted in its own history, cleaned up and ended FailureClean; deploy 2
    // waited for that, took the lock and went live
    let first = local.state(&id(1));
    assert!(failed(&first.end, ErrorKind::Halt), "{:?}", first.end);
    let halt = local.history(&id(1)).into_iter().find_map(|r| match r.event {
        Event::HaltRequested { reason, requested_by } => Some((reason, requested_by)),
        _ => None,
    });
    let (reason, by) = halt.expect("deploy 1 records who cancelled it");
    assert!(reason.contains(&format!("cancelled by deploy {}", id(2))), "{reason}");
    assert_eq!(by.as_deref(), Some(format!("skald deploy {}", id(2)).as_str()));
    assert_eq!(second.end, Some(End::Success));
    let types = types(&local.history(&id(2)));
    let lock_at = types.iter().position(|t| *t == "LockAcquired").expect("deploy 2 took the lock");
    assert_eq!(&types[2..4], ["LockDenied", "ConcurrentDeployCancelled"]);
    let waited = &types[4..lock_at];
    assert!(waited.iter().all(|t| ["LockDenied", "LockFreed"].contains(t)), "only retries of the lock while waiting: {types:?}");
    assert_eq!((asgs_of_release(&local, &id(1)), asgs_of_release(&local, &id(2))), (0, 2));
    assert!(local.store.watch_notes().is_empty(), "no deploy is noted as yet to take its lock");
    assert_verifies(&local, &id(2));
}

#[test]
fn the_end_of_the_cancelled_deploy_wakes_the_waiting_one_at_once() {
    // Given deploy 2 waiting for deploy 1, which it cancelled
    let release = rolling_back(release());
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "ConcurrentDeployCancelled");

    // When deploy 1 ends
    run_until_end(&local, &id(1));
    let ended_at = local.history(&id(1)).last().expect("ended").at;
    run_until_event(&local, &id(2), "LockAcquired");

    // Then deploy 1's end was recorded in deploy 2's history, which took the lock that moment,
    // not at its next retry
    let history = local.history(&id(2));
    let at_of = |name: &str| history.iter().find(|r| r.event.name() == name).map(|r| r.at);
    assert_eq!((at_of("LockFreed"), at_of("LockAcquired")), (Some(ended_at), Some(ended_at)));
    assert!(history.iter().any(|r| r.event == Event::LockFreed { holder: id(1) }));
}

#[test]
fn an_older_deploy_never_cancels_a_newer_one() {
    // Given deploy 2 (the newer release id) running
    let release = rolling_back(release());
    let local = world(&release);
    local.submit(&release, &id(2));
    run_until_event(&local, &id(2), "ServiceLaunched");

    // When deploy 1, older, arrives late with rollback too
    local.submit(&release, &id(1));
    let older = run_until_end(&local, &id(1));

    // Then the older fails with LockExists and the newer carries on untouched: the newest wins
    let Some(End::Failure { error: ErrorKind::LockExists, reason, .. }) = &older.end else { panic!("{:?}", older.end) };
    assert!(reason.contains("is newer"), "{reason}");
    assert_eq!(run_until_end(&local, &id(2)).end, Some(End::Success));
    assert!(!types(&local.history(&id(2))).contains(&"HaltRequested"));
}

#[test]
fn fail_is_the_default_and_leaves_the_running_deploy_alone() {
    // Given deploy 1 running, and deploy 2 that says nothing about concurrent deploys
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_event(&local, &id(1), "ServiceLaunched");

    // When deploy 2 arrives
    local.submit(&release, &id(2));

    // Then it fails at once with LockExists, and deploy 1 succeeds
    assert!(failed(&run_until_end(&local, &id(2)).end, ErrorKind::LockExists));
    assert_eq!(run_until_end(&local, &id(1)).end, Some(End::Success));
}

#[test]
fn a_wait_for_a_cancelled_deploy_is_bounded() {
    // Given a deploy that cancelled the holder of its lock and was denied it since
    let release = rolling_back(release());
    let at = |secs: u64| START.plus_secs(secs);
    let request = Event::DeployRequested {
        release_id: id(2),
        created_at: at(0),
        release: Box::new(release.clone()),
        release_digest: "d".into(),
        requested_by: None,
        freshness: Default::default(),
        settings: None,
        rules: skald_engine::workflow::event::RULES_CURRENT,
        frozen: None,
    };
    let mut history = vec![
        Recorded { seq: 1, at: at(0), event: request },
        Recorded { seq: 2, at: at(0), event: Event::ReleaseValidated },
        Recorded { seq: 3, at: at(0), event: Event::LockDenied { holder: id(1) } },
        Recorded { seq: 4, at: at(0), event: Event::ConcurrentDeployCancelled { holder: id(1) } },
        Recorded { seq: 5, at: at(ROLLBACK_WAIT_SECS_MAX), event: Event::LockDenied { holder: id(1) } },
    ];
    let waiting = fold(&history).expect("folds");
    assert!(waiting.failure.is_none(), "within the bound it still waits");
    assert!(matches!(decide(&waiting, at(ROLLBACK_WAIT_SECS_MAX + 60)), Decision::Act(Command::AcquireLock { .. })));

    // When the holder still has the lock past the bound
    history.push(Recorded { seq: 6, at: at(ROLLBACK_WAIT_SECS_MAX + 60), event: Event::LockDenied { holder: id(1) } });
    let state = fold(&history).expect("folds");

    // Then the deploy fails with LockExists, saying why
    let failure = state.failure.expect("failed");
    assert_eq!(failure.error, ErrorKind::LockExists);
    assert!(failure.reason.contains(&format!("did not clean up within {ROLLBACK_WAIT_SECS_MAX} s")), "{}", failure.reason);
}

// ---- undeploy ----------------------------------------------------------------------------------

/// Given: the example release with web behind an ALB rule, live, undeploy allowed or not.
fn live_traffic_release(allow_undeploy: Option<bool>) -> (Local, Release) {
    let mut release = release();
    release.allow_undeploy = allow_undeploy;
    release.services.get_mut("web").unwrap().traffic = Some(Traffic { ..example_traffic(&release.config_name) });
    let local = world(&release);
    local.submit(&release, &id(1));
    assert_eq!(run_until_end(&local, &id(1)).end, Some(End::Success));
    (local, release)
}

#[test]
fn an_undeploy_removes_the_rule_the_asgs_and_the_target_group_of_the_live_release() {
    // Given a live release that allows undeploy
    let (local, release) = live_traffic_release(Some(true));
    let listener = example_traffic("production").listener;
    assert!(local.cloud.rule_at(&listener, 10).is_some());
    let web_asg = local.state(&id(1)).services["web"].asg.clone();

    // When a person undeploys its project-config
    local.undeploy(&release, &id(9), "retiring the service");
    let state = run_until_end(&local, &id(9));

    // Then the rule goes first, then the ASGs (detached, then deleted) and the release's group
    assert_eq!(state.end, Some(End::Success));
    assert_eq!(
        milestones(&local.history(&id(9))),
        [
            "UndeployRequested",
            "ReleaseValidated",
            "LockAcquired",
            "UndeployPlanned",
            "RuleRemoved",
            "AsgDeleted",
            "AsgDeleted",
            "LockReleased",
            "DeploySucceeded"
        ]
    );
    assert!(local.cloud.rule_at(&listener, 10).is_none(), "the production rule is gone");
    assert!(local.cloud.asg_names().is_empty(), "{:?}", local.cloud.asg_names());
    assert!(!local.cloud.own_target_groups().contains_key(&target_group_name("web", &web_asg)));
    assert!(local.cloud.rule_at(&listener, 10 + 40_000).is_some(), "the exemplar stays for the next first deploy");
    assert!(local.store.locks().is_empty() && local.store.watch_notes().is_empty());
    assert_verifies(&local, &id(9));
}

#[test]
fn an_undeploy_of_production_is_refused_unless_the_release_allows_it() {
    // Given a live production release that says nothing about undeploy
    let (local, release) = live_traffic_release(None);
    let before = local.cloud.asg_names();

    // When a person undeploys it
    local.undeploy(&release, &id(9), "oops");
    let state = run_until_end(&local, &id(9));

    // Then the undeploy is refused before the lock, naming the safety, and nothing changed
    let Some(End::Failure { error: ErrorKind::BadRelease, reason, .. }) = &state.end else { panic!("{:?}", state.end) };
    assert!(reason.starts_with("allow_undeploy: "), "{reason}");
    assert_eq!(types(&local.history(&id(9))), ["UndeployRequested", "ReleaseRejected", "DeployFailed"]);
    assert_eq!(local.cloud.asg_names(), before);
    assert!(local.store.watch_notes().is_empty(), "the refused undeploy's note went with its end");
}

#[test]
fn an_undeploy_with_nothing_live_changes_nothing() {
    // Given a project-config whose only deploy failed
    let release = release();
    let local = world(&release);
    local.cloud.set_fate("-web-", skald_engine::adapters::sim::Fate::NeverHealthy);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    // When a person undeploys it
    let message = Message::UndeployRequested {
        project: release.project_name.clone(),
        config: release.config_name.clone(),
        reason: "tidy".into(),
        undeploy_id: id(9),
        of_release: None,
    };
    let handled = block_on(local.runner.handle(message, None, false)).expect("handled");

    // Then the message is answered with why, and no undeploy is recorded
    assert_eq!(handled, Handled::Ignored { reason: "no release of coinbase/deploy-test production is live".into() });
    assert!(local.store.history(&id(9)).is_empty());
}

#[test]
fn an_automatic_undeploy_runs_its_minutes_after_the_release_went_live() {
    // Given a release of a staging config that undeploys itself after 45 minutes
    let mut release = release();
    release.config_name = "staging".into();
    release.automatic_undeploy_minutes = Some(45);
    let local = world(&release);
    local.submit(&release, &id(1));
    let live_at = {
        run_until_end(&local, &id(1));
        local.history(&id(1)).last().expect("ended").at
    };

    // When time passes with nothing else to do
    let handlings = local.run(MESSAGES_MAX);

    // Then an undeploy started exactly 45 minutes after the release went live and removed it
    let undeploy = local
        .store
        .deploy_ids()
        .into_iter()
        .find(|d| matches!(local.history(d).first().map(|r| &r.event), Some(Event::UndeployRequested { .. })))
        .expect("an undeploy was recorded");
    let first = &local.history(&undeploy)[0];
    assert_eq!(first.at, live_at.plus_secs(45 * 60));
    let Event::UndeployRequested { of_release, reason, .. } = &first.event else { unreachable!() };
    assert_eq!((of_release.as_str(), reason.as_str()), (id(1).as_str(), "automatic_undeploy_minutes: 45"));
    assert_eq!(local.state(&undeploy).end, Some(End::Success));
    assert!(local.cloud.asg_names().is_empty());
    // The message waited in hops the queue allows (15 minutes each), not in one.
    let deferred = handlings.iter().filter(|h| matches!(h.result, Ok(Handled::Deferred { .. }))).count();
    assert_eq!(deferred, 2, "sent at +0 for +15, deferred at +15 and +30, run at +45");
}

#[test]
fn a_later_release_cancels_the_automatic_undeploy_of_an_earlier_one() {
    // Given a release that undeploys itself after 30 minutes
    let mut release = release();
    release.config_name = "staging".into();
    release.automatic_undeploy_minutes = Some(30);
    let local = world(&release);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    // When a release without it goes live before then
    let mut next = release.clone();
    next.automatic_undeploy_minutes = None;
    local.submit(&next, &id(2));
    run_until_end(&local, &id(2));
    let handlings = local.run(MESSAGES_MAX);

    // Then the scheduled undeploy of release 1 finds it is no longer live and does nothing
    let ignored = handlings.iter().any(
        |h| matches!(&h.result, Ok(Handled::Ignored { reason }) if reason == &format!("release {} is no longer live; {} is", id(1), id(2))),
    );
    assert!(ignored, "{:?}", handlings.iter().map(|h| &h.result).collect::<Vec<_>>());
    assert_eq!(asgs_of_release(&local, &id(2)), 2, "release 2 stays live");
}
