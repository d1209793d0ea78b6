//! Template ASGs (deployomat's way of describing a service): looking them up, finding an AMI by
//! name prefix among allowed owners, and cloning a template into a release's ASG.
//!
//! A clone is made in steps, each safe to repeat after a crash (moto, unlike AWS, ignores client
//! tokens and silently replaces an ASG created twice, so nothing relies on either):
//! 1. a new version of the template's launch template with the release's image, found again by
//!    its description (the clone's name); a rollback uses the version it names as it is;
//! 2. the clone ASG on that version, looked for first (ours by release id = done);
//! 3. lifecycle hooks, scaling policies, metrics and warm pool, all puts of the same values.

use super::errors::cloud_error;
use super::launch::{asg_tag, client_token, hook_specification, non_empty, PROPAGATE_AT_LAUNCH};
use super::AwsCloud;
use crate::workflow::names::{TAG_CONFIG, TAG_MANAGED_BY, TAG_PROJECT, TAG_RELEASE, TAG_SERVICE};
use crate::workflow::release::{AMI_NAME_PREFIX, SIZE_TAG_MAX, SIZE_TAG_MIN};
use crate::workflow::resources::{FoundImage, FoundLaunchTemplate, FoundTemplate, Query, ResolvedTemplate};
use crate::workflow::{CloudError, LaunchSpec};
use aws_sdk_autoscaling::operation::put_scaling_policy::builders::PutScalingPolicyFluentBuilder;
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use std::collections::{BTreeMap, BTreeSet};

/// A bound on the pages of images one name prefix may match.
const IMAGE_PAGES_MAX: usize = 100;
/// Launch template versions are read this many at a time (AWS's most), for at most this many
/// pages (AWS keeps at most 10,000 versions).
const VERSIONS_PER_PAGE: i32 = 200;
const VERSION_PAGES_MAX: usize = 60;
/// A bound on the pages of a template's scaling policies.
const POLICY_PAGES_MAX: usize = 20;
/// The longest scaling policy name Auto Scaling takes.
const POLICY_NAME_LEN_MAX: usize = 255;
/// The template's tags that say what the template is rather than what its clones are: its
/// scope, release and manager (skald's tags for the clone replace them), its name, and the
/// clones' sizes (`<any prefix>:min_size`, see [`is_size_tag`]).
const TEMPLATE_ONLY_TAGS: &[&str] = &[TAG_PROJECT, TAG_CONFIG, TAG_SERVICE, TAG_RELEASE, TAG_MANAGED_BY, "Name"];

/// A clone's size tag under whatever prefix the deployer uses (`skald:min_size`, `teak:max_size`).
fn is_size_tag(key: &str) -> bool {
    key.rsplit_once(':').is_some_and(|(_, size)| size == SIZE_TAG_MIN || size == SIZE_TAG_MAX)
}

impl AwsCloud {
    /// Every template ASG asked for that exists, with its launch template's version numbers.
    pub(super) async fn templates(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, FoundTemplate>, CloudError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.iter().cloned().collect()))
            .send()
            .await
            .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
        let mut found = BTreeMap::new();
        for group in out.auto_scaling_groups() {
            let tags =
                group.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
            let launch_template = match group.launch_template().and_then(|lt| lt.launch_template_id()) {
                Some(id) => self.launch_template_versions(id).await?,
                None => None,
            };
            let subnets = group.vpc_zone_identifier().unwrap_or_default();
            let template = FoundTemplate {
                tags,
                launch_template,
                subnet_ids: subnets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
                elbs: group.load_balancer_names().to_vec(),
                target_group_arns: group.target_group_arns().to_vec(),
            };
            found.insert(group.auto_scaling_group_name().unwrap_or_default().to_string(), template);
        }
        Ok(found)
    }

    /// A launch template's latest and default version numbers; `None` when it is gone.
    async fn launch_template_versions(&self, id: &str) -> Result<Option<FoundLaunchTemplate>, CloudError> {
        let out = match self.ec2.describe_launch_templates().launch_template_ids(id).send().await {
            Ok(out) => out,
            Err(e) => {
                let error = cloud_error("DescribeLaunchTemplates", e);
                return if super::is_missing(&error) { Ok(None) } else { Err(error) };
            }
        };
        let number = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
        Ok(out.launch_templates().first().map(|lt| FoundLaunchTemplate {
            id: lt.launch_template_id().unwrap_or(id).to_string(),
            name: lt.launch_template_name().unwrap_or_default().to_string(),
            latest_version: number(lt.latest_version_number()),
            default_version: number(lt.default_version_number()),
        }))
    }

    /// For a `$name-prefix:` AMI: the available images whose name starts so, of the owners the
    /// release allows. The workflow picks the newest.
    pub(super) async fn images_by_prefix(&self, query: &Query) -> Result<Vec<FoundImage>, CloudError> {
        let Some(prefix) = query.ami.strip_prefix(AMI_NAME_PREFIX) else { return Ok(Vec::new()) };
        if query.ami_owners.is_empty() {
            return Ok(Vec::new());
        }
        let filter = |name: &str, value: String| aws_sdk_ec2::types::Filter::builder().name(name).values(value).build();
        let mut images = Vec::new();
        let mut next_token = None;
        for _ in 0..IMAGE_PAGES_MAX {
            let out = self
                .ec2
                .describe_images()
                .set_owners(Some(query.ami_owners.clone()))
                .filters(filter("name", format!("{prefix}*")))
                .filters(filter("state", "available".to_string()))
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeImages", e))?;
            images.extend(out.images().iter().map(|i| FoundImage {
                id: i.image_id().unwrap_or_default().to_string(),
                name: i.name().unwrap_or_default().to_string(),
                owner: i.owner_id().unwrap_or_default().to_string(),
                created: i.creation_date().unwrap_or_default().to_string(),
            }));
            next_token = out.next_token().map(str::to_string);
            if next_token.is_none() {
                return Ok(images);
            }
        }
        Err(CloudError::permanent("TooManyPages", format!("more than {IMAGE_PAGES_MAX} pages of images named {prefix}…")))
    }
}

impl AwsCloud {
    /// Creates the clone of `template` that `spec` names (see the module's steps). The ASG
    /// takes from `spec` its name, sizes, grace period, subnets (the template's, resolved),
    /// load balancers and skald's tags; everything about the instances comes from the launch
    /// template, and the rest from the template ASG.
    pub(super) async fn clone_template(&self, spec: &LaunchSpec, template: &ResolvedTemplate) -> Result<(), CloudError> {
        let group = self.template_group(&template.asg).await?;
        let hooks = self.clone_hooks(spec, &template.asg).await?;
        if !self.asg_is_ours(spec).await? {
            let version = self.clone_version(spec, template).await?;
            self.create_clone(spec, template, version, &group, &hooks).await?;
        }
        self.put_hooks(&spec.asg_name, &hooks).await?;
        self.copy_policies(&template.asg, &spec.asg_name).await?;
        self.copy_metrics(&group, &spec.asg_name).await?;
        self.copy_warm_pool(&group, &spec.asg_name).await
    }

    /// The template ASG as Auto Scaling describes it; an error if it is gone since the lookup.
    async fn template_group(&self, name: &str) -> Result<asg::AutoScalingGroup, CloudError> {
        let group = self.describe_group(name).await?;
        group.ok_or_else(|| CloudError::permanent("TemplateNotFound", format!("the template ASG {name} is gone")))
    }

    /// The launch template version the clone runs: for a rollback the one it names, else a new
    /// version with the release's image, made once. The new version's description is the
    /// clone's name, by which a repeated launch finds it among the versions after the source.
    async fn clone_version(&self, spec: &LaunchSpec, template: &ResolvedTemplate) -> Result<u64, CloudError> {
        let Some(image_id) = &template.image_id else { return Ok(template.source_version) };
        let id = &template.launch_template_id;
        if let Some(version) = self.version_described(id, template.source_version, &spec.asg_name).await? {
            return Ok(version);
        }
        let source = self.launch_template_data(id, template.source_version).await?;
        let out = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(id)
            // AWS copies what the data leaves out from here; moto ignores it (hence the whole data).
            .source_version(template.source_version.to_string())
            .version_description(&spec.asg_name)
            .client_token(client_token(&spec.asg_name))
            .launch_template_data(version_data(&source, image_id))
            .send()
            .await
            .map_err(|e| cloud_error("CreateLaunchTemplateVersion", e))?;
        out.launch_template_version()
            .and_then(|v| version_number(v.version_number()))
            .ok_or_else(|| CloudError::permanent("NoVersionNumber", format!("CreateLaunchTemplateVersion on {id} returned no version")))
    }

    /// The version of launch template `id` after `after` whose description is `description`.
    /// Versions are read by ranges from MinVersion: moto returns at most 15 without a NextToken,
    /// so each range starts after the highest version seen; AWS's NextToken is followed within a
    /// range. Never a whole listing, which moto cuts silently.
    async fn version_described(&self, id: &str, after: u64, description: &str) -> Result<Option<u64>, CloudError> {
        let mut min_version = after + 1;
        let mut next_token = None;
        for _ in 0..VERSION_PAGES_MAX {
            let out = self
                .ec2
                .describe_launch_template_versions()
                .launch_template_id(id)
                .min_version(min_version.to_string())
                .max_results(VERSIONS_PER_PAGE)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeLaunchTemplateVersions", e))?;
            let versions = out.launch_template_versions();
            if let Some(found) = versions.iter().find(|v| v.version_description() == Some(description)) {
                return Ok(version_number(found.version_number()));
            }
            next_token = out.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if next_token.is_none() {
                match versions.iter().filter_map(|v| version_number(v.version_number())).max() {
                    Some(highest) if highest >= min_version => min_version = highest + 1,
                    _ => return Ok(None),
                }
            }
        }
        Err(CloudError::permanent("TooManyPages", format!("more than {VERSION_PAGES_MAX} pages of versions of launch template {id}")))
    }

    /// The data of version `version` of launch template `id`.
    async fn launch_template_data(&self, id: &str, version: u64) -> Result<ec2::ResponseLaunchTemplateData, CloudError> {
        let out = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions(version.to_string())
            .send()
            .await
            .map_err(|e| cloud_error("DescribeLaunchTemplateVersions", e))?;
        let data = out.launch_template_versions().iter().find(|v| version_number(v.version_number()) == Some(version));
        data.and_then(|v| v.launch_template_data()).cloned().ok_or_else(|| {
            CloudError::permanent("InvalidLaunchTemplateId.VersionNotFound", format!("launch template {id} has no version {version}"))
        })
    }

    /// Creates the clone ASG on `version` (looked for first by the caller). The hooks go in the
    /// create, so that on AWS they are in place before the first instance launches.
    async fn create_clone(
        &self,
        spec: &LaunchSpec,
        template: &ResolvedTemplate,
        version: u64,
        group: &asg::AutoScalingGroup,
        hooks: &[asg::LifecycleHookSpecification],
    ) -> Result<(), CloudError> {
        let launch_template = asg::LaunchTemplateSpecification::builder()
            .launch_template_id(&template.launch_template_id)
            .version(version.to_string())
            .build();
        let created = self
            .create_asg_request(spec, launch_template)
            .health_check_type(group.health_check_type().unwrap_or(&spec.health_check_type))
            .set_termination_policies(non_empty(group.termination_policies().to_vec()))
            .set_max_instance_lifetime(group.max_instance_lifetime())
            .set_placement_group(group.placement_group().map(str::to_string))
            .set_default_cooldown(group.default_cooldown())
            .set_default_instance_warmup(group.default_instance_warmup())
            .set_capacity_rebalance(group.capacity_rebalance())
            .set_new_instances_protected_from_scale_in(group.new_instances_protected_from_scale_in())
            .set_instance_maintenance_policy(group.instance_maintenance_policy().cloned())
            .set_tags(Some(clone_tags(group, spec)))
            .set_lifecycle_hook_specification_list(non_empty(hooks.to_vec()))
            .send()
            .await;
        self.asg_created(spec, created.map(|_| ()).map_err(|e| cloud_error("CreateAutoScalingGroup", e))).await
    }

    /// The clone's lifecycle hooks: the template's (in full), then the release's own, which win
    /// over a template hook of the same name.
    async fn clone_hooks(&self, spec: &LaunchSpec, template_asg: &str) -> Result<Vec<asg::LifecycleHookSpecification>, CloudError> {
        let out = self
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(template_asg)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeLifecycleHooks", e))?;
        let mut hooks: BTreeMap<String, asg::LifecycleHookSpecification> = out
            .lifecycle_hooks()
            .iter()
            .filter_map(template_hook)
            .map(|h| (h.lifecycle_hook_name().unwrap_or_default().to_string(), h))
            .collect();
        hooks.extend(spec.lifecycle_hooks.iter().map(|h| (h.name.clone(), hook_specification(h))));
        Ok(hooks.into_values().collect())
    }

    /// Puts each hook on the clone. moto ignores the hooks of CreateAutoScalingGroup (and so
    /// needs this); on AWS it rewrites each hook as it is.
    pub(super) async fn put_hooks(&self, asg_name: &str, hooks: &[asg::LifecycleHookSpecification]) -> Result<(), CloudError> {
        for hook in hooks {
            self.autoscaling
                .put_lifecycle_hook()
                .auto_scaling_group_name(asg_name)
                .set_lifecycle_hook_name(hook.lifecycle_hook_name().map(str::to_string))
                .set_lifecycle_transition(hook.lifecycle_transition().map(str::to_string))
                .set_heartbeat_timeout(hook.heartbeat_timeout())
                .set_default_result(hook.default_result().map(str::to_string))
                .set_notification_target_arn(hook.notification_target_arn().map(str::to_string))
                .set_role_arn(hook.role_arn().map(str::to_string))
                .set_notification_metadata(hook.notification_metadata().map(str::to_string))
                .send()
                .await
                .map_err(|e| cloud_error("PutLifecycleHook", e))?;
        }
        Ok(())
    }

    /// Copies the template's scaling policies onto the clone. Step and simple policies come
    /// without the CloudWatch alarms that trigger the template's (those name the template's
    /// policies); target-tracking policies make their own.
    async fn copy_policies(&self, template_asg: &str, clone: &str) -> Result<(), CloudError> {
        for policy in self.scaling_policies(template_asg).await? {
            self.put_policy_copy(&policy, clone)?.send().await.map_err(|e| cloud_error("PutScalingPolicy", e))?;
        }
        Ok(())
    }

    async fn scaling_policies(&self, asg_name: &str) -> Result<Vec<asg::ScalingPolicy>, CloudError> {
        let mut policies = Vec::new();
        let mut next_token = None;
        for _ in 0..POLICY_PAGES_MAX {
            let out = self
                .autoscaling
                .describe_policies()
                .auto_scaling_group_name(asg_name)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| cloud_error("DescribePolicies", e))?;
            policies.extend_from_slice(out.scaling_policies());
            next_token = out.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if next_token.is_none() {
                return Ok(policies);
            }
        }
        Err(CloudError::permanent("TooManyPages", format!("more than {POLICY_PAGES_MAX} pages of scaling policies of {asg_name}")))
    }

    /// The PutScalingPolicy that copies `policy` onto `clone`, built from the policy's type:
    /// DescribePolicies reports fields of other types too (moto: empty step adjustments and
    /// predictive configuration on every policy), which a put of this type would refuse.
    fn put_policy_copy(&self, policy: &asg::ScalingPolicy, clone: &str) -> Result<PutScalingPolicyFluentBuilder, CloudError> {
        let name = policy.policy_name().unwrap_or_default();
        // Policies without a type are simple ones (the API's default).
        let kind = policy.policy_type().unwrap_or("SimpleScaling");
        let put = self
            .autoscaling
            .put_scaling_policy()
            .auto_scaling_group_name(clone)
            .policy_name(clone_policy_name(name, clone))
            .policy_type(kind)
            .set_enabled(policy.enabled());
        let adjustment = |put: PutScalingPolicyFluentBuilder| {
            put.set_adjustment_type(policy.adjustment_type().map(str::to_string))
                .set_min_adjustment_magnitude(policy.min_adjustment_magnitude())
        };
        Ok(match kind {
            "TargetTrackingScaling" => put
                .set_target_tracking_configuration(policy.target_tracking_configuration().cloned())
                .set_estimated_instance_warmup(policy.estimated_instance_warmup()),
            "StepScaling" => adjustment(put)
                .set_metric_aggregation_type(policy.metric_aggregation_type().map(str::to_string))
                .set_step_adjustments(Some(policy.step_adjustments().to_vec()))
                .set_estimated_instance_warmup(policy.estimated_instance_warmup()),
            "SimpleScaling" => adjustment(put).set_scaling_adjustment(policy.scaling_adjustment()).set_cooldown(policy.cooldown()),
            "PredictiveScaling" => put.set_predictive_scaling_configuration(policy.predictive_scaling_configuration().cloned()),
            other => {
                let message = format!("scaling policy {name} is of type {other}, which skald cannot copy");
                return Err(CloudError::permanent("UnsupportedPolicyType", message));
            }
        })
    }

    /// Enables on the clone the metrics the template collects, in one call and only if there
    /// are any: moto replaces the set on each call, and a call without metrics means "all" on
    /// AWS and "none" on moto.
    async fn copy_metrics(&self, group: &asg::AutoScalingGroup, clone: &str) -> Result<(), CloudError> {
        let metrics: BTreeSet<String> = group.enabled_metrics().iter().filter_map(|m| m.metric()).map(str::to_string).collect();
        if metrics.is_empty() {
            return Ok(());
        }
        let granularity = group.enabled_metrics().iter().find_map(|m| m.granularity()).unwrap_or("1Minute");
        self.autoscaling
            .enable_metrics_collection()
            .auto_scaling_group_name(clone)
            .set_metrics(Some(metrics.into_iter().collect()))
            .granularity(granularity)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("EnableMetricsCollection", e))
    }

    /// Gives the clone the template's warm pool, if it has one (not one being deleted). Read
    /// from the template's description (DescribeAutoScalingGroups reports it as DescribeWarmPool
    /// does), which saves a call.
    async fn copy_warm_pool(&self, group: &asg::AutoScalingGroup, clone: &str) -> Result<(), CloudError> {
        let Some(pool) = group.warm_pool_configuration().filter(|p| p.status().is_none()) else { return Ok(()) };
        self.autoscaling
            .put_warm_pool()
            .auto_scaling_group_name(clone)
            .set_max_group_prepared_capacity(pool.max_group_prepared_capacity())
            .set_min_size(pool.min_size())
            .set_pool_state(pool.pool_state().cloned())
            .set_instance_reuse_policy(pool.instance_reuse_policy().cloned())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("PutWarmPool", e))
    }
}

fn version_number(number: Option<i64>) -> Option<u64> {
    number.and_then(|n| u64::try_from(n).ok()).filter(|n| *n >= 1)
}

/// The clone's tags: the template's own (whether each propagates kept), minus AWS's and
/// [`TEMPLATE_ONLY_TAGS`], then skald's tags for the clone on top, propagated to instances.
fn clone_tags(group: &asg::AutoScalingGroup, spec: &LaunchSpec) -> Vec<asg::Tag> {
    let mut tags: BTreeMap<&str, (&str, bool)> = group
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, (t.value().unwrap_or_default(), t.propagate_at_launch().unwrap_or(false)))))
        .filter(|(key, _)| !key.starts_with("aws:") && !TEMPLATE_ONLY_TAGS.contains(key) && !is_size_tag(key))
        .collect();
    tags.extend(spec.tags.iter().map(|(k, v)| (k.as_str(), (v.as_str(), PROPAGATE_AT_LAUNCH))));
    tags.into_iter().map(|(key, (value, propagate))| asg_tag(&spec.asg_name, key, value, propagate)).collect()
}

/// A template's hook as the clone gets it, in full; `None` for one without a transition,
/// which no create or put takes.
fn template_hook(hook: &asg::LifecycleHook) -> Option<asg::LifecycleHookSpecification> {
    let spec = asg::LifecycleHookSpecification::builder()
        .lifecycle_hook_name(hook.lifecycle_hook_name()?)
        .lifecycle_transition(hook.lifecycle_transition()?)
        .set_heartbeat_timeout(hook.heartbeat_timeout())
        .set_default_result(hook.default_result().map(str::to_string))
        .set_notification_target_arn(hook.notification_target_arn().map(str::to_string))
        .set_role_arn(hook.role_arn().map(str::to_string))
        .set_notification_metadata(hook.notification_metadata().map(str::to_string))
        .build();
    Some(spec)
}

/// `<policy>@<clone>`, cut to the longest name Auto Scaling takes. AWS keeps policies per ASG,
/// but moto keeps them by name alone, so a put under the template's name would move the
/// template's policy onto the clone.
fn clone_policy_name(policy: &str, clone: &str) -> String {
    format!("{policy}@{clone}").chars().take(POLICY_NAME_LEN_MAX).collect()
}

// ------------------------------------------------------------------ launch template data

/// The data of a new launch template version: `source`'s, with `image_id` for its image.
///
/// AWS copies into the new version whatever the request leaves out of its SourceVersion, and
/// each field sent replaces the source's whole; moto copies nothing (the design notes). So the
/// fields that matter are sent, each converted in full from the response type to the request
/// type: ImageId (replaced), InstanceType, KeyName, UserData, SecurityGroupIds, SecurityGroups,
/// IamInstanceProfile, BlockDeviceMappings, NetworkInterfaces, TagSpecifications,
/// MetadataOptions, Monitoring, Placement, EbsOptimized, InstanceMarketOptions,
/// CreditSpecification, HibernationOptions, KernelId, RamDiskId, DisableApiTermination,
/// DisableApiStop and InstanceInitiatedShutdownBehavior. Left out (AWS keeps them from the
/// source; moto drops them): CpuOptions, InstanceRequirements, CapacityReservationSpecification,
/// LicenseSpecifications, EnclaveOptions, PrivateDnsNameOptions, MaintenanceOptions, elastic
/// GPUs and inference accelerators, NetworkPerformanceOptions, Operator and SecondaryInterfaces.
fn version_data(source: &ec2::ResponseLaunchTemplateData, image_id: &str) -> ec2::RequestLaunchTemplateData {
    ec2::RequestLaunchTemplateData::builder()
        .image_id(image_id)
        .set_instance_type(source.instance_type().cloned())
        .set_key_name(source.key_name().map(str::to_string))
        .set_user_data(source.user_data().map(str::to_string))
        .set_security_group_ids(non_empty(source.security_group_ids().to_vec()))
        .set_security_groups(non_empty(source.security_groups().to_vec()))
        .set_iam_instance_profile(source.iam_instance_profile().map(|p| {
            ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .set_arn(p.arn().map(str::to_string))
                .set_name(p.name().map(str::to_string))
                .build()
        }))
        .set_block_device_mappings(non_empty(source.block_device_mappings().iter().map(block_device_mapping).collect()))
        .set_network_interfaces(non_empty(source.network_interfaces().iter().map(network_interface).collect()))
        .set_tag_specifications(non_empty(source.tag_specifications().iter().map(tag_specification).collect()))
        .set_metadata_options(source.metadata_options().map(metadata_options))
        .set_monitoring(source.monitoring().map(|m| ec2::LaunchTemplatesMonitoringRequest::builder().set_enabled(m.enabled()).build()))
        .set_placement(source.placement().map(placement))
        .set_ebs_optimized(source.ebs_optimized())
        .set_instance_market_options(source.instance_market_options().map(market_options))
        .set_credit_specification(
            source
                .credit_specification()
                .map(|c| ec2::CreditSpecificationRequest::builder().set_cpu_credits(c.cpu_credits().map(str::to_string)).build()),
        )
        .set_hibernation_options(
            source
                .hibernation_options()
                .map(|h| ec2::LaunchTemplateHibernationOptionsRequest::builder().set_configured(h.configured()).build()),
        )
        .set_kernel_id(source.kernel_id().map(str::to_string))
        .set_ram_disk_id(source.ram_disk_id().map(str::to_string))
        .set_disable_api_termination(source.disable_api_termination())
        .set_disable_api_stop(source.disable_api_stop())
        .set_instance_initiated_shutdown_behavior(source.instance_initiated_shutdown_behavior().cloned())
        .build()
}

fn block_device_mapping(mapping: &ec2::LaunchTemplateBlockDeviceMapping) -> ec2::LaunchTemplateBlockDeviceMappingRequest {
    let ebs = mapping.ebs().map(|e| {
        ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
            .set_encrypted(e.encrypted())
            .set_delete_on_termination(e.delete_on_termination())
            .set_iops(e.iops())
            .set_kms_key_id(e.kms_key_id().map(str::to_string))
            .set_snapshot_id(e.snapshot_id().map(str::to_string))
            .set_volume_size(e.volume_size())
            .set_volume_type(e.volume_type().cloned())
            .set_throughput(e.throughput())
            .set_volume_initialization_rate(e.volume_initialization_rate())
            .set_ebs_card_index(e.ebs_card_index())
            .build()
    });
    ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(mapping.device_name().map(str::to_string))
        .set_virtual_name(mapping.virtual_name().map(str::to_string))
        .set_ebs(ebs)
        .set_no_device(mapping.no_device().map(str::to_string))
        .build()
}

fn network_interface(
    interface: &ec2::LaunchTemplateInstanceNetworkInterfaceSpecification,
) -> ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
    let ipv6_addresses = interface
        .ipv6_addresses()
        .iter()
        .map(|a| ec2::InstanceIpv6AddressRequest::builder().set_ipv6_address(a.ipv6_address().map(str::to_string)).build());
    let ipv4_prefixes = interface
        .ipv4_prefixes()
        .iter()
        .map(|p| ec2::Ipv4PrefixSpecificationRequest::builder().set_ipv4_prefix(p.ipv4_prefix().map(str::to_string)).build());
    let ipv6_prefixes = interface
        .ipv6_prefixes()
        .iter()
        .map(|p| ec2::Ipv6PrefixSpecificationRequest::builder().set_ipv6_prefix(p.ipv6_prefix().map(str::to_string)).build());
    let ena_srd = interface.ena_srd_specification().map(|s| {
        let udp = s
            .ena_srd_udp_specification()
            .map(|u| ec2::EnaSrdUdpSpecificationRequest::builder().set_ena_srd_udp_enabled(u.ena_srd_udp_enabled()).build());
        ec2::EnaSrdSpecificationRequest::builder().set_ena_srd_enabled(s.ena_srd_enabled()).set_ena_srd_udp_specification(udp).build()
    });
    let tracking = interface.connection_tracking_specification().map(|c| {
        ec2::ConnectionTrackingSpecificationRequest::builder()
            .set_tcp_established_timeout(c.tcp_established_timeout())
            .set_udp_stream_timeout(c.udp_stream_timeout())
            .set_udp_timeout(c.udp_timeout())
            .build()
    });
    ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
        .set_associate_carrier_ip_address(interface.associate_carrier_ip_address())
        .set_associate_public_ip_address(interface.associate_public_ip_address())
        .set_delete_on_termination(interface.delete_on_termination())
        .set_description(interface.description().map(str::to_string))
        .set_device_index(interface.device_index())
        .set_groups(non_empty(interface.groups().to_vec()))
        .set_interface_type(interface.interface_type().map(str::to_string))
        .set_ipv6_address_count(interface.ipv6_address_count())
        .set_ipv6_addresses(non_empty(ipv6_addresses.collect()))
        .set_network_interface_id(interface.network_interface_id().map(str::to_string))
        .set_private_ip_address(interface.private_ip_address().map(str::to_string))
        .set_private_ip_addresses(non_empty(interface.private_ip_addresses().to_vec()))
        .set_secondary_private_ip_address_count(interface.secondary_private_ip_address_count())
        .set_subnet_id(interface.subnet_id().map(str::to_string))
        .set_network_card_index(interface.network_card_index())
        .set_ipv4_prefixes(non_empty(ipv4_prefixes.collect()))
        .set_ipv4_prefix_count(interface.ipv4_prefix_count())
        .set_ipv6_prefixes(non_empty(ipv6_prefixes.collect()))
        .set_ipv6_prefix_count(interface.ipv6_prefix_count())
        .set_primary_ipv6(interface.primary_ipv6())
        .set_ena_srd_specification(ena_srd)
        .set_connection_tracking_specification(tracking)
        .set_ena_queue_count(interface.ena_queue_count())
        .build()
}

fn tag_specification(spec: &ec2::LaunchTemplateTagSpecification) -> ec2::LaunchTemplateTagSpecificationRequest {
    ec2::LaunchTemplateTagSpecificationRequest::builder()
        .set_resource_type(spec.resource_type().cloned())
        .set_tags(Some(spec.tags().to_vec()))
        .build()
}

fn metadata_options(options: &ec2::LaunchTemplateInstanceMetadataOptions) -> ec2::LaunchTemplateInstanceMetadataOptionsRequest {
    ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .set_http_tokens(options.http_tokens().cloned())
        .set_http_put_response_hop_limit(options.http_put_response_hop_limit())
        .set_http_endpoint(options.http_endpoint().cloned())
        .set_http_protocol_ipv6(options.http_protocol_ipv6().cloned())
        .set_instance_metadata_tags(options.instance_metadata_tags().cloned())
        .build()
}

fn placement(placement: &ec2::LaunchTemplatePlacement) -> ec2::LaunchTemplatePlacementRequest {
    ec2::LaunchTemplatePlacementRequest::builder()
        .set_availability_zone(placement.availability_zone().map(str::to_string))
        .set_availability_zone_id(placement.availability_zone_id().map(str::to_string))
        .set_affinity(placement.affinity().map(str::to_string))
        .set_group_name(placement.group_name().map(str::to_string))
        .set_host_id(placement.host_id().map(str::to_string))
        .set_tenancy(placement.tenancy().cloned())
        .set_spread_domain(placement.spread_domain().map(str::to_string))
        .set_host_resource_group_arn(placement.host_resource_group_arn().map(str::to_string))
        .set_partition_number(placement.partition_number())
        .set_group_id(placement.group_id().map(str::to_string))
        .build()
}

fn market_options(options: &ec2::LaunchTemplateInstanceMarketOptions) -> ec2::LaunchTemplateInstanceMarketOptionsRequest {
    let spot = options.spot_options().map(|s| {
        ec2::LaunchTemplateSpotMarketOptionsRequest::builder()
            .set_max_price(s.max_price().map(str::to_string))
            .set_spot_instance_type(s.spot_instance_type().cloned())
            .set_block_duration_minutes(s.block_duration_minutes())
            .set_valid_until(s.valid_until().cloned())
            .set_instance_interruption_behavior(s.instance_interruption_behavior().cloned())
            .build()
    });
    ec2::LaunchTemplateInstanceMarketOptionsRequest::builder()
        .set_market_type(options.market_type().cloned())
        .set_spot_options(spot)
        .build()
}
