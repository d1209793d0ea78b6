//! Looking up what a release names: every match, with its tags, for the workflow to judge.

use super::errors::{cloud_error, is_missing};
use super::AwsCloud;
use crate::workflow::names::{TAG_CONFIG, TAG_PROJECT};
use crate::workflow::resources::{ExistingAsg, Found, FoundProfile, Lookup, Query, Tags};
use crate::workflow::CloudError;
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
        let topics = query.topics.iter().map(|name| (name.clone(), format!("arn:aws:sns:{}:{account_id}:{name}", self.region))).collect();
        Ok(Lookup {
            amis: self.images(&query.ami).await?,
            subnets: self.subnets(&query.subnets).await?,
            security_groups: self.security_groups(&query.security_groups).await?,
            elbs: self.classic_elbs(&query.elbs).await?,
            target_groups: self.target_groups(&query.target_groups).await?,
            instance_profiles: self.instance_profiles(&query.instance_profiles).await?,
            roles: self.roles(&query.roles).await?,
            topics,
            asgs: self.project_config_asgs(&query.project, &query.config).await?,
            account_id,
            region: self.region.clone(),
        })
    }

    async fn images(&self, reference: &str) -> Result<Vec<Found>, CloudError> {
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
        let mut arns = BTreeMap::new();
        for name in names {
            match self.elbv2.describe_target_groups().names(name).send().await {
                Ok(out) => {
                    if let Some(arn) = out.target_groups().first().and_then(|tg| tg.target_group_arn()) {
                        arns.insert(arn.to_string(), name.clone());
                    }
                }
                Err(e) => absent_if_missing(cloud_error("DescribeTargetGroups", e))?,
            }
        }
        let mut by_name: BTreeMap<String, Found> =
            arns.iter().map(|(arn, name)| (name.clone(), Found { id: arn.clone(), tags: Tags::new() })).collect();
        let arn_list: Vec<String> = arns.keys().cloned().collect();
        for chunk in arn_list.chunks(TAGS_PER_CALL_MAX) {
            let out = self
                .elbv2
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| cloud_error("DescribeTags", e))?;
            for description in out.tag_descriptions() {
                let Some(name) = description.resource_arn().and_then(|arn| arns.get(arn)) else { continue };
                let tags = description
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                    .collect();
                by_name.get_mut(name).expect("every ARN has its entry").tags = tags;
            }
        }
        Ok(by_name)
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
