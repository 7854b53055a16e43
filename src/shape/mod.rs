//! What each subscription gets of an event: `filter` conditions on fields of the
//! delivery body (checked at routing, so an event a filter refuses gets no delivery),
//! and `include`/`exclude` paths that shape `data` when a delivery is sent (the stored
//! event stays whole). Paths are JSON pointers into the delivery body (`/data/language`);
//! see [`pointer`]. Everything works on the body's text, never through `f64`, so what a
//! receiver gets of the producer's values is exactly what the producer wrote.

pub mod filter;
pub mod number;
pub mod pointer;
pub mod project;
pub mod scan;

use std::borrow::Cow;

pub use filter::{Comparison, Condition, Doc, Scalar, Test};
pub use number::Decimal;
pub use pointer::{Path, Segment};
pub use scan::Malformed;

/// A subscription's shaping (`filter`, `include`, `exclude` in the config). The default
/// takes every event its scope takes and sends the body whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaping {
    /// All must hold for an event to be delivered.
    pub filter: Vec<Condition>,
    /// When not empty, `data` keeps only these paths.
    pub include: Vec<Path>,
    /// Taken out of `data` (after `include`).
    pub exclude: Vec<Path>,
    include_tree: project::Tree,
    exclude_tree: project::Tree,
    fingerprint: Option<String>,
}

impl Shaping {
    pub fn new(filter: Vec<Condition>, include: Vec<Path>, exclude: Vec<Path>) -> Shaping {
        Shaping {
            include_tree: project::Tree::new(&include),
            exclude_tree: project::Tree::new(&exclude),
            fingerprint: fingerprint(&include, &exclude),
            filter,
            include,
            exclude,
        }
    }

    /// Whether an event whose body is indexed by `doc` passes the filter.
    pub fn admits(&self, doc: &Doc<'_>) -> bool {
        doc.admits(&self.filter)
    }

    /// Whether sending changes the body at all.
    pub fn projects(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }

    /// The body this subscription is sent for a stored event body: `body` itself when
    /// there is nothing to shape. An error only for a body that is not JSON (posthorn
    /// builds every body, so that is a bug); the caller must then send nothing.
    pub fn body<'a>(&self, body: &'a str) -> Result<Cow<'a, str>, Malformed> {
        if !self.projects() {
            return Ok(Cow::Borrowed(body));
        }
        project::project(body, &self.include_tree, &self.exclude_tree).map(Cow::Owned)
    }

    /// A short fingerprint of the projection (include and exclude), recorded with each
    /// attempt so the delivery view can tell an attempt shaped by an earlier config.
    /// `None` when the body is sent whole.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }
}

fn fingerprint(include: &[Path], exclude: &[Path]) -> Option<String> {
    use sha2::{Digest as _, Sha256};
    if include.is_empty() && exclude.is_empty() {
        return None;
    }
    let mut hash = Sha256::new();
    for (sign, paths) in [(b"+", include), (b"-", exclude)] {
        for path in paths {
            hash.update(sign);
            hash.update(path.text.as_bytes());
            hash.update(b"\n");
        }
    }
    Some(
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
