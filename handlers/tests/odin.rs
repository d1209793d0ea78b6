//! Coming from Odin: Odin's own example release (`examples/odin/deploy-test-release.json`, copied
//! unchanged from coinbase/odin with its `.userdata`), read as `skald deploy` reads it and
//! deployed through the real runner against a local AWS API (moto) in a world made for it.
//! What Odin users rely on must be on what skald created: the named scaling policies, the
//! lifecycle hook, and the user data from the `.userdata` file.
//!
//! One test uses Odin's fixed names (`coinbase/deploy-test`, `test_private_subnet_a`, …), so no
//! other test on the shared emulator may provision them.

use aws_sdk_autoscaling::types as asg;
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::testing::deploys::{failures, memory_runner, run_until_end, submit};
use skald_engine::testing::moto;
use skald_engine::workflow::Release;
use std::collections::BTreeSet;
use std::path::Path;

const RELEASE_ID: &str = "01JODINEXAMPLE00000000001";
const NULL_RELEASE_ID: &str = "01JODINNULL00000000000001";

/// One of Odin's example releases, read from its file (with its `.userdata`) as `skald deploy` reads it.
fn odin_release(file: &str) -> Release {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/odin").join(file);
    skald_handlers::release_file::read(&path).unwrap_or_else(|p| panic!("Odin's {file} reads: {p}"))
}

/// The hook's role and topic, which Odin's world has beside what the release names.
async fn provision_hook_targets(config: &aws_config::SdkConfig) {
    let iam = aws_sdk_iam::Client::new(config);
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"autoscaling.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let _ = iam.create_role().role_name("asg_lifecycle_hooks").assume_role_policy_document(trust).send().await;
    let sns = aws_sdk_sns::Client::new(config);
    sns.create_topic().name("asg_lifecycle_hooks").send().await.expect("the hook's topic is made");
}

/// Tags the security group named `name` for every project, configuration and service (`_all`).
async fn share_security_group(config: &aws_config::SdkConfig, name: &str) {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let by_name = aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build();
    let groups = ec2.describe_security_groups().filters(by_name).send().await.unwrap();
    let id = groups.security_groups()[0].group_id().expect("a group id").to_string();
    let all = ["ProjectName", "ConfigName", "ServiceName"].map(|key| aws_sdk_ec2::types::Tag::builder().key(key).value("_all").build());
    ec2.create_tags().resources(id).set_tags(Some(all.to_vec())).send().await.unwrap();
}

async fn group_of(autoscaling: &aws_sdk_autoscaling::Client, name: &str) -> asg::AutoScalingGroup {
    let out = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.unwrap();
    out.auto_scaling_groups().first().cloned().unwrap_or_else(|| panic!("{name} exists"))
}

#[tokio::test]
async fn odins_example_release_deploys_unchanged_with_its_policies_hook_and_user_data() {
    // Given Odin's example release, read from its file with its `.userdata`, and a world tagged
    // for it (subnets, AMI, security groups, ELB, target group, profiles, the hook's role and topic)
    let release = odin_release("deploy-test-release.json");
    let config = moto::aws_config().await;
    let cloud = AwsCloud::new(&config);
    cloud.provision_example(&release).await.expect("Odin's world is provisioned");
    provision_hook_targets(&config).await;

    // When it deploys
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, RELEASE_ID);
    let state = run_until_end(&runner, RELEASE_ID).await;

    // Then it succeeds, and each ASG carries Odin's named policies and the termination hook
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, RELEASE_ID));
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    for service in ["web", "worker"] {
        let asg_name = state.services[service].asg.clone();
        let policies = autoscaling.describe_policies().auto_scaling_group_name(&asg_name).send().await.unwrap();
        let names: BTreeSet<&str> = policies.scaling_policies().iter().filter_map(|p| p.policy_name()).collect();
        let wanted = [format!("{asg_name}-cpu_scale_up-cpu_scale_up"), format!("{asg_name}-cpu_scale_down-cpu_scale_down")];
        assert_eq!(names, wanted.iter().map(String::as_str).collect(), "{service}");
        let hooks = autoscaling.describe_lifecycle_hooks().auto_scaling_group_name(&asg_name).send().await.unwrap();
        let hook = hooks.lifecycle_hooks().iter().find(|h| h.lifecycle_hook_name() == Some("termhook")).expect("the termhook");
        assert_eq!(hook.lifecycle_transition(), Some("autoscaling:EC2_INSTANCE_TERMINATING"));
        assert_eq!(hook.heartbeat_timeout(), Some(300));
        // (moto answers every hook with placeholder role and target ARNs, so those are not compared)

        // And its launch template holds the `.userdata` file, templated for the service
        let group = group_of(&autoscaling, &asg_name).await;
        let template = group.launch_template().and_then(|t| t.launch_template_name()).expect("a launch template").to_string();
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let versions = ec2.describe_launch_template_versions().launch_template_name(&template).send().await.unwrap();
        let encoded = versions.launch_template_versions()[0].launch_template_data().and_then(|d| d.user_data()).expect("user data");
        let user_data = String::from_utf8(aws_smithy_types::base64::decode(encoded).unwrap()).unwrap();
        assert!(user_data.starts_with("#cloud-config"), "{user_data}");
        assert!(user_data.contains(RELEASE_ID) && user_data.contains(service) && user_data.contains("coinbase/deploy-test"), "{user_data}");
        assert!(!user_data.contains("{{"), "every variable was filled: {user_data}");
    }

    // And Odin's null release (one service, no load balancer), in the same world, deploys too,
    // with its own `.userdata`; `ec2::default`, which both releases name, is shared the way
    // Odin's operators share a group: tagged `_all`
    let null = odin_release("null-release.json");
    cloud.provision_example(&null).await.expect("the null release's world is provisioned");
    share_security_group(&config, "ec2::default").await;
    submit(&runner, &null, NULL_RELEASE_ID);
    let state = run_until_end(&runner, NULL_RELEASE_ID).await;
    assert_eq!(state.end.as_ref().map(|e| e.name()), Some("Success"), "{:?}", failures(&runner, NULL_RELEASE_ID));
    let group = group_of(&autoscaling, &state.services["null"].asg).await;
    assert!(group.load_balancer_names().is_empty() && group.target_group_arns().is_empty());
    assert_eq!(group.desired_capacity(), Some(1));
}
