//! The retry policy: how long to wait after a failed attempt, and how a receiver's
//! `Retry-After` answer changes that. Pure functions with fixed inputs, so the schedule
//! can be tested without clocks or randomness.

use std::time::{Duration, SystemTime};

/// How far either side of the scheduled wait jitter may move a retry (10 %), so that
/// deliveries that failed together do not all come back in the same instant.
const JITTER_SPREAD: f64 = 0.10;
/// Longest wait a receiver may ask for with `Retry-After`; a larger ask is cut to this,
/// so a misconfigured receiver cannot park deliveries for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait before the next attempt after attempt number `attempt` (1-based) failed, or
/// `None` when the schedule is used up and the delivery is dead.
///
/// `jitter` is a number in `[0, 1)`: 0.5 keeps the scheduled wait, 0 and 1 move it by
/// the full spread down or up. A `retry_after` the receiver asked for replaces the
/// scheduled wait (bounded by [`MAX_RETRY_AFTER`]) and is not jittered: the receiver
/// named the moment it wants.
pub fn next_retry_delay(
    schedule: &[Duration],
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let scheduled = *schedule.get(index)?;
    if let Some(asked) = retry_after {
        return Some(asked.min(MAX_RETRY_AFTER));
    }
    let factor = 1.0 + JITTER_SPREAD * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
    Some(scheduled.mul_f64(factor))
}

/// Parses a `Retry-After` value: whole seconds, or an HTTP date (which counts from
/// `now`; a date already past means "now"). Anything else is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(300),
        Duration::from_secs(1800),
    ];

    #[test]
    fn each_failed_attempt_waits_its_scheduled_time_then_the_delivery_dies() {
        assert_eq!(
            next_retry_delay(&SCHEDULE, 1, None, 0.5),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_retry_delay(&SCHEDULE, 2, None, 0.5),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            next_retry_delay(&SCHEDULE, 3, None, 0.5),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(next_retry_delay(&SCHEDULE, 4, None, 0.5), None);
        assert_eq!(next_retry_delay(&[], 1, None, 0.5), None);
        assert_eq!(next_retry_delay(&SCHEDULE, 0, None, 0.5), None);
    }

    #[test]
    fn jitter_moves_the_wait_by_at_most_ten_percent() {
        assert_eq!(
            next_retry_delay(&SCHEDULE, 2, None, 0.0),
            Some(Duration::from_secs(270))
        );
        assert_eq!(
            next_retry_delay(&SCHEDULE, 2, None, 1.0),
            Some(Duration::from_secs(330))
        );
        // Out-of-range jitter is clamped rather than trusted.
        assert_eq!(
            next_retry_delay(&SCHEDULE, 2, None, 7.0),
            Some(Duration::from_secs(330))
        );
    }

    #[test]
    fn retry_after_replaces_the_schedule_within_bounds_but_not_its_length() {
        let asked = Some(Duration::from_secs(42));
        assert_eq!(
            next_retry_delay(&SCHEDULE, 1, asked, 0.0),
            Some(Duration::from_secs(42))
        );
        let greedy = Some(Duration::from_secs(86_400));
        assert_eq!(
            next_retry_delay(&SCHEDULE, 1, greedy, 0.5),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(next_retry_delay(&SCHEDULE, 4, asked, 0.5), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
