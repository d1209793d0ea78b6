//! `on_concurrent_deploy: rollback` and undeploys on the AWS adapter against a local AWS API
//! (moto, started by the test support unless `SKALD_TEST_AWS_ENDPOINT` names one): a running
//! deploy cancelled and its ASGs and templates deleted before the newer one deploys; an undeploy
//! refused by the `allow_undeploy` safety, and done once a release lifts it (the listener rule,
//! the ASGs, their templates and the release's target group all gone).
//!
//! Deploys run through the real runner on a virtual clock (`testing::deploys`); every cloud call
//! is real. Each test has its own project-config, so tests share one emulator.

use skald_engine::adapters::aws::AwsCloud;
use skald_engine::ports::Cloud;
use skald_engine::testing::deploys::{failures, history, memory_runner, run_until_end, run_until_event, submit, undeploy};
use skald_engine::testing::{example_release_for, moto, traffic_world, TRAFFIC_PRIORITY, TRAFFIC_SERVICE};
use skald_engine::workflow::event::ErrorKind;
use skald_engine::workflow::names::target_group_name;
use skald_engine::workflow::release::OnConcurrentDeploy;
use skald_engine::workflow::resources::Query;
use skald_engine::workflow::{End, Event, Release};
use std::collections::BTreeSet;

async fn asg_names(cloud: &AwsCloud, release: &Release) -> BTreeSet<String> {
    cloud.lookup(&Query::for_release(release)).await.expect("the lookup succeeds").asgs.into_iter().map(|a| a.name).collect()
}

async fn launch_template_names(project: &str) -> BTreeSet<String> {
    let ec2 = aws_sdk_ec2::Client::new(&moto::aws_config().await);
    let out = ec2.describe_launch_templates().send().await.expect("templates are listed");
    out.launch_templates()
        .iter()
        .filter_map(|lt| lt.launch_template_name())
        .filter(|n| n.starts_with(project))
        .map(str::to_string)
        .collect()
}

async fn production_rule_exists(cloud: &AwsCloud, release: &Release) -> bool {
    let traffic = release.services[TRAFFIC_SERVICE].traffic.as_ref().expect("web shifts traffic");
    let found = cloud.lookup(&Query::for_undeploy(release)).await.expect("the lookup succeeds");
    found.listeners[&traffic.listener].iter().any(|r| r.priority == Some(TRAFFIC_PRIORITY))
}

async fn target_group_exists(cloud: &AwsCloud, release: &Release, name: &str) -> bool {
    let mut query = Query::for_release(release);
    query.template_target_groups.insert(name.to_string());
    cloud.lookup(&query).await.expect("the lookup succeeds").template_target_groups.contains_key(name)
}

#[tokio::test]
async fn a_rollback_deploy_cancels_the_running_one_deletes_what_it_made_and_deploys() {
    // Given deploy 1 of a release that rolls back concurrent deploys, part-way through its launches
    let cloud = AwsCloud::new(&moto::aws_config().await);
    let mut release = example_release_for("rollback");
    release.on_concurrent_deploy = Some(OnConcurrentDeploy::Rollback);
    cloud.provision_example(&release).await.expect("the example world is provisioned");
    let runner = memory_runner(cloud.clone());
    let (first, second) = ("01JAWSROLLBACK00000000001", "01JAWSROLLBACK00000000002");
    submit(&runner, &release, first);
    run_until_event(&runner, first, |e| matches!(e, Event::ServiceLaunched { .. })).await;

    // When deploy 2 arrives
    submit(&runner, &release, second);
    let state = run_until_end(&runner, second).await;

    // Then deploy 1 was cancelled and cleaned up (FailureClean), deploy 2 went live, and only its
    // ASGs and templates exist
    assert_eq!(failures(&runner, second), Vec::<String>::new());
    assert_eq!(state.end, Some(End::Success));
    let cancelled = history(&runner, first).1.end;
    assert!(matches!(&cancelled, Some(End::Failure { error: ErrorKind::Halt, reason, .. }) if reason.contains(second)), "{cancelled:?}");
    let live: BTreeSet<String> = state.services.values().map(|s| s.asg.clone()).collect();
    assert_eq!(asg_names(&cloud, &release).await, live);
    assert_eq!(launch_template_names(&release.project_name).await, live, "templates are named after their ASGs");
    let waited = history(&runner, second).0;
    assert!(waited.iter().any(|r| r.event == Event::ConcurrentDeployCancelled { holder: first.into() }));
}

#[tokio::test]
async fn an_undeploy_is_refused_with_the_safety_on_and_done_with_it_off() {
    // Given a live release behind an ALB rule that forbids undeploy
    let (cloud, mut release) = traffic_world("undeploy").await;
    release.allow_undeploy = Some(false);
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSUNDEPLOY00000000001");
    assert_eq!(run_until_end(&runner, "01JAWSUNDEPLOY00000000001").await.end, Some(End::Success));
    let before = asg_names(&cloud, &release).await;

    // When it is undeployed
    undeploy(&runner, &release, "01JAWSUNDEPLOY00000000002");
    let refused = run_until_end(&runner, "01JAWSUNDEPLOY00000000002").await;

    // Then the undeploy is refused, naming the safety, and the release still serves
    let Some(End::Failure { error: ErrorKind::BadRelease, reason, .. }) = &refused.end else { panic!("{:?}", refused.end) };
    assert!(reason.starts_with("allow_undeploy: "), "{reason}");
    assert_eq!(asg_names(&cloud, &release).await, before);
    assert!(production_rule_exists(&cloud, &release).await);

    // Given a release that lifts the safety goes live
    release.allow_undeploy = Some(true);
    submit(&runner, &release, "01JAWSUNDEPLOY00000000003");
    let live = run_until_end(&runner, "01JAWSUNDEPLOY00000000003").await;
    assert_eq!(live.end, Some(End::Success));
    let own_group = target_group_name(TRAFFIC_SERVICE, &live.services[TRAFFIC_SERVICE].asg);
    assert!(target_group_exists(&cloud, &release, &own_group).await);

    // When it is undeployed
    undeploy(&runner, &release, "01JAWSUNDEPLOY00000000004");
    let done = run_until_end(&runner, "01JAWSUNDEPLOY00000000004").await;

    // Then the production rule, every ASG, their templates and the release's group are gone
    assert_eq!(failures(&runner, "01JAWSUNDEPLOY00000000004"), Vec::<String>::new());
    assert_eq!(done.end, Some(End::Success));
    assert!(!production_rule_exists(&cloud, &release).await, "the production rule is removed");
    assert_eq!(asg_names(&cloud, &release).await, BTreeSet::new());
    assert_eq!(launch_template_names(&release.project_name).await, BTreeSet::new());
    assert!(!target_group_exists(&cloud, &release, &own_group).await, "the release's own group is deleted");
}
