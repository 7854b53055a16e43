//! Filters: conditions on fields of the delivery body that a subscription's events must
//! meet, and the lazily indexed document they are checked against. The document is read
//! once per event whatever the number of subscriptions: each object or array is indexed
//! the first time a pointer goes through it, and the index is kept for the next pointer.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;

use super::number::Decimal;
use super::pointer::{as_index, Path, Segment};
use super::project::{Kept, Projection, Shape, Tree};
use super::scan::{decode, Malformed, Scanner};
use crate::routing::Pattern;

/// One condition: the value at `path` passes every test (a condition has at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: Path,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// The value equals this one (a number equals any spelling of the same number).
    Equals(Scalar),
    /// The value equals one of these.
    In(Vec<Scalar>),
    /// The value is an array with an item equal to this.
    Contains(Scalar),
    /// The value is a string matching this glob (`*`, `?`).
    Glob(Pattern),
    /// The field is present (`true`, even when it is `null`) or absent (`false`).
    Exists(bool),
    /// The value is a number that compares so to this one, exactly.
    Compare(Comparison, Decimal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

/// A value a test compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    String(String),
    Number(Decimal),
    Bool(bool),
}

/// A body to check conditions against, indexed as pointers reach into it.
pub struct Doc<'a> {
    root: Node<'a>,
    /// The paths conditions will read: containers on them are indexed in the same pass
    /// as their parent, so the body is scanned once, not once per level.
    wanted: Cow<'a, Tree>,
    /// Read the body as this projection shapes it (a chat format's view of a stored
    /// body, see `crate::format`).
    projection: Option<Projection>,
}

struct Node<'a> {
    text: &'a str,
    /// How a container is shaped, when it is read through a projection.
    projection: Option<Box<Projection>>,
    kids: OnceCell<Kids<'a>>,
}

enum Kids<'a> {
    Object(Vec<(&'a str, Node<'a>)>),
    Array(Vec<Node<'a>>),
    /// A scalar, or a container that did not scan (it then has nothing inside).
    None,
}

impl<'a> Node<'a> {
    fn new(text: &'a str) -> Node<'a> {
        Node {
            text,
            projection: None,
            kids: OnceCell::new(),
        }
    }

    fn kids(&self) -> &Kids<'a> {
        self.kids.get_or_init(|| {
            let shape = Shape::of(self.projection.as_deref());
            index(self.text, None, shape).unwrap_or(Kids::None)
        })
    }

    fn child(&self, segment: &Segment) -> Option<&Node<'a>> {
        let Segment::Name(name) = segment else {
            return None;
        };
        match self.kids() {
            // The last of a repeated key wins, as receivers' JSON parsers read it.
            Kids::Object(members) => members
                .iter()
                .rev()
                .find(|(key, _)| decode(key) == name.as_str())
                .map(|(_, node)| node),
            Kids::Array(items) => items.get(as_index(name)?),
            Kids::None => None,
        }
    }

    fn equals(&self, scalar: &Scalar) -> bool {
        let text = self.text;
        match scalar {
            Scalar::String(wanted) => text.starts_with('"') && string_value(text) == *wanted,
            Scalar::Number(wanted) => Decimal::parse(text).is_some_and(|n| n == *wanted),
            Scalar::Bool(wanted) => text == if *wanted { "true" } else { "false" },
        }
    }
}

/// The decoded contents of a string value's text (quotes included).
fn string_value(text: &str) -> std::borrow::Cow<'_, str> {
    decode(
        text.get(1..text.len().saturating_sub(1))
            .unwrap_or_default(),
    )
}

/// The members or items of a container, each with its exact text, as `shape` keeps
/// them. Members under `wanted` that are containers are indexed on the way (their end
/// is found by indexing them rather than by skipping them and reading them again).
fn index<'a>(
    text: &'a str,
    wanted: Option<&Tree>,
    shape: Shape<'_>,
) -> Result<Kids<'a>, Malformed> {
    let mut sc = Scanner::new(text);
    index_at(&mut sc, wanted, shape)
}

fn index_at<'a>(
    sc: &mut Scanner<'a>,
    wanted: Option<&Tree>,
    shape: Shape<'_>,
) -> Result<Kids<'a>, Malformed> {
    sc.ws();
    match (sc.peek(), shape) {
        (Some(b'{'), _) | (_, Shape::Envelope(_)) => {
            let mut members = Vec::new();
            if sc.begin_object()? {
                // Most objects on a path hold a few members: one allocation for them.
                members.reserve(8);
                loop {
                    let (_, key) = sc.key()?;
                    sc.ws();
                    let decoded = decode(key);
                    let kept = shape.member(&decoded, is_container(sc));
                    let below = wanted.and_then(|w| w.child(&decoded));
                    if let Some(node) = node_at(sc, below, kept)? {
                        members.push((key, node));
                    }
                    if !sc.next(b'}')? {
                        break;
                    }
                }
            }
            Ok(Kids::Object(members))
        }
        (Some(b'['), _) => {
            let mut items = Vec::new();
            if sc.begin_array()? {
                let mut index = 0;
                loop {
                    sc.ws();
                    let kept = shape.item(index, is_container(sc));
                    if let Some(node) = node_at(sc, None, kept)? {
                        items.push(node);
                    }
                    index += 1;
                    if !sc.next(b']')? {
                        break;
                    }
                }
            }
            Ok(Kids::Array(items))
        }
        _ => Ok(Kids::None),
    }
}

fn is_container(sc: &Scanner<'_>) -> bool {
    matches!(sc.peek(), Some(b'{' | b'['))
}

/// The node of the value at the scanner, which is stepped over; `None` when the
/// projection takes it out.
fn node_at<'a>(
    sc: &mut Scanner<'a>,
    wanted: Option<&Tree>,
    kept: Kept,
) -> Result<Option<Node<'a>>, Malformed> {
    let text = sc.text;
    let projection = match kept {
        Kept::Drop => {
            sc.skip_value()?;
            return Ok(None);
        }
        Kept::Null => {
            sc.skip_value()?;
            return Ok(Some(Node::new("null")));
        }
        Kept::Value(projection) => projection,
    };
    let start = sc.pos;
    let node = match wanted {
        Some(below) if is_container(sc) => {
            let kids = index_at(sc, Some(below), Shape::of(projection.as_ref()))?;
            let node = Node::new(&text[start..sc.pos]);
            let _ = node.kids.set(kids);
            node
        }
        _ => {
            let span = sc.skip_value()?;
            let mut node = Node::new(&text[span]);
            node.projection = projection.map(Box::new);
            node
        }
    };
    Ok(Some(node))
}

impl<'a> Doc<'a> {
    /// Nothing is read until a condition asks.
    pub fn new(body: &'a str) -> Doc<'a> {
        Doc::reading(body, Cow::Owned(Tree::default()))
    }

    /// A document the conditions reading `wanted` will be checked against: the first
    /// lookup indexes the body along all of them in one pass.
    pub fn reading(body: &'a str, wanted: Cow<'a, Tree>) -> Doc<'a> {
        Doc {
            root: Node::new(body.trim()),
            wanted,
            projection: None,
        }
    }

    /// The document as `projection` shapes the body (`None`: whole): what it reads is
    /// what it would read in the shaped body `crate::shape::project` writes.
    pub fn shaped(mut self, projection: Option<Projection>) -> Doc<'a> {
        self.projection = projection;
        self
    }

    /// Indexes the top level (and the wanted paths) the first time; `Err` when the body
    /// does not scan as JSON there.
    fn top(&self) -> Result<(), Malformed> {
        let mut outcome = Ok(());
        self.root.kids.get_or_init(|| {
            let shape = self
                .projection
                .as_ref()
                .map_or(Shape::Whole, Shape::Envelope);
            index(self.root.text, Some(&self.wanted), shape).unwrap_or_else(|err| {
                outcome = Err(err);
                Kids::None
            })
        });
        outcome
    }

    /// Whether the body's top level (and the wanted paths in it) is well-formed JSON.
    /// Only the first call can tell: call it before any lookup.
    pub fn check(&self) -> Result<(), Malformed> {
        self.top()
    }

    /// The decoded string at `path`; `None` when it is missing or not a string.
    pub fn string(&self, path: &Path) -> Option<std::borrow::Cow<'a, str>> {
        let node = self.at(path)?;
        node.text.starts_with('"').then(|| string_value(node.text))
    }

    fn at(&self, path: &Path) -> Option<&Node<'a>> {
        let _ = self.top();
        path.segments
            .iter()
            .try_fold(&self.root, |node, segment| node.child(segment))
    }

    /// Whether every condition holds.
    pub fn admits(&self, conditions: &[Condition]) -> bool {
        conditions.iter().all(|c| self.holds(c))
    }

    fn holds(&self, condition: &Condition) -> bool {
        let node = self.at(&condition.path);
        condition.tests.iter().all(|test| match (test, node) {
            (Test::Exists(wanted), node) => node.is_some() == *wanted,
            (_, None) => false,
            (Test::Equals(scalar), Some(node)) => node.equals(scalar),
            (Test::In(scalars), Some(node)) => scalars.iter().any(|s| node.equals(s)),
            (Test::Contains(scalar), Some(node)) => match node.kids() {
                Kids::Array(items) => items.iter().any(|item| item.equals(scalar)),
                _ => false,
            },
            (Test::Glob(pattern), Some(node)) => {
                node.text.starts_with('"') && pattern.matches(&string_value(node.text))
            }
            (Test::Compare(comparison, wanted), Some(node)) => {
                Decimal::parse(node.text).is_some_and(|value| comparison.holds(value.cmp(wanted)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"id":"e1","type":"report.generated","conversation_id":"c-1","project_id":null,"timestamp":"2026-11-22T10:00:00Z","data":{"language":"nl-NL","tags":["urgent","n\u00e9"],"score":0.50,"big":12345678901234567891,"huge":1e400,"kind":"summary","title":"North district","email":null,"n":[1,2,{"x":true}],"kind":"brief"}}"#;

    fn cond(path: &str, tests: Vec<Test>) -> Condition {
        Condition {
            path: Path::parse(path, false).unwrap(),
            tests,
        }
    }

    fn s(text: &str) -> Scalar {
        Scalar::String(text.into())
    }

    fn n(text: &str) -> Scalar {
        Scalar::Number(Decimal::parse(text).unwrap())
    }

    fn cmp(op: Comparison, text: &str) -> Test {
        Test::Compare(op, Decimal::parse(text).unwrap())
    }

    fn holds(path: &str, tests: Vec<Test>) -> bool {
        Doc::new(BODY).admits(&[cond(path, tests)])
    }

    #[test]
    fn each_operator_matches_and_misses() {
        use Comparison::*;
        assert!(holds("/data/language", vec![Test::Equals(s("nl-NL"))]));
        assert!(!holds("/data/language", vec![Test::Equals(s("nl"))]));
        assert!(holds("/type", vec![Test::Equals(s("report.generated"))]));
        // The last of a repeated key is the value.
        assert!(holds(
            "/data/kind",
            vec![Test::In(vec![s("brief"), s("x")])]
        ));
        assert!(!holds("/data/kind", vec![Test::In(vec![s("summary")])]));
        assert!(holds("/data/tags", vec![Test::Contains(s("urgent"))]));
        assert!(holds("/data/tags", vec![Test::Contains(s("né"))]));
        assert!(!holds("/data/tags", vec![Test::Contains(s("calm"))]));
        assert!(holds(
            "/data/title",
            vec![Test::Glob(Pattern::new("North*"))]
        ));
        assert!(!holds(
            "/data/title",
            vec![Test::Glob(Pattern::new("South*"))]
        ));
        assert!(holds("/data/email", vec![Test::Exists(true)]));
        assert!(holds("/data/phone", vec![Test::Exists(false)]));
        assert!(!holds("/data/email", vec![Test::Exists(false)]));
        assert!(holds("/data/score", vec![cmp(Gte, "0.5"), cmp(Lt, "0.6")]));
        assert!(!holds("/data/score", vec![cmp(Gt, "0.5")]));
        assert!(holds("/data/score", vec![Test::Equals(n("0.5"))]));
        assert!(holds("/data/score", vec![cmp(Lte, "0.5000")]));
        assert!(holds("/data/n/2/x", vec![Test::Equals(Scalar::Bool(true))]));
        assert!(holds("/data/n/1", vec![Test::Equals(n("2.0"))]));
        assert!(!holds("/data/n/01", vec![Test::Exists(true)]));
    }

    #[test]
    fn numbers_compare_exactly_past_f64() {
        use Comparison::*;
        assert!(holds("/data/big", vec![cmp(Gt, "12345678901234567890")]));
        assert!(!holds(
            "/data/big",
            vec![Test::Equals(n("12345678901234567890"))]
        ));
        assert!(holds("/data/huge", vec![cmp(Gt, "1.7976931348623157e308")]));
    }

    #[test]
    fn missing_fields_and_type_mismatches_never_match() {
        use Comparison::*;
        assert!(!holds("/data/nope", vec![Test::Equals(s("x"))]));
        assert!(!holds("/data/nope/deeper", vec![cmp(Gte, "0")]));
        assert!(!holds("/data/language", vec![cmp(Gte, "0")]));
        assert!(!holds("/data/score", vec![Test::Equals(s("0.50"))]));
        assert!(!holds("/data/score", vec![Test::Glob(Pattern::new("*"))]));
        assert!(!holds(
            "/data/title",
            vec![Test::Contains(s("North district"))]
        ));
        assert!(!holds("/project_id", vec![Test::Equals(s("null"))]));
        assert!(!holds("/data/language/0", vec![Test::Exists(true)]));
    }

    #[test]
    fn every_condition_must_hold() {
        let doc = Doc::new(BODY);
        let language = cond("/data/language", vec![Test::Equals(s("nl-NL"))]);
        let urgent = cond("/data/tags", vec![Test::Contains(s("urgent"))]);
        let calm = cond("/data/tags", vec![Test::Contains(s("calm"))]);
        assert!(doc.admits(&[language.clone(), urgent]));
        assert!(!doc.admits(&[language, calm]));
        assert!(doc.admits(&[]));
    }

    #[test]
    fn a_malformed_body_matches_no_condition_and_does_not_panic() {
        let doc = Doc::new(r#"{"data":{"a":1"#);
        assert!(!doc.admits(&[cond("/data/a", vec![Test::Exists(true)])]));
    }
}
