//! Architecture invariant: `engine::workflow` depends on `serde` and `std` only, and reads no
//! clock, randomness, environment, file or network. This lint reads the module's source and fails
//! on any path outside that allowance, so a stray `use tokio::…` or `SystemTime::now()` cannot land.

use std::path::{Path, PathBuf};

/// Lower-case path roots the workflow may name: std and serde, its own modules, and the std
/// modules, primitive types and serde modules it imports by their short names.
const ALLOWED_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "serde",
    "self",
    "super",
    "crate", // crate:: is checked separately
    "capacity",
    "command",
    "decide",
    "event",
    "health",
    "listener_rule",
    "names",
    "outcome",
    "placement",
    "release",
    "resources",
    "safe_release",
    "settings",
    "state",
    "time",
    "validate",
    "clippy",
    "fmt",
    "ops",
    "collections",
    "mem",
    "cmp",
    "iter",
    "de",
    "u8",
    "u32",
    "u64",
    "u128",
    "i32",
    "i64",
    "f64",
    "usize",
    "str",
    "char",
];

/// Things that would make the core impure even when reached through `std`.
const FORBIDDEN: &[&str] = &[
    "SystemTime",
    "Instant",
    "std::env",
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::io",
    "tokio",
    "aws_sdk",
    "aws_config",
    "aws_smithy",
    "rand::",
    "thread_rng",
    "Mutex",
    "RefCell",
];

fn workflow_sources() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/workflow");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "rs")).collect();
    files.sort();
    assert!(files.len() >= 10, "found only {files:?} under {}", dir.display());
    files
}

/// The code of a line, without its `//` comment and string literals (roughly, which is enough:
/// a false alarm is fixed by rewording, a miss would need a path hidden in a string).
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '\\' if in_string => {
                chars.next();
            }
            '/' if !in_string && chars.peek() == Some(&'/') => break,
            _ if !in_string => code.push(c),
            _ => {}
        }
    }
    code
}

/// Every identifier directly followed by `::` that begins a path.
fn path_roots(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut roots = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_ident = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':' || bytes[i - 1] == b'.'));
        if starts_ident {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if code[i..].starts_with("::") {
                roots.push(code[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    roots
}

#[test]
fn the_workflow_depends_on_serde_and_std_only() {
    let mut violations = Vec::new();
    for file in workflow_sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            for root in path_roots(&code) {
                let is_type = root.chars().next().is_some_and(|c| c.is_ascii_uppercase());
                if !is_type && !ALLOWED_ROOTS.contains(&root.as_str()) {
                    violations.push(format!("{name}:{}: path root `{root}`: {}", n + 1, line.trim()));
                }
            }
            if code.contains("crate::") && !code.contains("crate::workflow") {
                violations.push(format!("{name}:{}: reaches outside the workflow: {}", n + 1, line.trim()));
            }
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!("{name}:{}: `{word}`: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "the pure workflow must not depend on these:\n{}", violations.join("\n"));
}

#[test]
fn the_lint_catches_what_it_is_for() {
    let roots = |line: &str| path_roots(&code_of(line));
    assert_eq!(roots("use tokio::time::sleep; // fine in a comment: aws_sdk::x"), ["tokio"]);
    assert_eq!(roots(r#"let s = "std::env::var"; let t = std::time::SystemTime::now();"#), ["std"]);
    assert_eq!(roots("let n = text.parse::<u32>(); let m = serde_json::from_str(x);"), ["serde_json"]);
    assert!(!ALLOWED_ROOTS.contains(&"tokio") && !ALLOWED_ROOTS.contains(&"aws_sdk_dynamodb"));
}
