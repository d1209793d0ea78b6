//! Notifications: every transition of a deploy is published once it is recorded, at least once,
//! failures even when the release asked for none. Given a world and a release / when the deploy
//! runs (perhaps with the publisher failing) / then what was published.

mod support;

use skald_engine::adapters::sim::{Fate, Op};
use skald_engine::notify::{self, Notification};
use skald_engine::workflow::{CloudError, ErrorKind, State};
use support::*;

fn phases(notifications: &[Notification]) -> Vec<&str> {
    notifications.iter().map(|n| n.phase.as_str()).collect()
}

#[test]
fn every_transition_of_a_successful_deploy_is_published_once_in_order() {
    let release = release();
    let local = world(&release);
    local.cloud.enable_notifications();

    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    let published = local.cloud.notifications();
    assert_eq!(
        phases(&published),
        ["validating", "taking the lock", "checking resources", "deploying", "retiring the old release", "Success"]
    );
    let last = published.last().unwrap();
    assert_eq!((last.end.as_deref(), last.failure, last.schema.as_str()), (Some("Success"), false, notify::SCHEMA));
    assert_eq!(last.seq, local.history(&id(1)).last().unwrap().seq, "the end is the last event");
    assert!(published.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn a_failure_is_published_with_its_error_and_reason_then_its_end() {
    let release = release();
    let local = world(&release);
    local.cloud.enable_notifications();
    local.cloud.set_fate("-web-", Fate::NeverHealthy);

    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    let published = local.cloud.notifications();
    let failing: Vec<&Notification> = published.iter().filter(|n| n.failure).collect();
    assert_eq!(phases(&failing.iter().map(|n| (*n).clone()).collect::<Vec<_>>()), ["cleaning up after a failure", "FailureClean"]);
    assert!(failing.iter().all(|n| n.error == Some(ErrorKind::Timeout) && n.reason.as_deref().unwrap().contains("600 s")));
}

#[test]
fn a_release_that_skips_notifications_still_publishes_its_failures() {
    let mut release = release();
    release.skip_notifications = true;
    let local = world(&release);
    local.cloud.enable_notifications();
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    let after_success = local.cloud.notifications().len();

    local.cloud.set_fate(&id(2), Fate::NeverHealthy);
    local.submit(&release, &id(2));
    run_until_end(&local, &id(2));

    assert_eq!(after_success, 0, "a successful deploy that asked for silence is silent");
    let published = local.cloud.notifications();
    assert_eq!(phases(&published), ["cleaning up after a failure", "FailureClean"]);
    assert!(published.iter().all(|n| n.failure && n.deploy == id(2)));
}

#[test]
fn a_publisher_that_fails_for_a_while_loses_nothing() {
    let release = release();
    let local = world(&release);
    local.cloud.enable_notifications();
    local.cloud.fail(Op::Notify, CloudError::transient("Throttling"), Some(3));

    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then: every transition the history holds was published, in order, none lost (and none
    // repeated here: a failed publish moved no cursor, and nothing was published twice).
    let expected = notify::transitions(State::default(), &local.history(&id(1)), 0);
    assert_eq!(local.cloud.notifications(), expected);
    let attempts = local.cloud.calls().iter().filter(|c| c.starts_with("notify")).count();
    assert_eq!(attempts, expected.len() + 3, "three publishes failed and were retried");
    assert_eq!(state.end.map(|e| e.name()), Some("Success"));
}

#[test]
fn nothing_is_published_or_read_for_it_when_no_destination_is_configured() {
    let release = release();
    let local = world(&release);

    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));

    assert!(local.cloud.notifications().is_empty());
    assert!(!local.cloud.calls().iter().any(|c| c.starts_with("notify")));
}

#[test]
fn an_undeploy_publishes_its_transitions_as_an_undeploy() {
    // Given a live release of a staging config (undeploy allowed by default there)
    let mut release = release();
    release.config_name = "staging".into();
    let local = world(&release);
    local.cloud.enable_notifications();
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    let before = local.cloud.notifications().len();

    // When it is undeployed
    local.undeploy(&release, &id(2), "retired");
    run_until_end(&local, &id(2));

    // Then the undeploy's transitions are published, each saying it is an undeploy
    let published: Vec<Notification> = local.cloud.notifications().into_iter().skip(before).collect();
    assert_eq!(phases(&published), ["validating", "taking the lock", "checking resources", "removing the release", "Success"]);
    assert!(published.iter().all(|n| n.kind == "undeploy" && n.deploy == id(2)), "{published:?}");
    assert!(notify::slack(&published[4])["text"].as_str().unwrap().contains(&format!("(undeploy `{}`)", id(2))));
}
