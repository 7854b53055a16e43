//! What a receiver's body looks like: the envelope as stored (the default), the message a
//! chat tool's incoming webhook expects (`format = "slack"`, ...), or the operator's own
//! template. [`render`] is the one entry point: the worker calls it at send time, just
//! before signing, and the preview route calls it for a stored event. It takes the
//! envelope as given (a projection step may have shaped `data` before), and never
//! touches the store. Templates are compiled when the config loads, not per delivery.

mod chat;
mod lazy;
mod sample;
mod template;
mod text;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::config::Subscription;
use crate::routing::Pattern;
use crate::shape::Projection;

pub use chat::Tool;
pub use sample::{sample_for, SAMPLE_TYPES};
pub use template::{Template, TemplateError, MAX_TEMPLATE_BYTES};

/// The content type of the envelope and of every built-in chat format.
pub const JSON: &str = "application/json";

/// How a subscription's body is made.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Format {
    /// `{"id","type","conversation_id","project_id","timestamp","data"}`, byte for byte as
    /// stored.
    #[default]
    Envelope,
    /// A chat tool's incoming-webhook message.
    Chat(Tool),
    /// An ntfy JSON publish: POSTed to the server root, with the topic taken from the
    /// subscription's url (`https://ntfy.example.org/alerts` publishes to `alerts`).
    Ntfy { topic: String, publish_url: String },
    /// The operator's template (`template` or `template_file`).
    Template(Arc<Template>),
}

impl Format {
    /// The name shown on the admin page and in the API.
    pub fn name(&self) -> &str {
        match self {
            Format::Envelope => "envelope",
            Format::Chat(tool) => tool.name(),
            Format::Ntfy { .. } => "ntfy",
            Format::Template(_) => "template",
        }
    }
}

/// A body ready to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<'a> {
    pub body: Cow<'a, [u8]>,
    pub content_type: &'a str,
    /// Where it is POSTed: the subscription's url, or for ntfy the server root.
    pub url: &'a str,
}

/// Why a body could not be made for one event. The same event fails the same way on
/// every attempt, so the worker does not retry it (see `deliver.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the body could not be rendered: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

/// The body `subscription` sends for `envelope` (the stored event body, possibly shaped
/// by a projection first). The default format borrows the envelope unchanged.
pub fn render<'a>(
    subscription: &'a Subscription,
    envelope: &'a [u8],
) -> Result<Rendered<'a>, RenderError> {
    let envelope = std::str::from_utf8(envelope)
        .map_err(|err| RenderError(format!("the event is not UTF-8: {err}")))?;
    render_format(
        &subscription.format,
        &subscription.url,
        Cow::Borrowed(envelope),
        None,
    )
}

/// What `subscription` sends for a stored event body: `data` shaped by its
/// include/exclude (`crate::shape`), then rendered in its format. The worker signs and
/// sends this; the delivery view and the body preview show it.
pub fn outgoing<'a>(
    subscription: &'a Subscription,
    stored: &'a str,
) -> Result<Rendered<'a>, RenderError> {
    let format = &subscription.format;
    let url = subscription.url.as_str();
    match subscription.shaping.projection() {
        Some(_) if *format == Format::Envelope => {
            let shaped = subscription
                .shaping
                .body(stored)
                .map_err(|err| RenderError(format!("include/exclude failed: {err}")))?;
            render_format(format, url, shaped, None)
        }
        // Only the rendered message is sent: it reads the stored body through the
        // projection, and the shaped body is never written out.
        projection => render_format(format, url, Cow::Borrowed(stored), projection.as_ref()),
    }
}

/// `envelope` as `format` renders it, read as `projection` shapes it (the envelope
/// format sends what it is given: its caller shapes it first).
fn render_format<'a>(
    format: &'a Format,
    url: &'a str,
    envelope: Cow<'a, str>,
    projection: Option<&Projection>,
) -> Result<Rendered<'a>, RenderError> {
    match format {
        Format::Envelope => Ok(Rendered {
            body: match envelope {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            },
            content_type: JSON,
            url,
        }),
        Format::Chat(tool) => Ok(Rendered {
            body: Cow::Owned(chat::render(*tool, &envelope, projection)?),
            content_type: JSON,
            url,
        }),
        Format::Ntfy { topic, publish_url } => Ok(Rendered {
            body: Cow::Owned(chat::render_ntfy(topic, &envelope, projection)?),
            content_type: JSON,
            url: publish_url,
        }),
        Format::Template(template) => Ok(Rendered {
            body: Cow::Owned(template.render_shaped(&envelope, projection)?),
            content_type: template.content_type(),
            url,
        }),
    }
}

/// `check-config`'s test of a format: it renders a sample event of a type the
/// subscription takes (see `sample.rs`), and a JSON body must parse as JSON.
pub fn check(format: &Format, events: &[Pattern]) -> Result<(), String> {
    let sample = sample_for(events);
    let kind = serde_json::from_str::<serde_json::Value>(&sample)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .unwrap_or_default();
    let rendered = render_format(format, "", Cow::Borrowed(sample.as_str()), None)
        .map_err(|err| format!("rendering the sample {kind} event failed: {}", err.0))?;
    if template::is_json(rendered.content_type) {
        if let Err(err) = serde_json::from_slice::<serde_json::Value>(&rendered.body) {
            return Err(format!(
                "the body rendered for the sample {kind} event is not JSON ({err}); \
                 write each value as {{{{ value }}}} (it is written as JSON), or set \
                 content_type for another kind of body"
            ));
        }
    }
    Ok(())
}

/// An ntfy topic URL split into the server root to publish to and the topic: the last
/// path segment, `[-_A-Za-z0-9]{1,64}` as ntfy names topics.
pub fn ntfy_target(url: &str) -> Result<(String, String), String> {
    let (before_query, query) = match url.find(['?', '#']) {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
    let path_start = before_query[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .ok_or_else(|| {
            "the url has no topic; write the topic URL, like https://ntfy.example.org/alerts"
                .to_string()
        })?;
    let trimmed = before_query.trim_end_matches('/');
    let cut = trimmed.rfind('/').filter(|i| *i >= path_start);
    let Some(cut) = cut else {
        return Err(
            "the url has no topic; write the topic URL, like https://ntfy.example.org/alerts"
                .to_string(),
        );
    };
    let topic = &trimmed[cut + 1..];
    let valid = !topic.is_empty()
        && topic.len() <= 64
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "{topic:?} is not an ntfy topic (1 to 64 letters, digits, '-' and '_'); \
             write the topic URL, like https://ntfy.example.org/alerts"
        ));
    }
    Ok((topic.to_string(), format!("{}{query}", &trimmed[..=cut])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntfy_urls_split_into_root_and_topic() {
        assert_eq!(
            ntfy_target("https://ntfy.sh/alerts"),
            Ok(("alerts".into(), "https://ntfy.sh/".into()))
        );
        assert_eq!(
            ntfy_target("http://127.0.0.1:9/base/path/my_topic-1/?auth=x"),
            Ok((
                "my_topic-1".into(),
                "http://127.0.0.1:9/base/path/?auth=x".into()
            ))
        );
        assert!(ntfy_target("https://ntfy.sh/").is_err());
        assert!(ntfy_target("https://ntfy.sh").is_err());
        assert!(ntfy_target("https://ntfy.sh/a.b").is_err());
    }
}
