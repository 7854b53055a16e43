//! A forward scanner over JSON text that never builds a tree: it steps over members and
//! items, hands out the exact text of each value (so what is kept is copied byte for
//! byte), and skips whole values a word at a time (see `skip.rs`). It reads the
//! bodies posthorn built itself (valid JSON), but stays panic-free and terminating on any
//! text: a malformed body is an error, never a crash.

use std::borrow::Cow;
use std::ops::Range;

use super::skip;

/// Where a body stopped being the JSON the scanner expected (byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not well-formed JSON near byte {0}")]
pub struct Malformed(pub usize);

pub struct Scanner<'a> {
    pub text: &'a str,
    bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub fn ws(&mut self) {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
    }

    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn fail<T>(&self) -> Result<T, Malformed> {
        Err(Malformed(self.pos))
    }

    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail()
        }
    }

    /// Steps over a string whose opening quote is at `pos`.
    fn skip_string(&mut self) -> Result<(), Malformed> {
        match skip::string_end(self.bytes, self.pos + 1) {
            Some(end) => {
                self.pos = end;
                Ok(())
            }
            None => {
                self.pos = self.bytes.len();
                self.fail()
            }
        }
    }

    /// A string's raw contents (escapes as written), the quotes consumed.
    pub fn string_raw(&mut self) -> Result<&'a str, Malformed> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.fail();
        }
        let start = self.pos + 1;
        self.skip_string()?;
        self.text.get(start..self.pos - 1).map_or(self.fail(), Ok)
    }

    /// Steps over one value and returns its exact span. Containers are skipped with a
    /// depth count, not recursion, so nesting cannot exhaust the stack.
    pub fn skip_value(&mut self) -> Result<Range<usize>, Malformed> {
        self.ws();
        let start = self.pos;
        match self.peek() {
            None => return self.fail(),
            Some(b'"') => self.skip_string()?,
            Some(b'{' | b'[') => match skip::container_end(self.bytes, self.pos) {
                Some(end) => self.pos = end,
                None => {
                    self.pos = self.bytes.len();
                    return self.fail();
                }
            },
            Some(_) => {
                let rest = self.bytes.get(start..).unwrap_or_default();
                self.pos += rest
                    .iter()
                    .position(
                        |b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'E' | b'a'..=b'z'),
                    )
                    .unwrap_or(rest.len());
                if self.pos == start {
                    return self.fail();
                }
            }
        }
        Ok(start..self.pos)
    }

    /// Enters an object; `Ok(false)` when it is empty (and already left).
    pub fn begin_object(&mut self) -> Result<bool, Malformed> {
        self.begin(b'{', b'}')
    }

    /// Enters an array; `Ok(false)` when it is empty (and already left).
    pub fn begin_array(&mut self) -> Result<bool, Malformed> {
        self.begin(b'[', b']')
    }

    fn begin(&mut self, open: u8, close: u8) -> Result<bool, Malformed> {
        self.expect(open)?;
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// A member's raw key and the `:` after it; returns where the member starts.
    pub fn key(&mut self) -> Result<(usize, &'a str), Malformed> {
        self.ws();
        let start = self.pos;
        let key = self.string_raw()?;
        self.expect(b':')?;
        Ok((start, key))
    }

    /// After a member or item: `Ok(true)` if another follows, `Ok(false)` at the end
    /// (which is consumed).
    pub fn next(&mut self, close: u8) -> Result<bool, Malformed> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => self.fail(),
        }
    }
}

/// The decoded value of a raw (escaped) JSON string. Escapes that do not decode (a lone
/// surrogate) become U+FFFD; posthorn's bodies never hold them.
pub fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let mut unit = || {
                    let hex: String = chars.by_ref().take(4).collect();
                    u32::from_str_radix(&hex, 16).ok()
                };
                let first = unit();
                let code = match first {
                    Some(high @ 0xD800..=0xDBFF) => {
                        let rest = chars.as_str();
                        match rest.strip_prefix("\\u").and_then(|r| r.get(..4)) {
                            Some(hex) => match u32::from_str_radix(hex, 16) {
                                Ok(low @ 0xDC00..=0xDFFF) => {
                                    chars = rest[6..].chars();
                                    Some(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                                }
                                _ => None,
                            },
                            None => None,
                        }
                    }
                    other => other,
                };
                out.push(code.and_then(char::from_u32).unwrap_or('\u{fffd}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_skipped_to_their_exact_end() {
        let text = r#" {"a":"x\"]}\\","b":[1,{"c":[]}]} , 1e400 ,"s",true,null,-0.10"#;
        let mut sc = Scanner::new(text);
        let span = sc.skip_value().unwrap();
        assert_eq!(&text[span], r#"{"a":"x\"]}\\","b":[1,{"c":[]}]}"#);
        let mut rest = Vec::new();
        while sc.next(b']').is_ok() {
            rest.push(&text[sc.skip_value().unwrap()]);
        }
        assert_eq!(rest, ["1e400", "\"s\"", "true", "null", "-0.10"]);
    }

    #[test]
    fn escaped_quotes_and_backslash_runs_end_strings_where_they_should() {
        let long = "\\u00e9".repeat(20);
        for (text, end) in [
            (r#""a\\" 1"#.to_string(), 5),
            (r#""a\\\"b" 1"#.to_string(), 8),
            (format!(r#""{long}\"x\\\\" 1"#), long.len() + 9),
            (format!(r#""{long}{long}" 1"#), 2 * long.len() + 2),
        ] {
            let mut sc = Scanner::new(&text);
            assert_eq!(sc.skip_value().unwrap(), 0..end, "{text}");
        }
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for bad in ["", "{", "[1,", "\"abc", "\"ab\\", "{\"a\"", ":", "}"] {
            let mut sc = Scanner::new(bad);
            let skipped = sc.skip_value();
            assert!(skipped.is_err() || sc.pos <= bad.len(), "{bad:?}");
        }
        // Running off the end is an error at the end, wherever the value started.
        for (bad, at) in [
            ("\"abc", 4),
            (r#""abc\""#, 6),
            ("{\"a\":[1,2}", 10),
            (r#" [{"a":"]}\"}"#, 13),
            ("\"ab\\", 4),
        ] {
            assert_eq!(
                Scanner::new(bad).skip_value(),
                Err(Malformed(at)),
                "{bad:?}"
            );
        }
        assert_eq!(Scanner::new(" :").skip_value(), Err(Malformed(1)));
    }

    #[test]
    fn strings_decode_escapes_and_surrogate_pairs() {
        assert_eq!(decode(r"plain"), "plain");
        assert_eq!(
            decode(r#"a\"\\\/\b\f\n\r\t\u00fc\ud83d\ude00ж"#),
            "a\"\\/\u{8}\u{c}\n\r\tü😀ж"
        );
        assert_eq!(decode(r"\ud800x"), "\u{fffd}x");
    }
}
