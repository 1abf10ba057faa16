//! The bodies of the cargo-fuzz targets in `fuzz/` that reach the agent's parsers.
//!
//! They live here, not in the fuzz crate, so that the stable corpus replay test (`tests/tests/fuzz_corpus.rs`)
//! runs exactly the code the fuzzer ran without needing nightly or cargo-fuzz: a target is one line calling one
//! of these functions. Each takes arbitrary bytes, must never panic, and panics (with the property named) when a
//! result breaks an invariant the rest of the agent relies on. Each returns whether the input was accepted, so
//! the replay test can check that a corpus still reaches the success path and not only the first error.
//!
//! Not part of the agent's API: nothing outside `fuzz/` and the tests calls it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use outpost_proto::wire;

use crate::bundle::{self, BuildError, Bundle};
use crate::config::{Config, Limits};
use crate::deploy::{self, directory, directory::emit};
use crate::revision::{Entry, RepoFiles, KUSTOMIZATION_NAMES};
use crate::revision::{KustomizationInput, ManifestFile, Manifests};

/// Small enough that a fuzzer reaches the object limit with a few kilobytes of input.
const LIMITS: Limits = Limits {
    max_file_size: 64 * 1024,
    max_objects: 200,
    // Transfers are not fuzzed; these only complete the struct.
    max_pack_size: 1024 * 1024,
    max_repo_size: 1024 * 1024,
};

/// `agent.toml` text -> [`Config`], as `outpost` reads its config file at start and on reload.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match Config::parse(Path::new("/etc/outpost/agent.toml"), text) {
        Ok(config) => {
            for source in &config.sources {
                assert!(
                    config.source(&source.name).is_some(),
                    "source {:?} cannot be found by its name",
                    source.name
                );
                assert!(
                    !source.path.starts_with('/') && !source.path.split('/').any(|p| p == ".."),
                    "source path {:?} is not normalised",
                    source.path
                );
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

/// Manifest files -> [`Bundle`], the reconcile path for a source without a kustomization (YAML and JSON
/// parsing, `kind: List`, identities, the object limit, variable substitution).
///
/// The input is split at NUL bytes into files; a file whose text starts with `{` is named `*.json`, the others
/// `*.yaml`, since the name decides the parser.
pub fn yaml_bundle(data: &[u8]) -> bool {
    let files: Vec<ManifestFile> = data
        .split(|b| *b == 0)
        .enumerate()
        .map(|(i, content)| {
            let ext = if content.first() == Some(&b'{') {
                "json"
            } else {
                "yaml"
            };
            ManifestFile {
                path: format!("manifests/{i:03}.{ext}"),
                content: content.to_vec(),
            }
        })
        .collect();
    let manifests = Manifests {
        files,
        ..Manifests::default()
    };
    check_bundle(bundle::build_revision(&manifests, Some(vars()), &LIMITS))
}

/// One manifest file -> values through the budgeted parser ([`bundle::yaml`]), and the budget's promise checked:
/// whatever it accepts is no deeper than [`bundle::yaml::MAX_DEPTH`], holds no more documents than allowed, and
/// the values built take no more heap than the scan estimated (measured from below, so a parser that expands
/// more than the scan counted, e.g. an alias, fails here), which the budget bounds by the file's size.
pub fn yaml_budget(data: &[u8]) -> bool {
    use bundle::yaml;
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let path = if data.first() == Some(&b'{') {
        "f.json"
    } else {
        "f.yaml"
    };
    let objects_left = 20;
    let budget = yaml::Budget::for_file(text.len(), objects_left);
    let docs = match yaml::parse_documents(path, text, objects_left) {
        Ok(docs) => docs,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return false;
        }
    };
    let rewritten = if path.ends_with(".json") {
        yaml::yaml_printable(text)
    } else {
        bundle::octal_rewrite(text)
    };
    let cost = yaml::scan(path, &rewritten, &budget).expect("what parsed also scans");
    assert!(cost.memory <= budget.max_memory, "accepted over budget");
    assert!(cost.depth <= yaml::MAX_DEPTH, "accepted too deep");
    assert!(
        docs.len() <= objects_left,
        "more documents than objects left"
    );
    let built: usize = docs.iter().map(|d| 32 + heap_of(d)).sum();
    assert!(
        built <= cost.memory,
        "the values take at least {built} bytes, the scan estimated {}",
        cost.memory
    );
    true
}

/// A lower bound of the heap a value owns: string and vector capacities, and the B-tree leaves a map needs.
fn heap_of(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.capacity(),
        Value::Array(items) => items.capacity() * 32 + items.iter().map(heap_of).sum::<usize>(),
        Value::Object(map) => {
            // A leaf holds at most 11 entries of a 24-byte key and a 32-byte value.
            map.len().div_ceil(11) * 11 * 56
                + map
                    .iter()
                    .map(|(k, v)| k.capacity() + heap_of(v))
                    .sum::<usize>()
        }
        _ => 0,
    }
}

/// A small repository -> [`Bundle`] through the kustomize build, as the reconcile path builds a source whose
/// path holds a `kustomization.yaml`.
///
/// The input is a little archive: entries separated by NUL bytes, each `path\ncontent`. A header line
/// `path -> target` makes a symlink. An entry named `ROOT` holds the folder to build (default: the repository
/// root), like the `ROOT` file of the fixtures under `tests/fixtures/kustomize/`. Paths that no Git tree can
/// hold (empty, absolute, with `.` or `..` parts) are skipped. Without any kustomization file there is nothing
/// to build and the input is ignored.
pub fn kustomization(data: &[u8]) -> bool {
    let mut files = RepoFiles::new(&LIMITS);
    let mut root = String::new();
    for entry in data.split(|b| *b == 0) {
        let (header, content) = match entry.iter().position(|b| *b == b'\n') {
            Some(at) => (&entry[..at], &entry[at + 1..]),
            None => (entry, &[][..]),
        };
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        if header == "ROOT" {
            root = String::from_utf8_lossy(content).trim().to_string();
            continue;
        }
        let (path, link) = match header.split_once(" -> ") {
            Some((path, target)) => (path, Some(target)),
            None => (header, None),
        };
        if !is_repo_path(path) {
            continue;
        }
        let entry = match link {
            Some(target) => Entry::Link(target.to_string()),
            None if content.len() as u64 > files.max_file_size() => {
                Entry::TooBig(content.len() as u64)
            }
            None => Entry::File(content.to_vec()),
        };
        files.insert(path, entry);
    }
    if !is_repo_path(&root) && !root.is_empty() {
        return false;
    }
    let has_kustomization = KUSTOMIZATION_NAMES.iter().any(|name| {
        let path = if root.is_empty() {
            (*name).to_string()
        } else {
            format!("{root}/{name}")
        };
        matches!(files.get(&path), Some(Entry::File(_)))
    });
    if !has_kustomization {
        return false;
    }
    let manifests = Manifests {
        kustomization: Some(KustomizationInput { files, root }),
        ..Manifests::default()
    };
    check_bundle(bundle::build_revision(&manifests, Some(vars()), &LIMITS))
}

/// `outpost.assignment/v1` body -> [`wire::Assignment`] -> sources merged into a config, as the agent does
/// with the hub's (verified) reply.
pub fn assignment_json(data: &[u8]) -> bool {
    let Ok(assignment) = wire::parse_assignment(data) else {
        return false;
    };
    let body = assignment
        .to_body()
        .expect("an assignment that validated serialises");
    let again = wire::parse_assignment(&body).expect("a serialised assignment parses again");
    assert_eq!(again, assignment, "assignment changed in a round trip");

    let base = base_config();
    let Ok(merged) = base.with_assignment(&assignment) else {
        return false;
    };
    assert_eq!(merged.assignment_generation, assignment.generation);
    assert_eq!(
        merged.sources.len(),
        base.sources.len() + assignment.sources.len(),
        "every assigned source is added beside the file's"
    );
    let names: Vec<&str> = assignment.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(merged.assigned_sources, names);
    // The next assignment replaces this one: merging onto the merged config must give the same sources.
    let remerged = merged
        .with_assignment(&assignment)
        .expect("an accepted assignment is accepted again over itself");
    assert_eq!(remerged.assigned_sources, merged.assigned_sources);
    assert_eq!(remerged.sources.len(), merged.sources.len());
    true
}

/// A site config with one source of its own, so an assignment can clash with it.
fn base_config() -> &'static Config {
    static BASE: OnceLock<Config> = OnceLock::new();
    BASE.get_or_init(|| {
        let text = r#"
[agent]
id = "store-042"
state_dir = "/var/lib/outpost"

[[source]]
name = "local"
url = "https://git.example.com/site.git"
branch = "main"
target = "directory:/srv/outpost"
"#;
        Config::parse(Path::new("/etc/outpost/agent.toml"), text).expect("the base config is valid")
    })
}

fn vars() -> &'static BTreeMap<String, String> {
    static VARS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    VARS.get_or_init(|| {
        [
            ("OUTPOST_AGENT_ID", "store-042"),
            ("OUTPOST_SOURCE", "platform"),
            ("replicas", "3"),
            ("region", "eu-west"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    })
}

/// What a target relies on in a bundle: within the object limit, every object with an identity, no identity
/// twice, and the digest the bundle's content gives.
fn check_bundle(result: Result<Bundle, BuildError>) -> bool {
    match result {
        Ok(bundle) => {
            assert!(!bundle.objects.is_empty(), "an empty bundle was accepted");
            assert!(bundle.objects.len() <= LIMITS.max_objects, "object limit");
            let mut seen = std::collections::BTreeSet::new();
            for object in &bundle.objects {
                let id = bundle::identity(object).expect("every object has an identity");
                assert!(seen.insert(id.clone()), "{id} is in the bundle twice");
            }
            assert_eq!(bundle.digest, bundle::digest_of(&bundle.objects));
            check_written(&bundle);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

/// The directory target's file for an accepted bundle reads back as exactly its objects (with our labels).
fn check_written(bundle: &Bundle) {
    let text = directory::render("fuzz", "0123abc", bundle);
    let mut read = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document)
            .unwrap_or_else(|e| panic!("the written file does not read back: {e}\n{text}"));
        read.push(value);
    }
    let mut written: Vec<serde_json::Value> = bundle
        .objects
        .iter()
        .filter(|o| deploy::apply_policy(o) != Some("ignore"))
        .map(|o| deploy::mark_owned(o, "fuzz", "0123abc"))
        .collect();
    // The file is in apply order, the bundle in the repository's: compare as sets of documents.
    let key = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    written.sort_by_key(key);
    read.sort_by_key(key);
    assert_eq!(read, written, "the written file reads back differently");
}

/// Random string maps -> the directory target's YAML emitter -> serde_yaml_ng, which must give back exactly
/// the same value.
///
/// The input is split at 0xFF bytes (never part of UTF-8) into fields, each read as UTF-8 with invalid bytes
/// replaced. Fields pair up into the keys and values of a map; the same fields also go in as a list of strings,
/// and as numbers where they parse as one, so the float and integer forms are reached too. Always accepted.
pub fn yaml_emit(data: &[u8]) -> bool {
    let value = yaml_emit_value(data);
    let text = emit::document(&value);
    let back: serde_json::Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{text}"));
    assert_eq!(back, value, "emitted YAML reads back differently:\n{text}");
    true
}

/// The value [`yaml_emit`] writes for an input (the end-to-end suite reads the same values back with PyYAML).
pub fn yaml_emit_value(data: &[u8]) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let fields: Vec<String> = data
        .split(|b| *b == 0xff)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let mut map = Map::new();
    for pair in fields.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        map.insert(pair[0].clone(), Value::String(value));
    }
    let numbers: Vec<Value> = fields
        .iter()
        .filter_map(|f| {
            if let Ok(i) = f.parse::<i64>() {
                Some(json!(i))
            } else if let Ok(u) = f.parse::<u64>() {
                Some(json!(u))
            } else {
                f.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(|x| json!(x))
            }
        })
        .collect();
    json!({"map": map, "list": fields, "numbers": numbers, "nested": [{"in": [map]}]})
}

/// A path a Git tree can hold, relative to the repository root.
fn is_repo_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|p| !matches!(p, "" | "." | ".."))
}
