//! A failure that repeats (a full disk under the audit spool, a flood of connections) is logged
//! at most once per interval, with a running count in the line, not once per occurrence.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    last: Mutex<Option<Instant>>,
}

impl LogThrottle {
    pub const INTERVAL: Duration = Duration::from_secs(1);

    pub fn new() -> LogThrottle {
        LogThrottle { last: Mutex::new(None) }
    }

    /// Whether to log now; if so, the next line is due an interval later.
    pub fn due(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let due = last.is_none_or(|at| now.duration_since(at) >= Self::INTERVAL);
        if due {
            *last = Some(now);
        }
        due
    }
}

impl Default for LogThrottle {
    fn default() -> LogThrottle {
        LogThrottle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_and_the_next_ones_within_the_interval_are_not() {
        let throttle = LogThrottle::new();
        assert!(throttle.due());
        assert!(!throttle.due());
        assert!(!throttle.due());
    }
}
