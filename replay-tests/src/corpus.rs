//! The corpus: how its histories were made, so anyone can see (and rerun) what each one records.
//!
//! Each [`Scenario`] runs the real runner over the in-memory store and queue and the simulated
//! cloud, on a virtual clock that starts at a fixed instant, with fixed release ids: the same code
//! always records the same bytes. `cargo run -p skald-replay-tests --bin freeze-corpus` writes
//! every scenario's history to `corpus/<name>.ndjson`, and [`broken`] variants of one of them to
//! `corpus/broken/`. The files are then frozen: `tests/corpus.rs` replays them with whatever
//! code is current, so a change that alters how an old history folds or what it decides fails.

use skald_engine::adapters::local::{example_release, example_traffic, provision_example, template_for, Local};
use skald_engine::adapters::memory::AppendFault;
use skald_engine::adapters::sim::{Fate, Op, Timings};
use skald_engine::codec::{self, StoredEvent};
use skald_engine::workflow::listener_rule::RuleAction;
use skald_engine::workflow::names::{TAG_CONFIG, TAG_PROJECT, TAG_SERVICE};
use skald_engine::workflow::release::{DetachStrategy, OnConcurrentDeploy, Strategy, Traffic};
use skald_engine::workflow::resources::FoundTemplate;
use skald_engine::workflow::{CloudError, Release, Timestamp};
use std::collections::BTreeMap;

/// 2026-11-21T12:00:00Z: every corpus run starts here.
pub const START: Timestamp = Timestamp(1_795_262_400_000);
/// A bound on the messages one scenario may take, so a bug fails instead of spinning.
const MESSAGES_MAX: usize = 5_000;

/// One way a deploy can go, and the history it leaves.
pub struct Scenario {
    /// The file name, without `.ndjson`.
    pub name: &'static str,
    /// What the history shows, for the corpus's README and for people reading a failure.
    pub shows: &'static str,
    /// Runs the scenario and returns the history of the deploy it is about.
    pub run: fn() -> Vec<StoredEvent>,
}

/// Every scenario in the corpus.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "success-multi-service", shows: "a first release of two services (web with a canary)", run: success_multi },
        Scenario { name: "success-single-service", shows: "a release of one service", run: success_single },
        Scenario {
            name: "success-replacing-previous",
            shows: "a second release: the old ASGs are detached, drained and deleted",
            run: success_replacing,
        },
        Scenario { name: "step-rollout", shows: "Percent25Steps raises capacity a quarter at a time", run: step_rollout },
        Scenario { name: "halt", shows: "a halt mid-deploy: FailureClean, what was launched is removed", run: halt },
        Scenario { name: "timeout", shows: "never healthy: Timeout, FailureClean, the old release stays", run: timeout },
        Scenario { name: "lock-denied", shows: "another deploy holds the lock: LockExists", run: lock_denied },
        Scenario { name: "bad-release", shows: "an invalid release is rejected before the lock", run: bad_release },
        Scenario { name: "resources-rejected", shows: "an AMI name matching two images: rejected after the lock", run: resources_rejected },
        Scenario { name: "terminations", shows: "instances terminating past max_terms halt the deploy", run: terminations },
        Scenario { name: "canary-failed", shows: "the canary instance dies: the rest is never launched", run: canary_failed },
        Scenario { name: "failure-dirty", shows: "deletes refused for good: FailureDirty, the lock still released", run: failure_dirty },
        Scenario {
            name: "launch-refused",
            shows: "the cloud refuses a launch for good: a Deploy error, its leftovers removed",
            run: launch_refused,
        },
        Scenario {
            name: "traffic-shift",
            shows: "a second release behind an ALB rule: its own target group, 25 % steps behind a health gate, bake, the old release and group deleted",
            run: traffic_shift,
        },
        Scenario {
            name: "traffic-first-copy",
            shows: "a first release behind an ALB: the production rule is the exemplar's copy, its Cognito authentication, conditions and tags recorded with the resources",
            run: traffic_first_copy,
        },
        Scenario {
            name: "traffic-halted",
            shows: "a halt mid-shift: traffic back to the old group first, then the new ASG and group deleted",
            run: traffic_halted,
        },
        Scenario {
            name: "traffic-alarm",
            shows: "the shift's gate alarm goes off mid-shift: recorded with the health check, traffic back to the old group, the new release deleted",
            run: traffic_alarm,
        },
        Scenario {
            name: "template-clone",
            shows: "a second release of a service cloned from a template ASG: a new launch template version, sizes from the template's tags, the first clone retired",
            run: template_clone,
        },
        Scenario {
            name: "rollback-concurrent",
            shows: "on_concurrent_deploy: rollback: a second deploy cancels the running one, waits for its cleanup, then deploys",
            run: rollback_concurrent,
        },
        Scenario {
            name: "undeploy",
            shows: "undeploy of a live traffic-shifted release: its rule removed, its ASGs and target group deleted",
            run: undeploy,
        },
        Scenario {
            name: "undeploy-refused",
            shows: "undeploy of a live production release that does not allow it: refused before the lock",
            run: undeploy_refused,
        },
        Scenario {
            name: "step-rollout-odin",
            shows: "Odin's rules: a 25 % step rollout whose first instance never becomes healthy keeps stepping at every check and goes live",
            run: step_rollout_odin,
        },
        Scenario {
            name: "asg-missing",
            shows: "Odin's rules: the new ASG deleted mid-deploy fails the deploy (AsgMissing, a halt) at the next check, not at the timeout",
            run: asg_missing,
        },
        Scenario {
            name: "capacity-reasserted",
            shows: "Odin's rules: an ASG lowered by someone else mid-deploy is set back at the next check (never lowered by a deploy)",
            run: capacity_reasserted,
        },
        Scenario {
            name: "safe-release-refused",
            shows: "safe_release: a second release changing web's instance type and the subnets, compared with the live release once locked, refused naming both before anything launches",
            run: safe_release_refused,
        },
        Scenario {
            name: "slow-start-skip-detach-check",
            shows: "a second release whose target group has a 120 s slow start and detach_strategy SkipDetachCheck: the old web ASG is detached 120 s after the new release is healthy and deleted without waiting to see it detached",
            run: slow_start_skip_detach_check,
        },
        Scenario {
            name: "skip-detach",
            shows: "a second release with detach_strategy SkipDetach: the old ASGs are deleted without being detached",
            run: skip_detach,
        },
        Scenario {
            name: "retried-and-resumed",
            shows: "throttled health checks retried with backoff; a launch resumed after a lost append",
            run: retried_and_resumed,
        },
    ]
}

/// The example release, user data inlined.
pub fn release() -> Release {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\necho {{SERVICE_NAME}} {{RELEASE_ID}}\n".into());
    release
}

/// Corpus release ids: `n` formatted into 26 alphanumerics.
pub fn id(n: u32) -> String {
    format!("01JCORPUS{n:017}")
}

fn world(release: &Release) -> Local {
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, release);
    local
}

/// Delivers messages until `deploy` ends, and returns its stored history.
fn finish(local: &Local, deploy: &str) -> Vec<StoredEvent> {
    for _ in 0..MESSAGES_MAX {
        if local.state(deploy).is_finished() {
            return local.store.history(deploy);
        }
        assert!(local.deliver_next().is_some(), "the queue ran dry before deploy {deploy} ended");
    }
    panic!("deploy {deploy} did not end within {MESSAGES_MAX} messages");
}

/// Delivers messages until `deploy` has recorded an event of type `name`.
fn until_event(local: &Local, deploy: &str, name: &str) {
    for _ in 0..MESSAGES_MAX {
        if local.history(deploy).iter().any(|r| r.event.name() == name) {
            return;
        }
        assert!(local.deliver_next().is_some(), "the queue ran dry before {name}");
    }
    panic!("no {name} within {MESSAGES_MAX} messages");
}

/// Runs a first release to its end, then returns the world for a second.
fn after_first_release(release: &Release) -> Local {
    let local = world(release);
    local.submit(release, &id(1));
    finish(&local, &id(1));
    local
}

fn deploy(release: &Release, setup: impl FnOnce(&Local)) -> Vec<StoredEvent> {
    let local = world(release);
    setup(&local);
    local.submit(release, &id(1));
    finish(&local, &id(1))
}

/// The example release with web shifting traffic 25 % a time behind its listener rule.
fn traffic_release() -> Release {
    let mut release = release();
    let web = release.services.get_mut("web").expect("the example has web");
    web.traffic = Some(Traffic { shift_per_step: Some(25), ..example_traffic(&release.config_name) });
    release
}

fn traffic_shift() -> Vec<StoredEvent> {
    let release = traffic_release();
    let local = after_first_release(&release);
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn traffic_first_copy() -> Vec<StoredEvent> {
    let release = traffic_release();
    let local = world(&release);
    let traffic = release.services["web"].traffic.clone().expect("web shifts traffic");
    let cognito = RuleAction {
        kind: "authenticate-cognito".into(),
        order: Some(1),
        settings: BTreeMap::from([("user_pool_arn".to_string(), "arn:aws:cognito-idp:us-east-1:123456789012:userpool/shop".to_string())]),
        ..RuleAction::default()
    };
    let tags = BTreeMap::from([("Team".to_string(), "storefront".to_string())]);
    local.cloud.shape_rule(&traffic.listener, traffic.exemplar_priority(), &[cognito], &tags);
    local.submit(&release, &id(1));
    finish(&local, &id(1))
}

fn traffic_halted() -> Vec<StoredEvent> {
    let release = traffic_release();
    let local = after_first_release(&release);
    local.submit(&release, &id(2));
    until_event(&local, &id(2), "TrafficShifted");
    local.halt(&release, "error rate up on the new release");
    finish(&local, &id(2))
}

fn traffic_alarm() -> Vec<StoredEvent> {
    let mut release = traffic_release();
    release.services.get_mut("web").and_then(|w| w.traffic.as_mut()).expect("web shifts traffic").alarms = vec!["web-5xx".into()];
    let local = world(&release);
    local.cloud.set_alarm("web-5xx", false);
    local.submit(&release, &id(1));
    finish(&local, &id(1));
    local.submit(&release, &id(2));
    until_event(&local, &id(2), "TrafficShifted");
    local.cloud.set_alarm("web-5xx", true);
    finish(&local, &id(2))
}

fn template_clone() -> Vec<StoredEvent> {
    let mut release = release();
    release.services.insert("web".into(), serde_json::from_str(r#"{ "template": "web-template" }"#).expect("a template service parses"));
    let local = world(&release);
    let scope = [(TAG_PROJECT, release.project_name.as_str()), (TAG_CONFIG, release.config_name.as_str()), (TAG_SERVICE, "web")];
    let target_group = local.cloud.add_target_group("web-template-tg", &scope);
    let subnet_ids = vec!["subnet-00000000000000000".to_string()];
    let template = FoundTemplate { subnet_ids, target_group_arns: vec![target_group], ..template_for(&release, "web", 3, (2, 3)) };
    local.cloud.add_template("web-template", template);
    local.submit(&release, &id(1));
    finish(&local, &id(1));
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn rollback_concurrent() -> Vec<StoredEvent> {
    let mut release = release();
    release.on_concurrent_deploy = Some(OnConcurrentDeploy::Rollback);
    let local = world(&release);
    local.submit(&release, &id(1));
    until_event(&local, &id(1), "ServiceLaunched");
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn undeploy() -> Vec<StoredEvent> {
    let mut release = traffic_release();
    release.allow_undeploy = Some(true);
    let local = after_first_release(&release);
    local.undeploy(&release, &id(2), "the service is retired");
    finish(&local, &id(2))
}

fn undeploy_refused() -> Vec<StoredEvent> {
    let local = after_first_release(&release());
    local.undeploy(&release(), &id(2), "cleaning up");
    finish(&local, &id(2))
}

fn safe_release_refused() -> Vec<StoredEvent> {
    let local = after_first_release(&release());
    let mut changed = release();
    changed.safe_release = true;
    changed.services.get_mut("web").expect("the example has web").instance_type = "m5.large".into();
    changed.subnets = vec!["other_private_subnet_a".into()];
    local.submit(&changed, &id(2));
    finish(&local, &id(2))
}

fn slow_start_skip_detach_check() -> Vec<StoredEvent> {
    let mut release = release();
    release.detach_strategy = Some(DetachStrategy::SkipDetachCheck);
    let local = after_first_release(&release);
    local.cloud.set_slow_start(&release.services["web"].target_groups[0], 120);
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn skip_detach() -> Vec<StoredEvent> {
    let mut release = release();
    release.detach_strategy = Some(DetachStrategy::SkipDetach);
    let local = after_first_release(&release);
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn success_multi() -> Vec<StoredEvent> {
    deploy(&release(), |_| {})
}

fn success_single() -> Vec<StoredEvent> {
    let mut release = release();
    release.services.remove("web");
    deploy(&release, |_| {})
}

fn success_replacing() -> Vec<StoredEvent> {
    let local = after_first_release(&release());
    local.submit(&release(), &id(2));
    finish(&local, &id(2))
}

fn step_rollout() -> Vec<StoredEvent> {
    let mut release = release();
    let web = &mut release.services.get_mut("web").expect("the example has web").autoscaling;
    (web.min_size, web.max_size, web.spread, web.strategy) = (Some(8), Some(8), None, Some(Strategy::Percent25Steps));
    deploy(&release, |_| {})
}

/// The new web ASG of release `n` in the example's project-config.
fn web_asg(release: &Release, n: u32) -> String {
    format!("{}-{}-web-{}", release.project_name, release.config_name, id(n))
}

fn step_rollout_odin() -> Vec<StoredEvent> {
    let mut release = release();
    let web = &mut release.services.get_mut("web").expect("the example has web").autoscaling;
    (web.min_size, web.max_size, web.spread, web.strategy) = (Some(5), Some(6), Some(0.2), Some(Strategy::Percent25Steps));
    deploy(&release, |local| local.cloud.set_fate("-web-", Fate::FirstNeverHealthy))
}

fn asg_missing() -> Vec<StoredEvent> {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    until_event(&local, &id(1), "HealthObserved");
    local.cloud.remove_asg(&web_asg(&release, 1));
    finish(&local, &id(1))
}

fn capacity_reasserted() -> Vec<StoredEvent> {
    let mut release = release();
    release.services.get_mut("web").expect("the example has web").autoscaling.strategy = Some(Strategy::AllAtOnce);
    let local = world(&release);
    local.submit(&release, &id(1));
    until_event(&local, &id(1), "ServiceLaunched");
    local.cloud.resize_asg(&web_asg(&release, 1), 1, 1);
    finish(&local, &id(1))
}

fn halt() -> Vec<StoredEvent> {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    until_event(&local, &id(1), "ServiceLaunched");
    local.halt(&release, "wrong build");
    finish(&local, &id(1))
}

fn timeout() -> Vec<StoredEvent> {
    let local = after_first_release(&release());
    local.cloud.set_fate(&id(2), Fate::NeverHealthy);
    local.submit(&release(), &id(2));
    finish(&local, &id(2))
}

fn lock_denied() -> Vec<StoredEvent> {
    let release = release();
    let local = world(&release);
    local.submit(&release, &id(1));
    until_event(&local, &id(1), "ServiceLaunched");
    local.submit(&release, &id(2));
    finish(&local, &id(2))
}

fn bad_release() -> Vec<StoredEvent> {
    let mut release = release();
    release.services.get_mut("web").expect("the example has web").autoscaling.min_size = Some(9);
    deploy(&release, |_| {})
}

fn resources_rejected() -> Vec<StoredEvent> {
    // An AMI named like the release's but not opted in: the name is ambiguous, nothing launches.
    deploy(&release(), |local| local.cloud.add_image("ami-0ffffffffffffffff", &[("Name", "ubuntu")]))
}

fn terminations() -> Vec<StoredEvent> {
    let mut release = release();
    release.services.get_mut("worker").expect("the example has worker").autoscaling.max_terms = Some(0);
    deploy(&release, |local| local.cloud.set_fate("worker", Fate::TerminatesAfterMs(60_000)))
}

fn canary_failed() -> Vec<StoredEvent> {
    deploy(&release(), |local| local.cloud.set_fate("-web-", Fate::TerminatesAfterMs(60_000)))
}

fn failure_dirty() -> Vec<StoredEvent> {
    deploy(&release(), |local| {
        local.cloud.set_fate("-web-", Fate::NeverHealthy);
        local.cloud.fail(Op::Delete, CloudError::permanent("AccessDenied", "not allowed"), None);
    })
}

fn launch_refused() -> Vec<StoredEvent> {
    // Every launch is refused: the deploy fails at the first, and still removes whatever that
    // launch may have half-created before the refusal.
    deploy(&release(), |local| local.cloud.fail(Op::Launch, CloudError::permanent("ValidationError", "bad instance type"), None))
}

fn retried_and_resumed() -> Vec<StoredEvent> {
    let local = after_first_release(&release());
    local.cloud.fail(Op::Observe, CloudError::transient("Throttling"), Some(3));
    // Appends 1-4 (request .. resources) and 5 (web's launch intent) land; the 6th, the launch's
    // outcome, is lost, as if the worker died between creating the ASG and recording it.
    local.store.inject(&[None, None, None, None, None, Some(AppendFault::Refuse)]);
    local.submit(&release(), &id(2));
    finish(&local, &id(2))
}

/// A history made unverifiable on purpose, and what verification must say about it.
pub struct Broken {
    pub name: &'static str,
    pub events: Vec<StoredEvent>,
    /// Which check fails (`replay::Failure::check`) and at which seq.
    pub check: &'static str,
    pub seq: u64,
}

/// Damaged copies of `good` (a history with a launch), one per way a history can go wrong.
pub fn broken(good: &[StoredEvent]) -> Vec<Broken> {
    let launch = good.iter().position(|e| e.kind == "ServiceLaunched").expect("the history launches something");
    let seq = good[launch].seq;
    let more_instances = |e: &mut StoredEvent| e.body["desired"] = (e.body["desired"].as_u64().expect("desired is a number") + 5).into();

    // Edited in place: the event's hash no longer matches its content.
    let mut tampered = good.to_vec();
    more_instances(&mut tampered[launch]);

    // An event removed: the sequence has a gap.
    let mut gap = good.to_vec();
    gap.remove(launch);

    // A type this skald does not know, chained properly (as a newer skald would write it).
    let mut unknown = good.to_vec();
    unknown[launch].kind = "ServiceTeleported".into();
    rechain(&mut unknown, launch);

    // A newer version of a known type, chained properly.
    let mut newer = good.to_vec();
    newer[launch].v += 1;
    rechain(&mut newer, launch);

    // A forger who rewrites the whole chain (hashes included) but not the recorded states: the
    // state after the altered event is not the state the recording skald reached.
    let mut forged_state = good.to_vec();
    more_instances(&mut forged_state[launch]);
    rechain(&mut forged_state, launch);

    // A forger who recomputes the states too: today's decide would not have recorded it.
    let mut forged_decision = good.to_vec();
    more_instances(&mut forged_decision[launch]);
    restate(&mut forged_decision, launch);

    vec![
        Broken { name: "tampered-event", events: tampered, check: "chain", seq },
        Broken { name: "gap", events: gap, check: "sequence", seq: seq + 1 },
        Broken { name: "unknown-type", events: unknown, check: "decode", seq },
        Broken { name: "newer-version", events: newer, check: "decode", seq },
        Broken { name: "forged-state", events: forged_state, check: "state", seq },
        Broken { name: "forged-decision", events: forged_decision, check: "decision", seq },
    ]
}

/// Recomputes every hash from `from` on, as someone with write access to the table could.
fn rechain(events: &mut [StoredEvent], from: usize) {
    for i in from..events.len() {
        let previous = if i == 0 { String::new() } else { events[i - 1].hash.clone() };
        events[i].hash = codec::chain_hash(&previous, &events[i]);
    }
}

/// Recomputes every state hash and hash from `from` on by folding with today's code.
fn restate(events: &mut [StoredEvent], from: usize) {
    let recorded: Vec<_> = events.iter().map(|e| codec::decode(e).expect("restate needs a history that decodes")).collect();
    let mut state = skald_engine::workflow::State::default();
    for (i, r) in recorded.iter().enumerate() {
        state = skald_engine::workflow::evolve(state, r);
        if i >= from {
            events[i].state_hash = codec::state_hash(&state);
        }
    }
    rechain(events, from);
}
