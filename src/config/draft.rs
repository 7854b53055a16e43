//! A draft `[[subscription]]` block pasted into the admin page, checked the way
//! `check-config` checks a file (every problem with its line and column within the
//! draft), so its scope can be previewed before it is saved. Its secrets are not needed
//! for that: a draft is never signed with, so a placeholder stands in and whatever secret
//! it names is neither read nor kept.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use toml::Spanned;

use super::validate::{line_column, validate_draft};
use super::{Problem, Subscription};

/// The key a draft's signing gets in place of its own (a valid `whsec_` secret, so the
/// rest of the block is checked as it would be with a real one).
pub(super) const PLACEHOLDER_SECRET: &str = "whsec_cG9zdGhvcm4tZHJhZnQtcHJldmlldy1vbmx5";

/// The subscriptions of `text`, or every problem with it. Only `[[subscription]]`
/// blocks may be in it: other sections belong to the config in force, and reading them
/// here would let a pasted `secret_file` or `api_token_file` probe the server's files.
pub fn parse_draft(text: &str) -> Result<Vec<Subscription>, Vec<Problem>> {
    if let Ok(keys) = toml::from_str::<BTreeMap<Spanned<String>, IgnoredAny>>(text) {
        let others: Vec<Problem> = keys
            .keys()
            .filter(|key| key.get_ref() != "subscription")
            .map(|key| {
                let (line, column) = line_column(text, key.span().start);
                Problem {
                    line: Some(line),
                    column: Some(column),
                    message: format!(
                        "a draft holds only [[subscription]] blocks; {:?} is not one \
                         (the config in force's own settings apply)",
                        key.get_ref()
                    ),
                }
            })
            .collect();
        if !others.is_empty() {
            return Err(others);
        }
    }
    let config = validate_draft(text)?;
    if config.subscriptions.is_empty() {
        return Err(vec![Problem {
            line: None,
            column: None,
            message: "the draft holds no [[subscription]] block".into(),
        }]);
    }
    Ok(config.subscriptions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Signing;
    use crate::sign::SigningKey;

    #[test]
    fn the_placeholder_is_a_usable_standard_secret() {
        assert!(SigningKey::from_whsec(PLACEHOLDER_SECRET).is_ok());
    }

    #[test]
    fn a_draft_without_a_secret_is_checked_like_a_file() {
        let draft = r#"
[[subscription]]
name = "north"
url = "https://crm.example.org/hook"
conversations = ["c-2*"]
events = ["conversation.*"]
"#;
        let subscriptions = parse_draft(draft).unwrap();
        assert_eq!(subscriptions.len(), 1);
        assert_eq!(subscriptions[0].name, "north");
        assert!(matches!(subscriptions[0].signing, Signing::Standard { .. }));
    }

    #[test]
    fn a_named_secret_file_or_variable_is_not_read() {
        let draft = r#"
[[subscription]]
name = "a"
url = "https://a.example.org/"
conversations = ["*"]
events = ["*"]
secret_file = "/nonexistent/posthorn-draft-secret"

[[subscription]]
name = "b"
url = "https://b.example.org/"
conversations = ["*"]
events = ["*"]
secret_env = "POSTHORN_DRAFT_TEST_UNSET_VARIABLE"
signature = "hex"
"#;
        let names: Vec<String> = parse_draft(draft)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn problems_are_located_within_the_draft() {
        let draft = "[[subscription]]\nname = \"x y\"\nurl = \"https://a.example.org/\"\n\
                     conversations = [\"*\"]\n";
        let problems = parse_draft(draft).unwrap_err();
        let at: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert!(
            at.iter()
                .any(|(line, m)| *line == Some(2) && m.contains("a name may only")),
            "{at:?}"
        );
        assert!(
            at.iter().any(|(_, m)| m.contains("missing events")),
            "{at:?}"
        );

        let syntax = parse_draft("[[subscription]]\nname = \n").unwrap_err();
        assert_eq!(syntax[0].line, Some(2), "{syntax:?}");
    }

    #[test]
    fn other_sections_and_empty_drafts_are_refused() {
        let problems = parse_draft("[admin]\napi_token_file = \"/etc/shadow\"\n").unwrap_err();
        assert_eq!(problems[0].line, Some(1));
        assert!(
            problems[0].message.contains("only [[subscription]]"),
            "{problems:?}"
        );
        let problems = parse_draft("# nothing\n").unwrap_err();
        assert!(
            problems[0].message.contains("no [[subscription]]"),
            "{problems:?}"
        );
    }
}
