//! Python's `json.dumps(payload, separators=(",", ":"), sort_keys=True)`, byte for byte:
//! the bytes ECHO signs. Keys sorted at every level by code point, no whitespace,
//! everything outside printable ASCII escaped as `\uXXXX` (lower-case hex, surrogate
//! pairs above U+FFFF), floats as Python's `repr` prints them.
//!
//! Known edges that cannot match: integers outside i64/u64 (serde_json reads them as
//! floats, Python keeps them exact), and `NaN`/`Infinity` or overflowing literals like
//! `1e400` (Python reads them, serde_json refuses the body, so the request is a 400).

use std::fmt::Write as _;

use serde_json::Value;

/// The canonical bytes of `value`.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                out.push_str(&float_repr(f));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Rust orders `str` by UTF-8 bytes, which is code point order: Python's.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
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
    // Rust's `{:e}` gives the same shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        dumps(&serde_json::from_str(text).unwrap())
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
