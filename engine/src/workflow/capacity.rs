//! How many instances a service launches, how many must be healthy, and how a strategy gets there.
//!
//! All arithmetic is on integers (spread in basis points) and truncates like Odin's `int(…)`, so
//! the same release and previous capacity give the same plan on every machine and every replay.
//!
//! Two sets of strategy rules live here, chosen by the rules version recorded with the request
//! (`event::RULES_ODIN`): the first skald's (`initial`, `next`, `min_while_deploying`: a step only
//! once every instance of the last is healthy), and Odin's (`initial_size`, `wanted_size`,
//! `terminations_allowed`, `never_lower`: a step at every health check, counted from the instances
//! the ASG has, healthy or not). Old histories keep the rules they were decided with.

use super::health::{AsgSize, HealthCounts};
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

    /// Odin's `InitialMinSize` and `InitialDesiredCapacity`: what the new ASG is created with.
    pub fn initial_size(&self) -> AsgSize {
        match self.strategy {
            Strategy::AllAtOnce => self.size(self.min_size, self.launch),
            Strategy::OneThenAllWithCanary => self.canary_size(),
            _ => self.size(self.rollout_rate(0, self.min_size), self.rollout_rate(0, self.launch)),
        }
    }

    /// Odin's `CalculateMinDesired`: the size a health check that found `counts` asks for. Step
    /// strategies add a step to the number of instances the ASG has, healthy or not, so one bad
    /// instance never stalls the rollout (the timeout and `max_terms` bound a bad release); a
    /// canary stays at one until that one is healthy.
    pub fn wanted_size(&self, counts: &HealthCounts) -> AsgSize {
        let instances = counts.total();
        match self.strategy {
            Strategy::AllAtOnce => self.size(self.min_size, self.launch),
            Strategy::OneThenAllWithCanary if instances <= 1 && counts.healthy != 1 => self.canary_size(),
            Strategy::OneThenAllWithCanary => self.size(self.min_size, self.launch),
            _ => self.size(self.rollout_rate(instances, self.min_size), self.rollout_rate(instances, self.launch)),
        }
    }

    /// Odin's `ReachedMaxTerminations` limit: while a canary is the only instance, losing it is
    /// the canary failing, whatever `max_terms` tolerates later.
    pub fn terminations_allowed(&self, counts: &HealthCounts) -> u32 {
        match self.strategy {
            Strategy::OneThenAllWithCanary if counts.total() <= 1 => 0,
            _ => self.max_terms,
        }
    }

    /// One instance (none when nothing is launched), min and desired alike.
    fn canary_size(&self) -> AsgSize {
        let one = self.launch.min(1);
        AsgSize { min_size: one, desired: one }
    }

    /// A size whose minimum never exceeds its desired capacity (an ASG refuses that).
    fn size(&self, min_size: u32, desired: u32) -> AsgSize {
        AsgSize { min_size: min_size.min(desired), desired }
    }

    /// Odin's `fastRolloutRate`: `instances` plus one step of `base`, at most `base`. Odin also
    /// returns at least 1, which for a `base` of 0 would launch an instance nobody asked for;
    /// here 0 stays 0.
    pub fn rollout_rate(&self, instances: u32, base: u32) -> u32 {
        instances.saturating_add(self.step_of(base)).min(base)
    }

    /// How much of `base` one step adds, at least 1. Percent strategies divide `base` into 4 or
    /// 10 parts; "N at a time" divides it into `launch / N` parts, which for `base = launch` is N
    /// and for a smaller base (the minimum) proportionally less. Integer division truncates like
    /// Odin's `int64(float64(base) / steps)`.
    fn step_of(&self, base: u32) -> u32 {
        let base = u64::from(base);
        let per_launch = |n: u64| if self.launch == 0 { 0 } else { base * n / u64::from(self.launch) };
        let step = match self.strategy {
            Strategy::AllAtOnce | Strategy::OneThenAllWithCanary => base,
            Strategy::Percent25Steps => base / 4,
            Strategy::Percent10Steps => base / 10,
            Strategy::TenAtATime => per_launch(10),
            Strategy::TwentyAtATime => per_launch(20),
        };
        (step as u32).max(1)
    }
}

/// Odin's `SafeSetMinDesiredCapacity`: a deploy never lowers its ASG's minimum or desired
/// capacity, whoever raised them (a scaling policy, a person), and the minimum never exceeds the
/// desired capacity. `None` when the ASG already has the size, so no call is made.
pub fn never_lower(wanted: AsgSize, current: AsgSize) -> Option<AsgSize> {
    let desired = wanted.desired.max(current.desired);
    let min_size = wanted.min_size.max(current.min_size).min(desired);
    let safe = AsgSize { min_size, desired };
    (safe != current).then_some(safe)
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

    // Odin's strategy tests (coinbase/odin deployer/models/strategy_test.go), ported. Their
    // fixture: min 1, max 50, max_terms 1, spread 0, a previous desired capacity of 25.
    mod odin {
        use super::*;

        fn odin_plan(strategy: Strategy) -> CapacityPlan {
            let scaling = Autoscaling { max_terms: Some(1), ..scaling(1, 50, 0.0, strategy) };
            CapacityPlan::new(&scaling, Some(25))
        }

        fn counts(healthy: u32, launching: u32, terminating: u32) -> HealthCounts {
            HealthCounts { healthy, launching, terminating, ..HealthCounts::default() }
        }

        fn one_good() -> HealthCounts {
            counts(1, 0, 0)
        }
        fn one_unhealthy() -> HealthCounts {
            counts(0, 1, 0)
        }
        fn one_terming() -> HealthCounts {
            counts(0, 0, 1)
        }
        fn two_terming() -> HealthCounts {
            counts(0, 0, 2)
        }
        fn one_of_two_terming() -> HealthCounts {
            counts(1, 0, 1)
        }
        fn two_launching() -> HealthCounts {
            counts(0, 2, 0)
        }

        fn size(min_size: u32, desired: u32) -> AsgSize {
            AsgSize { min_size, desired }
        }

        /// Whether Odin's `ReachedMaxTerminations` holds: more terminating than allowed.
        fn halts(plan: &CapacityPlan, counts: HealthCounts) -> bool {
            counts.terminating > plan.terminations_allowed(&counts)
        }

        #[test]
        fn desired_target_and_healthy_capacity_follow_odins_invariant_tests() {
            // Given Odin's simpleStrategy cases (min, max, previous, spread), when planned, then
            // Test_Strategy_DesiredCapacity, _TargetCapacity and _TargetHealthy hold
            let plan = |min, max, previous, spread| CapacityPlan::new(&scaling(min, max, spread, Strategy::AllAtOnce), previous);
            for (previous, desired) in [(None, 1), (Some(1), 1), (Some(2), 2), (Some(3), 3)] {
                assert_eq!(plan(1, 3, previous, 0.2).desired, desired, "{previous:?}");
            }
            let launch = [
                ((1, 1, Some(1), 1.0), 1),
                ((1, 3, Some(2), 1.0), 3),
                ((1, 10, None, 0.5), 1),
                ((1, 10, Some(2), 0.5), 3),
                ((1, 10, Some(4), 0.5), 6),
                ((1, 10, Some(6), 0.5), 9),
                ((1, 10, Some(8), 0.5), 10),
                ((1, 10, Some(10), 0.5), 10),
            ];
            for ((min, max, previous, spread), expected) in launch {
                assert_eq!(plan(min, max, previous, spread).launch, expected, "{min} {max} {previous:?} {spread}");
            }
            let healthy = [
                ((1, 1, Some(1), 0.0), 1),
                ((1, 10, Some(3), 1.0), 1),
                ((1, 10, None, 0.5), 1),
                ((1, 10, Some(2), 0.5), 1),
                ((1, 10, Some(4), 0.5), 2),
                ((1, 10, Some(6), 0.5), 3),
                ((1, 10, Some(8), 0.5), 4),
                ((1, 10, Some(10), 0.5), 5),
            ];
            for ((min, max, previous, spread), expected) in healthy {
                assert_eq!(plan(min, max, previous, spread).healthy_needed, expected, "{min} {max} {previous:?} {spread}");
            }
        }

        #[test]
        fn all_at_once_starts_and_stays_at_min_size_and_full_capacity() {
            // Given AllAtOnce on Odin's fixture (Test_Strategy_AllAtOnce_InitValues, _Min_And_Desired)
            let plan = odin_plan(Strategy::AllAtOnce);
            // Then it is created at (min 1, desired 25) and every check asks for the same
            assert_eq!(plan.initial_size(), size(1, 25));
            for counts in [one_good(), one_unhealthy(), two_launching()] {
                assert_eq!(plan.wanted_size(&counts), size(1, 25), "{counts:?}");
            }
        }

        #[test]
        fn non_canary_strategies_halt_only_past_max_terms() {
            // Given max_terms 1 (Test_Strategy_{AllAtOnce,25Step…,10Step…,XAtATime…}_Termination)
            for strategy in [Strategy::AllAtOnce, Strategy::Percent25Steps, Strategy::Percent10Steps, Strategy::TenAtATime] {
                let plan = odin_plan(strategy);
                // Then one terminating instance is tolerated, two are not
                assert!(!halts(&plan, one_good()), "{strategy:?}");
                assert!(!halts(&plan, one_terming()), "{strategy:?}");
                assert!(!halts(&plan, one_of_two_terming()), "{strategy:?}");
                assert!(halts(&plan, two_terming()), "{strategy:?}");
            }
        }

        #[test]
        fn a_canary_starts_at_one_and_halts_when_its_only_instance_terminates() {
            // Given OneThenAllWithCanary (Test_Strategy_OneThenAllWithCanary_InitValues, _Termination)
            let plan = odin_plan(Strategy::OneThenAllWithCanary);
            assert_eq!(plan.initial_size(), size(1, 1));
            // Then while the canary is the only instance no termination is tolerated; after, max_terms
            assert!(!halts(&plan, one_good()));
            assert!(halts(&plan, one_terming()));
            assert!(!halts(&plan, one_of_two_terming()));
            assert!(halts(&plan, two_terming()));
        }

        #[test]
        fn a_canary_stays_at_one_until_it_is_healthy_then_goes_to_full_capacity() {
            // Given OneThenAllWithCanary (Test_Strategy_OneThenAllWithCanary_Min_And_Desired)
            let plan = odin_plan(Strategy::OneThenAllWithCanary);
            // Then an unhealthy canary keeps (1, 1); a healthy one, or two instances, ask for all
            assert_eq!(plan.wanted_size(&one_unhealthy()), size(1, 1));
            assert_eq!(plan.wanted_size(&one_good()), size(1, 25));
            assert_eq!(plan.wanted_size(&two_launching()), size(1, 25));
            // And before any instance shows, the canary is still the one being waited for
            assert_eq!(plan.wanted_size(&HealthCounts::default()), size(1, 1));
        }

        #[test]
        fn the_rollout_rate_adds_a_step_never_less_than_one_never_past_the_base() {
            // Given Odin's fastRolloutRate cases for 4 and 10 steps (Test_Strategy_*StepRolloutNoCanary_Rate)
            for strategy in [Strategy::Percent25Steps, Strategy::Percent10Steps] {
                let plan = odin_plan(strategy);
                let rate = |instances, base| plan.rollout_rate(instances, base);
                // Then: always at least 1, not stuck on low numbers, never above the base
                assert_eq!((rate(0, 1), rate(0, 2), rate(0, 4)), (1, 1, 1), "{strategy:?}");
                assert_eq!((rate(1, 1), rate(1, 2)), (1, 2), "{strategy:?}");
                assert_eq!((rate(100, 5), rate(10, 10)), (5, 10), "{strategy:?}");
                assert_eq!((rate(1, 4), rate(2, 4)), (2, 3), "{strategy:?}");
            }
        }

        #[test]
        fn step_strategies_add_a_step_to_the_instance_count_healthy_or_not() {
            // Given Odin's fixture (Test_Strategy_{25Step,10Step,XAtATime}…_InitValues, _Min_And_Desired):
            // (strategy, initial desired, then per check: one good, one unhealthy, two launching)
            let cases = [
                (Strategy::Percent25Steps, 6, [7, 7, 8]),
                (Strategy::Percent10Steps, 2, [3, 3, 4]),
                (Strategy::TenAtATime, 10, [11, 11, 12]),
            ];
            for (strategy, initial, wanted) in cases {
                let plan = odin_plan(strategy);
                assert_eq!(plan.initial_size(), size(1, initial), "{strategy:?}");
                // Then an unhealthy instance counts like a healthy one: the rollout goes on
                let asked = [one_good(), one_unhealthy(), two_launching()].map(|c| plan.wanted_size(&c));
                assert_eq!(asked, wanted.map(|d| size(1, d)), "{strategy:?}");
            }
            assert_eq!(odin_plan(Strategy::TwentyAtATime).initial_size(), size(1, 20));
        }

        #[test]
        fn never_lower_keeps_what_the_group_has_and_calls_only_for_a_change() {
            // Given a group at (min 2, desired 2) (Test_Service_SafeSetMinDesiredCapacity_Works)
            let group = size(2, 2);
            // Then asking for the same, or for less, makes no call; asking for more sets it
            assert_eq!(never_lower(size(2, 2), group), None);
            assert_eq!(never_lower(size(1, 1), group), None);
            assert_eq!(never_lower(size(2, 3), group), Some(size(2, 3)));
            // And the minimum never exceeds the desired capacity
            assert_eq!(never_lower(size(5, 3), size(1, 1)), Some(size(3, 3)));
        }

        #[test]
        fn a_step_rollout_reaches_its_launch_capacity_one_check_at_a_time() {
            // Given 25 % steps to 8, checks that each find what was asked for, none of it healthy
            let plan = CapacityPlan::new(&scaling(8, 8, 0.0, Strategy::Percent25Steps), None);
            let mut asked = vec![plan.initial_size().desired];
            while *asked.last().unwrap() < plan.launch {
                let found = counts(0, *asked.last().unwrap(), 0);
                asked.push(plan.wanted_size(&found).desired);
            }
            // Then it gets there in four steps anyway
            assert_eq!(asked, [2, 4, 6, 8]);
            // And nothing launched stays nothing, where Odin would launch one
            let empty = CapacityPlan::new(&scaling(0, 4, 0.0, Strategy::Percent25Steps), Some(0));
            assert_eq!(empty.initial_size(), size(0, 0));
        }
    }
}
