//! Times on the operator command line: TIME arguments (`--since`, `--until`) read as RFC
//! 3339, unix milliseconds or a relative `30m`/`1h`/`2d` ago, and API timestamps (unix
//! ms) printed as UTC RFC 3339.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::parse_duration;

/// Reads a TIME argument into unix milliseconds; relative times count back from now.
/// For clap's `value_parser`.
pub fn parse_time_arg(text: &str) -> Result<i64, String> {
    parse_time(text, now_ms())
}

/// Reads `text` as RFC 3339 (`2026-11-22T10:00:00Z`), unix milliseconds (all digits), or
/// a duration before `now_ms` (`30m`, `1h`, `2d`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let expected = || {
        format!(
            "{text:?} is not a time; write RFC 3339 (2026-11-22T10:00:00Z), unix milliseconds, \
             or a time ago like 30m, 1h or 2d"
        )
    };
    if text.is_empty() {
        return Err(expected());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| expected());
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| expected());
    }
    let ago = parse_duration(text).map_err(|_| expected())?;
    let ago_ms = i64::try_from(ago.as_millis()).map_err(|_| expected())?;
    // Further back than 1970 is "since the beginning": the API takes no negative times.
    Ok(now_ms.saturating_sub(ago_ms).max(0))
}

/// `at` (unix ms) as UTC RFC 3339, with milliseconds only when there are some.
pub fn format_ms(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{at} (unix ms)"))
}

/// `at` (unix ms) as UTC RFC 3339 to the second, for tables.
pub fn format_ms_seconds(at: i64) -> String {
    format_ms(at.div_euclid(1000) * 1000)
}

/// A length of time in milliseconds as people say it: `850ms`, `12s`, `4m05s`, `3h20m`,
/// `2d04h`.
pub fn format_age(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    match secs {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn each_kind_of_time_reads() {
        assert_eq!(
            parse_time("2026-11-22T10:00:00Z", NOW),
            Ok(1_795_341_600_000)
        );
        assert_eq!(
            parse_time("2026-11-22T11:00:00.250+01:00", NOW),
            Ok(1_795_341_600_250)
        );
        assert_eq!(parse_time("1795341600000", NOW), Ok(1_795_341_600_000));
        assert_eq!(parse_time("0", NOW), Ok(0));
        assert_eq!(parse_time("30m", NOW), Ok(NOW - 1_800_000));
        assert_eq!(parse_time("1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_time("2d", NOW), Ok(NOW - 172_800_000));
        assert_eq!(parse_time(" 1h ", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_time("100000d", NOW), Ok(0));
    }

    #[test]
    fn a_bad_time_is_named_with_the_forms_it_may_take() {
        for bad in [
            "",
            "yesterday",
            "1x",
            "-5",
            "2026-11-22",
            "2026-11-22 10:00",
            "99999999999999999999",
        ] {
            let err = parse_time(bad, NOW).unwrap_err();
            assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
            assert!(err.contains("RFC 3339") && err.contains("30m"), "{err}");
        }
    }

    #[test]
    fn times_print_as_utc_rfc3339() {
        assert_eq!(format_ms(1_795_341_600_000), "2026-11-22T10:00:00Z");
        assert_eq!(format_ms(1_795_341_600_250), "2026-11-22T10:00:00.25Z");
        assert_eq!(format_ms_seconds(1_795_341_600_999), "2026-11-22T10:00:00Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_time(&format_ms(1_795_341_600_250), NOW),
            Ok(1_795_341_600_250)
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(format_age(0), "0ms");
        assert_eq!(format_age(850), "850ms");
        assert_eq!(format_age(12_400), "12s");
        assert_eq!(format_age(245_000), "4m05s");
        assert_eq!(format_age(12_000_000), "3h20m");
        assert_eq!(format_age(187_200_000), "2d04h");
        assert_eq!(format_age(-5), "0ms");
    }
}
