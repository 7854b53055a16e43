//! Subscription matching: which subscriptions an event fans out to. Pure functions over
//! the resolved config, called as each event is taken in, before it is stored with its
//! deliveries.

use std::borrow::{Borrow, Cow};
use std::fmt;

use crate::config::Subscription;
use crate::event::Event;
use crate::shape::project::Tree;
use crate::shape::Doc;

/// The names of the enabled subscriptions `event` fans out to, in config order: scope
/// first, then each subscription's `filter` on the body. The body is indexed once for
/// the event, lazily, and only if a subscription in scope has a filter.
pub fn route<S: Borrow<Subscription>>(subscriptions: &[S], event: &Event) -> Vec<String> {
    let in_scope: Vec<&Subscription> = subscriptions
        .iter()
        .map(Borrow::borrow)
        .filter(|subscription| matches(subscription, event))
        .collect();
    // One subscription with a filter (the usual case) lends its own tree of paths.
    let mut filtered = in_scope.iter().filter(|s| !s.shaping.filter.is_empty());
    let wanted = match (filtered.next(), filtered.next()) {
        (None, _) => Cow::Owned(Tree::default()),
        (Some(only), None) => Cow::Borrowed(only.shaping.filter_paths()),
        (Some(_), Some(_)) => Cow::Owned(Tree::of(
            in_scope
                .iter()
                .flat_map(|s| s.shaping.filter.iter().map(|c| &c.path)),
        )),
    };
    let doc = Doc::reading(&event.body, wanted);
    in_scope
        .into_iter()
        .filter(|subscription| subscription.shaping.admits(&doc))
        .map(|subscription| subscription.name.clone())
        .collect()
}

/// A subscription takes an event when it is enabled, one of its event patterns matches the
/// type, and each scope it names (conversations, projects) matches. An event without a
/// conversation id never matches a subscription scoped to conversations.
pub fn matches(subscription: &Subscription, event: &Event) -> bool {
    let in_scope = |patterns: &[Pattern], value: Option<&str>| {
        patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
    };
    subscription.enabled
        && subscription.events.iter().any(|p| p.matches(&event.kind))
        && in_scope(
            &subscription.conversations,
            event.conversation_id.as_deref(),
        )
        && in_scope(&subscription.projects, event.project_id.as_deref())
}

/// An id or name pattern from the config: a literal, or a glob where `*` matches any run
/// of characters (including none) and `?` exactly one.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, candidate: &str) -> bool {
        if !self.0.contains(['*', '?']) {
            return self.0 == candidate;
        }
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = candidate.chars().collect();
        glob_match(&pattern, &text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative glob match over characters with single-star backtracking: no recursion and
/// at worst O(pattern × text), so a hostile id cannot blow the stack or go exponential.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Signing;
    use crate::sign::SigningKey;

    fn pattern(text: &str) -> Pattern {
        Pattern::new(text)
    }

    #[test]
    fn globs_match_literals_stars_and_single_characters() {
        let cases = [
            ("c-204", "c-204", true),
            ("c-204", "c-2045", false),
            ("c-2*", "c-204", true),
            ("c-2*", "c-2", true),
            ("c-2*", "c-304", false),
            ("*", "", true),
            ("conversation.*", "conversation.analysis.completed", true),
            ("conversation.*", "report.generated", false),
            ("*.ended", "conversation.ended", true),
            ("c-?04", "c-204", true),
            ("c-?04", "c-04", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("gespräch-?", "gespräch-ü", true),
        ];
        for (glob, text, expected) in cases {
            assert_eq!(
                pattern(glob).matches(text),
                expected,
                "{glob:?} against {text:?}"
            );
        }
    }

    #[test]
    fn pathological_globs_finish() {
        let glob = pattern(&"*a".repeat(50));
        assert!(!glob.matches(&"a".repeat(5000).replace("aaaa", "aab")));
    }

    fn subscription(conversations: &[&str], projects: &[&str], events: &[&str]) -> Subscription {
        Subscription {
            name: "s".into(),
            url: "http://127.0.0.1/".into(),
            conversations: conversations.iter().map(|p| pattern(p)).collect(),
            projects: projects.iter().map(|p| pattern(p)).collect(),
            events: events.iter().map(|p| pattern(p)).collect(),
            signing: Signing::Hex {
                key: SigningKey::from_utf8("k"),
                header: "X-Sig".into(),
                prefix: String::new(),
            },
            headers: Vec::new(),
            enabled: true,
            allow_networks: Vec::new(),
            timeout: None,
            auto_pause_after: None,
            renamed_from: None,
            pacing: Default::default(),
            transport: Default::default(),
            format: Default::default(),
            shaping: Default::default(),
        }
    }

    fn event(kind: &str, conversation: Option<&str>, project: Option<&str>) -> Event {
        Event {
            id: "e".into(),
            kind: kind.into(),
            conversation_id: conversation.map(Into::into),
            project_id: project.map(Into::into),
            body: "{}".into(),
        }
    }

    #[test]
    fn scopes_must_all_match_and_absent_ids_never_match_a_scope() {
        let scoped = subscription(&["c-2*"], &["p-9"], &["conversation.*"]);
        assert!(matches(
            &scoped,
            &event("conversation.ended", Some("c-204"), Some("p-9"))
        ));
        assert!(!matches(
            &scoped,
            &event("conversation.ended", Some("c-204"), Some("p-1"))
        ));
        assert!(!matches(
            &scoped,
            &event("conversation.ended", Some("c-304"), Some("p-9"))
        ));
        assert!(!matches(
            &scoped,
            &event("report.generated", Some("c-204"), Some("p-9"))
        ));

        let project_wide = subscription(&[], &["p-9"], &["*"]);
        assert!(matches(
            &project_wide,
            &event("report.generated", None, Some("p-9"))
        ));
        let by_conversation = subscription(&["c-204"], &[], &["*"]);
        assert!(!matches(
            &by_conversation,
            &event("report.generated", None, Some("p-9"))
        ));
    }

    #[test]
    fn a_disabled_subscription_matches_nothing() {
        let mut sub = subscription(&["*"], &[], &["*"]);
        sub.enabled = false;
        assert!(!matches(
            &sub,
            &event("conversation.started", Some("c-1"), None)
        ));
    }
}

#[cfg(test)]
mod filter_tests {
    use std::path::Path;

    use super::*;

    /// A `conversation.ended` event of conversation `c-1` whose `data` is `data`.
    fn event(data: &str) -> Event {
        Event {
            id: "e".into(),
            kind: "conversation.ended".into(),
            conversation_id: Some("c-1".into()),
            project_id: None,
            body: format!(r#"{{"id":"e","type":"conversation.ended","data":{data}}}"#),
        }
    }

    #[test]
    fn an_event_a_filter_refuses_is_routed_to_nobody_else_is_touched() {
        let config = crate::config::parse(
            "[[subscription]]\nname = \"nl\"\nurl = \"https://a.example/\"\nsecret = \"s\"\n\
             signature = \"hex\"\nconversations = [\"*\"]\nevents = [\"*\"]\n\
             filter = [{ path = \"/data/language\", equals = \"nl-NL\" }]\n\
             [[subscription]]\nname = \"all\"\nurl = \"https://b.example/\"\nsecret = \"s\"\n\
             signature = \"hex\"\nconversations = [\"*\"]\nevents = [\"*\"]\n",
            Path::new("/c.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let subs = &config.subscriptions;
        assert_eq!(
            route(subs, &event(r#"{"language":"nl-NL"}"#)),
            ["nl", "all"]
        );
        assert_eq!(route(subs, &event(r#"{"language":"en-US"}"#)), ["all"]);
        assert_eq!(route(subs, &event("null")), ["all"]);
    }

    #[test]
    fn filters_of_several_subscriptions_read_their_own_paths() {
        let config = crate::config::parse(
            "[[subscription]]\nname = \"nl\"\nurl = \"https://a.example/\"\nsecret = \"s\"\n\
             signature = \"hex\"\nconversations = [\"*\"]\nevents = [\"*\"]\n\
             filter = [{ path = \"/data/language\", equals = \"nl-NL\" }]\n\
             [[subscription]]\nname = \"urgent\"\nurl = \"https://b.example/\"\nsecret = \"s\"\n\
             signature = \"hex\"\nconversations = [\"*\"]\nevents = [\"*\"]\n\
             filter = [{ path = \"/data/meta/tags\", contains = \"urgent\" }]\n",
            Path::new("/c.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let subs = &config.subscriptions;
        let both = r#"{"meta":{"tags":["urgent"]},"language":"nl-NL"}"#;
        assert_eq!(route(subs, &event(both)), ["nl", "urgent"]);
        let one = r#"{"meta":{"tags":["calm"]},"language":"nl-NL"}"#;
        assert_eq!(route(subs, &event(one)), ["nl"]);
        let other = r#"{"meta":{"tags":["urgent"]},"language":"en"}"#;
        assert_eq!(route(subs, &event(other)), ["urgent"]);
    }
}
