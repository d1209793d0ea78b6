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

#[test]
fn usage_errors_exit_two() {
    assert_eq!(skald(&["validate"]).status.code(), Some(2));
    assert_eq!(skald(&["no-such-command"]).status.code(), Some(2));
}
