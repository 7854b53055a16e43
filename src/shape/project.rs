//! Projection: `include` and `exclude` applied to the `data` of a delivery body in one
//! pass over its text. What is kept is copied byte for byte (numbers, escapes, member
//! order, even whitespace inside kept values); only the containers something was taken
//! out of are rewritten, without the whitespace between their members. A container
//! nothing was taken out of is copied as it was, so an exclude that matches nothing
//! leaves the body identical.

use std::sync::Arc;

use super::pointer::{Path, Segment};
use super::scan::{decode, Malformed, Scanner};

/// A set of paths as a tree of segments; a node is `end` where a path ends. Subtrees
/// are shared, so a [`Projection`] can hold on to where it is without a lifetime.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tree {
    children: Vec<(Segment, Arc<Tree>)>,
    end: bool,
}

impl Tree {
    pub fn new(paths: &[Path]) -> Tree {
        Tree::of(paths)
    }

    /// The tree of any paths.
    pub fn of<'p>(paths: impl IntoIterator<Item = &'p Path>) -> Tree {
        let mut root = Tree::default();
        for path in paths {
            let mut at = &mut root;
            for segment in &path.segments {
                let i = match at.children.iter().position(|(s, _)| s == segment) {
                    Some(i) => i,
                    None => {
                        at.children.push((segment.clone(), Arc::default()));
                        at.children.len() - 1
                    }
                };
                // Unique while the tree is built, so this never copies.
                at = Arc::make_mut(&mut at.children[i].1);
            }
            at.end = true;
        }
        root
    }

    /// The subtree under the member `key` (paths without wildcards only).
    pub fn child(&self, key: &str) -> Option<&Tree> {
        self.children
            .iter()
            .find(|(segment, _)| segment.matches_key(key))
            .map(|(_, tree)| &**tree)
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && !self.end
    }
}

/// What `include` and `exclude` make of the value at one place in the body: the include
/// paths still being followed (`None`: the value is wholly included) and the exclude
/// paths still being followed. [`project`] writes the shaped body with it; a format's
/// view of the event (`crate::format`) reads the stored body through it instead, so the
/// shaped copy is never built when only a rendered message is sent.
#[derive(Debug, Clone)]
pub struct Projection {
    include: Option<Vec<Arc<Tree>>>,
    exclude: Vec<Arc<Tree>>,
}

/// What becomes of one member or item.
pub enum Fate {
    /// Taken out.
    Drop,
    /// Kept as written.
    Keep,
    /// Shaped further: a container keeps what this projection of it keeps; a scalar is
    /// kept unless [`Projection::drops_scalars`].
    Walk(Projection),
}

impl Projection {
    /// The projection at the body's top.
    pub fn new(include: &Arc<Tree>, exclude: &Arc<Tree>) -> Projection {
        Projection {
            include: (!include.is_empty()).then(|| vec![Arc::clone(include)]),
            exclude: vec![Arc::clone(exclude)],
        }
    }

    /// What becomes of the envelope's member `key` (at the body's top): only `data` is
    /// shaped, the other members are always kept.
    pub fn envelope_member(&self, key: &str) -> Fate {
        if key != "data" {
            return Fate::Keep;
        }
        match self.child(|s| s.matches_key("data")) {
            Fate::Walk(inner) => Fate::Walk(inner),
            Fate::Keep | Fate::Drop => Fate::Keep,
        }
    }

    /// What becomes of the member `key` (decoded) of an object here.
    pub fn member(&self, key: &str) -> Fate {
        self.child(|s| s.matches_key(key))
    }

    /// What becomes of item `index` of an array here.
    pub fn item(&self, index: usize) -> Fate {
        self.child(|s| s.matches_index(index))
    }

    /// Whether a scalar here goes: under a partial include nothing below a scalar is
    /// included. (A scalar `data` is sent as null instead.)
    pub fn drops_scalars(&self) -> bool {
        self.include.is_some()
    }

    /// What becomes of the child that `selects` picks out.
    fn child(&self, selects: impl Fn(&Segment) -> bool) -> Fate {
        let step = |trees: &[Arc<Tree>]| -> Vec<Arc<Tree>> {
            trees
                .iter()
                .flat_map(|t| t.children.iter())
                .filter(|(segment, _)| selects(segment))
                .map(|(_, tree)| Arc::clone(tree))
                .collect()
        };
        let exclude = step(&self.exclude);
        if exclude.iter().any(|t| t.end) {
            return Fate::Drop;
        }
        let include = match &self.include {
            None => None,
            Some(trees) => {
                let next = step(trees);
                if next.iter().any(|t| t.end) {
                    None
                } else if next.is_empty() {
                    return Fate::Drop;
                } else {
                    Some(next)
                }
            }
        };
        if include.is_none() && exclude.is_empty() {
            Fate::Keep
        } else {
            Fate::Walk(Projection { include, exclude })
        }
    }
}

/// How a reader of the stored body (a format's view of the event) sees one container:
/// whole, as the envelope (only its `data` is shaped; it must be an object), or shaped
/// by a projection.
#[derive(Clone, Copy)]
pub enum Shape<'p> {
    Whole,
    Envelope(&'p Projection),
    Inner(&'p Projection),
}

/// What a reader keeps of one member or item, as [`project`] would have written it.
pub enum Kept {
    Drop,
    /// A scalar `data` under an include: [`project`] writes null.
    Null,
    /// The value as written; a container is read through the projection, if any.
    Value(Option<Projection>),
}

impl<'p> Shape<'p> {
    pub fn of(projection: Option<&'p Projection>) -> Shape<'p> {
        projection.map_or(Shape::Whole, Shape::Inner)
    }

    /// What is kept of the member `key` (decoded) whose value is a container or not.
    pub fn member(self, key: &str, container: bool) -> Kept {
        match self {
            Shape::Whole => Kept::Value(None),
            Shape::Envelope(projection) => kept(projection.envelope_member(key), container, true),
            Shape::Inner(projection) => kept(projection.member(key), container, false),
        }
    }

    /// What is kept of item `index`, a container or not.
    pub fn item(self, index: usize, container: bool) -> Kept {
        match self {
            Shape::Inner(projection) => kept(projection.item(index), container, false),
            Shape::Whole | Shape::Envelope(_) => Kept::Value(None),
        }
    }
}

fn kept(fate: Fate, container: bool, in_envelope: bool) -> Kept {
    match fate {
        Fate::Drop => Kept::Drop,
        Fate::Keep => Kept::Value(None),
        Fate::Walk(projection) if container => Kept::Value(Some(projection)),
        Fate::Walk(projection) if projection.drops_scalars() => match in_envelope {
            true => Kept::Null,
            false => Kept::Drop,
        },
        Fate::Walk(_) => Kept::Value(None),
    }
}

/// The body with `include` (when not empty) and `exclude` applied under `/data`. The
/// envelope's other members are always kept. Paths are rooted at the body, so they all
/// start with the `data` segment (config validation sees to it).
pub fn project(body: &str, include: &Arc<Tree>, exclude: &Arc<Tree>) -> Result<String, Malformed> {
    let root = Projection::new(include, exclude);
    let mut out = String::with_capacity(body.len());
    let mut sc = Scanner::new(body);
    sc.ws();
    let start = sc.pos;
    if !sc.begin_object()? {
        out.push_str("{}");
        return Ok(out);
    }
    out.push('{');
    let mut changed = false;
    let mut first = true;
    loop {
        let (member_text_start, key) = sc.key()?;
        let key = decode(key);
        if key == "data" {
            let value_at = {
                sc.ws();
                sc.pos
            };
            push_separator(&mut out, &mut first);
            out.push_str(&body[member_text_start..value_at]);
            match root.envelope_member(&key) {
                Fate::Keep | Fate::Drop => {
                    let span = sc.skip_value()?;
                    out.push_str(&body[span]);
                }
                Fate::Walk(state) => {
                    let before = out.len();
                    let member_changed = walk(&mut sc, &mut out, &state)?;
                    // A scalar `data` has nothing to include: it is sent as null.
                    if out.len() == before {
                        out.push_str("null");
                        changed = true;
                    }
                    changed |= member_changed;
                }
            }
        } else {
            push_separator(&mut out, &mut first);
            let span = sc.skip_value()?;
            out.push_str(&body[member_text_start..span.end]);
        }
        if !sc.next(b'}')? {
            break;
        }
    }
    out.push('}');
    if !changed {
        out.clear();
        out.push_str(&body[start..sc.pos]);
    }
    Ok(out)
}

fn push_separator(out: &mut String, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
}

/// Writes the value at the scanner as `state` shapes it; returns whether anything was
/// taken out. A scalar under a partial include is written as nothing (the caller drops
/// it). Recursion follows the configured paths only, so its depth is bounded by
/// [`super::pointer::MAX_SEGMENTS`].
fn walk(sc: &mut Scanner<'_>, out: &mut String, state: &Projection) -> Result<bool, Malformed> {
    sc.ws();
    let start = sc.pos;
    let text = sc.text;
    let mark = out.len();
    let mut changed = false;
    match sc.peek() {
        Some(b'{') => {
            out.push('{');
            let mut first = true;
            if sc.begin_object()? {
                loop {
                    let (member_start, key) = sc.key()?;
                    let key = decode(key);
                    changed |= member(sc, out, state.member(&key), &mut first, member_start)?;
                    if !sc.next(b'}')? {
                        break;
                    }
                }
            }
            out.push('}');
        }
        Some(b'[') => {
            out.push('[');
            let mut first = true;
            if sc.begin_array()? {
                let mut index = 0usize;
                loop {
                    sc.ws();
                    let item_start = sc.pos;
                    changed |= member(sc, out, state.item(index), &mut first, item_start)?;
                    index += 1;
                    if !sc.next(b']')? {
                        break;
                    }
                }
            }
            out.push(']');
        }
        _ => {
            let span = sc.skip_value()?;
            // Under a partial include nothing below a scalar is included: it goes.
            if state.drops_scalars() {
                return Ok(true);
            }
            out.push_str(&text[span]);
            return Ok(false);
        }
    }
    if !changed {
        out.truncate(mark);
        out.push_str(&text[start..sc.pos]);
    }
    Ok(changed)
}

/// One member or item: `from` is where its text starts (the key, for a member).
fn member(
    sc: &mut Scanner<'_>,
    out: &mut String,
    fate: Fate,
    first: &mut bool,
    from: usize,
) -> Result<bool, Malformed> {
    let text = sc.text;
    match fate {
        Fate::Drop => {
            sc.skip_value()?;
            Ok(true)
        }
        Fate::Keep => {
            let span = sc.skip_value()?;
            push_separator(out, first);
            out.push_str(&text[from..span.end]);
            Ok(false)
        }
        Fate::Walk(child) => {
            sc.ws();
            let value_at = sc.pos;
            let mark = out.len();
            let was_first = *first;
            push_separator(out, first);
            out.push_str(&text[from..value_at]);
            let before = out.len();
            let changed = walk(sc, out, &child)?;
            if out.len() == before {
                // A scalar with nothing included: the member goes.
                out.truncate(mark);
                *first = was_first;
            }
            Ok(changed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(paths: &[&str]) -> Arc<Tree> {
        let paths: Vec<Path> = paths
            .iter()
            .map(|p| Path::parse(p, true).unwrap())
            .collect();
        Arc::new(Tree::new(&paths))
    }

    fn shape(body: &str, include: &[&str], exclude: &[&str]) -> String {
        let out = project(body, &tree(include), &tree(exclude)).unwrap();
        // RawValue checks the syntax without reading numbers as f64 (1e400 is fine).
        serde_json::from_str::<Box<serde_json::value::RawValue>>(&out)
            .unwrap_or_else(|e| panic!("{out} is not JSON: {e}"));
        out
    }

    const BODY: &str = r#"{"id":"e1","type":"t","timestamp":"x","data":{"summary":"Gr\u00fc\u00dfe \"x\"","n":[1e400, 0.1000, 12345678901234567890],"participants":[{"name":"A","email":"a@x"},{"name":"B"},{"email":"c@x","name":"C"},"loose"],"transcript":[{"t":0,"text":"hi"}]}}"#;

    #[test]
    fn exclude_drops_fields_through_wildcards_and_keeps_the_rest_exactly() {
        let out = shape(
            BODY,
            &[],
            &["/data/participants/*/email", "/data/transcript"],
        );
        assert_eq!(
            out,
            r#"{"id":"e1","type":"t","timestamp":"x","data":{"summary":"Gr\u00fc\u00dfe \"x\"","n":[1e400, 0.1000, 12345678901234567890],"participants":[{"name":"A"},{"name":"B"},{"name":"C"},"loose"]}}"#
        );
    }

    #[test]
    fn include_keeps_only_listed_paths_and_the_envelope() {
        let out = shape(BODY, &["/data/summary", "/data/participants/*/name"], &[]);
        assert_eq!(
            out,
            r#"{"id":"e1","type":"t","timestamp":"x","data":{"summary":"Gr\u00fc\u00dfe \"x\"","participants":[{"name":"A"},{"name":"B"},{"name":"C"}]}}"#
        );
        let out = shape(BODY, &["/data/n/1", "/data/participants/0"], &[]);
        assert_eq!(
            out,
            r#"{"id":"e1","type":"t","timestamp":"x","data":{"n":[0.1000],"participants":[{"name":"A","email":"a@x"}]}}"#
        );
    }

    #[test]
    fn include_then_exclude() {
        let out = shape(
            BODY,
            &["/data/participants"],
            &["/data/participants/*/email"],
        );
        assert_eq!(
            out,
            r#"{"id":"e1","type":"t","timestamp":"x","data":{"participants":[{"name":"A"},{"name":"B"},{"name":"C"},"loose"]}}"#
        );
    }

    #[test]
    fn nothing_matched_leaves_the_body_byte_identical() {
        let spaced = "{\"id\":\"e1\",\"data\": { \"a\" : [ 1 , 2.50 ] ,\n \"b\":\"\\u00e9\" } }";
        assert_eq!(shape(spaced, &[], &["/data/zzz", "/data/a/*/q"]), spaced);
        assert_eq!(shape(spaced, &["/data/a", "/data/b"], &[]), spaced);
        assert_eq!(shape(BODY, &[], &[]), BODY);
    }

    #[test]
    fn a_rewritten_container_keeps_its_kept_members_verbatim() {
        let spaced = "{\"id\":\"e1\",\"data\": { \"a\" : [ 1 , 2.50 ] ,\n \"b\":\"\\u00e9\" } }";
        assert_eq!(
            shape(spaced, &[], &["/data/b"]),
            "{\"id\":\"e1\",\"data\": {\"a\" : [ 1 , 2.50 ]}}"
        );
    }

    #[test]
    fn escaped_keys_match_their_decoded_names() {
        let body = r#"{"id":"e","data":{"e\u006dail":"x","keep":1}}"#;
        assert_eq!(
            shape(body, &[], &["/data/email"]),
            r#"{"id":"e","data":{"keep":1}}"#
        );
        // Every occurrence of a repeated key is excluded.
        let body = r#"{"id":"e","data":{"email":"x","keep":1,"email":"y"}}"#;
        assert_eq!(
            shape(body, &[], &["/data/email"]),
            r#"{"id":"e","data":{"keep":1}}"#
        );
    }

    #[test]
    fn scalar_or_missing_data_under_include() {
        assert_eq!(
            shape(r#"{"id":"e","data":null}"#, &["/data/a"], &[]),
            r#"{"id":"e","data":null}"#
        );
        assert_eq!(
            shape(r#"{"id":"e","data":"s"}"#, &["/data/a"], &[]),
            r#"{"id":"e","data":null}"#
        );
        assert_eq!(
            shape(r#"{"id":"e","data":{"b":1}}"#, &["/data/a"], &[]),
            r#"{"id":"e","data":{}}"#
        );
        assert_eq!(
            shape(r#"{"id":"e"}"#, &["/data/a"], &["/data/b"]),
            r#"{"id":"e"}"#
        );
        // Exclude alone never touches a scalar `data`.
        assert_eq!(
            shape(r#"{"id":"e","data":"s"}"#, &[], &["/data/a"]),
            r#"{"id":"e","data":"s"}"#
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [r#"{"id":"e","data":{"a":1"#, r#"{"data":[1,"#, "", "[1]"] {
            assert!(
                project(bad, &tree(&["/data/a"]), &tree(&[])).is_err(),
                "{bad:?}"
            );
        }
    }
}
