//! Writes the replay corpus: every scenario's history to `corpus/<name>.ndjson` and the broken
//! variants to `corpus/broken/<name>.ndjson`. Run it when a scenario is added; never to make a
//! failing corpus test pass (that would throw away the very history the test protects).
//!
//! Usage: `cargo run -p skald-replay-tests --bin freeze-corpus [-- NAME...]` (default: all;
//! existing files are kept unless named or `--force` is given).

use skald_replay_tests::corpus::{broken, scenarios};
use skald_replay_tests::to_ndjson;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let force = args.iter().any(|a| a == "--force");
    let named: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    std::fs::create_dir_all(corpus.join("broken")).expect("the corpus directory can be created");
    let mut written = 0;
    for scenario in scenarios() {
        let chosen = named.iter().any(|n| *n == scenario.name);
        let path = corpus.join(format!("{}.ndjson", scenario.name));
        let history = (scenario.run)();
        if scenario.name == "success-replacing-previous" {
            for b in broken(&history) {
                written += write(&corpus.join("broken").join(format!("{}.ndjson", b.name)), &to_ndjson(&b.events), force || chosen);
            }
        }
        if named.is_empty() || chosen {
            written += write(&path, &to_ndjson(&history), force || chosen);
        }
    }
    println!("{written} file(s) written under {}", corpus.display());
    ExitCode::SUCCESS
}

/// Writes `text` to `path` unless it exists and `overwrite` is false. Returns 1 if written.
fn write(path: &PathBuf, text: &str, overwrite: bool) -> usize {
    if path.exists() && !overwrite {
        println!("kept {}", path.display());
        return 0;
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
    1
}
