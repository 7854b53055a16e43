//! A subscription's `filter`, `include` and `exclude` as written, and their checks: every
//! path is a JSON pointer, every condition has a test that fits its value, and numbers
//! are read from the config text itself so `gte = 0.1` means exactly 0.1.

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use crate::routing::Pattern;
use crate::shape::{Comparison, Condition, Decimal, Path, Scalar, Segment, Shaping, Test};

/// One `filter` entry: `{ path = "/data/language", equals = "nl-NL" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    path: Spanned<String>,
    equals: Option<Spanned<toml::Value>>,
    #[serde(rename = "in")]
    one_of: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    contains: Option<Spanned<toml::Value>>,
    glob: Option<Spanned<String>>,
    exists: Option<Spanned<bool>>,
    gt: Option<Spanned<toml::Value>>,
    gte: Option<Spanned<toml::Value>>,
    lt: Option<Spanned<toml::Value>>,
    lte: Option<Spanned<toml::Value>>,
}

/// The raw keys of one subscription that make its [`Shaping`].
pub(super) struct RawShaping {
    pub filter: Option<Vec<Spanned<RawCondition>>>,
    pub include: Option<Vec<Spanned<String>>>,
    pub exclude: Option<Vec<Spanned<String>>>,
}

impl Validator<'_> {
    pub(super) fn shaping(&mut self, raw: RawShaping, label: &str) -> Shaping {
        let filter = raw
            .filter
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| self.condition(c, label))
            .collect();
        let include = self.projection(raw.include, label, "include");
        let exclude = self.projection(raw.exclude, label, "exclude");
        Shaping::new(filter, include, exclude)
    }

    fn projection(
        &mut self,
        raw: Option<Vec<Spanned<String>>>,
        label: &str,
        key: &str,
    ) -> Vec<Path> {
        let mut paths = Vec::new();
        for text in raw.unwrap_or_default() {
            match Path::parse(text.get_ref(), true) {
                Ok(path)
                    if path.segments.len() >= 2
                        && path.segments[0] == Segment::Name("data".into()) =>
                {
                    paths.push(path)
                }
                Ok(_) => self.problem(
                    text.span(),
                    format!(
                        "{label}: {key} path {:?} must point inside data, like \
                         \"/data/summary\" (the envelope is always sent)",
                        text.get_ref()
                    ),
                ),
                Err(why) => self.problem(text.span(), format!("{label}: {key}: {why}")),
            }
        }
        paths
    }

    fn condition(&mut self, raw: Spanned<RawCondition>, label: &str) -> Option<Condition> {
        let span = raw.span();
        let raw = raw.into_inner();
        let before = self.problems.len();
        let label = format!("{label}: filter on {:?}", raw.path.get_ref());
        let path = match Path::parse(raw.path.get_ref(), false) {
            Ok(path) if path.segments.contains(&Segment::Name("*".into())) => {
                self.problem(
                    raw.path.span(),
                    format!(
                        "{label}: '*' is a wildcard only in include and exclude; a filter \
                         reads one field (use contains to look into an array)"
                    ),
                );
                None
            }
            Ok(path) => Some(path),
            Err(why) => {
                self.problem(raw.path.span(), format!("{label}: {why}"));
                None
            }
        };
        let mut tests = Vec::new();
        if let Some(value) = raw.equals {
            tests.extend(self.scalar(&value, &label, "equals").map(Test::Equals));
        }
        if let Some(values) = raw.one_of {
            if values.get_ref().is_empty() {
                self.problem(values.span(), format!("{label}: in is empty; list values"));
            }
            let scalars: Vec<Scalar> = values
                .get_ref()
                .iter()
                .filter_map(|v| self.scalar(v, &label, "in"))
                .collect();
            tests.push(Test::In(scalars));
        }
        if let Some(value) = raw.contains {
            tests.extend(self.scalar(&value, &label, "contains").map(Test::Contains));
        }
        if let Some(glob) = raw.glob {
            if glob.get_ref().is_empty() {
                self.problem(glob.span(), format!("{label}: glob is empty"));
            }
            tests.push(Test::Glob(Pattern::new(glob.into_inner())));
        }
        let exists = raw.exists.map(|e| (*e.get_ref(), e.span()));
        if let Some((wanted, _)) = exists {
            tests.push(Test::Exists(wanted));
        }
        for (value, op, key) in [
            (raw.gt, Comparison::Gt, "gt"),
            (raw.gte, Comparison::Gte, "gte"),
            (raw.lt, Comparison::Lt, "lt"),
            (raw.lte, Comparison::Lte, "lte"),
        ] {
            if let Some(value) = value {
                tests.extend(
                    self.number(&value, &label, key)
                        .map(|n| Test::Compare(op, n)),
                );
            }
        }
        match exists {
            Some((false, exists_span)) if tests.len() > 1 => self.problem(
                exists_span,
                format!(
                    "{label}: exists = false cannot be combined with another test \
                     (an absent field has no value to compare)"
                ),
            ),
            _ => {}
        }
        if tests.is_empty() && self.problems.len() == before {
            self.problem(
                span,
                format!(
                    "{label} has no test; give one of equals, in, contains, glob, exists, \
                     gt, gte, lt, lte"
                ),
            );
        }
        (self.problems.len() == before).then_some(Condition { path: path?, tests })
    }

    fn scalar(&mut self, value: &Spanned<toml::Value>, label: &str, key: &str) -> Option<Scalar> {
        match value.get_ref() {
            toml::Value::String(s) => Some(Scalar::String(s.clone())),
            toml::Value::Boolean(b) => Some(Scalar::Bool(*b)),
            toml::Value::Integer(_) | toml::Value::Float(_) => {
                self.number(value, label, key).map(Scalar::Number)
            }
            _ => {
                self.problem(
                    value.span(),
                    format!("{label}: {key} takes a string, a number or true/false"),
                );
                None
            }
        }
    }

    /// A number as the config text writes it (so no digit is lost to `f64`), or a string
    /// holding a JSON number for values past TOML's 64-bit integers.
    fn number(&mut self, value: &Spanned<toml::Value>, label: &str, key: &str) -> Option<Decimal> {
        let written = self
            .text
            .get(value.span())
            .unwrap_or_default()
            .replace('_', "");
        let parsed = match value.get_ref() {
            toml::Value::Integer(i) => Decimal::parse(&i.to_string()),
            toml::Value::Float(f) if f.is_finite() => {
                Decimal::parse(&written).or_else(|| Decimal::parse(&f.to_string()))
            }
            toml::Value::String(s) => Decimal::parse(s.trim()),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                value.span(),
                format!(
                    "{label}: {key} takes a finite number, like 0.5 or 100 (or a string such \
                     as \"12345678901234567890\" for a number past 64-bit integers)"
                ),
            );
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path as FsPath;

    use crate::shape::{Comparison, Decimal, Scalar, Test};

    const HEAD: &str = "[[subscription]]\nname = \"crm\"\nurl = \"https://crm.example.org/h\"\n\
                        secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
                        conversations = [\"*\"]\nevents = [\"*\"]\n";

    fn parse(extra: &str) -> Result<crate::config::Config, String> {
        crate::config::parse(
            &format!("{HEAD}{extra}\n"),
            FsPath::new("/etc/p/config.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn every_test_parses_and_numbers_keep_their_written_digits() {
        let config = parse(
            r#"filter = [
  { path = "/data/language", equals = "nl-NL" },
  { path = "/data/tags", contains = "urgent" },
  { path = "/data/score", gte = 0.1, lt = 1_000 },
  { path = "/data/big", gt = "12345678901234567890" },
  { path = "/data/kind", in = ["summary", "brief", 3, true] },
  { path = "/data/title", glob = "North*" },
  { path = "/data/email", exists = false },
  { path = "/data/tiny", gt = 0.10000000000000000001 },
]
include = ["/data/summary", "/data/participants/*/name"]
exclude = ["/data/participants/*/email"]"#,
        )
        .unwrap();
        let shaping = &config.subscriptions[0].shaping;
        assert_eq!(shaping.filter.len(), 8);
        // Past what an f64 holds: still the number written.
        assert_eq!(
            shaping.filter[7].tests,
            [Test::Compare(
                Comparison::Gt,
                Decimal::parse("0.10000000000000000001").unwrap()
            )]
        );
        assert_eq!(
            shaping.filter[2].tests,
            [
                // 0.1 as written, not the f64 nearest to it.
                Test::Compare(Comparison::Gte, Decimal::parse("0.1").unwrap()),
                Test::Compare(Comparison::Lt, Decimal::parse("1000").unwrap()),
            ]
        );
        assert_eq!(
            shaping.filter[4].tests,
            [Test::In(vec![
                Scalar::String("summary".into()),
                Scalar::String("brief".into()),
                Scalar::Number(Decimal::parse("3").unwrap()),
                Scalar::Bool(true),
            ])]
        );
        assert_eq!(shaping.include.len(), 2);
        assert_eq!(shaping.exclude[0].text, "/data/participants/*/email");
    }

    /// The admin page's config block shows the shaping keys, and they read back the same.
    #[test]
    fn the_shown_toml_reads_back_as_the_same_shaping() {
        let config = parse(
            r#"filter = [{ path = "/data/a~1b", equals = "x\"y" }, { path = "/data/n", gte = "1e400", gt = 0.10000000000000000001, lt = "12345678901234567890.5", lte = 12 }, { path = "/data/k", in = [1, "s", false], exists = true }, { path = "/data/t", glob = "N*", contains = 0.5 }]
include = ["/data/summary", "/data/p/*/name"]
exclude = ["/data/p/*/email"]"#,
        )
        .unwrap();
        let shaping = &config.subscriptions[0].shaping;
        let shown = shaping.toml_lines().join("\n");
        let again = parse(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
        assert_eq!(&again.subscriptions[0].shaping, shaping, "{shown}");
        assert!(crate::snippets::toml_block(&config.subscriptions[0]).contains("exclude = "));
    }

    /// Each bad entry is reported at its own line and column.
    #[test]
    fn bad_filters_and_paths_are_located() {
        let cases = [
            (
                "filter = [{ path = \"data/x\", equals = 1 }]",
                7,
                20,
                "must start with '/'",
            ),
            ("filter = [{ path = \"/data/x\" }]", 7, 11, "has no test"),
            (
                "filter = [{ path = \"/data/x\", gte = \"high\" }]",
                7,
                37,
                "finite number",
            ),
            (
                "filter = [{ path = \"/data/x\", gte = inf }]",
                7,
                37,
                "finite number",
            ),
            (
                "filter = [{ path = \"/data/x\", equals = [1] }]",
                7,
                40,
                "string, a number",
            ),
            (
                "filter = [{ path = \"/data/x\", in = [] }]",
                7,
                36,
                "in is empty",
            ),
            (
                "filter = [{ path = \"/data/*/x\", exists = true }]",
                7,
                20,
                "wildcard only",
            ),
            (
                "filter = [{ path = \"/data/x\", exists = false, equals = 1 }]",
                7,
                40,
                "exists = false",
            ),
            (
                "filter = [{ path = \"/data/x\", equal = 1 }]",
                7,
                31,
                "unknown field",
            ),
            ("include = [\"/type\"]", 7, 12, "inside data"),
            ("exclude = [\"/data\"]", 7, 12, "inside data"),
            ("exclude = [\"/data/a~x\"]", 7, 12, "~0"),
        ];
        for (extra, line, column, words) in cases {
            let err = parse(extra).expect_err(extra);
            let at = format!("/etc/p/config.toml:{line}:{column}: ");
            assert!(err.starts_with(&at), "{extra}: expected {at}..., got {err}");
            assert!(err.contains(words), "{extra}: expected {words:?} in {err}");
        }
    }
}
