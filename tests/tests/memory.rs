//! Memory is bounded by file size, whatever the YAML: the real `outpost sync` (directory target, real Git
//! repository) on each hostile shape that once took 84-168 MiB stays under the bound README "Memory" states,
//! measured as the child's peak RSS (`ru_maxrss` from `wait4`). Each hostile commit is refused and the last good
//! revision stays; a large honest file is applied within the same bound.

mod common;

use std::process::Stdio;

use common::{configmap, Site};
use outpost_tests::GitRepo;

/// README "Memory": parsing a manifest file of S bytes may take 32 S + 1 MiB of values (the parser's budget,
/// estimated from above); a sync holds one object twice while it writes it out, and the file's text a few
/// times (Git object, the octal rewrite, the rendered target file): at most 56 S + 2 MiB over a sync of a small
/// revision.
fn bound_kib(file_bytes: usize) -> u64 {
    ((56 * file_bytes + 2 * 1024 * 1024) / 1024) as u64
}

/// Runs `outpost sync` and returns (success, peak RSS in KiB, stdout).
fn sync_peak(site: &Site) -> (bool, u64, String) {
    site.write_config();
    let out = site.dir.path().join("sync.out");
    let (ok, peak) = outpost_tests::support::run_peak_rss(
        site.command(&["sync"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null()),
    );
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (ok, peak, text)
}

struct Shape {
    name: &'static str,
    text: String,
    /// What the refusal says; `None` when the file is honest and must be applied.
    refused_with: Option<&'static str>,
}

fn shapes() -> Vec<Shape> {
    let head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hostile\n";
    let mut tiny = String::new();
    for i in 0..60_000 {
        tiny.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"
        ));
    }
    let mut honest = String::new();
    for i in 0..2_000 {
        honest.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h{i}\n  labels: {{app: web, tier: cache}}\ndata:\n  index: \"{i}\"\n  body: \"{}\"\n",
            "x".repeat(400)
        ));
    }
    vec![
        Shape {
            name: "1 MB of empty flow mappings",
            text: format!("{head}data:\n  a: [{}]\n", vec!["{}"; 350_000].join(",")),
            refused_with: Some("would take more than"),
        },
        Shape {
            name: "2 MB of nested [",
            text: format!("{head}data:\n  a: {}\n", "[".repeat(2_000_000)),
            refused_with: Some("nested more than 128 levels"),
        },
        Shape {
            name: "60,000 tiny ConfigMaps",
            text: tiny,
            refused_with: Some("more than 10000 objects"),
        },
        Shape {
            name: "a 500 KB value repeated 1,000 times by aliases",
            text: format!(
                "{head}data:\n  a: &a \"{}\"\n  b: [{}]\n",
                "x".repeat(500_000),
                vec!["*a"; 1000].join(", ")
            ),
            refused_with: Some("aliases expanded"),
        },
        Shape {
            // Just inside the budget: the costliest shape a file may have, as B-tree leaves fill.
            name: "1 MB of 24-key flow mappings",
            text: {
                let keys: Vec<String> = ('a'..='x').map(|k| format!("{k}: 1")).collect();
                let map = format!("{{{}}}", keys.join(", "));
                format!("{head}data:\n  a: [{}]\n", vec![map; 7_000].join(", "))
            },
            refused_with: None,
        },
        Shape {
            name: "2,000 honest ConfigMaps",
            text: honest,
            refused_with: None,
        },
    ]
}

#[test]
fn hostile_yaml_stays_within_the_memory_bound() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "good").as_bytes());
    let mut good = repo.commit("good");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let (ok, baseline, out) = sync_peak(&site);
    assert!(ok, "{out}");

    // Every shape is measured before anything is asserted, so a failure shows all the figures.
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for shape in shapes() {
        repo.write("deploy/hostile.yaml", shape.text.as_bytes());
        let revision = repo.commit(shape.name);
        let (ok, peak, out) = sync_peak(&site);
        let bound = baseline + bound_kib(shape.text.len());
        report.push(format!(
            "{}: {} bytes, peak RSS {:.1} MiB (bound {:.1} MiB)",
            shape.name,
            shape.text.len(),
            peak as f64 / 1024.0,
            bound as f64 / 1024.0
        ));
        let applied = site.applied_revision("app");
        match shape.refused_with {
            Some(expected) if ok || !out.contains(expected) => failures.push(format!(
                "{}: not refused with {expected:?}: {out}",
                shape.name
            )),
            Some(_) if applied.as_deref() != Some(good.as_str()) => {
                failures.push(format!("{}: the last good revision is gone", shape.name))
            }
            None if !ok || applied.as_deref() != Some(revision.as_str()) => {
                failures.push(format!("{}: not applied: {out}", shape.name))
            }
            _ => {}
        }
        if peak > bound {
            failures.push(format!(
                "{}: peak RSS {peak} KiB over the bound {bound} KiB",
                shape.name
            ));
        }
        repo.remove("deploy/hostile.yaml");
        good = repo.commit("clean");
        site.sync_ok();
    }
    println!(
        "baseline {:.1} MiB\n{}",
        baseline as f64 / 1024.0,
        report.join("\n")
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
