//! `skald replay` and `skald export`: a deploy's history, read back for people and machines.
//!
//! The history comes from the events table (read-only: one strongly consistent Query) or from an
//! NDJSON export; everything after loading is offline and works the same on both.

use crate::aws_env::AwsEnv;
use crate::report;
use crate::timeline;
use serde_json::json;
use skald_engine::codec::{self, StoredEvent};
use skald_engine::ports::EventStore;
use skald_engine::replay::{self, Failure, Phase};
use skald_engine::workflow::audit::Expected;
use skald_engine::workflow::state::{Lock, Request, TeardownStage};
use skald_engine::workflow::{End, Recorded, State};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An export larger than this is refused rather than read into memory: a deploy's history is
/// thousands of events, not millions, and the replay benchmark shows 100,000 is still quick.
pub const EXPORT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

type Out<'a> = &'a mut dyn Write;

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// What `skald replay` is asked to show.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The folded state after this seq, instead of the timeline.
    pub at: Option<u64>,
    /// Run every check; the exit code says whether the history passed.
    pub verify: bool,
    /// Also write a self-contained HTML report here.
    pub html: Option<PathBuf>,
    pub json: bool,
}

/// Reads a deploy's history from the events table.
pub async fn load_from_table(env: &AwsEnv, deploy: &str) -> Result<Vec<StoredEvent>, String> {
    let stored = env.store().load(deploy).await.map_err(|e| e.to_string())?;
    if stored.is_empty() {
        return Err(format!("no events for deploy {deploy} in table {}", env.table));
    }
    Ok(stored)
}

/// Reads a history exported as NDJSON.
pub fn load_from_file(path: &Path) -> Result<Vec<StoredEvent>, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if size > EXPORT_BYTES_MAX {
        return Err(format!("{}: {size} bytes; at most {EXPORT_BYTES_MAX} are read", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let stored = codec::from_ndjson(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if stored.is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(stored)
}

/// `skald export`: the history as NDJSON (or, with `json`, one JSON array).
pub fn export(stored: &[StoredEvent], json: bool, out: Out<'_>) -> Result<bool, String> {
    if json {
        writeln!(out, "{}", serde_json::to_string(stored).expect("stored events serialise")).map_err(io)?;
    } else {
        out.write_all(codec::to_ndjson(stored).as_bytes()).map_err(io)?;
    }
    Ok(true)
}

/// `skald replay`: the timeline, the state at a seq, or the verdict of `--verify`; and the HTML
/// report. Returns false (exit 1) when verification fails.
pub fn replay(stored: &[StoredEvent], options: &Options, out: Out<'_>) -> Result<bool, String> {
    let verdict = options.verify.then(|| replay::verify(stored));
    if let Some(path) = &options.html {
        let (recorded, _) = replay::read(stored).map_err(|f| f.to_string())?;
        let verdict = verdict.clone().unwrap_or_else(|| replay::verify(stored));
        std::fs::write(path, report::html(&recorded, &verdict)).map_err(|e| format!("{}: {e}", path.display()))?;
        if !options.json {
            writeln!(out, "wrote {}", path.display()).map_err(io)?;
        }
        if !options.verify && options.at.is_none() {
            return Ok(true);
        }
    }
    if let Some(verdict) = verdict {
        return print_verdict(&verdict, options.json, out);
    }
    if let Some(seq) = options.at {
        return print_state_at(stored, seq, options.json, out);
    }
    let (recorded, state) = replay::read(stored).map_err(|f| f.to_string())?;
    print_timeline(&recorded, &state, options.json, out)?;
    Ok(true)
}

fn print_verdict(verdict: &Result<replay::Verified, Failure>, json: bool, out: Out<'_>) -> Result<bool, String> {
    match (verdict, json) {
        (Ok(v), true) => writeln!(out, "{}", serde_json::json!({"ok": true, "verified": v})),
        (Ok(v), false) => writeln!(
            out,
            "verified {} events: the sequence is gapless, the hash chain is intact, {}, and every decision is what today's \
             code decides\nend: {}\nlast hash: {}",
            v.events,
            states_line(v),
            v.end.unwrap_or("none yet (the deploy is still running)"),
            v.last_hash
        ),
        (Err(failure), true) => writeln!(out, "{}", failure_json(failure)),
        (Err(failure), false) => writeln!(out, "verification failed ({} check): {failure}{}", failure.check(), both_sides(failure)),
    }
    .map_err(io)?;
    Ok(verdict.is_ok())
}

fn states_line(v: &replay::Verified) -> String {
    match v.events - v.states_compared {
        0 => "every state matches".to_string(),
        older => format!("{} states match ({older} recorded under an older State schema were not compared)", v.states_compared),
    }
}

fn failure_json(failure: &Failure) -> serde_json::Value {
    let mut value = json!({"ok": false, "check": failure.check(), "seq": failure.seq(), "message": failure.to_string()});
    match failure {
        Failure::Decision(divergence) => {
            value["recorded"] = serde_json::to_value(&divergence.recorded).expect("events serialise");
            value["expected"] = serde_json::to_value(&divergence.expected).expect("expectations serialise");
        }
        Failure::StateHash { recorded, replayed, .. } => {
            value["recorded"] = json!(recorded);
            value["expected"] = json!(replayed);
        }
        Failure::Chain(e) => {
            value["recorded"] = json!(e.found);
            value["expected"] = json!(e.expected);
        }
        _ => {}
    }
    value
}

/// For a decision that diverged, both sides in full: the one-line summary hides payload details.
fn both_sides(failure: &Failure) -> String {
    let Failure::Decision(divergence) = failure else { return String::new() };
    let recorded = serde_json::to_string(&divergence.recorded).expect("events serialise");
    let expected = match &divergence.expected {
        Expected::Events { events } => serde_json::to_string(events),
        Expected::Command { command } => serde_json::to_string(command),
        other => serde_json::to_string(other),
    }
    .expect("expectations serialise");
    format!("\n  recorded: {recorded}\n  today:    {expected}")
}

fn print_state_at(stored: &[StoredEvent], seq: u64, json: bool, out: Out<'_>) -> Result<bool, String> {
    let last = stored.last().map_or(0, |e| e.seq);
    if seq > last {
        return Err(format!("--at {seq}: the history ends at seq {last}"));
    }
    let state = replay::state_at(stored, seq).map_err(|f| f.to_string())?;
    if json {
        let value = json!({"seq": seq, "phase": state.phase(), "state": state});
        writeln!(out, "{}", serde_json::to_string_pretty(&value).expect("state serialises")).map_err(io)?;
    } else {
        for line in describe_state(&state) {
            writeln!(out, "{line}").map_err(io)?;
        }
    }
    Ok(true)
}

/// The folded state as a person reads it.
pub fn describe_state(state: &State) -> Vec<String> {
    let mut lines = vec![format!("state after seq {} ({}): {}", state.seq, state.at, state.phase())];
    if let Some(request) = &state.request {
        let release = &request.release;
        lines.push(format!("  {} {} of {} {}", state.kind(), request.release_id, release.project_name, release.config_name));
        lines.extend(request_lines(request));
    }
    let lock = match state.lock {
        Lock::Untried => "not yet taken".to_string(),
        Lock::Held { lease_until } => format!("held, lease until {lease_until}"),
        Lock::Denied => "denied".to_string(),
        Lock::Released => "released".to_string(),
    };
    lines.push(format!("  lock: {lock}"));
    if let Some(deadline) = state.deadline {
        lines.push(format!("  healthy by: {deadline}"));
    }
    for (name, s) in &state.services {
        let health = s.health.map_or("not observed".to_string(), |h| {
            format!("{} healthy, {} launching, {} terminating", h.healthy, h.launching, h.terminating)
        });
        let launch = match (s.launch_started, s.launched) {
            (false, _) => "not launched",
            (true, false) => "launch announced, not confirmed",
            (true, true) => "launched",
        };
        lines.push(format!(
            "  service {name}: {} {launch}; min {} desired {} (plan: launch {}, need {} healthy); {health}",
            s.asg, s.min_size, s.desired, s.plan.launch, s.plan.healthy_needed
        ));
        if let Some(traffic) = &s.traffic {
            let group = traffic.target_group.as_deref().unwrap_or(if traffic.group_announced { "announced" } else { "not created" });
            let shifted = traffic.shifted_at.map(|at| format!(" since {at}")).unwrap_or_default();
            let unsettled = if traffic.unsettled { " (a shift is announced, its outcome not recorded)" } else { "" };
            lines.push(format!("    traffic: {} % on the new release{shifted}{unsettled}; its target group: {group}", traffic.weight));
        }
    }
    if let Some(command) = &state.pending {
        lines.push(format!("  pending: {command} (announced, outcome not recorded)"));
    }
    if state.retry.attempts > 0 {
        lines.push(format!(
            "  retrying: attempt {} failed at {}: {}",
            state.retry.attempts, state.retry.last_failure_at, state.retry.last_error
        ));
    }
    if let Some(failure) = &state.failure {
        lines.push(format!("  failure: {:?}: {}", failure.error, failure.reason));
    }
    for t in &state.teardown {
        let stage = match &t.stage {
            TeardownStage::Unroute => "to take off its listener rule".to_string(),
            TeardownStage::Detach => "to detach".to_string(),
            TeardownStage::AwaitDetach { since } => format!("draining since {since}"),
            TeardownStage::Delete => "to delete".to_string(),
            TeardownStage::Deleted => "deleted".to_string(),
            TeardownStage::Abandoned { reason } => format!("abandoned: {reason}"),
        };
        lines.push(format!("  teardown {}: {stage}", t.asg));
    }
    if let Some(End::Failure { reason, .. }) = &state.end {
        lines.push(format!("  ended: {reason}"));
    }
    lines
}

fn print_timeline(recorded: &[Recorded], state: &State, json: bool, out: Out<'_>) -> Result<(), String> {
    let phases = replay::phases(recorded);
    let start = recorded.first().map(|r| r.at).unwrap_or_default();
    if json {
        let events: Vec<serde_json::Value> = recorded
            .iter()
            .map(|r| json!({"seq": r.seq, "at": r.at, "elapsed_ms": r.at.ms_since(start), "type": r.event.name(), "summary": r.event.to_string()}))
            .collect();
        let phases: Vec<serde_json::Value> = phases.iter().map(phase_json).collect();
        let request = state.request.as_ref();
        let value = json!({
            "deploy": request.map(|r| &r.release_id),
            "requested_by": request.and_then(|r| r.requested_by.as_ref()),
            "release_digest": request.map(|r| &r.release_digest),
            "end": state.end.as_ref().map(End::name),
            "events": events,
            "phases": phases,
        });
        writeln!(out, "{value}").map_err(io)?;
        return Ok(());
    }
    for line in header(state, recorded) {
        writeln!(out, "{line}").map_err(io)?;
    }
    writeln!(out).map_err(io)?;
    for r in recorded {
        writeln!(out, "  {}{}", r.at, timeline::line(start, r)).map_err(io)?;
    }
    writeln!(out, "\nphases:").map_err(io)?;
    for phase in &phases {
        writeln!(out, "  {:<28} from #{:<4} {:>10}", phase.name, phase.from_seq, duration(phase.elapsed_ms())).map_err(io)?;
    }
    Ok(())
}

fn phase_json(phase: &Phase) -> serde_json::Value {
    json!({"name": phase.name, "from_seq": phase.from_seq, "from": phase.from, "until": phase.until, "elapsed_ms": phase.elapsed_ms()})
}

/// Who asked for what, and how it ended.
pub fn header(state: &State, recorded: &[Recorded]) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(request) = &state.request {
        let release = &request.release;
        lines.push(format!("{} {} of {} {}", state.kind(), request.release_id, release.project_name, release.config_name));
        lines.extend(request_lines(request));
    }
    let took = match (recorded.first(), recorded.last()) {
        (Some(first), Some(last)) => duration(last.at.ms_since(first.at)),
        _ => "-".to_string(),
    };
    let end = state.end.as_ref().map_or("still running", End::name);
    lines.push(format!("  {end} after {took}, {} events", recorded.len()));
    lines
}

/// When and by whom a deploy was requested, and what exactly (and the freeze that refused it): the
/// lines `status` and `replay` share.
pub fn request_lines(request: &Request) -> Vec<String> {
    let mut lines = vec![
        format!("  requested {} by {}", request.requested_at, request.requested_by.as_deref().unwrap_or("unknown")),
        format!("  release sha256 {}", request.release_digest),
        format!("  in {}", request.place()),
    ];
    if let Some(freeze) = &request.frozen {
        lines.push(format!("  refused: the project-config was {freeze}"));
    }
    lines
}

/// `h:mm:ss`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
