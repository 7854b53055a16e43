//! Value types written in the config file as human text: durations (`100ms`, `5s`, `2h`)
//! and sizes (`1MiB`). Parsing happens during deserialization, so TOML errors point at
//! the offending value.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as an integer and a unit: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "{text:?} is not a duration; write a whole number followed by ms, s, m, h or d, like \"30s\""
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(expected()),
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"30s\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse_duration(text).map(HumanDuration).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{n} has no unit; write a duration as a string like \"{n}s\" or \"{n}ms\""
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A size in bytes: a plain integer, or a string with a unit `B`, `KiB`, `MiB` or `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

pub fn parse_size(text: &str) -> Result<usize, String> {
    let expected = || {
        format!("{text:?} is not a size; write bytes as a number, or a string like \"512KiB\" or \"1MiB\"")
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| expected())?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(expected()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 1048576 or \"1MiB\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                parse_size(text).map(ByteSize).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                usize::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{n} is not a size; it must not be negative")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Longest secret file read.
const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Reads a secret file: a regular file of at most 64 KiB. A FIFO or device named by
/// mistake (`/dev/stdin`, `/dev/zero`) would hang or fill memory while the config loads.
pub(super) fn read_secret_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read as _};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "over 64 KiB; a secret file holds one secret",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn malformed_durations_say_the_accepted_form() {
        for bad in ["5", "5 s", "-1s", "1.5h", "", "5x", "s", "ms5"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("like \"30s\""), "{bad:?}: {err}");
        }
    }

    /// Regression: `secret_file = "/dev/zero"` was read until memory ran out, and a FIFO
    /// blocked the load for good (the config fuzz target must survive both).
    #[test]
    fn secret_files_must_be_small_regular_files() {
        let err = read_secret_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70 << 10]).unwrap();
        assert!(read_secret_file(&big)
            .unwrap_err()
            .to_string()
            .contains("64 KiB"));
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\n").unwrap();
        assert_eq!(read_secret_file(&ok).unwrap(), "s3cret\n");
    }

    #[test]
    fn sizes_parse_plain_and_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
