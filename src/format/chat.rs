//! The built-in chat formats: one message built from the event (a headline naming the
//! conversation, a line of facts, the summary or text found in `data`), written the way
//! each tool's incoming webhook documents it, escaped for what that tool interprets and
//! cut to its limits. Producer text never becomes markup: no links, mentions or pings.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::shape::project::Tree;
use crate::shape::{Doc, Path, Projection};

use super::text::{self, Escape, Field, Limit};
use super::RenderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Slack incoming webhook: `text` (the notification) plus mrkdwn `blocks`.
    Slack,
    /// Discord execute-webhook: `content` (at most 2,000 characters), no mentions.
    Discord,
    /// Microsoft Teams Workflows ("when a Teams webhook request is received"): a message
    /// with one Adaptive Card attachment (Workflows take no legacy MessageCard).
    Teams,
    /// matrix-hookshot generic webhook: `text` plus `html` (so the text is not read as
    /// Markdown).
    Matrix,
    /// Mattermost incoming webhook: Markdown `text`.
    Mattermost,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Slack => "slack",
            Tool::Discord => "discord",
            Tool::Teams => "teams",
            Tool::Matrix => "matrix",
            Tool::Mattermost => "mattermost",
        }
    }
}

// Limits, from each tool's documentation.
/// Slack: a section block's text and a context element's text.
const SLACK_BLOCK_TEXT: Limit = Limit::Chars(3_000);
/// Discord: a message's `content`.
const DISCORD_CONTENT: Limit = Limit::Utf16(2_000);
/// Mattermost: a post's message (`MaxPostSize`, 16,383 runes since 5.0).
const MATTERMOST_TEXT: Limit = Limit::Chars(16_383);
/// Teams: a message is at most 28 KB in all; the card's texts stay well inside it.
const TEAMS_HEADLINE: Limit = Limit::Bytes(1_000);
const TEAMS_TEXT: Limit = Limit::Bytes(10_000);
/// Matrix: an event is at most 65,536 bytes; `text` and `html` share it.
const MATRIX_TEXT: Limit = Limit::Bytes(6_000);
const MATRIX_HTML: Limit = Limit::Bytes(18_000);
/// ntfy: a message over 4,096 bytes becomes an attachment.
const NTFY_MESSAGE: Limit = Limit::Bytes(4_096);
const NTFY_TITLE: Limit = Limit::Bytes(250);

/// What every built-in format says about an event.
#[derive(Debug, PartialEq)]
struct Message {
    /// The headline around the name: "Conversation" [name] "was summarized".
    before: String,
    name: Option<String>,
    after: String,
    /// Type, conversation, project and time.
    facts: String,
    /// The summary or text found in `data`.
    text: Option<String>,
    kind: String,
}

/// Where a name is looked for in `data`, first found wins (ECHO's shape first).
const NAME_AT: &[&str] = &[
    "/conversation/title",
    "/conversation/name",
    "/title",
    "/name",
    "/conversation_title",
    "/conversation_name",
];
/// Where the message text is looked for in `data`.
const TEXT_AT: &[&str] = &[
    "/summary",
    "/conversation/summary",
    "/report/summary",
    "/text",
    "/message",
    // posthorn's own alerts.
    "/reason",
    "/last_error",
];

/// The pointers the message reads, rooted at the envelope, parsed once.
struct Reads {
    kind: Path,
    conversation: Path,
    project: Path,
    timestamp: Path,
    names: Vec<Path>,
    texts: Vec<Path>,
    project_name: Path,
    subscription: Path,
    /// All of them: the envelope is indexed along these in one pass, and whatever else
    /// it holds (a transcript, say) is stepped over unread.
    tree: Tree,
}

fn reads() -> &'static Reads {
    static READS: OnceLock<Reads> = OnceLock::new();
    READS.get_or_init(|| {
        let path = |text: &str| Path::parse(text, false).unwrap_or_else(|err| panic!("{err}"));
        let under_data = |pointers: &[&str]| -> Vec<Path> {
            pointers
                .iter()
                .map(|p| path(&format!("/data{p}")))
                .collect()
        };
        let mut reads = Reads {
            kind: path("/type"),
            conversation: path("/conversation_id"),
            project: path("/project_id"),
            timestamp: path("/timestamp"),
            names: under_data(NAME_AT),
            texts: under_data(TEXT_AT),
            project_name: path("/data/project/name"),
            subscription: path("/data/subscription"),
            tree: Tree::default(),
        };
        let all = [
            &reads.kind,
            &reads.conversation,
            &reads.project,
            &reads.timestamp,
            &reads.project_name,
            &reads.subscription,
        ]
        .into_iter()
        .chain(&reads.names)
        .chain(&reads.texts);
        reads.tree = Tree::of(all);
        reads
    })
}

fn parse(envelope: &str, projection: Option<&Projection>) -> Result<Message, RenderError> {
    let reads = reads();
    let doc = Doc::reading(envelope, Cow::Borrowed(&reads.tree)).shaped(projection.cloned());
    doc.check()
        .map_err(|err| RenderError(format!("the event is not JSON: {err}")))?;
    let field = |path: &Path| {
        doc.string(path)
            .filter(|s| !s.is_empty())
            .map(Cow::into_owned)
    };
    let kind = field(&reads.kind).unwrap_or_default();
    let conversation = field(&reads.conversation);
    let project = field(&reads.project);
    let first = |paths: &[Path]| {
        paths.iter().find_map(|p| {
            doc.string(p)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    };
    let (before, name, after) = match kind.strip_prefix("conversation.") {
        Some(what) => {
            let after = match what {
                "started" | "ended" => what.to_string(),
                "transcribed" | "summarized" => format!("was {what}"),
                "analysis.completed" => "was analysed".to_string(),
                other => format!("({other})"),
            };
            let name = first(&reads.names).or_else(|| conversation.clone());
            ("Conversation".to_string(), name, after)
        }
        None if kind == "report.generated" => {
            let name = doc
                .string(&reads.project_name)
                .map(Cow::into_owned)
                .or_else(|| project.clone());
            (
                "Report generated for project".to_string(),
                name,
                String::new(),
            )
        }
        None if kind.starts_with("posthorn.") => {
            // posthorn's own alerts (see `alerts.rs`) name the subscription they are about.
            let name = doc.string(&reads.subscription).map(Cow::into_owned);
            let (before, after) = match kind.as_str() {
                "posthorn.subscription.failing" => ("Subscription", "is failing"),
                "posthorn.subscription.recovered" => ("Subscription", "recovered"),
                "posthorn.subscription.paused" => ("Subscription", "was paused"),
                "posthorn.delivery.dead" => ("A delivery of subscription", "is dead"),
                "posthorn.test" => ("A test event for subscription", "from posthorn"),
                _ => (kind.as_str(), ""),
            };
            (before.to_string(), name, after.to_string())
        }
        None => (kind.clone(), None, String::new()),
    };
    let facts = [
        Some(kind.clone()),
        conversation.map(|c| format!("conversation {c}")),
        project.map(|p| format!("project {p}")),
        field(&reads.timestamp),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    Ok(Message {
        before,
        name,
        after,
        facts,
        text: first(&reads.texts),
        kind,
    })
}

/// The headline into `field`, the name between `open` and `close` markup.
fn headline(field: &mut Field, m: &Message, escape: Escape, open: &str, close: &str) {
    field.text(&m.before, escape);
    if let Some(name) = &m.name {
        field.raw(" ").raw(open).text(name, escape).raw(close);
    }
    if !m.after.is_empty() {
        field.raw(" ").text(&m.after, escape);
    }
}

fn plain_headline(m: &Message) -> String {
    let mut field = Field::new(Limit::Bytes(usize::MAX / 2));
    headline(&mut field, m, text::plain, "", "");
    field.finish()
}

/// The message `tool` is sent for `envelope`, read as `projection` shapes it.
pub fn render(
    tool: Tool,
    envelope: &str,
    projection: Option<&Projection>,
) -> Result<Vec<u8>, RenderError> {
    let m = parse(envelope, projection)?;
    let body = match tool {
        Tool::Slack => slack(&m),
        Tool::Discord => discord(&m),
        Tool::Teams => teams(&m),
        Tool::Matrix => matrix(&m),
        Tool::Mattermost => mattermost(&m),
    };
    serde_json::to_vec(&body).map_err(|err| RenderError(err.to_string()))
}

pub fn render_ntfy(
    topic: &str,
    envelope: &str,
    projection: Option<&Projection>,
) -> Result<Vec<u8>, RenderError> {
    let m = parse(envelope, projection)?;
    let mut message = Field::new(NTFY_MESSAGE);
    message.text(&m.facts, text::plain);
    if let Some(body) = &m.text {
        message.raw("\n\n").text(body, text::plain);
    }
    let body = json!({
        "topic": topic,
        "title": text::fit(&plain_headline(&m), NTFY_TITLE),
        "message": message.finish(),
        "tags": [m.kind],
    });
    serde_json::to_vec(&body).map_err(|err| RenderError(err.to_string()))
}

fn slack(m: &Message) -> Value {
    let mut head = Field::new(SLACK_BLOCK_TEXT);
    headline(&mut head, m, text::slack, "*", "*");
    let head = head.finish();
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": head}})];
    if let Some(body) = &m.text {
        let body = Field::new(SLACK_BLOCK_TEXT)
            .text(body, text::slack)
            .finish();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": body}}));
    }
    let facts = Field::new(SLACK_BLOCK_TEXT)
        .text(&m.facts, text::slack)
        .finish();
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]}));
    json!({"text": head, "blocks": blocks})
}

/// Headline, facts, then the text: when the limit cuts, it cuts the text's end.
fn markdown_message(m: &Message, limit: Limit) -> String {
    let mut field = Field::new(limit);
    headline(&mut field, m, text::markdown, "**", "**");
    field.raw("\n").text(&m.facts, text::markdown);
    if let Some(body) = &m.text {
        field.raw("\n\n").text(body, text::markdown);
    }
    field.finish()
}

fn discord(m: &Message) -> Value {
    // `parse: []` turns off every mention Discord would resolve (everyone, roles,
    // users), on top of the escaping.
    json!({
        "content": markdown_message(m, DISCORD_CONTENT),
        "allowed_mentions": {"parse": []},
    })
}

fn mattermost(m: &Message) -> Value {
    json!({"text": markdown_message(m, MATTERMOST_TEXT)})
}

/// Text runs are never read as Markdown, so producer text needs no escaping.
fn teams(m: &Message) -> Value {
    let run = |text: String, style: Value| {
        let mut run = json!({"type": "TextRun", "text": text});
        if let (Some(run), Some(style)) = (run.as_object_mut(), style.as_object()) {
            run.extend(style.clone());
        }
        json!({"type": "RichTextBlock", "inlines": [run]})
    };
    let mut body = vec![
        run(
            text::fit(&plain_headline(m), TEAMS_HEADLINE),
            json!({"weight": "Bolder", "size": "Medium"}),
        ),
        run(
            text::fit(&m.facts, TEAMS_HEADLINE),
            json!({"isSubtle": true, "size": "Small"}),
        ),
    ];
    if let Some(text) = &m.text {
        body.push(run(text::fit(text, TEAMS_TEXT), json!({})));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

fn matrix(m: &Message) -> Value {
    let mut text = Field::new(MATRIX_TEXT);
    headline(&mut text, m, text::plain, "", "");
    text.raw("\n").text(&m.facts, text::plain);
    let mut html = Field::new(MATRIX_HTML);
    headline(&mut html, m, text::html, "<b>", "</b>");
    html.raw("<br>").text(&m.facts, text::html);
    if let Some(body) = &m.text {
        text.raw("\n\n").text(body, text::plain);
        html.raw("<br><br>").text(body, text::html);
    }
    json!({"text": text.finish(), "html": html.finish()})
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id":"e1","type":"conversation.summarized","conversation_id":"c-204","project_id":"p-9","timestamp":"2026-11-22T10:00:00Z","data":{"conversation":{"title":"North district","summary":"Benches <please> & more"}}}"#;

    fn body(tool: Tool, envelope: &str) -> Value {
        serde_json::from_slice(&render(tool, envelope, None).unwrap()).unwrap()
    }

    #[test]
    fn the_message_names_the_conversation() {
        let m = parse(EVENT, None).unwrap();
        assert_eq!(
            plain_headline(&m),
            "Conversation North district was summarized"
        );
        assert_eq!(m.text.as_deref(), Some("Benches <please> & more"));
        assert_eq!(
            m.facts,
            "conversation.summarized · conversation c-204 · project p-9 · 2026-11-22T10:00:00Z"
        );
    }

    #[test]
    fn slack_escapes_its_control_characters() {
        let v = body(Tool::Slack, EVENT);
        assert_eq!(v["text"], "Conversation *North district* was summarized");
        assert_eq!(
            v["blocks"][1]["text"]["text"],
            "Benches &lt;please&gt; &amp; more"
        );
    }

    #[test]
    fn discord_content_fits_2000_and_pings_nobody() {
        let long = "@everyone ".repeat(500);
        let event = EVENT.replace("Benches <please> & more", &long);
        let v = body(Tool::Discord, &event);
        let content = v["content"].as_str().unwrap();
        assert!(content.encode_utf16().count() <= 2000);
        assert!(content.ends_with('…'));
        assert!(!content.contains("@everyone"));
        assert_eq!(v["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn only_what_the_message_reads_is_kept_and_odd_shapes_are_no_error() {
        let event = r#"{"id":"e","type":"conversation.ended","conversation_id":"c-1","data":{"conversation":{"title":7,"transcript":[{"text":"x"}],"name":"Hall \u00e9"},"summary":["not text"],"n":1.5e300}}"#;
        let m = parse(event, None).unwrap();
        assert_eq!(plain_headline(&m), "Conversation Hall é ended");
        assert_eq!(m.text, None);
        assert!(parse("[1, 2]", None).is_ok());
        assert!(parse("{not json", None).is_err());
    }

    #[test]
    fn a_message_reads_the_stored_body_as_the_shaped_body_reads() {
        use crate::shape::Shaping;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut below = |n: usize| crate::test_rng::below(&mut seed, n);
        const VALUES: &[&str] = &[
            r#""North \"hall\" <b>""#,
            r#""Summary & more""#,
            r#""""#,
            "7",
            "null",
            r#"{"title":"Inner"}"#,
            r#"["not text"]"#,
        ];
        const KEYS: &[&str] = &[
            "title",
            "name",
            "summary",
            "text",
            "conversation",
            "project",
        ];
        const PATHS: &[&str] = &[
            "/data/conversation/title",
            "/data/conversation/summary",
            "/data/conversation",
            "/data/title",
            "/data/summary",
            "/data/text",
            "/data/project/name",
            "/data/*/title",
            "/data/conversation/*",
            "/data/nothing",
        ];
        let mut compared = 0;
        for _ in 0..300 {
            let member = |depth: usize, below: &mut dyn FnMut(usize) -> usize| {
                let key = KEYS[below(KEYS.len())];
                let value = if depth > 0 && below(2) == 0 {
                    let inner: Vec<String> = (0..below(4))
                        .map(|_| {
                            let key = KEYS[below(KEYS.len())];
                            format!(r#""{key}":{}"#, VALUES[below(VALUES.len())])
                        })
                        .collect();
                    format!("{{{}}}", inner.join(","))
                } else {
                    VALUES[below(VALUES.len())].to_string()
                };
                format!(r#""{key}":{value}"#)
            };
            let members: Vec<String> = (0..below(6)).map(|_| member(1, &mut below)).collect();
            let body = format!(
                r#"{{"id":"e","type":"conversation.summarized","conversation_id":"c-1","project_id":"p-1","timestamp":"2026-11-22T10:00:00Z","data":{{{}}}}}"#,
                members.join(",")
            );
            let paths = |below: &mut dyn FnMut(usize) -> usize| -> Vec<Path> {
                (0..below(3))
                    .map(|_| Path::parse(PATHS[below(PATHS.len())], true).unwrap())
                    .collect()
            };
            let include = paths(&mut below);
            let exclude = paths(&mut below);
            let shaping = Shaping::new(Vec::new(), include, exclude);
            let Some(projection) = shaping.projection() else {
                continue;
            };
            let shaped = shaping.body(&body).unwrap();
            for tool in [
                Tool::Slack,
                Tool::Discord,
                Tool::Teams,
                Tool::Matrix,
                Tool::Mattermost,
            ] {
                assert_eq!(
                    render(tool, &body, Some(&projection)),
                    render(tool, &shaped, None),
                    "{tool:?} {body} include {:?} exclude {:?}",
                    shaping.include,
                    shaping.exclude
                );
            }
            assert_eq!(
                render_ntfy("t", &body, Some(&projection)),
                render_ntfy("t", &shaped, None)
            );
            compared += usize::from(shaped != body);
        }
        assert!(compared > 100, "{compared}");
    }

    #[test]
    fn posthorn_alerts_name_their_subscription_and_reason() {
        let event = r#"{"id":"posthorn_1","type":"posthorn.subscription.paused","data":{"subscription":"crm","cause":"gone","reason":"410 Gone"}}"#;
        let m = parse(event, None).unwrap();
        assert_eq!(plain_headline(&m), "Subscription crm was paused");
        assert_eq!(m.text.as_deref(), Some("410 Gone"));
    }

    #[test]
    fn an_event_without_a_name_uses_the_conversation_id() {
        let event = r#"{"id":"e","type":"conversation.started","conversation_id":"c-1","data":{}}"#;
        let m = parse(event, None).unwrap();
        assert_eq!(plain_headline(&m), "Conversation c-1 started");
        assert_eq!(m.text, None);
    }
}
