//! Gradual traffic shifting behind an ALB: a release's own target group, cloned from a template,
//! and the production listener rule, whose forward is weighted between the live release's group
//! and the new one.
//!
//! The rule is found by its priority every time, never remembered: repeating a shift after a
//! crash, or racing another worker on the same shift, finds the rule as it is and ends where it
//! was asked to. A rule's forward is replaced whole, so its weights are always exactly the ones
//! asked for.

use super::errors::{cloud_error, gone_is_done};
use super::AwsCloud;
use crate::workflow::listener_rule::{
    NewRule, QueryPair, RuleAction, RuleCopy, ACTION_AUTHENTICATE_COGNITO, ACTION_AUTHENTICATE_OIDC, ACTION_FORWARD,
};
use crate::workflow::listener_rule::{CONDITION_HTTP_HEADER, CONDITION_QUERY_STRING};
use crate::workflow::names::{DEPLOYER, TAG_MANAGED_BY, TAG_RELEASE};
use crate::workflow::resources::{FoundRule, RuleCondition, Tags, TargetGroupShape, Weighted};
use crate::workflow::CloudError;
use aws_sdk_elasticloadbalancingv2::types as elb;
use std::collections::BTreeMap;

/// DescribeRules answers at most 400 rules a page; 20 pages are far beyond a listener's quota.
const RULES_PAGE_SIZE: i32 = 400;
const RULE_PAGES_MAX: usize = 20;
/// A shift that loses a race (the rule appeared or vanished between our look and our change)
/// looks again; each lost race means another worker made progress, so a few tries suffice.
const SHIFT_ATTEMPTS_MAX: usize = 3;
/// What ELBv2 says of a target group a listener rule still forwards to.
const RESOURCE_IN_USE: &str = "ResourceInUse";
/// How a recorded action names its settings that are not single fields.
const EXTRA_PARAM: &str = "extra_params.";
const STICKY_ENABLED: &str = "stickiness.enabled";
const STICKY_DURATION: &str = "stickiness.duration_seconds";

impl AwsCloud {
    /// Every rule of a listener (its default rule included), in the API's order.
    pub(super) async fn listener_rules(&self, listener_arn: &str) -> Result<Vec<elb::Rule>, CloudError> {
        let mut rules = Vec::new();
        let mut marker = None;
        for _ in 0..RULE_PAGES_MAX {
            let out = self
                .elbv2
                .describe_rules()
                .listener_arn(listener_arn)
                .page_size(RULES_PAGE_SIZE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeRules", e))?;
            rules.extend_from_slice(out.rules());
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(rules);
            }
        }
        Err(CloudError::permanent("TooManyPages", format!("more than {RULE_PAGES_MAX} pages of rules on {listener_arn}")))
    }

    /// Creates the release's own target group, or finds the one a crashed worker of the same
    /// release made. AWS answers a create of an existing group with the same settings with that
    /// group, moto answers DuplicateTargetGroupName: either way the group's release tag decides
    /// whether it is ours.
    pub(super) async fn create_own_target_group(&self, name: &str, shape: &TargetGroupShape, tags: &Tags) -> Result<String, CloudError> {
        let created = target_group_request(self.elbv2.create_target_group(), name, shape, tags).send().await;
        let arn = match created.map_err(|e| cloud_error("CreateTargetGroup", e)) {
            Ok(out) => out.target_groups().first().and_then(|tg| tg.target_group_arn()).map(str::to_string),
            Err(error) if error.code.as_deref() == Some("DuplicateTargetGroupName") => {
                let existing = self.target_group_named(name).await?;
                Some(existing.and_then(|tg| tg.target_group_arn().map(str::to_string)).ok_or(error)?)
            }
            Err(error) => return Err(error),
        };
        let arn = arn.ok_or_else(|| CloudError::transient(format!("CreateTargetGroup: no ARN in the answer for {name}")))?;
        let found = self.elbv2_tags(std::slice::from_ref(&arn)).await?.remove(&arn).unwrap_or_default();
        if found.get(TAG_RELEASE) == tags.get(TAG_RELEASE) {
            // Setting the same attributes again (a repeated create) changes nothing.
            self.set_target_group_attributes(&arn, &shape.attributes).await?;
            Ok(arn)
        } else {
            let message = format!("a target group named {name} exists and is not this release's (ReleaseId {:?})", found.get(TAG_RELEASE));
            Err(CloudError::permanent("DuplicateTargetGroupName", message))
        }
    }

    /// Gives a release's group its template's attributes; none to set is no call.
    async fn set_target_group_attributes(&self, arn: &str, attributes: &BTreeMap<String, String>) -> Result<(), CloudError> {
        if attributes.is_empty() {
            return Ok(());
        }
        let attributes = attributes.iter().map(|(k, v)| elb::TargetGroupAttribute::builder().key(k).value(v).build()).collect();
        let modified = self.elbv2.modify_target_group_attributes().target_group_arn(arn).set_attributes(Some(attributes)).send().await;
        modified.map(|_| ()).map_err(|e| cloud_error("ModifyTargetGroupAttributes", e))
    }

    /// Makes the listener's rule at `priority` forward to `forward`, creating it as `rule` says
    /// if there is none; an empty `forward` deletes the rule.
    pub(super) async fn shift_rule(
        &self,
        listener_arn: &str,
        priority: u32,
        rule: NewRule<'_>,
        forward: &[Weighted],
    ) -> Result<(), CloudError> {
        let mut lost = None;
        for _ in 0..SHIFT_ATTEMPTS_MAX {
            let rules = self.listener_rules(listener_arn).await?;
            let existing = rules.iter().find(|r| rule_priority(r) == Some(priority));
            let result = match (existing, forward.is_empty()) {
                (None, true) => Ok(()),
                (Some(rule), true) => self.delete_rule(rule).await,
                (Some(rule), false) => self.set_forward(rule, forward).await,
                (None, false) => self.create_rule(listener_arn, priority, rule, forward).await,
            };
            match result {
                Err(error) if lost_race(&error) => lost = Some(error),
                other => return other,
            }
        }
        Err(lost.expect("at least one attempt"))
    }

    /// Creates the production rule: the exemplar's copy (every condition and action, its forward
    /// sending to `forward`, its tags), or, for a history recorded before copies were whole, the
    /// conditions and a bare forward.
    async fn create_rule(&self, listener_arn: &str, priority: u32, rule: NewRule<'_>, forward: &[Weighted]) -> Result<(), CloudError> {
        let conditions = rule.conditions.iter().map(rule_condition).collect::<Result<Vec<_>, _>>()?;
        // The ManagedBy tag is what lets skald's role change or delete the rule later (infra/).
        let managed = BTreeMap::from([(TAG_MANAGED_BY.to_string(), DEPLOYER.to_string())]);
        let (actions, tags) = match rule.copy {
            None => (vec![forward_action(forward, None, None)], &managed),
            Some(copy) => (self.copied_actions(copy, forward).await?, &copy.tags),
        };
        let tags = tags.iter().map(|(k, v)| elb::Tag::builder().key(k).value(v).build()).collect();
        let created = self
            .elbv2
            .create_rule()
            .listener_arn(listener_arn)
            .priority(priority as i32)
            .set_conditions(Some(conditions))
            .set_actions(Some(actions))
            .set_tags(Some(tags))
            .send()
            .await;
        created.map(|_| ()).map_err(|e| cloud_error("CreateRule", e))
    }

    /// The exemplar's actions as CreateRule takes them, the forward's groups replaced. An OIDC
    /// action needs its client secret, which is never recorded: it is read from the exemplar now.
    async fn copied_actions(&self, copy: &RuleCopy, forward: &[Weighted]) -> Result<Vec<elb::Action>, CloudError> {
        let needs_secret = copy.actions.iter().any(|a| a.kind == ACTION_AUTHENTICATE_OIDC);
        let secret = match needs_secret {
            true => Some(self.exemplar_client_secret(&copy.exemplar_arn).await?),
            false => None,
        };
        copy.actions.iter().map(|action| sdk_action(action, forward, secret.as_deref())).collect()
    }

    async fn exemplar_client_secret(&self, exemplar_arn: &str) -> Result<String, CloudError> {
        let out = self.elbv2.describe_rules().rule_arns(exemplar_arn).send().await.map_err(|e| cloud_error("DescribeRules", e))?;
        let secret = out.rules().iter().flat_map(|r| r.actions()).find_map(|a| a.authenticate_oidc_config()?.client_secret());
        secret.filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| {
            let message =
                format!("the exemplar rule {exemplar_arn} no longer shows its OIDC client secret; create the production rule by hand");
            CloudError::permanent("UnsupportedAction", message)
        })
    }

    /// Replaces the rule's forward; its conditions stay as they are.
    async fn set_forward(&self, rule: &elb::Rule, forward: &[Weighted]) -> Result<(), CloudError> {
        let modified = self
            .elbv2
            .modify_rule()
            .rule_arn(rule.rule_arn().unwrap_or_default())
            .set_actions(Some(actions_with_forward(rule.actions(), forward)))
            .send()
            .await;
        modified.map(|_| ()).map_err(|e| cloud_error("ModifyRule", e))
    }

    async fn delete_rule(&self, rule: &elb::Rule) -> Result<(), CloudError> {
        let deleted = self.elbv2.delete_rule().rule_arn(rule.rule_arn().unwrap_or_default()).send().await;
        gone_is_done(deleted.map(|_| ()).map_err(|e| cloud_error("DeleteRule", e)))
    }

    /// Deletes a release's own target group; gone already is done. A group still in use (a rule
    /// forwarding to it that is about to change, a deletion AWS has not finished) is worth
    /// retrying, so that error is transient.
    pub(super) async fn delete_own_target_group(&self, name: &str) -> Result<(), CloudError> {
        let Some(group) = self.target_group_named(name).await? else { return Ok(()) };
        let arn = group.target_group_arn().unwrap_or_default();
        let deleted = self.elbv2.delete_target_group().target_group_arn(arn).send().await;
        let result = deleted
            .map(|_| ())
            .map_err(|e| cloud_error("DeleteTargetGroup", e))
            .map_err(|error| CloudError { transient: error.transient || error.code.as_deref() == Some(RESOURCE_IN_USE), ..error });
        gone_is_done(result)
    }
}

/// The rule appeared (PriorityInUse on our create) or vanished (RuleNotFound on our modify)
/// under another worker's hands.
fn lost_race(error: &CloudError) -> bool {
    matches!(error.code.as_deref(), Some("PriorityInUse" | "RuleNotFound"))
}

/// The CreateTargetGroup request of a release's group, shaped like its template.
fn target_group_request(
    request: aws_sdk_elasticloadbalancingv2::operation::create_target_group::builders::CreateTargetGroupFluentBuilder,
    name: &str,
    shape: &TargetGroupShape,
    tags: &Tags,
) -> aws_sdk_elasticloadbalancingv2::operation::create_target_group::builders::CreateTargetGroupFluentBuilder {
    let tags = tags.iter().map(|(k, v)| elb::Tag::builder().key(k).value(v).build()).collect();
    let matcher = (shape.matcher.is_some() || shape.grpc_matcher.is_some())
        .then(|| elb::Matcher::builder().set_http_code(shape.matcher.clone()).set_grpc_code(shape.grpc_matcher.clone()).build());
    request
        .name(name)
        // Instances: the ASG registers its own (the workflow refuses a template of another type).
        .target_type(elb::TargetTypeEnum::Instance)
        .protocol(elb::ProtocolEnum::from(shape.protocol.as_str()))
        .set_protocol_version(shape.protocol_version.clone())
        .set_ip_address_type(shape.ip_address_type.as_deref().map(elb::TargetGroupIpAddressTypeEnum::from))
        .set_health_check_enabled(shape.health_check_enabled)
        .set_health_check_timeout_seconds(shape.health_check_timeout_secs.map(|n| n as i32))
        .port(shape.port as i32)
        .vpc_id(&shape.vpc_id)
        .set_health_check_protocol(shape.health_check_protocol.as_deref().map(elb::ProtocolEnum::from))
        .set_health_check_path(shape.health_check_path.clone())
        .set_health_check_port(shape.health_check_port.clone())
        .set_healthy_threshold_count(shape.healthy_threshold.map(|n| n as i32))
        .set_unhealthy_threshold_count(shape.unhealthy_threshold.map(|n| n as i32))
        .set_health_check_interval_seconds(shape.health_check_interval_secs.map(|n| n as i32))
        .set_matcher(matcher)
        .set_tags(Some(tags))
}

/// What the workflow needs of a rule: its priority (`None` for the default rule), its
/// conditions, where it forwards, and every action (for a copy). Tags are read separately.
pub(super) fn found_rule(rule: &elb::Rule) -> FoundRule {
    FoundRule {
        arn: rule.rule_arn().unwrap_or_default().to_string(),
        priority: rule_priority(rule),
        conditions: rule.conditions().iter().map(found_condition).collect(),
        forward: rule.actions().iter().find(|a| is_forward(a)).map(forward_of).unwrap_or_default(),
        actions: rule.actions().iter().map(found_action).collect(),
        tags: Tags::new(),
        transforms: rule.transforms().iter().map(|t| t.r#type().map_or("unknown", |t| t.as_str()).to_string()).collect(),
    }
}

/// An action as the workflow records it: its kind, order and settings (never a secret).
fn found_action(action: &elb::Action) -> RuleAction {
    let mut settings = BTreeMap::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            settings.insert(key.to_string(), value);
        }
    };
    let mut secret_shown = false;
    if let Some(c) = action.authenticate_oidc_config() {
        put("issuer", c.issuer().map(str::to_string));
        put("authorization_endpoint", c.authorization_endpoint().map(str::to_string));
        put("token_endpoint", c.token_endpoint().map(str::to_string));
        put("user_info_endpoint", c.user_info_endpoint().map(str::to_string));
        put("client_id", c.client_id().map(str::to_string));
        let on_unauthenticated = c.on_unauthenticated_request().map(|b| b.as_str());
        let session = Session { cookie: c.session_cookie_name(), scope: c.scope(), timeout: c.session_timeout(), on_unauthenticated };
        session.put(&mut put, c.authentication_request_extra_params());
        secret_shown = c.client_secret().is_some_and(|s| !s.is_empty());
    }
    if let Some(c) = action.authenticate_cognito_config() {
        put("user_pool_arn", c.user_pool_arn().map(str::to_string));
        put("user_pool_client_id", c.user_pool_client_id().map(str::to_string));
        put("user_pool_domain", c.user_pool_domain().map(str::to_string));
        let on_unauthenticated = c.on_unauthenticated_request().map(|b| b.as_str());
        let session = Session { cookie: c.session_cookie_name(), scope: c.scope(), timeout: c.session_timeout(), on_unauthenticated };
        session.put(&mut put, c.authentication_request_extra_params());
    }
    if let Some(s) = action.forward_config().and_then(|c| c.target_group_stickiness_config()) {
        put(STICKY_ENABLED, s.enabled().map(|e| e.to_string()));
        put(STICKY_DURATION, s.duration_seconds().map(|d| d.to_string()));
    }
    RuleAction {
        kind: action.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        order: action.order().map(|o| o.max(0) as u32),
        settings,
        forward: if is_forward(action) { forward_of(action) } else { Vec::new() },
        secret_shown,
    }
}

/// What both authentication actions (OIDC, Cognito) say of the session they open.
struct Session<'a> {
    cookie: Option<&'a str>,
    scope: Option<&'a str>,
    timeout: Option<i64>,
    on_unauthenticated: Option<&'a str>,
}

impl Session<'_> {
    /// Records the session's settings, and the extra parameters of the authorization request.
    fn put(&self, put: &mut impl FnMut(&str, Option<String>), extra: Option<&std::collections::HashMap<String, String>>) {
        put("session_cookie_name", self.cookie.map(str::to_string));
        put("scope", self.scope.map(str::to_string));
        put("session_timeout", self.timeout.map(|s| s.to_string()));
        put("on_unauthenticated_request", self.on_unauthenticated.map(str::to_string));
        for (name, value) in extra.into_iter().flatten() {
            put(&format!("{EXTRA_PARAM}{name}"), Some(value.clone()));
        }
    }
}

/// A recorded action as CreateRule takes it; a forward sends to `forward`. Only the kinds the
/// workflow lets a copy hold are written (`listener_rule::copy_of_exemplar`).
fn sdk_action(action: &RuleAction, forward: &[Weighted], client_secret: Option<&str>) -> Result<elb::Action, CloudError> {
    let s = &action.settings;
    let get = |key: &str| s.get(key).cloned();
    let timeout = get("session_timeout").and_then(|t| t.parse().ok());
    let extra: std::collections::HashMap<String, String> =
        s.iter().filter_map(|(k, v)| Some((k.strip_prefix(EXTRA_PARAM)?.to_string(), v.clone()))).collect();
    let extra = (!extra.is_empty()).then_some(extra);
    let order = action.order.map(|o| o as i32);
    let built = match action.kind.as_str() {
        ACTION_FORWARD => {
            let stickiness = get(STICKY_ENABLED).map(|enabled| {
                let duration = get(STICKY_DURATION).and_then(|d| d.parse().ok());
                elb::TargetGroupStickinessConfig::builder().enabled(enabled == "true").set_duration_seconds(duration).build()
            });
            return Ok(forward_action(forward, stickiness, order));
        }
        ACTION_AUTHENTICATE_OIDC => {
            let config = elb::AuthenticateOidcActionConfig::builder()
                .set_issuer(get("issuer"))
                .set_authorization_endpoint(get("authorization_endpoint"))
                .set_token_endpoint(get("token_endpoint"))
                .set_user_info_endpoint(get("user_info_endpoint"))
                .set_client_id(get("client_id"))
                .set_client_secret(client_secret.map(str::to_string))
                .set_session_cookie_name(get("session_cookie_name"))
                .set_scope(get("scope"))
                .set_session_timeout(timeout)
                .set_on_unauthenticated_request(get("on_unauthenticated_request").map(|b| b.as_str().into()))
                .set_authentication_request_extra_params(extra)
                .build();
            elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(config)
        }
        ACTION_AUTHENTICATE_COGNITO => {
            let config = elb::AuthenticateCognitoActionConfig::builder()
                .set_user_pool_arn(get("user_pool_arn"))
                .set_user_pool_client_id(get("user_pool_client_id"))
                .set_user_pool_domain(get("user_pool_domain"))
                .set_session_cookie_name(get("session_cookie_name"))
                .set_scope(get("scope"))
                .set_session_timeout(timeout)
                .set_on_unauthenticated_request(get("on_unauthenticated_request").map(|b| b.as_str().into()))
                .set_authentication_request_extra_params(extra)
                .build();
            elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateCognito).authenticate_cognito_config(config)
        }
        other => return Err(CloudError::permanent("UnsupportedAction", format!("a `{other}` action cannot be copied"))),
    };
    Ok(built.set_order(order).build())
}

/// The priority as a number; the default rule's is `default`.
fn rule_priority(rule: &elb::Rule) -> Option<u32> {
    rule.priority().and_then(|p| p.parse().ok())
}

/// A condition as the workflow records it, from its field's config when it has one (which can
/// hold several values, regular expressions, a header's name, query pairs) or else from the
/// older `Values`.
fn found_condition(condition: &elb::RuleCondition) -> RuleCondition {
    let (configured, regex): (Option<&[String]>, &[String]) = match condition.field() {
        Some("host-header") => condition.host_header_config().map_or((None, &[]), |c| (Some(c.values()), c.regex_values())),
        Some("path-pattern") => condition.path_pattern_config().map_or((None, &[]), |c| (Some(c.values()), c.regex_values())),
        Some(CONDITION_HTTP_HEADER) => condition.http_header_config().map_or((None, &[]), |c| (Some(c.values()), c.regex_values())),
        Some("http-request-method") => (condition.http_request_method_config().map(|c| c.values()), &[]),
        Some("source-ip") => (condition.source_ip_config().map(|c| c.values()), &[]),
        _ => (None, &[]),
    };
    let values = configured.filter(|v| !v.is_empty()).unwrap_or(condition.values());
    let regex_values = if regex.is_empty() { condition.regex_values() } else { regex };
    let query = condition.query_string_config().map(|c| c.values()).unwrap_or_default();
    RuleCondition {
        field: condition.field().unwrap_or_default().to_string(),
        values: values.to_vec(),
        regex_values: regex_values.to_vec(),
        header_name: condition.http_header_config().and_then(|c| c.http_header_name()).map(str::to_string),
        query: query.iter().filter_map(|p| Some(QueryPair { key: p.key().map(str::to_string), value: p.value()?.to_string() })).collect(),
    }
}

/// The groups a forward action sends to, with their weights. A plain `TargetGroupArn` sends
/// everything to one group; a tuple without a weight counts as 1, as ELBv2 does.
fn forward_of(action: &elb::Action) -> Vec<Weighted> {
    let tuples = action.forward_config().map(|c| c.target_groups()).unwrap_or_default();
    if tuples.is_empty() {
        return action.target_group_arn().map(|arn| vec![Weighted { target_group: arn.to_string(), weight: 100 }]).unwrap_or_default();
    }
    tuples
        .iter()
        .filter_map(|t| Some(Weighted { target_group: t.target_group_arn()?.to_string(), weight: t.weight().unwrap_or(1).max(0) as u32 }))
        .collect()
}

/// A condition as CreateRule takes it, in its field's config form, whole: a copy that matched
/// other requests than the exemplar does would be a different rule.
fn rule_condition(condition: &RuleCondition) -> Result<elb::RuleCondition, CloudError> {
    let values = (!condition.values.is_empty()).then(|| condition.values.clone());
    let regex = (!condition.regex_values.is_empty()).then(|| condition.regex_values.clone());
    let builder = elb::RuleCondition::builder().field(&condition.field);
    let builder = match condition.field.as_str() {
        "host-header" => {
            builder.host_header_config(elb::HostHeaderConditionConfig::builder().set_values(values).set_regex_values(regex).build())
        }
        "path-pattern" => {
            builder.path_pattern_config(elb::PathPatternConditionConfig::builder().set_values(values).set_regex_values(regex).build())
        }
        CONDITION_HTTP_HEADER => {
            let config = elb::HttpHeaderConditionConfig::builder()
                .set_http_header_name(condition.header_name.clone())
                .set_values(values)
                .set_regex_values(regex)
                .build();
            builder.http_header_config(config)
        }
        CONDITION_QUERY_STRING => {
            let pairs =
                condition.query.iter().map(|p| elb::QueryStringKeyValuePair::builder().set_key(p.key.clone()).value(&p.value).build());
            builder.query_string_config(elb::QueryStringConditionConfig::builder().set_values(Some(pairs.collect())).build())
        }
        "http-request-method" => {
            builder.http_request_method_config(elb::HttpRequestMethodConditionConfig::builder().set_values(values).build())
        }
        "source-ip" => builder.source_ip_config(elb::SourceIpConditionConfig::builder().set_values(values).build()),
        other => {
            let message = format!("a `{other}` condition cannot be copied from the exemplar rule; create the production rule by hand");
            return Err(CloudError::permanent("UnsupportedCondition", message));
        }
    };
    Ok(builder.build())
}

fn is_forward(action: &elb::Action) -> bool {
    action.r#type() == Some(&elb::ActionTypeEnum::Forward)
}

fn is_authentication(action: &elb::Action) -> bool {
    matches!(action.r#type(), Some(elb::ActionTypeEnum::AuthenticateCognito | elb::ActionTypeEnum::AuthenticateOidc))
}

/// The rule's actions with its forward replaced by `forward`. Authentication actions stay (the
/// ALB runs them before the forward; dropping them would open the service to anyone), and so
/// does the forward's group stickiness; any other final action gives way to the forward.
fn actions_with_forward(existing: &[elb::Action], forward: &[Weighted]) -> Vec<elb::Action> {
    let old_forward = existing.iter().find(|a| is_forward(a));
    let stickiness = old_forward.and_then(|a| a.forward_config()).and_then(|c| c.target_group_stickiness_config()).cloned();
    let mut actions: Vec<elb::Action> = existing.iter().filter(|a| is_authentication(a)).map(keeping_client_secret).collect();
    // Several actions need an order, the forward's last; a lone action needs none.
    let order = old_forward.and_then(|a| a.order()).or_else(|| actions.iter().filter_map(|a| a.order()).max().map(|o| o + 1));
    actions.push(forward_action(forward, stickiness, order));
    actions
}

/// An OIDC action as described lacks its client secret; ModifyRule keeps the secret it has
/// only when told to.
fn keeping_client_secret(action: &elb::Action) -> elb::Action {
    let mut action = action.clone();
    if let Some(config) = action.authenticate_oidc_config.as_mut() {
        config.use_existing_client_secret = Some(true);
    }
    action
}

fn forward_action(forward: &[Weighted], stickiness: Option<elb::TargetGroupStickinessConfig>, order: Option<i32>) -> elb::Action {
    let groups = forward
        .iter()
        .map(|w| elb::TargetGroupTuple::builder().target_group_arn(&w.target_group).weight(w.weight as i32).build())
        .collect();
    let config = elb::ForwardActionConfig::builder().set_target_groups(Some(groups)).set_target_group_stickiness_config(stickiness).build();
    elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(config).set_order(order).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(target_group: &str, weight: u32) -> Weighted {
        Weighted { target_group: target_group.into(), weight }
    }

    fn tuples(action: &elb::Action) -> Vec<(String, i32)> {
        let groups = action.forward_config().map(|c| c.target_groups()).unwrap_or_default();
        groups.iter().map(|t| (t.target_group_arn().unwrap_or_default().to_string(), t.weight().unwrap_or_default())).collect()
    }

    #[test]
    fn a_forward_is_replaced_whole_keeping_stickiness_and_authentication() {
        let sticky = elb::TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(60).build();
        let oidc = elb::AuthenticateOidcActionConfig::builder().issuer("https://idp").client_id("skald").build();
        let existing = [
            elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(oidc).order(1).build(),
            forward_action(&[weighted("old", 100)], Some(sticky.clone()), Some(2)),
        ];

        let actions = actions_with_forward(&existing, &[weighted("old", 75), weighted("new", 25)]);

        assert_eq!(actions.len(), 2);
        assert_eq!(actions[0].authenticate_oidc_config().and_then(|c| c.use_existing_client_secret()), Some(true));
        assert_eq!(tuples(&actions[1]), [("old".to_string(), 75), ("new".to_string(), 25)]);
        assert_eq!(actions[1].forward_config().and_then(|c| c.target_group_stickiness_config()), Some(&sticky));
        assert_eq!(actions[1].order(), Some(2));
    }

    #[test]
    fn a_final_action_other_than_forward_gives_way() {
        let fixed = elb::FixedResponseActionConfig::builder().status_code("404").build();
        let existing = [elb::Action::builder().r#type(elb::ActionTypeEnum::FixedResponse).fixed_response_config(fixed).build()];

        let actions = actions_with_forward(&existing, &[weighted("new", 100)]);

        assert_eq!(actions.len(), 1);
        assert!(is_forward(&actions[0]));
        assert_eq!(actions[0].order(), None);
    }

    #[test]
    fn a_plain_forward_is_all_traffic_to_one_group_and_the_default_rule_has_no_priority() {
        let rule = elb::Rule::builder()
            .rule_arn("arn:rule")
            .priority("default")
            .actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).target_group_arn("tg").build())
            .build();

        let found = found_rule(&rule);

        assert_eq!(found.priority, None);
        assert_eq!(found.forward, [weighted("tg", 100)]);
    }

    #[test]
    fn conditions_read_from_their_config_and_unknown_fields_are_not_rebuilt() {
        let condition = elb::RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(elb::PathPatternConditionConfig::builder().values("/a/*").values("/b/*").build())
            .build();

        let found = found_condition(&condition);

        assert_eq!(found, RuleCondition::of_values("path-pattern", &["/a/*", "/b/*"]));
        assert_eq!(rule_condition(&found).unwrap().path_pattern_config().map(|c| c.values().len()), Some(2));
        let unknown = RuleCondition::of_values("geo-match", &["x"]);
        assert_eq!(rule_condition(&unknown).unwrap_err().code.as_deref(), Some("UnsupportedCondition"));
    }

    #[test]
    fn header_and_query_conditions_are_rebuilt_whole() {
        let header = elb::RuleCondition::builder()
            .field("http-header")
            .http_header_config(elb::HttpHeaderConditionConfig::builder().http_header_name("X-Env").values("canary").build())
            .build();
        let pair = elb::QueryStringKeyValuePair::builder().key("v").value("2").build();
        let query = elb::RuleCondition::builder()
            .field("query-string")
            .query_string_config(elb::QueryStringConditionConfig::builder().values(pair).build())
            .build();

        for condition in [header, query] {
            let rebuilt = rule_condition(&found_condition(&condition)).unwrap();
            assert_eq!(rebuilt, condition);
        }
    }

    #[test]
    fn authentication_actions_are_recorded_without_secrets_and_rebuilt_with_one() {
        let oidc = elb::AuthenticateOidcActionConfig::builder()
            .issuer("https://idp")
            .authorization_endpoint("https://idp/auth")
            .token_endpoint("https://idp/token")
            .user_info_endpoint("https://idp/user")
            .client_id("skald")
            .client_secret("s3cret")
            .session_timeout(3600)
            .authentication_request_extra_params("prompt", "login")
            .build();
        let action =
            elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(oidc.clone()).order(1).build();

        let recorded = found_action(&action);

        assert!(recorded.secret_shown);
        assert!(!recorded.settings.values().any(|v| v == "s3cret"), "a secret is never recorded: {recorded:?}");
        assert_eq!(sdk_action(&recorded, &[], Some("s3cret")).unwrap(), action);
        let cognito = elb::AuthenticateCognitoActionConfig::builder()
            .user_pool_arn("arn:pool")
            .user_pool_client_id("c")
            .user_pool_domain("d")
            .build();
        let action =
            elb::Action::builder().r#type(elb::ActionTypeEnum::AuthenticateCognito).authenticate_cognito_config(cognito).order(1).build();
        assert_eq!(sdk_action(&found_action(&action), &[], None).unwrap(), action);
    }
}
