//! The commands for producers and on-call engineers: deploy, halt, undeploy, status, history,
//! worker.
//! Each returns whether it succeeded (exit 0) or why not; `--json` gives machine output.

use crate::aws_env::{AwsEnv, AwsRunner};
use crate::timeline::Printer;
use crate::{progress, release_file, ulid, worker};
use serde_json::json;
use skald_engine::adapters::memory::SystemClock;
use skald_engine::codec::{self, read_history};
use skald_engine::message::Message;
use skald_engine::ports::{Clock, EventStore, LockKey, Queue};
use skald_engine::runner::live_release;
use skald_engine::workflow::decide::LOCK_LEASE_MARGIN_SECS;
use skald_engine::workflow::validate::validate;
use skald_engine::workflow::{End, Event, State};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `deploy --wait` reads the log.
const FOLLOW_POLL: Duration = Duration::from_secs(2);
/// After this long with no first event, `--wait` says no worker seems to be running.
const NO_WORKER_HINT_AFTER: Duration = Duration::from_secs(60);
/// How many deploys `history` lists unless told otherwise.
pub const HISTORY_LIMIT_DEFAULT: usize = 20;

type Out<'a> = &'a mut dyn Write;

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// `skald deploy`: validates offline, stamps a release id and `created_at`, sends the request.
/// With `wait`, follows the deploy to its end; success then means the deploy's Success.
pub async fn deploy(env: &AwsEnv, path: &Path, wait: bool, json: bool, out: Out<'_>) -> Result<bool, String> {
    let release = release_file::read(path).map_err(|p| format!("{p}"))?;
    let problems = validate(&release);
    if !problems.is_empty() {
        for problem in &problems {
            writeln!(out, "error: {problem}").map_err(io)?;
        }
        return Ok(false);
    }
    let release_id = ulid::generate().map_err(io)?;
    let created_at = SystemClock.now();
    let digest = codec::release_digest(&release);
    let (project, config, timeout_secs) = (release.project_name.clone(), release.config_name.clone(), release.timeout_secs());
    let message = Message::DeployRequested { release: Box::new(release), release_id: release_id.clone(), created_at };
    env.queue()?.send(&message, 0).await.map_err(|e| e.to_string())?;
    if json {
        let sent =
            json!({"release_id": release_id, "project": project, "config": config, "created_at": created_at, "release_digest": digest});
        writeln!(out, "{sent}").map_err(io)?;
    } else {
        writeln!(out, "sent release {release_id} of {project} {config} (sha256 {digest})").map_err(io)?;
    }
    if !wait {
        return Ok(true);
    }
    // A deploy ends within its timeout and its bounded cleanup; the lease covers both.
    let end = follow(env, &release_id, Duration::from_secs(timeout_secs + LOCK_LEASE_MARGIN_SECS), json, out).await?;
    Ok(end == Some(End::Success))
}

/// Prints a deploy's events as they are recorded, with per-service progress, until it ends.
async fn follow(env: &AwsEnv, deploy: &str, bound: Duration, json: bool, out: Out<'_>) -> Result<Option<End>, String> {
    let store = env.store();
    let terminal = std::io::stdout().is_terminal();
    let mut printer = Printer::new(SystemClock.now());
    let mut printed = 0;
    let started = Instant::now();
    let mut hinted = false;
    while started.elapsed() < bound {
        let stored = store.load(deploy).await.map_err(|e| e.to_string())?;
        let (recorded, state) = read_history(&stored)?;
        if json {
            for event in &stored[printed..] {
                writeln!(out, "{}", serde_json::to_string(event).expect("events serialise")).map_err(io)?;
            }
        } else {
            printer.print_new(out, &recorded).map_err(io)?;
            if recorded[printed.min(recorded.len())..].iter().any(|r| matches!(r.event, Event::HealthObserved { .. })) {
                for line in progress::lines(&state, terminal) {
                    writeln!(out, "{line}").map_err(io)?;
                }
            }
        }
        printed = stored.len();
        if let Some(end) = state.end {
            if !json {
                writeln!(out, "=> {}", end.name()).map_err(io)?;
            }
            return Ok(Some(end));
        }
        if printed == 0 && !hinted && started.elapsed() > NO_WORKER_HINT_AFTER {
            eprintln!("no worker has picked the request up yet: is `skald worker` or the Lambda running?");
            hinted = true;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
    Err(format!("deploy {deploy} did not end within {} s", bound.as_secs()))
}

/// `skald halt`: asks the running deploy of a project-config to stop and clean up.
pub async fn halt(env: &AwsEnv, key: LockKey, reason: String, json: bool, out: Out<'_>) -> Result<bool, String> {
    let message = Message::HaltRequested { project: key.project.clone(), config: key.config.clone(), reason: reason.clone() };
    env.queue()?.send(&message, 0).await.map_err(|e| e.to_string())?;
    if json {
        writeln!(out, "{}", json!({"halt_requested": {"project": key.project, "config": key.config, "reason": reason}})).map_err(io)?;
    } else {
        writeln!(out, "halt requested for {} {}: {reason}", key.project, key.config).map_err(io)?;
    }
    Ok(true)
}

/// `skald undeploy`: asks for the live release of a project-config to be removed. The safety
/// (`allow_undeploy`) is judged by the workflow, so a refusal is recorded for the audit trail;
/// only "nothing is live" is answered here, as there is nothing to record it in.
pub async fn undeploy(env: &AwsEnv, key: LockKey, reason: String, wait: bool, json: bool, out: Out<'_>) -> Result<bool, String> {
    let Some((live, _)) = live_release(&env.store(), &key).await.map_err(|e| e.to_string())? else {
        writeln!(out, "no release of {} {} is live: nothing to undeploy", key.project, key.config).map_err(io)?;
        return Ok(false);
    };
    let undeploy_id = ulid::generate().map_err(io)?;
    let message = Message::UndeployRequested {
        project: key.project.clone(),
        config: key.config.clone(),
        reason: reason.clone(),
        undeploy_id: undeploy_id.clone(),
        of_release: None,
    };
    env.queue()?.send(&message, 0).await.map_err(|e| e.to_string())?;
    if json {
        let sent =
            json!({"undeploy_id": undeploy_id, "project": key.project, "config": key.config, "live_release": live, "reason": reason});
        writeln!(out, "{sent}").map_err(io)?;
    } else {
        writeln!(out, "sent undeploy {undeploy_id} of {} {} (live release {live}): {reason}", key.project, key.config).map_err(io)?;
    }
    if !wait {
        return Ok(true);
    }
    let end = follow(env, &undeploy_id, Duration::from_secs(LOCK_LEASE_MARGIN_SECS), json, out).await?;
    Ok(end == Some(End::Success))
}

/// `skald status`: the current or last deploy of a project-config, folded.
pub async fn status(env: &AwsEnv, key: LockKey, json: bool, out: Out<'_>) -> Result<bool, String> {
    let store = env.store();
    let Some(latest) = store.deploys(&key, 1).await.map_err(|e| e.to_string())?.into_iter().next() else {
        let none = if json { "null".to_string() } else { format!("no deploys of {} {}", key.project, key.config) };
        writeln!(out, "{none}").map_err(io)?;
        return Ok(true);
    };
    let (recorded, state) = read_history(&store.load(&latest.deploy).await.map_err(|e| e.to_string())?)?;
    if json {
        writeln!(out, "{}", summary_json(&latest.deploy, &recorded, &state, true)).map_err(io)?;
        return Ok(true);
    }
    let request = state.request.as_ref().ok_or("the deploy has no request")?;
    writeln!(out, "{} {} of {} {}: {}", state.kind(), latest.deploy, key.project, key.config, state.phase()).map_err(io)?;
    for line in crate::replay::request_lines(request) {
        writeln!(out, "{line}").map_err(io)?;
    }
    if let Some(End::Failure { error, reason, .. }) = &state.end {
        writeln!(out, "  {error:?}: {reason}").map_err(io)?;
    }
    if let Some(last) = recorded.last() {
        writeln!(out, "  last event #{} at {}: {}", last.seq, last.at, last.event).map_err(io)?;
    }
    for line in progress::lines(&state, std::io::stdout().is_terminal()) {
        writeln!(out, "{line}").map_err(io)?;
    }
    Ok(true)
}

/// `skald history`: deploys of a project-config, newest first.
pub async fn history(env: &AwsEnv, key: LockKey, limit: usize, json: bool, out: Out<'_>) -> Result<bool, String> {
    let store = env.store();
    let entries = store.deploys(&key, limit).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for entry in &entries {
        let (recorded, state) = read_history(&store.load(&entry.deploy).await.map_err(|e| e.to_string())?)?;
        rows.push(summary_json(&entry.deploy, &recorded, &state, false));
    }
    if json {
        writeln!(out, "{}", serde_json::Value::Array(rows)).map_err(io)?;
        return Ok(true);
    }
    if rows.is_empty() {
        writeln!(out, "no deploys of {} {}", key.project, key.config).map_err(io)?;
    }
    for row in rows {
        let field = |name: &str| row[name].as_str().unwrap_or("-").to_string();
        let digest: String = field("release_digest").chars().take(12).collect();
        writeln!(
            out,
            "{}  {:<28} {:>7} s  {}  by {}  sha256 {digest}",
            field("release_id"),
            field("phase"),
            row["duration_secs"].as_u64().unwrap_or(0),
            field("requested_at"),
            field("requested_by"),
        )
        .map_err(io)?;
    }
    Ok(true)
}

fn summary_json(deploy: &str, recorded: &[skald_engine::workflow::Recorded], state: &State, with_services: bool) -> serde_json::Value {
    let request = state.request.as_ref();
    let first = recorded.first().map(|r| r.at);
    let last = recorded.last().map(|r| r.at);
    let duration_secs = match (first, last) {
        (Some(first), Some(last)) => last.ms_since(first) / 1000,
        _ => 0,
    };
    let (error, reason) = match &state.end {
        Some(End::Failure { error, reason, .. }) => (Some(format!("{error:?}")), Some(reason.clone())),
        _ => (None, None),
    };
    let mut summary = json!({
        "release_id": deploy,
        "project": request.map(|r| r.release.project_name.clone()),
        "config": request.map(|r| r.release.config_name.clone()),
        "phase": state.phase(),
        "end": state.end.as_ref().map(End::name),
        "error": error,
        "reason": reason,
        "requested_at": request.map(|r| r.requested_at.to_string()),
        "requested_by": request.and_then(|r| r.requested_by.clone()),
        "release_digest": request.map(|r| r.release_digest.clone()),
        "duration_secs": duration_secs,
        "seq": state.seq,
    });
    if with_services {
        summary["services"] = state
            .services
            .iter()
            .map(|(name, s)| {
                let health = s.health.unwrap_or_default();
                let service = json!({"asg": s.asg, "desired": s.desired, "launch": s.plan.launch, "healthy_needed": s.plan.healthy_needed,
                    "healthy": health.healthy, "launching": health.launching, "terminating": health.terminating});
                (name.clone(), service)
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    summary
}

/// `skald worker`: the Lambda's work in a local long-poll loop, with the sweeper on a timer.
/// Stops after the batch in hand when SIGINT or SIGTERM arrives.
pub async fn worker_loop(runner: &AwsRunner, sweep_every: Duration, out: Out<'_>) -> Result<bool, String> {
    let stop = shutdown_signal()?;
    let mut last_sweep = Instant::now() - sweep_every;
    writeln!(out, "skald worker: polling {}", runner.queue.queue_url).map_err(io)?;
    loop {
        if last_sweep.elapsed() >= sweep_every {
            match runner.sweep().await {
                Ok(sweep) if !sweep.woken.is_empty() || !sweep.unreadable.is_empty() => {
                    writeln!(out, "sweep: woke {:?}; unreadable {:?}", sweep.woken, sweep.unreadable).map_err(io)?
                }
                Ok(_) => {}
                Err(e) => writeln!(out, "sweep failed: {e}").map_err(io)?,
            }
            last_sweep = Instant::now();
        }
        // Only the wait for messages is interrupted: a batch in hand is always finished.
        let received = tokio::select! {
            received = runner.queue.receive(skald_engine::adapters::sqs::RECEIVE_MAX, skald_engine::adapters::sqs::WAIT_SECS_MAX) => received,
            _ = stop.notified() => break,
        };
        let batch = match received {
            Ok(batch) => worker::process_batch(runner, batch).await,
            Err(e) => Err(e),
        };
        match batch {
            Ok(processed) => {
                for p in processed {
                    writeln!(out, "{}", describe(&p)).map_err(io)?;
                }
            }
            Err(e) => {
                writeln!(out, "receive failed: {e}").map_err(io)?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    writeln!(out, "skald worker: stopped").map_err(io)?;
    Ok(true)
}

fn describe(processed: &worker::Processed) -> String {
    match processed {
        worker::Processed::Handled(handled) => format!("handled: {handled:?}"),
        worker::Processed::Failed { message_id, error } => format!("message {message_id} left on the queue: {error}"),
    }
}

/// A notification that fires on SIGINT or SIGTERM.
fn shutdown_signal() -> Result<std::sync::Arc<tokio::sync::Notify>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let fire = notify.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        fire.notify_one();
    });
    Ok(notify)
}
