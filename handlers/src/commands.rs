//! The commands for producers and on-call engineers: deploy, halt, undeploy, freeze, unfreeze,
//! status, history (and its failures), worker.
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
use skald_engine::workflow::event::Freeze;
use skald_engine::workflow::validate::validate;
use skald_engine::workflow::{End, Event, State, Timestamp};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `deploy --wait` reads the log.
const FOLLOW_POLL: Duration = Duration::from_secs(2);
/// After this long with no first event, `--wait` says no worker seems to be running.
const NO_WORKER_HINT_AFTER: Duration = Duration::from_secs(60);
/// How many deploys `history` lists unless told otherwise.
pub const HISTORY_LIMIT_DEFAULT: usize = 20;
/// How many recent deploys `history --failures` reads unless told otherwise.
pub const FAILURES_READ_DEFAULT: usize = 100;
/// The age `history --failures` looks back unless told otherwise: 3 days.
pub const FAILURES_SINCE_DEFAULT: &str = "3d";

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

/// A freeze as `--json` prints it.
fn freeze_json(freeze: &Freeze) -> serde_json::Value {
    json!({"by": freeze.by, "reason": freeze.reason, "since": freeze.since.to_string()})
}

/// `skald freeze`: refuses every deploy of a project-config until `skald unfreeze`, recording who
/// froze it (the caller's identity), when and why. A project-config frozen already stays as it
/// was, and the freeze that stands is shown (exit 1).
pub async fn freeze(env: &AwsEnv, key: LockKey, reason: String, json: bool, out: Out<'_>) -> Result<bool, String> {
    if reason.trim().is_empty() {
        return Err("--reason: say why deploys are frozen (it is shown to everyone refused)".into());
    }
    let freeze = Freeze { by: env.caller().await?, reason, since: SystemClock.now() };
    let standing = env.store().put_freeze(&key, &freeze).await.map_err(|e| e.to_string())?;
    let (frozen, already) = match &standing {
        Ok(()) => (&freeze, false),
        Err(standing) => (standing, true),
    };
    if json {
        let answer = json!({"project": key.project, "config": key.config, "freeze": freeze_json(frozen), "already_frozen": already});
        writeln!(out, "{answer}").map_err(io)?;
    } else if already {
        writeln!(out, "{} {} is already {frozen}; nothing changed", key.project, key.config).map_err(io)?;
    } else {
        writeln!(out, "froze {} {}: every deploy is refused until `skald unfreeze {0} {1}`", key.project, key.config).map_err(io)?;
        writeln!(out, "  by {}\n  since {}\n  reason {}", frozen.by, frozen.since, frozen.reason).map_err(io)?;
    }
    Ok(!already)
}

/// `skald unfreeze`: lets deploys of a project-config through again. Not frozen is no error.
pub async fn unfreeze(env: &AwsEnv, key: LockKey, json: bool, out: Out<'_>) -> Result<bool, String> {
    let lifted = env.store().delete_freeze(&key).await.map_err(|e| e.to_string())?;
    if json {
        writeln!(out, "{}", json!({"project": key.project, "config": key.config, "lifted": lifted.as_ref().map(freeze_json)}))
            .map_err(io)?;
        return Ok(true);
    }
    match lifted {
        Some(freeze) => writeln!(out, "unfroze {} {} (it was {freeze})", key.project, key.config),
        None => writeln!(out, "{} {} was not frozen; nothing changed", key.project, key.config),
    }
    .map_err(io)?;
    Ok(true)
}

/// `skald status`: the current or last deploy of a project-config, folded.
pub async fn status(env: &AwsEnv, key: LockKey, json: bool, out: Out<'_>) -> Result<bool, String> {
    let store = env.store();
    let frozen = store.freeze(&key).await.map_err(|e| e.to_string())?;
    let frozen_line = |freeze: &Freeze| format!("{} {} is {freeze}: deploys are refused", key.project, key.config);
    let Some(latest) = store.deploys(&key, 1).await.map_err(|e| e.to_string())?.into_iter().next() else {
        let none = match (json, &frozen) {
            (true, None) => "null".to_string(),
            (true, Some(freeze)) => json!({"freeze": freeze_json(freeze)}).to_string(),
            (false, None) => format!("no deploys of {} {}", key.project, key.config),
            (false, Some(freeze)) => format!("{}\nno deploys of {} {}", frozen_line(freeze), key.project, key.config),
        };
        writeln!(out, "{none}").map_err(io)?;
        return Ok(true);
    };
    let (recorded, state) = read_history(&store.load(&latest.deploy).await.map_err(|e| e.to_string())?)?;
    if json {
        let mut summary = summary_json(&latest.deploy, &recorded, &state, true);
        summary["freeze"] = frozen.as_ref().map(freeze_json).unwrap_or_default();
        writeln!(out, "{summary}").map_err(io)?;
        return Ok(true);
    }
    if let Some(freeze) = &frozen {
        writeln!(out, "{}", frozen_line(freeze)).map_err(io)?;
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
            "{}  {:<28} {:>7} s  {}  {}  by {}  sha256 {digest}",
            field("release_id"),
            field("phase"),
            row["duration_secs"].as_u64().unwrap_or(0),
            field("requested_at"),
            field("region"),
            field("requested_by"),
        )
        .map_err(io)?;
    }
    Ok(true)
}

/// An age on the command line: `30m`, `12h`, `3d` (minutes, hours, days), in seconds.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let invalid = || format!("`{text}` is not an age: write a whole number of minutes, hours or days, e.g. 30m, 12h or 3d");
    let text = text.trim();
    let unit_secs = match text.chars().last() {
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(invalid()),
    };
    let count: u64 = text[..text.len() - 1].parse().map_err(|_| invalid())?;
    count.checked_mul(unit_secs).ok_or_else(invalid)
}

/// `skald history --failures`: the deploys of a project-config that ended in a failure
/// (FailureClean, FailureDirty) within the last `since_secs`, newest first, with when they ended,
/// the error kind and the reason. Reads at most `read_max` of the latest deploys (the index,
/// newest first), and says so when older ones may hold more.
pub async fn failures(env: &AwsEnv, key: LockKey, since_secs: u64, read_max: usize, json: bool, out: Out<'_>) -> Result<bool, String> {
    let store = env.store();
    let cutoff = Timestamp(SystemClock.now().as_ms().saturating_sub(since_secs.saturating_mul(1000)));
    let entries = store.deploys(&key, read_max).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for entry in &entries {
        let (recorded, state) = read_history(&store.load(&entry.deploy).await.map_err(|e| e.to_string())?)?;
        let (Some(End::Failure { error, reason, .. }), Some(last)) = (&state.end, recorded.last()) else { continue };
        if last.at < cutoff {
            continue;
        }
        let request = state.request.as_ref();
        rows.push(json!({
            "release_id": entry.deploy,
            "kind": state.kind(),
            "ended_at": last.at.to_string(),
            "end": state.end.as_ref().map(End::name),
            "error": format!("{error:?}"),
            "reason": reason,
            "requested_by": request.and_then(|r| r.requested_by.clone()),
            "release_digest": request.map(|r| r.release_digest.clone()),
        }));
    }
    // Newest end first (deploys end in another order than they were created).
    rows.sort_by(|a, b| b["ended_at"].as_str().cmp(&a["ended_at"].as_str()));
    let truncated = entries.len() == read_max && entries.last().is_some_and(|oldest| oldest.created_at >= cutoff);
    if json {
        writeln!(out, "{}", serde_json::Value::Array(rows)).map_err(io)?;
        return Ok(true);
    }
    if rows.is_empty() {
        writeln!(out, "no failed deploys of {} {} since {cutoff}", key.project, key.config).map_err(io)?;
    }
    for row in &rows {
        let field = |name: &str| row[name].as_str().unwrap_or("-").to_string();
        writeln!(out, "{}  ended {}  {} ({}): {}", field("release_id"), field("ended_at"), field("end"), field("error"), field("reason"))
            .map_err(io)?;
    }
    if truncated {
        writeln!(out, "(read the latest {read_max} deploys only; older ones may have failed since {cutoff}: raise --limit)").map_err(io)?;
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
        "account": request.and_then(|r| r.account()),
        "region": request.and_then(|r| r.region()),
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

#[cfg(test)]
mod tests {
    use super::parse_age;

    // Pins: ages are whole minutes, hours or days; anything else is refused naming the value.
    #[test]
    fn an_age_is_minutes_hours_or_days() {
        assert_eq!(parse_age("30m"), Ok(30 * 60));
        assert_eq!(parse_age("12h"), Ok(12 * 3600));
        assert_eq!(parse_age("3d"), Ok(3 * 86_400));
        for bad in ["", "d", "3", "3w", "-1d", "1.5h", "99999999999999999999d"] {
            let error = parse_age(bad).unwrap_err();
            assert!(error.contains(&format!("`{bad}` is not an age")), "{error}");
        }
    }
}
