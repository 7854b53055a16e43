//! Paths into a delivery body: RFC 6901 JSON pointers (`/data/language`, `~1` for `/`
//! and `~0` for `~` inside a name), plus one extension for include/exclude: a segment
//! that is exactly `*` stands for every item of an array and every member of an object.

use std::fmt;

/// Most segments in one path: deeper is surely a mistake, and the walk recurses per
/// segment.
pub const MAX_SEGMENTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A member name, or an array index when it is a canonical one (`0`, `17`).
    Name(String),
    /// `*`: any item or member (include/exclude only).
    Any,
}

impl Segment {
    /// Whether this segment selects the member `key` of an object.
    pub fn matches_key(&self, key: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Name(name) => name == key,
        }
    }

    /// Whether this segment selects item `index` of an array.
    pub fn matches_index(&self, index: usize) -> bool {
        match self {
            Segment::Any => true,
            Segment::Name(name) => as_index(name) == Some(index),
        }
    }
}

/// `token` as an array index, if it is written the canonical way RFC 6901 asks for.
pub fn as_index(token: &str) -> Option<usize> {
    let canonical = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| token.parse().ok()).flatten()
}

/// A parsed path, kept with the text it was written as (for messages and the API).
#[derive(Clone, PartialEq, Eq)]
pub struct Path {
    pub text: String,
    pub segments: Vec<Segment>,
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parses a pointer; `wildcards` says whether a `*` segment means "any".
    pub fn parse(text: &str, wildcards: bool) -> Result<Path, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with '/', like \"/data/language\""
            ));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if wildcards && raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let mut name = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => name.push(c),
                    _ => match chars.next() {
                        Some('0') => name.push('~'),
                        Some('1') => name.push('/'),
                        _ => {
                            return Err(format!(
                                "{text:?}: '~' must be written ~0 (and '/' inside a name ~1)"
                            ))
                        }
                    },
                }
            }
            segments.push(Segment::Name(name));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("{text:?} has more than {MAX_SEGMENTS} segments"));
        }
        Ok(Path {
            text: text.to_string(),
            segments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str, wildcards: bool) -> Vec<Segment> {
        Path::parse(text, wildcards).unwrap().segments
    }

    #[test]
    fn pointers_unescape_tilde_and_slash() {
        assert_eq!(
            names("/data/a~1b/c~0d/~01", false),
            [
                Segment::Name("data".into()),
                Segment::Name("a/b".into()),
                Segment::Name("c~d".into()),
                Segment::Name("~1".into()),
            ]
        );
        assert_eq!(
            names("/data/", false),
            [Segment::Name("data".into()), Segment::Name(String::new())]
        );
    }

    #[test]
    fn a_star_segment_is_a_wildcard_only_where_asked() {
        assert_eq!(names("/data/p/*/email", true)[2], Segment::Any);
        assert_eq!(
            names("/data/p/*/email", false)[2],
            Segment::Name("*".into())
        );
        assert_eq!(names("/data/a*", true)[1], Segment::Name("a*".into()));
    }

    #[test]
    fn bad_pointers_say_why() {
        assert!(Path::parse("data/x", false)
            .unwrap_err()
            .contains("start with '/'"));
        assert!(Path::parse("", false).is_err());
        assert!(Path::parse("/a~2", false).unwrap_err().contains("~0"));
        assert!(Path::parse("/a~", false).is_err());
        assert!(Path::parse(&"/a".repeat(MAX_SEGMENTS + 1), false).is_err());
        assert!(Path::parse(&"/a".repeat(MAX_SEGMENTS), false).is_ok());
    }

    #[test]
    fn indexes_are_canonical() {
        assert_eq!(as_index("0"), Some(0));
        assert_eq!(as_index("17"), Some(17));
        assert_eq!(as_index("017"), None);
        assert_eq!(as_index("-1"), None);
        assert_eq!(as_index(""), None);
        assert!(Segment::Any.matches_index(3));
        assert!(Segment::Name("3".into()).matches_index(3));
        assert!(!Segment::Name("3".into()).matches_index(4));
    }
}
