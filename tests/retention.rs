//! Retention and `[storage] max_size`, through the real binary with periods of seconds
//! and a fast prune interval: old delivered rows go (payload first, metadata later),
//! pending and dead ones stay, rejections age out, and a store over max_size refuses
//! input without losing it and takes it again once pruning has made room.

mod common;

use std::time::Duration;

use common::{catch_all, event_in, spool_event, subscription, wait_for, Home, Receiver, Serve};

const SETTLE: Duration = Duration::from_secs(20);

struct Row {
    body: String,
    payload_dropped: bool,
    deliveries: i64,
    attempts: i64,
}

/// The event `id` as the store holds it, or `None` once it is gone.
fn row(home: &Home, id: &str) -> Option<Row> {
    home.row(
        "SELECT e.body, e.payload_dropped_at IS NOT NULL,
                (SELECT count(*) FROM deliveries d WHERE d.event_seq = e.seq),
                (SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE d.event_seq = e.seq)
         FROM events e WHERE e.id = ?1",
        &[&id],
    )
    .map(|r| Row {
        body: r.get(0),
        payload_dropped: r.get(1),
        deliveries: r.get(2),
        attempts: r.get(3),
    })
}

fn state_of(home: &Home, id: &str, subscription: &str) -> Option<String> {
    home.query::<String>(&format!(
        "SELECT state FROM deliveries WHERE event_id = '{id}' AND subscription = '{subscription}'"
    ))
    .into_iter()
    .next()
}

#[test]
fn old_rows_go_payload_first_while_pending_and_dead_deliveries_stay() {
    let ok = Receiver::start(204);
    // 503 with Retry-After of an hour: the delivery stays pending.
    let waiting = Receiver::holding_off();
    let down = Receiver::start(500);
    let home = Home::new();
    let mut body = String::from(
        "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n\
         [retention]\ndelivered = \"3s\"\nfailed = \"1h\"\npayloads = \"1s\"\n\
         rejections = \"1s\"\ninterval = \"100ms\"\n",
    );
    body.push_str(&subscription(
        "ok",
        &format!("{}/ok", ok.url),
        "conversations = [\"c-ok\", \"c-mixed\"]",
        "[\"*\"]",
    ));
    body.push_str(&subscription(
        "waiting",
        &format!("{}/waiting", waiting.url),
        "conversations = [\"c-mixed\"]",
        "[\"*\"]",
    ));
    body.push_str(&subscription(
        "down",
        &format!("{}/down", down.url),
        "conversations = [\"c-dead\"]",
        "[\"*\"]",
    ));
    home.write_config(&body);
    let serve = Serve::start(&home);

    let lines = [
        event_in("e-ok", "c-ok"),
        event_in("e-mixed", "c-mixed"),
        event_in("e-dead", "c-dead"),
        "{not json".to_string(),
    ];
    home.append("in.ndjson", format!("{}\n", lines.join("\n")).as_bytes());

    wait_for("the bad line to be rejected", SETTLE, || {
        !home.rejections().is_empty()
    });
    wait_for("e-ok delivered", SETTLE, || {
        state_of(&home, "e-ok", "ok").as_deref() == Some("delivered")
    });
    wait_for("e-mixed to wait an hour at 'waiting'", SETTLE, || {
        waiting.count() >= 1 && ok.count_of("e-mixed") == 1
    });
    wait_for("e-dead to be dead", SETTLE, || {
        state_of(&home, "e-dead", "down").as_deref() == Some("dead")
    });

    // The payload goes first; at that moment the metadata is all still there.
    let mut blanked = None;
    wait_for("e-ok's payload to be dropped", SETTLE, || {
        blanked = row(&home, "e-ok").filter(|r| r.payload_dropped);
        blanked.is_some()
    });
    let blanked = blanked.unwrap();
    assert_eq!(blanked.body, "", "a dropped payload is blanked");
    assert_eq!(
        (blanked.deliveries, blanked.attempts),
        (1, 1),
        "the delivery and its attempt outlive the payload"
    );

    // Then the delivered event goes whole.
    wait_for("e-ok to be pruned", SETTLE, || row(&home, "e-ok").is_none());
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries WHERE event_id = 'e-ok'"),
        0
    );
    wait_for("the rejection to age out", SETTLE, || {
        home.rejections().is_empty()
    });
    // Give the pruner a few more rounds past the delivered period, then look at the rest.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        home.count(
            "SELECT count(*) FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)"
        ),
        0,
        "no attempt outlives its delivery"
    );

    let mixed = row(&home, "e-mixed").expect("an event with a pending delivery is kept");
    assert!(
        !mixed.payload_dropped,
        "a pending delivery's payload is kept"
    );
    let kept: serde_json::Value = serde_json::from_str(&mixed.body)
        .unwrap_or_else(|err| panic!("the kept body is not JSON ({err}): {}", mixed.body));
    assert_eq!(
        (&kept["id"], &kept["data"]["n"]),
        (&"e-mixed".into(), &"e-mixed".into()),
        "{kept}"
    );
    assert_eq!(
        state_of(&home, "e-mixed", "ok"),
        None,
        "its delivered half went"
    );
    assert_eq!(
        state_of(&home, "e-mixed", "waiting").as_deref(),
        Some("pending")
    );

    let dead = row(&home, "e-dead").expect("a dead delivery is kept for `failed`");
    assert_eq!(dead.deliveries, 1);
    assert_eq!(dead.attempts, 2);
    assert!(
        dead.payload_dropped && dead.body.is_empty(),
        "a dead delivery's payload goes after `payloads` like any final one"
    );
    assert!(
        serve
            .log()
            .contains("pruned what [retention] no longer keeps"),
        "{}",
        serve.log()
    );
}

#[test]
fn a_store_over_max_size_refuses_input_keeps_delivering_and_resumes_after_pruning() {
    if common::sqlite_only("[storage] max_size") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    let mut body =
        String::from("[retention]\ndelivered = \"5s\"\npayloads = \"4s\"\ninterval = \"100ms\"\n");
    body.push_str(&catch_all(&receiver.url));
    // write_config writes the [storage] table; max_size goes into it.
    home.write_config(&body);
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    let config = config.replacen("[storage]\n", "[storage]\nmax_size = \"8MiB\"\n", 1);
    std::fs::write(home.config_path(), config).unwrap();
    let serve = Serve::start(&home);

    // 600 events of 16 KiB in one file: over 9 MiB in one batch, accepted while under.
    let filler = "x".repeat(16 << 10);
    let big: Vec<String> = (0..600)
        .map(|n| {
            format!(
                r#"{{"id":"big-{n}","type":"conversation.started","conversation_id":"c-1","data":{{"text":"{filler}"}}}}"#
            )
        })
        .collect();
    home.drop_json("big.json", &format!("[{}]", big.join(",")));
    wait_for("big.json to be taken", SETTLE, || {
        !home.spool().join("big.json").exists()
    });

    home.drop_json("late.json", &spool_event("late-1"));
    wait_for("the refusal to be logged", SETTLE, || {
        serve.log().contains("spool input waits")
    });
    let log = serve.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("spool input waits"))
        .unwrap();
    assert!(
        refusal.contains("over [storage] max_size = 8.0 MiB"),
        "the error names max_size: {refusal}"
    );
    assert!(
        home.spool().join("late.json").exists(),
        "refused input stays in the spool"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE id = 'late-1'"),
        0
    );

    // Delivery goes on while input waits.
    receiver.wait_for_count(600, SETTLE);

    // Pruning makes room; the waiting file is taken and delivered.
    wait_for("late-1 at the receiver", Duration::from_secs(30), || {
        receiver.count_of("late-1") == 1
    });
    assert!(!home.spool().join("late.json").exists());
    assert!(
        serve
            .log()
            .contains("the store is under [storage] max_size again"),
        "{}",
        serve.log()
    );
    assert_eq!(
        receiver
            .requests()
            .iter()
            .filter(|r| r.event_id().starts_with("big-"))
            .count(),
        600,
        "every big event was delivered once"
    );
}
