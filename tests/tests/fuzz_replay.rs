//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/*)
//! through the same target bodies the libFuzzer binaries run
//! (fuzz/src/lib.rs), on stable, as part of `cargo test`: a regression
//! check that what once crashed, or once reached deep, still behaves.
//! The libFuzzer runs themselves are in scripts/test (nightly) and
//! docs/RELIABILITY.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/lib.rs"]
mod bodies;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("corpus")
        .join(target)
}

#[test]
fn every_target_has_a_binary_and_a_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, _) in bodies::TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .exists(),
            "fuzz_targets/{name}.rs is missing"
        );
        let n = std::fs::read_dir(corpus_dir(name)).unwrap().count();
        assert!(n > 0, "corpus/{name} is empty");
    }
    let binaries = std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .count();
    assert_eq!(binaries, bodies::TARGETS.len(), "a binary without a body");
}

#[test]
fn corpora_replay_without_failure() {
    let mut total = 0;
    for (name, body) in bodies::TARGETS {
        let mut files: Vec<_> = std::fs::read_dir(corpus_dir(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{name}: {} fails", f.display());
        }
        total += files.len();
        println!("{name}: {} inputs replayed", files.len());
    }
    assert!(total > 0);
}

#[test]
fn seeds_reach_past_authentication() {
    // The fixed keys in the bodies are the vectors' keys: the vector's first
    // ratchet message decrypts, its sealed envelope opens. Without this the
    // corpora would only exercise the refusal paths.
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/ratchet.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let first = doc["messages"][0]["message"].as_str().unwrap();
    let mut s = bodies::responder();
    assert!(s.decrypt(&hexd(first)).is_ok());
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/sealed.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let env =
        northstar_core::sealed::Envelope::decode(&hexd(doc["ratchet_envelope"].as_str().unwrap()))
            .unwrap();
    assert!(northstar_core::sealed::open(bodies::mailbox(), &env).is_ok());
}

fn hexd(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
