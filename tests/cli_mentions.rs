//! Every `posthorn <command>` that a message, the README, the API docs, the example config
//! or the admin page tells the user to run names a command the real binary has: each one
//! is checked with `posthorn <command> [<subcommand>] --help` (exit 0). Mentions are taken
//! from backticks (`posthorn resume north-crm`), from "with: posthorn ..." in messages,
//! and from the README's shell blocks.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files whose text is read, relative to the crate root; directories are walked for
/// `.rs`, `.js` and `.html` files.
const SOURCES: &[&str] = &[
    "README.md",
    "docs/API.md",
    "config.example.toml",
    "src",
    "assets/admin",
];

#[test]
fn every_posthorn_command_a_message_or_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mentions: BTreeSet<(Vec<String>, String)> = BTreeSet::new();
    for source in SOURCES {
        for file in files(&root.join(source)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            // JavaScript's backticks open template literals, not code spans.
            let backticks = !name.ends_with(".js");
            for words in extract(&text, backticks, name.ends_with(".md")) {
                mentions.insert((words, name.clone()));
            }
        }
    }
    // The commands this work added are among them, so the extraction finds what it must.
    let firsts: BTreeSet<&str> = mentions.iter().map(|(w, _)| w[0].as_str()).collect();
    for expected in ["replay", "resume", "resume-all", "verify", "deliveries"] {
        assert!(
            firsts.contains(expected),
            "no mention of `posthorn {expected}` was found; mentions: {firsts:?}"
        );
    }
    let mut checked: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut broken = Vec::new();
    for (words, file) in &mentions {
        let command = command_of(words);
        if !checked.insert(command.clone()) {
            continue;
        }
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, _, stderr) = common::run(&args);
        if code != 0 {
            broken.push(format!(
                "{file}: `posthorn {}` (exit {code}): {}",
                words.join(" "),
                stderr.lines().next().unwrap_or_default()
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "commands named to users that do not exist:\n{}",
        broken.join("\n")
    );
}

/// The command (and subcommand, where the command has them) of a mention: `deliveries
/// show 12` is `deliveries show`; `pause north-crm` is `pause`.
fn command_of(words: &[String]) -> Vec<String> {
    let first = vec![words[0].clone()];
    let (code, help, _) = common::run(&[words[0].as_str(), "--help"]);
    if code != 0 || !help.contains("Commands:") {
        return first;
    }
    match words.get(1) {
        Some(sub) => vec![words[0].clone(), sub.clone()],
        None => first,
    }
}

/// The words after `posthorn` in each command mention of `text`: lower-case words and
/// `a|b` alternatives (each checked), up to the first argument that is not a word.
fn extract(text: &str, backticks: bool, markdown: bool) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    if backticks {
        for (i, _) in text.match_indices("`posthorn ") {
            starts.push(i + "`posthorn ".len());
        }
    }
    for (i, _) in text.match_indices("with: posthorn ") {
        starts.push(i + "with: posthorn ".len());
    }
    if markdown {
        let (mut in_block, mut shell) = (false, false);
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                shell = !in_block && trimmed.starts_with("```sh");
                in_block = !in_block;
            } else if in_block && shell {
                for prefix in ["posthorn ", "./target/release/posthorn ", "-- posthorn "] {
                    for (i, _) in line.match_indices(prefix) {
                        let before = &line[..i];
                        let at_command = before.trim().is_empty()
                            || before.ends_with("sudo -u posthorn ")
                            || before.ends_with("&& ")
                            || prefix != "posthorn ";
                        if at_command {
                            starts.push(offset + i + prefix.len());
                        }
                    }
                }
            }
            offset += line.len();
        }
    }
    for start in starts {
        let rest = &text[start..];
        let mut words: Vec<String> = Vec::new();
        for token in rest.split([' ', '\n', '`', '\\']).take(2) {
            let token = token.trim_end_matches([',', '.', ';', ':', ')']);
            let is_word = |w: &str| {
                !w.is_empty()
                    && w.starts_with(|c: char| c.is_ascii_lowercase())
                    && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            };
            if !token.split('|').all(is_word) {
                break;
            }
            words.push(token.to_string());
        }
        let Some(first) = words.first() else { continue };
        // `a|b` alternatives: one mention each.
        for a in first.split('|') {
            match words.get(1) {
                Some(second) => {
                    for b in second.split('|') {
                        found.push(vec![a.to_string(), b.to_string()]);
                    }
                }
                None => found.push(vec![a.to_string()]),
            }
        }
    }
    found
}

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(path) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "js" || e == "html")
        {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_extraction_finds_commands_and_skips_prose() {
    let text = "run `posthorn resume north-crm`, or `posthorn pause-all|resume-all`; \
                follow it with: posthorn deliveries show 12. posthorn is not running.";
    let found = extract(text, true, false);
    assert_eq!(
        found,
        vec![
            vec!["resume".to_string(), "north-crm".to_string()],
            vec!["pause-all".to_string()],
            vec!["resume-all".to_string()],
            vec!["deliveries".to_string(), "show".to_string()],
        ]
    );
}
