//! The store the find tests (api_find, cli_find, browser_find) look into: the real
//! binary with three subscriptions of different scopes (one by a conversation glob)
//! delivering to a recording receiver on 127.0.0.1, and eight events from a spool file
//! that fan out to none, one or two of them, one with numbers a JSON parser would round
//! one with an id full of URL punctuation and one whose id is also a delivery's.
#![allow(dead_code)] // each test file uses a different part of this

use std::time::Duration;

use crate::common::admin::{self, Api, API_TOKEN};
use crate::common::{subscription, wait_for, Home, Receiver, Serve};

/// The spool file the events come from (their `source` is `spool:events.ndjson`).
pub const SPOOL_FILE: &str = "events.ndjson";
/// An event id a URL must escape: `/`, `?` and `#`.
pub const ODD_ID: &str = "ev/t?1#x";
/// An event id that is also a delivery's id (deliveries are numbered from 1).
pub const NUMBER_ID: &str = "3";
/// The data of `evt_1`, as the producer wrote it: a float and an integer JSON.parse
/// would round, a repeated key.
pub const EVT_1_DATA: &str =
    r#"{"score":1.0000000000000001,"big":12345678901234567890,"tag":"a","tag":"b"}"#;
/// Deliveries the events make: evt_1 1, evt_2 2, evt_3 1, evt_4 1, evt_5 0, 9999 1,
/// ODD_ID 1, NUMBER_ID 0.
pub const DELIVERIES: i64 = 7;

pub struct Fixture {
    pub receiver: Receiver,
    pub home: Home,
    pub serve: Serve,
}

impl Fixture {
    pub fn api(&self) -> Api {
        Api::token(&self.home, API_TOKEN)
    }

    /// The `source` stored with the spooled events: `spool:` and the file's path.
    pub fn spool_source(&self) -> String {
        format!("spool:{}", self.home.spool().join(SPOOL_FILE).display())
    }

    /// The delivery id of `event` to `subscription`, from the store.
    pub fn delivery_id(&self, event: &str, subscription: &str) -> i64 {
        self.home.count(&format!(
            "SELECT id FROM deliveries WHERE event_id = '{event}' AND subscription = '{subscription}'"
        ))
    }
}

fn event(id: &str, kind: &str, conversation: &str, data: &str) -> String {
    format!(
        r#"{{"id":{id:?},"type":"{kind}","conversation_id":"{conversation}","project_id":"p-1","data":{data}}}"#
    ) + "\n"
}

/// Starts posthorn, spools the events and waits until every delivery is delivered.
pub fn start() -> Fixture {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let url = |name: &str| format!("{}/{name}", receiver.url);
    let body = [
        subscription(
            "crm",
            &url("crm"),
            r#"conversations = ["c-1", "c-2"]"#,
            r#"["conversation.*"]"#,
        ),
        subscription(
            "wiki",
            &url("wiki"),
            r#"conversations = ["c-2*"]"#,
            r#"["*"]"#,
        ),
        subscription(
            "bot",
            &url("bot"),
            r#"conversations = ["c-3"]"#,
            r#"["report.generated"]"#,
        ),
    ]
    .concat();
    let serve = admin::start(&home, &body);
    let lines = [
        event("evt_1", "conversation.started", "c-1", EVT_1_DATA),
        event("evt_2", "conversation.ended", "c-2", r#"{"n":2}"#),
        event("evt_3", "report.generated", "c-3", r#"{"n":3}"#),
        event("evt_4", "conversation.transcribed", "c-20", r#"{"n":4}"#),
        event("evt_5", "conversation.started", "c-9", r#"{"n":5}"#),
        event("9999", "report.generated", "c-3", r#"{"n":6}"#),
        event(ODD_ID, "conversation.started", "c-1", r#"{"n":7}"#),
        // Taken by no subscription; its id is also a delivery's.
        event(NUMBER_ID, "conversation.started", "c-9", r#"{"n":8}"#),
    ]
    .concat();
    home.append(SPOOL_FILE, lines.as_bytes());
    wait_for(
        "every delivery to be delivered",
        Duration::from_secs(60),
        || home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == DELIVERIES,
    );
    assert_eq!(home.count("SELECT count(*) FROM events"), 8);
    Fixture {
        receiver,
        home,
        serve,
    }
}
