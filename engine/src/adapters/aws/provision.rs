//! Provisioning the example world on an AWS API (a local emulator, for `skald demo --endpoint`
//! and the tests): a VPC with subnets, an AMI, security groups, a classic ELB, a target group and
//! an instance profile, each opted in to skald with the tags and paths a release needs; for a
//! traffic-shifted service, the template target group and the exemplar rule on its listener
//! (whose load balancer [`AwsCloud::provision_listener`] makes).
//!
//! Re-running it against the same API reuses what is there (found by Name tag or name).

use super::errors::{cloud_error, is_missing};
use super::AwsCloud;
use crate::workflow::listener_rule::NewRule;
use crate::workflow::names::{instance_profile_paths, ALL, DEPLOYER, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_PROJECT, TAG_SERVICE};
use crate::workflow::release::Traffic;
use crate::workflow::resources::{RuleCondition, Weighted};
use crate::workflow::{CloudError, Release};
use aws_sdk_ec2::types as ec2;
use aws_sdk_elasticloadbalancingv2::types as elb;
use std::collections::BTreeMap;

const VPC_CIDR: &str = "10.80.0.0/16";
/// The /24s of the example VPC.
const SUBNETS_MAX: u32 = 255;
/// The port the example's instances serve on, behind every example load balancer.
const INSTANCE_PORT: i32 = 8000;
/// The example ALB's listener.
const LISTENER_PORT: i32 = 80;
const ASSUME_ROLE_BY_EC2: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

impl AwsCloud {
    /// Creates (or finds) everything `release` names, opted in for its project and config.
    pub async fn provision_example(&self, release: &Release) -> Result<(), CloudError> {
        let (project, config) = (release.project_name.as_str(), release.config_name.as_str());
        let vpc_id = self.example_vpc().await?;
        let opt_in = [(TAG_DEPLOY_WITH, DEPLOYER)];
        let mut subnet_ids = Vec::new();
        for name in &release.subnets {
            subnet_ids.push(self.example_subnet(&vpc_id, name, &opt_in).await?);
        }
        self.example_image(&release.ami, &opt_in).await?;
        let mut sg_users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, service) in &release.services {
            for sg in &service.security_groups {
                sg_users.entry(sg).or_default().push(name);
            }
        }
        for (sg, users) in sg_users {
            let service = if users.len() == 1 { users[0] } else { ALL };
            self.example_security_group(&vpc_id, sg, &[(TAG_PROJECT, project), (TAG_CONFIG, config), (TAG_SERVICE, service)]).await?;
        }
        for (name, service) in &release.services {
            let scope = [(TAG_PROJECT, project), (TAG_CONFIG, config), (TAG_SERVICE, name.as_str())];
            for elb in &service.elbs {
                self.example_elb(elb, &subnet_ids, &scope).await?;
            }
            for tg in &service.target_groups {
                self.example_target_group(&vpc_id, tg, &scope).await?;
            }
            if let Some(profile) = &service.profile {
                self.example_instance_profile(profile, &instance_profile_paths(DEPLOYER, project, config, name)[0]).await?;
            }
            if let Some(traffic) = &service.traffic {
                self.example_traffic(&vpc_id, name, traffic, &scope).await?;
            }
        }
        Ok(())
    }

    /// Creates (or finds) an application load balancer named `name` in the release's subnets
    /// (made if missing) with an HTTP listener that answers 404 unless a rule matches. Returns
    /// the listener's ARN, for a traffic-shifted service's `traffic.listener`.
    pub async fn provision_listener(&self, release: &Release, name: &str) -> Result<String, CloudError> {
        let vpc_id = self.example_vpc().await?;
        let mut subnet_ids = Vec::new();
        for subnet in &release.subnets {
            subnet_ids.push(self.example_subnet(&vpc_id, subnet, &[(TAG_DEPLOY_WITH, DEPLOYER)]).await?);
        }
        let load_balancer = self.example_alb(name, &subnet_ids).await?;
        self.example_listener(&load_balancer).await
    }

    /// The load balancer named `name`, created if missing (CreateLoadBalancer is idempotent on
    /// AWS but not on every emulator, so look first).
    async fn example_alb(&self, name: &str, subnet_ids: &[String]) -> Result<String, CloudError> {
        match self.elbv2.describe_load_balancers().names(name).send().await.map_err(|e| cloud_error("DescribeLoadBalancers", e)) {
            Ok(out) => {
                if let Some(arn) = out.load_balancers().first().and_then(|lb| lb.load_balancer_arn()) {
                    return Ok(arn.to_string());
                }
            }
            Err(error) if is_missing(&error) => {}
            Err(error) => return Err(error),
        }
        let out = self
            .elbv2
            .create_load_balancer()
            .name(name)
            .r#type(elb::LoadBalancerTypeEnum::Application)
            .set_subnets(Some(subnet_ids.to_vec()))
            .send()
            .await
            .map_err(|e| cloud_error("CreateLoadBalancer", e))?;
        Ok(out.load_balancers().first().and_then(|lb| lb.load_balancer_arn()).unwrap_or_default().to_string())
    }

    async fn example_listener(&self, load_balancer_arn: &str) -> Result<String, CloudError> {
        let existing = self
            .elbv2
            .describe_listeners()
            .load_balancer_arn(load_balancer_arn)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeListeners", e))?;
        if let Some(arn) = existing.listeners().iter().find(|l| l.port() == Some(LISTENER_PORT)).and_then(|l| l.listener_arn()) {
            return Ok(arn.to_string());
        }
        let not_found = elb::FixedResponseActionConfig::builder().status_code("404").content_type("text/plain").build();
        let out = self
            .elbv2
            .create_listener()
            .load_balancer_arn(load_balancer_arn)
            .protocol(elb::ProtocolEnum::Http)
            .port(LISTENER_PORT)
            .default_actions(elb::Action::builder().r#type(elb::ActionTypeEnum::FixedResponse).fixed_response_config(not_found).build())
            .send()
            .await
            .map_err(|e| cloud_error("CreateListener", e))?;
        Ok(out.listeners().first().and_then(|l| l.listener_arn()).unwrap_or_default().to_string())
    }

    /// The template target group (scoped to the service, as a release's own groups are) and the
    /// exemplar rule a first deploy copies: requests under `/<service>/` go to the template.
    async fn example_traffic(&self, vpc_id: &str, service: &str, traffic: &Traffic, scope: &[(&str, &str)]) -> Result<(), CloudError> {
        let template = self.example_target_group(vpc_id, &traffic.target_group, scope).await?;
        let conditions = [RuleCondition::of_values("path-pattern", &[&format!("/{service}/*")])];
        let forward = [Weighted { target_group: template, weight: 100 }];
        self.shift_rule(&traffic.listener, traffic.exemplar_priority(), NewRule { conditions: &conditions, copy: None }, &forward).await
    }

    async fn example_vpc(&self) -> Result<String, CloudError> {
        let existing = self
            .ec2
            .describe_vpcs()
            .filters(tag_filter("Name", "skald-example"))
            .send()
            .await
            .map_err(|e| cloud_error("DescribeVpcs", e))?;
        if let Some(id) = existing.vpcs().first().and_then(|v| v.vpc_id()) {
            return Ok(id.to_string());
        }
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(VPC_CIDR)
            .tag_specifications(tags_for(ec2::ResourceType::Vpc, &[("Name", "skald-example")]))
            .send()
            .await
            .map_err(|e| cloud_error("CreateVpc", e))?;
        Ok(out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string())
    }

    /// A /24 in the example VPC: the first free one, so several provisionings share the VPC.
    async fn example_subnet(&self, vpc_id: &str, name: &str, tags: &[(&str, &str)]) -> Result<String, CloudError> {
        let existing =
            self.ec2.describe_subnets().filters(tag_filter("Name", name)).send().await.map_err(|e| cloud_error("DescribeSubnets", e))?;
        if let Some(id) = existing.subnets().first().and_then(|s| s.subnet_id()) {
            return Ok(id.to_string());
        }
        let mut all = vec![("Name", name)];
        all.extend_from_slice(tags);
        let mut last_error = None;
        for third_octet in 0..=SUBNETS_MAX {
            let created = self
                .ec2
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(format!("10.80.{third_octet}.0/24"))
                .tag_specifications(tags_for(ec2::ResourceType::Subnet, &all))
                .send()
                .await;
            match created.map_err(|e| cloud_error("CreateSubnet", e)) {
                Ok(out) => return Ok(out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string()),
                Err(e) if e.code.as_deref() == Some("InvalidSubnet.Conflict") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Registers an AMI named like the release's and tags it (RegisterImage's own tags are not
    /// reliable on every emulator, so the tags go on with CreateTags).
    async fn example_image(&self, name: &str, tags: &[(&str, &str)]) -> Result<(), CloudError> {
        let existing =
            self.ec2.describe_images().filters(tag_filter("Name", name)).send().await.map_err(|e| cloud_error("DescribeImages", e))?;
        if !existing.images().is_empty() {
            return Ok(());
        }
        let out = self
            .ec2
            .register_image()
            .name(format!("skald-example-{name}"))
            .root_device_name("/dev/xvda")
            .block_device_mappings(
                ec2::BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(ec2::EbsBlockDevice::builder().volume_size(8).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| cloud_error("RegisterImage", e))?;
        let image_id = out.image_id().unwrap_or_default().to_string();
        let mut all = vec![("Name", name)];
        all.extend_from_slice(tags);
        self.ec2
            .create_tags()
            .resources(image_id)
            .set_tags(Some(all.iter().map(|(k, v)| ec2::Tag::builder().key(*k).value(*v).build()).collect()))
            .send()
            .await
            .map_err(|e| cloud_error("CreateTags", e))?;
        Ok(())
    }

    async fn example_security_group(&self, vpc_id: &str, name: &str, tags: &[(&str, &str)]) -> Result<(), CloudError> {
        let existing = self
            .ec2
            .describe_security_groups()
            .filters(tag_filter("Name", name))
            .send()
            .await
            .map_err(|e| cloud_error("DescribeSecurityGroups", e))?;
        if !existing.security_groups().is_empty() {
            return Ok(());
        }
        let mut all = vec![("Name", name)];
        all.extend_from_slice(tags);
        // Group names may not hold every character a Name tag can; the tag is what skald reads.
        let group_name = format!("skald-{}", &crate::codec::sha256_hex(name.as_bytes())[..16]);
        self.ec2
            .create_security_group()
            .group_name(group_name)
            .description(format!("skald example: {name}"))
            .vpc_id(vpc_id)
            .tag_specifications(tags_for(ec2::ResourceType::SecurityGroup, &all))
            .send()
            .await
            .map_err(|e| cloud_error("CreateSecurityGroup", e))?;
        Ok(())
    }

    async fn example_elb(&self, name: &str, subnet_ids: &[String], tags: &[(&str, &str)]) -> Result<(), CloudError> {
        let listener = aws_sdk_elasticloadbalancing::types::Listener::builder()
            .protocol("HTTP")
            .load_balancer_port(80)
            .instance_protocol("HTTP")
            .instance_port(INSTANCE_PORT)
            .build()
            .map_err(|e| CloudError::permanent("BuildError", e.to_string()))?;
        let tags = tags
            .iter()
            .map(|(k, v)| aws_sdk_elasticloadbalancing::types::Tag::builder().key(*k).value(*v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CloudError::permanent("BuildError", e.to_string()))?;
        // CreateLoadBalancer is idempotent for the same name and settings.
        self.elb
            .create_load_balancer()
            .load_balancer_name(name)
            .listeners(listener)
            .set_subnets(Some(subnet_ids.to_vec()))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| cloud_error("CreateLoadBalancer", e))?;
        Ok(())
    }

    /// The target group named `name`, created if missing (looked for first: emulators refuse a
    /// second create that AWS would answer with the existing group). Returns its ARN.
    async fn example_target_group(&self, vpc_id: &str, name: &str, tags: &[(&str, &str)]) -> Result<String, CloudError> {
        if let Some(arn) = self.target_group_named(name).await?.and_then(|tg| tg.target_group_arn().map(str::to_string)) {
            return Ok(arn);
        }
        let tags = tags.iter().map(|(k, v)| elb::Tag::builder().key(*k).value(*v).build()).collect();
        let out = self
            .elbv2
            .create_target_group()
            .name(name)
            .protocol(elb::ProtocolEnum::Http)
            .port(INSTANCE_PORT)
            .vpc_id(vpc_id)
            .target_type(elb::TargetTypeEnum::Instance)
            .health_check_path("/health")
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| cloud_error("CreateTargetGroup", e))?;
        Ok(out.target_groups().first().and_then(|tg| tg.target_group_arn()).unwrap_or_default().to_string())
    }

    async fn example_instance_profile(&self, name: &str, path: &str) -> Result<(), CloudError> {
        if self.iam.get_instance_profile().instance_profile_name(name).send().await.is_ok() {
            return Ok(());
        }
        self.iam
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(ASSUME_ROLE_BY_EC2)
            .send()
            .await
            .map_err(|e| cloud_error("CreateRole", e))?;
        self.iam
            .create_instance_profile()
            .instance_profile_name(name)
            .path(path)
            .send()
            .await
            .map_err(|e| cloud_error("CreateInstanceProfile", e))?;
        self.iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map_err(|e| cloud_error("AddRoleToInstanceProfile", e))?;
        Ok(())
    }
}

fn tag_filter(key: &str, value: &str) -> ec2::Filter {
    ec2::Filter::builder().name(format!("tag:{key}")).values(value).build()
}

fn tags_for(kind: ec2::ResourceType, tags: &[(&str, &str)]) -> ec2::TagSpecification {
    let tags = tags.iter().map(|(k, v)| ec2::Tag::builder().key(*k).value(*v).build()).collect();
    ec2::TagSpecification::builder().resource_type(kind).set_tags(Some(tags)).build()
}
