//! The AWS cloud adapter against a local AWS API (moto, started by the test support unless
//! `SKALD_TEST_AWS_ENDPOINT` names one): resource checks on real API answers, create → health →
//! delete, idempotent re-creation after a crash, and whole deploys through the real runner.
//!
//! The runner here uses the in-memory store and queue on a virtual clock, so the workflow's
//! waits (90 s before the first health check) pass at once while every cloud call is real.
//! Each test works in its own project-config with its own resource names, so tests can share
//! one emulator.

use skald_engine::adapters::aws::AwsCloud;
use skald_engine::ports::Cloud;
use skald_engine::testing::deploys::{failures, halt, history, memory_runner, resource_problems, run_until_end, submit};
use skald_engine::testing::{self, moto};
use skald_engine::workflow::command::HealthTarget;
use skald_engine::workflow::resources::{check, Query};
use skald_engine::workflow::{Event, Release};

fn release_for(label: &str) -> Release {
    testing::example_release_for(label)
}

async fn cloud() -> AwsCloud {
    AwsCloud::new(&moto::aws_config().await)
}

async fn provisioned(label: &str) -> (AwsCloud, Release) {
    let cloud = cloud().await;
    let release = release_for(label);
    cloud.provision_example(&release).await.expect("the example world is provisioned");
    (cloud, release)
}

/// The problems the workflow finds with what the cloud reports for `release`.
async fn problems(cloud: &AwsCloud, release: &Release) -> Vec<String> {
    let lookup = cloud.lookup(&Query::for_release(release)).await.expect("the lookup succeeds");
    match check(release, "01JAWSTEST000000000000000", &lookup, &Default::default()) {
        Ok(_) => vec![],
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

// ---- resource checks on real API answers --------------------------------------------------------

#[tokio::test]
async fn a_provisioned_world_resolves() {
    let (cloud, release) = provisioned("resolves").await;
    let lookup = cloud.lookup(&Query::for_release(&release)).await.unwrap();
    let resolved = check(&release, "01JAWSTEST000000000000000", &lookup, &Default::default()).unwrap();
    assert!(resolved.ami_id.starts_with("ami-"));
    assert_eq!(resolved.subnet_ids.len(), 2);
    assert!(resolved.services["web"].target_group_arns[0].starts_with("arn:aws:elasticloadbalancing:"));
    assert_eq!(resolved.account_id, "123456789012");
}

#[tokio::test]
async fn an_unknown_ami_name_is_reported() {
    let (cloud, mut release) = provisioned("unknown-ami").await;
    release.ami = "no-such-image".into();
    assert_eq!(problems(&cloud, &release).await, ["ami: no AMI `no-such-image` found"]);
}

#[tokio::test]
async fn a_subnet_missing_its_opt_in_tag_is_reported() {
    let (cloud, mut release) = provisioned("missing-tag").await;
    let config = moto::aws_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let subnet = ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(&release.subnets[0]).build())
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnets()[0].subnet_id().unwrap().to_string();
    ec2.delete_tags().resources(&subnet_id).tags(aws_sdk_ec2::types::Tag::builder().key("DeployWith").build()).send().await.unwrap();
    release.subnets.truncate(1);

    let found = problems(&cloud, &release).await;

    assert_eq!(found, [format!("subnets[0]: subnet `{}` ({subnet_id}) is not tagged DeployWith=skald", release.subnets[0])]);
}

#[tokio::test]
async fn a_load_balancer_of_another_project_is_reported_and_all_is_accepted() {
    let (cloud, release) = provisioned("wrong-project").await;
    let config = moto::aws_config().await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let tg_name = &release.services["web"].target_groups[0];
    let tg = elbv2.describe_target_groups().names(tg_name).send().await.unwrap();
    let arn = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    let tag = |k: &str, v: &str| aws_sdk_elasticloadbalancingv2::types::Tag::builder().key(k).value(v).build();

    elbv2.add_tags().resource_arns(&arn).tags(tag("ProjectName", "acme/other")).send().await.unwrap();
    let wrong = problems(&cloud, &release).await;
    elbv2.add_tags().resource_arns(&arn).tags(tag("ProjectName", "_all")).tags(tag("ServiceName", "_all")).send().await.unwrap();
    let with_all = problems(&cloud, &release).await;

    assert_eq!(
        wrong,
        [format!("services.web.target_groups[0]: target group `{tg_name}` is not tagged ProjectName={} (or `_all`)", release.project_name)]
    );
    assert!(with_all.is_empty(), "{with_all:?}");
}

#[tokio::test]
async fn an_instance_profile_outside_its_path_is_reported() {
    let (cloud, mut release) = provisioned("profile-path").await;
    let config = moto::aws_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let name = format!("{}-elsewhere", release.services["web"].profile.as_ref().unwrap());
    iam.create_instance_profile().instance_profile_name(&name).path("/skald/acme/other/prod/web/").send().await.unwrap();
    release.services.get_mut("web").unwrap().profile = Some(name.clone());

    let found = problems(&cloud, &release).await;

    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!("services.web.profile: instance profile `{name}` has path `/skald/acme/other/prod/web/`")),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_lifecycle_hooks_role_and_topic_must_exist() {
    // Given a release whose termination hook names a role and a topic the account does not have
    let (cloud, mut release) = provisioned("hook-targets").await;
    let role = moto::unique_name("hook-role");
    let topic = moto::unique_name("hook-topic");
    let hook = serde_json::json!({"transition": "autoscaling:EC2_INSTANCE_TERMINATING", "role": role, "sns": topic});
    release.lifecycle.insert("termhook".into(), serde_json::from_value(hook).unwrap());

    // Then both are problems, naming the hook's fields, before anything launches
    let found = problems(&cloud, &release).await;
    assert_eq!(
        found,
        [format!("lifecycle.termhook.role: no IAM role `{role}` found"), format!("lifecycle.termhook.sns: no SNS topic `{topic}` found")]
    );

    // When the role and the topic are made
    let config = moto::aws_config().await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"autoscaling.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    aws_sdk_iam::Client::new(&config).create_role().role_name(&role).assume_role_policy_document(trust).send().await.unwrap();
    let topic_arn = aws_sdk_sns::Client::new(&config).create_topic().name(&topic).send().await.unwrap().topic_arn.unwrap();

    // Then the hook resolves to the topic's own ARN
    let lookup = cloud.lookup(&Query::for_release(&release)).await.unwrap();
    let resolved = check(&release, "01JAWSTEST000000000000000", &lookup, &Default::default()).unwrap();
    assert_eq!(resolved.lifecycle_hooks[0].notification_target_arn.as_deref(), Some(topic_arn.as_str()));
}

// ---- whole deploys through the adapter -----------------------------------------------------------

async fn asg_names(cloud: &AwsCloud, release: &Release) -> Vec<String> {
    cloud.lookup(&Query::for_release(release)).await.unwrap().asgs.into_iter().map(|a| a.name).collect()
}

async fn launch_template_names(prefix: &str) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(&moto::aws_config().await);
    let out = ec2.describe_launch_templates().send().await.unwrap();
    out.launch_templates().iter().filter_map(|lt| lt.launch_template_name()).filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

#[tokio::test]
async fn two_releases_deploy_and_only_the_second_remains() {
    let (cloud, release) = provisioned("blue-green").await;
    let runner = memory_runner(cloud.clone());

    submit(&runner, &release, "01JAWSBLUE0000000000000001");
    let first = run_until_end(&runner, "01JAWSBLUE0000000000000001").await;
    submit(&runner, &release, "01JAWSBLUE0000000000000002");
    let second = run_until_end(&runner, "01JAWSBLUE0000000000000002").await;

    assert_eq!(first.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, "01JAWSBLUE0000000000000001"));
    assert_eq!(second.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, "01JAWSBLUE0000000000000002"));
    let names = asg_names(&cloud, &release).await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with("01JAWSBLUE0000000000000002")), "{names:?}");
    let templates = launch_template_names(&release.project_name).await;
    assert_eq!(templates.len(), 2, "no stray launch templates: {templates:?}");
    assert!(runner.store.locks().is_empty());
}

#[tokio::test]
async fn a_halted_deploy_removes_its_new_asgs_and_templates() {
    let (cloud, release) = provisioned("halted").await;
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSHALT0000000000000001");
    // The first message runs the deploy up to its first wait, after the launches.
    let delivery = runner.queue.receive().unwrap();
    runner.handle(delivery.message, None, false).await.unwrap();
    runner.queue.delete(delivery.receipt);
    assert_eq!(asg_names(&cloud, &release).await.len(), 2);

    halt(&runner, &release);
    let state = run_until_end(&runner, "01JAWSHALT0000000000000001").await;

    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("FailureClean"), "{:?}", failures(&runner, "01JAWSHALT0000000000000001"));
    assert!(asg_names(&cloud, &release).await.is_empty());
    assert!(launch_template_names(&release.project_name).await.is_empty());
}

#[tokio::test]
async fn a_launch_repeated_after_a_crash_reuses_what_the_first_made() {
    let (cloud, release) = provisioned("relaunch").await;
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSRELAUNCH000000000001");
    let delivery = runner.queue.receive().unwrap();
    runner.handle(delivery.message, None, false).await.unwrap();
    let recorded = history(&runner, "01JAWSRELAUNCH000000000001").0;
    let spec = recorded
        .iter()
        .find_map(|r| match &r.event {
            Event::CommandStarted { command: skald_engine::workflow::Command::Launch { spec } } if spec.service == "web" => {
                Some(spec.clone())
            }
            _ => None,
        })
        .expect("web was launched");
    let before = cloud
        .observe(&[HealthTarget { service: "web".into(), asg: spec.asg_name.clone(), elbs: vec![], target_groups: vec![], alarms: vec![] }])
        .await
        .unwrap();

    // The same launch again, as a worker resuming the recorded intent would run it.
    cloud.launch(&spec, "#!/bin/sh\n").await.expect("a repeated launch succeeds");

    let after = cloud
        .observe(&[HealthTarget { service: "web".into(), asg: spec.asg_name.clone(), elbs: vec![], target_groups: vec![], alarms: vec![] }])
        .await
        .unwrap();
    assert_eq!(asg_names(&cloud, &release).await.len(), 2, "no second ASG");
    assert_eq!(launch_template_names(&spec.launch_template_name).await.len(), 1, "no second launch template");
    assert_eq!(after["web"].instances, before["web"].instances, "the ASG was not replaced: its instances are the same");
}

#[tokio::test]
async fn health_is_read_from_the_asg_and_every_load_balancer() {
    let (cloud, release) = provisioned("health").await;
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSHEALTH00000000000001");
    let delivery = runner.queue.receive().unwrap();
    runner.handle(delivery.message, None, false).await.unwrap();
    let state = history(&runner, "01JAWSHEALTH00000000000001").1;
    let web = &state.resolved.as_ref().unwrap().services["web"];
    let target = HealthTarget {
        service: "web".into(),
        asg: state.services["web"].asg.clone(),
        elbs: web.elbs.clone(),
        target_groups: web.target_group_arns.clone(),
        alarms: vec![],
    };

    let reports = cloud.observe(&[target]).await.unwrap();

    let report = &reports["web"];
    assert_eq!(report.instances.len(), 1, "the canary: {report:?}");
    assert_eq!(report.load_balancers.len(), 2, "one entry per ELB and target group: {report:?}");
}

#[tokio::test]
async fn deleting_what_is_already_gone_succeeds() {
    let cloud = cloud().await;
    cloud.delete("skald-no-such-asg", Some("skald-no-such-template"), None).await.expect("gone is done");
    cloud.detach("skald-no-such-asg", &["no-such-elb".into()], &[]).await.expect("gone is done");
    assert!(cloud.is_detached("skald-no-such-asg", &[], &[]).await.unwrap());
}

// ---- releases for other accounts ----------------------------------------------------------------

/// moto's default account, the deployer's own in these tests.
const OWN_ACCOUNT: &str = "123456789012";
/// A target account: moto serves credentials from AssumeRole into it from that account's state.
const TARGET_ACCOUNT: &str = "111122223333";

#[tokio::test]
async fn the_deployers_own_account_needs_no_role() {
    let cloud = cloud().await;
    let query = Query::for_release(&release_for("own-account"));

    for account in [None, Some(OWN_ACCOUNT)] {
        let same = cloud.in_place(account, None).await.unwrap();
        assert_eq!(same.lookup(&query).await.unwrap().account_id, OWN_ACCOUNT, "{account:?}");
    }
}

#[tokio::test]
async fn a_release_for_another_account_deploys_there_through_the_assumed_role() {
    // Given the example world in the target account, reached through its skald-deployer role
    let cloud = cloud().await;
    let target = cloud.in_place(Some(TARGET_ACCOUNT), None).await.unwrap();
    let mut release = release_for("cross-account");
    release.aws_account_id = Some(TARGET_ACCOUNT.into());
    target.provision_example(&release).await.unwrap();
    assert_eq!(target.lookup(&Query::for_release(&release)).await.unwrap().account_id, TARGET_ACCOUNT);

    // When a runner on the deployer's own credentials deploys it
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSCROSS000000000000001");
    let state = run_until_end(&runner, "01JAWSCROSS000000000000001").await;

    // Then the ASGs are in the target account, none in the deployer's
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, "01JAWSCROSS000000000000001"));
    assert_eq!(asg_names(&target, &release).await.len(), 2);
    assert!(asg_names(&cloud, &release).await.is_empty(), "nothing in the deployer's account");
}

const OTHER_REGION: &str = "us-west-2";

async fn launch_template_names_in_other_region(prefix: &str) -> Vec<String> {
    let config = moto::aws_config().await.to_builder().region(aws_config::Region::new(OTHER_REGION)).build();
    let out = aws_sdk_ec2::Client::new(&config).describe_launch_templates().send().await.unwrap();
    out.launch_templates().iter().filter_map(|lt| lt.launch_template_name()).filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

#[tokio::test]
async fn a_release_for_another_region_deploys_there_and_nowhere_else() {
    // Given the example world in us-west-2 only
    let cloud = cloud().await;
    let west = cloud.in_place(None, Some(OTHER_REGION)).await.unwrap();
    let mut release = release_for("west-region");
    release.aws_region = Some(OTHER_REGION.into());
    west.provision_example(&release).await.unwrap();

    // When a runner in the deployer's region (us-east-1) deploys it
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSREGION00000000000001");
    let state = run_until_end(&runner, "01JAWSREGION00000000000001").await;

    // Then its ASGs and launch templates are in us-west-2, none in us-east-1, and the history
    // records the region its resources were resolved in
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, "01JAWSREGION00000000000001"));
    assert_eq!(asg_names(&west, &release).await.len(), 2);
    assert_eq!(launch_template_names_in_other_region(&release.project_name).await.len(), 2);
    assert!(asg_names(&cloud, &release).await.is_empty(), "no ASG in the deployer's region");
    assert!(launch_template_names(&release.project_name).await.is_empty(), "no launch template in the deployer's region");
    assert_eq!(state.resolved.as_ref().map(|r| r.region.as_str()), Some(OTHER_REGION));
}

#[tokio::test]
async fn a_world_in_the_deployers_region_is_not_found_for_a_release_naming_another() {
    // Given the example world in us-east-1 only
    let (cloud, mut release) = provisioned("east-only").await;

    // When a release naming us-west-2 deploys
    release.aws_region = Some(OTHER_REGION.into());
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSREGION00000000000002");
    let state = run_until_end(&runner, "01JAWSREGION00000000000002").await;

    // Then it is refused naming what it could not find there, and nothing was created anywhere
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("FailureClean"));
    let problems = resource_problems(&runner, "01JAWSREGION00000000000002");
    assert!(problems.iter().any(|p| p.starts_with("subnets[0]:")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("ami:")), "{problems:?}");
    assert!(asg_names(&cloud, &release).await.is_empty());
}
