//! Creating, resizing and deleting a service: launch template, ASG, scaling policies and alarms.
//! A service cloned from a template ASG is created by `template` instead, with the ASG checks,
//! tags and hooks shared from here.
//!
//! Each create looks first: a crashed worker's resource under the same name with our release id
//! is ours, and is reused. That covers real AWS (which answers AlreadyExists) and moto (which
//! would silently replace the ASG and orphan its instances).

use super::errors::{cloud_error, gone_is_done, is_missing};
use super::lookup::existing_asg;
use super::AwsCloud;
use crate::workflow::names::{is_policy_alarm, policy_name, TAG_CONFIG, TAG_MANAGED_BY, TAG_PROJECT, TAG_RELEASE};
use crate::workflow::release::{Policy, PolicyKind};
use crate::workflow::resources::{ResolvedHook, Tags};
use crate::workflow::{CloudError, LaunchSpec};
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;

/// EC2's answer to creating a placement group that exists.
const PLACEMENT_GROUP_DUPLICATE: &str = "InvalidPlacementGroup.Duplicate";

/// ASG tags are propagated to instances; the launch template tags volumes the same way.
pub(super) const PROPAGATE_AT_LAUNCH: bool = true;

impl AwsCloud {
    pub(super) async fn launch_service(&self, spec: &LaunchSpec, user_data: &str) -> Result<(), CloudError> {
        if let Some(template) = &spec.template {
            return self.clone_template(spec, template).await;
        }
        self.ensure_placement_group(spec).await?;
        self.ensure_launch_template(spec, user_data).await?;
        self.ensure_asg(spec).await?;
        for policy in &spec.policies {
            self.ensure_policy(&spec.asg_name, policy).await?;
        }
        Ok(())
    }

    /// Creates the placement group the launch was resolved to create. The group belongs to the
    /// project-config (its releases share it), so it carries skald's scope tags but no release's;
    /// AWS answers a second create with `InvalidPlacementGroup.Duplicate`, which is done.
    async fn ensure_placement_group(&self, spec: &LaunchSpec) -> Result<(), CloudError> {
        let Some(placement) = spec.placement.as_ref().filter(|p| p.create) else { return Ok(()) };
        let scope = [TAG_MANAGED_BY, TAG_PROJECT, TAG_CONFIG];
        let tags: Tags = spec.tags.iter().filter(|(k, _)| scope.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        let created = self
            .ec2
            .create_placement_group()
            .group_name(&placement.group_name)
            .strategy(ec2::PlacementStrategy::from(placement.strategy.as_str()))
            .set_partition_count(placement.partition_count.map(|c| c as i32))
            .tag_specifications(
                ec2::TagSpecification::builder().resource_type(ec2::ResourceType::PlacementGroup).set_tags(Some(ec2_tags(&tags))).build(),
            )
            .send()
            .await;
        match created.map(|_| ()).map_err(|e| cloud_error("CreatePlacementGroup", e)) {
            Err(error) if error.code.as_deref() == Some(PLACEMENT_GROUP_DUPLICATE) => Ok(()),
            other => other,
        }
    }

    async fn ensure_launch_template(&self, spec: &LaunchSpec, user_data: &str) -> Result<(), CloudError> {
        if let Some(release) = self.launch_template_release(&spec.launch_template_name).await? {
            return check_ours("launch template", &spec.launch_template_name, Some(release), spec);
        }
        let created = self
            .ec2
            .create_launch_template()
            .launch_template_name(&spec.launch_template_name)
            // Repeating the same request with the same token creates nothing new.
            .client_token(client_token(&spec.launch_template_name))
            .launch_template_data(launch_template_data(spec, user_data))
            .tag_specifications(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::LaunchTemplate)
                    .set_tags(Some(ec2_tags(&spec.tags)))
                    .build(),
            )
            .send()
            .await;
        match created.map(|_| ()).map_err(|e| cloud_error("CreateLaunchTemplate", e)) {
            Err(error) if already_exists(&error) => {
                let release = self.launch_template_release(&spec.launch_template_name).await?;
                check_ours("launch template", &spec.launch_template_name, release, spec)
            }
            other => other,
        }
    }

    /// The id of the launch template named `name`, if there is one. (Deleting by id: some
    /// emulators refuse a delete by name.)
    async fn launch_template_id(&self, name: Option<&str>) -> Result<Option<String>, CloudError> {
        let Some(name) = name else { return Ok(None) };
        Ok(self.launch_template_named(name).await?.and_then(|lt| lt.launch_template_id().map(str::to_string)))
    }

    /// The release id tag of the launch template named `name`: `None` if there is no such
    /// template, `Some("")` if it has no release tag.
    async fn launch_template_release(&self, name: &str) -> Result<Option<String>, CloudError> {
        let template = self.launch_template_named(name).await?;
        Ok(template
            .map(|lt| lt.tags().iter().find(|t| t.key() == Some(TAG_RELEASE)).and_then(|t| t.value()).unwrap_or_default().to_string()))
    }

    /// The launch template named `name`, if there is one.
    async fn launch_template_named(&self, name: &str) -> Result<Option<ec2::LaunchTemplate>, CloudError> {
        match self.ec2.describe_launch_templates().launch_template_names(name).send().await {
            Ok(out) => Ok(out.launch_templates().first().cloned()),
            Err(e) => {
                let error = cloud_error("DescribeLaunchTemplates", e);
                if is_missing(&error) {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Creates the ASG with its hooks (so a launching hook holds its first instances), then puts
    /// each hook again: PutLifecycleHook is idempotent, it finishes what a worker that crashed
    /// after the create left, and emulators that ignore the create's hook list get them too.
    async fn ensure_asg(&self, spec: &LaunchSpec) -> Result<(), CloudError> {
        let hooks: Vec<asg::LifecycleHookSpecification> = spec.lifecycle_hooks.iter().map(hook_specification).collect();
        if !self.asg_is_ours(spec).await? {
            self.create_asg(spec, hooks.clone()).await?;
        }
        self.put_hooks(&spec.asg_name, &hooks).await
    }

    async fn create_asg(&self, spec: &LaunchSpec, hooks: Vec<asg::LifecycleHookSpecification>) -> Result<(), CloudError> {
        let tags = spec.tags.iter().map(|(k, v)| asg_tag(&spec.asg_name, k, v, PROPAGATE_AT_LAUNCH)).collect();
        let launch_template =
            asg::LaunchTemplateSpecification::builder().launch_template_name(&spec.launch_template_name).version("$Latest").build();
        let created = self
            .create_asg_request(spec, launch_template)
            .health_check_type(&spec.health_check_type)
            .default_cooldown(spec.default_cooldown_secs as i32)
            .set_placement_group(spec.placement.as_ref().map(|p| p.group_name.clone()))
            .set_tags(Some(tags))
            .set_lifecycle_hook_specification_list(non_empty(hooks))
            .send()
            .await;
        self.asg_created(spec, created.map(|_| ()).map_err(|e| cloud_error("CreateAutoScalingGroup", e))).await
    }

    /// What every ASG skald creates takes from its spec: name, launch template, sizes, subnets,
    /// load balancers and grace period. The caller adds the rest (a clone copies its template's).
    pub(super) fn create_asg_request(
        &self,
        spec: &LaunchSpec,
        launch_template: asg::LaunchTemplateSpecification,
    ) -> aws_sdk_autoscaling::operation::create_auto_scaling_group::builders::CreateAutoScalingGroupFluentBuilder {
        self.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&spec.asg_name)
            .launch_template(launch_template)
            .min_size(spec.min_size as i32)
            .max_size(spec.max_size as i32)
            .desired_capacity(spec.desired_capacity as i32)
            .vpc_zone_identifier(spec.subnet_ids.join(","))
            .set_load_balancer_names(non_empty(spec.elbs.clone()))
            .set_target_group_arns(non_empty(spec.target_group_arns.clone()))
            .health_check_grace_period(spec.health_check_grace_period_secs as i32)
    }

    /// Whether the ASG `spec` names exists already as this release's (a crashed worker made
    /// it): `false` when there is no such ASG, an error when there is one that is not ours.
    pub(super) async fn asg_is_ours(&self, spec: &LaunchSpec) -> Result<bool, CloudError> {
        match self.asg_release(&spec.asg_name).await? {
            Some(release) => check_ours("ASG", &spec.asg_name, Some(release), spec).map(|()| true),
            None => Ok(false),
        }
    }

    /// The outcome of creating the ASG `spec` names: a refusal because the name is taken is
    /// success when the group there is ours (AWS answers AlreadyExists to a repeated create).
    pub(super) async fn asg_created(&self, spec: &LaunchSpec, created: Result<(), CloudError>) -> Result<(), CloudError> {
        match created {
            Err(error) if already_exists(&error) => {
                let release = self.asg_release(&spec.asg_name).await?;
                check_ours("ASG", &spec.asg_name, release, spec)
            }
            other => other,
        }
    }

    /// The release id tag of the ASG named `name` (`Some("")` if untagged), `None` if absent.
    async fn asg_release(&self, name: &str) -> Result<Option<String>, CloudError> {
        let group = self.describe_group(name).await?;
        Ok(group.map(|g| existing_asg(&g).tags.get(TAG_RELEASE).cloned().unwrap_or_default()))
    }

    /// The ASG named `name` as Auto Scaling describes it, if it exists.
    pub(super) async fn describe_group(&self, name: &str) -> Result<Option<aws_sdk_autoscaling::types::AutoScalingGroup>, CloudError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
        Ok(out.auto_scaling_groups().iter().find(|g| g.auto_scaling_group_name() == Some(name)).cloned())
    }

    /// A simple scaling policy and the CPU alarm that triggers it, both named by
    /// `names::policy_name` (`<asg>-<type>[-<name>]`, Odin's names). Both calls are puts: repeating
    /// them changes nothing.
    async fn ensure_policy(&self, asg_name: &str, policy: &Policy) -> Result<(), CloudError> {
        let out = self
            .autoscaling
            .put_scaling_policy()
            .auto_scaling_group_name(asg_name)
            .policy_name(policy_name(asg_name, policy))
            .policy_type("SimpleScaling")
            .adjustment_type("ChangeInCapacity")
            .scaling_adjustment(policy.scaling_adjustment())
            .cooldown(policy.cooldown_secs() as i32)
            .send()
            .await
            .map_err(|e| cloud_error("PutScalingPolicy", e))?;
        let comparison = match policy.kind {
            PolicyKind::CpuScaleUp => aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
            PolicyKind::CpuScaleDown => aws_sdk_cloudwatch::types::ComparisonOperator::LessThanOrEqualToThreshold,
        };
        let dimension = aws_sdk_cloudwatch::types::Dimension::builder().name("AutoScalingGroupName").value(asg_name).build();
        self.cloudwatch
            .put_metric_alarm()
            .alarm_name(policy_name(asg_name, policy))
            .namespace("AWS/EC2")
            .metric_name("CPUUtilization")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
            .dimensions(dimension)
            .period(policy.period_secs() as i32)
            .evaluation_periods(policy.evaluation_periods() as i32)
            .threshold(policy.threshold())
            .comparison_operator(comparison)
            .set_alarm_actions(out.policy_arn().map(|arn| vec![arn.to_string()]))
            .send()
            .await
            .map_err(|e| cloud_error("PutMetricAlarm", e))?;
        Ok(())
    }

    pub(super) async fn resize(&self, asg_name: &str, min_size: u32, desired: u32) -> Result<(), CloudError> {
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(asg_name)
            .min_size(min_size as i32)
            .desired_capacity(desired as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("UpdateAutoScalingGroup", e))
    }

    /// Deletes a release's service: its own target group first (a traffic-shifted release's),
    /// then the ASG and its launch template. The group goes first because ELB refuses to delete
    /// a group a listener rule still forwards to: if a late write sent traffic back to it, the
    /// ASG behind it must keep serving, and the whole delete fails to be retried.
    pub(super) async fn delete_release(
        &self,
        asg_name: &str,
        launch_template: Option<&str>,
        target_group: Option<&str>,
    ) -> Result<(), CloudError> {
        if let Some(name) = target_group {
            self.delete_own_target_group(name).await?;
        }
        self.delete_service(asg_name, launch_template).await
    }

    /// Deletes the ASG (terminating its instances), its alarms and its launch template. Each part
    /// already gone counts as deleted, so a retry after a partial delete finishes the job.
    pub(super) async fn delete_service(&self, asg_name: &str, launch_template: Option<&str>) -> Result<(), CloudError> {
        // The alarms are found through the ASG's policies, so an ASG without policies never
        // calls CloudWatch (whose current protocol, RPCv2 CBOR, local emulators lack). Only
        // skald's own alarms are deleted: a clone's target-tracking policies have alarms that
        // Auto Scaling made and deletes with the group (and skald may not touch).
        let policies = self.autoscaling.describe_policies().auto_scaling_group_name(asg_name).send().await;
        let alarms: Vec<String> = match policies {
            Ok(out) => {
                let names = out.scaling_policies().iter().flat_map(|p| p.alarms()).filter_map(|a| a.alarm_name());
                names.filter(|name| is_policy_alarm(asg_name, name)).map(str::to_string).collect()
            }
            Err(e) => gone_is_done(Err(cloud_error("DescribePolicies", e))).map(|()| Vec::new())?,
        };
        if !alarms.is_empty() {
            let deleted = self.cloudwatch.delete_alarms().set_alarm_names(Some(alarms)).send().await;
            gone_is_done(deleted.map(|_| ()).map_err(|e| cloud_error("DeleteAlarms", e)))?;
        }
        let deleted = self.autoscaling.delete_auto_scaling_group().auto_scaling_group_name(asg_name).force_delete(true).send().await;
        gone_is_done(deleted.map(|_| ()).map_err(|e| cloud_error("DeleteAutoScalingGroup", e)))?;
        if let Some(id) = self.launch_template_id(launch_template).await? {
            let deleted = self.ec2.delete_launch_template().launch_template_id(id).send().await;
            gone_is_done(deleted.map(|_| ()).map_err(|e| cloud_error("DeleteLaunchTemplate", e)))?;
        }
        Ok(())
    }
}

/// What exists under our name is ours only if it carries our release id.
fn check_ours(kind: &str, name: &str, release: Option<String>, spec: &LaunchSpec) -> Result<(), CloudError> {
    let ours = spec.tags.get(TAG_RELEASE);
    if release.as_ref() == ours {
        Ok(())
    } else {
        Err(CloudError::permanent(
            "AlreadyExists",
            format!("a {kind} named {name} exists and is not this release's (ReleaseId {release:?})"),
        ))
    }
}

/// A create refused because the name is taken (`AlreadyExists`, or EC2's
/// `InvalidLaunchTemplateName.AlreadyExistsException`): a crashed worker may have made it.
fn already_exists(error: &CloudError) -> bool {
    error.code.as_deref().is_some_and(|c| c.contains("AlreadyExists"))
}

/// A client token unique to the resource name (≤ 64 ASCII characters).
pub(super) fn client_token(name: &str) -> String {
    crate::codec::sha256_hex(name.as_bytes())[..64].to_string()
}

/// An ASG tag on create (Auto Scaling wants the group's name and type on each).
pub(super) fn asg_tag(asg_name: &str, key: &str, value: &str, propagate_at_launch: bool) -> asg::Tag {
    asg::Tag::builder()
        .key(key)
        .value(value)
        .propagate_at_launch(propagate_at_launch)
        .resource_id(asg_name)
        .resource_type("auto-scaling-group")
        .build()
}

/// One of the release's lifecycle hooks, as CreateAutoScalingGroup takes it.
pub(super) fn hook_specification(hook: &ResolvedHook) -> asg::LifecycleHookSpecification {
    asg::LifecycleHookSpecification::builder()
        .lifecycle_hook_name(&hook.name)
        .lifecycle_transition(&hook.transition)
        .set_role_arn(hook.role_arn.clone())
        .set_notification_target_arn(hook.notification_target_arn.clone())
        .set_heartbeat_timeout(hook.heartbeat_timeout_secs.map(|s| s as i32))
        .build()
}

/// A list the API takes only when it has something in it.
pub(super) fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    Some(items).filter(|items| !items.is_empty())
}

fn ec2_tags(tags: &Tags) -> Vec<ec2::Tag> {
    tags.iter().map(|(k, v)| ec2::Tag::builder().key(k).value(v).build()).collect()
}

fn launch_template_data(spec: &LaunchSpec, user_data: &str) -> ec2::RequestLaunchTemplateData {
    let ebs = ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
        .set_volume_size(spec.ebs.size_gib.map(|gib| gib as i32))
        .volume_type(ec2::VolumeType::from(spec.ebs.volume_type.as_str()))
        .delete_on_termination(true)
        .build();
    let volume_tags = ec2::LaunchTemplateTagSpecificationRequest::builder()
        .resource_type(ec2::ResourceType::Volume)
        .set_tags(Some(ec2_tags(&spec.tags)))
        .build();
    let mut data = ec2::RequestLaunchTemplateData::builder()
        .image_id(&spec.ami_id)
        .instance_type(ec2::InstanceType::from(spec.instance_type.as_str()))
        .user_data(aws_smithy_types::base64::encode(user_data))
        .tag_specifications(volume_tags);
    // Without a size the AMI's own root volume is used as it is (as Odin does): a mapping
    // without size or snapshot is refused by some APIs.
    if spec.ebs.size_gib.is_some() {
        data = data.block_device_mappings(
            ec2::LaunchTemplateBlockDeviceMappingRequest::builder().device_name(&spec.ebs.device_name).ebs(ebs).build(),
        );
    }
    if let Some(arn) = &spec.instance_profile_arn {
        data = data.iam_instance_profile(ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder().arn(arn).build());
    }
    // A public-IP choice needs an explicit network interface, which then carries the groups.
    data = match spec.associate_public_ip_address {
        Some(public) => data.network_interfaces(
            ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .associate_public_ip_address(public)
                .delete_on_termination(true)
                .set_groups(Some(spec.security_group_ids.clone()))
                .build(),
        ),
        None => data.set_security_group_ids(Some(spec.security_group_ids.clone())),
    };
    if spec.tenancy.is_some() || spec.placement.is_some() {
        let placement = ec2::LaunchTemplatePlacementRequest::builder()
            .set_group_name(spec.placement.as_ref().map(|p| p.group_name.clone()))
            .set_tenancy(spec.tenancy.as_deref().map(ec2::Tenancy::from))
            .build();
        data = data.placement(placement);
    }
    if let Some(price) = &spec.spot_price {
        let spot = ec2::LaunchTemplateSpotMarketOptionsRequest::builder().max_price(price).build();
        data = data.instance_market_options(
            ec2::LaunchTemplateInstanceMarketOptionsRequest::builder().market_type(ec2::MarketType::Spot).spot_options(spot).build(),
        );
    }
    data.build()
}
