//! `renamed_from` on a subscription: the old name whose queue and history it takes over
//! (see `store/rename.rs`). Checked across the whole file: the old name must be gone from
//! the config, and only one subscription may take it.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::validate::Validator;

/// One `renamed_from`, before the check: the new name and the old one with its place.
pub(super) struct Rename {
    pub new: String,
    pub old: Spanned<String>,
}

impl Validator<'_> {
    pub(super) fn check_renames(
        &mut self,
        renames: &[Rename],
        names: &HashMap<String, Range<usize>>,
    ) {
        let mut taken: HashMap<&str, &str> = HashMap::new();
        for Rename { new, old } in renames {
            let old_name = old.get_ref().as_str();
            let message = if old_name.trim().is_empty() {
                Some("renamed_from is empty; write the subscription's old name".to_string())
            } else if old_name == new {
                Some(format!(
                    "subscription {new:?}: renamed_from names the subscription itself; write its old name"
                ))
            } else if names.contains_key(old_name) {
                Some(format!(
                    "subscription {new:?}: renamed_from = {old_name:?}, but a subscription {old_name:?} is still in the config; remove it (its queue and history move to {new:?}) or drop renamed_from"
                ))
            } else {
                taken.insert(old_name, new).map(|first| {
                    format!(
                        "subscription {new:?}: {first:?} already has renamed_from = {old_name:?}; one subscription takes over an old name"
                    )
                })
            };
            if let Some(message) = message {
                self.problem(old.span(), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn sub(name: &str, renamed_from: Option<&str>) -> String {
        let from = renamed_from
            .map(|old| format!("renamed_from = {old:?}\n"))
            .unwrap_or_default();
        format!(
            "[[subscription]]\nname = {name:?}\nurl = \"https://example.org/h\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsecret = {SECRET:?}\n{from}"
        )
    }

    fn problems(text: &str) -> String {
        match crate::config::parse(text, Path::new("/tmp/c.toml")) {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn renamed_from_is_read() {
        let config = crate::config::parse(&sub("new", Some("old")), Path::new("/tmp/c.toml"))
            .expect("valid");
        assert_eq!(config.subscriptions[0].renamed_from.as_deref(), Some("old"));
    }

    #[test]
    fn renamed_from_must_name_a_subscription_that_is_gone_and_only_once() {
        let still_there = problems(&format!("{}{}", sub("old", None), sub("new", Some("old"))));
        assert!(
            still_there.contains("is still in the config") && still_there.contains(":13:16:"),
            "{still_there}"
        );
        let itself = problems(&sub("new", Some("new")));
        assert!(itself.contains("names the subscription itself"), "{itself}");
        let twice = problems(&format!(
            "{}{}",
            sub("a", Some("old")),
            sub("b", Some("old"))
        ));
        assert!(twice.contains("\"a\" already has renamed_from"), "{twice}");
        let empty = problems(&sub("new", Some(" ")));
        assert!(empty.contains("renamed_from is empty"), "{empty}");
    }
}
