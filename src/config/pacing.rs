//! How a subscription's deliveries are paced: `rate_limit` ("100/min"), `ordering`
//! ("conversation") and `on_dead` (what a dead delivery does to its conversation's
//! line). Parsed during deserialization, so a bad value is reported at its place.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The pacing of one subscription; the default sends as fast as capacity allows, in any
/// order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    pub rate_limit: Option<RateLimit>,
    pub ordering: Ordering,
    pub on_dead: OnDead,
}

/// At most `count` attempt starts in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Most a rate limit may allow per window: beyond it the window bookkeeping grows
/// without purpose (a limit that high is no limit).
const MAX_RATE_COUNT: u32 = 1_000_000;

pub fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let expected = || {
        format!(
            "{text:?} is not a rate limit; write a whole number, a slash and s, min or h, \
             like \"100/min\""
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(expected)?;
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3_600),
        _ => return Err(expected()),
    };
    if count == 0 {
        return Err(format!(
            "{text:?} allows nothing; to stop a subscription set enabled = false"
        ));
    }
    if count > MAX_RATE_COUNT {
        return Err(format!(
            "{text:?} is more than {MAX_RATE_COUNT} per window; leave rate_limit out for no limit"
        ));
    }
    Ok(RateLimit { count, per })
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = RateLimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate limit like \"100/min\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RateLimit, E> {
                parse_rate_limit(text).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RateLimit, E> {
                Err(E::custom(format!(
                    "{n} has no window; write a rate limit as a string like \"{n}/min\""
                )))
            }
        }
        deserializer.deserialize_any(RateVisitor)
    }
}

/// `ordering`: whether the deliveries of one conversation go one at a time, in the order
/// posthorn accepted the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    None,
    Conversation,
}

/// `on_dead`, with ordering on: what a delivery that died does to the later events of its
/// conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDead {
    /// The line moves on: the next event is sent (the dead one stays on the admin page).
    #[default]
    Continue,
    /// The line waits until the dead delivery is retried and delivered (or cancelled).
    Hold,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    const BLOCK: &str = "[[subscription]]\nname = \"s\"\nurl = \"http://127.0.0.1/\"\n\
                         conversations = [\"*\"]\nevents = [\"*\"]\nsecret = \"x\"\n\
                         signature = \"hex\"\n";

    /// The problems of a subscription block with `extra` appended, as `line:col: message`.
    fn problems(extra: &str) -> Vec<String> {
        let err = parse(&format!("{BLOCK}{extra}"), Path::new("c.toml"))
            .expect_err("the config should be refused");
        err.problems
            .iter()
            .map(|p| {
                let (line, column) = (p.line.unwrap_or(0), p.column.unwrap_or(0));
                format!("{line}:{column}: {}", p.message)
            })
            .collect()
    }

    #[test]
    fn pacing_keys_are_read_and_their_mistakes_located() {
        let config = parse(
            &format!("{BLOCK}rate_limit = \"100/min\"\nordering = \"conversation\"\non_dead = \"hold\"\n"),
            Path::new("c.toml"),
        )
        .unwrap();
        let pacing = config.subscriptions[0].pacing;
        assert_eq!(pacing.rate_limit.map(|r| r.count), Some(100));
        assert_eq!(pacing.ordering, Ordering::Conversation);
        assert_eq!(pacing.on_dead, OnDead::Hold);
        let plain = parse(BLOCK, Path::new("c.toml")).unwrap();
        assert_eq!(plain.subscriptions[0].pacing, Pacing::default());

        let bad = problems("rate_limit = \"100/day\"\n");
        assert!(
            bad[0].starts_with("8:14: \"100/day\" is not a rate limit"),
            "{bad:?}"
        );
        let bad = problems("ordering = \"strict\"\n");
        assert!(
            bad[0].starts_with("8:12: unknown variant `strict`"),
            "{bad:?}"
        );
        let bad = problems("on_dead = \"hold\"\n");
        assert!(
            bad[0].starts_with("8:11: subscription \"s\": on_dead only applies with ordering"),
            "{bad:?}"
        );
    }

    #[test]
    fn rate_limits_read_as_count_per_window() {
        let rate = |t: &str| parse_rate_limit(t).unwrap();
        assert_eq!(
            rate("100/min"),
            RateLimit {
                count: 100,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(rate("5/s").per, Duration::from_secs(1));
        assert_eq!(rate("1000/h").per, Duration::from_secs(3600));
        assert_eq!(rate("100/min").to_string(), "100/min");
        for bad in [
            "100",
            "/min",
            "x/min",
            "100/day",
            "0/s",
            "-1/s",
            "2000000/s",
        ] {
            assert!(parse_rate_limit(bad).is_err(), "{bad} should be refused");
        }
    }
}
