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

/// Prints a growing history, each event once.
pub struct Printer {
    start: Timestamp,
    printed: usize,
}

impl Printer {
    pub fn new(start: Timestamp) -> Printer {
        Printer { start, printed: 0 }
    }

    /// Prints the events of `history` not printed yet.
    pub fn print_new(&mut self, out: &mut dyn std::io::Write, history: &[Recorded]) -> std::io::Result<()> {
        for recorded in history.iter().skip(self.printed) {
            writeln!(out, "{}", line(self.start, recorded))?;
        }
        self.printed = self.printed.max(history.len());
        Ok(())
    }
}
