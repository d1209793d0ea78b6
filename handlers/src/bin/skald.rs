//! `skald`: the command line for producers, on-call engineers and auditors.
//!
//! Exit codes: 0 success; 1 the deploy or the input failed; 2 usage (clap's own).

use clap::{Parser, Subcommand};
use skald_engine::workflow::validate::validate;
use skald_handlers::{demo, demo_endpoint, release_file};
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
    /// Run two whole blue/green deploys: on an embedded simulated cloud (virtual time, no
    /// network), or with --endpoint against an AWS API at URL (a local emulator such as moto).
    Demo {
        /// An AWS API endpoint, e.g. http://127.0.0.1:5000: DynamoDB, SQS, EC2, Auto Scaling and
        /// ELB there hold the log, the queue and the services.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { release } => validate_file(&release),
        Command::Demo { endpoint: None } => exit_code(demo::run(&mut std::io::stdout().lock()).map_err(|e| e.to_string())),
        Command::Demo { endpoint: Some(url) } => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            let release = demo::example();
            exit_code(runtime.block_on(demo_endpoint::run(&url, release, &mut std::io::stdout())))
        }
    }
}

/// 0 for success, 1 for a failed demo or an error (printed).
fn exit_code(result: Result<bool, String>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
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
