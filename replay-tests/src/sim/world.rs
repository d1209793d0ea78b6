//! The world a seed plays out in: project-configs provisioned in the simulated cloud, the releases
//! submitted to them and when, how their instances behave, and when people halt them.

use super::rng::Rng;
use skald_engine::adapters::local::{example_release, example_traffic, provision_traffic, template_for};
use skald_engine::adapters::sim::{Fate, SimCloud, Timings};
use skald_engine::workflow::names::{instance_profile_paths, ALL, DEPLOYER, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_PROJECT, TAG_SERVICE};
use skald_engine::workflow::release::{DetachStrategy, OnConcurrentDeploy, Service, Strategy, Traffic};
use skald_engine::workflow::resources::FoundTemplate;
use skald_engine::workflow::Release;

/// The configs a seed may deploy to (all of the example's project).
const CONFIGS: [&str; 3] = ["production", "staging", "canary"];

/// One release a producer will submit.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Virtual milliseconds after the start.
    pub submit_ms: u64,
    pub release_id: String,
    pub release: Release,
    /// How the instances of each service behave.
    pub fates: Vec<(String, Fate)>,
    /// Teardown calls on this release's ASGs fail permanently while faults are on.
    pub doomed_cleanup: bool,
    /// Launches of this release fail permanently while faults are on.
    pub doomed_launch: bool,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub timings: Timings,
    pub configs: Vec<String>,
    /// The configs whose web service shifts ALB traffic gradually (every release of them does).
    pub traffic_configs: Vec<String>,
    /// The configs whose web service is cloned from a template ASG (every release of them is).
    pub template_configs: Vec<String>,
    /// Alarms gating traffic configs' shifts: (name, ms it goes off, ms it is quiet again).
    pub alarms: Vec<(String, u64, u64)>,
    /// Configs whose web target group has a slow start, and its seconds (Odin's
    /// `wait_for_detach`: the old release goes that long after the new one is healthy).
    pub slow_starts: Vec<(String, u32)>,
    pub deploys: Vec<Planned>,
    /// (virtual ms after the start, config) of each halt a person sends.
    pub halts: Vec<(u64, String)>,
    /// (virtual ms after the start, config, undeploy id) of each undeploy a person asks for.
    pub undeploys: Vec<(u64, String, String)>,
    /// How often the scheduled sweeper runs.
    pub sweep_every_ms: u64,
    /// Faults stop this long after the start.
    pub fault_phase_ms: u64,
}

impl Scenario {
    pub fn draw(rng: &mut Rng, seed: u64) -> Scenario {
        // Some seeds boot slowly: close to a short release's timeout.
        let boot_ms_max = if rng.chance(300) { 280_000 } else { 60_000 };
        let timings = Timings {
            boot_ms: rng.between(5_000, boot_ms_max),
            lb_healthy_ms: rng.between(1_000, 40_000),
            drain_ms: rng.between(1_000, 60_000),
        };
        let configs: Vec<String> = CONFIGS[..rng.between(1, 3) as usize].iter().map(|c| c.to_string()).collect();
        // Traffic is drawn from a stream of its own, so the seeds' other choices stay as they were
        // before traffic shifting existed (the regression seeds keep reproducing their scenario).
        let mut traffic_rng = Rng::new(seed ^ 0x7472_6166_6669_6300);
        let traffic_configs: Vec<String> = configs.iter().filter(|_| traffic_rng.chance(400)).cloned().collect();
        // Rollbacks and undeploys too: seeds drawn before they existed keep their other choices.
        let mut later_rng = Rng::new(seed ^ 0x726f_6c6c_6261_636b);
        let rollback_configs: Vec<String> = configs.iter().filter(|_| later_rng.chance(400)).cloned().collect();
        let mut template_rng = Rng::new(seed ^ 0x7465_6d70_6c61_7465);
        let template_configs: Vec<String> = configs.iter().filter(|_| template_rng.chance(400)).cloned().collect();
        let mut alarm_rng = Rng::new(seed ^ 0x616c_6172_6d73);
        // Odin's step rollouts past a bad instance, on a stream of their own as well.
        let mut odin_rng = Rng::new(seed ^ 0x6f64_696e_7374_6570);
        // Its own stream, so the draws of older seeds stay as they were.
        let mut retire_rng = Rng::new(seed ^ 0x7265_7469_7265);
        let mut slow_starts: Vec<(String, u32)> = Vec::new();
        for config in &configs {
            if retire_rng.chance(300) {
                slow_starts.push((config.clone(), retire_rng.between(30, 300) as u32));
            }
        }
        let gated: Vec<String> = traffic_configs.iter().filter(|_| alarm_rng.chance(500)).cloned().collect();
        // Racing releases: most seeds submit in a burst, the rest spread over half an hour.
        let window_ms = if rng.chance(600) { rng.between(0, 20_000) } else { 30 * 60_000 };
        let count = rng.between(2, 7);
        let deploys = (0..count)
            .map(|n| {
                let config = rng.pick(&configs).clone();
                let release_id = format!("01SIM{:04}{:017}", n, seed % 100_000_000_000_000_000);
                let mut fates: Vec<(String, Fate)> =
                    ["web", "worker"].iter().map(|service| (format!("-{service}-{release_id}"), draw_fate(rng))).collect();
                let mut release = draw_release(rng, &config, traffic_configs.contains(&config).then_some(&mut traffic_rng));
                if odin_rng.chance(250) {
                    step_past_a_bad_instance(&mut release, &mut fates[0].1, &mut odin_rng);
                }
                draw_undeploy_settings(&mut release, &mut later_rng, rollback_configs.contains(&config));
                if template_configs.contains(&config) {
                    clone_web_from_template(&mut release);
                }
                draw_retirement_settings(&mut release, &mut retire_rng);
                if gated.contains(&config) {
                    let traffic = release.services.get_mut("web").and_then(|w| w.traffic.as_mut()).expect("a gated config shifts traffic");
                    traffic.alarms = vec![alarm_name(&config)];
                }
                Planned {
                    submit_ms: rng.between(0, window_ms),
                    release,
                    release_id,
                    fates,
                    doomed_cleanup: rng.chance(100),
                    doomed_launch: rng.chance(60),
                }
            })
            .collect::<Vec<_>>();
        let last_submit_ms = deploys.iter().map(|d| d.submit_ms).max().unwrap_or(0);
        let halts = (0..rng.below(3)).map(|_| (rng.between(0, last_submit_ms + 20 * 60_000), rng.pick(&configs).clone())).collect();
        let undeploys = (0..later_rng.below(3))
            .map(|n| {
                let at_ms = later_rng.between(0, last_submit_ms + 40 * 60_000);
                (at_ms, later_rng.pick(&configs).clone(), format!("01SIMU{n:03}{:017}", seed % 100_000_000_000_000_000))
            })
            .collect();
        Scenario {
            timings,
            configs,
            traffic_configs,
            template_configs,
            deploys,
            halts,
            undeploys,
            slow_starts,
            alarms: gated
                .iter()
                .map(|config| {
                    let on_ms = alarm_rng.between(0, last_submit_ms + 30 * 60_000);
                    (alarm_name(config), on_ms, on_ms + alarm_rng.between(30_000, 10 * 60_000))
                })
                .collect(),
            sweep_every_ms: rng.between(60, 300) * 1000,
            fault_phase_ms: last_submit_ms + rng.between(0, 40 * 60_000),
        }
    }

    /// The template ASGs the scenario provisions.
    pub fn template_names(&self) -> Vec<String> {
        self.template_configs.iter().map(|config| template_name(config)).collect()
    }

    /// Creates everything the releases refer to, each resource opted in and tagged for its
    /// project-config, and sets the instances' fates.
    pub fn provision(&self, cloud: &SimCloud) {
        let release = example_release();
        let project = release.project_name.as_str();
        let opt_in = (TAG_DEPLOY_WITH, DEPLOYER);
        cloud.add_image("ami-0a1b2c3d4e5f60718", &[("Name", release.ami.as_str()), opt_in]);
        for (i, subnet) in release.subnets.iter().enumerate() {
            cloud.add_subnet(&format!("subnet-0{i:016x}"), &[("Name", subnet.as_str()), opt_in]);
        }
        for (i, config) in self.configs.iter().enumerate() {
            let release = release_for(config);
            let web = &release.services["web"];
            let sg = &web.security_groups[0];
            cloud.add_security_group(
                &format!("sg-0{i:016x}"),
                &[("Name", sg), (TAG_PROJECT, project), (TAG_CONFIG, config), (TAG_SERVICE, ALL)],
            );
            let scope = [(TAG_PROJECT, project), (TAG_CONFIG, config.as_str()), (TAG_SERVICE, "web")];
            cloud.add_elb(&web.elbs[0], &scope);
            let target_group = cloud.add_target_group(&web.target_groups[0], &scope);
            if self.template_configs.contains(config) {
                let subnets = (0..release.subnets.len()).map(|i| format!("subnet-0{i:016x}")).collect();
                provision_template(cloud, config, subnets, web.elbs.clone(), target_group);
            }
            cloud.add_instance_profile(
                web.profile.as_deref().expect("web has a profile"),
                &instance_profile_paths(DEPLOYER, project, config, "web")[0],
            );
            if self.traffic_configs.contains(config) {
                provision_traffic(cloud, &example_traffic(config), &scope);
            }
        }
        for (config, secs) in &self.slow_starts {
            cloud.set_slow_start(&release_for(config).services["web"].target_groups[0], *secs);
        }
        for (alarm, _, _) in &self.alarms {
            cloud.set_alarm(alarm, false);
        }
        for planned in &self.deploys {
            for (asg_part, fate) in &planned.fates {
                cloud.set_fate(asg_part, *fate);
            }
        }
    }
}

/// The example release, moved to `config`: its security group, load balancers and profile are
/// that config's own.
pub fn release_for(config: &str) -> Release {
    let mut release = example_release();
    release.config_name = config.to_string();
    release.user_data = Some("#!/bin/sh\necho {{SERVICE_NAME}} {{RELEASE_ID}}\n".into());
    let sg = format!("ec2::coinbase/deploy-test::{config}");
    for service in release.services.values_mut() {
        service.security_groups = vec![sg.clone()];
    }
    let web = release.services.get_mut("web").expect("the example has web");
    web.elbs = vec![format!("coinbase-deploy-test-{config}-web-elb")];
    web.target_groups = vec![format!("coinbase-deploy-test-{config}-web-tg")];
    web.profile = Some(format!("coinbase-deploy-test-{config}"));
    release
}

/// The template ASG web is cloned from in `config`, on launch template version 1: it joins the
/// config's ELB and target group, and sizes its clones from 1 to 3 by its tags.
fn provision_template(cloud: &SimCloud, config: &str, subnet_ids: Vec<String>, elbs: Vec<String>, target_group: String) {
    let template = template_for(&release_for(config), "web", 1, (1, 3));
    cloud.add_template(&template_name(config), FoundTemplate { subnet_ids, elbs, target_group_arns: vec![target_group], ..template });
}

fn alarm_name(config: &str) -> String {
    format!("{config}-web-5xx")
}

fn template_name(config: &str) -> String {
    format!("{config}-web-template")
}

/// Web as a clone of its config's template: nothing of the instances is described here.
fn clone_web_from_template(release: &mut Release) {
    let config = release.config_name.clone();
    let web = release.services.get_mut("web").expect("the example has web");
    *web = Service {
        template: Some(template_name(&config)),
        autoscaling: web.autoscaling.clone(),
        traffic: web.traffic.clone(),
        ..Service::default()
    };
}

/// Web's traffic block for `config`, its pacing drawn from `rng`.
fn traffic_for(config: &str, rng: &mut Rng) -> Traffic {
    Traffic {
        shift_per_step: Some(*rng.pick(&[5, 20, 30, 50, 100])),
        wait_per_step: Some(rng.between(0, 30)),
        bake_time: Some(rng.between(0, 120)),
        health_timeout: Some(rng.between(60, 300)),
        ..example_traffic(config)
    }
}

fn draw_release(rng: &mut Rng, config: &str, traffic_rng: Option<&mut Rng>) -> Release {
    let mut release = release_for(config);
    if let Some(traffic_rng) = traffic_rng {
        release.services.get_mut("web").expect("the example has web").traffic = Some(traffic_for(config, traffic_rng));
    }
    release.timeout = Some(*rng.pick(&[300, 600, 1_200]));
    let strategies =
        [Strategy::AllAtOnce, Strategy::OneThenAllWithCanary, Strategy::Percent25Steps, Strategy::Percent10Steps, Strategy::TenAtATime];
    let web = &mut release.services.get_mut("web").expect("the example has web").autoscaling;
    let min_size = rng.between(1, 3) as u32;
    web.min_size = Some(min_size);
    web.max_size = Some(min_size + rng.below(3) as u32);
    web.strategy = Some(*rng.pick(&strategies));
    web.max_terms = Some(rng.below(2) as u32);
    let worker = &mut release.services.get_mut("worker").expect("the example has worker").autoscaling;
    worker.min_size = Some(rng.between(1, 2) as u32);
    worker.max_size = Some(2);
    release
}

/// Rollback of concurrent deploys for the configs that roll back; now and then an explicit undeploy
/// safety, and an automatic undeploy where undeploy is allowed.
fn draw_undeploy_settings(release: &mut Release, rng: &mut Rng, rollback: bool) {
    if rollback {
        release.on_concurrent_deploy = Some(OnConcurrentDeploy::Rollback);
    }
    release.allow_undeploy = *rng.pick(&[None, None, Some(true), Some(false)]);
    if release.allow_undeploy() && rng.chance(150) {
        release.automatic_undeploy_minutes = Some(rng.between(1, 30));
    }
}

/// Web as a step rollout whose first instance never becomes healthy: under Odin's rules it must
/// keep stepping, and end (live, or timed out when too few are healthy) within its timeout.
/// How the release's predecessor leaves (`detach_strategy`, mostly the default) and whether it
/// may only change the AMI and user data of the live release (`safe_release`: releases of a
/// config differ in sizes and strategy, so a safe one after another is mostly refused).
fn draw_retirement_settings(release: &mut Release, rng: &mut Rng) {
    let strategies =
        [None, None, None, Some(DetachStrategy::Detach), Some(DetachStrategy::SkipDetach), Some(DetachStrategy::SkipDetachCheck)];
    release.detach_strategy = *rng.pick(&strategies);
    release.safe_release = rng.chance(150);
}

fn step_past_a_bad_instance(release: &mut Release, web_fate: &mut Fate, rng: &mut Rng) {
    let steps = [Strategy::Percent25Steps, Strategy::Percent10Steps, Strategy::TenAtATime, Strategy::TwentyAtATime];
    let web = &mut release.services.get_mut("web").expect("the example has web").autoscaling;
    web.strategy = Some(*rng.pick(&steps));
    let max_size = rng.between(2, 12) as u32;
    web.min_size = Some(rng.between(1, u64::from(max_size)) as u32);
    web.max_size = Some(max_size);
    // Sometimes enough spread to tolerate the bad instance, sometimes none (then it times out).
    web.spread = Some(*rng.pick(&[0.0, 0.2, 0.5]));
    *web_fate = Fate::FirstNeverHealthy;
}

fn draw_fate(rng: &mut Rng) -> Fate {
    match rng.below(10) {
        0 => Fate::NeverHealthy,
        1 => Fate::TerminatesAfterMs(rng.between(30_000, 400_000)),
        2 => Fate::Flapping(rng.between(5_000, 60_000)),
        _ => Fate::Healthy,
    }
}
