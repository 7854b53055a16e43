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
mod skip;

use std::borrow::Cow;
use std::sync::Arc;

pub use filter::{Comparison, Condition, Doc, Scalar, Test};
pub use number::Decimal;
pub use pointer::{Path, Segment};
pub use project::Projection;
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
    include_tree: Arc<project::Tree>,
    exclude_tree: Arc<project::Tree>,
    /// The paths the filter reads, for indexing the body along them in one pass.
    filter_tree: project::Tree,
    fingerprint: Option<String>,
}

impl Shaping {
    pub fn new(filter: Vec<Condition>, include: Vec<Path>, exclude: Vec<Path>) -> Shaping {
        Shaping {
            include_tree: Arc::new(project::Tree::new(&include)),
            filter_tree: project::Tree::of(filter.iter().map(|c| &c.path)),
            exclude_tree: Arc::new(project::Tree::new(&exclude)),
            fingerprint: fingerprint(&include, &exclude),
            filter,
            include,
            exclude,
        }
    }

    /// The paths the filter reads, as a tree.
    pub fn filter_paths(&self) -> &project::Tree {
        &self.filter_tree
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

    /// The projection to read the stored body through, for a format that renders its
    /// own message from the event (the shaped body is then never written out). `None`
    /// when the body is sent whole.
    pub fn projection(&self) -> Option<Projection> {
        self.projects()
            .then(|| Projection::new(&self.include_tree, &self.exclude_tree))
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

impl Shaping {
    /// The `filter`, `include` and `exclude` lines of a `[[subscription]]` block, as
    /// the admin page shows the subscription's config.
    pub fn toml_lines(&self) -> Vec<String> {
        let string = |text: &str| toml::Value::String(text.to_string()).to_string();
        let paths = |paths: &[Path]| {
            let items: Vec<String> = paths.iter().map(|p| string(&p.text)).collect();
            format!("[{}]", items.join(", "))
        };
        let scalar = |value: &Scalar| match value {
            Scalar::String(text) => string(text),
            Scalar::Number(number) => number.to_string(),
            Scalar::Bool(b) => b.to_string(),
        };
        let mut lines = Vec::new();
        if !self.filter.is_empty() {
            lines.push("filter = [".to_string());
            for condition in &self.filter {
                let mut parts = vec![format!("path = {}", string(&condition.path.text))];
                for test in &condition.tests {
                    parts.push(match test {
                        Test::Equals(v) => format!("equals = {}", scalar(v)),
                        Test::In(vs) => format!(
                            "in = [{}]",
                            vs.iter().map(scalar).collect::<Vec<_>>().join(", ")
                        ),
                        Test::Contains(v) => format!("contains = {}", scalar(v)),
                        Test::Glob(p) => format!("glob = {}", string(p.as_str())),
                        Test::Exists(b) => format!("exists = {b}"),
                        Test::Compare(op, n) => {
                            let key = match op {
                                Comparison::Gt => "gt",
                                Comparison::Gte => "gte",
                                Comparison::Lt => "lt",
                                Comparison::Lte => "lte",
                            };
                            // TOML's own numbers stop at i64 and f64: past them,
                            // the string form (which the config also takes).
                            let text = n.to_string();
                            let fits = if text.contains(['.', 'e']) {
                                text.parse::<f64>().is_ok_and(f64::is_finite)
                            } else {
                                text.parse::<i64>().is_ok()
                            };
                            if fits {
                                format!("{key} = {text}")
                            } else {
                                format!("{key} = {}", string(&text))
                            }
                        }
                    });
                }
                lines.push(format!("  {{ {} }},", parts.join(", ")));
            }
            lines.push("]".to_string());
        }
        if !self.include.is_empty() {
            lines.push(format!("include = {}", paths(&self.include)));
        }
        if !self.exclude.is_empty() {
            lines.push(format!("exclude = {}", paths(&self.exclude)));
        }
        lines
    }
}
