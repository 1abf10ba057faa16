//! The layers of `agent/src`, enforced: the module map at the top of `lib.rs` lists every module in layer order,
//! and a module may use only the modules listed below it. Every `crate::` path in every source file is read
//! (not only `use` lines), so an inline `crate::daemon::x()` climbing up is caught too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The modules of the map, top layer first: lines `//! - [`name`]: ...` in lib.rs's header.
fn module_map(lib: &str) -> Vec<String> {
    lib.lines()
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split_once("`]"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The modules lib.rs declares, in order.
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`deploy/kube/apply.rs` -> `deploy`); `None` for lib.rs and main.rs.
fn owner(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(SRC).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if rel.components().count() == 1 {
        let stem = first.trim_end_matches(".rs").to_string();
        return (stem != "lib" && stem != "main").then_some(stem);
    }
    Some(first)
}

/// Every module named by a `crate::NAME` path in code (comments are skipped), with the line it is on.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `outpost_crate::` or similar, not ours
            }
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                inner
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
                    .to_string()]
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                found.push((number + 1, name));
            }
        }
    }
    found
}

#[test]
fn the_module_map_lists_every_module_once() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let map = module_map(&lib);
    let mut declared = declared(&lib);
    assert!(map.len() > 10, "the module map was not found in lib.rs");
    let mut sorted_map = map.clone();
    sorted_map.sort();
    sorted_map.dedup();
    assert_eq!(
        sorted_map.len(),
        map.len(),
        "a module is listed twice: {map:?}"
    );
    declared.sort();
    assert_eq!(
        sorted_map, declared,
        "lib.rs's module map and its `mod` lines differ"
    );
}

#[test]
fn imports_only_go_down_the_layers() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let map = module_map(&lib);
    let layer: BTreeMap<&str, usize> = map
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    files.sort();
    let mut climbs = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = owner(file) else { continue };
        let Some(&own) = layer.get(module.as_str()) else {
            climbs.push(format!(
                "{}: module {module} is not in the map",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used) in crate_paths(&text) {
            checked += 1;
            if used == module || used == "self" || used == "super" {
                continue;
            }
            match layer.get(used.as_str()) {
                // Items of lib.rs itself (install_crypto_provider) sit under every module.
                None => {}
                Some(&theirs) if theirs > own => {}
                Some(_) => climbs.push(format!(
                    "{}:{line}: {module} uses crate::{used}, which is listed above it",
                    file.display()
                )),
            }
        }
    }
    assert!(
        checked > 100,
        "too few crate:: paths read ({checked}): is the parser broken?"
    );
    assert!(
        climbs.is_empty(),
        "imports that climb up:\n{}",
        climbs.join("\n")
    );
}

#[test]
fn the_parser_sees_grouped_and_inline_paths() {
    let found = crate_paths(
        "use crate::{config::Config, store};\nlet x = crate::daemon::run(); // crate::ignored\n",
    );
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["config", "store", "daemon"]);
}
