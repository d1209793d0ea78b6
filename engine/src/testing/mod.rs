//! Test support, public so integration tests (and other crates' tests) can share it.
//! Nothing in here is used by skald at run time.
//!
//! - `moto`: a local AWS API (moto in server mode) for the adapters' tests, started once per test
//!   process, or taken from `SKALD_TEST_AWS_ENDPOINT`.
//! - `deploys`: whole deploys through the real runner on a virtual clock, against any cloud.

pub mod deploys;
pub mod moto;

use crate::adapters::aws::AwsCloud;
use crate::adapters::local::example_release;
use crate::workflow::release::Traffic;
use crate::workflow::Release;

/// The example release, renamed for `label` so that nothing it names (project, subnets, AMI,
/// security group, load balancers, profile) is shared with another test on the same emulator.
pub fn example_release_for(label: &str) -> Release {
    let unique = moto::unique_name(label);
    let tail = &unique[unique.len() - 12..];
    let mut release = example_release();
    release.project_name = format!("acme/{label}");
    release.config_name = "prod".into();
    release.user_data = Some("#!/bin/sh\necho {{SERVICE_NAME}}\n".into());
    release.subnets = vec![format!("{label}-{tail}-a"), format!("{label}-{tail}-b")];
    release.ami = format!("{label}-{tail}-ami");
    for (name, service) in release.services.iter_mut() {
        service.security_groups = vec![format!("{label}-{tail}-sg")];
        if !service.elbs.is_empty() {
            service.elbs = vec![short_name(&format!("e{tail}{name}"))];
            service.target_groups = vec![short_name(&format!("t{tail}{name}"))];
            service.profile = Some(format!("{label}-{tail}-{name}"));
        }
    }
    release
}

/// ELB and target group names: at most 32 letters and digits.
fn short_name(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect()
}

/// The service of the example that shifts traffic in [`traffic_world`], and its rule's priority
/// (the exemplar sits 40,000 higher).
pub const TRAFFIC_SERVICE: &str = "web";
pub const TRAFFIC_PRIORITY: u32 = 10;

/// Given: the example world on the emulator, where `web` shifts traffic on its own ALB's listener
/// (25 % a step) from a template group, with an exemplar rule and no production rule yet.
pub async fn traffic_world(label: &str) -> (AwsCloud, Release) {
    let cloud = AwsCloud::new(&moto::aws_config().await);
    let mut release = example_release_for(label);
    let web = release.services.get_mut(TRAFFIC_SERVICE).expect("the example has web");
    // The example's names for its classic ELB and target group are unique to this test: the ALB
    // and the template take them instead, and web joins no other load balancer.
    let (alb, template) = (web.elbs[0].clone(), web.target_groups[0].clone());
    web.elbs.clear();
    web.target_groups.clear();
    let listener = cloud.provision_listener(&release, &alb).await.expect("the load balancer is provisioned");
    release.services.get_mut(TRAFFIC_SERVICE).expect("the example has web").traffic = Some(Traffic {
        listener,
        priority: TRAFFIC_PRIORITY,
        target_group: template,
        shift_per_step: Some(25),
        wait_per_step: None,
        bake_time: None,
        health_timeout: None,
        alarms: Vec::new(),
    });
    cloud.provision_example(&release).await.expect("the example world is provisioned");
    (cloud, release)
}
