//! `skald demo --endpoint URL` as a user runs it, against a local AWS API (moto, started by the
//! test support unless SKALD_TEST_AWS_ENDPOINT names one). Real time: about a minute and a half.

use aws_sdk_dynamodb::types::AttributeValue;
use skald_engine::adapters::dynamodb::lock_pk;
use skald_engine::ports::LockKey;
use skald_engine::testing::moto;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn demo_against_a_local_aws_api_leaves_only_the_second_release() {
    let endpoint = moto::endpoint();

    let out = Command::new(env!("CARGO_BIN_EXE_skald")).args(["demo", "--endpoint", &endpoint]).output().expect("skald runs");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("=> Success").count(), 2, "{stdout}");
    let second_id = stdout.lines().filter_map(|l| l.trim().strip_prefix("release ")).nth(1).expect("two releases printed").to_string();

    let config = moto::aws_config().await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let groups = autoscaling.describe_auto_scaling_groups().send().await.unwrap();
    let names: Vec<&str> = groups
        .auto_scaling_groups()
        .iter()
        .filter(|g| g.status().is_none())
        .filter_map(|g| g.auto_scaling_group_name())
        .filter(|n| n.starts_with("coinbase/deploy-test-production-"))
        .collect();
    assert_eq!(names.len(), 2, "one ASG per service: {names:?}");
    assert!(names.iter().all(|n| n.ends_with(&second_id)), "only the second release's: {names:?}");

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let templates = ec2.describe_launch_templates().send().await.unwrap();
    let mut template_names: Vec<&str> = templates.launch_templates().iter().filter_map(|t| t.launch_template_name()).collect();
    template_names.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(template_names, expected, "no stray launch templates");

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let key = LockKey { project: "coinbase/deploy-test".into(), config: "production".into() };
    let lock = dynamo
        .get_item()
        .table_name("skald-demo-events")
        .key("pk", AttributeValue::S(lock_pk(&key)))
        .key("sk", AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(lock.item().is_none(), "no lock item: {:?}", lock.item());
}
