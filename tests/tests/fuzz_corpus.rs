//! Replays every fuzz corpus (`fuzz/corpus/<target>/`) through the function its cargo-fuzz target calls, on
//! stable: the seeds, and the inputs the fuzzers kept, including those that once crashed, so a regression shows
//! up in the ordinary test run without nightly or cargo-fuzz. Each corpus must also still reach the success path:
//! a corpus that only exercises the first error is no longer testing the parser.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of `target`'s corpus; fails naming each input that panicked.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    let mut accepted = 0;
    let mut panicked = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} of {} inputs panicked: {panicked:#?}",
        panicked.len(),
        files.len()
    );
    assert!(
        accepted > 0,
        "{target}: none of the {} inputs is accepted; the corpus lost its valid seeds",
        files.len()
    );
}

#[test]
fn config_corpus() {
    replay("config", outpost_agent::fuzzing::config);
}

#[test]
fn yaml_bundle_corpus() {
    replay("yaml_bundle", outpost_agent::fuzzing::yaml_bundle);
}

#[test]
fn yaml_emit_corpus() {
    replay("yaml_emit", outpost_agent::fuzzing::yaml_emit);
}

#[test]
fn yaml_budget_corpus() {
    replay("yaml_budget", outpost_agent::fuzzing::yaml_budget);
}

#[test]
fn kustomization_corpus() {
    replay("kustomization", outpost_agent::fuzzing::kustomization);
}

#[test]
fn assignment_json_corpus() {
    replay("assignment_json", outpost_agent::fuzzing::assignment_json);
}

#[test]
fn signature_corpus() {
    replay("signature", outpost_proto::fuzzing::signature);
}

#[test]
fn heartbeat_json_corpus() {
    replay("heartbeat_json", outpost_proto::fuzzing::heartbeat_json);
}
