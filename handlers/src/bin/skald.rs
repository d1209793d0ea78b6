//! `skald`: the command line for producers, on-call engineers and auditors.
//!
//! Exit codes: 0 success; 1 the deploy or the input failed; 2 usage (clap's own).

use clap::{Parser, Subcommand};
use skald_engine::workflow::validate::validate;
use skald_handlers::{demo, release_file};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "skald", version, about = "Blue/green deploys of AWS Auto Scaling groups, run by an event-sourced workflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a release file offline: exit 0 if valid, 1 with one line per problem if not.
    Validate {
        /// The release JSON; `{{USER_DATA_FILE}}` is read from RELEASE.userdata.
        release: PathBuf,
    },
    /// Run two whole blue/green deploys on an embedded simulated cloud (virtual time, no network).
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { release } => validate_file(&release),
        Command::Demo => match demo::run(&mut std::io::stdout().lock()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn validate_file(path: &std::path::Path) -> ExitCode {
    let problems = match release_file::read(path) {
        Ok(release) => validate(&release),
        Err(problem) => vec![problem],
    };
    if problems.is_empty() {
        println!("{}: valid", path.display());
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        println!("error: {problem}");
    }
    ExitCode::from(1)
}
