//! A subscription's `format`, `template`, `template_file` and `content_type`: which body
//! it sends (see `crate::format`). Templates are compiled here, once per config load,
//! and every format is rendered against a sample event so a template that fails is
//! reported at its key before the config is accepted.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use crate::format::{self, Format, Template, Tool, MAX_TEMPLATE_BYTES};
use crate::routing::Pattern;

/// `format = "..."` as written.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum FormatName {
    Envelope,
    Slack,
    Discord,
    Teams,
    Matrix,
    Mattermost,
    Ntfy,
}

/// The keys of one subscription that choose its body.
pub(super) struct RawFormat {
    pub format: Option<Spanned<FormatName>>,
    pub template: Option<Spanned<String>>,
    pub template_file: Option<Spanned<PathBuf>>,
    pub content_type: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// Resolves and checks the body format of a subscription sending to `url` and taking
    /// `events`; `at` locates problems that belong to no single key.
    pub(super) fn format(
        &mut self,
        raw: RawFormat,
        url: &str,
        events: &[Pattern],
        label: &str,
    ) -> Format {
        if let (Some(format), true) = (
            &raw.format,
            raw.template.is_some() || raw.template_file.is_some(),
        ) {
            self.problem(
                format.span(),
                format!("{label}: set either format or a template (template or template_file), not both"),
            );
            return Format::Envelope;
        }
        if let (Some(inline), Some(_)) = (&raw.template, &raw.template_file) {
            self.problem(
                inline.span(),
                format!("{label}: set only one of template and template_file"),
            );
            return Format::Envelope;
        }
        if let (Some(content_type), None, None) =
            (&raw.content_type, &raw.template, &raw.template_file)
        {
            self.problem(
                content_type.span(),
                format!(
                    "{label}: content_type applies to a template (template or template_file) only"
                ),
            );
        }
        let resolved = match (&raw.format, &raw.template, &raw.template_file) {
            (Some(name), _, _) => {
                let span = name.span();
                let format = match name.get_ref() {
                    FormatName::Envelope => Format::Envelope,
                    FormatName::Slack => Format::Chat(Tool::Slack),
                    FormatName::Discord => Format::Chat(Tool::Discord),
                    FormatName::Teams => Format::Chat(Tool::Teams),
                    FormatName::Matrix => Format::Chat(Tool::Matrix),
                    FormatName::Mattermost => Format::Chat(Tool::Mattermost),
                    FormatName::Ntfy => match format::ntfy_target(url) {
                        Ok((topic, publish_url)) => Format::Ntfy { topic, publish_url },
                        Err(message) => {
                            self.problem(span, format!("{label}: format = \"ntfy\": {message}"));
                            return Format::Envelope;
                        }
                    },
                };
                (format, span, "format")
            }
            (None, Some(inline), None) => {
                let Some(template) = self.template(
                    inline.get_ref().clone(),
                    &raw,
                    inline.span(),
                    label,
                    "template",
                ) else {
                    return Format::Envelope;
                };
                (template, inline.span(), "template")
            }
            (None, None, Some(file)) => {
                let path = self.base.join(file.get_ref());
                let source = match read_template_file(&path) {
                    Ok(source) => source,
                    Err(err) => {
                        self.problem(
                            file.span(),
                            format!(
                                "{label}: while reading template_file {}: {err}",
                                path.display()
                            ),
                        );
                        return Format::Envelope;
                    }
                };
                let key = format!("template_file {}", path.display());
                let Some(template) = self.template(source, &raw, file.span(), label, &key) else {
                    return Format::Envelope;
                };
                (template, file.span(), "template_file")
            }
            _ => return Format::Envelope,
        };
        let (format, span, key) = resolved;
        if let Err(message) = format::check(&format, events) {
            self.problem(span, format!("{label}: {key}: {message}"));
        }
        format
    }

    fn template(
        &mut self,
        source: String,
        raw: &RawFormat,
        span: std::ops::Range<usize>,
        label: &str,
        key: &str,
    ) -> Option<Format> {
        let content_type = match &raw.content_type {
            Some(ct) if !is_content_type(ct.get_ref()) => {
                self.problem(
                    ct.span(),
                    format!("{label}: content_type {:?} is not a media type like \"text/plain\" or \"application/json\"", ct.get_ref()),
                );
                return None;
            }
            Some(ct) => ct.get_ref().clone(),
            None => format::JSON.to_string(),
        };
        match Template::compile(source, content_type) {
            Ok(template) => Some(Format::Template(std::sync::Arc::new(template))),
            Err(err) => {
                self.problem(span, format!("{label}: {key} does not compile: {err}"));
                None
            }
        }
    }
}

/// `type/subtype` with optional parameters, no control characters (it becomes a header).
fn is_content_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(essence.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
        && super::validate::is_header_value(text)
}

/// Reads a template file like a secret file: a regular file, bounded in size, UTF-8.
fn read_template_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read as _};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_TEMPLATE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("over {} KiB", MAX_TEMPLATE_BYTES >> 10),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;
    use crate::format::Format;

    fn config(extra: &str) -> String {
        format!(
            "[[subscription]]\nname = \"s\"\nurl = \"https://example.org/hook\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}"
        )
    }

    fn errors(extra: &str) -> String {
        parse(&config(extra), Path::new("/tmp/c.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn formats_resolve() {
        let c = parse(&config("format = \"slack\"\n"), Path::new("/tmp/c.toml")).unwrap();
        assert_eq!(c.subscriptions[0].format.name(), "slack");
        let c = parse(&config(""), Path::new("/tmp/c.toml")).unwrap();
        assert_eq!(c.subscriptions[0].format, Format::Envelope);
    }

    #[test]
    fn an_unknown_format_is_located() {
        let err = errors("format = \"irc\"\n");
        assert!(err.contains("c.toml:7:"), "{err}");
        assert!(err.contains("slack"), "{err}");
    }

    #[test]
    fn a_template_failing_on_the_sample_is_located_at_its_key() {
        let err = errors("template = \"{{ data.nope.deeper }}\"\n");
        assert!(err.contains("c.toml:7:12"), "{err}");
        assert!(err.contains("sample"), "{err}");
        let err = errors("template = \"{% if %}\"\n");
        assert!(
            err.contains("c.toml:7:12") && err.contains("does not compile"),
            "{err}"
        );
    }

    #[test]
    fn a_json_template_must_produce_json_for_the_sample() {
        let err = errors("template = \"text: {{ id }}\"\n");
        assert!(err.contains("not JSON"), "{err}");
        parse(
            &config("template = \"text: {{ id }}\"\ncontent_type = \"text/plain\"\n"),
            Path::new("/tmp/c.toml"),
        )
        .unwrap();
    }

    #[test]
    fn format_and_template_exclude_each_other() {
        let err = errors("format = \"slack\"\ntemplate = \"{}\"\n");
        assert!(err.contains("not both"), "{err}");
        let err = errors("content_type = \"text/plain\"\n");
        assert!(err.contains("applies to a template"), "{err}");
    }

    #[test]
    fn ntfy_needs_a_topic_url() {
        let err = parse(
            &config("format = \"ntfy\"\n")
                .replace("https://example.org/hook", "https://ntfy.example.org/"),
            Path::new("/tmp/c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no topic"), "{err}");
    }
}
