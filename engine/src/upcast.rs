//! Reading events written by older skalds.
//!
//! Every event type carries a schema version (`workflow::event::current_version`). When a type's
//! body changes, its version goes up by one and a [`Step`] here rewrites a body of the old version
//! into the new one. Reading applies the steps in order, so a version-1 event in a history recorded
//! years ago reaches today's version one step at a time, and folds like a new one.
//!
//! What is deliberately absent: downcasting (an older skald refuses a newer event instead of
//! guessing), and skipping (an event that cannot be brought up to date is an error naming its seq,
//! because a history with a hole in it is not an audit trail).
//!
//! The hash chain covers the bytes as recorded, never an upcast form: upcasting is a reading of
//! the history, not a change to it.

use serde_json::Value;

/// Rewrites one event type's body from version `from` to version `from + 1`.
pub struct Step {
    pub kind: &'static str,
    pub from: u32,
    pub apply: fn(Value) -> Result<Value, String>,
}

/// Every upcast step this skald knows. Empty while every type is at its first version; a test
/// (`an_old_version_is_brought_up_to_date_step_by_step`) shows the machinery with its own steps.
pub const STEPS: &[Step] = &[];

/// Brings `body`, recorded as version `v` of `kind`, up to version `current`.
pub fn to_current(kind: &str, v: u32, body: Value, current: u32, steps: &[Step]) -> Result<Value, String> {
    if v > current {
        return Err(format!("{kind} has schema version {v}; this skald reads up to version {current} (a newer skald wrote it)"));
    }
    if v == 0 {
        return Err(format!("{kind} has schema version 0; versions start at 1"));
    }
    let mut body = body;
    for from in v..current {
        let step = steps
            .iter()
            .find(|step| step.kind == kind && step.from == from)
            .ok_or_else(|| format!("{kind} has schema version {v}, and this skald has no upcast from version {from}"))?;
        body = (step.apply)(body).map_err(|e| format!("{kind} version {from} could not be upcast: {e}"))?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A history of a made-up schema change: `LockDenied` v1 said `owner`, v2 says `holder`, v3
    /// adds `since`.
    fn rename_owner(mut body: Value) -> Result<Value, String> {
        let object = body.as_object_mut().ok_or("the body is not an object")?;
        let owner = object.remove("owner").ok_or("no `owner`")?;
        object.insert("holder".into(), owner);
        Ok(body)
    }

    fn add_since(mut body: Value) -> Result<Value, String> {
        body.as_object_mut().ok_or("the body is not an object")?.insert("since".into(), Value::Null);
        Ok(body)
    }

    const TEST_STEPS: &[Step] =
        &[Step { kind: "LockDenied", from: 1, apply: rename_owner }, Step { kind: "LockDenied", from: 2, apply: add_since }];

    #[test]
    fn an_old_version_is_brought_up_to_date_step_by_step() {
        let upcast = to_current("LockDenied", 1, json!({"owner": "01J"}), 3, TEST_STEPS).unwrap();
        assert_eq!(upcast, json!({"holder": "01J", "since": null}));
        assert_eq!(to_current("LockDenied", 3, json!({"holder": "01J"}), 3, TEST_STEPS).unwrap(), json!({"holder": "01J"}));
    }

    #[test]
    fn a_missing_step_a_newer_version_and_a_broken_body_are_errors() {
        let missing = to_current("LockDenied", 1, json!({"owner": "01J"}), 3, &TEST_STEPS[1..]).unwrap_err();
        assert_eq!(missing, "LockDenied has schema version 1, and this skald has no upcast from version 1");
        let newer = to_current("LockDenied", 4, json!({}), 3, TEST_STEPS).unwrap_err();
        assert!(newer.contains("a newer skald wrote it"), "{newer}");
        let broken = to_current("LockDenied", 1, json!({"holder": "01J"}), 3, TEST_STEPS).unwrap_err();
        assert_eq!(broken, "LockDenied version 1 could not be upcast: no `owner`");
    }
}
