//! Replays the committed corpus and regressions through the checks, checks that every
//! seed is accepted, and (ignored) rewrites the seed corpus.

use std::path::{Path, PathBuf};

use crate::{TARGETS, seeds};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_of(target: &str) -> fn(&[u8]) -> bool {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_target_file_and_seeds() {
    let seeds = seeds::all();
    for (target, _) in TARGETS {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
        assert!(seeds.iter().any(|seed| seed.target == *target), "no seed for {target}");
    }
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
    let bins = manifest.matches("[[bin]]").count();
    assert_eq!(bins, TARGETS.len(), "Cargo.toml [[bin]] entries and TARGETS differ");
}

#[test]
fn every_seed_is_accepted_by_its_decoder() {
    for seed in seeds::all() {
        assert!(check_of(seed.target)(&seed.bytes), "{}/{} is refused", seed.target, seed.name);
    }
}

#[test]
fn the_committed_corpus_and_regressions_replay_without_a_panic() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        for kind in ["corpus", "regressions"] {
            for file in files(&fuzz_dir().join(kind).join(target)) {
                let bytes = std::fs::read(&file).expect("a corpus file");
                check(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= TARGETS.len(), "the committed corpus is missing ({replayed} files)");
}

/// Rewrites `corpus/<target>/<name>` from [`seeds::all`]; run it after a format change.
#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn write_seeds() {
    for seed in seeds::all() {
        let dir = fuzz_dir().join("corpus").join(seed.target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(seed.name), &seed.bytes).expect("seed file");
    }
}
