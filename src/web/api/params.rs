//! Query parameters and body fields of the operator API: decoding a query string into
//! the parameters a route takes, and reading page limits and times. Every refusal is a
//! 400 naming the parameter, so a caller knows what to fix.

use actix_web::http::StatusCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::MAX_PAGE;
use crate::web::ApiError;

/// The decoded query string of one request, checked against the names its route takes.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `query`, refusing a name the route does not take (a misspelt filter would
    /// otherwise silently list everything) and a name given twice.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|err| bad_request(format!("the query string cannot be decoded: {err}")))?
            .into_inner();
        for (at, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(bad_parameter(
                    name,
                    format!(
                        "unknown parameter {name:?}; this route takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs[..at].iter().any(|(earlier, _)| earlier == name) {
                return Err(bad_parameter(
                    name,
                    format!("parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// The value of `name`; an empty value (`state=`, as an empty form field sends it)
    /// counts as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn owned(&self, name: &str) -> Option<String> {
        self.text(name).map(str::to_string)
    }

    /// `limit`: 1 to [`MAX_PAGE`]; absent gives 0, which the store reads as its default.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let Some(text) = self.text("limit") else {
            return Ok(0);
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(bad_parameter(
                "limit",
                format!("limit must be a whole number from 1 to {MAX_PAGE}, got {text:?}"),
            )),
        }
    }

    /// A time parameter (see [`parse_time`]).
    pub fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|text| parse_time(name, text))
            .transpose()
    }
}

/// A time given as unix milliseconds (`1795000000000`) or RFC 3339
/// (`2026-11-22T10:00:00Z`), as unix milliseconds. `name` is the parameter or field, for
/// the error.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().ok()
    } else {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
    };
    parsed.ok_or_else(|| {
        bad_parameter(
            name,
            format!(
                "{name} must be unix milliseconds or an RFC 3339 time like \
                 2026-11-22T10:00:00Z, got {text:?}"
            ),
        )
    })
}

/// Unix milliseconds as RFC 3339 (UTC), for audit details; the number itself if it is out
/// of range.
pub fn format_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A delivery id from the path.
pub fn delivery_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            bad_parameter(
                "id",
                format!("a delivery id is a whole number above 0, got {text:?}"),
            )
        })
}

pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn bad_parameter(name: &str, message: String) -> ApiError {
    bad_request(message).detail("parameter", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELIVERY_PARAMS: &[&str] = &["state", "limit", "from"];

    fn message(err: ApiError) -> (u16, String) {
        (err.status.as_u16(), err.message)
    }

    #[test]
    fn names_are_checked_and_empty_values_count_as_absent() {
        let params = Params::parse("state=dead&from=", DELIVERY_PARAMS).unwrap();
        assert_eq!(params.text("state"), Some("dead"));
        assert_eq!(params.text("from"), None);
        assert_eq!(params.time("from").unwrap(), None);
        let params = Params::parse("state=a%20b+c", DELIVERY_PARAMS).unwrap();
        assert_eq!(params.text("state"), Some("a b c"));

        let (status, text) = message(Params::parse("stat=dead", DELIVERY_PARAMS).unwrap_err());
        assert_eq!(status, 400);
        assert!(text.contains("unknown parameter \"stat\""), "{text}");
        let (_, text) = message(Params::parse("state=a&state=b", DELIVERY_PARAMS).unwrap_err());
        assert!(text.contains("\"state\" is given more than once"), "{text}");
    }

    #[test]
    fn limits_run_from_one_to_the_page_maximum() {
        let limit = |q: &str| Params::parse(q, DELIVERY_PARAMS).unwrap().limit();
        assert_eq!(limit("").unwrap(), 0);
        assert_eq!(limit("limit=1").unwrap(), 1);
        assert_eq!(limit(&format!("limit={MAX_PAGE}")).unwrap(), MAX_PAGE);
        for bad in ["0", "201", "-1", "ten", "1.5"] {
            let (status, text) = message(limit(&format!("limit={bad}")).unwrap_err());
            assert_eq!(status, 400);
            assert!(text.starts_with("limit must be"), "{bad}: {text}");
        }
    }

    #[test]
    fn times_are_unix_milliseconds_or_rfc_3339() {
        assert_eq!(
            parse_time("from", "1795000000000").unwrap(),
            1_795_000_000_000
        );
        assert_eq!(
            parse_time("from", "2026-11-22T10:00:00Z").unwrap(),
            1_795_341_600_000
        );
        assert_eq!(
            parse_time("from", "2026-11-22T11:00:00.250+01:00").unwrap(),
            1_795_341_600_250
        );
        for bad in [
            "yesterday",
            "2026-11-22",
            "-5",
            "1e12",
            "99999999999999999999",
            "",
        ] {
            let (status, text) = message(parse_time("since", bad).unwrap_err());
            assert_eq!(status, 400);
            assert!(text.starts_with("since must be"), "{bad}: {text}");
        }
        assert_eq!(format_time(1_795_341_600_000), "2026-11-22T10:00:00Z");
    }

    #[test]
    fn delivery_ids_are_positive_whole_numbers() {
        assert_eq!(delivery_id("42").unwrap(), 42);
        for bad in ["0", "-3", "x", "4.2", ""] {
            assert_eq!(message(delivery_id(bad).unwrap_err()).0, 400, "{bad}");
        }
    }
}
