//! The fuzz targets in the normal suite: every seed of `fuzz/corpus/<target>/` is
//! replayed through its target, then random and mutated inputs for a bounded number
//! of cases. This runs on the pinned stable toolchain in bounded time; `cargo fuzz`
//! (fuzz/README.md) runs the same entry points under libFuzzer for as long as one
//! wants. A target panics on a bug: a crash of its parser or a broken round trip.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use zonewarden_profiles::fuzzing::Target;

fn targets() -> Vec<Target> {
    let mut all = Vec::new();
    all.extend(zonewarden_cni::fuzzing::TARGETS);
    all.extend(zonewarden_profiles::fuzzing::TARGETS);
    all.extend(zonewarden_enforcer::fuzzing::TARGETS);
    all
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The seeds of one target, sorted by file name.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the fuzz target {target} has no corpus {}: {e}",
            dir.display()
        )
    });
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("a corpus entry").path())
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "the corpus of {target} is empty");
    seeds
}

#[test]
fn every_fuzz_target_has_a_corpus_and_a_cargo_fuzz_target() {
    let names: BTreeSet<&str> = targets().iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), targets().len(), "target names are unique");
    let dirs: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let named: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(dirs, named, "one corpus folder per target, no stale ones");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in names {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let body = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("no cargo-fuzz target {}: {e}", source.display()));
        assert!(
            body.contains("fuzzing::"),
            "{} calls the shared entry point",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml builds {name}"
        );
    }
}

#[test]
fn every_seed_of_every_fuzz_target_replays() {
    let mut replayed = 0;
    for (name, run) in targets() {
        for (path, bytes) in seeds(name) {
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&bytes)));
            assert!(
                outcome.is_ok(),
                "the fuzz target {name} fails on {}",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= targets().len(), "{replayed} seeds replayed");
}

/// One edit of a seed: overwrite, insert or delete a byte at a position.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let at = |n: usize, len: usize| if len == 0 { 0 } else { n % len };
    match *edit {
        Edit::Set(n, b) if !bytes.is_empty() => {
            let i = at(n, bytes.len());
            bytes[i] = b;
        }
        Edit::Insert(n, b) => {
            let i = at(n, bytes.len() + 1);
            bytes.insert(i, b);
        }
        Edit::Delete(n) if !bytes.is_empty() => {
            let i = at(n, bytes.len());
            bytes.remove(i);
        }
        _ => {}
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Edit::Set(n, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Edit::Insert(n, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(
        which in any::<usize>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let all = targets();
        let (_, run) = all[which % all.len()];
        run(&bytes);
    }

    #[test]
    fn edited_seeds_never_panic(
        which in any::<usize>(),
        seed in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        let all = targets();
        let (name, run) = all[which % all.len()];
        let seeds = seeds(name);
        let mut bytes = seeds[seed % seeds.len()].1.clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        run(&bytes);
    }
}
