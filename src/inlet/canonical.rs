//! Python's `json.dumps(payload, separators=(",", ":"), sort_keys=True)`, byte for byte:
//! the bytes ECHO signs. Keys sorted at every level by code point (a repeated key keeps its
//! last value, as a Python dict does), no whitespace, everything outside printable ASCII
//! escaped as `\uXXXX` (lower-case hex, surrogate pairs above U+FFFF), integers exactly
//! as written (Python's `int` has any size), floats as Python's `repr` prints the
//! correctly rounded double.
//!
//! Works on the exact tree of `super::json`, so no number is rounded before it is printed.
//! What `json` refuses (`NaN`, `Infinity`, `1e400`, lone surrogates) Python would take;
//! such a request is a 400.

use std::fmt::Write as _;

use super::json::Json;

/// The canonical bytes of `value`.
pub fn dumps(value: &Json) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(text) => write_number(out, text),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Json::Object(members) => {
            // Rust orders `str` by UTF-8 bytes, which is code point order: Python's. The
            // sort is stable, so of a repeated key the last written comes last.
            let mut entries: Vec<&(String, Json)> = members.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            let mut first = true;
            for (i, (key, item)) in entries.iter().map(|e| (&e.0, &e.1)).enumerate() {
                if entries.get(i + 1).is_some_and(|next| &next.0 == key) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Python prints what `json.loads` made of it: an integer keeps its
/// digits (`-0` is the int 0), anything with a fraction or exponent is a float.
fn write_number(out: &mut String, text: &str) {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        match text.parse::<f64>() {
            Ok(f) => out.push_str(&float_repr(f)),
            // The parser only keeps numbers that read as finite doubles.
            Err(_) => out.push_str(text),
        }
    } else if text == "-0" {
        out.push('0');
    } else {
        out.push_str(text);
    }
}

/// `ensure_ascii=True` string escaping, as Python's `py_encode_basestring_ascii`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back as the same double, in
/// fixed notation when the decimal exponent is from -4 to 15, else scientific with a
/// signed exponent of at least two digits (`1e-05`, `1.5e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let (digits, exponent) = half_even_tie(f.abs(), digits, exponent);
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    if (-4..16).contains(&exponent) {
        let n = digits.len() as i32;
        let body = if exponent < 0 {
            format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        } else if exponent + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exponent + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exponent + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// When the double lies exactly halfway between two shortest candidates (889291992000119.25
/// between ...119.2 and ...119.3), Python's dtoa takes the one with the even last digit;
/// Rust's formatter takes the other. Only a shortest form ending in an odd digit can be
/// the wrong one of a tie; the exact expansion (at most 767 significant digits) says.
fn half_even_tie(f: f64, digits: String, exponent: i32) -> (String, i32) {
    let n = digits.len();
    if digits.bytes().last().is_none_or(|d| d % 2 == 0) {
        return (digits, exponent);
    }
    let exact = format!("{f:.800e}");
    let Some((mantissa, exact_exponent)) = exact.split_once('e') else {
        return (digits, exponent);
    };
    let exact_digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let tie =
        exact_digits.get(n) == Some(&b'5') && exact_digits[n + 1..].iter().all(|&d| d == b'0');
    if !tie || exact_exponent.parse() != Ok(exponent) {
        return (digits, exponent);
    }
    // The two candidates are the exact digits cut to n, and that plus one in the last
    // place; the shortest (odd) one is one of them, the even one is the other.
    let mut even = exact_digits[..n].to_vec();
    if even == digits.as_bytes() {
        let Some(last) = even.iter().rposition(|&d| d != b'9') else {
            return (digits, exponent);
        };
        even[last] += 1;
        even[last + 1..].fill(b'0');
    }
    let even = String::from_utf8_lossy(&even).into_owned();
    let text = format!("{}.{}e{exponent}", &even[..1], &even[1..]);
    if even.bytes().last().is_some_and(|d| d % 2 == 0) && text.parse::<f64>() == Ok(f) {
        (even, exponent)
    } else {
        (digits, exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        dumps(&super::super::json::parse(text.as_bytes()).unwrap())
    }

    /// Expected values printed by CPython 3 (`json.dumps(json.loads(x),
    /// separators=(",", ":"), sort_keys=True)` and `repr(float)`).
    #[test]
    fn objects_sort_keys_at_every_level_without_whitespace() {
        assert_eq!(
            canon(r#"{"b": {"z": 1, "a": [true, null, {"y": 2, "x": 3}]}, "a": "s"}"#),
            r#"{"a":"s","b":{"a":[true,null,{"x":3,"y":2}],"z":1}}"#
        );
        // Code point order: upper case before lower case, ASCII before the rest.
        assert_eq!(
            canon(r#"{"é": 1, "b": 2, "B": 3, "_": 4}"#),
            r#"{"B":3,"_":4,"b":2,"\u00e9":1}"#
        );
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        assert_eq!(
            canon(r#""Grüße \"x\" \\ \n\t\r\b\f \u0001 \u007f ☃ 😀""#),
            r#""Gr\u00fc\u00dfe \"x\" \\ \n\t\r\b\f \u0001 \u007f \u2603 \ud83d\ude00""#
        );
        assert_eq!(canon(r#""a/b<>&'""#), r#""a/b<>&'""#);
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the ties are exact binary values, written out
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (2.71, "2.71"),
            (100.0, "100.0"),
            (123456.789, "123456.789"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (2.5e-5, "2.5e-05"),
            // Exact ties between two shortest forms: Python takes the even digit.
            (889291992000119.25, "889291992000119.2"),
            (-271556098175374.125, "-271556098175374.12"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(value), expected, "{value:e}");
        }
    }

    #[test]
    fn numbers_keep_integers_and_read_floats_like_python() {
        assert_eq!(
            canon(r#"[1, -7, 1.0, 1.50, 2e3, 1E-7, 18446744073709551615, -9223372036854775808]"#),
            "[1,-7,1.0,1.5,2000.0,1e-07,18446744073709551615,-9223372036854775808]"
        );
    }
}
