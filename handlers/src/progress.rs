//! Live progress of a deploy, per service: healthy, launching and terminating instances against
//! the healthy threshold, as Odin's client showed it. A bar on a terminal, plain counts otherwise.

use skald_engine::workflow::state::ServiceProgress;
use skald_engine::workflow::State;

/// One line per service of the deploy's current health.
pub fn lines(state: &State, terminal: bool) -> Vec<String> {
    state.services.iter().map(|(name, service)| line(name, service, terminal)).collect()
}

fn line(name: &str, service: &ServiceProgress, terminal: bool) -> String {
    let health = service.health.unwrap_or_default();
    let plan = service.plan;
    let counts = format!(
        "{}/{} healthy (need {}), {} launching, {} terminating",
        health.healthy, plan.launch, plan.healthy_needed, health.launching, health.terminating
    );
    if !terminal {
        return format!("  {name}: {counts}");
    }
    format!("  {name:<12} {} {counts}", bar(service))
}

/// `[###++|..]`: `#` healthy, `+` launching, `x` terminating, `.` not launched yet, and `|`
/// where the healthy threshold lies.
fn bar(service: &ServiceProgress) -> String {
    let health = service.health.unwrap_or_default();
    let width = service.plan.launch.max(health.total()) as usize;
    let mut cells: Vec<char> = std::iter::repeat_n('#', health.healthy as usize)
        .chain(std::iter::repeat_n('+', health.launching as usize))
        .chain(std::iter::repeat_n('x', health.terminating as usize))
        .collect();
    cells.resize(width, '.');
    let threshold = (service.plan.healthy_needed as usize).min(cells.len());
    let (before, after) = cells.split_at(threshold);
    format!("[{}|{}]", before.iter().collect::<String>(), after.iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skald_engine::workflow::capacity::CapacityPlan;
    use skald_engine::workflow::health::HealthCounts;
    use skald_engine::workflow::release::Strategy;

    fn service(healthy: u32, launching: u32, terminating: u32) -> ServiceProgress {
        let plan = CapacityPlan {
            desired: 4,
            launch: 5,
            healthy_needed: 3,
            min_size: 2,
            max_size: 8,
            max_terms: 0,
            strategy: Strategy::AllAtOnce,
        };
        ServiceProgress {
            asg: "web-1".into(),
            plan,
            launch_started: true,
            launched: true,
            min_size: 3,
            desired: 5,
            health: Some(HealthCounts { healthy, launching, terminating, ..HealthCounts::default() }),
            finalize_skipped: false,
            traffic: None,
            resized_since_check: false,
        }
    }

    #[test]
    fn the_bar_marks_the_healthy_threshold() {
        assert_eq!(bar(&service(2, 1, 1)), "[##+|x.]");
        assert_eq!(bar(&service(5, 0, 0)), "[###|##]");
    }

    #[test]
    fn without_a_terminal_progress_is_plain_counts() {
        assert_eq!(line("web", &service(2, 1, 0), false), "  web: 2/5 healthy (need 3), 1 launching, 0 terminating");
    }
}
