//! A template's view of the event, read from the JSON text as the template reaches into
//! it: an object or array is indexed (its members' spans found with the shaping scanner)
//! the first time the template looks inside, and a value is converted when it is first
//! read. What the template never touches (a transcript behind `data.conversation.summary`)
//! is stepped over, never built. The values are the ones a full parse gives: scalars go
//! through the same `serde_json` conversion, keys keep their order, and a repeated key
//! keeps its first place with its last value (as the parsed map did).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

use crate::shape::project::Tree;
use crate::shape::scan::{decode, Malformed, Scanner};

/// Objects with more members than this get a hash index for lookups.
const LINEAR_MEMBERS: usize = 16;

/// The envelope as a template context. The top level is indexed here, so a body that
/// does not scan is an error before the template runs. The containers on `hints` (the
/// paths the template names, see `Template::compile`) are indexed in the same pass as
/// their parents, so reaching `data.conversation.title` reads the body once, not once
/// per level; anything else is still indexed when first reached.
pub fn context(envelope: &str, hints: &Tree) -> Result<Value, Malformed> {
    let text: Arc<str> = Arc::from(envelope);
    let mut sc = Scanner::new(&text);
    sc.ws();
    let start = sc.pos;
    if !matches!(sc.peek(), Some(b'{' | b'[')) {
        let end = sc.skip_value()?.end;
        return value_at(&text, start..end);
    }
    let kids = index_at(&text, &mut sc, Some(hints))?;
    Ok(node(&text, start..sc.pos, Some(kids)))
}

fn node(text: &Arc<str>, span: Range<usize>, kids: Option<Kids>) -> Value {
    let cell = OnceLock::new();
    if let Some(kids) = kids {
        let _ = cell.set(Ok(kids));
    }
    Value::from_object(Node {
        text: Arc::clone(text),
        span,
        kids: cell,
    })
}

/// A container in the text, indexed on first use.
struct Node {
    text: Arc<str>,
    span: Range<usize>,
    kids: OnceLock<Result<Kids, Malformed>>,
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
    value: OnceLock<Option<Value>>,
}

impl Slot {
    fn new(span: Range<usize>) -> Slot {
        Slot {
            span,
            value: OnceLock::new(),
        }
    }

    fn get(&self, text: &Arc<str>) -> Option<Value> {
        self.value
            .get_or_init(|| value_at(text, self.span.clone()).ok())
            .clone()
    }
}

/// The value written at `span`: a lazy node for a container, the parsed scalar else.
fn value_at(text: &Arc<str>, span: Range<usize>) -> Result<Value, Malformed> {
    let written = text.get(span.clone()).ok_or(Malformed(span.start))?;
    match written.as_bytes().first() {
        Some(b'{' | b'[') => Ok(node(text, span, None)),
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
        index_at(&self.text, &mut sc, None)
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
/// `wanted` that are containers are indexed on the way.
fn index_at(
    text: &Arc<str>,
    sc: &mut Scanner<'_>,
    wanted: Option<&Tree>,
) -> Result<Kids, Malformed> {
    sc.ws();
    if sc.peek() == Some(b'[') {
        let mut items = Vec::new();
        if sc.begin_array()? {
            loop {
                items.push(Slot::new(sc.skip_value()?));
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
        loop {
            let (_, raw) = sc.key()?;
            let key = decode(raw);
            sc.ws();
            let below = wanted.and_then(|w| w.child(&key));
            let slot = match (below, sc.peek()) {
                (Some(below), Some(b'{' | b'[')) => {
                    let start = sc.pos;
                    let kids = index_at(text, sc, Some(below))?;
                    let span = start..sc.pos;
                    let value = OnceLock::new();
                    let _ = value.set(Some(node(text, span.clone(), Some(kids))));
                    Slot { span, value }
                }
                _ => Slot::new(sc.skip_value()?),
            };
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
            if !sc.next(b'}')? {
                break;
            }
        }
    }
    Ok(Kids::Map { members, by_key })
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
                    render(source, context(BODY, &hints).unwrap()),
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
            render(source, context(&body, &Tree::default()).unwrap()),
            render(source, parsed(&body))
        );
    }

    #[test]
    fn a_body_that_does_not_scan_is_an_error() {
        for bad in ["", "{", r#"{"a":1"#, r#"{"a" 1}"#, "{not json"] {
            assert!(context(bad, &Tree::default()).is_err(), "{bad:?}");
        }
    }
}
