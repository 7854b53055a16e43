//! A template's view of the event, read from the JSON text as the template reaches into
//! it: an object or array is indexed (its members' spans found with the shaping scanner)
//! the first time the template looks inside, and a value is converted when it is first
//! read. What the template never touches (a transcript behind `data.conversation.summary`)
//! is stepped over, never built. The values are the ones a full parse gives: scalars go
//! through the same `serde_json` conversion, keys keep their order, and a repeated key
//! keeps its first place with its last value (as the parsed map did).
//!
//! A subscription's `include`/`exclude` is applied here as the stored body is read: what
//! the projection takes out is never indexed, and the containers it shapes are indexed
//! in the same pass as the hints. The template sees what it would see in the shaped body
//! (`crate::shape::project`), which is never written out for it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

use crate::shape::project::{Kept, Projection, Shape, Tree};
use crate::shape::scan::{decode, Malformed, Scanner};

/// Objects with more members than this get a hash index for lookups.
const LINEAR_MEMBERS: usize = 16;

/// The envelope as a template context. The top level is indexed here, so a body that
/// does not scan is an error before the template runs. The containers on `hints` (the
/// paths the template names, see `Template::compile`) are indexed in the same pass as
/// their parents, so reaching `data.conversation.title` reads the body once, not once
/// per level; anything else is still indexed when first reached. With a `projection`
/// the context is the shaped envelope, read from the stored one.
pub fn context(
    envelope: &str,
    hints: &Tree,
    projection: Option<&Projection>,
) -> Result<Value, Malformed> {
    let text: Arc<str> = Arc::from(envelope);
    let mut sc = Scanner::new(&text);
    sc.ws();
    let start = sc.pos;
    if projection.is_none() && !matches!(sc.peek(), Some(b'{' | b'[')) {
        let end = sc.skip_value()?.end;
        return value_at(&text, start..end, None);
    }
    let shape = projection.map_or(Shape::Whole, Shape::Envelope);
    let kids = index_at(&text, &mut sc, Some(hints), shape)?;
    Ok(node(&text, start..sc.pos, None, Some(kids)))
}

/// A value known when its parent was indexed, or worked out on first use.
enum Once<T> {
    Known(T),
    Later(OnceLock<T>),
}

impl<T> Once<T> {
    fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        match self {
            Once::Known(value) => value,
            Once::Later(cell) => cell.get_or_init(init),
        }
    }
}

fn node(
    text: &Arc<str>,
    span: Range<usize>,
    projection: Option<Projection>,
    kids: Option<Kids>,
) -> Value {
    Value::from_object(Node {
        text: Arc::clone(text),
        span,
        projection,
        kids: match kids {
            Some(kids) => Once::Known(Ok(kids)),
            None => Once::Later(OnceLock::new()),
        },
    })
}

/// A container in the text, indexed on first use (keeping what `projection` keeps).
struct Node {
    text: Arc<str>,
    span: Range<usize>,
    projection: Option<Projection>,
    kids: Once<Result<Kids, Malformed>>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text.get(self.span.clone()).unwrap_or_default())
    }
}

enum Kids {
    Map {
        /// Keys in order of first appearance, each with the span of its last value.
        members: Vec<(Value, Slot)>,
        by_key: Option<HashMap<String, usize>>,
    },
    Seq(Vec<Slot>),
}

/// One member's or item's text and, once read, its value.
struct Slot {
    span: Range<usize>,
    /// How a container not yet reached into is shaped.
    projection: Option<Box<Projection>>,
    value: Read,
}

/// A slot's value: known when indexed, or read on first use and kept. Kept under a
/// lock rather than in a `OnceLock`: most values are read once, and an uncontended
/// lock costs less than a `Once`'s first run.
enum Read {
    Known(Option<Value>),
    Later(Mutex<Option<Option<Value>>>),
}

impl Slot {
    fn new(span: Range<usize>, projection: Option<Projection>) -> Slot {
        Slot {
            span,
            projection: projection.map(Box::new),
            value: Read::Later(Mutex::new(None)),
        }
    }

    fn known(span: Range<usize>, value: Value) -> Slot {
        Slot {
            span,
            projection: None,
            value: Read::Known(Some(value)),
        }
    }

    fn get(&self, text: &Arc<str>) -> Option<Value> {
        let cell = match &self.value {
            Read::Known(value) => return value.clone(),
            Read::Later(cell) => cell,
        };
        let mut read = cell.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = &*read {
            return value.clone();
        }
        let projection = self.projection.as_deref().cloned();
        let value = value_at(text, self.span.clone(), projection).ok();
        *read = Some(value.clone());
        value
    }
}

/// The value written at `span`: a lazy node for a container, the parsed scalar else.
fn value_at(
    text: &Arc<str>,
    span: Range<usize>,
    projection: Option<Projection>,
) -> Result<Value, Malformed> {
    let written = text.get(span.clone()).ok_or(Malformed(span.start))?;
    match written.as_bytes().first() {
        Some(b'{' | b'[') => Ok(node(text, span, projection, None)),
        _ => serde_json::from_str(written).map_err(|_| Malformed(span.start)),
    }
}

impl Node {
    fn kids(&self) -> Result<&Kids, Malformed> {
        self.kids
            .get_or_init(|| self.index())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn index(&self) -> Result<Kids, Malformed> {
        let mut sc = Scanner::new(&self.text);
        sc.pos = self.span.start;
        index_at(
            &self.text,
            &mut sc,
            None,
            Shape::of(self.projection.as_ref()),
        )
    }

    fn member(&self, key: &str) -> Option<Value> {
        let Ok(Kids::Map { members, by_key }) = self.kids() else {
            return None;
        };
        let i = match by_key {
            Some(map) => *map.get(key)?,
            None => members.iter().position(|(k, _)| k.as_str() == Some(key))?,
        };
        members[i].1.get(&self.text)
    }
}

/// Indexes the container at the scanner, leaving the scanner after it. Members on
/// `wanted` that are containers are indexed on the way; `shape` says what of the
/// container is kept.
fn index_at(
    text: &Arc<str>,
    sc: &mut Scanner<'_>,
    wanted: Option<&Tree>,
    shape: Shape<'_>,
) -> Result<Kids, Malformed> {
    sc.ws();
    if sc.peek() == Some(b'[') && !matches!(shape, Shape::Envelope(_)) {
        let mut items = Vec::new();
        if sc.begin_array()? {
            let mut index = 0;
            loop {
                sc.ws();
                let kept = shape.item(index, is_container(sc));
                if let Some(slot) = slot(text, sc, None, kept)? {
                    items.push(slot);
                }
                index += 1;
                if !sc.next(b']')? {
                    break;
                }
            }
        }
        return Ok(Kids::Seq(items));
    }
    let mut members: Vec<(Value, Slot)> = Vec::new();
    let mut by_key: Option<HashMap<String, usize>> = None;
    if sc.begin_object()? {
        // Most objects hold a few members: one allocation for them.
        members.reserve(8);
        loop {
            let (_, raw) = sc.key()?;
            let key = decode(raw);
            sc.ws();
            let kept = shape.member(&key, is_container(sc));
            let below = wanted.and_then(|w| w.child(&key));
            if let Some(slot) = slot(text, sc, below, kept)? {
                if by_key.is_none() && members.len() >= LINEAR_MEMBERS {
                    by_key = Some(
                        members
                            .iter()
                            .enumerate()
                            .filter_map(|(i, (k, _))| Some((k.as_str()?.to_string(), i)))
                            .collect(),
                    );
                }
                let seen = match &by_key {
                    Some(map) => map.get(key.as_ref()).copied(),
                    None => members
                        .iter()
                        .position(|(k, _)| k.as_str() == Some(key.as_ref())),
                };
                match seen {
                    Some(i) => members[i].1 = slot,
                    None => {
                        if let Some(map) = &mut by_key {
                            map.insert(key.to_string(), members.len());
                        }
                        members.push((Value::from(key.as_ref()), slot));
                    }
                }
            }
            if !sc.next(b'}')? {
                break;
            }
        }
    }
    Ok(Kids::Map { members, by_key })
}

fn is_container(sc: &Scanner<'_>) -> bool {
    matches!(sc.peek(), Some(b'{' | b'['))
}

/// The slot of the value at the scanner, which is stepped over; `None` when the
/// projection takes it out. A container on `wanted` is indexed now, any other when
/// first reached.
fn slot(
    text: &Arc<str>,
    sc: &mut Scanner<'_>,
    wanted: Option<&Tree>,
    kept: Kept,
) -> Result<Option<Slot>, Malformed> {
    let projection = match kept {
        Kept::Drop => {
            sc.skip_value()?;
            return Ok(None);
        }
        Kept::Null => {
            let span = sc.skip_value()?;
            return Ok(Some(Slot::known(span, Value::from(()))));
        }
        Kept::Value(projection) => projection,
    };
    if !is_container(sc) || wanted.is_none() {
        return Ok(Some(Slot::new(sc.skip_value()?, projection)));
    }
    let start = sc.pos;
    let kids = index_at(text, sc, wanted, Shape::of(projection.as_ref()))?;
    let span = start..sc.pos;
    let value = node(text, span.clone(), None, Some(kids));
    Ok(Some(Slot::known(span, value)))
}

impl Object for Node {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.text[self.span.clone()].starts_with('[') {
            ObjectRepr::Seq
        } else {
            ObjectRepr::Map
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.kids().ok()? {
            Kids::Map { .. } => self.member(key.as_str()?),
            Kids::Seq(items) => items.get(key.as_usize()?)?.get(&self.text),
        }
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.member(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.kids() {
            Ok(Kids::Map { members, .. }) => {
                let pairs: Vec<(Value, Value)> = members
                    .iter()
                    .map(|(key, slot)| {
                        let value = slot.get(&self.text).unwrap_or(Value::UNDEFINED);
                        (key.clone(), value)
                    })
                    .collect();
                Enumerator::KeyValueIter(Box::new(pairs.into_iter()))
            }
            Ok(Kids::Seq(items)) => Enumerator::Seq(items.len()),
            Err(_) => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.kids().ok()? {
            Kids::Map { members, .. } => Some(members.len()),
            Kids::Seq(items) => Some(items.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Path;

    /// What the template saw before: the whole body parsed into minijinja values.
    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn render(source: &str, ctx: Value) -> String {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("t", source).unwrap();
        env.get_template("t").unwrap().render(ctx).unwrap()
    }

    const BODY: &str = r#" {"id":"e\u00e9","data":{"z":1,"a":[1,2.50,{"q":null}],"dup":"first","n":12345678901234567890,"big":123456789012345678901234,"f":0.1,"t":true,"s":"x\"y\ud83d\ude00","dup":"last","e":{},"l":[]}} "#;

    #[test]
    fn every_view_of_the_event_matches_the_parsed_one() {
        for source in [
            "{{ data | tojson }}",
            "{{ data }}",
            "{{ id }} {{ data.dup }} {{ data.n }} {{ data.big }} {{ data.f }} {{ data.s }}",
            "{% for k, v in data | items %}{{ k }}={{ v }};{% endfor %}",
            "{% for k in data %}{{ k }},{% endfor %}{{ data | length }}",
            "{{ data.a | length }} {{ data.a[1] }} {{ data.a[2].q }} {{ data.a | reverse | list }}",
            "{{ data.a | last | tojson }} {{ data.e | tojson }} {{ data.l | tojson }}",
            "{{ data.a == [1, 2.5, {'q': none}] }} {{ 'z' in data }} {{ data.e is mapping }}",
            "{% if data.l %}no{% else %}empty{% endif %} {{ data | dictsort | first }}",
        ] {
            let expected = render(source, parsed(BODY));
            for hinted in [&[][..], &["/data/a", "/data/e", "/data/dup", "/id"][..]] {
                let paths: Vec<Path> = hinted
                    .iter()
                    .map(|p| Path::parse(p, false).unwrap())
                    .collect();
                let hints = Tree::of(&paths);
                assert_eq!(
                    render(source, context(BODY, &hints, None).unwrap()),
                    expected,
                    "{source} with hints {hinted:?}"
                );
            }
        }
    }

    #[test]
    fn large_objects_keep_order_and_last_values() {
        let members: Vec<String> = (0..40).map(|i| format!(r#""k{}":{i}"#, i % 25)).collect();
        let body = format!(r#"{{"data":{{{}}}}}"#, members.join(","));
        let source = "{{ data | tojson }} {{ data.k3 }} {{ data.k24 }}";
        assert_eq!(
            render(source, context(&body, &Tree::default(), None).unwrap()),
            render(source, parsed(&body))
        );
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            crate::test_rng::below(&mut self.0, n)
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }

        fn value(&mut self, depth: usize) -> String {
            const SCALARS: &[&str] = &[
                "1",
                "0.1000",
                "1e400",
                "-0",
                "12345678901234567890",
                "true",
                "null",
                r#""x""#,
                r#""q\"u\\o""#,
                r#""\u00e9""#,
                r#""""#,
            ];
            const KEYS: &[&str] = &["a", "b", "email", "name", "n", r"e\u006dail", "0"];
            let space = if self.below(4) == 0 { " " } else { "" };
            match (depth, self.below(5)) {
                (0, _) | (_, 0) => self.pick(SCALARS).to_string(),
                (_, 1 | 2) => {
                    let items: Vec<String> =
                        (0..self.below(4)).map(|_| self.value(depth - 1)).collect();
                    format!("[{space}{}]", items.join(&format!(",{space}")))
                }
                _ => {
                    let members: Vec<String> = (0..self.below(5))
                        .map(|_| {
                            let key = self.pick(KEYS);
                            format!(r#""{key}"{space}:{}"#, self.value(depth - 1))
                        })
                        .collect();
                    format!("{{{space}{}}}", members.join(","))
                }
            }
        }

        fn paths(&mut self) -> Vec<Path> {
            const SEGMENTS: &[&str] = &["a", "b", "email", "name", "n", "*", "0", "1"];
            (0..self.below(3))
                .map(|_| {
                    let mut text = "/data".to_string();
                    for _ in 0..1 + self.below(3) {
                        text.push('/');
                        text.push_str(self.pick(SEGMENTS));
                    }
                    Path::parse(&text, true).unwrap()
                })
                .collect()
        }
    }

    #[test]
    fn a_template_reads_the_stored_body_as_the_shaped_body_reads() {
        use crate::format::Template;
        use crate::shape::Shaping;
        let templates: Vec<Template> = [
            "{{ data | tojson }}",
            "{{ id }} {{ data }} {{ data | length }}",
            "{% for k, v in data | items %}{{ k }}={{ v | tojson }};{% endfor %}",
            "{{ data.a | tojson }} {{ data.name }} {{ data.a.b | tojson }}",
            "{{ data.n[0] | tojson }} {{ data.email }} {{ data.b[1].a }}",
        ]
        .into_iter()
        .map(|source| Template::compile(source.into(), "text/plain".into()).unwrap())
        .collect();
        let mut gen = Gen(0x9e37_79b9_7f4a_7c15);
        let mut compared = 0;
        for round in 0..400 {
            let data = match round % 10 {
                0 => r#""scalar""#.to_string(),
                _ => gen.value(4),
            };
            let body = match round % 13 {
                0 => r#"{"id":"e1","type":"t"}"#.to_string(),
                1 => format!(r#"{{"id":"e1","data":{{"a":1}},"data" : {data}}}"#),
                _ => format!(r#" {{"id":"e1","type":"t","data":{data},"z":[1]}} "#),
            };
            let shaping = Shaping::new(Vec::new(), gen.paths(), gen.paths());
            let Some(projection) = shaping.projection() else {
                continue;
            };
            let shaped = shaping.body(&body).unwrap();
            for template in &templates {
                let expected = template.render(&shaped);
                let got = template.render_shaped(&body, Some(&projection));
                assert_eq!(
                    got, expected,
                    "{body} include {:?} exclude {:?}",
                    shaping.include, shaping.exclude
                );
                compared += usize::from(expected.is_ok());
            }
        }
        // The generator must reach bodies the templates render, not only errors.
        assert!(compared > 500, "{compared}");
    }

    #[test]
    fn the_shaped_view_drops_shifts_and_nulls_as_the_shaped_body_does() {
        use crate::format::Template;
        use crate::shape::Shaping;
        let path = |p: &str| Path::parse(p, true).unwrap();
        let template =
            Template::compile("{{ data | tojson }}".into(), "text/plain".into()).unwrap();
        let render = |body: &str, include: &[&str], exclude: &[&str]| {
            let shaping = Shaping::new(
                Vec::new(),
                include.iter().map(|p| path(p)).collect(),
                exclude.iter().map(|p| path(p)).collect(),
            );
            let out = template
                .render_shaped(body, shaping.projection().as_ref())
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let body = r#"{"id":"e","data":{"n":[1,2,3],"p":[{"email":"x","name":"A"}],"s":"t","k":{"x":1},"k":5}}"#;
        assert_eq!(render(body, &["/data/n/1"], &[]), r#"{"n": [2]}"#);
        assert_eq!(
            render(body, &[], &["/data/p/*/email", "/data/n/0"]),
            r#"{"n": [2, 3], "p": [{"name": "A"}], "s": "t", "k": 5}"#
        );
        // The scalar "k" under a partial include goes, so the object one is the value.
        assert_eq!(render(body, &["/data/k/x"], &[]), r#"{"k": {"x": 1}}"#);
        assert_eq!(render(r#"{"data":"s"}"#, &["/data/a"], &[]), "null");
        assert_eq!(render(r#"{"data":"s"}"#, &[], &["/data/a"]), r#""s""#);
        let shaping = Shaping::new(Vec::new(), vec![path("/data/a")], Vec::new());
        assert!(template
            .render_shaped("[1]", shaping.projection().as_ref())
            .is_err());
    }

    #[test]
    fn a_body_that_does_not_scan_is_an_error() {
        for bad in ["", "{", r#"{"a":1"#, r#"{"a" 1}"#, "{not json"] {
            assert!(context(bad, &Tree::default(), None).is_err(), "{bad:?}");
        }
    }
}
