//! Chat formats and templates through the real binary: each built-in format's body
//! against the JSON shape its tool documents (field names, types, length limits), with
//! hostile producer text (Slack control sequences, Discord and Mattermost mentions,
//! Markdown links) that must arrive inert; a custom inline template and a template file;
//! a template error located by `check-config`; a template that fails for one event at
//! send time; and the preview route.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::admin::{self, Api, API_TOKEN};
use common::{run, subscription, wait_for, Home, Receiver, Recorded, Serve, SECRET};

const LONG: Duration = Duration::from_secs(20);

/// A summary full of what chat tools interpret, long enough to be cut everywhere.
fn hostile_summary() -> String {
    let chunk =
        "@everyone <!channel> <https://evil.example|click> **bold** [x](https://evil.example) & ";
    chunk.repeat(250)
}

/// An ECHO-shaped `conversation.summarized` event.
fn event(id: &str, title: &str, summary: &str) -> String {
    serde_json::json!({
        "id": id,
        "type": "conversation.summarized",
        "conversation_id": "c-204",
        "project_id": "p-9",
        "occurred_at": "2026-11-22T10:00:00Z",
        "data": {"conversation": {"id": "c-204", "title": title, "summary": summary}},
    })
    .to_string()
}

fn scoped(name: &str, url: &str, extra: &str) -> String {
    format!(
        "{}{extra}\n",
        subscription(
            name,
            url,
            "conversations = [\"c-204\"]",
            "[\"conversation.*\"]"
        )
    )
}

fn only(requests: Vec<Recorded>, path: &str) -> Recorded {
    let mut at: Vec<Recorded> = requests.into_iter().filter(|r| r.path == path).collect();
    assert_eq!(
        at.len(),
        1,
        "expected one request at {path}, got {}",
        at.len()
    );
    at.remove(0)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected a string at {pointer} in {v}"))
}

#[test]
fn each_chat_format_sends_the_shape_its_tool_documents_with_producer_text_inert() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let url = |path: &str| format!("{}{path}", receiver.url);
    home.write_config(
        &[
            scoped("slack", &url("/slack"), "format = \"slack\""),
            scoped("discord", &url("/discord"), "format = \"discord\""),
            scoped("teams", &url("/teams"), "format = \"teams\""),
            scoped("matrix", &url("/matrix"), "format = \"matrix\""),
            scoped("mattermost", &url("/mattermost"), "format = \"mattermost\""),
            scoped("ntfy", &url("/ntfy/alerts"), "format = \"ntfy\""),
        ]
        .concat(),
    );
    let _serve = Serve::start(&home);
    home.drop_json(
        "e.json",
        &event(
            "evt_chat",
            "North <!everyone> & district",
            &hostile_summary(),
        ),
    );
    receiver.wait_for_count(6, LONG);
    let requests = receiver.requests();
    for r in &requests {
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{}",
            r.path
        );
        // The signature covers the body as sent.
        r.verify_standard(SECRET)
            .unwrap_or_else(|e| panic!("{}: {e}", r.path));
    }

    // Slack: `text` plus blocks of mrkdwn sections (3,000 characters each) and a context.
    let slack = only(requests.clone(), "/slack").json();
    assert_eq!(
        str_at(&slack, "/text"),
        "Conversation *North &lt;!everyone&gt; &amp; district* was summarized"
    );
    let blocks = slack["blocks"].as_array().expect("blocks is an array");
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert_eq!(blocks[2]["type"], "context");
    let summary = str_at(&slack, "/blocks/1/text/text");
    assert!(
        summary.chars().count() <= 3000 && summary.ends_with('…'),
        "{summary}"
    );
    for block in blocks {
        let text = block["text"]["text"]
            .as_str()
            .or(block["elements"][0]["text"].as_str())
            .unwrap();
        assert!(
            !text.contains('<') && !text.contains('>'),
            "Slack markup left in {text}"
        );
    }

    // Discord: `content` within 2,000 characters, nobody pinged.
    let discord = only(requests.clone(), "/discord").json();
    let content = str_at(&discord, "/content");
    assert!(content.encode_utf16().count() <= 2000, "{}", content.len());
    assert!(
        content.starts_with("Conversation **North \\<\\!everyone\\> & district** was summarized"),
        "{content}"
    );
    assert!(!content.contains("@everyone"), "a ping left in {content}");
    assert!(!content.contains("[x]("), "a masked link left in {content}");
    assert_eq!(
        discord["allowed_mentions"],
        serde_json::json!({"parse": []})
    );

    // Teams (Workflows): a message with one Adaptive Card attachment.
    let teams = only(requests.clone(), "/teams");
    assert!(
        teams.body.len() <= 28 * 1024,
        "Teams takes 28 KB: {}",
        teams.body.len()
    );
    let teams = teams.json();
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(attachment["contentUrl"].is_null());
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body = card["body"].as_array().expect("card body");
    assert!(body.iter().all(|b| b["type"] == "RichTextBlock"
        && b["inlines"][0]["type"] == "TextRun"
        && b["inlines"][0]["text"].is_string()));
    assert_eq!(
        body[0]["inlines"][0]["text"],
        "Conversation North <!everyone> & district was summarized"
    );

    // Matrix (hookshot): `text` and `html`, the HTML escaped.
    let matrix = only(requests.clone(), "/matrix");
    assert!(matrix.body.len() < 65_536);
    let matrix = matrix.json();
    assert!(str_at(&matrix, "/text").starts_with("Conversation North <!everyone> & district"));
    let html = str_at(&matrix, "/html");
    assert!(
        html.starts_with(
            "Conversation <b>North &lt;!everyone&gt; &amp; district</b> was summarized<br>"
        ),
        "{html}"
    );
    assert!(
        !html.contains("<https") && !html.contains("<!channel"),
        "{html}"
    );

    // Mattermost: Markdown `text` within 16,383 characters, no mention left.
    let mattermost = only(requests.clone(), "/mattermost").json();
    let text = str_at(&mattermost, "/text");
    assert!(text.chars().count() <= 16_383);
    assert!(
        !text.contains("@everyone") && !text.contains("@channel"),
        "{text}"
    );

    // ntfy: a JSON publish to the server root, topic from the url, message <= 4,096 bytes.
    let ntfy = only(requests, "/ntfy/").json();
    assert_eq!(ntfy["topic"], "alerts");
    assert_eq!(
        ntfy["title"],
        "Conversation North <!everyone> & district was summarized"
    );
    let message = str_at(&ntfy, "/message");
    assert!(
        message.len() <= 4096 && message.ends_with('…'),
        "{}",
        message.len()
    );
    assert_eq!(ntfy["tags"], serde_json::json!(["conversation.summarized"]));
}

#[test]
fn custom_templates_inline_and_from_a_file_send_their_content_type() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    std::fs::write(
        home.path().join("note.txt.j2"),
        "{{ type }} for {{ data.conversation.title }}: {{ data.conversation.summary | limit(10) }}\n",
    )
    .unwrap();
    home.write_config(&[
        scoped(
            "inline",
            &format!("{}/inline", receiver.url),
            r#"template = '{"text": {{ "Conversation *" ~ data.conversation.title ~ "* was summarized" }}, "id": {{ id }}}'"#,
        ),
        scoped(
            "file",
            &format!("{}/file", receiver.url),
            "template_file = \"note.txt.j2\"\ncontent_type = \"text/plain; charset=utf-8\"",
        ),
    ]
    .concat());
    let _serve = Serve::start(&home);
    home.drop_json(
        "e.json",
        &event("evt_tpl", "North \"district\"", "A long summary here"),
    );
    receiver.wait_for_count(2, LONG);
    let requests = receiver.requests();

    let inline = only(requests.clone(), "/inline");
    assert_eq!(inline.header("content-type"), Some("application/json"));
    assert_eq!(
        inline.json(),
        serde_json::json!({"text": "Conversation *North \"district\"* was summarized", "id": "evt_tpl"})
    );
    inline.verify_standard(SECRET).unwrap();

    let file = only(requests, "/file");
    assert_eq!(
        file.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        file.body,
        // Jinja drops a template's final newline.
        "conversation.summarized for North \"district\": A long su…"
    );
    file.verify_standard(SECRET).unwrap();
}

#[test]
fn check_config_locates_a_template_that_fails_on_the_sample_event() {
    let home = Home::new();
    let path = home.write_config(&scoped(
        "broken",
        "https://example.org/hook",
        "template = \"{{ data.conversation.nope.deeper }}\"",
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("template ="))
        .unwrap()
        + 1;
    let (code, _out, err) = run(&["check-config", "--config", &path.display().to_string()]);
    assert_ne!(code, 0, "{err}");
    let located = format!("{}:{line}:12: ", path.display());
    assert!(err.contains(&located), "expected {located} in {err}");
    assert!(
        err.contains("sample conversation.summarized event"),
        "{err}"
    );
    assert!(err.contains("undefined"), "{err}");

    // A file that is not a regular file is refused like a secret file.
    home.write_config(&scoped(
        "fifo",
        "https://example.org/hook",
        "template_file = \"/dev/zero\"",
    ));
    let (code, _out, err) = run(&["check-config", "--config", &path.display().to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_template_failing_for_one_event_is_dead_with_its_reason_and_the_others_go() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"1s\", \"1s\"]\nbreaker_after = 1\n{}",
        scoped(
            "titled",
            &format!("{}/hook", receiver.url),
            "template = '{\"text\": {{ data.conversation.title }}}'",
        )
    ));
    let serve = Serve::start(&home);
    // The second event has no title: the template fails for it alone.
    home.drop_json("a.json", &event("evt_ok_1", "North", "s"));
    home.drop_json(
        "b.json",
        r#"{"id":"evt_untitled","type":"conversation.summarized","conversation_id":"c-204","data":{"conversation":{}}}"#,
    );
    wait_for("the untitled delivery to be dead", LONG, || {
        home.count(
            "SELECT COUNT(*) FROM deliveries WHERE event_id = 'evt_untitled' AND state = 'dead'",
        ) == 1
    });
    let error: Vec<String> = home.query(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.event_id = 'evt_untitled'",
    );
    assert_eq!(
        error.len(),
        1,
        "dead after one attempt, not retried: {error:?}"
    );
    assert!(
        error[0].contains("the template failed") && error[0].contains("undefined"),
        "{error:?}"
    );
    // The worker lives on, and the failure did not count against the receiver: with
    // breaker_after = 1 a counted failure would hold the next delivery back.
    home.drop_json("c.json", &event("evt_ok_2", "South", "s"));
    wait_for("both titled events delivered", LONG, || {
        home.count("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'") == 2
    });
    let texts: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&"North".to_string()) && texts.contains(&"South".to_string()));
    assert!(
        serve.log().contains("the template failed"),
        "the failure is logged"
    );
}

#[test]
fn the_preview_route_renders_a_recent_event_without_sending() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &[
            scoped(
                "slack",
                &format!("{}/slack", receiver.url),
                "format = \"slack\"",
            ),
            scoped(
                "quiet",
                &format!("{}/quiet", receiver.url),
                "format = \"discord\"\nenabled = false",
            ),
            subscription(
                "nothing-yet",
                &format!("{}/none", receiver.url),
                "conversations = [\"c-999\"]",
                "[\"*\"]",
            ),
        ]
        .concat(),
    );
    home.drop_json("a.json", &event("evt_old", "Old hall", "first"));
    receiver.wait_for_count(1, LONG);
    home.drop_json("b.json", &event("evt_new", "New hall", "second"));
    receiver.wait_for_count(2, LONG);
    let api = Api::token(&home, API_TOKEN);

    // Without event_id: the most recent event the subscription had.
    let preview = api.get("/api/v1/subscriptions/slack/render");
    assert_eq!(preview.status, 200, "{}", preview.body);
    let preview = preview.json();
    assert_eq!(preview["event_id"], "evt_new");
    assert_eq!(preview["format"], "slack");
    assert_eq!(preview["content_type"], "application/json");
    assert!(preview["error"].is_null());
    let body: Value = serde_json::from_str(preview["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["text"], "Conversation *New hall* was summarized");

    // The subscription's config block names its format.
    let detail = api.get("/api/v1/subscriptions/slack").json();
    assert!(
        detail["toml"]
            .as_str()
            .unwrap()
            .contains("format = \"slack\""),
        "{detail}"
    );

    // A named event, rendered for a subscription that never had it and sends nothing.
    let preview = api
        .get("/api/v1/subscriptions/quiet/render?event_id=evt_old")
        .json();
    let body: Value = serde_json::from_str(preview["body"].as_str().unwrap()).unwrap();
    assert!(body["content"].as_str().unwrap().contains("Old hall"));
    assert_eq!(receiver.count(), 2, "a preview sends nothing");

    assert_eq!(
        api.get("/api/v1/subscriptions/slack/render?event_id=nope")
            .status,
        404
    );
    assert_eq!(
        api.get("/api/v1/subscriptions/nothing-yet/render").status,
        404
    );
    assert_eq!(api.get("/api/v1/subscriptions/ghost/render").status, 404);
    assert_eq!(
        api.get("/api/v1/subscriptions/slack/render?evnt=x").status,
        400
    );
    assert_eq!(
        Api::anonymous(&home)
            .get("/api/v1/subscriptions/slack/render")
            .status,
        401
    );

    // The delivery page's request shows the body as sent.
    let id: Vec<i64> = home
        .query("SELECT id FROM deliveries WHERE subscription = 'slack' AND event_id = 'evt_new'");
    let detail = api.get(&format!("/api/v1/deliveries/{}", id[0])).json();
    let sent = receiver
        .requests()
        .into_iter()
        .find(|r| r.path == "/slack" && r.body.contains("New hall"))
        .unwrap();
    assert_eq!(detail["request"]["body"].as_str(), Some(sent.body.as_str()));
}
