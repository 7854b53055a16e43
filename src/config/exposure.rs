//! Whether the config file gives its secrets away: at start posthorn warns when a config
//! file that holds a secret inline (`secret`, `token`, `api_token`, a `[storage] url`
//! with a password) can be read by users
//! other than posthorn's own: by everyone, or by a group posthorn does not run as (a
//! file shared with posthorn's group, as the `.deb` installs it, is fine).

use std::path::Path;

/// Keys whose value is a secret when written inline.
const SECRET_KEYS: &[&str] = &["secret", "token", "api_token"];

/// The warning to log for the config file at `path`, if any.
pub fn warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let keys = inline_secrets(&text);
    let readable = readable_by_others(meta.mode(), meta.gid(), own_gid());
    decide(path, &keys, readable)
}

/// Who besides posthorn may read a file of `mode` owned by group `file_gid`, when
/// posthorn runs as group `own_gid` (`None` when unknown: then any group counts).
fn readable_by_others(mode: u32, file_gid: u32, own_gid: Option<u32>) -> Option<&'static str> {
    if mode & 0o004 != 0 {
        Some("every user")
    } else if mode & 0o040 != 0 && own_gid != Some(file_gid) {
        Some("its group")
    } else {
        None
    }
}

fn decide(path: &Path, keys: &[String], readable: Option<&str>) -> Option<String> {
    let who = readable?;
    if keys.is_empty() {
        return None;
    }
    Some(format!(
        "the config file {} holds secrets ({}) and {who} can read it; chmod 600 it (or 640 \
         with posthorn's group), or move the secrets to secret_file / token_file or the \
         environment",
        path.display(),
        keys.join(", ")
    ))
}

/// The dotted names of the keys in `text` that hold a secret inline.
fn inline_secrets(text: &str) -> Vec<String> {
    fn walk(value: &toml::Value, at: &str, found: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let here = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    let is_secret = if here == "storage.url" {
                        value
                            .as_str()
                            .is_some_and(|url| super::secret_url::redact_url(url) != url)
                    } else {
                        SECRET_KEYS.contains(&key.as_str()) && value.is_str()
                    };
                    if is_secret {
                        if !found.contains(&here) {
                            found.push(here);
                        }
                    } else {
                        walk(value, &here, found);
                    }
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|item| walk(item, at, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Ok(value) = text.parse::<toml::Table>() {
        walk(&toml::Value::Table(value), "", &mut found);
    }
    found
}

/// posthorn's effective group, from `/proc/self/status` (Linux); `None` elsewhere.
fn own_gid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Gid:"))?;
    // Real, effective, saved, filesystem.
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_found_by_key_wherever_they_are() {
        let text = "[inlet]\ntoken = \"t\"\n[[inlet.source]]\nname = \"echo\"\nsecret = \"s\"\n\
                    [admin]\napi_token_env = \"X\"\n[[subscription]]\nname = \"a\"\nsecret = \"s\"\n\
                    [[subscription]]\nname = \"b\"\nsecret_file = \"/x\"\n";
        assert_eq!(
            inline_secrets(text),
            ["inlet.source.secret", "inlet.token", "subscription.secret"]
        );
        assert!(inline_secrets("[[subscription]]\nsecret_env = \"X\"\n").is_empty());
    }

    #[test]
    fn a_storage_url_is_a_secret_when_it_holds_a_password() {
        let with = "[storage]\nurl = \"postgres://p:pw@db/p\"\n";
        assert_eq!(inline_secrets(with), ["storage.url"]);
        assert!(inline_secrets("[storage]\nurl = \"postgres://p@db/p\"\n").is_empty());
        // A subscription's url is an address, not a secret.
        assert!(inline_secrets("[[subscription]]\nurl = \"https://u:pw@x/\"\n").is_empty());
    }

    #[test]
    fn world_and_foreign_group_readers_count_but_posthorns_own_group_does_not() {
        assert_eq!(readable_by_others(0o644, 1, Some(1)), Some("every user"));
        assert_eq!(readable_by_others(0o640, 1, Some(2)), Some("its group"));
        assert_eq!(readable_by_others(0o640, 1, None), Some("its group"));
        assert_eq!(readable_by_others(0o640, 1, Some(1)), None);
        assert_eq!(readable_by_others(0o600, 1, Some(2)), None);
    }

    #[test]
    fn only_a_readable_file_with_secrets_is_warned_about() {
        let path = Path::new("/etc/posthorn/config.toml");
        let keys = vec!["subscription.secret".to_string()];
        let warning = decide(path, &keys, Some("every user")).unwrap();
        assert!(
            warning.starts_with("the config file /etc/posthorn/config.toml holds secrets (subscription.secret) and every user can read it"),
            "{warning}"
        );
        assert_eq!(decide(path, &keys, None), None);
        assert_eq!(decide(path, &[], Some("every user")), None);
    }
}
