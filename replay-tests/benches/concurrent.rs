//! Steps per second with 1,000 concurrent simulated deploys: the real runner over the in-memory
//! store and queue and the simulated cloud, each deploy on its own project-config, all submitted
//! at once and driven to their ends on one thread.
//! `cargo bench -p skald-replay-tests --bench concurrent`

mod common;

use skald_engine::adapters::local::Local;
use skald_engine::adapters::sim::Timings;
use skald_engine::workflow::names::{instance_profile_paths, ALL, DEPLOYER, TAG_CONFIG, TAG_DEPLOY_WITH, TAG_PROJECT, TAG_SERVICE};
use skald_replay_tests::sim::world::release_for;
use std::time::Instant;

const DEPLOYS: usize = 1_000;

fn main() {
    let local = Local::new(common::START, Timings::default());
    let base = release_for("production");
    let project = base.project_name.clone();
    let opt_in = (TAG_DEPLOY_WITH, DEPLOYER);
    local.cloud.add_image("ami-0a1b2c3d4e5f60718", &[("Name", base.ami.as_str()), opt_in]);
    for (i, subnet) in base.subnets.iter().enumerate() {
        local.cloud.add_subnet(&format!("subnet-0{i:016x}"), &[("Name", subnet.as_str()), opt_in]);
    }
    let mut ids = Vec::new();
    for n in 0..DEPLOYS {
        let config = format!("c{n:04}");
        let release = release_for(&config);
        let web = &release.services["web"];
        let sg_tags = [("Name", web.security_groups[0].as_str()), (TAG_PROJECT, &project), (TAG_CONFIG, &config), (TAG_SERVICE, ALL)];
        local.cloud.add_security_group(&format!("sg-0{n:016x}"), &sg_tags);
        let scope = [(TAG_PROJECT, project.as_str()), (TAG_CONFIG, config.as_str()), (TAG_SERVICE, "web")];
        local.cloud.add_elb(&web.elbs[0], &scope);
        local.cloud.add_target_group(&web.target_groups[0], &scope);
        local.cloud.add_instance_profile(web.profile.as_deref().unwrap(), &instance_profile_paths(DEPLOYER, &project, &config, "web")[0]);
        let id = format!("01JBENCH{n:018}");
        local.submit(&release, &id);
        ids.push(id);
    }

    let started = Instant::now();
    let mut messages = 0u64;
    while local.deliver_next().is_some() {
        messages += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let ended = ids.iter().filter(|id| local.state(id).end.as_ref().is_some_and(|e| e.name() == "Success")).count();
    assert_eq!(ended, DEPLOYS, "every deploy succeeds");
    let stats = local.store.stats();
    println!("{DEPLOYS} concurrent deploys on the simulated cloud, one thread ({})", common::machine());
    println!("| deploys | messages (runner steps) | events appended | wall time | steps/s | events/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {DEPLOYS} | {messages} | {} | {secs:.2} s | {:.0} | {:.0} |",
        stats.events_written,
        messages as f64 / secs,
        stats.events_written as f64 / secs
    );
}
