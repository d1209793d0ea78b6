//! Placement groups (Odin's `FindOrCreatePartitionGroup`): a service that names one gets it
//! checked when it exists (available, with the strategy and partition count the release says)
//! and created when it does not — but only when it is named under the project-config's own
//! prefix, `<path prefix>/<project>/<config>/`, so a producer can never create a group named like
//! another project's.
//!
//! Groups are looked up only for deploys recorded under `event::RULES_PLACEMENT` or later
//! (`Lookup::placement_groups` is `None` otherwise, and nothing is judged), so older histories
//! resolve as they did.
//!
//! Deliberately absent: deleting groups. A group is shared by every release of its
//! project-config, as in Odin; skald only ever adds the one a release names.

use super::release::Service;
use super::settings::Settings;
use super::validate::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only state in which EC2 places instances in a group.
pub const STATE_AVAILABLE: &str = "available";
/// The strategy whose groups have a partition count.
pub const STRATEGY_PARTITION: &str = "partition";

/// A placement group as the cloud reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundPlacementGroup {
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<u32>,
    /// `pending`, `available`, `deleting` or `deleted`.
    pub state: String,
}

/// The prefix a group skald creates must be named under.
pub fn creatable_prefix(settings: &Settings, project: &str, config: &str) -> String {
    format!("{}/{project}/{config}/", settings.path_prefix)
}

/// Judges `service`'s placement group against what the lookup found (`None`: not looked up, a
/// history from before groups were). Returns whether the group must be created at launch.
pub fn check(
    problems: &mut Vec<Problem>,
    path: &str,
    service: &Service,
    found: Option<&BTreeMap<String, FoundPlacementGroup>>,
    prefix: &str,
) -> bool {
    let (Some(name), Some(found)) = (&service.placement_group_name, found) else { return false };
    let Some(group) = found.get(name) else {
        let creatable = name.starts_with(prefix) && name.len() > prefix.len();
        if !creatable {
            let message = format!("no placement group `{name}` found; skald creates one only when its name starts with `{prefix}`");
            problems.push(Problem::new(format!("{path}.placement_group_name"), message));
        }
        return creatable;
    };
    if group.state != STATE_AVAILABLE {
        let message = format!("placement group `{name}` is {}, not {STATE_AVAILABLE}", group.state);
        problems.push(Problem::new(format!("{path}.placement_group_name"), message));
    }
    let strategy = service.placement_group_strategy.as_deref().unwrap_or_default();
    if group.strategy != strategy {
        let message = format!("placement group `{name}` has strategy `{}`, not `{strategy}`", group.strategy);
        problems.push(Problem::new(format!("{path}.placement_group_strategy"), message));
    } else if strategy == STRATEGY_PARTITION && group.partition_count != service.placement_group_partition_count {
        let count = |c: Option<u32>| c.map_or("no".to_string(), |c| c.to_string());
        let message = format!(
            "placement group `{name}` has {} partitions, not {}",
            count(group.partition_count),
            count(service.placement_group_partition_count)
        );
        problems.push(Problem::new(format!("{path}.placement_group_partition_count"), message));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "odin/coinbase/deploy-test/production/";

    fn service(name: &str, strategy: &str, partitions: Option<u32>) -> Service {
        Service {
            placement_group_name: Some(name.into()),
            placement_group_strategy: Some(strategy.into()),
            placement_group_partition_count: partitions,
            ..Service::default()
        }
    }

    fn found(name: &str, strategy: &str, partitions: Option<u32>, state: &str) -> BTreeMap<String, FoundPlacementGroup> {
        let group = FoundPlacementGroup { strategy: strategy.into(), partition_count: partitions, state: state.into() };
        BTreeMap::from([(name.to_string(), group)])
    }

    fn judge(service: &Service, found: Option<&BTreeMap<String, FoundPlacementGroup>>) -> (bool, Vec<String>) {
        let mut problems = Vec::new();
        let create = check(&mut problems, "services.web", service, found, PREFIX);
        (create, problems.iter().map(ToString::to_string).collect())
    }

    // The cases of Odin's Test_FindOrCreatePartitionGroup, and what skald adds (state, count).

    #[test]
    fn a_missing_group_under_the_project_configs_prefix_is_created() {
        let name = format!("{PREFIX}groupName");
        assert_eq!(judge(&service(&name, "cluster", None), Some(&BTreeMap::new())), (true, vec![]));
    }

    #[test]
    fn a_missing_group_named_elsewhere_is_refused() {
        let (create, problems) = judge(&service("bad_prefix/groupName", "cluster", None), Some(&BTreeMap::new()));
        assert!(!create);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("services.web.placement_group_name: no placement group `bad_prefix/groupName` found"),
            "{problems:?}"
        );
        assert!(problems[0].contains(PREFIX), "{problems:?}");
        // The prefix alone is not a name.
        assert!(!judge(&service(PREFIX, "cluster", None), Some(&BTreeMap::new())).0);
    }

    #[test]
    fn an_existing_group_with_the_same_settings_is_used_as_it_is() {
        let name = format!("{PREFIX}groupName");
        assert_eq!(judge(&service(&name, "partition", Some(5)), Some(&found(&name, "partition", Some(5), "available"))), (false, vec![]));
        // An existing group may be named anywhere: only creating is confined to the prefix.
        let shared = "shared-cluster";
        assert_eq!(judge(&service(shared, "cluster", None), Some(&found(shared, "cluster", None, "available"))), (false, vec![]));
    }

    #[test]
    fn an_existing_group_of_another_strategy_is_refused() {
        let name = format!("{PREFIX}groupName");
        let (_, problems) = judge(&service(&name, "wrong_strategy", None), Some(&found(&name, "cluster", None, "available")));
        assert_eq!(
            problems,
            [format!("services.web.placement_group_strategy: placement group `{name}` has strategy `cluster`, not `wrong_strategy`")]
        );
    }

    #[test]
    fn an_existing_partition_group_of_another_count_is_refused() {
        let name = format!("{PREFIX}groupName");
        let (_, problems) = judge(&service(&name, "partition", Some(3)), Some(&found(&name, "partition", Some(5), "available")));
        assert_eq!(problems, [format!("services.web.placement_group_partition_count: placement group `{name}` has 5 partitions, not 3")]);
    }

    #[test]
    fn a_group_that_is_not_available_is_refused() {
        let name = format!("{PREFIX}groupName");
        let (_, problems) = judge(&service(&name, "spread", None), Some(&found(&name, "spread", None, "deleting")));
        assert_eq!(problems, [format!("services.web.placement_group_name: placement group `{name}` is deleting, not available")]);
    }

    #[test]
    fn groups_not_looked_up_are_not_judged() {
        // Given a history from before placement groups were looked up
        assert_eq!(judge(&service("anything", "cluster", None), None), (false, vec![]));
    }
}
