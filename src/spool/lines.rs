//! Splitting a chunk read from a tailed `.ndjson` file into its complete lines: the one
//! place that decides what a line is, shared by the tailer and its fuzz target.

/// The complete lines at the start of a chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct Complete<'a> {
    /// The lines that hold something, each with its 1-based number within the chunk and
    /// without its `\n` (or `\r\n`); blank lines are counted but not listed.
    pub events: Vec<(u64, &'a [u8])>,
    /// Every complete line, blank ones too.
    pub lines: u64,
    /// Bytes they span, up to and including the last `\n`.
    pub consumed: usize,
}

/// The complete lines of `chunk`, or `None` when it holds no `\n` yet (the producer is
/// still writing its first line).
pub fn complete_lines(chunk: &[u8]) -> Option<Complete<'_>> {
    let last_newline = chunk.iter().rposition(|&b| b == b'\n')?;
    let mut events = Vec::new();
    let mut lines = 0;
    for raw in chunk[..last_newline].split(|&b| b == b'\n') {
        lines += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !raw.iter().all(u8::is_ascii_whitespace) {
            events.push((lines, raw));
        }
    }
    Some(Complete {
        events,
        lines,
        consumed: last_newline + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_count_and_blank_ones_are_skipped() {
        assert_eq!(complete_lines(b"{\"a\":1}"), None);
        let got = complete_lines(b"one\r\n\n  \ntwo\nthr").unwrap();
        assert_eq!(got.events, [(1, &b"one"[..]), (4, &b"two"[..])]);
        assert_eq!((got.lines, got.consumed), (4, 13));
    }
}
