//! Replays every file of every fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! `posthorn::fuzzing` entry point the fuzz target calls, on stable: an input the fuzzer
//! once crashed on, added to its corpus, stays a regression test here.

use std::fs;
use std::panic;
use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("envelope", posthorn::fuzzing::envelope),
    ("ndjson", posthorn::fuzzing::ndjson),
    ("echo_canonical", posthorn::fuzzing::echo_canonical),
    ("generic", posthorn::fuzzing::generic),
    ("config", posthorn::fuzzing::config),
];

#[test]
fn every_fuzz_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut dirs: Vec<String> = fs::read_dir(&root)
        .unwrap_or_else(|err| panic!("{}: {err}", root.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    known.sort();
    assert_eq!(dirs, known, "every fuzz target has a corpus, replayed here");

    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let input = fs::read(&file).unwrap();
            if panic::catch_unwind(|| target(&input)).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus files fail their target:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
