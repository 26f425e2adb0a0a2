//! The fuzz campaign's corpus, replayed without fuzzing: every file committed under
//! `fuzz/corpus/<target>/` (and every crash kept as a regression under
//! `fuzz/regressions/<target>/`) goes through its target's function, which must not panic.
//! CI does not fuzz (a sanitizer rebuild is too slow for it); this is how it checks that
//! what the fuzzer once found still passes.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_committed_corpus_file_replays_through_its_target() {
    let root = fuzz_dir();
    let mut replayed = 0;
    for (name, target) in keyfort::fuzzing::TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty: run the target and commit its minimised corpus");
        for file in corpus.iter().chain(files(&root.join("regressions").join(name)).iter()) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panics on {}", file.display());
            replayed += 1;
        }
    }
    assert!(replayed >= keyfort::fuzzing::TARGETS.len());
}

/// The fuzz crate's targets, the corpus directories and [`keyfort::fuzzing::TARGETS`] name
/// the same targets: none is fuzzed without being replayed, or replayed without a target.
#[test]
fn every_fuzz_target_has_an_entry_point_and_a_corpus() {
    let root = fuzz_dir();
    let mut listed: Vec<&str> = keyfort::fuzzing::TARGETS.iter().map(|(name, _)| *name).collect();
    listed.sort();
    let stems = |dir: &Path, strip: &str| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(strip).to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(stems(&root.join("fuzz_targets"), ".rs"), listed, "fuzz/fuzz_targets");
    assert_eq!(stems(&root.join("corpus"), ""), listed, "fuzz/corpus");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for name in &listed {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
    }
}
