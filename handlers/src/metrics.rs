//! Metrics the Lambda publishes, as CloudWatch embedded metric format (EMF): one JSON object per
//! line on stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into a metric. No
//! client, no PutMetricData permission, no extra call on the deploy's path.
//!
//! One metric: `skald/FailureDirty` (Count, dimension `Table` = the events table, so two stacks in
//! one account alarm separately), 1 each time a deploy ends FailureDirty. The stack's
//! FailureDirtyAlarm watches it. Emitted only by the worker whose message appended the end
//! (`Handled::Finished { ended_now }`), so a stale wake that finds the deploy finished does not
//! count it again. The deploy id, error kind and reason ride along as properties, for Logs
//! Insights, without becoming dimensions (each dimension value would be its own metric).

use skald_engine::runner::Handled;
use skald_engine::workflow::{Cleanliness, End};

pub const NAMESPACE: &str = "skald";
pub const FAILURE_DIRTY: &str = "FailureDirty";
pub const DIMENSION_TABLE: &str = "Table";

/// The EMF line to print for `handled`, if it is a deploy this worker just ended FailureDirty.
/// `at_ms` is the metric's timestamp (ms since the epoch).
pub fn failure_dirty_line(table: &str, handled: &Handled, at_ms: u64) -> Option<String> {
    let Handled::Finished { deploy, end: Some(End::Failure { error, cleanliness: Cleanliness::Dirty, reason }), ended_now: true } = handled
    else {
        return None;
    };
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION_TABLE]],
                "Metrics": [{ "Name": FAILURE_DIRTY, "Unit": "Count" }],
            }],
        },
        DIMENSION_TABLE: table,
        FAILURE_DIRTY: 1,
        "deploy": deploy,
        "error": format!("{error:?}"),
        "reason": reason,
    });
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skald_engine::workflow::ErrorKind;

    fn finished(cleanliness: Cleanliness, ended_now: bool) -> Handled {
        Handled::Finished {
            deploy: "deploy#01JD4XM5ZQ8R2VN6T3KWBHC7PY".into(),
            end: Some(End::Failure { error: ErrorKind::Deploy, cleanliness, reason: "DeleteAutoScalingGroup: \"denied\"".into() }),
            ended_now,
        }
    }

    /// The line is one JSON object that follows the EMF specification: `_aws.Timestamp` in ms,
    /// one CloudWatchMetrics directive whose dimension set names only top-level members, and the
    /// metric's value as a top-level number under the metric's name.
    #[test]
    fn a_dirty_end_is_one_well_formed_emf_line() {
        let line = failure_dirty_line("skald-events", &finished(Cleanliness::Dirty, true), 1_795_262_400_000).unwrap();

        assert!(!line.contains('\n'), "one line: {line}");
        let emf: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(emf["_aws"]["Timestamp"], 1_795_262_400_000_u64);
        let directives = emf["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], "skald");
        assert_eq!(directive["Metrics"], serde_json::json!([{ "Name": "FailureDirty", "Unit": "Count" }]));
        for dimension_set in directive["Dimensions"].as_array().unwrap() {
            for dimension in dimension_set.as_array().unwrap() {
                assert!(emf[dimension.as_str().unwrap()].is_string(), "dimension {dimension} is a top-level string");
            }
        }
        assert_eq!(emf["Table"], "skald-events");
        assert_eq!(emf["FailureDirty"], 1);
        assert_eq!(emf["deploy"], "deploy#01JD4XM5ZQ8R2VN6T3KWBHC7PY");
        assert_eq!(emf["reason"], "DeleteAutoScalingGroup: \"denied\"");
    }

    #[test]
    fn only_a_dirty_end_appended_by_this_message_counts() {
        assert!(failure_dirty_line("t", &finished(Cleanliness::Dirty, false), 0).is_none(), "found finished: counted already");
        assert!(failure_dirty_line("t", &finished(Cleanliness::Clean, true), 0).is_none());
        let success = Handled::Finished { deploy: "deploy#x".into(), end: Some(End::Success), ended_now: true };
        assert!(failure_dirty_line("t", &success, 0).is_none());
        let waiting = Handled::Waiting { deploy: "deploy#x".into(), until: skald_engine::workflow::time::Timestamp(0) };
        assert!(failure_dirty_line("t", &waiting, 0).is_none());
    }
}
