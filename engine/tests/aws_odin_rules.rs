//! Odin's retirement and capacity rules on real API answers (moto, started by the test support):
//! each `detach_strategy` retires the old release's ASG as it says, the old release waits out the
//! new target group's slow start, and a desired capacity lowered by someone else mid-deploy is set
//! back (Odin's `SafeSetMinDesiredCapacity`), and a placement group under the configuration's prefix
//! is created once and reused (Odin's `FindOrCreatePartitionGroup`).
//!
//! The runner uses the in-memory store and queue on a virtual clock, so waits pass at once while
//! every cloud call is real. Each test works in its own project-config.

use skald_engine::adapters::aws::AwsCloud;
use skald_engine::adapters::local::MemoryRunner;
use skald_engine::testing::deploys::{failures, history, memory_runner, run_until_end, run_until_event, submit};
use skald_engine::testing::{self, moto};
use skald_engine::workflow::release::DetachStrategy;
use skald_engine::workflow::{Event, Release};

async fn provisioned(label: &str) -> (AwsCloud, Release) {
    let cloud = AwsCloud::new(&moto::aws_config().await);
    let release = testing::example_release_for(label);
    cloud.provision_example(&release).await.expect("the example world is provisioned");
    (cloud, release)
}

/// A release id of the test's own: `n` in the last place.
fn id(tag: &str, n: u32) -> String {
    format!("01JAWS{tag:0<12}{n:08}")
}

/// Deploys `release` as `deploy` to its end; panics unless it succeeds.
async fn deploy_to_success(runner: &MemoryRunner<AwsCloud>, release: &Release, deploy: &str) {
    submit(runner, release, deploy);
    let state = run_until_end(runner, deploy).await;
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("Success"), "{deploy}: {:?}", failures(runner, deploy));
}

/// What retiring `asg` took, in the order recorded: the commands announced for it and their
/// outcomes (`detach`, `Detached`, `DetachConfirmed`, `delete`, `AsgDeleted`).
fn retirement_of(runner: &MemoryRunner<AwsCloud>, deploy: &str, asg: &str) -> Vec<&'static str> {
    let events = history(runner, deploy).0;
    events
        .iter()
        .filter_map(|r| match &r.event {
            Event::Detached { asg: a } | Event::DetachConfirmed { asg: a, .. } | Event::AsgDeleted { asg: a } if a == asg => {
                Some(r.event.name())
            }
            Event::CommandStarted { command } if command.teardown_asg() == Some(asg) => Some(command.name()),
            _ => None,
        })
        .collect()
}

async fn asg_exists(config: &aws_config::SdkConfig, name: &str) -> bool {
    let autoscaling = aws_sdk_autoscaling::Client::new(config);
    let out = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.unwrap();
    !out.auto_scaling_groups().is_empty()
}

#[tokio::test]
async fn each_detach_strategy_retires_the_old_asg_as_it_says() {
    for (label, strategy, wanted) in [
        ("detach", DetachStrategy::Detach, &["detach", "Detached", "DetachConfirmed", "delete", "AsgDeleted"][..]),
        ("skipcheck", DetachStrategy::SkipDetachCheck, &["detach", "Detached", "delete", "AsgDeleted"][..]),
        ("skipdetach", DetachStrategy::SkipDetach, &["delete", "AsgDeleted"][..]),
    ] {
        // Given a live release behind a classic ELB and a target group
        let (cloud, release) = provisioned(&format!("retire-{label}")).await;
        let runner = memory_runner(cloud);
        let (first, second) = (id(label, 1), id(label, 2));
        deploy_to_success(&runner, &release, &first).await;
        let old_web = history(&runner, &first).1.services["web"].asg.clone();

        // When the next release, with `strategy`, replaces it
        let next = Release { detach_strategy: Some(strategy), ..release.clone() };
        deploy_to_success(&runner, &next, &second).await;

        // Then the old web ASG was retired by exactly the strategy's steps, and is gone
        assert_eq!(retirement_of(&runner, &second, &old_web), wanted, "{label}");
        assert!(!asg_exists(&moto::aws_config().await, &old_web).await, "{label}: {old_web} is deleted");
    }
}

#[tokio::test]
async fn the_old_release_is_detached_only_after_the_new_target_groups_slow_start() {
    // Given a live release whose web target group has a 45 s slow start
    let (cloud, release) = provisioned("slow-start").await;
    let config = moto::aws_config().await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let group_name = release.services["web"].target_groups[0].clone();
    let groups = elbv2.describe_target_groups().names(&group_name).send().await.unwrap();
    let group_arn = groups.target_groups()[0].target_group_arn().unwrap().to_string();
    let slow_start =
        aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder().key("slow_start.duration_seconds").value("45").build();
    elbv2.modify_target_group_attributes().target_group_arn(&group_arn).attributes(slow_start).send().await.unwrap();
    let runner = memory_runner(cloud);
    let (first, second) = (id("slowstart", 1), id("slowstart", 2));
    deploy_to_success(&runner, &release, &first).await;
    let old_web = history(&runner, &first).1.services["web"].asg.clone();

    // When the next release deploys
    deploy_to_success(&runner, &release, &second).await;

    // Then the slow start was read from the API and recorded, and the old web ASG was detached
    // no sooner than 45 s after the new release was healthy
    let recorded = history(&runner, &second).0;
    let resolved = recorded.iter().find_map(|r| match &r.event {
        Event::ResourcesResolved { resolved } => Some(resolved.clone()),
        _ => None,
    });
    assert_eq!(resolved.map(|r| r.wait_for_detach_secs), Some(45));
    let healthy_at = recorded.iter().find(|r| r.event.name() == "ServicesHealthy").map(|r| r.at).unwrap();
    let detached_at = recorded.iter().find(|r| matches!(&r.event, Event::Detached { asg } if *asg == old_web)).map(|r| r.at).unwrap();
    assert!(detached_at.ms_since(healthy_at) >= 45_000, "detached {} ms after healthy", detached_at.ms_since(healthy_at));
}

#[tokio::test]
async fn a_capacity_lowered_mid_deploy_is_set_back() {
    // Given a deploy launching all its web instances at once (so it sets no capacity itself),
    // whose ASG was just created
    let (cloud, mut release) = provisioned("lowered").await;
    release.services.get_mut("web").unwrap().autoscaling.strategy = None;
    let config = moto::aws_config().await;
    let runner = memory_runner(cloud);
    let deploy = id("lowered", 1);
    submit(&runner, &release, &deploy);
    run_until_event(&runner, &deploy, |e| matches!(e, Event::ServiceLaunched { service, .. } if service == "web")).await;
    let state = history(&runner, &deploy).1;
    let (asg, min_size, desired) = (state.services["web"].asg.clone(), state.services["web"].min_size, state.services["web"].desired);
    assert!(min_size >= 2 && desired >= 2, "the example's web service runs at least two instances");

    // When someone (a scaling policy, a person) lowers its min and desired to one
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling.update_auto_scaling_group().auto_scaling_group_name(&asg).min_size(1).desired_capacity(1).send().await.unwrap();

    // Then the deploy sets both back at its next health check, once, succeeds, and only then
    // settles at the release's own size (spread removed)
    let end = run_until_end(&runner, &deploy).await;
    assert_eq!(end.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, &deploy));
    let set: Vec<(u32, u32)> = history(&runner, &deploy)
        .0
        .iter()
        .filter_map(|r| match &r.event {
            Event::CapacitySet { service, min_size, desired, .. } if service == "web" => Some((*min_size, *desired)),
            _ => None,
        })
        .collect();
    assert_eq!(set.first(), Some(&(min_size, desired)), "set back to what the deploy had planned: {set:?}");
    assert!(set.len() <= 2, "one set-back, then at most the final size: {set:?}");
    let (final_min, final_desired) = *set.last().unwrap();
    let plan = history(&runner, &deploy).1.services["web"].plan;
    assert_eq!((final_min, final_desired), (plan.min_size, plan.desired), "the release's own size at the end: {set:?}");
    let out = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&asg).send().await.unwrap();
    let group = &out.auto_scaling_groups()[0];
    assert_eq!((group.min_size(), group.desired_capacity()), (Some(final_min as i32), Some(final_desired as i32)));
}

#[tokio::test]
async fn a_placement_group_under_the_configs_prefix_is_created_tagged_and_reused() {
    // Given a release whose web service names a partition group under skald/<project>/<config>/
    // that does not exist yet
    let (cloud, mut release) = provisioned("placement").await;
    let group = format!("skald/{}/{}/web", release.project_name, release.config_name);
    let web = release.services.get_mut("web").unwrap();
    web.placement_group_name = Some(group.clone());
    web.placement_group_strategy = Some("partition".into());
    web.placement_group_partition_count = Some(3);
    let runner = memory_runner(cloud);

    // When two releases deploy one after the other
    deploy_to_success(&runner, &release, &id("placement", 1)).await;
    deploy_to_success(&runner, &release, &id("placement", 2)).await;

    // Then EC2 holds one group, partitioned as asked and tagged as skald's, which the second
    // release found rather than created, and both ASGs were placed in it
    let ec2 = aws_sdk_ec2::Client::new(&moto::aws_config().await);
    let out = ec2.describe_placement_groups().group_names(&group).send().await.unwrap();
    let found = out.placement_groups();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].strategy().map(|s| s.as_str()), found[0].partition_count()), (Some("partition"), Some(3)));
    assert!(found[0].tags().iter().any(|t| t.key() == Some("ManagedBy") && t.value() == Some("skald")), "{:?}", found[0].tags());
    let creates: Vec<bool> =
        [1, 2].map(|n| history(&runner, &id("placement", n)).1.resolved.unwrap().services["web"].create_placement_group).to_vec();
    assert_eq!(creates, [true, false]);
    let autoscaling = aws_sdk_autoscaling::Client::new(&moto::aws_config().await);
    let asg = history(&runner, &id("placement", 2)).1.services["web"].asg.clone();
    let out = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&asg).send().await.unwrap();
    assert_eq!(out.auto_scaling_groups()[0].placement_group(), Some(group.as_str()));
}
