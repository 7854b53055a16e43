//! Text for chat tools: what each tool interprets in producer text is escaped, control
//! characters are dropped, and every field is cut to the tool's limit at a character
//! boundary with an ellipsis, never inside an escape sequence.

/// How a tool counts a field's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Unicode scalar values (Slack, Mattermost).
    Chars(usize),
    /// UTF-8 bytes (ntfy, Matrix events, Teams payloads).
    Bytes(usize),
    /// UTF-16 code units: at most as many as characters, so a limit counted this way
    /// holds however the tool counts (Discord).
    Utf16(usize),
}

impl Limit {
    fn max(self) -> usize {
        match self {
            Limit::Chars(n) | Limit::Bytes(n) | Limit::Utf16(n) => n,
        }
    }

    fn measure(self, text: &str) -> usize {
        match self {
            Limit::Chars(_) => text.chars().count(),
            Limit::Bytes(_) => text.len(),
            Limit::Utf16(_) => text.encode_utf16().count(),
        }
    }
}

pub const ELLIPSIS: &str = "…";

/// How producer text is escaped for one tool, a character at a time.
pub type Escape = fn(char, &mut String);

/// Builds one field of a message out of trusted pieces (written as they are) and producer
/// text (escaped), within `limit`. When the pieces do not fit, the field ends with the
/// last whole escaped character that fits, followed by an ellipsis.
pub struct Field {
    limit: Limit,
    out: String,
    used: usize,
    /// The length of `out` at the last point that leaves room for an ellipsis.
    mark: usize,
    full: bool,
}

impl Field {
    pub fn new(limit: Limit) -> Field {
        Field {
            limit,
            out: String::new(),
            used: 0,
            mark: 0,
            full: false,
        }
    }

    /// Appends trusted text (markup of our own).
    pub fn raw(&mut self, text: &str) -> &mut Field {
        self.push(text, plain)
    }

    /// Appends producer text, cleaned of control characters and escaped.
    pub fn text(&mut self, text: &str, escape: Escape) -> &mut Field {
        self.push(text, escape)
    }

    fn push(&mut self, text: &str, escape: Escape) -> &mut Field {
        if self.full {
            return self;
        }
        let room = self.limit.max();
        let ellipsis = self.limit.measure(ELLIPSIS);
        let mut piece = String::new();
        let mut rest = text;
        while !rest.is_empty() && !self.full {
            // A run no escape changes is written at once while it fits with room for
            // the ellipsis after it; the run that does not fit goes a character at a
            // time, so the cut lands where it would.
            let quiet = quiet_prefix(rest);
            let (run, after) = rest.split_at(quiet);
            if !run.is_empty() {
                let size = self.limit.measure(run);
                if self.used + size + ellipsis <= room {
                    self.used += size;
                    self.out.push_str(run);
                    self.mark = self.out.len();
                } else {
                    for c in run.chars() {
                        piece.clear();
                        piece.push(c);
                        self.put(&piece);
                        if self.full {
                            break;
                        }
                    }
                }
                rest = after;
                continue;
            }
            let Some(c) = rest.chars().next() else {
                break;
            };
            rest = &rest[c.len_utf8()..];
            if !keep(c) {
                continue;
            }
            piece.clear();
            escape(c, &mut piece);
            self.put(&piece);
        }
        self
    }

    /// Appends one escaped character, or ends the field at the last mark.
    fn put(&mut self, piece: &str) {
        let room = self.limit.max();
        let size = self.limit.measure(piece);
        if self.used + size > room {
            self.out.truncate(self.mark);
            self.full = true;
            return;
        }
        self.used += size;
        self.out.push_str(piece);
        if self.used + self.limit.measure(ELLIPSIS) <= room {
            self.mark = self.out.len();
        }
    }

    /// The field, with an ellipsis where it was cut.
    pub fn finish(&mut self) -> String {
        if self.full {
            self.out.push_str(ELLIPSIS);
        }
        std::mem::take(&mut self.out)
    }
}

/// The length of the longest start of `text` that no escape changes and no field
/// drops (see [`QUIET`]). It ends on a character boundary: it stops only at an ASCII
/// byte or at a `C2` lead byte.
fn quiet_prefix(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // U+0080 to U+009F (`C2 80` to `C2 9F`) are controls; other `C2` pairs are not.
        let quiet =
            QUIET[usize::from(b)] || (b == 0xC2 && !matches!(bytes.get(i + 1), Some(0x80..=0x9F)));
        if !quiet {
            break;
        }
        i += 1;
    }
    i
}

/// Bytes of characters every [`Escape`] leaves alone and no field drops: printable ASCII
/// but the characters some escape rewrites, and every byte of a character past ASCII
/// (`C2` aside, which may start a control). An escape that rewrites more must take its
/// characters out here (a test checks every escape against this table).
const QUIET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7F {
        table[b] = true;
        b += 1;
    }
    let rewritten = b"&<>\\`*_~|[]()#!:@\"'";
    let mut i = 0;
    while i < rewritten.len() {
        table[rewritten[i] as usize] = false;
        i += 1;
    }
    let mut b = 0x80;
    while b < 0x100 {
        table[b] = b != 0xC2;
        b += 1;
    }
    table
};

/// `text` with `escape` applied to every character (nothing dropped, no limit).
pub fn escape_all(text: &str, escape: Escape) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let quiet = quiet_prefix(rest);
        out.push_str(&rest[..quiet]);
        rest = &rest[quiet..];
        if let Some(c) = rest.chars().next() {
            escape(c, &mut out);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Control characters are dropped (a tool shows them as boxes or rejects them); line
/// breaks and tabs stay.
fn keep(c: char) -> bool {
    !c.is_control() || c == '\n' || c == '\t'
}

/// Cut `text` to `limit` (no escaping), with an ellipsis when cut.
pub fn fit(text: &str, limit: Limit) -> String {
    // Text with no control character that fits is the field as it is. The test reads
    // every byte (no early exit), which the compiler turns into vector compares; a
    // `C2` byte may start a C1 control, so it sends the text the long way.
    let plain_bytes = !text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == 0x7F) | (b == 0xC2)
    });
    if plain_bytes && limit.measure(text) <= limit.max() {
        return text.to_string();
    }
    Field::new(limit).text(text, plain).finish()
}

/// No escaping (plain text fields: ntfy, Teams text runs, Slack plain_text).
pub fn plain(c: char, out: &mut String) {
    out.push(c);
}

/// Slack's control characters in text: `&`, `<` and `>` (the only ones Slack decodes).
/// Without `<` no link, user, channel or `<!everyone>` mention can be formed.
pub fn slack(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Markdown (Discord, Mattermost): ASCII punctuation that starts markup is
/// backslash-escaped, and `@` is followed by a zero-width space so `@everyone`,
/// `@here`, `@channel` and `@all` never ping.
pub fn markdown(c: char, out: &mut String) {
    match c {
        '\\' | '`' | '*' | '_' | '~' | '|' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '!'
        | ':' => {
            out.push('\\');
            out.push(c);
        }
        '@' => out.push_str("@\u{200B}"),
        c => out.push(c),
    }
}

/// HTML text (Matrix `formatted_body`).
pub fn html(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        '\n' => out.push_str("<br>"),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_that_fits_is_whole() {
        let mut field = Field::new(Limit::Chars(20));
        assert_eq!(
            field.raw("*").text("a&b", slack).raw("*").finish(),
            "*a&amp;b*"
        );
    }

    #[test]
    fn cuts_land_on_a_character_and_never_inside_an_escape() {
        // 10 bytes: "ab" + "&amp;" is 7, another "&amp;" would need 12 with the ellipsis.
        let cut = Field::new(Limit::Bytes(10)).text("ab&&&", slack).finish();
        assert_eq!(cut, "ab&amp;…");
        assert!(cut.len() <= 10);
        let cut = fit("ééééé", Limit::Bytes(6));
        assert_eq!(cut, "é…");
        assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
    }

    #[test]
    fn utf16_limits_count_surrogate_pairs() {
        let emoji = "😀".repeat(10);
        let cut = fit(&emoji, Limit::Utf16(10));
        assert!(cut.encode_utf16().count() <= 10, "{cut}");
        assert_eq!(cut, format!("{}…", "😀".repeat(4)));
        assert_eq!(fit(&emoji, Limit::Chars(10)), emoji);
    }

    #[test]
    fn control_characters_are_dropped_but_line_breaks_stay() {
        assert_eq!(fit("a\u{0}b\u{7}c\nd\te", Limit::Chars(100)), "abc\nd\te");
        assert_eq!(fit("a\u{7f}b\u{85}c\u{a0}", Limit::Chars(100)), "abc\u{a0}");
    }

    #[test]
    fn text_that_fits_is_kept_whole_and_text_one_over_is_cut() {
        for (limit, cut) in [
            (Limit::Chars(5), "abcd…"),
            (Limit::Bytes(5), "ab…"),
            (Limit::Utf16(5), "abcd…"),
        ] {
            assert_eq!(fit("abcde", limit), "abcde");
            assert_eq!(fit("abcdef", limit), cut);
        }
        assert_eq!(fit("ééé", Limit::Bytes(6)), "ééé");
        assert_eq!(fit("éééé", Limit::Bytes(6)), "é…");
    }

    #[test]
    fn no_escape_touches_letters_digits_or_spaces() {
        // `Field` writes these without calling the escape: every escape must agree.
        let sample = "aZ09 éßж漢字٣😀";
        for escape in [plain, slack, markdown, html] {
            let mut out = String::new();
            for c in sample.chars() {
                assert!(c.is_alphanumeric() || c == ' ' || c == '😀');
                escape(c, &mut out);
            }
            assert_eq!(out, sample);
        }
    }

    #[test]
    fn what_quiet_runs_hold_no_escape_changes_and_no_field_drops() {
        let chars = (0..0x3400u32)
            .chain([0xFEFF, 0xFFFD, 0x1F600, 0x10FFFF])
            .filter_map(char::from_u32);
        for c in chars {
            let text = c.to_string();
            if quiet_prefix(&text) == 0 {
                continue;
            }
            assert!(keep(c), "{c:?} is dropped");
            for escape in [plain, slack, markdown, html] {
                let mut out = String::new();
                escape(c, &mut out);
                assert_eq!(out, text, "{c:?} is escaped");
            }
        }
        assert_eq!(quiet_prefix("ab, c.\u{85}d"), 6);
        assert_eq!(quiet_prefix("é\u{a0}x.&"), 6);
    }

    /// The field as it was written before runs: one character at a time.
    fn char_at_a_time(limit: Limit, pieces: &[(&str, Escape)]) -> String {
        let room = limit.max();
        let ellipsis = limit.measure(ELLIPSIS);
        let (mut out, mut used, mut mark, mut full) = (String::new(), 0, 0, false);
        'pieces: for (text, escape) in pieces {
            for c in text.chars().filter(|c| keep(*c)) {
                let mut piece = String::new();
                escape(c, &mut piece);
                let size = limit.measure(&piece);
                if used + size > room {
                    out.truncate(mark);
                    full = true;
                    break 'pieces;
                }
                used += size;
                out.push_str(&piece);
                if used + ellipsis <= room {
                    mark = out.len();
                }
            }
        }
        if full {
            out.push_str(ELLIPSIS);
        }
        out
    }

    #[test]
    fn fields_written_in_runs_equal_fields_written_a_character_at_a_time() {
        const ALPHABET: &[&str] = &[
            "a", "Z", "7", " ", ".", "&", "<", "@", "*", "\n", "\t", "\u{0}", "\u{85}", "\u{a0}",
            "é", "—", "😀", "漢", "\\", "'", "\"",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| crate::test_rng::below(&mut seed, n);
        let escapes: [Escape; 4] = [plain, slack, markdown, html];
        for round in 0..600 {
            let limit = match round % 3 {
                0 => Limit::Chars(1 + next(40)),
                1 => Limit::Bytes(1 + next(60)),
                _ => Limit::Utf16(1 + next(40)),
            };
            let texts: Vec<String> = (0..1 + next(3))
                .map(|_| {
                    (0..next(30))
                        .map(|_| ALPHABET[next(ALPHABET.len())])
                        .collect()
                })
                .collect();
            let pieces: Vec<(&str, Escape)> = texts
                .iter()
                .map(|t| (t.as_str(), escapes[next(escapes.len())]))
                .collect();
            let mut field = Field::new(limit);
            for (text, escape) in &pieces {
                field.text(text, *escape);
            }
            assert_eq!(
                field.finish(),
                char_at_a_time(limit, &pieces),
                "{limit:?} {texts:?}"
            );
            let whole = texts.concat();
            assert_eq!(
                fit(&whole, limit),
                char_at_a_time(limit, &[(&whole, plain)])
            );
            for escape in escapes {
                let text = texts.concat();
                let mut one_by_one = String::new();
                for c in text.chars() {
                    escape(c, &mut one_by_one);
                }
                assert_eq!(escape_all(&text, escape), one_by_one, "{text:?}");
            }
        }
    }

    #[test]
    fn markdown_escaping_stops_mentions_and_links() {
        let mut out = String::new();
        for c in "@everyone [x](http://e) **b**".chars() {
            markdown(c, &mut out);
        }
        assert_eq!(
            out,
            "@\u{200B}everyone \\[x\\]\\(http\\://e\\) \\*\\*b\\*\\*"
        );
    }
}
