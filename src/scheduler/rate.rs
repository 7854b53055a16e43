//! The window of one subscription's `rate_limit`: when its recent attempts started, so
//! that no window of the limit's length holds more than its count.
//!
//! Starts are stamped when the scheduler hands the attempt to the pool, an instant before
//! a worker begins it. Counting each start over the window plus a small margin keeps that
//! instant's gap from letting one more through: a window of the limit's length at the
//! receiver then never holds more than the count.

use std::collections::VecDeque;

use crate::config::RateLimit;

/// Longest margin added to a window (shorter for short windows: a twentieth of them).
const MAX_MARGIN_MS: i64 = 250;

#[derive(Debug, Default)]
pub struct RateWindow {
    /// Unix ms of each start still inside the window (with its margin), oldest first.
    starts: VecDeque<i64>,
}

fn span_ms(limit: RateLimit) -> i64 {
    let window = limit.per.as_millis() as i64;
    window + (window / 20).min(MAX_MARGIN_MS)
}

impl RateWindow {
    /// A window holding the starts recorded before (unix ms, any order).
    pub fn seeded(mut starts: Vec<i64>) -> Self {
        starts.sort_unstable();
        RateWindow {
            starts: starts.into(),
        }
    }

    /// How many attempts may start at `now_ms`.
    pub fn allowance(&mut self, limit: RateLimit, now_ms: i64) -> usize {
        let horizon = now_ms - span_ms(limit);
        while self.starts.front().is_some_and(|&at| at <= horizon) {
            self.starts.pop_front();
        }
        (limit.count as usize).saturating_sub(self.starts.len())
    }

    /// When the next attempt may start, once [`allowance`](Self::allowance) says none now.
    pub fn next_slot(&self, limit: RateLimit, now_ms: i64) -> i64 {
        let full = self.starts.len().saturating_sub(limit.count as usize - 1);
        match self.starts.get(full.saturating_sub(1)) {
            Some(&oldest) if full > 0 => oldest + span_ms(limit) + 1,
            _ => now_ms,
        }
    }

    pub fn started(&mut self, at_ms: i64, count: usize) {
        self.starts.extend(std::iter::repeat_n(at_ms, count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TEN_PER_SECOND: RateLimit = RateLimit {
        count: 10,
        per: Duration::from_secs(1),
    };

    #[test]
    fn no_window_of_the_limits_length_holds_more_than_its_count() {
        let mut window = RateWindow::default();
        let mut starts = Vec::new();
        // Ask every 7 ms for 5 s and start whatever the window allows.
        for now in (0..5_000).step_by(7) {
            let allowed = window.allowance(TEN_PER_SECOND, now);
            window.started(now, allowed);
            starts.extend(std::iter::repeat_n(now, allowed));
        }
        for &from in &starts {
            let inside = starts
                .iter()
                .filter(|&&s| s >= from && s < from + 1_000)
                .count();
            assert!(inside <= 10, "{inside} starts in the second from {from}");
        }
        // And it does not starve: close to 10 a second over 5 s.
        assert!(starts.len() >= 45, "{} starts", starts.len());
    }

    #[test]
    fn the_next_slot_is_when_the_oldest_start_leaves_the_window() {
        let mut window = RateWindow::seeded(vec![300, 100, 200]);
        let limit = RateLimit {
            count: 3,
            per: Duration::from_secs(1),
        };
        assert_eq!(window.allowance(limit, 400), 0);
        assert_eq!(window.next_slot(limit, 400), 100 + 1_050 + 1);
        assert_eq!(window.allowance(limit, 100 + 1_050 + 1), 1);
    }
}
