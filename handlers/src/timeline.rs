//! A readable timeline of a deploy's events.

use skald_engine::workflow::{Recorded, Timestamp};

/// `+h:mm:ss` from `start`: virtual runs read best as elapsed time.
pub fn elapsed(start: Timestamp, at: Timestamp) -> String {
    let secs = at.ms_since(start) / 1000;
    format!("+{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One line per event: elapsed time, seq, type, summary.
pub fn line(start: Timestamp, recorded: &Recorded) -> String {
    format!("  {:>9}  #{:<3} {:<21} {}", elapsed(start, recorded.at), recorded.seq, recorded.event.name(), recorded.event)
}
