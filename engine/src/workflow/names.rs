//! Every name and tag skald derives, in one place.
//!
//! Names are deterministic functions of project, config, service and release id, so a worker that
//! crashed after creating something finds it again by name. The bounds in `validate` are chosen so
//! that every name derived here is valid on AWS (launch template names ≤ 128 characters of
//! `[A-Za-z0-9().\-/_]`, ASG names ≤ 255, tag values ≤ 256).

use super::release::{Policy, PolicyKind, Release};
use std::collections::BTreeMap;

/// The value of the `DeployWith` tag by which AMIs and subnets opt in to skald.
pub const DEPLOYER: &str = "skald";
pub const TAG_DEPLOY_WITH: &str = "DeployWith";
/// Odin's other opt-in: one tag whose value is `<project>::<config>::<service>`.
pub const TAG_ALLOWED_SERVICE: &str = "AllowedService";

/// The value of an `AllowedService` tag that opts a resource in for one service.
pub fn allowed_service(project: &str, config: &str, service: &str) -> String {
    format!("{project}::{config}::{service}")
}
pub const TAG_MANAGED_BY: &str = "ManagedBy";
pub const TAG_PROJECT: &str = "ProjectName";
pub const TAG_CONFIG: &str = "ConfigName";
pub const TAG_SERVICE: &str = "ServiceName";
pub const TAG_RELEASE: &str = "ReleaseId";
/// The wildcard a resource's tag or an instance profile's path may use to serve every value.
pub const ALL: &str = "_all";

/// Longest project name: keeps derived launch-template names within AWS's 128 characters.
pub const PROJECT_NAME_LEN_MAX: usize = 48;
pub const CONFIG_NAME_LEN_MAX: usize = 24;
pub const SERVICE_NAME_LEN_MAX: usize = 24;
/// Release ids are ULIDs (26 characters); anything up to this length of `[0-9A-Za-z]` is accepted.
pub const RELEASE_ID_LEN_MAX: usize = 26;

/// Release ids key the event log and end every derived name: 1 to 26 letters and digits.
pub fn check_release_id(release_id: &str) -> Result<(), String> {
    let ok = !release_id.is_empty() && release_id.len() <= RELEASE_ID_LEN_MAX && release_id.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("`{release_id}` must be 1 to {RELEASE_ID_LEN_MAX} letters and digits (a ULID)"))
    }
}

const ULID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID from its parts: 48 bits of milliseconds and 80 bits of entropy in 26 Crockford base-32
/// characters, so ids sort by creation time. Only the low 48 bits of `ms` and 80 of `entropy` count.
pub fn ulid(ms: u64, entropy: u128) -> String {
    let value: u128 = (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80) | (entropy & ((1u128 << 80) - 1));
    (0..26).rev().map(|i| ULID_ALPHABET[((value >> (i * 5)) & 0x1F) as usize] as char).collect()
}

/// The id of the undeploy a release's `automatic_undeploy_minutes` starts: due at `due_ms`,
/// derived from the release id, so every copy of the scheduling message names one undeploy.
pub fn automatic_undeploy_id(release_id: &str, due_ms: u64) -> String {
    ulid(due_ms, u128::from(fnv1a64(release_id)))
}

/// Identifies one deploy: the release id it was started with. One release id, one deploy.
pub fn deploy_id(release_id: &str) -> String {
    release_id.to_string()
}

/// `<project>-<config>-<service>-<release id>`: the name of the ASG and of its launch template.
/// `/` in a project name is kept; both AWS name grammars allow it.
pub fn asg_name(project: &str, config: &str, service: &str, release_id: &str) -> String {
    format!("{project}-{config}-{service}-{release_id}")
}

/// The launch template shares its ASG's name: one template per ASG, found by the same key.
pub fn launch_template_name(asg_name: &str) -> String {
    asg_name.to_string()
}

/// The longest target group name an ELB takes.
pub const TARGET_GROUP_NAME_LEN_MAX: usize = 32;

/// `sk-<service>-<hash of the ASG name>`: a release's own target group. Target group names are
/// short (32 characters) and unique per account and region, so the ASG name cannot be used
/// whole; 64 bits of its FNV-1a hash keep distinct ASGs apart, and the service's name (cut to
/// 12 characters) keeps the console readable. Tags say which release it belongs to.
pub fn target_group_name(service: &str, asg_name: &str) -> String {
    let service: String = service.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(12).collect();
    let name = format!("sk-{}-{:016x}", service.trim_matches('-'), fnv1a64(asg_name));
    debug_assert!(name.len() <= TARGET_GROUP_NAME_LEN_MAX);
    name
}

/// Whether a target group ARN (`…:targetgroup/<name>/<id>`) names an ASG's own group.
pub fn is_own_target_group(service: &str, asg_name: &str, target_group_arn: &str) -> bool {
    target_group_arn.split('/').nth(1) == Some(target_group_name(service, asg_name).as_str())
}

/// FNV-1a, 64 bits: a stable hash with no dependency, for names only (not for security).
fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The tags every resource skald creates carries: they are how skald recognises its own work.
pub fn managed_tags(project: &str, config: &str, service: &str, release_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_string(), DEPLOYER.to_string()),
        (TAG_PROJECT.to_string(), project.to_string()),
        (TAG_CONFIG.to_string(), config.to_string()),
        (TAG_SERVICE.to_string(), service.to_string()),
        (TAG_RELEASE.to_string(), release_id.to_string()),
    ])
}

/// `aws:` tags belong to AWS: none may be written (the prefix in any case).
pub fn is_aws_tag(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// A clone's tags: what it copies of its template's (AWS's own and skald's scope and release tags
/// left out), with skald's `managed` tags on top.
pub fn copied_tags(template: &BTreeMap<String, String>, managed: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let scope = [TAG_MANAGED_BY, TAG_PROJECT, TAG_CONFIG, TAG_SERVICE, TAG_RELEASE];
    let own = |key: &str| is_aws_tag(key) || scope.contains(&key);
    let mut tags: BTreeMap<String, String> = template.iter().filter(|(k, _)| !own(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    tags.extend(managed);
    tags
}

/// The instance profile paths that may serve a service, most specific first:
/// `/<prefix>/<p>/<c>/<s>/` (the prefix is a deployer setting, `skald` unless set), then `_all`
/// from the right.
pub fn instance_profile_paths(prefix: &str, project: &str, config: &str, service: &str) -> [String; 4] {
    [
        format!("/{prefix}/{project}/{config}/{service}/"),
        format!("/{prefix}/{project}/{config}/{ALL}/"),
        format!("/{prefix}/{project}/{ALL}/{ALL}/"),
        format!("/{prefix}/{ALL}/{ALL}/{ALL}/"),
    ]
}

/// A scaling policy's name on AWS, and its CPU alarm's: `<asg>-<type>`, or `<asg>-<type>-<name>`
/// for a named policy (Odin's names), so several policies of one type stay apart.
pub fn policy_name(asg_name: &str, policy: &Policy) -> String {
    match &policy.name {
        Some(name) => format!("{asg_name}-{}-{name}", policy.kind.name()),
        None => format!("{asg_name}-{}", policy.kind.name()),
    }
}

/// Whether an alarm is one skald made for a policy of `asg_name` (named by [`policy_name`]).
pub fn is_policy_alarm(asg_name: &str, alarm_name: &str) -> bool {
    [PolicyKind::CpuScaleUp, PolicyKind::CpuScaleDown].iter().any(|kind| {
        let unnamed = format!("{asg_name}-{}", kind.name());
        alarm_name.strip_prefix(unnamed.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

/// The values a template variable in user data is replaced with.
pub struct TemplateValues<'a> {
    pub release_id: &'a str,
    pub service: &'a str,
    pub account_id: &'a str,
    pub region: &'a str,
}

/// Replaces `{{RELEASE_ID}}`, `{{PROJECT_NAME}}`, `{{CONFIG_NAME}}`, `{{SERVICE_NAME}}`,
/// `{{AWS_ACCOUNT_ID}}` and `{{AWS_REGION}}` by plain substitution, as Odin does; anything else
/// between braces is left alone (it may belong to the instance's own templating).
pub fn render_user_data(release: &Release, values: &TemplateValues<'_>) -> String {
    let text = release.user_data.as_deref().unwrap_or("");
    [
        ("{{RELEASE_ID}}", values.release_id),
        ("{{PROJECT_NAME}}", release.project_name.as_str()),
        ("{{CONFIG_NAME}}", release.config_name.as_str()),
        ("{{SERVICE_NAME}}", values.service),
        ("{{AWS_ACCOUNT_ID}}", values.account_id),
        ("{{AWS_REGION}}", values.region),
    ]
    .iter()
    .fold(text.to_string(), |acc, (key, value)| acc.replace(key, value))
}

/// The placeholder the CLI replaces with the contents of `<release file>.userdata`.
pub const USER_DATA_FILE_PLACEHOLDER: &str = "{{USER_DATA_FILE}}";

/// Odin's template variables that name its S3 layout, which skald does not have: with what each
/// meant, so a release using one is refused (`validate`) rather than deployed with the variable
/// left in its user data.
pub const UNFILLABLE_TEMPLATE_VARIABLES: [(&str, &str); 3] = [
    ("{{RELEASE_BUCKET}}", "Odin's release bucket"),
    ("{{SHARED_PROJECT_DIR}}", "Odin's shared project directory in its bucket"),
    ("{{RELEASE_DIR}}", "Odin's release directory in its bucket"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: PolicyKind, name: Option<&str>) -> Policy {
        Policy {
            name: name.map(str::to_string),
            kind,
            scaling_adjustment: None,
            threshold: None,
            period: None,
            evaluation_periods: None,
            cooldown: None,
        }
    }

    /// Odin's `Test_Policy_Name_Prefix`: `<asg>-<type>`, and `<asg>-<type>-<name>` once named.
    #[test]
    fn a_policy_is_named_after_its_asg_and_type_and_its_name_when_given() {
        let unnamed = policy(PolicyKind::CpuScaleDown, None);
        let named = policy(PolicyKind::CpuScaleDown, Some("boom"));

        assert_eq!(policy_name("service_id", &unnamed), "service_id-cpu_scale_down");
        assert_eq!(policy_name("service_id", &named), "service_id-cpu_scale_down-boom");
    }

    /// Deleting an ASG deletes the alarms of its own policies, named or not, and no other.
    #[test]
    fn policy_alarms_are_recognised_by_their_asg_and_type_prefix() {
        let asg = "p-c-web-01J";
        for name in
            [policy_name(asg, &policy(PolicyKind::CpuScaleUp, None)), policy_name(asg, &policy(PolicyKind::CpuScaleDown, Some("x")))]
        {
            assert!(is_policy_alarm(asg, &name), "{name}");
        }
        for other in ["p-c-web-01J-cpu_scale_upx", "p-c-web-01JX-cpu_scale_up", "TargetTracking-p-c-web-01J-AlarmHigh-1"] {
            assert!(!is_policy_alarm(asg, other), "{other}");
        }
    }

    #[test]
    fn target_group_names_are_short_valid_and_distinct_per_asg() {
        let long_service = "a-very_long.service-name-x";
        let one = target_group_name(long_service, &asg_name("p", "c", long_service, "01J0000000000000000000000A"));
        let two = target_group_name(long_service, &asg_name("p", "c", long_service, "01J0000000000000000000000B"));
        assert_ne!(one, two);
        for name in [&one, &two] {
            assert!(name.len() <= TARGET_GROUP_NAME_LEN_MAX, "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !name.ends_with('-'), "{name}");
        }
        let arn = format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{one}/0123456789abcdef");
        assert!(is_own_target_group(long_service, &asg_name("p", "c", long_service, "01J0000000000000000000000A"), &arn));
        assert!(!is_own_target_group(long_service, &asg_name("p", "c", long_service, "01J0000000000000000000000B"), &arn));
    }
}
