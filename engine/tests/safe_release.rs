//! Pins Odin's safe release (release_safe.go `ValidateSafeRelease`, its cases ported from
//! release_safe_test.go): a `safe_release` may change the AMI and the user data of the live
//! release and nothing else this rule watches; every difference is reported, by path.

use serde_json::{json, Value};
use skald_engine::codec::parse_release;
use skald_engine::workflow::safe_release::{check, differences};
use skald_engine::workflow::validate::Problem;
use skald_engine::workflow::Release;

/// Odin's `MockRelease`, less what its client stamps (release id, bucket, created at).
fn live_json() -> Value {
    json!({
        "aws_account_id": "000000000000",
        "aws_region": "us-east-1",
        "project_name": "project",
        "config_name": "config",
        "ami": "ubuntu",
        "subnets": ["private-subnet"],
        "timeout": 1,
        "services": {
            "web": {
                "instance_type": "t2.small",
                "security_groups": ["web-sg"],
                "elbs": ["web-elb"],
                "target_groups": ["web-elb-target"],
                "profile": "web-profile",
                "ebs_volume_size": 120,
                "tags": { "custom": "tag" },
                "autoscaling": {
                    "min_size": 1,
                    "max_size": 1,
                    "max_terms": 0,
                    "spread": 0.5,
                    "strategy": "AllAtOnce",
                    "default_cooldown": 10,
                    "health_check_grace_period": 1,
                    "policies": [
                        { "name": "asd", "type": "cpu_scale_up", "scaling_adjustment": 5, "threshold": 25 },
                        { "type": "cpu_scale_down", "scaling_adjustment": -1, "threshold": 15 }
                    ]
                }
            }
        }
    })
}

fn release(value: &Value) -> Release {
    parse_release(&value.to_string()).unwrap_or_else(|p| panic!("should parse: {p}"))
}

fn live() -> Release {
    release(&live_json())
}

/// The live release with one change applied, marked safe.
fn new_with(mutate: impl FnOnce(&mut Value)) -> Release {
    let mut value = live_json();
    value["safe_release"] = json!(true);
    mutate(&mut value);
    release(&value)
}

fn web(value: &mut Value) -> &mut Value {
    &mut value["services"]["web"]
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

/// Exactly one difference, at `path`, whose message shows both values.
#[track_caller]
fn assert_only_difference(new: &Release, path: &str, live_value: &str, new_value: &str) {
    let problems = differences(&live(), new);
    assert_eq!(paths(&problems), [path], "{problems:#?}");
    let message = &problems[0].message;
    assert!(message.contains(&format!("the live release has {live_value}, this one {new_value}")), "{message}");
}

#[test]
fn the_same_release_again_has_no_differences() {
    // Odin's Test_Release_validateSafeRelease_Works.
    assert!(differences(&live(), &new_with(|_| {})).is_empty());
}

#[test]
fn a_new_ami_and_new_user_data_are_safe() {
    let new = new_with(|v| {
        v["ami"] = json!("ami-0123456789abcdef0");
        v["user_data"] = json!("#cloud-config\n");
    });
    assert!(differences(&live(), &new).is_empty());
}

#[test]
fn without_a_live_release_the_check_passes() {
    // Odin's ValidateSafeRelease returns early when there are no previous ASGs.
    let new = new_with(|v| v["subnets"] = json!(["not"]));
    assert!(check(None, &new).is_empty());
}

#[test]
fn check_only_judges_a_release_marked_safe() {
    let mut unmarked = live_json();
    unmarked["subnets"] = json!(["not"]);
    assert!(check(Some(&live()), &release(&unmarked)).is_empty());
    assert_eq!(paths(&check(Some(&live()), &new_with(|v| v["subnets"] = json!(["not"])))), ["subnets"]);
}

#[test]
fn changed_subnets_are_refused_but_their_order_does_not_matter() {
    // Odin's Test_Release_validateSafeRelease_Subnet_Image.
    assert_only_difference(&new_with(|v| v["subnets"] = json!(["not"])), "subnets", "[private-subnet]", "[not]");
    let mut two = live_json();
    two["subnets"] = json!(["a", "b"]);
    let reordered = new_with(|v| v["subnets"] = json!(["b", "a"]));
    assert!(differences(&release(&two), &reordered).is_empty());
}

#[test]
fn a_changed_timeout_is_refused_with_defaults_applied() {
    assert_only_difference(&new_with(|v| v["timeout"] = json!(2)), "timeout", "`1`", "`2`");
    let mut defaulted = live_json();
    defaulted.as_object_mut().unwrap().remove("timeout");
    defaulted["services"]["web"]["autoscaling"]["health_check_grace_period"] = json!(600);
    let explicit = {
        let mut value = defaulted.clone();
        value["timeout"] = json!(600);
        release(&value)
    };
    assert!(differences(&release(&defaulted), &explicit).is_empty());
}

#[test]
fn a_removed_service_is_refused() {
    // Odin's Test_Release_validateSafeRelease_Subnet_Image, services emptied.
    let mut two = live_json();
    two["services"]["worker"] = two["services"]["web"].clone();
    let problems = differences(&release(&two), &live());
    assert_eq!(paths(&problems), ["services.worker"], "{problems:#?}");
    assert!(problems[0].message.contains("missing from this release"));
}

#[test]
fn an_added_service_is_refused() {
    // Odin's Test_Release_ValidateSafeRelease_NewServiceWorks ("No previous service").
    let new = new_with(|v| v["services"]["new_service"] = v["services"]["web"].clone());
    let problems = differences(&live(), &new);
    assert_eq!(paths(&problems), ["services.new_service"], "{problems:#?}");
    assert!(problems[0].message.contains("not in the live release"));
}

#[test]
fn changed_load_balancers_instance_type_security_groups_and_profile_are_refused() {
    // Odin's Test_Release_validateSafeRelease_Service.
    let cases = [
        ("elbs", json!(["not"]), "[web-elb]", "[not]"),
        ("target_groups", json!(["not"]), "[web-elb-target]", "[not]"),
        ("instance_type", json!("not.small"), "`t2.small`", "`not.small`"),
        ("security_groups", json!(["not"]), "[web-sg]", "[not]"),
        ("profile", json!("not"), "`web-profile`", "`not`"),
    ];
    for (field, value, was, is) in cases {
        let new = new_with(|v| web(v)[field] = value);
        assert_only_difference(&new, &format!("services.web.{field}"), was, is);
    }
}

#[test]
fn a_removed_profile_shows_as_none() {
    let new = new_with(|v| {
        web(v).as_object_mut().unwrap().remove("profile");
    });
    assert_only_difference(&new, "services.web.profile", "`web-profile`", "none");
}

#[test]
fn changed_ebs_and_public_ip_settings_are_refused() {
    let cases = [
        ("ebs_volume_size", json!(20), "`120`", "`20`"),
        ("ebs_volume_type", json!("gp3"), "`gp2`", "`gp3`"),
        ("ebs_device_name", json!("/dev/sda1"), "`/dev/xvda`", "`/dev/sda1`"),
        ("associate_public_ip_address", json!(true), "none", "`true`"),
    ];
    for (field, value, was, is) in cases {
        let new = new_with(|v| web(v)[field] = value);
        assert_only_difference(&new, &format!("services.web.{field}"), was, is);
    }
}

#[test]
fn an_ebs_default_written_out_is_no_change() {
    let new = new_with(|v| {
        web(v)["ebs_volume_type"] = json!("gp2");
        web(v)["ebs_device_name"] = json!("/dev/xvda");
    });
    assert!(differences(&live(), &new).is_empty());
}

#[test]
fn changed_autoscaling_sizes_and_timings_are_refused() {
    // Odin's Test_Release_validateSafeRelease_Autoscaling, and the rest of validateSafeAutoscaling.
    let cases = [
        ("min_size", json!(64), "`1`", "`64`"),
        ("max_size", json!(64), "`1`", "`64`"),
        ("max_terms", json!(2), "`0`", "`2`"),
        ("default_cooldown", json!(20), "`10`", "`20`"),
        ("spread", json!(0.25), "`0.5`", "`0.25`"),
    ];
    for (field, value, was, is) in cases {
        let new = new_with(|v| web(v)["autoscaling"][field] = value);
        assert_only_difference(&new, &format!("services.web.autoscaling.{field}"), was, is);
    }
    let longer = new_with(|v| {
        v["timeout"] = json!(60);
        web(v)["autoscaling"]["health_check_grace_period"] = json!(30);
    });
    assert_eq!(paths(&differences(&live(), &longer)), ["timeout", "services.web.autoscaling.health_check_grace_period"]);
}

#[test]
fn strategy_policies_and_tags_may_change() {
    let new = new_with(|v| {
        web(v)["autoscaling"]["strategy"] = json!("OneThenAllWithCanary");
        web(v)["autoscaling"]["policies"] = json!([]);
        web(v)["tags"] = json!({ "other": "tag" });
    });
    assert!(differences(&live(), &new).is_empty());
}

#[test]
fn every_difference_is_reported_at_once() {
    // Odin's Test_Release_validateSafeRelease_MultipleErrors.
    let new = new_with(|v| {
        v["subnets"] = json!(["not"]);
        web(v)["profile"] = json!("not");
        web(v)["autoscaling"]["min_size"] = json!(64);
    });
    let problems = differences(&live(), &new);
    assert_eq!(paths(&problems), ["subnets", "services.web.profile", "services.web.autoscaling.min_size"], "{problems:#?}");
}
