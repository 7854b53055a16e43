//! `posthorn forget --conversation ID`: an erasure request from a shell
//! (`POST /api/v1/conversations/forget`). Prints how many rows were blanked; exits 1 when
//! the API refuses (e.g. a conversation the store holds nothing of).

use std::process::ExitCode;

use serde_json::json;

use super::{connect, finish, out, Failure};
use crate::cli::ApiArgs;
use crate::client::api::Forgotten;
use crate::client::Answer;

/// `posthorn forget ...`.
pub fn forget(conversation: &str, let_pending_finish: bool, json: bool, api: &ApiArgs) -> ExitCode {
    finish(run(conversation, let_pending_finish, json, api))
}

fn run(
    conversation: &str,
    let_pending_finish: bool,
    json: bool,
    api: &ApiArgs,
) -> Result<ExitCode, Failure> {
    let connection = connect(api)?;
    let body = json!({
        "conversation_id": conversation,
        "let_pending_finish": let_pending_finish,
    });
    let answer: Answer<Forgotten> = connection
        .client
        .post("/conversations/forget", Some(&body))?;
    if json {
        out(&answer.raw);
    } else {
        out(&describe(&answer.value));
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn describe(f: &Forgotten) -> String {
    let mut text = format!(
        "forgot conversation {:?}{}: blanked {}, {} and {}; cancelled {}",
        f.conversation_id,
        if f.again { " (forgotten before)" } else { "" },
        plural(f.events, "event body", "event bodies"),
        plural(f.attempts, "attempt snippet", "attempt snippets"),
        plural(f.rejections, "rejection snippet", "rejection snippets"),
        plural(f.cancelled, "pending delivery", "pending deliveries"),
    );
    if f.waiting > 0 {
        text.push_str(&format!(
            "\n{} still pending or being sent: their events are blanked once they are final",
            plural(f.waiting, "delivery", "deliveries")
        ));
    }
    if !f.wal_truncated {
        text.push_str(
            "\nnote: a reader held the WAL, so it was not emptied now; the next checkpoint \
             overwrites the erased pages",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_in_words_and_says_what_still_waits() {
        let f = Forgotten {
            conversation_id: "c-1".into(),
            events: 2,
            attempts: 1,
            rejections: 0,
            cancelled: 1,
            waiting: 1,
            again: false,
            wal_truncated: true,
        };
        assert_eq!(
            describe(&f),
            "forgot conversation \"c-1\": blanked 2 event bodies, 1 attempt snippet and 0 \
             rejection snippets; cancelled 1 pending delivery\n1 delivery still pending or \
             being sent: their events are blanked once they are final"
        );
    }
}
