//! `skald`: the command line for producers, on-call engineers and auditors.
//!
//! Exit codes: 0 success; 1 the deploy or the input failed; 2 usage (clap's own).

use clap::{Parser, Subcommand};
use skald_engine::notify::Notification;
use skald_engine::ports::LockKey;
use skald_engine::workflow::validate::validate;
use skald_handlers::aws_env::{AwsEnv, Overrides};
use skald_handlers::{commands, demo, demo_endpoint, release_file, replay};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "skald", version, about = "Blue/green deploys of AWS Auto Scaling groups, run by an event-sourced workflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The AWS region (default: the standard chain's, e.g. AWS_REGION or the profile's).
    #[arg(long, global = true)]
    region: Option<String>,
    /// The AWS profile to take credentials and region from (default: AWS_PROFILE or `default`).
    #[arg(long, global = true)]
    profile: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a release file offline: exit 0 if valid, 1 with one line per problem if not.
    Validate {
        /// The release JSON; `{{USER_DATA_FILE}}` is read from RELEASE.userdata.
        release: PathBuf,
    },
    /// Send a release to be deployed: validated offline first, then stamped with a release id
    /// (ULID) and created_at. With --wait, follow it to its end (exit 0 only on Success).
    Deploy {
        release: PathBuf,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Ask the running deploy of a project-config to stop and clean up.
    Halt {
        project: String,
        config: String,
        #[arg(long, default_value = "halted from the command line")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel the running deploy of a project-config (deployomat's word for a halt): traffic goes
    /// back to the live release at once, then everything the deploy created is deleted. Honoured
    /// until the release is live (after its bake time, for traffic-shifted services).
    Cancel {
        project: String,
        config: String,
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove the live release of a project-config: its listener rules, ASGs, launch templates
    /// and target groups. Refused (and recorded) unless that release allows it: production
    /// configs must say `"allow_undeploy": true`. With --wait, follow it to its end.
    Undeploy {
        project: String,
        config: String,
        #[arg(long, default_value = "undeployed from the command line")]
        reason: String,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Freeze a project-config: every deploy of it is refused (and the refusal recorded in the
    /// deploy's history, with who froze it, when and why) until it is unfrozen. Undeploys and
    /// halts still run. Exit 1 if it is frozen already (the standing freeze is shown).
    Freeze {
        project: String,
        config: String,
        /// Why: shown by `status` and recorded in every refused deploy.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Lift a project-config's freeze: deploys run again. Not frozen is no error.
    Unfreeze {
        project: String,
        config: String,
        #[arg(long)]
        json: bool,
    },
    /// The current or last deploy of a project-config, and its freeze if it is frozen.
    Status {
        project: String,
        config: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploys of a project-config, newest first. With --failures, only those that ended in a
    /// failure (FailureClean, FailureDirty) since --since, with when they ended, the error and
    /// the reason.
    History {
        project: String,
        config: String,
        /// How many of the latest deploys are read (default 20; with --failures, 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Only the deploys that failed.
        #[arg(long)]
        failures: bool,
        /// With --failures: how far back, as an age: 30m, 12h, 3d.
        #[arg(long, requires = "failures", value_name = "AGE", default_value = commands::FAILURES_SINCE_DEFAULT, value_parser = commands::parse_age)]
        since: u64,
        #[arg(long)]
        json: bool,
    },
    /// Read a deploy's history back: its timeline, its state at a seq, its verification against
    /// today's code, an HTML report. Reads the events table (read-only) or an NDJSON export.
    #[command(group = clap::ArgGroup::new("source").required(true).args(["deploy", "file"]))]
    Replay {
        /// The deploy (its release id), read from the events table.
        deploy: Option<String>,
        /// An NDJSON export (`skald export`) instead of the table.
        #[arg(long, value_name = "HISTORY.ndjson")]
        file: Option<PathBuf>,
        /// Show the folded state after this seq instead of the timeline.
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
        /// Check the sequence, the hash chain, every state and every decision against today's
        /// code; exit 1 at the first failure, naming its seq.
        #[arg(long)]
        verify: bool,
        /// Also write a self-contained HTML report of the deploy to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print a deploy's history as NDJSON, one stored event per line (--json: one JSON array).
    Export {
        deploy: String,
        #[arg(long)]
        json: bool,
    },
    /// Turn a notification (`skald.notification/1` JSON, as published to SNS or EventBridge) into
    /// a Slack message payload, for a webhook or `chat.postMessage`.
    SlackFormat {
        /// The notification; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Do the Lambda's work in a local long-poll loop (and sweep for stalled deploys); stops
    /// cleanly on SIGINT or SIGTERM.
    Worker {
        /// Seconds between sweeps for deploys whose wakes were lost.
        #[arg(long, default_value_t = 60)]
        sweep_secs: u64,
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
    let overrides = Overrides { region: cli.region, profile: cli.profile };
    match cli.command {
        Command::Validate { release } => validate_file(&release),
        Command::Deploy { release, wait, json } => {
            on_aws(&overrides, |env, out| Box::pin(async move { commands::deploy(&env, &release, wait, json, out).await }))
        }
        Command::Halt { project, config, reason, json } | Command::Cancel { project, config, reason, json } => {
            on_aws(&overrides, |env, out| {
                Box::pin(async move { commands::halt(&env, LockKey { project, config }, reason, json, out).await })
            })
        }
        Command::Undeploy { project, config, reason, wait, json } => on_aws(&overrides, |env, out| {
            Box::pin(async move { commands::undeploy(&env, LockKey { project, config }, reason, wait, json, out).await })
        }),
        Command::Status { project, config, json } => {
            on_aws(&overrides, |env, out| Box::pin(async move { commands::status(&env, LockKey { project, config }, json, out).await }))
        }
        Command::Freeze { project, config, reason, json } => on_aws(&overrides, |env, out| {
            Box::pin(async move { commands::freeze(&env, LockKey { project, config }, reason, json, out).await })
        }),
        Command::Unfreeze { project, config, json } => {
            on_aws(&overrides, |env, out| Box::pin(async move { commands::unfreeze(&env, LockKey { project, config }, json, out).await }))
        }
        Command::History { project, config, limit, failures: true, since, json } => on_aws(&overrides, |env, out| {
            let limit = limit.unwrap_or(commands::FAILURES_READ_DEFAULT);
            Box::pin(async move { commands::failures(&env, LockKey { project, config }, since, limit, json, out).await })
        }),
        Command::History { project, config, limit, json, .. } => on_aws(&overrides, |env, out| {
            let limit = limit.unwrap_or(commands::HISTORY_LIMIT_DEFAULT);
            Box::pin(async move { commands::history(&env, LockKey { project, config }, limit, json, out).await })
        }),
        Command::Replay { deploy: None, file: Some(path), at, verify, html, json } => {
            let options = replay::Options { at, verify, html, json };
            exit_code(replay::load_from_file(&path).and_then(|stored| replay::replay(&stored, &options, &mut std::io::stdout())))
        }
        Command::Replay { deploy, at, verify, html, json, .. } => {
            let deploy = deploy.expect("clap requires a deploy or a file");
            let options = replay::Options { at, verify, html, json };
            on_aws(&overrides, |env, out| {
                Box::pin(async move { replay::replay(&replay::load_from_table(&env, &deploy).await?, &options, out) })
            })
        }
        Command::Export { deploy, json } => on_aws(&overrides, |env, out| {
            Box::pin(async move { replay::export(&replay::load_from_table(&env, &deploy).await?, json, out) })
        }),
        Command::SlackFormat { file } => exit_code(slack_format(file.as_deref())),
        Command::Worker { sweep_secs } => on_aws(&overrides, |env, out| {
            Box::pin(async move { commands::worker_loop(&env.runner()?, std::time::Duration::from_secs(sweep_secs), out).await })
        }),
        Command::Demo { endpoint: None } => exit_code(demo::run(&mut std::io::stdout().lock()).map_err(|e| e.to_string())),
        Command::Demo { endpoint: Some(url) } => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            let release = demo::example();
            exit_code(runtime.block_on(demo_endpoint::run(&url, release, &mut std::io::stdout())))
        }
    }
}

type CommandFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + 'a>>;

/// Runs a command that talks to AWS (configured from the environment) on a tokio runtime.
fn on_aws(overrides: &Overrides, command: impl for<'a> FnOnce(AwsEnv, &'a mut dyn std::io::Write) -> CommandFuture<'a>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let mut stdout = std::io::stdout();
    exit_code(runtime.block_on(async {
        let env = AwsEnv::load_with(overrides).await;
        command(env, &mut stdout).await
    }))
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

fn slack_format(file: Option<&std::path::Path>) -> Result<bool, String> {
    let text = match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => std::io::read_to_string(std::io::stdin()).map_err(|e| format!("standard input: {e}"))?,
    };
    let notification: Notification = serde_json::from_str(&text).map_err(|e| format!("not a skald notification: {e}"))?;
    if notification.schema != skald_engine::notify::SCHEMA {
        return Err(format!("schema `{}`; this skald formats `{}`", notification.schema, skald_engine::notify::SCHEMA));
    }
    println!("{}", skald_engine::notify::slack(&notification));
    Ok(true)
}
