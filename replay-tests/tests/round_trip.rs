//! Histories written today survive export: NDJSON out, NDJSON in, the hash chain verifies and the
//! fold gives the same state as the live run saw. (The full replay tool and its frozen corpus
//! come with issue 5.)

use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::sim::{Fate, Timings};
use skald_engine::codec::{decode, verify_chain};
use skald_engine::workflow::{fold, Recorded, Timestamp};
use skald_replay_tests::{from_ndjson, to_ndjson};

const START: Timestamp = Timestamp(1_795_262_400_000);

fn run_to_end(local: &Local, deploy: &str) {
    for _ in 0..5_000 {
        if local.state(deploy).is_finished() {
            return;
        }
        local.deliver_next().expect("the deploy ends before the queue runs dry");
    }
    panic!("deploy {deploy} did not finish");
}

#[test]
fn exported_histories_verify_and_fold_to_the_live_state() {
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\n".into());
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, &release);
    local.submit(&release, "01JREPLAY0000000000000001");
    run_to_end(&local, "01JREPLAY0000000000000001");
    local.cloud.set_fate("01JREPLAY0000000000000002", Fate::NeverHealthy);
    local.submit(&release, "01JREPLAY0000000000000002");
    run_to_end(&local, "01JREPLAY0000000000000002");

    for deploy in local.store.deploy_ids() {
        let stored = local.store.history(&deploy);
        let reread = from_ndjson(&to_ndjson(&stored)).unwrap();

        assert_eq!(reread, stored, "NDJSON round-trips byte for byte");
        verify_chain(&reread).unwrap();
        let recorded: Vec<Recorded> = reread.iter().map(|e| decode(e).unwrap()).collect();
        assert_eq!(fold(&recorded).unwrap(), local.state(&deploy));
    }
}

#[test]
fn a_changed_byte_in_an_export_is_caught_at_its_seq() {
    let mut release = example_release();
    release.user_data = None;
    let local = Local::new(START, Timings::default());
    provision_example(&local.cloud, &release);
    local.submit(&release, "01JREPLAY0000000000000003");
    run_to_end(&local, "01JREPLAY0000000000000003");
    let text = to_ndjson(&local.store.history("01JREPLAY0000000000000003"));

    // An attacker changes the launches' instance counts, leaving their hashes alone.
    let tampered: String = text
        .lines()
        .map(|line| if line.contains("\"ServiceLaunched\"") { line.replacen("\"desired\":1", "\"desired\":9", 1) } else { line.to_string() } + "\n")
        .collect();
    let first_launch = from_ndjson(&text).unwrap().iter().find(|e| e.kind == "ServiceLaunched").unwrap().seq;
    assert_ne!(tampered, text);

    let error = verify_chain(&from_ndjson(&tampered).unwrap()).unwrap_err();

    assert_eq!(error.seq, first_launch);
}
