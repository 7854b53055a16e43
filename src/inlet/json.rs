//! An exact JSON tree for the inlet sources: numbers are kept as the text the producer
//! wrote (so an integer past 2^64 or a 17-digit float is never rounded on the way), object
//! members in the order written. `serde_json::Value` cannot do this without the
//! crate-wide `arbitrary_precision` feature, which breaks `#[serde(flatten)]` elsewhere.
//!
//! Strict RFC 8259, as serde_json reads it: no `NaN`/`Infinity`, no lone surrogates, at most
//! [`MAX_DEPTH`] levels of nesting, floats must be finite and integers at most
//! [`MAX_INTEGER_DIGITS`] digits (Python's own limit for `int` from text).

/// Deepest nesting taken (serde_json's limit).
pub const MAX_DEPTH: usize = 128;
/// Longest integer taken: Python's `sys.get_int_max_str_digits()` default.
pub const MAX_INTEGER_DIGITS: usize = 4300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number exactly as written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in the order written; a repeated key keeps every occurrence, and lookups
    /// take the last, as Python's `json` and serde_json do.
    Object(Vec<(String, Json)>),
}

/// Why a text is not JSON, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub struct ParseError {
    pub what: String,
    pub line: usize,
    pub column: usize,
}

impl Json {
    /// The value of `key` in an object (the last, if repeated).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|m| &m.1),
            _ => None,
        }
    }

    /// RFC 6901 JSON pointer lookup (`""` is the whole value).
    pub fn pointer(&self, pointer: &str) -> Option<&Json> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut at = self;
        for token in rest.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            at = match at {
                Json::Object(_) => at.get(&token)?,
                Json::Array(items) => {
                    let canonical_index = token == "0"
                        || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()));
                    if !canonical_index {
                        return None;
                    }
                    items.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(at)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }
}

/// Parses one JSON value (surrounding whitespace allowed).
pub fn parse(text: &[u8]) -> Result<Json, ParseError> {
    let text = match std::str::from_utf8(text) {
        Ok(text) => text,
        Err(err) => {
            let (line, column) = line_column(&text[..err.valid_up_to()]);
            return Err(ParseError {
                what: "invalid UTF-8".into(),
                line,
                column,
            });
        }
    };
    let mut parser = Parser::new(text);
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos < parser.bytes.len() {
        return Err(parser.error("trailing characters after the JSON value"));
    }
    Ok(value)
}

fn line_column(before: &[u8]) -> (usize, usize) {
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn error(&self, what: &str) -> ParseError {
        let (line, column) = line_column(&self.bytes[..self.pos.min(self.bytes.len())]);
        ParseError {
            what: what.to_string(),
            line,
            column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, ParseError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested more than 128 levels deep"));
        }
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested more than 128 levels deep"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let int_digits = self.digits();
        if int_digits == 0 {
            return Err(self.error("invalid number"));
        }
        if int_digits > 1 && self.bytes[int_start] == b'0' {
            return Err(self.error("invalid number (leading zero)"));
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            is_float = true;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            is_float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        let text = &self.text[start..self.pos];
        if is_float {
            // Rust's parse is correctly rounded, as Python's `float()` is.
            let value: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
            if !value.is_finite() {
                return Err(self.error("number out of range"));
            }
        } else if int_digits > MAX_INTEGER_DIGITS {
            return Err(self.error("integer has more than 4300 digits"));
        }
        Ok(Json::Number(text.to_string()))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Runs end at ASCII bytes, so they are whole UTF-8 sequences.
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{08}',
                        Some(b'f') => '\u{0c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                    self.pos += 1;
                    out.push(escaped);
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// After `\u`: four hex digits, and for a high surrogate the `\uXXXX` of its low half.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone surrogate in a \\u escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("EOF in a \\u escape"))?;
        let mut value = 0u32;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            value = value * 16 + v;
        }
        self.pos += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Json {
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        let value = p(
            r#"[1086.1140522564137, 18446744073709551616, -0.0, 1E+5, 5e-324, -123456789012345678901234567890]"#,
        );
        let Json::Array(items) = value else {
            panic!("not an array")
        };
        let texts: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Json::Number(n) => n.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(
            texts,
            [
                "1086.1140522564137",
                "18446744073709551616",
                "-0.0",
                "1E+5",
                "5e-324",
                "-123456789012345678901234567890"
            ]
        );
    }

    #[test]
    fn strings_decode_escapes_and_surrogate_pairs() {
        assert_eq!(
            p(r#""a\"\\\/\b\f\n\r\t\u00fc\ud83d\ude00ж""#),
            Json::String("a\"\\/\u{8}\u{c}\n\r\tü😀ж".into())
        );
    }

    #[test]
    fn objects_keep_order_and_lookups_take_the_last_key() {
        let value = p(r#"{"b":1,"a":{"x":[10,{"y/z":"deep","t~":2}]},"b":2}"#);
        assert_eq!(value.get("b"), Some(&Json::Number("2".into())));
        assert_eq!(
            value.pointer("/a/x/1/y~1z"),
            Some(&Json::String("deep".into()))
        );
        assert_eq!(value.pointer("/a/x/1/t~0"), Some(&Json::Number("2".into())));
        assert_eq!(value.pointer("/a/x/01"), None);
        assert_eq!(value.pointer("a"), None);
        assert_eq!(value.pointer(""), Some(&value));
    }

    #[test]
    fn what_serde_json_refuses_is_refused_with_a_position() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "1e",
            "NaN",
            "Infinity",
            "1e400",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}\"",
            "\"\\x\"",
            "1 2",
            "tru",
        ] {
            let err = parse(bad.as_bytes());
            assert!(err.is_err(), "{bad:?} was taken");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "serde_json takes {bad:?}"
            );
        }
        let err = parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((err.line, err.column), (2, 8), "{err}");
        assert!(parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn integers_past_pythons_digit_limit_are_refused() {
        assert!(parse("9".repeat(MAX_INTEGER_DIGITS).as_bytes()).is_ok());
        assert!(parse("9".repeat(MAX_INTEGER_DIGITS + 1).as_bytes()).is_err());
    }
}
