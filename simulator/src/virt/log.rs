//! The event log of a virtual-time run: one line per device transition, boot, fault and rollout
//! decision, stamped with the virtual time since the start. Same scenario, same seed: same bytes.

use std::fmt::Write as _;

/// Lines in the order they happened.
#[derive(Debug, Default)]
pub struct EventLog {
    text: String,
    lines: u64,
}

impl EventLog {
    /// Appends one line at `secs` since the start.
    pub fn line(&mut self, secs: i64, what: &str, subject: &str, detail: &str) {
        let (d, rest) = (secs / 86_400, secs % 86_400);
        let _ = writeln!(
            self.text,
            "{d}d{:02}:{:02}:{:02} {what:<9} {subject} {detail}",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        );
        self.lines += 1;
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_with_days_and_time() {
        let mut log = EventLog::default();
        log.line(90_061, "device", "d-1", "idle -> downloading");
        assert_eq!(log.text(), "1d01:01:01 device    d-1 idle -> downloading\n");
        assert_eq!(log.lines(), 1);
    }
}
