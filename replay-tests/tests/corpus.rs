//! The frozen corpus replays with today's code: every history verifies (hash chain, sequence,
//! states, decisions), and every deliberately broken one fails with the right reason at the right
//! seq. A change to `evolve` or `decide` that would treat an old history differently fails here.

use skald_engine::codec::StoredEvent;
use skald_engine::replay::{self, Failure};
use skald_engine::workflow::event::EVENT_TYPES;
use skald_engine::workflow::{End, ErrorKind, Event};
use skald_replay_tests::corpus::{broken, scenarios};
use skald_replay_tests::from_ndjson;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn read(path: &Path) -> Vec<StoredEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_ndjson(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.ndjson` file directly under `dir`, sorted.
fn histories(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ndjson"))
        .collect();
    files.sort();
    files
}

/// Where each frozen scenario must end: a replay that reaches another end is a regression.
const ENDS: &[(&str, &str)] = &[
    ("success-multi-service", "Success"),
    ("success-single-service", "Success"),
    ("success-replacing-previous", "Success"),
    ("step-rollout", "Success"),
    ("halt", "FailureClean"),
    ("timeout", "FailureClean"),
    ("lock-denied", "FailureClean"),
    ("bad-release", "FailureClean"),
    ("resources-rejected", "FailureClean"),
    ("terminations", "FailureClean"),
    ("canary-failed", "FailureClean"),
    ("failure-dirty", "FailureDirty"),
    ("launch-refused", "FailureClean"),
    ("retried-and-resumed", "Success"),
    ("traffic-shift", "Success"),
    ("traffic-halted", "FailureClean"),
    ("template-clone", "Success"),
    ("traffic-alarm", "FailureClean"),
    ("rollback-concurrent", "Success"),
    ("undeploy", "Success"),
    ("undeploy-refused", "FailureClean"),
    ("step-rollout-odin", "Success"),
    ("asg-missing", "FailureClean"),
    ("capacity-reasserted", "Success"),
    ("traffic-first-copy", "Success"),
    ("safe-release-refused", "FailureClean"),
    ("slow-start-skip-detach-check", "Success"),
    ("skip-detach", "Success"),
];

#[test]
fn every_corpus_history_verifies_and_reaches_its_recorded_end() {
    let files = histories(&corpus_dir());
    assert!(!files.is_empty(), "the corpus is empty");
    for path in files {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name");

        let verified = replay::verify(&read(&path)).unwrap_or_else(|failure| panic!("{name}: {failure}"));

        let expected = ENDS.iter().find(|(n, _)| *n == name).map(|(_, end)| *end);
        // A production history added to the corpus need not be listed: it must verify and end.
        if let Some(expected) = expected {
            assert_eq!(verified.end, Some(expected), "{name}");
        }
    }
}

#[test]
fn every_scenario_is_frozen_in_the_corpus() {
    for scenario in scenarios() {
        let path = corpus_dir().join(format!("{}.ndjson", scenario.name));
        assert!(path.exists(), "{} is not frozen: run `cargo run -p skald-replay-tests --bin freeze-corpus`", scenario.name);
        assert!(ENDS.iter().any(|(n, _)| *n == scenario.name), "{} has no expected end in ENDS", scenario.name);
    }
}

#[test]
fn the_corpus_covers_every_event_type_end_state_and_error_kind() {
    let mut types = BTreeSet::new();
    let mut ends = BTreeSet::new();
    let mut errors = BTreeSet::new();
    for path in histories(&corpus_dir()) {
        let (recorded, state) = replay::read(&read(&path)).expect("corpus histories read");
        types.extend(recorded.iter().map(|r| r.event.name()));
        ends.extend(state.end.as_ref().map(End::name));
        errors.extend(recorded.iter().filter_map(|r| match &r.event {
            Event::DeployFailed { error, .. } => Some(format!("{error:?}")),
            _ => None,
        }));
    }

    let missing: Vec<&str> = EVENT_TYPES.iter().copied().filter(|t| !types.contains(t)).collect();
    assert!(missing.is_empty(), "no corpus history records {missing:?}");
    assert_eq!(ends, BTreeSet::from(["Success", "FailureClean", "FailureDirty"]));
    let kinds = [ErrorKind::BadRelease, ErrorKind::LockExists, ErrorKind::Deploy, ErrorKind::Halt, ErrorKind::Timeout];
    let uncovered: Vec<String> = kinds.iter().map(|k| format!("{k:?}")).filter(|k| !errors.contains(k)).collect();
    assert!(uncovered.is_empty(), "no corpus history ends with {uncovered:?}");
}

#[test]
fn every_broken_history_fails_verification_naming_the_check_and_seq() {
    let good = read(&corpus_dir().join("success-replacing-previous.ndjson"));
    for expected in broken(&good) {
        let path = corpus_dir().join("broken").join(format!("{}.ndjson", expected.name));
        let frozen = read(&path);
        assert_eq!(frozen, expected.events, "{}: the frozen file is what `broken` makes of its source", expected.name);

        let failure = replay::verify(&frozen).expect_err(expected.name);

        assert_eq!((failure.check(), failure.seq()), (expected.check, Some(expected.seq)), "{}: {failure}", expected.name);
        assert!(failure.to_string().starts_with(&format!("seq {}: ", expected.seq)), "{}: {failure}", expected.name);
    }
}

#[test]
fn broken_histories_say_what_is_wrong_in_words() {
    let read_broken = |name: &str| replay::verify(&read(&corpus_dir().join("broken").join(format!("{name}.ndjson")))).unwrap_err();

    assert!(read_broken("tampered-event").to_string().contains("does not match its content"));
    assert!(read_broken("gap").to_string().contains("an event is missing, repeated or moved"));
    assert!(read_broken("unknown-type").to_string().contains("unknown event type `ServiceTeleported`"));
    assert!(read_broken("newer-version").to_string().contains("ServiceLaunched has schema version 2; this skald reads up to version 1"));
    assert!(read_broken("forged-state").to_string().contains("hashes to"));
    let Failure::Decision(divergence) = read_broken("forged-decision") else { panic!("not a decision failure") };
    let Event::ServiceLaunched { desired, .. } = &divergence.recorded[0] else { panic!("{divergence}") };
    assert!(divergence.to_string().contains("today's decide runs `launch"), "{divergence}");
    assert!(*desired > 5, "the recorded side shows the forged count: {divergence}");
}
