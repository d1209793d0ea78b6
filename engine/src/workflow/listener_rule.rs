//! ALB listener rules as the workflow sees them, and what a first deploy may copy.
//!
//! A traffic-shifted service's first deploy has no production rule yet: it copies the exemplar
//! rule (deployomat's convention, at the production priority + 40,000), every condition and every
//! action, with the exemplar's forward to the template target group replaced by the release's
//! own group, and the exemplar's tags. Copying is judged here, before anything is launched: a
//! rule that cannot be copied whole is a resource problem naming the action or condition, never
//! a production rule that quietly matches other requests or skips its authentication.
//!
//! Deliberately absent: interpreting an action's settings. The adapter reports them as a flat
//! map and writes them back; the workflow only decides whether the copy is whole. Secrets are
//! never in it (an OIDC client secret stays in the load balancer; see [`RuleAction::secret_shown`]).

use super::names::{is_aws_tag, DEPLOYER, TAG_MANAGED_BY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Action kinds, as ELBv2 names them.
pub const ACTION_FORWARD: &str = "forward";
pub const ACTION_AUTHENTICATE_OIDC: &str = "authenticate-oidc";
pub const ACTION_AUTHENTICATE_COGNITO: &str = "authenticate-cognito";

/// Condition fields whose whole meaning is a list of values.
const VALUES_CONDITIONS: [&str; 4] = ["host-header", "path-pattern", "http-request-method", "source-ip"];
pub const CONDITION_HTTP_HEADER: &str = "http-header";
pub const CONDITION_QUERY_STRING: &str = "query-string";

/// A listener rule as the load balancer reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundRule {
    pub arn: String,
    /// `None` for the listener's default rule.
    pub priority: Option<u32>,
    pub conditions: Vec<RuleCondition>,
    /// The target groups the rule forwards to, with their weights; empty for other actions.
    pub forward: Vec<Weighted>,
    /// Every action, the forward included, in the load balancer's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<RuleAction>,
    /// The rule's tags, where the lookup read them (exemplar rules).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The kinds of the rule's transforms (header or URL rewrites), which a copy cannot carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<String>,
}

/// One condition of a listener rule and what it matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCondition {
    /// `host-header`, `path-pattern`, `http-request-method`, `source-ip`, `http-header` or
    /// `query-string`.
    pub field: String,
    pub values: Vec<String>,
    /// Regular expressions matched besides `values` (host, path and header conditions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regex_values: Vec<String>,
    /// For `http-header`: the header's name (`values` are its accepted values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// For `query-string`: the key/value pairs, a pair without a key matching any key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryPair>,
}

/// One `key=value` of a `query-string` condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// A target group in a weighted forward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weighted {
    pub target_group: String,
    pub weight: u32,
}

/// One action of a listener rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleAction {
    /// `authenticate-oidc`, `authenticate-cognito`, `forward`, `fixed-response`, `redirect`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    /// The action's settings by the API's names (`issuer`, `user_pool_arn`, `session_timeout`,
    /// `extra_params.<name>`, `stickiness.enabled`, …), as text. Never a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// For `forward`: where it sends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward: Vec<Weighted>,
    /// For `authenticate-oidc`: whether the load balancer showed the client secret. A new rule
    /// cannot be created without it, and AWS never shows it (emulators may), so an OIDC exemplar
    /// is copied only where the adapter can read the secret back when it creates the rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret_shown: bool,
}

/// What a first deploy's production rule copies from the exemplar besides its conditions:
/// every action (the forward's groups are the shift's own), and the tags. Recorded with the
/// resolved resources and carried by every shift, so a rule created after a crash is the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCopy {
    /// The exemplar, which the adapter reads again for what is never recorded (a client secret).
    pub exemplar_arn: String,
    pub actions: Vec<RuleAction>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// How to create a production rule that does not exist yet.
#[derive(Clone, Copy, Debug)]
pub struct NewRule<'a> {
    pub conditions: &'a [RuleCondition],
    /// `None` only in histories recorded before rules were copied whole: a bare forward.
    pub copy: Option<&'a RuleCopy>,
}

impl RuleCondition {
    /// A condition whose whole meaning is its values (`host-header`, `path-pattern`, …).
    pub fn of_values(field: &str, values: &[&str]) -> RuleCondition {
        RuleCondition { field: field.to_string(), values: values.iter().map(|v| v.to_string()).collect(), ..RuleCondition::default() }
    }
}

impl FoundRule {
    /// Whether every forward of the rule sends only to `target_group`.
    pub fn forwards_only_to(&self, target_group: &str) -> bool {
        !self.forward.is_empty() && self.forward.iter().all(|w| w.target_group == target_group)
    }
}

/// `actions` with their forward sending to `forward` instead; a rule without a forward gains one,
/// last. Every other action, and the forward's own settings (stickiness), stay.
pub fn with_forward(actions: &[RuleAction], forward: &[Weighted]) -> Vec<RuleAction> {
    let mut actions = actions.to_vec();
    match actions.iter_mut().find(|a| a.kind == ACTION_FORWARD) {
        Some(existing) => existing.forward = forward.to_vec(),
        None => {
            let order = actions.iter().filter_map(|a| a.order).max().map(|o| o + 1);
            actions.push(RuleAction { kind: ACTION_FORWARD.to_string(), order, forward: forward.to_vec(), ..RuleAction::default() });
        }
    }
    actions
}

/// The copy a first deploy makes of `exemplar`, which must forward to `template_group` (that is
/// what makes it the service's exemplar, as in deployomat). Every problem is named: the action or
/// condition that cannot be copied, and why.
pub fn copy_of_exemplar(exemplar: &FoundRule, template_group: &str) -> Result<RuleCopy, Vec<String>> {
    let mut problems = Vec::new();
    if !exemplar.forwards_only_to(template_group) {
        problems.push(format!("the exemplar rule must forward to the template target group {template_group} alone"));
    }
    problems.extend(exemplar.conditions.iter().filter_map(uncopyable_condition));
    problems.extend(exemplar.transforms.iter().map(|t| format!("the exemplar rule's `{t}` transform cannot be copied")));
    problems.extend(exemplar.actions.iter().filter_map(uncopyable_action));
    let forwards = exemplar.actions.iter().filter(|a| a.kind == ACTION_FORWARD).count();
    if forwards != 1 {
        problems.push(format!("the exemplar rule has {forwards} forward actions; a copy needs exactly one"));
    } else if exemplar.actions.iter().max_by_key(|a| a.order).is_some_and(|last| last.kind != ACTION_FORWARD) {
        problems.push("the exemplar rule's forward must be its last action".to_string());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut tags: BTreeMap<String, String> =
        exemplar.tags.iter().filter(|(k, _)| !is_aws_tag(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    // The tag is what lets skald's role change or delete the rule later (infra/).
    tags.insert(TAG_MANAGED_BY.to_string(), DEPLOYER.to_string());
    Ok(RuleCopy { exemplar_arn: exemplar.arn.clone(), actions: exemplar.actions.clone(), tags })
}

fn uncopyable_condition(condition: &RuleCondition) -> Option<String> {
    let field = condition.field.as_str();
    let whole = match field {
        _ if VALUES_CONDITIONS.contains(&field) => !condition.values.is_empty() || !condition.regex_values.is_empty(),
        CONDITION_HTTP_HEADER => condition.header_name.is_some() && !(condition.values.is_empty() && condition.regex_values.is_empty()),
        CONDITION_QUERY_STRING => !condition.query.is_empty(),
        _ => return Some(format!("the exemplar rule's `{field}` condition cannot be copied: skald does not know it")),
    };
    (!whole).then(|| format!("the exemplar rule's `{field}` condition was reported incomplete and cannot be copied"))
}

fn uncopyable_action(action: &RuleAction) -> Option<String> {
    match action.kind.as_str() {
        ACTION_FORWARD | ACTION_AUTHENTICATE_COGNITO => None,
        ACTION_AUTHENTICATE_OIDC if action.secret_shown => None,
        ACTION_AUTHENTICATE_OIDC => Some(
            "the exemplar rule's `authenticate-oidc` action cannot be copied: the load balancer does not reveal its client \
             secret; create the production rule by hand (tagged ManagedBy=skald) and later deploys keep its actions"
                .to_string(),
        ),
        other => Some(format!("the exemplar rule's `{other}` action cannot be copied: an exemplar authenticates, then forwards")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward_to(group: &str) -> RuleAction {
        RuleAction {
            kind: ACTION_FORWARD.into(),
            order: Some(2),
            forward: vec![Weighted { target_group: group.into(), weight: 100 }],
            ..RuleAction::default()
        }
    }

    fn exemplar(conditions: Vec<RuleCondition>, actions: Vec<RuleAction>) -> FoundRule {
        let forward = actions.iter().filter(|a| a.kind == ACTION_FORWARD).flat_map(|a| a.forward.clone()).collect();
        let tags =
            BTreeMap::from([("team".to_string(), "web".to_string()), ("aws:cloudformation:stack-name".to_string(), "x".to_string())]);
        FoundRule { arn: "arn:exemplar".into(), priority: Some(40_010), conditions, forward, actions, tags, transforms: vec![] }
    }

    fn host(value: &str) -> RuleCondition {
        RuleCondition::of_values("host-header", &[value])
    }

    #[test]
    fn a_cognito_exemplar_is_copied_with_every_action_condition_and_tag() {
        // Given an exemplar that authenticates with Cognito on a host and a header, then forwards
        let cognito = RuleAction {
            kind: ACTION_AUTHENTICATE_COGNITO.into(),
            order: Some(1),
            settings: BTreeMap::from([("user_pool_arn".to_string(), "arn:pool".to_string())]),
            ..RuleAction::default()
        };
        let header = RuleCondition { header_name: Some("X-Canary".into()), ..RuleCondition::of_values(CONDITION_HTTP_HEADER, &["yes"]) };
        let rule = exemplar(vec![host("a.example.com"), header], vec![cognito.clone(), forward_to("arn:template")]);

        // When it is judged for a first deploy
        let copy = copy_of_exemplar(&rule, "arn:template").unwrap();

        // Then both actions are kept, and the tags without AWS's own, plus ManagedBy
        assert_eq!(copy.actions, [cognito, forward_to("arn:template")]);
        assert_eq!(copy.tags.get("team").map(String::as_str), Some("web"));
        assert_eq!(copy.tags.get(TAG_MANAGED_BY).map(String::as_str), Some(DEPLOYER));
        assert!(!copy.tags.keys().any(|k| k.starts_with("aws:")));
    }

    #[test]
    fn an_exemplar_that_cannot_be_copied_whole_is_refused_naming_what() {
        let oidc_hidden = RuleAction { kind: ACTION_AUTHENTICATE_OIDC.into(), order: Some(1), ..RuleAction::default() };
        let oidc_shown = RuleAction { secret_shown: true, ..oidc_hidden.clone() };
        let fixed = RuleAction { kind: "fixed-response".into(), order: Some(3), ..RuleAction::default() };
        let unknown = RuleCondition::of_values("geo", &["x"]);
        let nameless_header = RuleCondition::of_values(CONDITION_HTTP_HEADER, &["x"]);
        let template = "arn:template";

        let refused = |rule: &FoundRule| copy_of_exemplar(rule, template).unwrap_err().join("; ");

        assert!(copy_of_exemplar(&exemplar(vec![host("h")], vec![oidc_shown, forward_to(template)]), template).is_ok());
        assert!(refused(&exemplar(vec![host("h")], vec![oidc_hidden, forward_to(template)])).contains("`authenticate-oidc` action"));
        assert!(refused(&exemplar(vec![host("h")], vec![forward_to(template), fixed])).contains("`fixed-response` action"));
        assert!(refused(&exemplar(vec![unknown], vec![forward_to(template)])).contains("`geo` condition"));
        assert!(refused(&exemplar(vec![nameless_header], vec![forward_to(template)])).contains("`http-header` condition"));
        assert!(refused(&exemplar(vec![host("h")], vec![forward_to("arn:other")])).contains("template target group"));
        let rewritten = FoundRule { transforms: vec!["url-rewrite".into()], ..exemplar(vec![host("h")], vec![forward_to(template)]) };
        assert!(refused(&rewritten).contains("`url-rewrite` transform"));
    }
}
