//! Where a JSON string or container ends. Inside a string, a word (8 bytes) of text is
//! tested at once for a quote or a backslash, so the bytes in between cost no branch
//! each; past [`LONG`] bytes the string's end is looked for with `memchr` on quotes.
//! Between strings (a colon, a comma, a bracket: a few bytes) a plain loop is quicker
//! than a word test. These walks mean what a byte-at-a-time walk means, on any text,
//! malformed included (the tests compare them with one on generated input): outside
//! strings only quotes and brackets count, inside a string a backslash escapes the byte
//! after it.

/// After this many bytes of one string, its end is looked for with `memchr` on quotes
/// (one call per quote, however many escapes come between).
const LONG: usize = 24;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A word whose lowest set bit is the high bit of the first byte of `word` that equals
/// `byte` (zero when none does). Bits above it may be set for bytes that do not equal
/// `byte` (a borrow runs up from an equal byte), so only the lowest one may be read.
fn equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    // Only a zero byte of `x` starts a borrow, so below the first one nothing is flagged.
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The 8 bytes from `i`, as a little-endian word (byte `i` lowest), if there are 8.
fn word(bytes: &[u8], i: usize) -> Option<u64> {
    bytes
        .get(i..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map(|chunk| u64::from_le_bytes(*chunk))
}

/// The index of the first flagged byte of a word read at `i`.
fn first_hit(i: usize, hits: u64) -> usize {
    i + (hits.trailing_zeros() / 8) as usize
}

/// Just past the closing quote of the string whose contents start at `from`; `None`
/// when the text ends first.
pub fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        // `i` is never an escaped byte here, which the memchr walk needs.
        if i - from >= LONG {
            return long_string_end(bytes, i);
        }
        i = match word(bytes, i) {
            Some(w) => {
                let hits = equal(w, b'"') | equal(w, b'\\');
                if hits == 0 {
                    i += 8;
                    continue;
                }
                first_hit(i, hits)
            }
            None => {
                i + bytes
                    .get(i..)?
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\')?
            }
        };
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            _ => i += 2,
        }
    }
}

/// The rest of a long string from `clean` (a byte no backslash escapes): one memchr per
/// quote, which ends the string unless an odd run of backslashes stands before it (ECHO
/// escapes every non-ASCII character, so stopping at each backslash would mean a call
/// every few bytes).
fn long_string_end(bytes: &[u8], clean: usize) -> Option<usize> {
    let mut i = clean;
    loop {
        let quote = i + memchr::memchr(b'"', bytes.get(i..)?)?;
        let backslashes = bytes
            .get(clean..quote)?
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote + 1);
        }
        i = quote + 1;
    }
}

/// Just past the bracket that closes the container opening at `at` (a `{` or `[`);
/// `None` when the text ends first. Brackets are counted, not matched (`{]` closes),
/// as a byte-at-a-time count would.
pub fn container_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    loop {
        i += bytes
            .get(i..)?
            .iter()
            .position(|b| matches!(b, b'"' | b'{' | b'[' | b']' | b'}'))?;
        match bytes.get(i)? {
            b'"' => i = string_end(bytes, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            _ => {
                depth = depth.saturating_sub(1);
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walks as they were written before words: a byte at a time (the container
    /// walk stops at the next quote or bracket, the string walk at the next quote or
    /// backslash), with the same memchr walk for long strings after 24 bytes.
    fn string_end_bytewise(bytes: &[u8], from: usize) -> Option<usize> {
        let mut pos = from;
        let end = (pos + 24).min(bytes.len());
        while pos < end {
            match bytes[pos] {
                b'"' => return Some(pos + 1),
                b'\\' => pos += 2,
                _ => pos += 1,
            }
        }
        let clean = pos.min(bytes.len());
        loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            let quote = pos + memchr::memchr(b'"', rest)?;
            let backslashes = bytes[clean..quote]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            pos = quote + 1;
            if backslashes % 2 == 0 {
                return Some(pos);
            }
        }
    }

    fn container_end_bytewise(bytes: &[u8], at: usize) -> Option<usize> {
        let mut pos = at;
        let mut depth = 0usize;
        loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            let at = rest
                .iter()
                .position(|b| matches!(b, b'"' | b'{' | b'[' | b']' | b'}'))?;
            pos += at;
            match bytes[pos] {
                b'"' => pos = string_end_bytewise(bytes, pos + 1)?,
                b'{' | b'[' => {
                    depth += 1;
                    pos += 1;
                }
                _ => {
                    depth -= 1;
                    pos += 1;
                    if depth == 0 {
                        return Some(pos);
                    }
                }
            }
        }
    }

    #[test]
    fn the_lowest_flag_is_the_first_equal_byte() {
        let samples = [
            0u8,
            1,
            2,
            b'"',
            b'"' + 1,
            b'\\',
            b'\\' + 1,
            0x7F,
            0x80,
            0xFE,
            0xFF,
        ];
        for byte in [b'"', b'\\', 0, 0xFF] {
            for a in samples {
                for b in samples {
                    for at in 0..=8 {
                        let mut bytes = [a, b, a, b, b, a, a, b];
                        if at < 8 {
                            bytes[at] = byte;
                        }
                        let hits = equal(u64::from_le_bytes(bytes), byte);
                        let first = bytes.iter().position(|&x| x == byte);
                        let found = (hits != 0).then(|| first_hit(0, hits));
                        assert_eq!(found, first, "{byte:#x} in {bytes:x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_end_at_the_first_unescaped_quote_in_and_across_words() {
        let long = "\\u00e9".repeat(20);
        for (text, end) in [
            (r#"a\\" 1"#.to_string(), Some(4)),
            (r#"a\\\"b" 1"#.to_string(), Some(7)),
            (r#"0123456\"9"x"#.to_string(), Some(11)),
            (r#"0123456\\"9"x"#.to_string(), Some(10)),
            (r#"01234567\""#.to_string(), None),
            (format!(r#"{long}\"x\\\\" 1"#), Some(long.len() + 8)),
            (format!(r#"{long}{long}" 1"#), Some(2 * long.len() + 1)),
            (format!(r#"{}\" 1"#, "x".repeat(70)), None),
            ("abc\\".to_string(), None),
            (String::new(), None),
        ] {
            assert_eq!(string_end(text.as_bytes(), 0), end, "{text}");
        }
    }

    #[test]
    fn containers_skip_nested_values_and_brackets_inside_strings() {
        for (text, end) in [
            (r#"{"a":"x\"]}\\","b":[1,{"c":[]}]} , 1"#, Some(32)),
            (r#"[[[[[[[[[[]]]]]]]]]]]"#, Some(20)),
            (r#"{"k":"\u007d}","n":-0.10e400}"#, Some(29)),
            (r#"{"a":[1,2}"#, None),
            (r#"{"a":"}"#, None),
            (r#"{]"#, Some(2)),
        ] {
            assert_eq!(container_end(text.as_bytes(), 0), end, "{text}");
        }
    }

    /// A deterministic generator (xorshift) of JSON-ish text: mostly well formed, with
    /// long strings full of escapes, and sometimes anything at all.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            crate::test_rng::below(&mut self.0, n)
        }

        fn string(&mut self, out: &mut String) {
            const PIECES: &[&str] = &[
                "a", "word ", "\\\"", "\\\\", "\\u00e9", "\\n", "é", "—", "{", "]", "x", "0",
            ];
            out.push('"');
            let len = match self.below(4) {
                0 => self.below(200),
                _ => self.below(12),
            };
            for _ in 0..len {
                out.push_str(PIECES[self.below(PIECES.len())]);
            }
            out.push('"');
        }

        fn value(&mut self, depth: usize, out: &mut String) {
            match (depth, self.below(6)) {
                (0, _) | (_, 0) => out.push_str(["1", "-0.5e3", "true", "null"][self.below(4)]),
                (_, 1 | 2) => self.string(out),
                (_, 3) => {
                    out.push('[');
                    for i in 0..self.below(5) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.value(depth - 1, out);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for i in 0..self.below(5) {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        self.string(out);
                        out.push(':');
                        self.value(depth - 1, out);
                    }
                    out.push('}');
                }
            }
        }

        /// `text` with a few bytes replaced, cut short, or both.
        fn damage(&mut self, text: &str) -> Vec<u8> {
            const BYTES: &[u8] = b"\"\\{}[]a ";
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..self.below(3) {
                if !bytes.is_empty() {
                    let at = self.below(bytes.len());
                    bytes[at] = BYTES[self.below(BYTES.len())];
                }
            }
            if self.below(3) == 0 {
                bytes.truncate(self.below(bytes.len() + 1));
            }
            bytes
        }
    }

    #[test]
    fn word_walks_end_where_byte_walks_end_on_generated_text() {
        let mut gen = Gen(0x2545_f491_4f6c_dd1d);
        for round in 0..3000 {
            let mut text = String::new();
            gen.value(5, &mut text);
            let bytes = match round % 2 {
                0 => text.into_bytes(),
                _ => gen.damage(&text),
            };
            for at in 0..bytes.len() {
                match bytes[at] {
                    b'"' => assert_eq!(
                        string_end(&bytes, at + 1),
                        string_end_bytewise(&bytes, at + 1),
                        "string at {at} of {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                    b'{' | b'[' => assert_eq!(
                        container_end(&bytes, at),
                        container_end_bytewise(&bytes, at),
                        "container at {at} of {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                    _ => {}
                }
            }
        }
    }
}
