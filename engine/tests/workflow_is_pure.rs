//! Pins the architecture invariant: `engine::workflow` depends on serde and std only. No AWS SDK,
//! no async runtime, no adapters, no clock and no test support may be named in its sources.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "aws_sdk",
    "aws_config",
    "aws_smithy",
    "aws_credential_types",
    "serde_dynamo",
    "tokio",
    "crate::adapters",
    "crate::testing",
    "crate::runner",
    "SystemTime",
    "Instant::now",
];

#[test]
fn the_workflow_names_no_aws_async_or_adapter_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/workflow");
    let mut checked = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/workflow exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for word in FORBIDDEN {
                if text.contains(word) {
                    found.push(format!("{} names {word}", path.display()));
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 5, "found only {checked} workflow sources");
    assert!(found.is_empty(), "the pure workflow must not depend on these:\n{}", found.join("\n"));
}
