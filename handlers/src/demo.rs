//! `skald demo`: a whole blue/green deploy, twice, on the embedded simulated cloud.
//!
//! Virtual time: a deploy that takes minutes in the cloud takes milliseconds here. The first
//! release creates the services; the second replaces them, and the first release's ASGs go.

use crate::timeline::{self, Printer};
use crate::ulid;
use skald_engine::adapters::local::{example_release, provision_example, Local};
use skald_engine::adapters::sim::Timings;
use skald_engine::runner::RunError;
use skald_engine::workflow::names::USER_DATA_FILE_PLACEHOLDER;
use skald_engine::workflow::{End, Release, Timestamp};
use std::io::{self, Write};

/// The example's `<release>.userdata`, as the CLI would read it next to the release file.
const EXAMPLE_USER_DATA: &str = include_str!("../../examples/release.json.userdata");
/// 2026-11-21T12:00:00Z: the virtual clock's start, fixed so every demo run prints the same.
const DEMO_START: Timestamp = Timestamp(1_795_262_400_000);
/// More than any deploy of the example needs; a bound, so a bug cannot spin forever.
const MESSAGES_PER_DEPLOY_MAX: usize = 10_000;

/// The example release with its user data file read in, as `skald deploy` would send it.
pub fn example() -> Release {
    let mut release = example_release();
    if release.user_data.as_deref() == Some(USER_DATA_FILE_PLACEHOLDER) {
        release.user_data = Some(EXAMPLE_USER_DATA.to_string());
    }
    release
}

/// Runs the demo, writing the timeline to `out`. Returns whether both deploys reached Success
/// and only the second release's ASGs remain.
pub fn run(out: &mut dyn Write) -> io::Result<bool> {
    let local = Local::new(DEMO_START, Timings::default());
    let first = example();
    provision_example(&local.cloud, &first);
    writeln!(
        out,
        "skald demo: two blue/green deploys of {} {} on a simulated cloud (virtual time)",
        first.project_name, first.config_name
    )?;

    let mut second = first.clone();
    second.services.get_mut("web").expect("the example has a web service").instance_type = "t3.small".into();

    let first_id = ulid::encode(DEMO_START.as_ms(), 1);
    let first_end = deploy(&local, out, &first, &first_id, "first release: creates web and worker")?;
    let after_first = local.cloud.asg_names();
    writeln!(out, "\n  ASGs now: {}", after_first.join(", "))?;

    let second_id = ulid::encode(local.now().as_ms(), 2);
    let second_end = deploy(&local, out, &second, &second_id, "second release: web on t3.small, replaces the first")?;
    let after_second = local.cloud.asg_names();
    writeln!(out, "\n  ASGs now: {}", after_second.join(", "))?;

    let first_gone = after_second.iter().all(|name| !name.ends_with(&first_id));
    let only_second = after_second.len() == second.services.len() && after_second.iter().all(|name| name.ends_with(&second_id));
    let no_locks = local.store.locks().is_empty();
    let ok = first_end == Some(End::Success) && second_end == Some(End::Success) && first_gone && only_second && no_locks;
    writeln!(out)?;
    writeln!(out, "first release's ASGs deleted: {}", yes_no(first_gone))?;
    writeln!(out, "locks left: {}", local.store.locks().len())?;
    writeln!(out, "{}", if ok { "demo: both deploys reached Success" } else { "demo: FAILED" })?;
    Ok(ok)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Submits one release and delivers messages until its deploy ends, printing each new event.
fn deploy(local: &Local, out: &mut dyn Write, release: &Release, release_id: &str, title: &str) -> io::Result<Option<End>> {
    writeln!(out, "\n== {title}\n   release {release_id}")?;
    let start = local.now();
    local.submit(release, release_id);
    let mut printer = Printer::new(start);
    for _ in 0..MESSAGES_PER_DEPLOY_MAX {
        let Some(handling) = local.deliver_next() else { break };
        if let Err(error) = &handling.result {
            let retry = if matches!(error, RunError::Rejected(_)) { "dropped" } else { "will retry" };
            writeln!(out, "  {:>9}  worker error ({retry}): {error}", timeline::elapsed(start, handling.at))?;
        }
        printer.print_new(out, &local.history(release_id))?;
        if let Some(end) = local.state(release_id).end {
            writeln!(out, "   => {} after {} (virtual)", end.name(), timeline::elapsed(start, local.now()))?;
            return Ok(Some(end));
        }
    }
    writeln!(out, "   => did not finish within {MESSAGES_PER_DEPLOY_MAX} messages")?;
    Ok(None)
}
