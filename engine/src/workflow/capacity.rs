//! How many instances a service launches, how many must be healthy, and how a strategy gets there.
//!
//! All arithmetic is on integers (spread in basis points) and truncates like Odin's `int(…)`, so
//! the same release and previous capacity give the same plan on every machine and every replay.

use super::release::{Autoscaling, Strategy};
use serde::{Deserialize, Serialize};

const BP_ONE: u64 = 10_000;

/// The capacity a new service aims for, fixed once when resources are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityPlan {
    /// Instances the service runs after a successful deploy.
    pub desired: u32,
    /// Instances launched: `desired × (1 + spread)`, at most `max_size`.
    pub launch: u32,
    /// Healthy instances needed: `desired × (1 − spread)`, at least `min_size`.
    pub healthy_needed: u32,
    pub min_size: u32,
    pub max_size: u32,
    /// Terminations tolerated before the deploy halts.
    pub max_terms: u32,
    pub strategy: Strategy,
}

impl CapacityPlan {
    /// `previous_desired` is the desired capacity of the live ASG this service replaces, if any.
    pub fn new(scaling: &Autoscaling, previous_desired: Option<u32>) -> CapacityPlan {
        let (min_size, max_size) = (scaling.min_size(), scaling.max_size());
        let spread_bp = u64::from(scaling.spread_bp());
        let desired = previous_desired.unwrap_or(min_size).min(max_size).max(min_size);
        let launch = (u64::from(desired) * (BP_ONE + spread_bp) / BP_ONE) as u32;
        let launch = launch.min(max_size);
        let tolerated = u64::from(desired) * (BP_ONE - spread_bp) / BP_ONE;
        let healthy_needed = (tolerated as u32).max(min_size);
        let plan = CapacityPlan {
            desired,
            launch,
            healthy_needed,
            min_size,
            max_size,
            max_terms: scaling.max_terms(),
            strategy: scaling.strategy(),
        };
        plan.assert_invariants();
        plan
    }

    fn assert_invariants(&self) {
        assert!(self.min_size <= self.desired && self.desired <= self.max_size, "{self:?}");
        assert!(self.healthy_needed <= self.desired, "{self:?}");
        assert!(self.desired <= self.launch && self.launch <= self.max_size, "{self:?}");
    }

    /// The capacity the new ASG is created with.
    pub fn initial(&self) -> u32 {
        match self.strategy {
            Strategy::AllAtOnce => self.launch,
            Strategy::OneThenAllWithCanary => self.launch.min(1),
            _ => self.step().min(self.launch),
        }
    }

    /// How much capacity each step adds for step strategies.
    fn step(&self) -> u32 {
        match self.strategy {
            Strategy::AllAtOnce | Strategy::OneThenAllWithCanary => self.launch,
            Strategy::Percent25Steps => (self.launch / 4).max(1),
            Strategy::Percent10Steps => (self.launch / 10).max(1),
            Strategy::TenAtATime => 10,
            Strategy::TwentyAtATime => 20,
        }
    }

    /// The next capacity once every instance at `current` capacity is healthy; `None` at the top.
    pub fn next(&self, current: u32) -> Option<u32> {
        (current < self.launch).then(|| match self.strategy {
            Strategy::OneThenAllWithCanary => self.launch,
            _ => current.saturating_add(self.step()).min(self.launch),
        })
    }

    /// The ASG's minimum while the deploy runs: never above what is launched, so the group can
    /// settle, and never above what must be healthy, so spare instances may fail.
    pub fn min_while_deploying(&self, current: u32) -> u32 {
        self.healthy_needed.min(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(min: u32, max: u32, spread: f64, strategy: Strategy) -> Autoscaling {
        Autoscaling { min_size: Some(min), max_size: Some(max), spread: Some(spread), strategy: Some(strategy), ..Autoscaling::default() }
    }

    #[test]
    fn capacity_follows_odins_table() {
        // (min, max, spread, previous) -> (desired, launch, healthy_needed)
        let table = [
            ((1, 1, 0.0, None), (1, 1, 1)),
            ((3, 5, 0.2, None), (3, 3, 3)),
            ((3, 10, 0.2, Some(10)), (10, 10, 8)),
            ((3, 20, 0.2, Some(10)), (10, 12, 8)),
            ((3, 20, 0.1, Some(5)), (5, 5, 4)),
            ((0, 20, 0.5, Some(0)), (0, 0, 0)),
            ((2, 4, 0.0, Some(50)), (4, 4, 4)),
            ((2, 4, 1.0, Some(3)), (3, 4, 2)),
        ];
        for ((min, max, spread, previous), expected) in table {
            let plan = CapacityPlan::new(&scaling(min, max, spread, Strategy::AllAtOnce), previous);
            assert_eq!((plan.desired, plan.launch, plan.healthy_needed), expected, "{min} {max} {spread} {previous:?}");
        }
    }

    #[test]
    fn strategies_step_to_the_launch_capacity() {
        let steps = |strategy, launch: u32| {
            let plan = CapacityPlan::new(&scaling(launch, launch, 0.0, strategy), None);
            let mut seen = vec![plan.initial()];
            while let Some(next) = plan.next(*seen.last().unwrap()) {
                seen.push(next);
            }
            seen
        };
        assert_eq!(steps(Strategy::AllAtOnce, 8), [8]);
        assert_eq!(steps(Strategy::OneThenAllWithCanary, 8), [1, 8]);
        assert_eq!(steps(Strategy::Percent25Steps, 8), [2, 4, 6, 8]);
        assert_eq!(steps(Strategy::Percent25Steps, 3), [1, 2, 3]);
        assert_eq!(steps(Strategy::Percent10Steps, 25), [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25]);
        assert_eq!(steps(Strategy::TenAtATime, 25), [10, 20, 25]);
        assert_eq!(steps(Strategy::TwentyAtATime, 15), [15]);
    }
}
