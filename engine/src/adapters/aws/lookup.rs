//! Looking up what a release names: every match, with its tags, for the workflow to judge.

use super::errors::{cloud_error, is_missing};
use super::traffic::found_rule;
use super::AwsCloud;
use crate::workflow::names::{TAG_CONFIG, TAG_PROJECT};
use crate::workflow::placement::FoundPlacementGroup;
use crate::workflow::release::EXEMPLAR_PRIORITY_OFFSET;
use crate::workflow::resources::{ExistingAsg, Found, FoundProfile, FoundRule, FoundTargetGroup, Lookup, Query, Tags, TargetGroupShape};
use crate::workflow::CloudError;
use aws_sdk_elasticloadbalancingv2::types as elb;
use std::collections::{BTreeMap, BTreeSet};

/// Describe calls that take many names take at most this many (ELB and ELBv2 DescribeTags).
const TAGS_PER_CALL_MAX: usize = 20;
/// A bound on pages of ASGs for one project-config: 100 pages of 50 is far beyond any real one.
const ASG_PAGES_MAX: usize = 100;
/// The status Auto Scaling gives a group between DeleteAutoScalingGroup and its disappearance.
const DELETE_IN_PROGRESS: &str = "Delete in progress";

impl AwsCloud {
    pub(super) async fn lookup_all(&self, query: &Query) -> Result<Lookup, CloudError> {
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| cloud_error("GetCallerIdentity", e))?;
        let account_id = identity.account().unwrap_or_default().to_string();
        let partition = identity.arn().and_then(|arn| arn.split(':').nth(1)).filter(|p| !p.is_empty()).unwrap_or("aws");
        let topics = self.topics(partition, &account_id, &query.topics).await?;
        let target_groups = self.target_groups(&query.target_groups).await?;
        let slow_start_secs = self.slow_starts(&target_groups).await?;
        Ok(Lookup {
            amis: self.images(&query.ami).await?,
            subnets: self.subnets(&query.subnets).await?,
            security_groups: self.security_groups(&query.security_groups).await?,
            elbs: self.classic_elbs(&query.elbs).await?,
            target_groups,
            slow_start_secs,
            instance_profiles: self.instance_profiles(&query.instance_profiles).await?,
            roles: self.roles(&query.roles).await?,
            topics,
            asgs: self.project_config_asgs(&query.project, &query.config).await?,
            listeners: self.listeners(&query.listeners).await?,
            template_target_groups: self.template_target_groups(&query.template_target_groups).await?,
            templates: self.templates(&query.templates).await?,
            images_by_prefix: self.images_by_prefix(query).await?,
            alarms: self.alarm_states(&query.alarms).await?.into_keys().collect(),
            placement_groups: self.placement_groups(&query.placement_groups).await?,
            account_id,
            region: self.region.clone(),
        })
    }

    async fn images(&self, reference: &str) -> Result<Vec<Found>, CloudError> {
        // An undeploy's query names no AMI; the `$` forms are resolved elsewhere.
        if reference.is_empty() || reference.starts_with('$') {
            return Ok(Vec::new());
        }
        let request = self.ec2.describe_images();
        let request = if reference.starts_with("ami-") { request.image_ids(reference) } else { request.filters(name_filter(reference)) };
        match request.send().await {
            Ok(out) => Ok(out.images().iter().map(|i| found(i.image_id(), ec2_tags(i.tags()))).collect()),
            Err(e) => absent_if_missing(cloud_error("DescribeImages", e)),
        }
    }

    async fn subnets(&self, references: &[String]) -> Result<BTreeMap<String, Vec<Found>>, CloudError> {
        let mut by_ref = BTreeMap::new();
        for reference in references {
            let request = self.ec2.describe_subnets();
            let request =
                if reference.starts_with("subnet-") { request.subnet_ids(reference) } else { request.filters(name_filter(reference)) };
            let matches = match request.send().await {
                Ok(out) => out.subnets().iter().map(|s| found(s.subnet_id(), ec2_tags(s.tags()))).collect(),
                Err(e) => absent_if_missing(cloud_error("DescribeSubnets", e))?,
            };
            by_ref.insert(reference.clone(), matches);
        }
        Ok(by_ref)
    }

    async fn security_groups(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, Vec<Found>>, CloudError> {
        let mut by_name: BTreeMap<String, Vec<Found>> = names.iter().map(|n| (n.clone(), Vec::new())).collect();
        if names.is_empty() {
            return Ok(by_name);
        }
        let filter = aws_sdk_ec2::types::Filter::builder().name("tag:Name").set_values(Some(names.iter().cloned().collect())).build();
        let out = self.ec2.describe_security_groups().filters(filter).send().await.map_err(|e| cloud_error("DescribeSecurityGroups", e))?;
        for group in out.security_groups() {
            let tags = ec2_tags(group.tags());
            if let Some(matches) = tags.get("Name").and_then(|name| by_name.get_mut(name)) {
                matches.push(found(group.group_id(), tags));
            }
        }
        Ok(by_name)
    }

    async fn classic_elbs(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, Found>, CloudError> {
        let mut existing = Vec::new();
        for name in names {
            match self.elb.describe_load_balancers().load_balancer_names(name).send().await {
                Ok(_) => existing.push(name.clone()),
                Err(e) => absent_if_missing(cloud_error("DescribeLoadBalancers", e))?,
            }
        }
        let mut by_name = BTreeMap::new();
        for chunk in existing.chunks(TAGS_PER_CALL_MAX) {
            let out = self
                .elb
                .describe_tags()
                .set_load_balancer_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| cloud_error("DescribeTags", e))?;
            for description in out.tag_descriptions() {
                let tags = description.tags().iter().map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string())).collect();
                let name = description.load_balancer_name().unwrap_or_default().to_string();
                by_name.insert(name.clone(), Found { id: name, tags });
            }
        }
        for name in existing {
            by_name.entry(name.clone()).or_insert(Found { id: name, tags: Tags::new() });
        }
        Ok(by_name)
    }

    async fn target_groups(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, Found>, CloudError> {
        let described = self.described_target_groups(names).await?;
        Ok(described.into_iter().map(|(name, (group, tags))| (name, found(group.target_group_arn(), tags))).collect())
    }

    /// The slow-start duration of each target group found whose slow start is on (Odin's
    /// `findSlowStartDuration`), by name: the workflow waits the longest out before the old
    /// release is detached. A group gone since it was described has none.
    async fn slow_starts(&self, groups: &BTreeMap<String, Found>) -> Result<BTreeMap<String, u32>, CloudError> {
        let mut by_name = BTreeMap::new();
        for (name, group) in groups {
            let attributes: Vec<elb::TargetGroupAttribute> =
                match self.elbv2.describe_target_group_attributes().target_group_arn(&group.id).send().await {
                    Ok(out) => out.attributes().to_vec(),
                    Err(e) => absent_if_missing(cloud_error("DescribeTargetGroupAttributes", e))?,
                };
            let secs = attributes
                .iter()
                .find(|a| a.key() == Some("slow_start.duration_seconds"))
                .and_then(|a| a.value()?.parse::<u32>().ok())
                .filter(|secs| *secs > 0);
            if let Some(secs) = secs {
                by_name.insert(name.clone(), secs);
            }
        }
        Ok(by_name)
    }

    /// The templates traffic-shifted services clone: ARN, tags and the settings a clone copies.
    async fn template_target_groups(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, FoundTargetGroup>, CloudError> {
        let mut templates = BTreeMap::new();
        for (name, (group, tags)) in self.described_target_groups(names).await? {
            let arn = group.target_group_arn().unwrap_or_default().to_string();
            let shape = TargetGroupShape { attributes: self.target_group_attributes(&arn).await?, ..target_group_shape(&group) };
            templates.insert(name, FoundTargetGroup { arn, tags, shape });
        }
        Ok(templates)
    }

    /// A target group's attributes (deregistration delay, slow start, stickiness, algorithm, …).
    pub(super) async fn target_group_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>, CloudError> {
        let out = self
            .elbv2
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeTargetGroupAttributes", e))?;
        Ok(out.attributes().iter().filter_map(|a| Some((a.key()?.to_string(), a.value().unwrap_or_default().to_string()))).collect())
    }

    /// The target groups of these names that exist, with their tags.
    async fn described_target_groups(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, (elb::TargetGroup, Tags)>, CloudError> {
        let mut groups = BTreeMap::new();
        for name in names {
            if let Some(group) = self.target_group_named(name).await? {
                groups.insert(name.clone(), group);
            }
        }
        let arns: Vec<String> = groups.values().filter_map(|g| g.target_group_arn()).map(str::to_string).collect();
        let mut tags = self.elbv2_tags(&arns).await?;
        Ok(groups
            .into_iter()
            .map(|(name, group)| {
                let group_tags = group.target_group_arn().and_then(|arn| tags.remove(arn)).unwrap_or_default();
                (name, (group, group_tags))
            })
            .collect())
    }

    /// The target group named `name`, if there is one. (One name per call: a name that does
    /// not exist fails the whole call.)
    pub(super) async fn target_group_named(&self, name: &str) -> Result<Option<elb::TargetGroup>, CloudError> {
        match self.elbv2.describe_target_groups().names(name).send().await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(e) => absent_if_missing(cloud_error("DescribeTargetGroups", e)),
        }
    }

    /// The tags of ELBv2 resources, by ARN.
    pub(super) async fn elbv2_tags(&self, arns: &[String]) -> Result<BTreeMap<String, Tags>, CloudError> {
        let mut by_arn = BTreeMap::new();
        for chunk in arns.chunks(TAGS_PER_CALL_MAX) {
            let out = self
                .elbv2
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| cloud_error("DescribeTags", e))?;
            for description in out.tag_descriptions() {
                let Some(arn) = description.resource_arn() else { continue };
                let tags = description
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                    .collect();
                by_arn.insert(arn.to_string(), tags);
            }
        }
        Ok(by_arn)
    }

    /// Reads the tags of the rules that may be exemplars (priorities above the offset), which a
    /// first deploy copies; production rules' tags are not needed.
    async fn with_exemplar_tags(&self, mut rules: Vec<FoundRule>) -> Result<Vec<FoundRule>, CloudError> {
        let exemplar = |r: &FoundRule| r.priority.is_some_and(|p| p > EXEMPLAR_PRIORITY_OFFSET);
        let arns: Vec<String> = rules.iter().filter(|r| exemplar(r)).map(|r| r.arn.clone()).collect();
        let mut tags = self.elbv2_tags(&arns).await?;
        for rule in rules.iter_mut().filter(|r| exemplar(r)) {
            rule.tags = tags.remove(&rule.arn).unwrap_or_default();
        }
        Ok(rules)
    }

    /// Every rule of each listener that exists; a listener that doesn't is left out.
    async fn listeners(&self, arns: &BTreeSet<String>) -> Result<BTreeMap<String, Vec<FoundRule>>, CloudError> {
        let mut by_arn = BTreeMap::new();
        for arn in arns {
            match self.listener_rules(arn).await {
                Ok(rules) => {
                    by_arn.insert(arn.clone(), self.with_exemplar_tags(rules.iter().map(found_rule).collect()).await?);
                }
                Err(error) => absent_if_missing::<()>(error)?,
            }
        }
        Ok(by_arn)
    }

    async fn instance_profiles(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, FoundProfile>, CloudError> {
        let mut by_name = BTreeMap::new();
        for name in names {
            match self.iam.get_instance_profile().instance_profile_name(name).send().await {
                Ok(out) => {
                    if let Some(profile) = out.instance_profile() {
                        by_name.insert(name.clone(), FoundProfile { arn: profile.arn().to_string(), path: profile.path().to_string() });
                    }
                }
                Err(e) => absent_if_missing(cloud_error("GetInstanceProfile", e))?,
            }
        }
        Ok(by_name)
    }

    async fn roles(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, String>, CloudError> {
        let mut by_name = BTreeMap::new();
        for name in names {
            match self.iam.get_role().role_name(name).send().await {
                Ok(out) => {
                    if let Some(role) = out.role() {
                        by_name.insert(name.clone(), role.arn().to_string());
                    }
                }
                Err(e) => absent_if_missing(cloud_error("GetRole", e))?,
            }
        }
        Ok(by_name)
    }

    /// The topics (by name, in this account and region) that exist, with their ARNs: a hook
    /// naming a missing topic is refused before anything launches, not when its ASG is created.
    async fn topics(&self, partition: &str, account_id: &str, names: &BTreeSet<String>) -> Result<BTreeMap<String, String>, CloudError> {
        let mut by_name = BTreeMap::new();
        for name in names {
            let arn = format!("arn:{partition}:sns:{}:{account_id}:{name}", self.region);
            match self.sns.get_topic_attributes().topic_arn(&arn).send().await {
                Ok(_) => {
                    by_name.insert(name.clone(), arn);
                }
                Err(e) => absent_if_missing(cloud_error("GetTopicAttributes", e))?,
            }
        }
        Ok(by_name)
    }

    /// The placement groups asked for that exist (`None` when none were asked for: a history
    /// from before groups were looked up judges none).
    async fn placement_groups(&self, names: &BTreeSet<String>) -> Result<Option<BTreeMap<String, FoundPlacementGroup>>, CloudError> {
        if names.is_empty() {
            return Ok(None);
        }
        // A filter, not GroupNames: AWS answers a missing name in GroupNames with an error.
        let filter = aws_sdk_ec2::types::Filter::builder().name("group-name").set_values(Some(names.iter().cloned().collect())).build();
        let out =
            self.ec2.describe_placement_groups().filters(filter).send().await.map_err(|e| cloud_error("DescribePlacementGroups", e))?;
        let found = out.placement_groups().iter().filter_map(|group| {
            let name = group.group_name().filter(|n| names.contains(*n))?;
            let found = FoundPlacementGroup {
                strategy: group.strategy().map(|s| s.as_str().to_string()).unwrap_or_default(),
                partition_count: group.partition_count().and_then(|c| u32::try_from(c).ok()),
                state: group.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            };
            Some((name.to_string(), found))
        });
        Ok(Some(found.collect()))
    }

    /// Every ASG tagged with this project and config, whichever release made it.
    pub(super) async fn project_config_asgs(&self, project: &str, config: &str) -> Result<Vec<ExistingAsg>, CloudError> {
        let tag_filter =
            |key: &str, value: &str| aws_sdk_autoscaling::types::Filter::builder().name(format!("tag:{key}")).values(value).build();
        let mut asgs = Vec::new();
        let mut next_token = None;
        for _ in 0..ASG_PAGES_MAX {
            let out = self
                .autoscaling
                .describe_auto_scaling_groups()
                .filters(tag_filter(TAG_PROJECT, project))
                .filters(tag_filter(TAG_CONFIG, config))
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
            // An ASG being deleted is on its way out, not live: a quick redeploy must not trip on it.
            let live = out.auto_scaling_groups().iter().filter(|g| g.status() != Some(DELETE_IN_PROGRESS));
            asgs.extend(live.map(existing_asg));
            next_token = out.next_token().map(str::to_string);
            if next_token.is_none() {
                return Ok(asgs);
            }
        }
        Err(CloudError::permanent("TooManyPages", format!("more than {ASG_PAGES_MAX} pages of ASGs tagged {project} {config}")))
    }
}

pub(super) fn existing_asg(group: &aws_sdk_autoscaling::types::AutoScalingGroup) -> ExistingAsg {
    let tags = group.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
    ExistingAsg {
        name: group.auto_scaling_group_name().unwrap_or_default().to_string(),
        desired_capacity: group.desired_capacity().unwrap_or(0).max(0) as u32,
        tags,
        launch_template: group.launch_template().and_then(|lt| lt.launch_template_name()).map(str::to_string),
        elbs: group.load_balancer_names().to_vec(),
        target_groups: group.target_group_arns().to_vec(),
    }
}

/// What a release's own group copies from its template.
fn target_group_shape(group: &elb::TargetGroup) -> TargetGroupShape {
    let count = |n: Option<i32>| n.map(|n| n.max(0) as u32);
    TargetGroupShape {
        protocol: group.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        port: count(group.port()).unwrap_or(0),
        vpc_id: group.vpc_id().unwrap_or_default().to_string(),
        health_check_protocol: group.health_check_protocol().map(|p| p.as_str().to_string()),
        health_check_path: group.health_check_path().map(str::to_string),
        health_check_port: group.health_check_port().map(str::to_string),
        healthy_threshold: count(group.healthy_threshold_count()),
        unhealthy_threshold: count(group.unhealthy_threshold_count()),
        health_check_interval_secs: count(group.health_check_interval_seconds()),
        matcher: group.matcher().and_then(|m| m.http_code()).map(str::to_string),
        grpc_matcher: group.matcher().and_then(|m| m.grpc_code()).map(str::to_string),
        health_check_timeout_secs: count(group.health_check_timeout_seconds()),
        health_check_enabled: group.health_check_enabled(),
        protocol_version: group.protocol_version().map(str::to_string),
        ip_address_type: group.ip_address_type().map(|t| t.as_str().to_string()),
        target_type: group.target_type().map(|t| t.as_str().to_string()),
        attributes: BTreeMap::new(),
    }
}

fn name_filter(name: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build()
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn found(id: Option<&str>, tags: Tags) -> Found {
    Found { id: id.unwrap_or_default().to_string(), tags }
}

/// A lookup of something that doesn't exist finds nothing; other errors stay errors.
fn absent_if_missing<T: Default>(error: CloudError) -> Result<T, CloudError> {
    if is_missing(&error) || error.code.as_deref().is_some_and(|c| c.ends_with(".Malformed")) {
        Ok(T::default())
    } else {
        Err(error)
    }
}
