//! Services cloned from a template ASG on the AWS adapter against a local AWS API (moto, started
//! by the test support unless `SKALD_TEST_AWS_ENDPOINT` names one): a new version of the
//! template's launch template with the release's AMI and the rest of its data copied, and a
//! clone ASG on it with the template's settings, hooks, policies, metrics and warm pool, replaced
//! by the next deploy with the template left as it was; a rollback onto an existing version; a
//! launch repeated after a crash.
//!
//! Deploys run through the real runner on a virtual clock (`testing::deploys`); every cloud call
//! is real. Each test has its own project-config and template, so tests share one emulator. The
//! template's launch template has no UserData: moto fails to launch from a version made by
//! CreateLaunchTemplateVersion that has some (the design notes), which AWS does not.

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::ports::Cloud;
use skald_engine::testing::deploys::{failures, memory_runner, run_until_end, submit};
use skald_engine::testing::{example_release_for, moto};
use skald_engine::workflow::command::Ebs;
use skald_engine::workflow::names::{self, TAG_CONFIG, TAG_MANAGED_BY, TAG_PROJECT, TAG_RELEASE, TAG_SERVICE};
use skald_engine::workflow::release::{Service, TAG_TEMPLATE_MAX_SIZE, TAG_TEMPLATE_MIN_SIZE};
use skald_engine::workflow::resources::{Query, ResolvedTemplate};
use skald_engine::workflow::{End, LaunchSpec, Release};
use std::collections::{BTreeMap, BTreeSet};

const SERVICE: &str = "web";
const INSTANCE_TYPE: &str = "t3.micro";
const ROOT_VOLUME_GIB: i32 = 10;
const HOOK_HEARTBEAT_SECS: i32 = 120;
const CPU_TARGET: f64 = 40.0;
const METRICS: [&str; 2] = ["GroupDesiredCapacity", "GroupInServiceInstances"];
const TERMINATION_POLICY: &str = "OldestInstance";

/// The template ASG for `web` and what the tests compare its clones with.
struct Template {
    asg: String,
    launch_template_id: String,
    /// The release's AMI (its id), which the template's launch template also starts on.
    ami_id: String,
    subnet_ids: Vec<String>,
}

struct Clients {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

async fn clients() -> Clients {
    let config = moto::aws_config().await;
    Clients { ec2: aws_sdk_ec2::Client::new(&config), autoscaling: aws_sdk_autoscaling::Client::new(&config) }
}

/// Given: the example world for `label`, and `web` cloned from a template ASG made for it
/// (`<label>-web-template`): scoped to the release's project, config and service, empty, in the
/// example's subnets, clones sized 2 to 3 by its tags, with a lifecycle hook, a target-tracking
/// and a simple scaling policy, two metrics, a termination policy and a warm pool. The release
/// says nothing else about `web`.
async fn template_world(label: &str) -> (AwsCloud, Release, Template) {
    let cloud = AwsCloud::new(&moto::aws_config().await);
    let mut release = example_release_for(label);
    cloud.provision_example(&release).await.expect("the example world is provisioned");
    let found = cloud.lookup(&Query::for_release(&release)).await.expect("the lookup succeeds");
    let ami_id = found.amis.first().expect("the example's AMI").id.clone();
    let subnet_ids: Vec<String> = release.subnets.iter().map(|s| found.subnets[s][0].id.clone()).collect();
    let template = provision_template(&release, label, &ami_id, &subnet_ids).await;
    let web: Service = serde_json::from_value(serde_json::json!({ "template": template.asg })).expect("a template service");
    release.services.insert(SERVICE.to_string(), web);
    (cloud, release, template)
}

/// A release of `web` alone: every service is cloned, so the release names no subnets.
fn web_only(mut release: Release) -> Release {
    release.services.retain(|name, _| name == SERVICE);
    release.subnets.clear();
    release
}

async fn provision_template(release: &Release, label: &str, ami_id: &str, subnet_ids: &[String]) -> Template {
    let Clients { ec2, autoscaling } = clients().await;
    let asg_name = format!("{label}-web-template");
    let root = ec2::LaunchTemplateEbsBlockDeviceRequest::builder().volume_size(ROOT_VOLUME_GIB).volume_type(ec2::VolumeType::Gp3).build();
    let data = ec2::RequestLaunchTemplateData::builder()
        .image_id(ami_id)
        .instance_type(ec2::InstanceType::from(INSTANCE_TYPE))
        .block_device_mappings(ec2::LaunchTemplateBlockDeviceMappingRequest::builder().device_name("/dev/xvda").ebs(root).build())
        .metadata_options(
            ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder().http_tokens(ec2::LaunchTemplateHttpTokensState::Required).build(),
        )
        .monitoring(ec2::LaunchTemplatesMonitoringRequest::builder().enabled(true).build())
        .build();
    // The ProjectName tag opts the launch template in: skald's role may add versions to it.
    let opted_in = ec2::TagSpecification::builder()
        .resource_type(ec2::ResourceType::LaunchTemplate)
        .tags(ec2::Tag::builder().key(TAG_PROJECT).value(&release.project_name).build())
        .build();
    let created = ec2
        .create_launch_template()
        .launch_template_name(format!("{asg_name}-lt"))
        .launch_template_data(data)
        .tag_specifications(opted_in)
        .send()
        .await
        .expect("the template's launch template is created");
    let launch_template_id = created.launch_template().and_then(|lt| lt.launch_template_id()).expect("an id").to_string();

    let tag = |key: &str, value: &str| {
        asg::Tag::builder()
            .key(key)
            .value(value)
            .propagate_at_launch(true)
            .resource_id(&asg_name)
            .resource_type("auto-scaling-group")
            .build()
    };
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&asg_name)
        .launch_template(asg::LaunchTemplateSpecification::builder().launch_template_id(&launch_template_id).version("$Latest").build())
        .min_size(0)
        .max_size(0)
        .desired_capacity(0)
        .vpc_zone_identifier(subnet_ids.join(","))
        .termination_policies(TERMINATION_POLICY)
        .tags(tag(TAG_PROJECT, &release.project_name))
        .tags(tag(TAG_CONFIG, &release.config_name))
        .tags(tag(TAG_SERVICE, SERVICE))
        .tags(tag(TAG_TEMPLATE_MIN_SIZE, "2"))
        .tags(tag(TAG_TEMPLATE_MAX_SIZE, "3"))
        .tags(tag("Name", &asg_name))
        .tags(tag("team", "storefront"))
        .send()
        .await
        .expect("the template ASG is created");
    autoscaling
        .put_lifecycle_hook()
        .auto_scaling_group_name(&asg_name)
        .lifecycle_hook_name(format!("{label}-drain"))
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(HOOK_HEARTBEAT_SECS)
        .default_result("CONTINUE")
        .send()
        .await
        .expect("the template's hook is put");
    let cpu = asg::PredefinedMetricSpecification::builder().predefined_metric_type(asg::MetricType::AsgAverageCpuUtilization).build();
    // moto keeps policies by name across groups: each template's are named for its label.
    autoscaling
        .put_scaling_policy()
        .auto_scaling_group_name(&asg_name)
        .policy_name(format!("{label}-cpu-target"))
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            asg::TargetTrackingConfiguration::builder().predefined_metric_specification(cpu).target_value(CPU_TARGET).build(),
        )
        .send()
        .await
        .expect("the target-tracking policy is put");
    autoscaling
        .put_scaling_policy()
        .auto_scaling_group_name(&asg_name)
        .policy_name(format!("{label}-add-one"))
        .policy_type("SimpleScaling")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(1)
        .cooldown(120)
        .send()
        .await
        .expect("the simple policy is put");
    autoscaling
        .enable_metrics_collection()
        .auto_scaling_group_name(&asg_name)
        .set_metrics(Some(METRICS.map(String::from).to_vec()))
        .granularity("1Minute")
        .send()
        .await
        .expect("the metrics are enabled");
    autoscaling
        .put_warm_pool()
        .auto_scaling_group_name(&asg_name)
        .min_size(1)
        .pool_state(asg::WarmPoolState::Stopped)
        .send()
        .await
        .expect("the warm pool is put");
    Template { asg: asg_name, launch_template_id, ami_id: ami_id.to_string(), subnet_ids: subnet_ids.to_vec() }
}

/// The ASG named `name`, if it exists.
async fn group(name: &str) -> Option<asg::AutoScalingGroup> {
    let out = clients().await.autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.unwrap();
    out.auto_scaling_groups().first().cloned()
}

/// Every version of the template's launch template (the tests make fewer than moto's 15 a page).
async fn versions(template: &Template) -> Vec<ec2::LaunchTemplateVersion> {
    let ec2 = clients().await.ec2;
    let out = ec2.describe_launch_template_versions().launch_template_id(&template.launch_template_id).send().await.unwrap();
    let mut versions = out.launch_template_versions().to_vec();
    versions.sort_by_key(|v| v.version_number());
    versions
}

fn tags(group: &asg::AutoScalingGroup) -> BTreeMap<String, String> {
    group.tags().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

/// The clone's scaling policies by type: what each does, without its name and ARN.
async fn policies(asg_name: &str) -> BTreeMap<String, String> {
    let out = clients().await.autoscaling.describe_policies().auto_scaling_group_name(asg_name).send().await.unwrap();
    out.scaling_policies()
        .iter()
        .map(|p| {
            let does = match p.policy_type() {
                Some("TargetTrackingScaling") => format!("{:?}", p.target_tracking_configuration()),
                _ => format!("{:?} {:?} {:?}", p.adjustment_type(), p.scaling_adjustment(), p.cooldown()),
            };
            (p.policy_type().unwrap_or_default().to_string(), does)
        })
        .collect()
}

/// The ASG's lifecycle hooks: name, transition, heartbeat and default result (moto keeps no
/// more of them).
async fn hooks(asg_name: &str) -> Vec<(String, String, i32, String)> {
    let out = clients().await.autoscaling.describe_lifecycle_hooks().auto_scaling_group_name(asg_name).send().await.unwrap();
    let hooks = out.lifecycle_hooks().iter().map(|h| {
        let text = |s: Option<&str>| s.unwrap_or_default().to_string();
        (text(h.lifecycle_hook_name()), text(h.lifecycle_transition()), h.heartbeat_timeout().unwrap_or_default(), text(h.default_result()))
    });
    hooks.collect()
}

/// How many instances tagged as the ASG's are running.
async fn running_instances_of(asg_name: &str) -> usize {
    let filter = |name: &str, value: &str| ec2::Filter::builder().name(name).values(value).build();
    let out = clients()
        .await
        .ec2
        .describe_instances()
        .filters(filter("tag:aws:autoscaling:groupName", asg_name))
        .filters(filter("instance-state-name", "running"))
        .send()
        .await
        .unwrap();
    out.reservations().iter().map(|r| r.instances().len()).sum()
}

/// The launch of `web`'s clone that a deploy `release_id` of `release` makes, built as the
/// workflow builds it: a new version of the template's only version with the release's AMI.
fn clone_spec(release: &Release, template: &Template, release_id: &str) -> LaunchSpec {
    let asg_name = names::asg_name(&release.project_name, &release.config_name, SERVICE, release_id);
    let mut tags = names::managed_tags(&release.project_name, &release.config_name, SERVICE, release_id);
    tags.insert("Name".into(), asg_name.clone());
    LaunchSpec {
        service: SERVICE.into(),
        launch_template_name: names::launch_template_name(&asg_name),
        asg_name,
        ami_id: template.ami_id.clone(),
        instance_type: String::new(),
        subnet_ids: template.subnet_ids.clone(),
        security_group_ids: Vec::new(),
        instance_profile_arn: None,
        ebs: Ebs { size_gib: None, volume_type: "gp3".into(), device_name: "/dev/xvda".into() },
        placement: None,
        tenancy: None,
        spot_price: None,
        associate_public_ip_address: None,
        min_size: 2,
        max_size: 3,
        desired_capacity: 2,
        health_check_type: "EC2".into(),
        health_check_grace_period_secs: 300,
        default_cooldown_secs: 300,
        elbs: Vec::new(),
        target_group_arns: Vec::new(),
        lifecycle_hooks: Vec::new(),
        policies: Vec::new(),
        tags,
        template: Some(ResolvedTemplate {
            asg: template.asg.clone(),
            launch_template_id: template.launch_template_id.clone(),
            source_version: 1,
            image_id: Some(template.ami_id.clone()),
            subnet_ids: template.subnet_ids.clone(),
        }),
    }
}

#[tokio::test]
async fn a_deploy_clones_the_template_onto_a_new_version_and_the_next_deploy_replaces_the_clone() {
    // Given a template ASG for web, whose launch template has one version
    let (cloud, release, template) = template_world("template-deploy").await;
    let runner = memory_runner(cloud.clone());

    // When the release deploys
    submit(&runner, &release, "01JAWSTEMPLATE00000000001");
    let first = run_until_end(&runner, "01JAWSTEMPLATE00000000001").await;

    // Then it succeeded, on a second version of the template's launch template, described by
    // the clone's name, on the release's AMI, with the rest of version 1's data
    assert_eq!(failures(&runner, "01JAWSTEMPLATE00000000001"), Vec::<String>::new());
    assert_eq!(first.end, Some(End::Success));
    let clone = first.services[SERVICE].asg.clone();
    let made_versions = versions(&template).await;
    assert_eq!(made_versions.iter().map(|v| v.version_number()).collect::<Vec<_>>(), [Some(1), Some(2)]);
    let (source, made) = (made_versions[0].launch_template_data().unwrap(), made_versions[1].launch_template_data().unwrap());
    assert_eq!(made_versions[1].version_description(), Some(clone.as_str()));
    assert_eq!(made.image_id(), Some(template.ami_id.as_str()));
    assert_eq!(made.instance_type(), Some(&ec2::InstanceType::from(INSTANCE_TYPE)));
    assert_eq!(made.block_device_mappings(), source.block_device_mappings());
    assert_eq!(made.block_device_mappings()[0].ebs().and_then(|e| e.volume_size()), Some(ROOT_VOLUME_GIB));
    assert_eq!(made.metadata_options().and_then(|m| m.http_tokens()), Some(&ec2::LaunchTemplateHttpTokensState::Required));
    assert_eq!(made.monitoring().and_then(|m| m.enabled()), Some(true));

    // And the clone runs that version, sized by the template's tags, with its termination
    // policy, hook, policies, metrics and warm pool, and skald's tags instead of the template's
    let made_group = group(&clone).await.expect("the clone exists");
    let launch_template = made_group.launch_template().expect("a launch template");
    assert_eq!(launch_template.launch_template_id(), Some(template.launch_template_id.as_str()));
    assert_eq!(launch_template.version(), Some("2"));
    assert_eq!((made_group.min_size(), made_group.max_size()), (Some(2), Some(3)));
    assert_eq!(made_group.termination_policies(), [TERMINATION_POLICY]);
    assert_eq!(
        hooks(&clone).await,
        [("template-deploy-drain".to_string(), "autoscaling:EC2_INSTANCE_TERMINATING".to_string(), 120, "CONTINUE".to_string())]
    );
    assert_eq!(policies(&clone).await, policies(&template.asg).await, "the same policies by type and what they do");
    assert_eq!(policies(&clone).await.len(), 2);
    let metrics: BTreeSet<&str> = made_group.enabled_metrics().iter().filter_map(|m| m.metric()).collect();
    assert_eq!(metrics, BTreeSet::from(METRICS));
    let pool = made_group.warm_pool_configuration().expect("a warm pool");
    assert_eq!((pool.min_size(), pool.pool_state()), (Some(1), Some(&asg::WarmPoolState::Stopped)));
    let tags = tags(&made_group);
    assert_eq!(tags.get(TAG_MANAGED_BY).map(String::as_str), Some("skald"));
    assert_eq!(tags.get(TAG_RELEASE).map(String::as_str), Some("01JAWSTEMPLATE00000000001"));
    assert_eq!(tags.get(TAG_SERVICE).map(String::as_str), Some(SERVICE));
    assert_eq!(tags.get("Name"), Some(&clone));
    assert_eq!(tags.get("team").map(String::as_str), Some("storefront"), "the template's own tags are copied");
    assert!(!tags.contains_key(TAG_TEMPLATE_MIN_SIZE) && !tags.contains_key(TAG_TEMPLATE_MAX_SIZE), "{tags:?}");

    // When the next release deploys
    submit(&runner, &release, "01JAWSTEMPLATE00000000002");
    let second = run_until_end(&runner, "01JAWSTEMPLATE00000000002").await;

    // Then its clone runs a third version and replaced the first, which is deleted; the template
    // ASG and its launch template's first version are as they were
    assert_eq!(failures(&runner, "01JAWSTEMPLATE00000000002"), Vec::<String>::new());
    assert_eq!(second.end, Some(End::Success));
    let replacement = group(&second.services[SERVICE].asg).await.expect("the new clone exists");
    assert_eq!(replacement.launch_template().and_then(|lt| lt.version()), Some("3"));
    assert!(group(&clone).await.is_none(), "the first clone is deleted");
    let kept = group(&template.asg).await.expect("the template ASG is kept");
    assert_eq!((kept.min_size(), kept.max_size(), kept.desired_capacity()), (Some(0), Some(0), Some(0)));
    assert_eq!(kept.launch_template().and_then(|lt| lt.version()), Some("$Latest"));
    assert_eq!(hooks(&template.asg).await.len(), 1);
    assert_eq!(policies(&template.asg).await.len(), 2, "the template keeps its policies");
    let after = versions(&template).await;
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].launch_template_data(), Some(source), "version 1 is untouched");
    assert_eq!(after[0].default_version(), Some(true));
}

#[tokio::test]
async fn a_rollback_clones_onto_the_version_it_names_without_a_new_one() {
    // Given a template for web, and a release of web alone naming version 1 of its launch template
    let (cloud, release, template) = template_world("template-rollback").await;
    let mut release = web_only(release);
    release.ami = "$launchtemplate:1".into();
    let runner = memory_runner(cloud.clone());

    // When it deploys
    submit(&runner, &release, "01JAWSTEMPLATE00000000003");
    let state = run_until_end(&runner, "01JAWSTEMPLATE00000000003").await;

    // Then the clone runs version 1, and no version was made
    assert_eq!(failures(&runner, "01JAWSTEMPLATE00000000003"), Vec::<String>::new());
    assert_eq!(state.end, Some(End::Success));
    let clone = group(&state.services[SERVICE].asg).await.expect("the clone exists");
    assert_eq!(clone.launch_template().and_then(|lt| lt.version()), Some("1"));
    assert_eq!(versions(&template).await.len(), 1);
}

#[tokio::test]
async fn a_name_prefix_picks_from_the_deployers_owners_and_a_release_cannot_add_one() {
    // Given a template for web, and a release of web alone naming the example's images by prefix
    // (the deployer trusts its default owner: `self`, the account deployed into)
    let (cloud, release, template) = template_world("template-prefix").await;
    let mut release = web_only(release);
    release.ami = "$name-prefix:skald-example-".into();
    let runner = memory_runner(cloud.clone());

    // When it deploys naming no owners, it picks one of this account's images
    submit(&runner, &release, "01JAWSTEMPLATE00000000005");
    let state = run_until_end(&runner, "01JAWSTEMPLATE00000000005").await;
    assert_eq!(state.end, Some(End::Success), "{:?}", failures(&runner, "01JAWSTEMPLATE00000000005"));

    // When a release names an owner the deployer does not trust
    let mut widened = release.clone();
    widened.ami_owners = vec!["999999999999".into()];
    submit(&runner, &widened, "01JAWSTEMPLATE00000000006");
    let refused = run_until_end(&runner, "01JAWSTEMPLATE00000000006").await;

    // Then it is refused before the lock, naming the entry, and nothing new was made
    assert_eq!(refused.end.as_ref().map(End::name), Some("FailureClean"));
    let problems = failures(&runner, "01JAWSTEMPLATE00000000006").join("; ");
    assert!(problems.contains("ami_owners[0]") && problems.contains("never widen"), "{problems}");
    assert_eq!(versions(&template).await.len(), 2, "only the first release made a version");
}

#[tokio::test]
async fn a_launch_repeated_after_a_crash_makes_one_version_and_one_clone() {
    // Given a template for web, and a launch of its clone that crashed after making the new
    // version (its ASG could not be created: a subnet that does not exist)
    let (cloud, release, template) = template_world("template-relaunch").await;
    let spec = clone_spec(&release, &template, "01JAWSTEMPLATE00000000004");
    let crashed = LaunchSpec { subnet_ids: vec!["subnet-00000000deadbeef".into()], ..spec.clone() };
    cloud.launch(&crashed, "").await.expect_err("no ASG in a subnet that does not exist");
    assert_eq!(versions(&template).await.len(), 2, "the version was made");
    assert!(group(&spec.asg_name).await.is_none());

    // When the launch is carried out again, twice (a worker that crashes before recording the
    // outcome leaves the launch to be repeated)
    cloud.launch(&spec, "").await.expect("the repeated launch succeeds");
    cloud.launch(&spec, "").await.expect("the launch repeated again succeeds");

    // Then the clone runs the version the first attempt made, which is the only one made; the
    // clone is complete, and no instances were orphaned by a second create
    let versions = versions(&template).await;
    assert_eq!(versions.len(), 2, "one version made");
    assert_eq!(versions[1].version_description(), Some(spec.asg_name.as_str()));
    let clone = group(&spec.asg_name).await.expect("the clone exists");
    assert_eq!(clone.launch_template().and_then(|lt| lt.version()), Some("2"));
    assert_eq!(tags(&clone).get(TAG_RELEASE).map(String::as_str), Some("01JAWSTEMPLATE00000000004"));
    // moto answers a second create by replacing the group, orphaning its instances.
    assert_eq!(running_instances_of(&spec.asg_name).await, clone.instances().len(), "no orphaned instances");
    assert_eq!(hooks(&spec.asg_name).await.len(), 1);
    assert_eq!(policies(&spec.asg_name).await.len(), 2);
}
