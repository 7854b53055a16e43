//! The operator's own templates (MiniJinja, a Jinja2 dialect). A template is compiled
//! once when the config loads and rendered per delivery over the envelope: `id`, `type`,
//! `conversation_id`, `project_id`, `timestamp` and `data` (parsed, key order kept).
//! Undefined values are errors (a misspelt field fails instead of sending an empty
//! message), a render is bounded in work (fuel) and in output size, and in a JSON
//! template every `{{ ... }}` is written as a JSON value, so producer text cannot break
//! out of a string.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::lazy;
use super::text::{self, Limit};
use super::RenderError;
use crate::shape::project::Tree;
use crate::shape::{Path, Projection};

/// Largest template accepted (inline or file).
pub const MAX_TEMPLATE_BYTES: usize = 256 << 10;
/// Largest body a template may produce (the largest event an ECHO source takes).
const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// Instructions one render may run: far above a template over a long transcript, far
/// below a loop that would hold a worker for minutes.
const FUEL: u64 = 5_000_000;
const NAME: &str = "body";

/// A compiled template and the content type it produces.
#[derive(Clone)]
pub struct Template {
    source: String,
    content_type: String,
    env: Environment<'static>,
    /// The event paths the template names (`data.conversation.title`): indexed in one
    /// pass when a render starts (a hint only; see `lazy.rs`).
    hints: Tree,
}

/// A template that does not compile or render, with the line in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "template line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> TemplateError {
        let message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        TemplateError {
            line: err.line(),
            message,
        }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("content_type", &self.content_type)
            .field("bytes", &self.source.len())
            .finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.source == other.source && self.content_type == other.content_type
    }
}

/// Whether `content_type` is JSON (`application/json`, `application/*+json`).
pub(super) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_html(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("text/html")
}

impl Template {
    /// Compiles `source`; its output is sent as `content_type`.
    pub fn compile(source: String, content_type: String) -> Result<Template, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError {
                line: None,
                message: format!("the template is over {} KiB", MAX_TEMPLATE_BYTES >> 10),
            });
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        let escape = if is_json(&content_type) {
            AutoEscape::Json
        } else if is_html(&content_type) {
            AutoEscape::Html
        } else {
            AutoEscape::None
        };
        env.set_auto_escape_callback(move |_| escape.clone());
        env.add_filter("limit", limit);
        // Text arguments are borrowed (`Cow` takes any value a `String` would, written
        // the same way) rather than copied into a String first.
        env.add_filter("slack", |s: Cow<'_, str>| text::escape_all(&s, text::slack));
        env.add_filter("markdown", |s: Cow<'_, str>| {
            text::escape_all(&s, text::markdown)
        });
        env.add_template_owned(NAME, source.clone())?;
        let hints = hints(&env.get_template(NAME)?);
        Ok(Template {
            source,
            content_type,
            env,
            hints,
        })
    }

    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Renders the template over `envelope`. The template reads the event lazily (see
    /// `lazy.rs`): only what it reaches into is indexed and converted.
    pub fn render(&self, envelope: &str) -> Result<Vec<u8>, RenderError> {
        self.render_shaped(envelope, None)
    }

    /// Renders the template over the stored body as `projection` shapes it: the same
    /// output as [`Template::render`] over the shaped body, without writing that body.
    pub fn render_shaped(
        &self,
        stored: &str,
        projection: Option<&Projection>,
    ) -> Result<Vec<u8>, RenderError> {
        let context = lazy::context(stored, &self.hints, projection)
            .map_err(|err| RenderError(format!("the event is not JSON: {err}")))?;
        self.render_value(context)
            .map_err(|err| RenderError(format!("the template failed: {err}")))
    }

    fn render_value(&self, context: Value) -> Result<Vec<u8>, TemplateError> {
        let template = self.env.get_template(NAME)?;
        let mut out = Capped {
            // Room for the template's own text and some values, so a small body is
            // written without growing the buffer step by step.
            bytes: Vec::with_capacity(self.source.len() * 2 + 512),
            cap: MAX_OUTPUT_BYTES,
        };
        template
            .render_captured_to(context, &mut out)
            .map_err(|err| {
                if out.bytes.len() >= out.cap {
                    TemplateError {
                        line: err.line(),
                        message: format!("the output is over {} MiB", MAX_OUTPUT_BYTES >> 20),
                    }
                } else {
                    err.into()
                }
            })?;
        Ok(out.bytes)
    }
}

/// The dotted variables the template reads, as paths into the envelope.
fn hints(template: &minijinja::Template<'_, '_>) -> Tree {
    let paths: Vec<Path> = template
        .undeclared_variables(true)
        .iter()
        .filter_map(|dotted| Path::parse(&format!("/{}", dotted.replace('.', "/")), false).ok())
        .collect();
    Tree::of(&paths)
}

/// `{{ text | limit(200) }}`: at most that many characters, an ellipsis where cut.
fn limit(value: Cow<'_, str>, count: usize) -> String {
    text::fit(&value, Limit::Chars(count))
}

/// Takes output until `cap` bytes, then fails the render.
struct Capped {
    bytes: Vec<u8>,
    cap: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.bytes.resize(self.cap, 0);
            return Err(io::Error::other("output limit reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id":"e1","type":"conversation.summarized","conversation_id":"c-204","project_id":null,"timestamp":"2026-11-22T10:00:00Z","data":{"z":1,"title":"North \"district\"","a":[1,2]}}"#;

    fn render(source: &str, content_type: &str) -> Result<String, RenderError> {
        let template = Template::compile(source.into(), content_type.into()).unwrap();
        template
            .render(EVENT)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn json_templates_write_values_as_json() {
        let out = render(
            r#"{"text": {{ "Conversation " ~ data.title ~ " was summarized" }}, "id": {{ id }}}"#,
            "application/json",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["text"], "Conversation North \"district\" was summarized");
        assert_eq!(v["id"], "e1");
    }

    #[test]
    fn data_keeps_its_key_order() {
        let out = render("{{ data | tojson }}", "text/plain").unwrap();
        assert!(out.starts_with(r#"{"z": 1, "title""#), "{out}");
    }

    #[test]
    fn a_missing_field_is_an_error_with_its_line() {
        let err = render("line one\n{{ data.missing.deeper }}", "text/plain").unwrap_err();
        assert!(err.0.contains("undefined"), "{err}");
        assert!(err.0.contains("line 2"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Template::compile("a\n{% if %}".into(), "text/plain".into()).unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn runaway_templates_stop() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "text/plain",
        )
        .unwrap_err();
        assert!(err.0.contains("fuel") || err.0.contains("output"), "{err}");
    }

    #[test]
    fn text_filters_take_any_value_as_its_text_and_refuse_undefined() {
        let out = render(
            "{{ 12 | slack }}|{{ true | markdown }}|{{ 1.5 | limit(2) }}|{{ none | slack }}",
            "text/plain",
        )
        .unwrap();
        assert_eq!(out, "12|True|1…|None");
        let err = render("{{ data.nope | slack }}", "text/plain").unwrap_err();
        assert!(err.0.contains("undefined"), "{err}");
    }

    #[test]
    fn filters_escape_and_limit() {
        let out = render(
            "{{ '<@U1> & @here' | slack }} {{ 'abcdef' | limit(4) }}",
            "text/plain",
        )
        .unwrap();
        assert_eq!(out, "&lt;@U1&gt; &amp; @here abc…");
    }
}
