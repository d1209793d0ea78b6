//! Pins every static rule a release must pass, as the user sees it: the exact path of the
//! offending field and a distinctive part of the message.
//!
//! Each test starts from a valid minimal release, changes one thing, and asserts the problems.
//! Parse errors come from `codec::parse_release` (strict serde); everything else from
//! `workflow::validate::validate`.

use serde_json::{json, Value};
use skald_engine::codec::parse_release;
use skald_engine::workflow::validate::{validate, Problem};
use skald_engine::workflow::Release;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The smallest release that passes every rule.
const MINIMAL: &str = r#"{
    "project_name": "acme/shop",
    "config_name": "production",
    "subnets": ["subnet-0a1b"],
    "ami": "ami-0123456789abcdef0",
    "services": {
        "web": { "instance_type": "t3.micro", "security_groups": ["sg-0a1b"] }
    }
}"#;

fn minimal_json() -> Value {
    serde_json::from_str(MINIMAL).expect("MINIMAL is JSON")
}

fn minimal() -> Release {
    parse_release(MINIMAL).unwrap_or_else(|p| panic!("MINIMAL should parse: {p}"))
}

/// The minimal release's JSON with one change applied.
fn json_with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut value = minimal_json();
    mutate(&mut value);
    value
}

/// Parses the changed release (it must parse) and validates it.
fn problems_with(mutate: impl FnOnce(&mut Value)) -> Vec<Problem> {
    let text = json_with(mutate).to_string();
    let release = parse_release(&text).unwrap_or_else(|p| panic!("should parse, got {p}\n{text}"));
    validate(&release)
}

/// Parses the changed release, which must fail to parse.
fn parse_error_with(mutate: impl FnOnce(&mut Value)) -> Problem {
    let text = json_with(mutate).to_string();
    match parse_release(&text) {
        Ok(release) => panic!("should not parse, got {release:#?}"),
        Err(problem) => problem,
    }
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

/// Exactly one problem, at `path`, whose message contains `fragment`.
#[track_caller]
fn assert_only(problems: &[Problem], path: &str, fragment: &str) {
    assert_eq!(paths(problems), [path], "problems: {problems:#?}");
    assert!(problems[0].message.contains(fragment), "message at {path} is {:?}; expected it to contain {fragment:?}", problems[0].message);
}

#[track_caller]
fn assert_valid(problems: &[Problem]) {
    assert!(problems.is_empty(), "expected no problems, got {problems:#?}");
}

#[track_caller]
fn assert_parse_error(problem: &Problem, path: &str, fragment: &str) {
    assert_eq!(problem.path, path, "problem: {problem:?}");
    assert!(problem.message.contains(fragment), "message is {:?}; expected it to contain {fragment:?}", problem.message);
}

fn web(value: &mut Value) -> &mut Value {
    &mut value["services"]["web"]
}

fn autoscaling(value: &mut Value) -> &mut Value {
    &mut value["services"]["web"]["autoscaling"]
}

/// Sets `lifecycle.drain` to `hook`.
fn hook_problems(hook: Value) -> Vec<Problem> {
    problems_with(|v| v["lifecycle"] = json!({ "drain": hook }))
}

// ---------------------------------------------------------------------------------------------
// Whole releases
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_release_has_no_problems() {
    assert_valid(&validate(&minimal()));
}

#[test]
fn example_release_parses_and_has_no_problems() {
    let release = parse_release(include_str!("../../examples/release.json")).unwrap_or_else(|p| panic!("example should parse: {p}"));
    assert_valid(&validate(&release));
}

#[test]
fn all_problems_are_reported_at_once() {
    let problems = problems_with(|v| {
        v["timeout"] = json!(0);
        web(v)["instance_type"] = json!("huge");
        autoscaling(v)["spread"] = json!(2.0);
    });
    assert_eq!(paths(&problems), ["timeout", "services.web.instance_type", "services.web.autoscaling.spread"], "{problems:#?}");
}

#[test]
fn problems_in_different_services_are_each_reported_under_their_service() {
    let problems = problems_with(|v| {
        v["services"]["api"] = json!({ "instance_type": "t3.micro", "security_groups": [] });
        web(v)["security_groups"] = json!(["sg-1", "sg-1"]);
    });
    assert_eq!(paths(&problems), ["services.api.security_groups", "services.web.security_groups[1]"], "{problems:#?}");
}

#[test]
fn problem_displays_as_path_colon_message() {
    let problems = problems_with(|v| v["ami"] = json!(""));
    assert_eq!(problems[0].to_string(), "ami: must name an AMI id or Name tag");
}

// ---------------------------------------------------------------------------------------------
// Parsing: strict decoding names the path of the offending key
// ---------------------------------------------------------------------------------------------

#[test]
fn parse_rejects_unknown_top_level_key_naming_it() {
    let problem = parse_error_with(|v| v["colour"] = json!("blue"));
    assert_parse_error(&problem, "colour", "unknown field `colour`");
}

#[test]
fn parse_rejects_unknown_key_in_a_service() {
    let problem = parse_error_with(|v| web(v)["colour"] = json!("blue"));
    assert_parse_error(&problem, "services.web.colour", "unknown field `colour`");
}

#[test]
fn parse_rejects_unknown_key_in_autoscaling() {
    let problem = parse_error_with(|v| autoscaling(v)["min"] = json!(1));
    assert_parse_error(&problem, "services.web.autoscaling.min", "unknown field `min`");
}

#[test]
fn parse_rejects_unknown_key_in_a_policy() {
    let problem = parse_error_with(|v| autoscaling(v)["policies"] = json!([{ "type": "cpu_scale_up", "label": "up" }]));
    assert_parse_error(&problem, "services.web.autoscaling.policies[0].label", "unknown field `label`");
}

#[test]
fn parse_rejects_unknown_key_in_a_lifecycle_hook() {
    let problem = parse_error_with(|v| {
        v["lifecycle"] = json!({ "drain": { "transition": "autoscaling:EC2_INSTANCE_TERMINATING", "timeout": 60 } });
    });
    assert_parse_error(&problem, "lifecycle.drain.timeout", "unknown field `timeout`");
}

#[test]
fn parse_rejects_string_for_min_size_naming_its_path() {
    let problem = parse_error_with(|v| autoscaling(v)["min_size"] = json!("two"));
    assert_parse_error(&problem, "services.web.autoscaling.min_size", "invalid type: string \"two\"");
}

#[test]
fn parse_rejects_negative_min_size() {
    let problem = parse_error_with(|v| autoscaling(v)["min_size"] = json!(-1));
    assert_parse_error(&problem, "services.web.autoscaling.min_size", "invalid value: integer `-1`");
}

#[test]
fn parse_reports_missing_ami_at_the_release() {
    let problem = parse_error_with(|v| {
        v.as_object_mut().unwrap().remove("ami");
    });
    assert_parse_error(&problem, "release", "missing field `ami`");
}

#[test]
fn a_service_without_instance_type_or_template_is_refused_at_its_instance_type() {
    let problems = problems_with(|v| {
        web(v).as_object_mut().unwrap().remove("instance_type");
    });
    assert_only(&problems, "services.web.instance_type", "is missing: give an instance type such as t3.micro, or a `template`");
}

#[test]
fn parse_rejects_unknown_strategy() {
    let problem = parse_error_with(|v| autoscaling(v)["strategy"] = json!("AllAtOnceButFaster"));
    assert_parse_error(&problem, "services.web.autoscaling.strategy", "unknown variant `AllAtOnceButFaster`");
}

#[test]
fn parse_accepts_every_documented_strategy() {
    for strategy in [
        "AllAtOnce",
        "OneThenAllWithCanary",
        "25PercentStepRolloutNoCanary",
        "10PercentStepRolloutNoCanary",
        "10AtATimeNoCanary",
        "20AtATimeNoCanary",
    ] {
        assert_valid(&problems_with(|v| autoscaling(v)["strategy"] = json!(strategy)));
    }
}

#[test]
fn parse_rejects_unknown_policy_type() {
    let problem = parse_error_with(|v| autoscaling(v)["policies"] = json!([{ "type": "memory_scale_up" }]));
    assert_parse_error(&problem, "services.web.autoscaling.policies[0].type", "unknown variant `memory_scale_up`");
}

#[test]
fn parse_rejects_a_repeated_field_of_a_struct() {
    let text = MINIMAL.replacen(r#""config_name": "production","#, r#""config_name": "production", "config_name": "staging","#, 1);
    let problem = parse_release(&text).expect_err("a repeated key must not parse");
    assert_parse_error(&problem, "release", "duplicate field `config_name`");
}

#[test]
fn parse_refuses_a_release_over_64_kib_before_decoding() {
    let problem = parse_error_with(|v| v["user_data"] = json!("x".repeat(64 * 1024)));
    assert_parse_error(&problem, "release", "at most 65536 are accepted");
}

// ---------------------------------------------------------------------------------------------
// Names: project_name, config_name, service names
// ---------------------------------------------------------------------------------------------

#[test]
fn project_name_must_not_be_empty() {
    assert_only(&problems_with(|v| v["project_name"] = json!("")), "project_name", "must not be empty");
}

#[test]
fn project_name_may_be_48_characters_but_not_49() {
    assert_valid(&problems_with(|v| v["project_name"] = json!("p".repeat(48))));
    assert_only(&problems_with(|v| v["project_name"] = json!("p".repeat(49))), "project_name", "is longer than 48 characters");
}

#[test]
fn project_name_rejects_characters_outside_its_charset() {
    for name in ["acme shop", "acme$shop", "acme:shop", "ácme"] {
        assert_only(
            &problems_with(|v| v["project_name"] = json!(name)),
            "project_name",
            &format!("`{name}` must start with a letter or digit"),
        );
    }
}

#[test]
fn project_name_accepts_letters_digits_dash_underscore_dot_and_slash_between_parts() {
    for name in ["acme", "Acme-Shop_2.0", "coinbase/deploy-test", "a/b/c", "9lives/x.y"] {
        assert_valid(&problems_with(|v| v["project_name"] = json!(name)));
    }
}

#[test]
fn project_name_rejects_leading_trailing_or_doubled_slash() {
    for name in ["/acme", "acme/", "acme//shop", "/"] {
        assert_only(&problems_with(|v| v["project_name"] = json!(name)), "project_name", "`/` between parts");
    }
}

#[test]
fn project_name_parts_must_each_start_with_a_letter_or_digit() {
    for name in ["_all", "-acme", ".acme", "acme/_all", "acme/-shop"] {
        assert_only(&problems_with(|v| v["project_name"] = json!(name)), "project_name", "must start with a letter or digit");
    }
}

#[test]
fn config_name_must_not_be_empty() {
    assert_only(&problems_with(|v| v["config_name"] = json!("")), "config_name", "must not be empty");
}

#[test]
fn config_name_may_be_24_characters_but_not_25() {
    assert_valid(&problems_with(|v| v["config_name"] = json!("c".repeat(24))));
    assert_only(&problems_with(|v| v["config_name"] = json!("c".repeat(25))), "config_name", "is longer than 24 characters");
}

#[test]
fn config_name_rejects_slash_and_other_characters() {
    for name in ["prod/eu", "prod eu", "prod+eu"] {
        assert_only(&problems_with(|v| v["config_name"] = json!(name)), "config_name", "hold only letters, digits, `-`, `_` and `.`");
    }
}

#[test]
fn config_name_must_start_with_a_letter_or_digit() {
    for name in ["_all", "-prod", ".prod"] {
        assert_only(&problems_with(|v| v["config_name"] = json!(name)), "config_name", "must start with a letter or digit");
    }
    assert_valid(&problems_with(|v| v["config_name"] = json!("prod.eu-1_a")));
}

/// Replaces the `web` service with the same service under `name`.
fn rename_web(name: &str) -> Vec<Problem> {
    problems_with(|v| {
        let service = v["services"].as_object_mut().unwrap().remove("web").unwrap();
        v["services"][name] = service;
    })
}

#[test]
fn service_name_must_not_be_empty() {
    assert_only(&rename_web(""), "services.", "must not be empty");
}

#[test]
fn service_name_may_be_24_characters_but_not_25() {
    assert_valid(&rename_web(&"s".repeat(24)));
    let long = "s".repeat(25);
    assert_only(&rename_web(&long), &format!("services.{long}"), "is longer than 24 characters");
}

#[test]
fn service_name_all_wildcard_is_rejected_because_it_starts_with_underscore() {
    assert_only(&rename_web("_all"), "services._all", "`_all` must start with a letter or digit");
}

#[test]
fn service_name_rejects_slash_and_other_characters() {
    for name in ["web/api", "web api", "wéb"] {
        assert_only(&rename_web(name), &format!("services.{name}"), "hold only letters, digits, `-`, `_` and `.`");
    }
    assert_valid(&rename_web("Web-2_b.x"));
}

// ---------------------------------------------------------------------------------------------
// Release fields: ami, subnets, timeout, user_data, account, region, services
// ---------------------------------------------------------------------------------------------

#[test]
fn ami_must_not_be_empty_or_blank() {
    assert_only(&problems_with(|v| v["ami"] = json!("")), "ami", "must name an AMI id or Name tag");
    assert_only(&problems_with(|v| v["ami"] = json!("   ")), "ami", "must name an AMI id or Name tag");
}

#[test]
fn ami_may_be_255_characters_but_not_256() {
    assert_valid(&problems_with(|v| v["ami"] = json!("a".repeat(255))));
    assert_only(&problems_with(|v| v["ami"] = json!("a".repeat(256))), "ami", "is longer than 255 characters");
}

#[test]
fn subnets_must_list_at_least_one() {
    assert_only(&problems_with(|v| v["subnets"] = json!([])), "subnets", "must list at least 1");
}

#[test]
fn subnets_absent_is_the_same_as_empty() {
    let problems = problems_with(|v| {
        v.as_object_mut().unwrap().remove("subnets");
    });
    assert_only(&problems, "subnets", "must list at least 1");
}

#[test]
fn subnets_duplicate_is_reported_at_its_second_occurrence() {
    assert_only(&problems_with(|v| v["subnets"] = json!(["subnet-a", "subnet-a"])), "subnets[1]", "`subnet-a` is listed twice");
}

#[test]
fn subnets_entries_must_not_be_empty() {
    assert_only(&problems_with(|v| v["subnets"] = json!(["subnet-a", " "])), "subnets[1]", "must not be empty");
}

#[test]
fn subnets_may_list_32_but_not_33() {
    let list = |n: usize| json!((0..n).map(|i| format!("subnet-{i}")).collect::<Vec<_>>());
    assert_valid(&problems_with(|v| v["subnets"] = list(32)));
    assert_only(&problems_with(|v| v["subnets"] = list(33)), "subnets", "lists more than 32");
}

#[test]
fn timeout_zero_is_rejected() {
    let mut release = minimal();
    release.timeout = Some(0);
    assert_only(&validate(&release), "timeout", "must be between 1 and 172800 seconds");
}

#[test]
fn timeout_may_be_48_hours_but_not_more() {
    let mut release = minimal();
    release.timeout = Some(172_800);
    assert_valid(&validate(&release));
    release.timeout = Some(172_801);
    assert_only(&validate(&release), "timeout", "must be between 1 and 172800 seconds");
}

#[test]
fn user_data_may_be_16384_bytes_but_not_16385() {
    assert_valid(&problems_with(|v| v["user_data"] = json!("x".repeat(16_384))));
    assert_only(&problems_with(|v| v["user_data"] = json!("x".repeat(16_385))), "user_data", "is 16385 bytes; EC2 takes at most 16384");
}

#[test]
fn user_data_limit_counts_bytes_not_characters() {
    // 8,193 two-byte characters: fewer than 16,384 characters, more than 16,384 bytes.
    assert_only(&problems_with(|v| v["user_data"] = json!("é".repeat(8_193))), "user_data", "is 16386 bytes");
}

#[test]
fn aws_account_id_must_be_12_digits() {
    assert_valid(&problems_with(|v| v["aws_account_id"] = json!("123456789012")));
    for account in ["12345678901", "1234567890123", "12345678901a", "", "1234-5678-9012"] {
        assert_only(&problems_with(|v| v["aws_account_id"] = json!(account)), "aws_account_id", "must be 12 digits");
    }
}

#[test]
fn aws_region_must_look_like_a_region_name() {
    for region in ["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"] {
        assert_valid(&problems_with(|v| v["aws_region"] = json!(region)));
    }
    for region in ["useast1", "us-east", "US-EAST-1", "us-east-1a", "us--1", "us-east-", "-east-1", ""] {
        assert_only(
            &problems_with(|v| v["aws_region"] = json!(region)),
            "aws_region",
            &format!("`{region}` is not a region name such as us-east-1"),
        );
    }
}

#[test]
fn services_must_name_at_least_one() {
    assert_only(&problems_with(|v| v["services"] = json!({})), "services", "must name at least one service");
}

#[test]
fn services_may_be_16_but_not_17() {
    let services = |n: usize| {
        let map: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("svc{i}"), json!({ "instance_type": "t3.micro", "security_groups": ["sg-1"] }))).collect();
        Value::Object(map)
    };
    assert_valid(&problems_with(|v| v["services"] = services(16)));
    assert_only(&problems_with(|v| v["services"] = services(17)), "services", "has more than 16 services");
}

// ---------------------------------------------------------------------------------------------
// Service: instance type, security groups, load balancers, profile
// ---------------------------------------------------------------------------------------------

#[test]
fn instance_type_accepts_family_dot_size() {
    for it in ["t3.micro", "m5d.24xlarge", "u-6tb1.metal", "c7gn.16xlarge"] {
        assert_valid(&problems_with(|v| web(v)["instance_type"] = json!(it)));
    }
}

#[test]
fn instance_type_rejects_malformed_values() {
    // (An empty one is "missing": see a_service_without_instance_type_or_template_is_refused…)
    for it in ["t3micro", "T3.micro", "t3.", ".micro", "t3.micro.large", "t3 .micro"] {
        assert_only(
            &problems_with(|v| web(v)["instance_type"] = json!(it)),
            "services.web.instance_type",
            &format!("`{it}` is not an instance type such as t3.micro"),
        );
    }
}

#[test]
fn security_groups_must_list_at_least_one() {
    assert_only(&problems_with(|v| web(v)["security_groups"] = json!([])), "services.web.security_groups", "must list at least 1");
    let absent = problems_with(|v| {
        web(v).as_object_mut().unwrap().remove("security_groups");
    });
    assert_only(&absent, "services.web.security_groups", "must list at least 1");
}

#[test]
fn security_groups_duplicate_is_reported_at_its_second_occurrence() {
    let problems = problems_with(|v| web(v)["security_groups"] = json!(["sg-1", "sg-2", "sg-1"]));
    assert_only(&problems, "services.web.security_groups[2]", "`sg-1` is listed twice");
}

#[test]
fn security_groups_may_list_5_but_not_6() {
    let list = |n: usize| json!((0..n).map(|i| format!("sg-{i}")).collect::<Vec<_>>());
    assert_valid(&problems_with(|v| web(v)["security_groups"] = list(5)));
    assert_only(&problems_with(|v| web(v)["security_groups"] = list(6)), "services.web.security_groups", "lists more than 5");
}

#[test]
fn elbs_duplicate_is_rejected() {
    assert_only(&problems_with(|v| web(v)["elbs"] = json!(["lb", "lb"])), "services.web.elbs[1]", "`lb` is listed twice");
}

#[test]
fn target_groups_duplicate_is_rejected() {
    assert_only(&problems_with(|v| web(v)["target_groups"] = json!(["tg", "tg"])), "services.web.target_groups[1]", "`tg` is listed twice");
}

#[test]
fn elbs_and_target_groups_are_optional_but_bounded_at_10() {
    let list = |n: usize| json!((0..n).map(|i| format!("lb-{i}")).collect::<Vec<_>>());
    assert_valid(&problems_with(|v| {
        web(v)["elbs"] = list(10);
        web(v)["target_groups"] = list(10);
    }));
    assert_only(&problems_with(|v| web(v)["elbs"] = list(11)), "services.web.elbs", "lists more than 10");
    assert_only(&problems_with(|v| web(v)["target_groups"] = list(11)), "services.web.target_groups", "lists more than 10");
}

#[test]
fn profile_must_not_be_empty_when_given() {
    assert_valid(&problems_with(|v| web(v)["profile"] = json!("acme-shop")));
    assert_only(&problems_with(|v| web(v)["profile"] = json!("")), "services.web.profile", "must not be empty");
}

// ---------------------------------------------------------------------------------------------
// Service: tags
// ---------------------------------------------------------------------------------------------

#[test]
fn ordinary_tags_are_accepted() {
    assert_valid(&problems_with(|v| web(v)["tags"] = json!({ "Team": "payments", "CostCentre": "42" })));
}

#[test]
fn tags_that_skald_sets_are_reserved() {
    for key in ["ManagedBy", "ProjectName", "ConfigName", "ServiceName", "ReleaseId", "DeployWith"] {
        assert_only(
            &problems_with(|v| web(v)["tags"] = json!({ key: "mine" })),
            &format!("services.web.tags.{key}"),
            "is set by skald and cannot be given",
        );
    }
}

#[test]
fn tags_starting_with_aws_colon_in_any_case_are_reserved() {
    assert_only(&problems_with(|v| web(v)["tags"] = json!({ "AWS:x": "x" })), "services.web.tags.AWS:x", "reserved by AWS");
}

#[test]
fn tags_values_are_counted_in_characters_not_bytes() {
    assert_valid(&problems_with(|v| web(v)["tags"] = json!({ "Team": "é".repeat(256) })));
}

#[test]
fn tags_starting_with_aws_colon_are_reserved() {
    assert_only(
        &problems_with(|v| web(v)["tags"] = json!({ "aws:cloudformation:stack-name": "x" })),
        "services.web.tags.aws:cloudformation:stack-name",
        "reserved by AWS",
    );
}

#[test]
fn tag_key_may_be_127_characters_and_value_256() {
    // EC2 caps tag keys at 127 characters, and ASG tags are propagated to instances.
    let (key, value) = ("k".repeat(127), "v".repeat(256));
    assert_valid(&problems_with(|v| web(v)["tags"] = json!({ key: value })));
    let long_key = "k".repeat(128);
    assert_only(
        &problems_with(|v| web(v)["tags"] = json!({ long_key.clone(): "v" })),
        &format!("services.web.tags.{long_key}"),
        "a tag key must be 1 to 127 characters",
    );
    assert_only(
        &problems_with(|v| web(v)["tags"] = json!({ "Team": "v".repeat(257) })),
        "services.web.tags.Team",
        "a tag value must be at most 256 characters",
    );
}

#[test]
fn tag_key_must_not_be_empty() {
    assert_only(&problems_with(|v| web(v)["tags"] = json!({ "": "v" })), "services.web.tags.", "a tag key must be 1 to 127 characters");
}

#[test]
fn tags_may_number_40_but_not_41() {
    let tags = |n: usize| {
        let map: serde_json::Map<String, Value> = (0..n).map(|i| (format!("Tag{i}"), json!("v"))).collect();
        Value::Object(map)
    };
    assert_valid(&problems_with(|v| web(v)["tags"] = tags(40)));
    assert_only(&problems_with(|v| web(v)["tags"] = tags(41)), "services.web.tags", "has more than 40 tags");
}

// ---------------------------------------------------------------------------------------------
// Service: EBS
// ---------------------------------------------------------------------------------------------

#[test]
fn ebs_volume_size_must_be_between_1_and_16384_gib() {
    assert_valid(&problems_with(|v| web(v)["ebs_volume_size"] = json!(1)));
    assert_valid(&problems_with(|v| web(v)["ebs_volume_size"] = json!(16_384)));
    for size in [0, 16_385] {
        assert_only(
            &problems_with(|v| web(v)["ebs_volume_size"] = json!(size)),
            "services.web.ebs_volume_size",
            "must be between 1 and 16384 GiB",
        );
    }
}

#[test]
fn ebs_volume_type_accepts_every_known_type() {
    for kind in ["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"] {
        assert_valid(&problems_with(|v| web(v)["ebs_volume_type"] = json!(kind)));
    }
}

#[test]
fn ebs_volume_type_rejects_unknown_type() {
    assert_only(
        &problems_with(|v| web(v)["ebs_volume_type"] = json!("gp4")),
        "services.web.ebs_volume_type",
        "`gp4` is not one of standard, gp2",
    );
}

#[test]
fn ebs_device_name_must_be_under_dev() {
    assert_valid(&problems_with(|v| web(v)["ebs_device_name"] = json!("/dev/sdf")));
    for device in ["xvda", "/mnt/xvda", "/dev/", "/dev//x", "/dev/x/", "/dev/xv da", "/dev/../etc/passwd"] {
        assert_only(
            &problems_with(|v| web(v)["ebs_device_name"] = json!(device)),
            "services.web.ebs_device_name",
            &format!("`{device}` is not a device name such as /dev/xvda"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Service: placement, tenancy, spot price
// ---------------------------------------------------------------------------------------------

#[test]
fn placement_group_with_each_strategy_is_accepted() {
    for strategy in ["cluster", "spread"] {
        assert_valid(&problems_with(|v| {
            web(v)["placement_group_name"] = json!("pg");
            web(v)["placement_group_strategy"] = json!(strategy);
        }));
    }
    assert_valid(&problems_with(|v| {
        web(v)["placement_group_name"] = json!("pg");
        web(v)["placement_group_strategy"] = json!("partition");
        web(v)["placement_group_partition_count"] = json!(3);
    }));
}

#[test]
fn placement_group_name_without_strategy_is_rejected() {
    assert_only(
        &problems_with(|v| web(v)["placement_group_name"] = json!("pg")),
        "services.web.placement_group_strategy",
        "is required with placement_group_name",
    );
}

#[test]
fn placement_group_strategy_without_name_is_rejected() {
    assert_only(
        &problems_with(|v| web(v)["placement_group_strategy"] = json!("cluster")),
        "services.web.placement_group_name",
        "is required with placement_group_strategy",
    );
}

#[test]
fn placement_group_strategy_must_be_known() {
    let problems = problems_with(|v| {
        web(v)["placement_group_name"] = json!("pg");
        web(v)["placement_group_strategy"] = json!("clustered");
    });
    assert_only(&problems, "services.web.placement_group_strategy", "`clustered` is not one of cluster, spread, partition");
}

#[test]
fn partition_count_is_required_with_partition_strategy() {
    let problems = problems_with(|v| {
        web(v)["placement_group_name"] = json!("pg");
        web(v)["placement_group_strategy"] = json!("partition");
    });
    assert_only(&problems, "services.web.placement_group_partition_count", "is required with the partition strategy");
}

#[test]
fn partition_count_is_forbidden_with_other_strategies_or_none() {
    let problems = problems_with(|v| {
        web(v)["placement_group_name"] = json!("pg");
        web(v)["placement_group_strategy"] = json!("cluster");
        web(v)["placement_group_partition_count"] = json!(2);
    });
    assert_only(&problems, "services.web.placement_group_partition_count", "is allowed only with the partition strategy");
    let problems = problems_with(|v| web(v)["placement_group_partition_count"] = json!(2));
    assert_only(&problems, "services.web.placement_group_partition_count", "is allowed only with the partition strategy");
}

#[test]
fn partition_count_must_be_between_1_and_7() {
    let with_count = |n: u32| {
        problems_with(|v| {
            web(v)["placement_group_name"] = json!("pg");
            web(v)["placement_group_strategy"] = json!("partition");
            web(v)["placement_group_partition_count"] = json!(n);
        })
    };
    assert_valid(&with_count(1));
    assert_valid(&with_count(7));
    assert_only(&with_count(0), "services.web.placement_group_partition_count", "must be between 1 and 7");
    assert_only(&with_count(8), "services.web.placement_group_partition_count", "must be between 1 and 7");
}

#[test]
fn placement_tenancy_must_be_default_or_dedicated() {
    assert_valid(&problems_with(|v| web(v)["placement_tenancy"] = json!("default")));
    assert_valid(&problems_with(|v| web(v)["placement_tenancy"] = json!("dedicated")));
    assert_only(
        &problems_with(|v| web(v)["placement_tenancy"] = json!("host")),
        "services.web.placement_tenancy",
        "`host` is not one of default, dedicated",
    );
}

#[test]
fn spot_price_must_be_a_positive_number() {
    assert_valid(&problems_with(|v| web(v)["spot_price"] = json!("0.05")));
    for price in ["cheap", "", "0", "-0.1", "inf", "NaN", "$0.05"] {
        assert_only(
            &problems_with(|v| web(v)["spot_price"] = json!(price)),
            "services.web.spot_price",
            &format!("`{price}` is not a positive price in dollars"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Autoscaling: sizes, spread, grace period
// ---------------------------------------------------------------------------------------------

#[test]
fn min_size_above_max_size_is_rejected() {
    let problems = problems_with(|v| *autoscaling(v) = json!({ "min_size": 3, "max_size": 2 }));
    assert_only(&problems, "services.web.autoscaling.min_size", "3 is above max_size 2");
}

#[test]
fn min_size_is_compared_with_the_default_max_size_of_1() {
    assert_only(&problems_with(|v| autoscaling(v)["min_size"] = json!(2)), "services.web.autoscaling.min_size", "2 is above max_size 1");
}

#[test]
fn max_size_zero_is_rejected() {
    let problems = problems_with(|v| *autoscaling(v) = json!({ "min_size": 0, "max_size": 0 }));
    assert_only(&problems, "services.web.autoscaling.max_size", "must be at least 1");
}

#[test]
fn max_size_zero_with_default_min_size_reports_both() {
    let problems = problems_with(|v| autoscaling(v)["max_size"] = json!(0));
    assert_eq!(paths(&problems), ["services.web.autoscaling.min_size", "services.web.autoscaling.max_size"], "{problems:#?}");
}

#[test]
fn max_size_may_be_1000_but_not_1001() {
    assert_valid(&problems_with(|v| autoscaling(v)["max_size"] = json!(1_000)));
    assert_only(&problems_with(|v| autoscaling(v)["max_size"] = json!(1_001)), "services.web.autoscaling.max_size", "must be at most 1000");
}

#[test]
fn min_size_zero_is_allowed() {
    assert_valid(&problems_with(|v| autoscaling(v)["min_size"] = json!(0)));
}

#[test]
fn spread_must_be_between_0_and_1() {
    for spread in [0.0, 0.5, 1.0] {
        assert_valid(&problems_with(|v| autoscaling(v)["spread"] = json!(spread)));
    }
    for spread in [-0.1, 1.01] {
        assert_only(
            &problems_with(|v| autoscaling(v)["spread"] = json!(spread)),
            "services.web.autoscaling.spread",
            "must be between 0 and 1",
        );
    }
}

#[test]
fn health_check_grace_period_may_equal_but_not_exceed_the_timeout() {
    let with = |timeout: u64, grace: u64| {
        problems_with(|v| {
            v["timeout"] = json!(timeout);
            autoscaling(v)["health_check_grace_period"] = json!(grace);
        })
    };
    assert_valid(&with(900, 900));
    assert_only(
        &with(900, 901),
        "services.web.autoscaling.health_check_grace_period",
        "901 s is longer than the release's timeout of 900 s",
    );
}

#[test]
fn health_check_grace_period_is_checked_against_the_default_timeout_of_600() {
    assert_valid(&problems_with(|v| autoscaling(v)["health_check_grace_period"] = json!(600)));
    assert_only(
        &problems_with(|v| autoscaling(v)["health_check_grace_period"] = json!(601)),
        "services.web.autoscaling.health_check_grace_period",
        "601 s is longer than the release's timeout of 600 s",
    );
}

// ---------------------------------------------------------------------------------------------
// Autoscaling: policies
// ---------------------------------------------------------------------------------------------

fn policy_problems(policies: Value) -> Vec<Problem> {
    problems_with(|v| {
        *autoscaling(v) = json!({ "min_size": 1, "max_size": 4 });
        autoscaling(v)["policies"] = policies;
    })
}

#[test]
fn one_policy_of_each_type_with_defaults_is_accepted() {
    assert_valid(&policy_problems(json!([{ "type": "cpu_scale_up" }, { "type": "cpu_scale_down" }])));
}

#[test]
fn fully_specified_policies_are_accepted() {
    assert_valid(&policy_problems(json!([
        { "type": "cpu_scale_up", "scaling_adjustment": 2, "threshold": 75.5, "period": 120, "evaluation_periods": 3, "cooldown": 90 },
        { "type": "cpu_scale_down", "scaling_adjustment": -2, "threshold": 0, "period": 60, "evaluation_periods": 1 },
    ])));
}

/// Odin's `Test_PolicyNames_Uniq`: two unnamed policies of one type would share an AWS name.
#[test]
fn two_unnamed_policies_of_one_type_are_refused_at_the_second_ones_name() {
    let problems = policy_problems(json!([{ "type": "cpu_scale_up" }, { "type": "cpu_scale_down" }, { "type": "cpu_scale_up" }]));
    assert_only(&problems, "services.web.autoscaling.policies[2].name", "policies[0] is also cpu_scale_up without a name");
}

/// Odin's `Test_PolicyNames_Uniq`, continued: naming one of them tells them apart.
#[test]
fn policies_of_one_type_are_accepted_when_their_names_differ() {
    let named_one = json!([{ "type": "cpu_scale_up", "name": "override_name" }, { "type": "cpu_scale_up" }]);
    let named_both = json!([{ "type": "cpu_scale_up", "name": "fast", "threshold": 80, "scaling_adjustment": 3 }, { "type": "cpu_scale_up", "name": "slow" }]);
    assert_valid(&policy_problems(named_one));
    assert_valid(&policy_problems(named_both));
}

#[test]
fn two_policies_of_one_type_with_one_name_are_refused_naming_the_field() {
    let problems = policy_problems(json!([{ "type": "cpu_scale_up", "name": "fast" }, { "type": "cpu_scale_up", "name": "fast" }]));
    assert_only(&problems, "services.web.autoscaling.policies[1].name", "`fast` is already the name of policies[0], also cpu_scale_up");
}

/// The AWS names differ by type (`<asg>-cpu_scale_up-cpu`, `<asg>-cpu_scale_down-cpu`), as in
/// Odin's deploy-test release, whose policies are named after their types.
#[test]
fn one_name_for_policies_of_different_types_is_accepted() {
    assert_valid(&policy_problems(json!([{ "type": "cpu_scale_up", "name": "cpu" }, { "type": "cpu_scale_down", "name": "cpu" }])));
}

#[test]
fn a_policy_name_must_be_a_short_plain_word() {
    for bad in ["", "has space", "a/b", &"x".repeat(65)] {
        let problems = policy_problems(json!([{ "type": "cpu_scale_up", "name": bad }]));
        assert_only(&problems, "services.web.autoscaling.policies[0].name", "must be 1 to 64 letters");
    }
    assert_valid(&policy_problems(json!([{ "type": "cpu_scale_up", "name": "x".repeat(64) }])));
}

/// With several policies of a type, every scale-down threshold must be below every scale-up one.
#[test]
fn the_highest_scale_down_threshold_must_be_below_the_lowest_scale_up_threshold() {
    let problems = policy_problems(json!([
        { "type": "cpu_scale_up", "name": "fast", "threshold": 90 },
        { "type": "cpu_scale_up", "name": "slow", "threshold": 30 },
        { "type": "cpu_scale_down", "threshold": 35 },
    ]));
    assert_only(&problems, "services.web.autoscaling.policies", "cpu_scale_down threshold 35 must be below cpu_scale_up threshold 30");
}

#[test]
fn scale_up_with_negative_or_zero_adjustment_is_rejected() {
    for adjustment in [-1, 0] {
        assert_only(
            &policy_problems(json!([{ "type": "cpu_scale_up", "scaling_adjustment": adjustment }])),
            "services.web.autoscaling.policies[0].scaling_adjustment",
            &format!("{adjustment} points the wrong way for cpu_scale_up"),
        );
    }
}

#[test]
fn scale_down_with_positive_or_zero_adjustment_is_rejected() {
    for adjustment in [1, 0] {
        assert_only(
            &policy_problems(json!([{ "type": "cpu_scale_down", "scaling_adjustment": adjustment }])),
            "services.web.autoscaling.policies[0].scaling_adjustment",
            &format!("{adjustment} points the wrong way for cpu_scale_down"),
        );
    }
}

#[test]
fn threshold_must_be_a_percentage() {
    for threshold in [100.5, -1.0] {
        assert_only(
            &policy_problems(json!([{ "type": "cpu_scale_up", "threshold": threshold }])),
            "services.web.autoscaling.policies[0].threshold",
            "must be a CPU percentage between 0 and 100",
        );
    }
    assert_valid(&policy_problems(json!([{ "type": "cpu_scale_up", "threshold": 100 }])));
}

#[test]
fn period_must_be_a_positive_multiple_of_60() {
    for period in [0, 30, 90] {
        assert_only(
            &policy_problems(json!([{ "type": "cpu_scale_down", "period": period }])),
            "services.web.autoscaling.policies[0].period",
            "must be a positive multiple of 60 seconds",
        );
    }
    assert_valid(&policy_problems(json!([{ "type": "cpu_scale_down", "period": 180 }])));
}

#[test]
fn evaluation_periods_zero_is_rejected() {
    assert_only(
        &policy_problems(json!([{ "type": "cpu_scale_up", "evaluation_periods": 0 }])),
        "services.web.autoscaling.policies[0].evaluation_periods",
        "must be at least 1",
    );
}

#[test]
fn policy_problems_name_the_index_of_the_policy() {
    let problems = policy_problems(json!([{ "type": "cpu_scale_up" }, { "type": "cpu_scale_down", "period": 61 }]));
    assert_only(&problems, "services.web.autoscaling.policies[1].period", "multiple of 60");
}

// ---------------------------------------------------------------------------------------------
// Lifecycle hooks
// ---------------------------------------------------------------------------------------------

const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

#[test]
fn lifecycle_hooks_in_every_valid_shape_are_accepted() {
    assert_valid(&hook_problems(json!({ "transition": TERMINATING })));
    assert_valid(&hook_problems(json!({ "transition": "autoscaling:EC2_INSTANCE_LAUNCHING", "role": "r", "sns": "t" })));
    assert_valid(&hook_problems(json!({
        "transition": TERMINATING,
        "role_arn": "arn:aws:iam::123456789012:role/r",
        "notification_target_arn": "arn:aws:sns:us-east-1:123456789012:t",
        "heartbeat_timeout": 300,
    })));
    assert_valid(&hook_problems(json!({ "transition": TERMINATING, "role": "r", "notification_target_arn": "arn:aws:sqs:us-east-1:1:q" })));
}

#[test]
fn lifecycle_transition_must_be_launching_or_terminating() {
    assert_only(
        &hook_problems(json!({ "transition": "autoscaling:EC2_INSTANCE_REBOOTING" })),
        "lifecycle.drain.transition",
        "must be autoscaling:EC2_INSTANCE_LAUNCHING or autoscaling:EC2_INSTANCE_TERMINATING",
    );
}

#[test]
fn lifecycle_role_and_role_arn_together_are_rejected() {
    assert_only(
        &hook_problems(json!({ "transition": TERMINATING, "role": "r", "role_arn": "arn:aws:iam::1:role/r", "sns": "t" })),
        "lifecycle.drain.role",
        "give role or role_arn, not both",
    );
}

#[test]
fn lifecycle_sns_and_notification_target_arn_together_are_rejected() {
    assert_only(
        &hook_problems(
            json!({ "transition": TERMINATING, "role": "r", "sns": "t", "notification_target_arn": "arn:aws:sns:us-east-1:1:t" }),
        ),
        "lifecycle.drain.sns",
        "give sns or notification_target_arn, not both",
    );
}

#[test]
fn lifecycle_role_without_target_is_rejected() {
    assert_only(&hook_problems(json!({ "transition": TERMINATING, "role": "r" })), "lifecycle.drain", "give both or neither");
    assert_only(
        &hook_problems(json!({ "transition": TERMINATING, "role_arn": "arn:aws:iam::1:role/r" })),
        "lifecycle.drain",
        "give both or neither",
    );
}

#[test]
fn lifecycle_target_without_role_is_rejected() {
    assert_only(&hook_problems(json!({ "transition": TERMINATING, "sns": "t" })), "lifecycle.drain", "give both or neither");
}

#[test]
fn lifecycle_heartbeat_timeout_must_be_between_30_and_7200() {
    for secs in [30, 7_200] {
        assert_valid(&hook_problems(json!({ "transition": TERMINATING, "heartbeat_timeout": secs })));
    }
    for secs in [0, 29, 7_201] {
        assert_only(
            &hook_problems(json!({ "transition": TERMINATING, "heartbeat_timeout": secs })),
            "lifecycle.drain.heartbeat_timeout",
            "must be between 30 and 7200 seconds",
        );
    }
}

#[test]
fn lifecycle_hook_name_must_use_the_allowed_charset() {
    let problems = problems_with(|v| v["lifecycle"] = json!({ "drain hook": { "transition": TERMINATING } }));
    assert_only(&problems, "lifecycle.drain hook", "a hook name must be 1 to 255 letters, digits");
    // AWS's hook-name grammar has no dot.
    let problems = problems_with(|v| v["lifecycle"] = json!({ "drain.v2": { "transition": TERMINATING } }));
    assert_only(&problems, "lifecycle.drain.v2", "a hook name must be 1 to 255 letters, digits");
}

#[test]
fn lifecycle_hooks_may_number_10_but_not_11() {
    let hooks = |n: usize| {
        let map: serde_json::Map<String, Value> = (0..n).map(|i| (format!("hook{i}"), json!({ "transition": TERMINATING }))).collect();
        Value::Object(map)
    };
    assert_valid(&problems_with(|v| v["lifecycle"] = hooks(10)));
    assert_only(&problems_with(|v| v["lifecycle"] = hooks(11)), "lifecycle", "has more than 10 hooks");
}

// ---- strictness and bounds added after review -----------------------------------------------

#[test]
fn a_service_written_twice_is_an_error_not_last_one_wins() {
    let text =
        MINIMAL.replacen("\"services\": {", "\"services\": {\"web\": {\"instance_type\": \"t3.nano\", \"security_groups\": [\"sg\"]},", 1);
    let problem = parse_release(&text).unwrap_err();
    assert!(problem.message.contains("`web` appears twice"), "{problem:?}");
    assert!(problem.path.starts_with("services"), "{problem:?}");
}

#[test]
fn max_terms_and_cooldowns_are_bounded() {
    assert_only(&problems_with(|v| web(v)["autoscaling"]["max_terms"] = json!(1001)), "services.web.autoscaling.max_terms", "at most 1000");
    assert_only(
        &problems_with(|v| web(v)["autoscaling"]["default_cooldown"] = json!(86_401)),
        "services.web.autoscaling.default_cooldown",
        "at most 86400 seconds",
    );
    assert_only(
        &problems_with(|v| web(v)["autoscaling"]["policies"] = json!([{ "type": "cpu_scale_up", "cooldown": 86_401 }])),
        "services.web.autoscaling.policies[0].cooldown",
        "at most 86400 seconds",
    );
}

#[test]
fn an_alarm_window_longer_than_a_day_is_refused() {
    let policy = json!([{ "type": "cpu_scale_up", "period": 3600, "evaluation_periods": 25 }]);
    assert_only(
        &problems_with(|v| web(v)["autoscaling"]["policies"] = policy.clone()),
        "services.web.autoscaling.policies[0].evaluation_periods",
        "period × evaluation_periods is 90000 s",
    );
}

#[test]
fn scale_down_must_trigger_below_scale_up() {
    let policies = json!([{ "type": "cpu_scale_up", "threshold": 40 }, { "type": "cpu_scale_down", "threshold": 40 }]);
    assert_only(
        &problems_with(|v| web(v)["autoscaling"]["policies"] = policies.clone()),
        "services.web.autoscaling.policies",
        "cpu_scale_down threshold 40 must be below cpu_scale_up threshold 40",
    );
}

// ---------------------------------------------------------------------------------------------
// Traffic shifting
// ---------------------------------------------------------------------------------------------

#[test]
fn traffic_steps_waits_and_names_are_bounded_so_every_shift_is_valid_and_ends() {
    // Given a traffic block with a step of 0 (deployomat's loops forever), a wait as long as the
    // health timeout, a priority whose exemplar would be past 50,000, and a listener that is not
    // an ALB listener's ARN
    let value = json_with(|v| {
        v["services"]["web"]["traffic"] = json!({
            "listener": "my-listener",
            "priority": 10_001,
            "target_group": "web template",
            "shift_per_step": 0,
            "wait_per_step": 300,
            "health_timeout": 300
        });
    });
    let release = parse_release(&value.to_string()).expect("parses");

    // Then each is a problem naming its field
    let problems = validate(&release);
    let at = |path: &str| problems.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("no problem at {path}: {problems:?}"));
    assert!(at("services.web.traffic.shift_per_step").message.contains("between 1 and 100"));
    assert!(at("services.web.traffic.wait_per_step").message.contains("shorter than health_timeout"));
    assert!(at("services.web.traffic.priority").message.contains("between 1 and 10000"));
    assert!(at("services.web.traffic.listener").message.contains("listener's ARN"));
    assert!(at("services.web.traffic.target_group").message.contains("target group name"));
}

#[test]
fn a_valid_traffic_block_passes_and_an_unknown_key_in_it_is_refused() {
    let traffic = json!({
        "listener": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2",
        "priority": 10,
        "target_group": "shop-web-template"
    });
    let valid = json_with(|v| v["services"]["web"]["traffic"] = traffic.clone());
    assert_eq!(validate(&parse_release(&valid.to_string()).expect("parses")), Vec::<Problem>::new());
    let typo = json_with(|v| {
        v["services"]["web"]["traffic"] = traffic;
        v["services"]["web"]["traffic"]["shift_per_stpe"] = json!(10);
    });
    let error = parse_release(&typo.to_string()).expect_err("an unknown key is refused").to_string();
    assert!(error.contains("shift_per_stpe"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Concurrent deploys and undeploys
// ---------------------------------------------------------------------------------------------

#[test]
fn parse_rejects_an_unknown_on_concurrent_deploy() {
    let problem = parse_error_with(|v| v["on_concurrent_deploy"] = json!("retry"));
    assert_parse_error(&problem, "on_concurrent_deploy", "unknown variant `retry`");
}

#[test]
fn undeploy_is_off_for_production_and_on_elsewhere_unless_the_release_says() {
    let production = minimal();
    let staging = parse_release(&json_with(|v| v["config_name"] = json!("staging")).to_string()).expect("parses");
    let allowed = parse_release(&json_with(|v| v["allow_undeploy"] = json!(true)).to_string()).expect("parses");
    assert_eq!((production.allow_undeploy(), staging.allow_undeploy(), allowed.allow_undeploy()), (false, true, true));
}

#[test]
fn automatic_undeploy_needs_undeploy_allowed() {
    let on_production = problems_with(|v| v["automatic_undeploy_minutes"] = json!(30));
    assert_eq!(paths(&on_production), ["automatic_undeploy_minutes"]);
    assert!(on_production[0].message.contains("needs `allow_undeploy: true` on a production config"), "{}", on_production[0]);

    let forbidden = problems_with(|v| {
        v["config_name"] = json!("staging");
        v["allow_undeploy"] = json!(false);
        v["automatic_undeploy_minutes"] = json!(30);
    });
    assert_eq!(paths(&forbidden), ["automatic_undeploy_minutes"]);
    assert!(forbidden[0].message.contains("`allow_undeploy` is false"), "{}", forbidden[0]);

    let allowed = problems_with(|v| {
        v["allow_undeploy"] = json!(true);
        v["automatic_undeploy_minutes"] = json!(30);
    });
    assert!(allowed.is_empty(), "{allowed:?}");
}

#[test]
fn automatic_undeploy_minutes_are_bounded() {
    for minutes in [0, 7 * 24 * 60 + 1] {
        let problems = problems_with(|v| {
            v["allow_undeploy"] = json!(true);
            v["automatic_undeploy_minutes"] = json!(minutes);
        });
        assert_eq!(paths(&problems), ["automatic_undeploy_minutes"], "{minutes}");
        assert!(problems[0].message.contains("between 1 and 10080 minutes"), "{}", problems[0]);
    }
}

// ---------------------------------------------------------------------------------------------
// Template services and the AMI's `$` forms
// ---------------------------------------------------------------------------------------------

/// The minimal release with web cloned from a template instead of described.
fn template_release(mutate: impl FnOnce(&mut Value)) -> Vec<Problem> {
    problems_with(|v| {
        v["services"]["web"] = json!({ "template": "web-template" });
        v.as_object_mut().unwrap().remove("subnets");
        mutate(v);
    })
}

#[test]
fn a_template_service_needs_nothing_but_its_template() {
    assert!(template_release(|_| {}).is_empty(), "{:?}", template_release(|_| {}));
}

#[test]
fn what_the_template_brings_cannot_also_be_given() {
    let problems = template_release(|v| {
        web(v)["instance_type"] = json!("t3.micro");
        web(v)["security_groups"] = json!(["sg-0a1b"]);
        web(v)["autoscaling"] = json!({ "policies": [{ "type": "cpu_scale_up" }] });
    });
    assert_eq!(paths(&problems), ["services.web.instance_type", "services.web.security_groups", "services.web.autoscaling.policies"]);
    assert!(problems.iter().all(|p| p.message.contains("comes from the template")), "{problems:?}");
}

#[test]
fn template_services_take_their_subnets_from_the_template() {
    let problems = template_release(|v| v["subnets"] = json!(["subnet-0a1b"]));
    assert_only(&problems, "subnets", "must be absent: template services take their template's subnets");
}

#[test]
fn an_ami_name_prefix_may_name_its_owners_in_the_right_form() {
    // Given a name prefix without owners: the deployer's own list applies (settings), not an error
    let problems = problems_with(|v| v["ami"] = json!("$name-prefix:shop-app-"));
    assert!(problems.is_empty(), "{problems:?}");
    let owned = problems_with(|v| {
        v["ami"] = json!("$name-prefix:shop-app-");
        v["ami_owners"] = json!(["123456789012", "self", "amazon"]);
    });
    assert_only(&owned, "ami_owners[2]", "`amazon` is neither a 12-digit account id nor `self`");
}

#[test]
fn a_launch_template_version_is_only_for_template_services() {
    let described = problems_with(|v| v["ami"] = json!("$launchtemplate:3"));
    assert_only(&described, "ami", "needs every service to be cloned from a template");
    for good in ["$launchtemplate:3", "$launchtemplate:$Latest", "$launchtemplate:$Default", "$launchtemplate:$LatestMinus:2"] {
        assert!(template_release(|v| v["ami"] = json!(good)).is_empty(), "{good}");
    }
    for bad in ["$launchtemplate:0", "$launchtemplate:abc", "$launchtemplate:$LatestMinus:0", "$latest"] {
        let problems = template_release(|v| v["ami"] = json!(bad));
        assert_eq!(paths(&problems), ["ami"], "{bad}: {problems:?}");
    }
}

#[test]
fn traffic_gate_alarms_are_unique_and_bounded() {
    let gated = |alarms: Value| {
        problems_with(|v| {
            v["services"]["web"]["traffic"] = json!({
                "listener": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2",
                "priority": 10,
                "target_group": "web-template",
                "alarms": alarms
            });
        })
    };
    assert!(gated(json!(["web-5xx", "web-latency"])).is_empty());
    assert_eq!(paths(&gated(json!(["web-5xx", "web-5xx"]))), ["services.web.traffic.alarms[1]"]);
    let eleven: Vec<String> = (0..11).map(|i| format!("alarm-{i}")).collect();
    assert_eq!(paths(&gated(json!(eleven))), ["services.web.traffic.alarms"]);
}

// ---------------------------------------------------------------------------------------------
// Odin's release keys: hook names, safe_release, detach_strategy, stamped keys, template variables
// ---------------------------------------------------------------------------------------------

/// Odin's hooks carry their name (lifecycle.go `Name`); skald names a hook by its key.
#[test]
fn a_hook_may_repeat_its_key_as_its_name_but_not_another() {
    assert_valid(&hook_problems(json!({ "name": "drain", "transition": TERMINATING })));
    assert_only(
        &hook_problems(json!({ "name": "other", "transition": TERMINATING })),
        "lifecycle.drain.name",
        "differs from the hook's key `drain`",
    );
}

#[test]
fn safe_release_is_a_boolean_and_off_by_default() {
    assert!(!minimal().safe_release);
    let release = parse_release(&json_with(|v| v["safe_release"] = json!(true)).to_string()).unwrap();
    assert!(release.safe_release);
    assert_valid(&validate(&release));
    assert_parse_error(&parse_error_with(|v| v["safe_release"] = json!("yes")), "safe_release", "expected a boolean");
}

#[test]
fn detach_strategy_takes_odins_three_values_and_defaults_to_detach() {
    use skald_engine::workflow::release::DetachStrategy;
    assert_eq!(minimal().detach_strategy(), DetachStrategy::Detach);
    for (text, strategy) in [
        ("Detach", DetachStrategy::Detach),
        ("SkipDetach", DetachStrategy::SkipDetach),
        ("SkipDetachCheck", DetachStrategy::SkipDetachCheck),
    ] {
        let release = parse_release(&json_with(|v| v["detach_strategy"] = json!(text)).to_string()).unwrap();
        assert_eq!(release.detach_strategy(), strategy, "{text}");
        assert_valid(&validate(&release));
    }
    assert_parse_error(&parse_error_with(|v| v["detach_strategy"] = json!("detach")), "detach_strategy", "unknown variant `detach`");
}

/// Old histories record releases without the new keys; they must serialize as they were written.
#[test]
fn a_release_without_odins_new_keys_serializes_without_them() {
    let text = serde_json::to_string(&minimal()).unwrap();
    for key in ["safe_release", "detach_strategy", "\"name\""] {
        assert!(!text.contains(key), "{key} in {text}");
    }
}

/// What Odin's client and deployer stamp on a release (client.go, bifrost, release.go,
/// service.go) is refused with its own message rather than as an unknown key.
#[test]
fn keys_odin_stamps_on_a_release_are_refused_as_set_by_skald_deploy() {
    for key in ["release_id", "uuid", "created_at", "started_at", "bucket", "user_data_sha256", "wait_for_detach", "success"] {
        let problem = parse_error_with(|v| v[key] = json!("x"));
        assert_parse_error(&problem, key, "set by skald deploy");
    }
    for key in ["service_name", "created_asg", "healthy_report"] {
        let problem = parse_error_with(|v| web(v)[key] = json!("x"));
        assert_parse_error(&problem, &format!("services.web.{key}"), "set by skald deploy");
    }
}

#[test]
fn an_unknown_key_is_still_refused_as_unknown() {
    assert_parse_error(&parse_error_with(|v| v["release_idd"] = json!("x")), "release_idd", "unknown field `release_idd`");
}

/// Odin fills these from its S3 layout; skald has none, and must not ship them verbatim.
#[test]
fn each_odin_template_variable_skald_cannot_fill_is_refused_by_name() {
    for variable in ["{{RELEASE_BUCKET}}", "{{SHARED_PROJECT_DIR}}", "{{RELEASE_DIR}}"] {
        let problems = problems_with(|v| v["user_data"] = json!(format!("aws s3 cp s3://{variable}/app .")));
        assert_only(&problems, "user_data", &format!("`{variable}`"));
    }
    let all = problems_with(|v| v["user_data"] = json!("{{RELEASE_BUCKET}} {{RELEASE_DIR}}"));
    assert_eq!(paths(&all), ["user_data", "user_data"]);
}

#[test]
fn the_template_variables_skald_fills_are_accepted() {
    let text = "{{RELEASE_ID}} {{PROJECT_NAME}} {{CONFIG_NAME}} {{SERVICE_NAME}} {{AWS_ACCOUNT_ID}} {{AWS_REGION}} {{other}}";
    assert_valid(&problems_with(|v| v["user_data"] = json!(text)));
}

/// Odin's own example releases, copied byte for byte, parse and pass every rule.
#[test]
fn odins_example_releases_parse_and_have_no_problems() {
    for text in [include_str!("../../examples/odin/deploy-test-release.json"), include_str!("../../examples/odin/null-release.json")] {
        let release = parse_release(text).unwrap_or_else(|p| panic!("should parse: {p}"));
        assert_valid(&validate(&release));
    }
}
