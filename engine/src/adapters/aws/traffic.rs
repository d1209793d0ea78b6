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
use crate::workflow::names::{DEPLOYER, TAG_MANAGED_BY, TAG_RELEASE};
use crate::workflow::resources::{FoundRule, RuleCondition, Tags, TargetGroupShape, Weighted};
use crate::workflow::CloudError;
use aws_sdk_elasticloadbalancingv2::types as elb;

/// DescribeRules answers at most 400 rules a page; 20 pages are far beyond a listener's quota.
const RULES_PAGE_SIZE: i32 = 400;
const RULE_PAGES_MAX: usize = 20;
/// A shift that loses a race (the rule appeared or vanished between our look and our change)
/// looks again; each lost race means another worker made progress, so a few tries suffice.
const SHIFT_ATTEMPTS_MAX: usize = 3;
/// What ELBv2 says of a target group a listener rule still forwards to.
const RESOURCE_IN_USE: &str = "ResourceInUse";

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
            Ok(arn)
        } else {
            let message = format!("a target group named {name} exists and is not this release's (ReleaseId {:?})", found.get(TAG_RELEASE));
            Err(CloudError::permanent("DuplicateTargetGroupName", message))
        }
    }

    /// Makes the listener's rule at `priority` forward to `forward`, creating it with
    /// `conditions` if there is none; an empty `forward` deletes the rule.
    pub(super) async fn shift_rule(
        &self,
        listener_arn: &str,
        priority: u32,
        conditions: &[RuleCondition],
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
                (None, false) => self.create_forward_rule(listener_arn, priority, conditions, forward).await,
            };
            match result {
                Err(error) if lost_race(&error) => lost = Some(error),
                other => return other,
            }
        }
        Err(lost.expect("at least one attempt"))
    }

    async fn create_forward_rule(
        &self,
        listener_arn: &str,
        priority: u32,
        conditions: &[RuleCondition],
        forward: &[Weighted],
    ) -> Result<(), CloudError> {
        let conditions = conditions.iter().map(rule_condition).collect::<Result<Vec<_>, _>>()?;
        let created = self
            .elbv2
            .create_rule()
            .listener_arn(listener_arn)
            .priority(priority as i32)
            .set_conditions(Some(conditions))
            .actions(forward_action(forward, None, None))
            // The tag is what lets skald's role change or delete the rule later (infra/).
            .tags(elb::Tag::builder().key(TAG_MANAGED_BY).value(DEPLOYER).build())
            .send()
            .await;
        created.map(|_| ()).map_err(|e| cloud_error("CreateRule", e))
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
    request
        .name(name)
        // Instances: the ASG registers its own.
        .target_type(elb::TargetTypeEnum::Instance)
        .protocol(elb::ProtocolEnum::from(shape.protocol.as_str()))
        .port(shape.port as i32)
        .vpc_id(&shape.vpc_id)
        .set_health_check_protocol(shape.health_check_protocol.as_deref().map(elb::ProtocolEnum::from))
        .set_health_check_path(shape.health_check_path.clone())
        .set_health_check_port(shape.health_check_port.clone())
        .set_healthy_threshold_count(shape.healthy_threshold.map(|n| n as i32))
        .set_unhealthy_threshold_count(shape.unhealthy_threshold.map(|n| n as i32))
        .set_health_check_interval_seconds(shape.health_check_interval_secs.map(|n| n as i32))
        .set_matcher(shape.matcher.as_ref().map(|code| elb::Matcher::builder().http_code(code).build()))
        .set_tags(Some(tags))
}

/// What the workflow needs of a rule: its priority (`None` for the default rule), its
/// conditions and where it forwards.
pub(super) fn found_rule(rule: &elb::Rule) -> FoundRule {
    FoundRule {
        arn: rule.rule_arn().unwrap_or_default().to_string(),
        priority: rule_priority(rule),
        conditions: rule.conditions().iter().map(found_condition).collect(),
        forward: rule.actions().iter().find(|a| is_forward(a)).map(forward_of).unwrap_or_default(),
    }
}

/// The priority as a number; the default rule's is `default`.
fn rule_priority(rule: &elb::Rule) -> Option<u32> {
    rule.priority().and_then(|p| p.parse().ok())
}

/// A condition's values, from its field's config when it has one (which can hold several
/// values) or else from the older `Values`.
fn found_condition(condition: &elb::RuleCondition) -> RuleCondition {
    let configured = match condition.field() {
        Some("host-header") => condition.host_header_config().map(|c| c.values()),
        Some("path-pattern") => condition.path_pattern_config().map(|c| c.values()),
        Some("http-request-method") => condition.http_request_method_config().map(|c| c.values()),
        Some("source-ip") => condition.source_ip_config().map(|c| c.values()),
        _ => None,
    };
    let values = configured.filter(|v| !v.is_empty()).unwrap_or(condition.values());
    RuleCondition { field: condition.field().unwrap_or_default().to_string(), values: values.to_vec() }
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

/// A condition as CreateRule takes it, in its field's config form. Conditions that need more
/// than values (an HTTP header's name, query string keys) cannot be rebuilt from a
/// [`RuleCondition`]: copying one would match other requests than the exemplar does.
fn rule_condition(condition: &RuleCondition) -> Result<elb::RuleCondition, CloudError> {
    let values = Some(condition.values.clone());
    let builder = elb::RuleCondition::builder().field(&condition.field);
    let builder = match condition.field.as_str() {
        "host-header" => builder.host_header_config(elb::HostHeaderConditionConfig::builder().set_values(values).build()),
        "path-pattern" => builder.path_pattern_config(elb::PathPatternConditionConfig::builder().set_values(values).build()),
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
    fn conditions_read_from_their_config_and_only_values_conditions_are_rebuilt() {
        let condition = elb::RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(elb::PathPatternConditionConfig::builder().values("/a/*").values("/b/*").build())
            .build();

        let found = found_condition(&condition);

        assert_eq!(found, RuleCondition { field: "path-pattern".into(), values: vec!["/a/*".into(), "/b/*".into()] });
        assert_eq!(rule_condition(&found).unwrap().path_pattern_config().map(|c| c.values().len()), Some(2));
        let header = RuleCondition { field: "http-header".into(), values: vec!["x".into()] };
        assert_eq!(rule_condition(&header).unwrap_err().code.as_deref(), Some("UnsupportedCondition"));
    }
}
