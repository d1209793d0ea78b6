//! Traffic shifting on the AWS adapter against a local AWS API (moto, started by the test support
//! unless `SKALD_TEST_AWS_ENDPOINT` names one): a release's own target group cloned from the
//! template, the production listener rule made from the exemplar, weighted steps, the old
//! release retired after the bake, and traffic shifted back when a deploy is halted.
//!
//! Deploys run through the real runner on a virtual clock (`testing::deploys`); every cloud call
//! is real. Each test has its own project-config, load balancer and groups, so tests share one
//! emulator.

use aws_sdk_elasticloadbalancingv2::types as elb;
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::ports::Cloud;
use skald_engine::testing::deploys::{failures, halt, history, memory_runner, resource_problems, run_until_end, run_until_event, submit};
use skald_engine::testing::{moto, traffic_world, TRAFFIC_PRIORITY, TRAFFIC_SERVICE};
use skald_engine::workflow::listener_rule::NewRule;
use skald_engine::workflow::names::{managed_tags, target_group_name, TAG_RELEASE};
use skald_engine::workflow::release::Traffic;
use skald_engine::workflow::resources::{check, FoundRule, FoundTargetGroup, Lookup, Query, Weighted};
use skald_engine::workflow::{Event, Release, State};
use std::collections::BTreeSet;

const PRIORITY: u32 = TRAFFIC_PRIORITY;
const SERVICE: &str = TRAFFIC_SERVICE;

fn traffic(release: &Release) -> &Traffic {
    release.services[SERVICE].traffic.as_ref().unwrap()
}

/// What the cloud reports of the listener and of the named target groups (templates or not).
async fn lookup(cloud: &AwsCloud, release: &Release, target_groups: &[&str]) -> Lookup {
    let mut query = Query::for_release(release);
    query.template_target_groups.extend(target_groups.iter().map(ToString::to_string));
    cloud.lookup(&query).await.expect("the lookup succeeds")
}

fn rule_at(lookup: &Lookup, release: &Release, priority: u32) -> Option<FoundRule> {
    lookup.listeners[&traffic(release).listener].iter().find(|r| r.priority == Some(priority)).cloned()
}

fn own_group_name(state: &State) -> String {
    target_group_name(SERVICE, &state.services[SERVICE].asg)
}

fn all_on(target_group: &FoundTargetGroup) -> Vec<Weighted> {
    vec![Weighted { target_group: target_group.arn.clone(), weight: 100 }]
}

async fn asg_names(cloud: &AwsCloud, release: &Release) -> BTreeSet<String> {
    cloud.lookup(&Query::for_release(release)).await.unwrap().asgs.into_iter().map(|a| a.name).collect()
}

async fn launch_template_names(prefix: &str) -> BTreeSet<String> {
    let ec2 = aws_sdk_ec2::Client::new(&moto::aws_config().await);
    let out = ec2.describe_launch_templates().send().await.unwrap();
    out.launch_templates().iter().filter_map(|lt| lt.launch_template_name()).filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

/// The weights a deploy's history shifted through, in order.
fn weights(events: &[skald_engine::workflow::Recorded]) -> Vec<u32> {
    events.iter().filter_map(|r| if let Event::TrafficShifted { weight, .. } = r.event { Some(weight) } else { None }).collect()
}

fn end_of(state: &State) -> Option<&'static str> {
    state.end.as_ref().map(|e| e.name())
}

#[tokio::test]
async fn a_first_deploy_creates_the_rule_from_the_exemplar_onto_its_own_cloned_group() {
    // Given a listener with only the exemplar rule
    let (cloud, release) = traffic_world("first-deploy").await;
    let runner = memory_runner(cloud.clone());

    // When the first release deploys
    submit(&runner, &release, "01JAWSTRAFFIC000000000001");
    let state = run_until_end(&runner, "01JAWSTRAFFIC000000000001").await;

    // Then all its traffic is on its own group, by a rule matching what the exemplar matches
    assert_eq!(failures(&runner, "01JAWSTRAFFIC000000000001"), Vec::<String>::new());
    assert_eq!(end_of(&state), Some("Success"));
    let own_name = own_group_name(&state);
    let found = lookup(&cloud, &release, &[&own_name]).await;
    let (production, exemplar) = (rule_at(&found, &release, PRIORITY).unwrap(), rule_at(&found, &release, PRIORITY + 40_000).unwrap());
    let own = &found.template_target_groups[&own_name];
    assert_eq!(production.conditions, exemplar.conditions);
    assert_eq!(production.forward, all_on(own));
    assert_eq!(weights(&history(&runner, "01JAWSTRAFFIC000000000001").0), [100]);
    // And that group is the template's clone, tagged with the release
    let template = &found.template_target_groups[&traffic(&release).target_group];
    assert_eq!(own.shape, template.shape);
    assert_eq!(own.shape.health_check_path.as_deref(), Some("/health"));
    assert_eq!(own.tags.get(TAG_RELEASE).map(String::as_str), Some("01JAWSTRAFFIC000000000001"));
}

#[tokio::test]
async fn a_second_deploy_shifts_in_steps_and_retires_the_old_release_after_the_bake() {
    // Given a first release live behind the rule
    let (cloud, release) = traffic_world("second-deploy").await;
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSSHIFT00000000000001");
    let first = run_until_end(&runner, "01JAWSSHIFT00000000000001").await;
    let old_name = own_group_name(&first);

    // When a second release deploys
    submit(&runner, &release, "01JAWSSHIFT00000000000002");
    let second = run_until_end(&runner, "01JAWSSHIFT00000000000002").await;

    // Then traffic moved a quarter at a time and the rule now forwards to the new group only
    assert_eq!(failures(&runner, "01JAWSSHIFT00000000000002"), Vec::<String>::new());
    assert_eq!(end_of(&second), Some("Success"));
    let (events, _) = history(&runner, "01JAWSSHIFT00000000000002");
    assert_eq!(weights(&events), [25, 50, 75, 100]);
    let new_name = own_group_name(&second);
    let found = lookup(&cloud, &release, &[&old_name, &new_name]).await;
    assert_eq!(rule_at(&found, &release, PRIORITY).unwrap().forward, all_on(&found.template_target_groups[&new_name]));
    // And the old release's ASGs, launch templates and group were deleted, after the bake
    assert!(!found.template_target_groups.contains_key(&old_name), "the old group is gone");
    let asgs = asg_names(&cloud, &release).await;
    assert!(asgs.len() == 2 && asgs.iter().all(|n| n.ends_with("01JAWSSHIFT00000000000002")), "{asgs:?}");
    let templates = launch_template_names(&release.project_name).await;
    assert!(templates.len() == 2 && templates.iter().all(|n| n.ends_with("01JAWSSHIFT00000000000002")), "{templates:?}");
    let at = |wanted: fn(&Event) -> bool| events.iter().find(|r| wanted(&r.event)).map(|r| r.at).unwrap();
    let full = at(|e| matches!(e, Event::TrafficShifted { weight: 100, .. }));
    let retired = at(|e| matches!(e, Event::AsgDeleted { .. }));
    assert!(retired.ms_since(full) >= 60_000, "deleted {} ms after 100 %, before the bake ended", retired.ms_since(full));
}

#[tokio::test]
async fn a_deploy_halted_mid_shift_sends_traffic_back_and_removes_its_group() {
    // Given a first release live, and a second with its first step of traffic
    let (cloud, release) = traffic_world("halted-shift").await;
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSBACK000000000000001");
    let first = run_until_end(&runner, "01JAWSBACK000000000000001").await;
    submit(&runner, &release, "01JAWSBACK000000000000002");
    run_until_event(&runner, "01JAWSBACK000000000000002", |e| matches!(e, Event::TrafficShifted { .. })).await;
    let new_name = own_group_name(&history(&runner, "01JAWSBACK000000000000002").1);
    let old_name = own_group_name(&first);
    let mid = lookup(&cloud, &release, &[&old_name, &new_name]).await;
    let (old, new) = (&mid.template_target_groups[&old_name], &mid.template_target_groups[&new_name]);
    let split = vec![Weighted { target_group: old.arn.clone(), weight: 75 }, Weighted { target_group: new.arn.clone(), weight: 25 }];
    assert_eq!(rule_at(&mid, &release, PRIORITY).unwrap().forward, split);

    // When on-call halts it
    halt(&runner, &release);
    let state = run_until_end(&runner, "01JAWSBACK000000000000002").await;

    // Then all traffic is back on the first release's group, and nothing of the second remains
    assert_eq!(end_of(&state), Some("FailureClean"), "{:?}", failures(&runner, "01JAWSBACK000000000000002"));
    let found = lookup(&cloud, &release, &[&old_name, &new_name]).await;
    assert_eq!(rule_at(&found, &release, PRIORITY).unwrap().forward, all_on(&found.template_target_groups[&old_name]));
    assert!(!found.template_target_groups.contains_key(&new_name), "the new group is gone");
    let asgs = asg_names(&cloud, &release).await;
    assert!(asgs.len() == 2 && asgs.iter().all(|n| n.ends_with("01JAWSBACK000000000000001")), "{asgs:?}");
    assert_eq!(weights(&history(&runner, "01JAWSBACK000000000000002").0), [25, 0]);
}

#[tokio::test]
async fn creating_a_target_group_again_finds_the_releases_own_and_refuses_another_releases() {
    // Given the template's settings
    let (cloud, release) = traffic_world("create-twice").await;
    let template = lookup(&cloud, &release, &[]).await.template_target_groups[&traffic(&release).target_group].clone();
    let name = target_group_name(SERVICE, &moto::unique_name("create-twice"));
    let tags = |release_id: &str| managed_tags(&release.project_name, &release.config_name, SERVICE, release_id);

    // When the same release creates its group twice (a worker crashed after the first), then another release
    let first = cloud.create_target_group(&name, &template.shape, &tags("01JAWSTWICE00000000000001")).await.unwrap();
    let again = cloud.create_target_group(&name, &template.shape, &tags("01JAWSTWICE00000000000001")).await.unwrap();
    let other = cloud.create_target_group(&name, &template.shape, &tags("01JAWSTWICE00000000000002")).await;

    // Then the second create found the first group, and the other release's is an error for good
    assert_eq!(again, first);
    let error = other.unwrap_err();
    assert_eq!((error.code.as_deref(), error.transient), (Some("DuplicateTargetGroupName"), false), "{error}");
}

#[tokio::test]
async fn shifts_repeat_harmlessly_and_a_group_a_rule_uses_is_not_deleted_yet() {
    // Given the template, which the exemplar forwards to
    let (cloud, release) = traffic_world("repeat-shift").await;
    let listener = traffic(&release).listener.clone();
    let found = lookup(&cloud, &release, &[]).await;
    let template = found.template_target_groups[&traffic(&release).target_group].clone();
    let conditions = rule_at(&found, &release, PRIORITY + 40_000).unwrap().conditions;
    let rule = NewRule { conditions: &conditions, copy: None };

    // When a shift is made twice (a redelivered message), then removed twice
    for _ in 0..2 {
        cloud.shift_traffic(&listener, PRIORITY, rule, &all_on(&template)).await.unwrap();
    }
    let shifted = lookup(&cloud, &release, &[]).await;
    for _ in 0..2 {
        cloud.shift_traffic(&listener, PRIORITY, rule, &[]).await.unwrap();
    }
    let removed = lookup(&cloud, &release, &[]).await;
    let template_name = &traffic(&release).target_group;
    let in_use = cloud.delete("skald-no-such-asg", None, Some(template_name)).await;

    // Then there was one rule, then none; and deleting a group a rule forwards to is retried later
    let at_priority = |l: &Lookup| l.listeners[&listener].iter().filter(|r| r.priority == Some(PRIORITY)).count();
    assert_eq!((at_priority(&shifted), at_priority(&removed)), (1, 0));
    let error = in_use.unwrap_err();
    assert_eq!((error.code.as_deref(), error.transient), (Some("ResourceInUse"), true), "{error}");
    cloud.delete("skald-no-such-asg", None, Some("sk-no-such-group")).await.expect("a group that is gone is deleted");
}

#[tokio::test]
async fn a_listener_that_does_not_exist_is_reported_not_an_error() {
    // Given a release naming a listener that is not there
    let (cloud, mut release) = traffic_world("no-listener").await;
    let missing = format!("{}0", traffic(&release).listener);
    release.services.get_mut(SERVICE).unwrap().traffic.as_mut().unwrap().listener = missing.clone();

    // When its resources are looked up and checked
    let found = lookup(&cloud, &release, &[]).await;
    let problems = check(&release, "01JAWSNOLISTENER000000001", &found, &Default::default()).unwrap_err();

    // Then the lookup left it out, and the check names it
    assert!(!found.listeners.contains_key(&missing));
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems, [format!("services.web.traffic.listener: no listener `{missing}` found")]);
}

/// Replaces the world's exemplar rule with one made of `conditions` and `actions` (a forward to
/// the template is added last) and tags it; returns the template group's ARN.
async fn exemplar_with(cloud: &AwsCloud, release: &Release, conditions: Vec<elb::RuleCondition>, actions: Vec<elb::Action>) -> String {
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&moto::aws_config().await);
    let found = lookup(cloud, release, &[]).await;
    let template = found.template_target_groups[&traffic(release).target_group].arn.clone();
    let old = rule_at(&found, release, PRIORITY + 40_000).expect("the world has an exemplar");
    elbv2.delete_rule().rule_arn(&old.arn).send().await.expect("the old exemplar is deleted");
    let order = actions.len() as i32 + 1;
    let forward = elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).target_group_arn(&template).order(order).build();
    elbv2
        .create_rule()
        .listener_arn(&traffic(release).listener)
        .priority(PRIORITY as i32 + 40_000)
        .set_conditions(Some(conditions))
        .set_actions(Some(actions.into_iter().chain([forward]).collect()))
        .tags(elb::Tag::builder().key("Team").value("storefront").build())
        .send()
        .await
        .expect("the exemplar is created");
    template
}

/// The production rule as the load balancer describes it.
async fn production_rule(release: &Release) -> elb::Rule {
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&moto::aws_config().await);
    let rules = elbv2.describe_rules().listener_arn(&traffic(release).listener).send().await.unwrap();
    rules.rules().iter().find(|r| r.priority() == Some(&PRIORITY.to_string())).cloned().expect("a production rule exists")
}

async fn rule_tags(arn: &str) -> Vec<(String, String)> {
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&moto::aws_config().await);
    let out = elbv2.describe_tags().resource_arns(arn).send().await.unwrap();
    let tags = out.tag_descriptions().iter().flat_map(|d| d.tags());
    tags.map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

#[tokio::test]
async fn a_first_deploy_keeps_the_exemplars_oidc_authentication_and_host_condition() {
    // Given an exemplar that authenticates with OIDC on a host, then forwards to the template
    let (cloud, release) = traffic_world("exemplar-oidc").await;
    let oidc = elb::AuthenticateOidcActionConfig::builder()
        .issuer("https://idp.example.com")
        .authorization_endpoint("https://idp.example.com/authorize")
        .token_endpoint("https://idp.example.com/token")
        .user_info_endpoint("https://idp.example.com/userinfo")
        .client_id("storefront")
        .client_secret("exemplar-secret")
        .on_unauthenticated_request(elb::AuthenticateOidcActionConditionalBehaviorEnum::Deny)
        .build();
    let authenticate = elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(oidc).order(1).build();
    let host = elb::RuleCondition::builder()
        .field("host-header")
        .host_header_config(elb::HostHeaderConditionConfig::builder().values("shop.example.com").build())
        .build();
    exemplar_with(&cloud, &release, vec![host.clone()], vec![authenticate]).await;

    // When the first release deploys
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSOIDC000000000000001");
    let state = run_until_end(&runner, "01JAWSOIDC000000000000001").await;

    // Then the production rule authenticates as the exemplar does, on the same host, before it
    // forwards everything to the release's own group, and carries the exemplar's tags
    assert_eq!(end_of(&state), Some("Success"), "{:?}", failures(&runner, "01JAWSOIDC000000000000001"));
    let rule = production_rule(&release).await;
    assert_eq!(rule.conditions(), [host]);
    let kinds: Vec<_> = rule.actions().iter().map(|a| a.r#type().map(|t| t.as_str().to_string())).collect();
    assert_eq!(kinds, [Some("authenticate-oidc".to_string()), Some("forward".to_string())]);
    let config = rule.actions()[0].authenticate_oidc_config().unwrap();
    assert_eq!(
        (config.issuer(), config.client_id(), config.client_secret()),
        (Some("https://idp.example.com"), Some("storefront"), Some("exemplar-secret"))
    );
    assert_eq!(config.on_unauthenticated_request(), Some(&elb::AuthenticateOidcActionConditionalBehaviorEnum::Deny));
    let own = lookup(&cloud, &release, &[&own_group_name(&state)]).await.template_target_groups[&own_group_name(&state)].arn.clone();
    let forward = rule.actions()[1].forward_config().map(|c| c.target_groups().to_vec()).unwrap_or_default();
    assert_eq!(forward.iter().map(|t| (t.target_group_arn().unwrap().to_string(), t.weight())).collect::<Vec<_>>(), [(own, Some(100))]);
    let tags = rule_tags(rule.rule_arn().unwrap()).await;
    assert!(tags.contains(&("Team".into(), "storefront".into())) && tags.contains(&("ManagedBy".into(), "skald".into())), "{tags:?}");
    // And the secret is nowhere in the history
    let (events, _) = history(&runner, "01JAWSOIDC000000000000001");
    let recorded = serde_json::to_string(&events.iter().map(|r| &r.event).collect::<Vec<_>>()).unwrap();
    assert!(!recorded.contains("exemplar-secret"));
}

#[tokio::test]
async fn a_first_deploy_copies_header_and_query_string_conditions() {
    // Given an exemplar matching a header and a query string
    let (cloud, release) = traffic_world("exemplar-header").await;
    let header = elb::RuleCondition::builder()
        .field("http-header")
        .http_header_config(elb::HttpHeaderConditionConfig::builder().http_header_name("X-Canary").values("yes").build())
        .build();
    let pair = elb::QueryStringKeyValuePair::builder().key("beta").value("1").build();
    let query = elb::RuleCondition::builder()
        .field("query-string")
        .query_string_config(elb::QueryStringConditionConfig::builder().values(pair).build())
        .build();
    exemplar_with(&cloud, &release, vec![header.clone(), query.clone()], vec![]).await;

    // When the first release deploys
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSHEADER0000000000001");
    let state = run_until_end(&runner, "01JAWSHEADER0000000000001").await;

    // Then the production rule matches exactly those requests
    assert_eq!(end_of(&state), Some("Success"), "{:?}", failures(&runner, "01JAWSHEADER0000000000001"));
    let rule = production_rule(&release).await;
    assert_eq!(rule.conditions(), [header, query]);
}

#[tokio::test]
async fn an_exemplar_that_cannot_be_copied_is_refused_before_anything_launches() {
    // Given an exemplar that answers with a fixed response instead of forwarding to the template
    let (cloud, release) = traffic_world("exemplar-split").await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&moto::aws_config().await);
    let found = lookup(&cloud, &release, &[]).await;
    let exemplar = rule_at(&found, &release, PRIORITY + 40_000).unwrap();
    let elsewhere = elb::Action::builder()
        .r#type(elb::ActionTypeEnum::FixedResponse)
        .fixed_response_config(elb::FixedResponseActionConfig::builder().status_code("503").build())
        .build();
    elbv2.modify_rule().rule_arn(&exemplar.arn).actions(elsewhere).send().await.expect("the exemplar is changed");

    // When the first release deploys
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSUNCOPYABLE000000001");
    let state = run_until_end(&runner, "01JAWSUNCOPYABLE000000001").await;

    // Then it is refused with the resources, naming the field and the action, and launched nothing
    assert_eq!(end_of(&state), Some("FailureClean"));
    let (events, _) = history(&runner, "01JAWSUNCOPYABLE000000001");
    let problems = resource_problems(&runner, "01JAWSUNCOPYABLE000000001");
    assert!(
        problems.iter().any(|p| p.starts_with("services.web.traffic.priority:") && p.contains("`fixed-response` action")),
        "{problems:?}"
    );
    assert!(asg_names(&cloud, &release).await.is_empty());
    assert!(!events.iter().any(|r| matches!(r.event, Event::CommandStarted { .. })), "nothing was started");
}

#[tokio::test]
async fn a_releases_group_is_the_templates_clone_with_its_attributes_and_tags() {
    // Given a template group with attributes and tags of its own
    let (cloud, release) = traffic_world("group-clone").await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&moto::aws_config().await);
    let template_arn = lookup(&cloud, &release, &[]).await.template_target_groups[&traffic(&release).target_group].arn.clone();
    let attribute = |k: &str, v: &str| elb::TargetGroupAttribute::builder().key(k).value(v).build();
    elbv2
        .modify_target_group_attributes()
        .target_group_arn(&template_arn)
        .attributes(attribute("deregistration_delay.timeout_seconds", "42"))
        .attributes(attribute("slow_start.duration_seconds", "60"))
        .attributes(attribute("stickiness.enabled", "true"))
        .attributes(attribute("stickiness.type", "lb_cookie"))
        .send()
        .await
        .expect("the template's attributes are set");
    elbv2.add_tags().resource_arns(&template_arn).tags(elb::Tag::builder().key("CostCenter").value("shop").build()).send().await.unwrap();

    // When the first release deploys
    let runner = memory_runner(cloud.clone());
    submit(&runner, &release, "01JAWSGROUPCLONE000000001");
    let state = run_until_end(&runner, "01JAWSGROUPCLONE000000001").await;

    // Then its own group has the template's attributes and tags, and skald's on top
    assert_eq!(end_of(&state), Some("Success"), "{:?}", failures(&runner, "01JAWSGROUPCLONE000000001"));
    let own_name = own_group_name(&state);
    let found = lookup(&cloud, &release, &[&own_name]).await;
    let (own, template) = (&found.template_target_groups[&own_name], &found.template_target_groups[&traffic(&release).target_group]);
    for key in ["deregistration_delay.timeout_seconds", "slow_start.duration_seconds", "stickiness.enabled", "stickiness.type"] {
        assert_eq!(own.shape.attributes.get(key), template.shape.attributes.get(key), "{key}");
    }
    assert_eq!(own.shape.attributes.get("slow_start.duration_seconds").map(String::as_str), Some("60"));
    assert_eq!(own.shape, template.shape, "every setting of the description and every attribute");
    assert_eq!(own.tags.get("CostCenter").map(String::as_str), Some("shop"));
    assert_eq!(own.tags.get(TAG_RELEASE).map(String::as_str), Some("01JAWSGROUPCLONE000000001"));
}
