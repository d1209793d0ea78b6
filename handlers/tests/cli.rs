//! The CLI as a user runs it: the real `skald` binary, its output and its exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn skald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skald")).args(args).output().expect("skald runs")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A scratch directory of this test's own, under the target dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_runs_two_deploys_to_success_and_exits_zero() {
    let out = skald(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);

    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("=> Success").count(), 2, "{stdout}");
    assert!(stdout.contains("first release's ASGs deleted: yes"), "{stdout}");
    assert!(stdout.contains("locks left: 0"), "{stdout}");
    assert!(stdout.contains("AsgDeleted"), "{stdout}");
}

#[test]
fn validate_accepts_the_example_release_and_reads_its_userdata() {
    let out = skald(&["validate", examples().join("release.json").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("release.json: valid\n"));
}

#[test]
fn validate_prints_one_line_per_problem_and_exits_one() {
    let dir = scratch("validate-problems");
    let text = std::fs::read_to_string(examples().join("release.json")).unwrap();
    let text = text.replace("\"min_size\": 2", "\"min_size\": 9").replace("\"t3.small\"", "\"small\"").replace("{{USER_DATA_FILE}}", "x");
    let file = dir.join("release.json");
    std::fs::write(&file, text).unwrap();

    let out = skald(&["validate", file.to_str().unwrap()]);

    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines.contains(&"error: services.web.autoscaling.min_size: 9 is above max_size 4"), "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("error: services.worker.instance_type: `small`")), "{stdout}");
}

#[test]
fn validate_names_an_unknown_key_and_a_missing_userdata_file() {
    let dir = scratch("validate-parse");
    let unknown = dir.join("unknown.json");
    std::fs::write(
        &unknown,
        r#"{"project_name":"p","config_name":"c","ami":"a","services":{"web":{"instance_type":"t3.micro","instance_typo":"x"}}}"#,
    )
    .unwrap();
    let out = skald(&["validate", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("error: services.web.instance_typo: unknown field `instance_typo`"), "{stdout}");

    let needs_file = dir.join("needs-file.json");
    std::fs::write(&needs_file, r#"{"project_name":"p","config_name":"c","ami":"a","user_data":"{{USER_DATA_FILE}}","services":{}}"#)
        .unwrap();
    let out = skald(&["validate", needs_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("error: user_data: {{USER_DATA_FILE}} needs"));
}

/// Odin's own example releases, copied byte for byte with their `.userdata` files.
#[test]
fn validate_accepts_odins_example_releases() {
    for name in ["deploy-test-release.json", "null-release.json"] {
        let out = skald(&["validate", examples().join("odin").join(name).to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        assert!(stdout.ends_with(&format!("{name}: valid\n")), "{stdout}");
    }
}

#[test]
fn validate_refuses_inline_user_data_beside_a_userdata_file_naming_both() {
    let dir = scratch("validate-userdata-conflict");
    let file = dir.join("release.json");
    let text = std::fs::read_to_string(examples().join("odin/null-release.json")).unwrap();
    std::fs::write(&file, text.replacen("\"ami\"", "\"user_data\": \"#!/bin/sh\",\n  \"ami\"", 1)).unwrap();
    std::fs::write(dir.join("release.json.userdata"), "#cloud-config\n").unwrap();

    let out = skald(&["validate", file.to_str().unwrap()]);

    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("error: user_data: is given inline and "), "{stdout}");
    assert!(stdout.contains("release.json.userdata exists"), "{stdout}");
}

#[test]
fn validate_names_an_odin_template_variable_in_the_userdata_file() {
    let dir = scratch("validate-userdata-variable");
    let file = dir.join("release.json");
    std::fs::copy(examples().join("odin/null-release.json"), &file).unwrap();
    std::fs::write(dir.join("release.json.userdata"), "aws s3 cp s3://{{RELEASE_BUCKET}}/app .\n").unwrap();

    let out = skald(&["validate", file.to_str().unwrap()]);

    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("error: user_data: `{{RELEASE_BUCKET}}`"), "{stdout}");
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(skald(&["validate"]).status.code(), Some(2));
    assert_eq!(skald(&["no-such-command"]).status.code(), Some(2));
}

// ---- replay and export: the frozen corpus, read by the binary ---------------------------------

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../replay-tests/corpus").join(name)
}

fn ndjson_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ndjson")).collect();
    files.sort();
    files
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn replay_verify_passes_every_corpus_history() {
    for file in ndjson_files(&corpus("")) {
        let out = skald(&["replay", "--file", file.to_str().unwrap(), "--verify"]);

        assert!(out.status.success(), "{}: {}{}", file.display(), stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(stdout(&out).starts_with("verified "), "{}", stdout(&out));
    }
}

#[test]
fn replay_verify_fails_every_broken_history_naming_the_seq_and_check() {
    let expected = [
        ("forged-decision", "decision"),
        ("forged-state", "state"),
        ("gap", "sequence"),
        ("newer-version", "decode"),
        ("tampered-event", "chain"),
        ("unknown-type", "decode"),
    ];
    for (name, check) in expected {
        let file = corpus(&format!("broken/{name}.ndjson"));

        let human = skald(&["replay", "--file", file.to_str().unwrap(), "--verify"]);
        let json = skald(&["replay", "--file", file.to_str().unwrap(), "--verify", "--json"]);

        assert_eq!(human.status.code(), Some(1), "{name}");
        assert!(stdout(&human).starts_with(&format!("verification failed ({check} check): seq ")), "{name}: {}", stdout(&human));
        let verdict: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
        assert_eq!((verdict["ok"].as_bool(), verdict["check"].as_str()), (Some(false), Some(check)), "{name}");
        assert!(verdict["seq"].as_u64().is_some(), "{name}: {verdict}");
    }
}

#[test]
fn a_diverging_decision_is_shown_with_both_sides_in_full() {
    let file = corpus("broken/forged-decision.ndjson");

    let out = skald(&["replay", "--file", file.to_str().unwrap(), "--verify", "--json"]);

    let verdict: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(verdict["recorded"][0]["type"], "ServiceLaunched");
    assert_eq!(verdict["recorded"][0]["body"]["desired"], 6, "the forged count");
    assert_eq!(verdict["expected"]["kind"], "command");
    assert_eq!(verdict["expected"]["command"]["spec"]["desired_capacity"], 1, "what today's code launches");
}

#[test]
fn replay_prints_the_timeline_with_requester_phases_and_outcome() {
    let file = corpus("halt.ndjson");

    let out = skald(&["replay", "--file", file.to_str().unwrap()]);
    let json = skald(&["replay", "--file", file.to_str().unwrap(), "--json"]);

    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("FailureClean after "), "{text}");
    assert!(text.contains("#1   DeployRequested"), "{text}");
    assert!(text.contains("halt requested: wrong build"), "{text}");
    assert!(text.contains("phases:\n  validating"), "{text}");
    assert!(text.contains("cleaning up after a failure"), "{text}");
    let timeline: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(timeline["end"], "FailureClean");
    assert_eq!(timeline["events"].as_array().unwrap().len(), text.lines().filter(|l| l.contains("  #")).count());
    let phases: Vec<&str> = timeline["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"validating"));
    assert_eq!(phases.last(), Some(&"FailureClean"));
}

#[test]
fn replay_at_shows_the_state_at_that_seq() {
    let file = corpus("success-replacing-previous.ndjson");
    let file = file.to_str().unwrap();

    let launching = skald(&["replay", "--file", file, "--at", "5"]);
    let json = skald(&["replay", "--file", file, "--at", "16", "--json"]);
    let beyond = skald(&["replay", "--file", file, "--at", "999"]);

    let text = stdout(&launching);
    assert!(text.starts_with("state after seq 5 "), "{text}");
    assert!(text.contains("pending: launch "), "seq 5 announced web's launch: {text}");
    assert!(text.contains("launch announced, not confirmed"), "{text}");
    let state: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!((state["seq"].as_u64(), state["phase"].as_str()), (Some(16), Some("retiring the old release")));
    assert_eq!(state["state"]["healthy"], true);
    assert_eq!(beyond.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&beyond.stderr).contains("the history ends at seq 27"));
}

#[test]
fn replay_html_writes_one_self_contained_report() {
    let dir = scratch("replay-html");
    let report = dir.join("report.html");
    let file = corpus("step-rollout.ndjson");

    let out = skald(&["replay", "--file", file.to_str().unwrap(), "--html", report.to_str().unwrap()]);

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("<h2>Service web</h2>") && html.contains("<h2>Service worker</h2>"));
    assert!(html.contains("class=\"healthy\"") && html.contains("class=\"desired\""), "a chart per service");
    assert!(html.contains("verified: 30 events"), "the verdict is in the report");
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("<script"), "nothing is fetched or run");
}

#[test]
fn replay_at_shows_a_services_share_of_traffic() {
    // Given a recorded deploy that shifted traffic; the seq of its second shift
    let file = corpus("traffic-shift.ndjson");
    let text = std::fs::read_to_string(&file).unwrap();
    let shifts: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["type"] == "TrafficShifted").collect();
    let seq = shifts[1]["seq"].as_u64().unwrap().to_string();

    // When the state after it is shown
    let out = skald(&["replay", "--file", file.to_str().unwrap(), "--at", &seq]);

    // Then web's line says how much traffic the new release has, and its group
    let state = stdout(&out);
    assert!(state.contains("traffic: 50 % on the new release since "), "{state}");
    assert!(state.contains("its target group: arn:aws:elasticloadbalancing:"), "{state}");
}

#[test]
fn replay_html_charts_the_traffic_on_a_shifted_release() {
    // Given a recorded deploy that shifted web's traffic 25 % at a time
    let dir = scratch("replay-html-traffic");
    let report = dir.join("report.html");
    let file = corpus("traffic-shift.ndjson");

    // When its report is written
    let out = skald(&["replay", "--file", file.to_str().unwrap(), "--html", report.to_str().unwrap()]);

    // Then web has a chart of its share of traffic and worker (which does not shift) has none
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<h3>Traffic on the new release (%)</h3>").count(), 1, "one traffic chart: web's");
    let web = html.find("<h2>Service web</h2>").unwrap();
    let worker = html.find("<h2>Service worker</h2>").unwrap();
    let chart = html.find("class=\"weight\"").expect("a weight path");
    assert!(web < chart && chart < worker, "the chart sits under web");
    // And the timeline names each step
    for weight in [25, 50, 75, 100] {
        assert!(html.contains(&format!("web: {weight} % of traffic on the new release")), "{weight}");
    }
}

#[test]
fn replay_refuses_a_file_that_is_not_a_history_naming_the_line() {
    let dir = scratch("replay-bad-file");
    let file = dir.join("bad.ndjson");
    std::fs::write(
        &file,
        "{\"seq\":1,\"at\":\"2026-11-21T12:00:00.000Z\",\"type\":\"DeployRequested\",\"v\":1,\"body\":{},\"surprise\":1}\n",
    )
    .unwrap();

    let out = skald(&["replay", "--file", file.to_str().unwrap()]);
    let neither = skald(&["replay"]);

    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1: unknown field `surprise`"), "{stderr}");
    assert_eq!(neither.status.code(), Some(2), "a deploy id or --file is required");
}

#[test]
fn slack_format_turns_a_published_notification_into_a_slack_message() {
    let dir = scratch("slack-format");
    let file = dir.join("notification.json");
    let notification = serde_json::json!({
        "schema": "skald.notification/1", "deploy": "01JSLACK000000000000000000", "project": "coinbase/deploy-test",
        "config": "production", "seq": 43, "at": "2026-11-21T12:12:30.000Z", "phase": "cleaning up after a failure",
        "previous_phase": "deploying", "end": null, "error": "Timeout", "reason": "services were not healthy within 600 s",
        "failure": true, "requested_by": "AIDAEXAMPLE", "release_digest": "ab"
    });
    std::fs::write(&file, notification.to_string()).unwrap();
    let other = dir.join("other.json");
    std::fs::write(&other, notification.to_string().replace("skald.notification/1", "skald.notification/9")).unwrap();

    let out = skald(&["slack-format", file.to_str().unwrap()]);
    let refused = skald(&["slack-format", other.to_str().unwrap()]);

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let message: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.starts_with(":x: *coinbase/deploy-test production*: cleaning up after a failure"), "{text}");
    assert!(message["blocks"][1]["elements"][0]["text"].as_str().unwrap().contains("Timeout: services were not healthy"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("skald.notification/9"));
}

// ---- freeze, unfreeze, status and history --failures: against the local AWS API ------------

mod on_aws {
    use super::stdout;
    use serde_json::Value;
    use skald_engine::adapters::dynamodb::{create_table, DynamoStore};
    use skald_engine::adapters::local::{example_release, provision_example, Local};
    use skald_engine::adapters::memory::{block_on, SystemClock};
    use skald_engine::adapters::sim::Timings;
    use skald_engine::ports::{Append, Clock, EventStore, LockKey};
    use skald_engine::testing::moto;
    use skald_engine::workflow::event::Freeze;
    use skald_engine::workflow::{Release, Timestamp};
    use std::process::{Command, Output};

    const PROJECT: &str = "coinbase/deploy-test";
    const CONFIG: &str = "production";

    /// A fresh events table in the emulator.
    async fn table(label: &str) -> DynamoStore {
        let store = DynamoStore::from_sdk_config(&moto::aws_config().await, moto::unique_name(label));
        create_table(&store.client, &store.table).await.unwrap();
        store
    }

    /// `skald ARGS` on the emulator and `table`, as an operator with a profile there runs it.
    fn skald_on(table: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_skald"))
            .args(args)
            .env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", moto::REGION)
            .env("SKALD_TABLE", table)
            .output()
            .expect("skald runs")
    }

    fn json(out: &Output) -> Value {
        assert!(out.status.success(), "{}\n{}", stdout(out), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
    }

    fn key() -> LockKey {
        LockKey { project: PROJECT.into(), config: CONFIG.into() }
    }

    // Pins: `skald freeze` records who (the caller's identity), when and why; `status` shows it
    // (text and --json); a second freeze changes nothing and exits 1 naming the standing one;
    // `unfreeze` lifts it and says what it lifted.
    #[tokio::test(flavor = "multi_thread")]
    async fn freeze_is_shown_by_status_and_lifted_by_unfreeze() {
        // Given an empty events table
        let store = table("cli-freeze").await;
        let before = SystemClock.now();

        // When on-call freezes the project-config
        let out = skald_on(&store.table, &["freeze", PROJECT, CONFIG, "--reason", "black friday", "--json"]);

        // Then the freeze names the caller, the instant and the reason, and is in the table
        let frozen = json(&out);
        assert_eq!(frozen["already_frozen"], false);
        let by = frozen["freeze"]["by"].as_str().unwrap().to_string();
        assert!(by.starts_with("arn:aws:"), "the caller's ARN: {by}");
        assert_eq!(frozen["freeze"]["reason"], "black friday");
        let stored = store.freeze(&key()).await.unwrap().expect("the freeze item");
        assert_eq!((stored.by.as_str(), stored.reason.as_str()), (by.as_str(), "black friday"));
        assert!(stored.since >= before);
        assert_eq!(frozen["freeze"]["since"], stored.since.to_string(), "RFC 3339");

        // And status shows it, as text and as JSON
        let text = stdout(&skald_on(&store.table, &["status", PROJECT, CONFIG]));
        assert!(text.contains(&format!("{PROJECT} {CONFIG} is frozen by {by} since {}: black friday", stored.since)), "{text}");
        let status = json(&skald_on(&store.table, &["status", PROJECT, CONFIG, "--json"]));
        assert_eq!(status["freeze"]["reason"], "black friday");

        // And a second freeze leaves the first standing and exits 1
        let again = skald_on(&store.table, &["freeze", PROJECT, CONFIG, "--reason", "me too"]);
        assert_eq!(again.status.code(), Some(1));
        assert!(stdout(&again).contains("is already frozen by") && stdout(&again).contains("black friday"), "{}", stdout(&again));
        assert_eq!(store.freeze(&key()).await.unwrap().unwrap().reason, "black friday");

        // And unfreeze lifts it, once
        let lifted = json(&skald_on(&store.table, &["unfreeze", PROJECT, CONFIG, "--json"]));
        assert_eq!(lifted["lifted"]["reason"], "black friday");
        assert_eq!(store.freeze(&key()).await.unwrap(), None);
        assert_eq!(json(&skald_on(&store.table, &["status", PROJECT, CONFIG, "--json"])), Value::Null);
        let twice = skald_on(&store.table, &["unfreeze", PROJECT, CONFIG]);
        assert!(twice.status.success() && stdout(&twice).contains("was not frozen"), "{}", stdout(&twice));
    }

    // Pins: a freeze needs a reason.
    #[tokio::test(flavor = "multi_thread")]
    async fn freeze_without_a_reason_is_refused_naming_the_flag() {
        let store = table("cli-freeze-reason").await;
        let out = skald_on(&store.table, &["freeze", PROJECT, CONFIG, "--reason", " "]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(store.freeze(&key()).await.unwrap(), None);
        assert_eq!(skald_on(&store.table, &["freeze", PROJECT, CONFIG]).status.code(), Some(2), "--reason is required");
    }

    fn release() -> Release {
        let mut release = example_release();
        release.user_data = Some("#!/bin/sh\necho hello\n".into());
        release
    }

    /// Runs deploys on a simulated cloud whose clock starts at `start`, in memory, then copies
    /// their histories and index entries into `store` as the runner would have written them.
    fn deploys_at(start: Timestamp, run: impl FnOnce(&Local)) -> Local {
        let local = Local::new(start, Timings::default());
        provision_example(&local.cloud, &release());
        run(&local);
        local
    }

    async fn copy(local: &Local, store: &DynamoStore) {
        for entry in block_on(local.store.deploys(&key(), 100)).unwrap() {
            let events = local.store.history(&entry.deploy);
            for (i, chunk) in events.chunks(40).enumerate() {
                let index = (i == 0).then(|| entry.clone());
                let append = Append { deploy: entry.deploy.clone(), events: chunk.to_vec(), lock: None, index, snapshot: None };
                store.append(append).await.unwrap();
            }
        }
    }

    fn id(n: u32) -> String {
        format!("01JTEST{n:019}")
    }

    // Pins: `history --failures` lists the deploys that ended in a failure since --since (default
    // 3 days), newest first, with when each ended (RFC 3339), its end, error kind and reason;
    // successes are never listed; --json gives the same rows.
    #[tokio::test(flavor = "multi_thread")]
    async fn history_failures_lists_failed_deploys_since_an_age_newest_first() {
        // Given a bad release that failed five days ago, then an hour ago a success and a deploy
        // refused by a freeze
        let store = table("cli-failures").await;
        let now = SystemClock.now().as_ms();
        let old = deploys_at(Timestamp(now - 5 * 86_400_000), |local| {
            let mut bad = release();
            bad.services.get_mut("web").unwrap().autoscaling.min_size = Some(9);
            local.submit(&bad, &id(1));
            local.run(5_000);
        });
        let recent = deploys_at(Timestamp(now - 3_600_000), |local| {
            local.submit(&release(), &id(2));
            local.run(5_000);
            let freeze = Freeze { by: "arn:aws:iam::123456789012:user/odin".into(), reason: "black friday".into(), since: local.now() };
            local.store.put_freeze(&key(), freeze).unwrap();
            local.submit(&release(), &id(3));
            local.run(5_000);
        });
        assert_eq!(recent.state(&id(2)).end, Some(skald_engine::workflow::End::Success));
        copy(&old, &store).await;
        copy(&recent, &store).await;

        // When the failures are listed with the default age, and over a week
        let default = json(&skald_on(&store.table, &["history", PROJECT, CONFIG, "--failures", "--json"]));
        let week = json(&skald_on(&store.table, &["history", PROJECT, CONFIG, "--failures", "--since", "7d", "--json"]));
        let text = stdout(&skald_on(&store.table, &["history", PROJECT, CONFIG, "--failures", "--since", "168h"]));

        // Then the last 3 days hold the refused deploy only; the week both failures, newest first
        let ids = |rows: &Value| rows.as_array().unwrap().iter().map(|r| r["release_id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&default), [id(3)]);
        assert_eq!(ids(&week), [id(3), id(1)]);
        let refused = &week[0];
        assert_eq!((refused["end"].as_str(), refused["error"].as_str()), (Some("FailureClean"), Some("BadRelease")));
        assert!(refused["reason"].as_str().unwrap().starts_with("freeze: "), "{refused}");
        assert_eq!(refused["ended_at"], recent.history(&id(3)).last().unwrap().at.to_string(), "RFC 3339");
        assert!(week[1]["reason"].as_str().unwrap().contains("min_size"), "{}", week[1]);

        // And the text lists the same, one line each, with named fields
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(&format!(
                "{}  ended {}  FailureClean (BadRelease): freeze: ",
                id(3),
                refused["ended_at"].as_str().unwrap()
            )),
            "{text}"
        );
        assert!(lines[1].starts_with(&id(1)), "{text}");

        // And the whole history still lists all three; a minute back lists none
        assert_eq!(json(&skald_on(&store.table, &["history", PROJECT, CONFIG, "--json"])).as_array().unwrap().len(), 3);
        let none = stdout(&skald_on(&store.table, &["history", PROJECT, CONFIG, "--failures", "--since", "1m"]));
        assert!(none.starts_with(&format!("no failed deploys of {PROJECT} {CONFIG} since ")), "{none}");
    }

    // Pins: --since takes Nm, Nh, Nd only (a usage error names the value) and only with --failures.
    #[test]
    fn history_since_is_an_age_and_needs_failures() {
        let out = super::skald(&["history", PROJECT, CONFIG, "--failures", "--since", "3x"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("`3x` is not an age"), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(super::skald(&["history", PROJECT, CONFIG, "--since", "3d"]).status.code(), Some(2));
    }
}
