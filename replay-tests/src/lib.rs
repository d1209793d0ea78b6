//! Recorded histories and the tests that replay them.
//!
//! A history travels as NDJSON: one stored event (`{seq, at, type, v, body, hash}`) per line, the
//! same form the event store holds. This crate reads and writes that form; `tests/` replays it.

use skald_engine::codec::StoredEvent;

/// One history as NDJSON text, a line per event.
pub fn to_ndjson(history: &[StoredEvent]) -> String {
    history.iter().map(|e| serde_json::to_string(e).expect("stored events serialise") + "\n").collect()
}

/// Parses NDJSON; an error names the line.
pub fn from_ndjson(text: &str) -> Result<Vec<StoredEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

pub mod sim;
