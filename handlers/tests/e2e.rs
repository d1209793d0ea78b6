//! End to end, as a user runs skald: a `skald worker` process and the `skald` CLI against a local
//! AWS API (moto, started by the test support unless SKALD_TEST_AWS_ENDPOINT names one). Each test
//! has its own table, queue and project-config. Releases use AllAtOnce and a 20 s timeout, so the
//! first health check comes after 10 s of real time.

mod support;

use serde_json::Value;
use skald_engine::ports::Clock;
use skald_engine::testing::moto;
use skald_engine::workflow::Timestamp;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{deploy, sent_id, Skald, WAIT_MAX};

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_succeeds_and_the_next_release_replaces_it() {
    let skald = Skald::start("e2e-replace").await;
    let file = skald.release_file(&skald.release, "release.json");

    let (first, first_out) = deploy(&skald, &file, true);
    let first_asgs = skald.asg_names().await;
    let (second, second_out) = deploy(&skald, &file, true);

    assert!(first.status.success(), "{first_out}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(first_out.contains("=> Success"), "{first_out}");
    assert!(second.status.success(), "{second_out}");
    let remaining = skald.asg_names().await;
    assert_eq!(remaining.len(), 2, "{remaining:?}");
    assert!(remaining.iter().all(|n| !first_asgs.contains(n)), "the first release's ASGs are gone: {remaining:?}");
    let history = skald.history();
    assert_eq!(history.len(), 2);
    assert!(history
        .iter()
        .all(|r| r["end"] == "Success" && !r["requested_by"].is_null() && r["release_digest"].as_str().unwrap().len() == 64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_halt_mid_deploy_fails_clean_and_removes_the_new_asgs() {
    let skald = Skald::start("e2e-halt").await;
    let file = skald.release_file(&skald.release, "release.json");
    let (_, out) = deploy(&skald, &file, false);
    let id = sent_id(&out);
    let started = Instant::now();
    while skald.status()["phase"] != "deploying" {
        assert!(started.elapsed() < WAIT_MAX, "never started deploying: {}", skald.status());
        std::thread::sleep(Duration::from_millis(500));
    }

    let halted = skald.run(&["halt", &skald.release.project_name, &skald.release.config_name, "--reason", "bad build"]);
    let row = skald.wait_for_end(&id);

    assert!(halted.status.success());
    assert_eq!(row["end"], "FailureClean", "{row}");
    assert_eq!(row["error"], "Halt", "{row}");
    assert!(skald.asg_names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_deploy_while_one_runs_gets_lock_exists_and_the_first_is_unaffected() {
    let skald = Skald::start("e2e-lock").await;
    let file = skald.release_file(&skald.release, "release.json");

    let first = sent_id(&deploy(&skald, &file, false).1);
    let started = Instant::now();
    while skald.status()["phase"] != "deploying" {
        assert!(started.elapsed() < WAIT_MAX, "never started deploying");
        std::thread::sleep(Duration::from_millis(500));
    }
    let second = sent_id(&deploy(&skald, &file, false).1);

    let second_row = skald.wait_for_end(&second);
    let first_row = skald.wait_for_end(&first);
    assert_eq!(second_row["error"], "LockExists", "{second_row}");
    assert_eq!(first_row["end"], "Success", "{first_row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_request_delivered_twice_is_one_deploy() {
    let skald = Skald::start("e2e-duplicate").await;
    let now = skald_engine::adapters::memory::SystemClock.now();

    skald.send_raw("01JE2EDUPLICATE00000000001", now).await;
    skald.send_raw("01JE2EDUPLICATE00000000001", now).await;
    let row = skald.wait_for_end("01JE2EDUPLICATE00000000001");

    assert_eq!(row["end"], "Success", "{row}");
    assert_eq!(skald.history().len(), 1);
    assert_eq!(skald.asg_names().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_created_at_is_a_bad_release() {
    let skald = Skald::start("e2e-stale").await;
    let twenty_minutes_ago = Timestamp(skald_engine::adapters::memory::SystemClock.now().as_ms() - 20 * 60 * 1000);

    skald.send_raw("01JE2ESTALE000000000000001", twenty_minutes_ago).await;
    let row = skald.wait_for_end("01JE2ESTALE000000000000001");

    assert_eq!(row["end"], "FailureClean", "{row}");
    assert_eq!(row["error"], "BadRelease", "{row}");
    assert!(row["reason"].as_str().unwrap().starts_with("created_at:"), "{row}");
    assert!(skald.asg_names().await.is_empty());
}

/// How many times the worker is killed during each deploy.
const KILLS_PER_DEPLOY: u32 = 8;

/// A small deterministic PRNG (xorshift64*), so a failing kill schedule can be rerun.
struct Rng(u64);

impl Rng {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_at_random_points_still_brings_every_deploy_to_its_end_without_leaks() {
    let seed = std::env::var("SKALD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_CAFE_u64);
    eprintln!("crash schedule seed {seed} (rerun with SKALD_CRASH_SEED={seed})");
    let mut rng = Rng(seed | 1);
    let mut skald = Skald::start("e2e-crash").await;
    skald.release.timeout = Some(90);
    let file = skald.release_file(&skald.release, "release.json");
    let mut kills = 0;

    let mut ends = Vec::new();
    for _ in 0..2 {
        let id = sent_id(&deploy(&skald, &file, false).1);
        // Faults first: the worker dies by SIGKILL at random points (no cleanup, no graceful
        // shutdown; messages in hand come back after the queue's 10 s visibility timeout) ...
        for _ in 0..KILLS_PER_DEPLOY {
            std::thread::sleep(Duration::from_millis(500 + rng.next_ms(5_500)));
            skald.worker.kill().unwrap();
            skald.worker.wait().unwrap();
            kills += 1;
            skald.worker = skald.command(&["worker", "--sweep-secs", "5"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        }
        // ... then liveness: left alone, the deploy must reach its end.
        ends.push(skald.wait_for_end(&id));
    }

    eprintln!("{kills} kills; ends {:?}", ends.iter().map(|r| r["end"].clone()).collect::<Vec<_>>());
    assert_eq!(kills, 2 * KILLS_PER_DEPLOY);
    let last_success = ends.iter().rev().find(|r| r["end"] == "Success").map(|r| r["release_id"].as_str().unwrap().to_string());
    let asgs = skald.asg_names().await;
    match last_success {
        Some(id) => {
            assert_eq!(asgs.len(), 2, "{asgs:?} (seed {seed})");
            assert!(asgs.iter().all(|n| n.ends_with(&id)), "only the last successful release's ASGs: {asgs:?} (seed {seed})");
        }
        None => assert!(asgs.is_empty(), "{asgs:?} (seed {seed})"),
    }
    let ec2 = aws_sdk_ec2::Client::new(&moto::aws_config().await);
    let templates = ec2.describe_launch_templates().send().await.unwrap();
    let ours: Vec<&str> = templates
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name())
        .filter(|n| n.starts_with(&skald.release.project_name))
        .collect();
    assert_eq!(ours.len(), asgs.len(), "no stray launch templates: {ours:?} (seed {seed})");
    assert!(skald.status()["end"].is_string(), "no deploy left running");
    let lock_free = skald.run(&["status", &skald.release.project_name, &skald.release.config_name, "--json"]);
    assert!(lock_free.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_stops_cleanly_on_sigterm() {
    // Given a worker waiting on an empty queue (a 20 s long poll)
    let mut skald = Skald::start("e2e-sigterm").await;
    std::thread::sleep(Duration::from_secs(2));

    // When it is sent SIGTERM
    let started = Instant::now();
    let sent = Command::new("kill").args(["-TERM", &skald.worker.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(status) = skald.worker.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the worker did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };

    // Then it stops at once, successfully, without waiting out its long poll
    assert!(sent.success());
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_verifies_a_real_history_and_pinpoints_an_event_altered_in_the_table() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let skald = Skald::start("e2e-replay").await;
    let file = skald.release_file(&skald.release, "release.json");
    let (_, out) = deploy(&skald, &file, false);
    let id = sent_id(&out);
    skald.wait_for_end(&id);

    // Given: the history as the worker recorded it verifies, from the table and from an export.
    let verified = skald.run(&["replay", &id, "--verify"]);
    let export = skald.run(&["export", &id]);
    let exported = skald.dir.join("history.ndjson");
    std::fs::write(&exported, &export.stdout).unwrap();
    let from_file = skald.run(&["replay", "--file", exported.to_str().unwrap(), "--verify"]);
    assert!(verified.status.success(), "{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    assert!(from_file.status.success(), "{}", String::from_utf8_lossy(&from_file.stdout));
    let launch: Value = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| event["type"] == "ServiceLaunched")
        .unwrap();
    let seq = launch["seq"].as_u64().unwrap();

    // When: someone with write access to the table raises a launch's instance count in place.
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto::aws_config().await);
    let key = |item: aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder| {
        item.table_name(&skald.table).key("pk", AttributeValue::S(format!("deploy#{id}"))).key("sk", AttributeValue::N(seq.to_string()))
    };
    let mut item = key(dynamodb.get_item()).consistent_read(true).send().await.unwrap().item.unwrap();
    let mut body = item["body"].as_m().unwrap().clone();
    body.insert("desired".into(), AttributeValue::N("7".into()));
    item.insert("body".into(), AttributeValue::M(body));
    dynamodb.put_item().table_name(&skald.table).set_item(Some(item)).send().await.unwrap();

    // Then: replay --verify exits 1 and names that seq and the broken chain.
    let tampered = skald.run(&["replay", &id, "--verify", "--json"]);
    assert_eq!(tampered.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&tampered.stdout).unwrap();
    assert_eq!((verdict["check"].as_str(), verdict["seq"].as_u64()), (Some("chain"), Some(seq)), "{verdict}");
}
