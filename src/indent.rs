//! Indenting JSON text for people without parsing it: the event page and
//! `posthorn events show` print a stored body with one member per line, while every
//! number, string and key stays the exact text the producer sent (a parse and reprint
//! would round `1.0000000000000001`, reorder or merge keys, or rewrite escapes).

/// `json` with a line per member and two spaces per level; text outside strings that is
/// whitespace is dropped, everything else is kept as written. Empty `{}` and `[]` stay on
/// one line. Text that is not JSON comes out changed only in its whitespace.
pub fn indent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays `{}` / `[]`.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `json` without its whitespace outside strings: all that [`indent`] may change, so
/// `squeezed(indent(x)) == squeezed(x)` for any text (the tests and the fuzz target check
/// it).
pub fn squeezed(json: &str) -> String {
    let mut kept = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            kept.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            kept.push(c);
        } else if !c.is_whitespace() {
            kept.push(c);
        }
    }
    kept
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_go_one_per_line_and_values_keep_their_text() {
        let body = r#"{"id":"evt_1","n":1.0000000000000001,"big":12345678901234567890,"e":1E+2,"s":"a, b: {c} [d] \"q\" \\","l":[1, 2 ,[]],"o":{},"u":"\u00e9"}"#;
        let want = r#"{
  "id": "evt_1",
  "n": 1.0000000000000001,
  "big": 12345678901234567890,
  "e": 1E+2,
  "s": "a, b: {c} [d] \"q\" \\",
  "l": [
    1,
    2,
    []
  ],
  "o": {},
  "u": "\u00e9"
}"#;
        assert_eq!(indent(body), want);
    }

    #[test]
    fn indenting_changes_only_whitespace_outside_strings() {
        let body = r#"{"a" : [ {"b":"x y  z"} , null , true ], "dup":1, "dup":2}"#;
        let out = indent(body);
        assert_eq!(squeezed(&out), squeezed(body));
        assert!(out.contains("\"dup\": 1,\n  \"dup\": 2"), "{out}");
    }
}
