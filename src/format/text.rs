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
        for c in text.chars().filter(|c| keep(*c)) {
            // Letters, digits and spaces are never escaped: no piece to build.
            if c.is_alphanumeric() || c == ' ' {
                let size = match self.limit {
                    Limit::Chars(_) => 1,
                    Limit::Bytes(_) => c.len_utf8(),
                    Limit::Utf16(_) => c.len_utf16(),
                };
                if self.used + size > room {
                    self.out.truncate(self.mark);
                    self.full = true;
                    break;
                }
                self.used += size;
                self.out.push(c);
                if self.used + ellipsis <= room {
                    self.mark = self.out.len();
                }
                continue;
            }
            piece.clear();
            escape(c, &mut piece);
            let size = self.limit.measure(&piece);
            if self.used + size > room {
                self.out.truncate(self.mark);
                self.full = true;
                break;
            }
            self.used += size;
            self.out.push_str(&piece);
            if self.used + ellipsis <= room {
                self.mark = self.out.len();
            }
        }
        self
    }

    /// The field, with an ellipsis where it was cut.
    pub fn finish(&mut self) -> String {
        if self.full {
            self.out.push_str(ELLIPSIS);
        }
        std::mem::take(&mut self.out)
    }
}

/// Control characters are dropped (a tool shows them as boxes or rejects them); line
/// breaks and tabs stay.
fn keep(c: char) -> bool {
    !c.is_control() || c == '\n' || c == '\t'
}

/// Cut `text` to `limit` (no escaping), with an ellipsis when cut.
pub fn fit(text: &str, limit: Limit) -> String {
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
