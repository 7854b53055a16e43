//! Exact comparison of decimal numbers as written, with no floating point on the way:
//! `12345678901234567890` and `12345678901234567891` differ, `0.1` equals `0.1000` and
//! `1e-1`, and `1e400` is simply a large number. A number is kept as its sign, its
//! significant digits and a decimal exponent.

use std::cmp::Ordering;

/// Exponents are clamped here: past it every comparison a filter could mean is decided
/// by the sign and the clamp (a number with a 10^15-digit exponent cannot be written in
/// a body anyway).
const EXPONENT_LIMIT: i64 = 1 << 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Significant digits, no leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    /// The value is `0.digits × 10^exponent`.
    exponent: i64,
}

impl Decimal {
    /// Parses a JSON number (a leading `+` is also taken, as TOML writes it). `None` when
    /// the text is not a number.
    pub fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let int = &bytes[int_start..i];
        let mut frac: &[u8] = &[];
        if bytes.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            frac = &bytes[start..i];
            if frac.is_empty() {
                return None;
            }
        }
        if int.is_empty() {
            return None;
        }
        let mut exponent: i64 = 0;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exp_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                exponent = (exponent * 10 + i64::from(d - b'0')).min(EXPONENT_LIMIT);
                i += 1;
            }
            if i == start {
                return None;
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != bytes.len() {
            return None;
        }
        // 0.(int frac) × 10^(len(int) + exponent), then strip zeros on both ends.
        let mut digits: Vec<u8> = int.iter().chain(frac).map(|d| d - b'0').collect();
        let mut exponent = exponent + int.len() as i64;
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        exponent -= leading as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        Some(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.exponent
            .cmp(&other.exponent)
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl std::fmt::Display for Decimal {
    /// Plain digits when the exponent is small (`0.5`, `120`), else `0.ddde±n`: a JSON
    /// and TOML number that reads back as the same value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let sign = if self.negative { "-" } else { "" };
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let n = self.digits.len() as i64;
        if (0..=40).contains(&self.exponent) {
            let e = self.exponent;
            if e >= n {
                write!(f, "{sign}{digits}{}", "0".repeat((e - n) as usize))
            } else if e == 0 {
                write!(f, "{sign}0.{digits}")
            } else {
                let (int, frac) = digits.split_at(e as usize);
                write!(f, "{sign}{int}.{frac}")
            }
        } else {
            write!(f, "{sign}0.{digits}e{}", self.exponent)
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap_or_else(|| panic!("{text:?} did not parse"))
    }

    #[test]
    fn equal_values_written_differently_are_equal() {
        for (a, b) in [
            ("0.1", "0.1000"),
            ("0.1", "1e-1"),
            ("1", "1.0"),
            ("100", "1E2"),
            ("100", "1e+2"),
            ("0", "-0"),
            ("0", "0.000e5"),
            ("-2.50", "-25e-1"),
            ("+3", "3"),
        ] {
            assert_eq!(d(a), d(b), "{a} = {b}");
        }
    }

    #[test]
    fn big_integers_and_long_decimals_compare_exactly() {
        // Both read as the same f64; exactly they differ.
        assert!(d("12345678901234567891") > d("12345678901234567890"));
        assert!(d("0.10000000000000000001") > d("0.1"));
        assert!(d("9007199254740993") > d("9007199254740992"));
        assert!(d("1e400") > d("1.7976931348623157e308"));
        assert!(d("-1e400") < d("-5"));
        assert!(d("1e-400") > d("0"));
        assert!(d("1e-400") < d("1e-399"));
        assert!(d("-0.5") < d("0"));
        assert!(d("-0.5") > d("-0.6"));
        assert!(d("0.5") < d("0.55"));
        assert!(d("10") > d("9.99"));
        assert!(d("1e99999999999999999999999") > d("1e400"));
    }

    #[test]
    fn numbers_print_as_numbers_that_read_back_the_same() {
        for (text, shown) in [
            ("0.50", "0.5"),
            ("120", "120"),
            ("-1.25", "-1.25"),
            ("0", "0"),
            ("0.001", "0.1e-2"),
            ("12345678901234567890", "12345678901234567890"),
            ("1e400", "0.1e401"),
        ] {
            assert_eq!(d(text).to_string(), shown);
            assert_eq!(d(shown), d(text));
        }
    }

    #[test]
    fn what_is_not_a_number_is_refused() {
        for bad in [
            "", "-", "1.", ".5", "1e", "1e+", "0x10", "inf", "nan", "1_000", "1 ", "--1",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }
}
