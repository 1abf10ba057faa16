//! The directory target's files read back exactly as the repository says, by the readers the auto-deploy
//! controllers use: `outpost sync` of a real Git repository whose objects carry every family of string that a
//! YAML 1.1 or 1.2 resolver could take for something else (booleans, nulls, numbers in every base, sexagesimals,
//! timestamps, indicators, control characters, multi-line text) in labels, annotations, ConfigMap data, env
//! values, container args and map keys, next to real numbers and booleans. Each written file is read back with
//! PyYAML (`yaml.safe_load_all`, a YAML 1.1 reader like the Go one in k3s, RKE2 and kubectl) and with
//! `kubectl create --dry-run=server -o json` against the API test double, and compared value by value.

mod common;

use std::path::Path;
use std::process::Command;

use common::Site;
use outpost_tests::{GitRepo, KubeDouble};
use serde_json::{json, Map, Value};

/// Strings a YAML resolver may read as something else when written plain, family by family.
fn tricky_strings() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in ["y", "n", "yes", "no", "on", "off", "true", "false"] {
        let mut title = word.to_string();
        title[..1].make_ascii_uppercase();
        out.extend([word.to_string(), word.to_uppercase(), title]);
    }
    out.extend(
        [
            // nulls and emptiness
            "~",
            "null",
            "Null",
            "NULL",
            "",
            " ", // integers in every base and form
            "0",
            "12",
            "-1",
            "+1",
            "1_000",
            "0o17",
            "017",
            "0x1F",
            "0b101",
            "1:20",
            "190:20:30",
            "9223372036854775808", // floats
            "1e3",
            "1E+3",
            ".5",
            "-.5",
            "5.",
            "1.5",
            "1:20:30.5",
            ".inf",
            "-.Inf",
            ".NAN",
            "nan",
            "Infinity",
            "685.230_15e+03", // timestamps
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "2002-12-14T02:59:43Z",
            // merge, value and document markers
            "<<",
            "=",
            "---",
            "...", // spaces, colons and comments
            " lead",
            "trail ",
            "a: b",
            "a:",
            "a #b",
            "x\ty", // quotes and escapes
            "it's",
            "\"quoted\"",
            "back\\slash",
            "\\/", // control and YAML 1.1 line-break characters
            "\u{0}",
            "bell\u{7}",
            "esc\u{1b}[0m",
            "\u{7f}",
            "nel\u{85}",
            "ls\u{2028}ps\u{2029}",
            "\u{feff}bom",
            "cr\r", // multi-line text
            "line one\nline two\n",
            "no final newline\nsecond",
            "\nleading newline",
            "two finals\n\n",
            " indented\nfirst",
            "trailing space \nx",
            "# comment\n---\n...\n- item\nkey: value\n",
            // non-ASCII and plain strings that must stay as they are
            "café",
            "日本語",
            "🚀",
            "nginx:1.25",
            "registry.example.com/app:v1",
            "hello world",
            "KEY=value",
        ]
        .map(String::from),
    );
    for indicator in "-?:,[]{}#&*!|>'\"%@`".chars() {
        out.push(format!("{indicator}x"));
        out.push(format!("{indicator} x"));
    }
    out
}

/// A label value the API server accepts (the double does not check; a real server would).
fn is_label_value(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    s.is_empty()
        || (s.len() <= 63
            && s.chars().all(ok_char)
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Objects the API server (and so the double) accepts: one ConfigMap and one Deployment carrying the corpus.
fn api_objects(strings: &[String]) -> Vec<Value> {
    let labels: Map<String, Value> = strings
        .iter()
        .filter(|s| is_label_value(s))
        .enumerate()
        .map(|(i, s)| (format!("l{i}"), json!(s)))
        .collect();
    let indexed = |prefix: &str| -> Map<String, Value> {
        strings
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{prefix}{i}"), json!(s)))
            .collect()
    };
    let env: Vec<Value> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"name": format!("V{i}"), "value": s}))
        .collect();
    vec![
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tricky", "labels": labels, "annotations": indexed("example.com/a")},
            "data": indexed("k"),
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "generated": "yes"}},
            "spec": {
                "replicas": 2, "revisionHistoryLimit": 0, "paused": false,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "automountServiceAccountToken": true,
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{
                            "name": "web", "image": "nginx:1.25",
                            "args": strings, "env": env,
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        }],
                    },
                },
            },
        }),
    ]
}

/// A custom resource with what no built-in kind allows: tricky map keys, floats, nulls, nesting, long keys.
fn custom_object(strings: &[String]) -> Value {
    let keys: Map<String, Value> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), json!(i)))
        .collect();
    json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {
            "keys": keys,
            "numbers": [0, -1, 42, 9007199254740993_u64, u64::MAX, i64::MIN, 1.5, -0.25, 1.0, 1e300, 2.5e-300, 6.02e23],
            "booleans": [true, false], "nothing": null, "empty": {}, "none": [],
            "nested": [[["deep", "yes"]], [{"on": "off"}], {"list": [{}, []]}],
            "k".repeat(700): {"long": "key"},
        },
    })
}

fn to_json_file(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap()
}

fn pyyaml_documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    outpost_tests::pyyaml::load_all(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `written` without what the directory target adds (our labels and annotations), to compare with the source.
fn without_ownership(written: &Value, source: &Value) -> Value {
    let mut v = written.clone();
    for field in ["labels", "annotations"] {
        let Some(map) = v["metadata"].get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        map.retain(|k, _| !(k.starts_with("outpost.dev/") || k == "app.kubernetes.io/managed-by"));
        if map.is_empty() && source["metadata"].get(field).is_none() {
            v["metadata"].as_object_mut().unwrap().remove(field);
        }
    }
    v
}

/// The first path at which `actual` differs from `expected`, for a readable failure.
fn first_difference(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => {
                        if let Some(d) = first_difference(ev, av, &format!("{at}.{k:?}")) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{at}.{k:?}: missing")),
                }
            }
            a.keys()
                .find(|k| !e.contains_key(*k))
                .map(|k| format!("{at}.{k:?}: not in the source"))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| first_difference(ev, av, &format!("{at}[{i}]"))),
        _ if expected == actual => None,
        _ => Some(format!("{at}: source {expected}, read back {actual}")),
    }
}

fn assert_same(expected: &Value, actual: &Value, reader: &str) {
    if let Some(d) = first_difference(expected, actual, "") {
        panic!("{reader} read back a different value at {d}");
    }
}

/// `expected` is contained in `actual` (the API server adds defaults and metadata, removes nothing).
fn first_missing(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| match a.get(k) {
            Some(av) => first_missing(ev, av, &format!("{at}.{k:?}")),
            None => Some(format!("{at}.{k:?}: missing")),
        }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| first_missing(ev, av, &format!("{at}[{i}]"))),
        _ if expected == actual => None,
        _ => Some(format!("{at}: source {expected}, server has {actual}")),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is not in the written file"))
}

/// A repository with both sources' folders: `api` (built-in kinds) and `custom` (a custom resource), plus one
/// YAML file written by hand the way the issue's user wrote it.
/// The source objects of each folder (= source name), in the order the tests read them.
struct Sources {
    api: Vec<Value>,
    custom: Vec<Value>,
    keys: Vec<Value>,
}

impl Sources {
    fn all(&self) -> [(&'static str, &Vec<Value>); 3] {
        [
            ("api", &self.api),
            ("custom", &self.custom),
            ("keys", &self.keys),
        ]
    }
}

/// A ConfigMap whose data keys are the corpus: a real server refuses most of them, but kubectl's client-side
/// dry run reads them with the Go YAML reader without asking the server.
fn keys_object(strings: &[String]) -> Value {
    let data: Map<String, Value> = strings.iter().map(|s| (s.clone(), json!(s))).collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keys"}, "data": data})
}

fn repository(strings: &[String]) -> (GitRepo, Sources) {
    let repo = GitRepo::new();
    let api = api_objects(strings);
    for (i, object) in api.iter().enumerate() {
        repo.write(&format!("api/{i:02}.json"), &to_json_file(object));
    }
    let by_hand = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-hand\n  labels:\n    generated: \"yes\"\ndata:\n  a: \"yes\"\n  b: \"off\"\n  c: \"1:20\"\n  d: \"2001-12-14\"\n  e: 'on'\n";
    repo.write("api/by-hand.yaml", by_hand.as_bytes());
    let mut api = api;
    api.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "by-hand", "labels": {"generated": "yes"}},
        "data": {"a": "yes", "b": "off", "c": "1:20", "d": "2001-12-14", "e": "on"},
    }));
    let custom = vec![custom_object(strings)];
    repo.write("custom/widget.json", &to_json_file(&custom[0]));
    let keys = vec![keys_object(strings)];
    repo.write("keys/keys.json", &to_json_file(&keys[0]));
    repo.commit("tricky scalars");
    (repo, Sources { api, custom, keys })
}

fn site_for(repo: &GitRepo) -> Site {
    let mut site = Site::new();
    for name in ["api", "custom", "keys"] {
        site.source(name, &repo.file_url(), "branch = \"main\"", name, "");
    }
    site
}

#[test]
fn pyyaml_reads_back_exactly_what_the_repository_says() {
    let strings = tricky_strings();
    let (repo, sources) = repository(&strings);
    let site = site_for(&repo);
    site.sync_ok();
    for (source, objects) in sources.all() {
        let read = pyyaml_documents(&site.applied_file(source));
        assert_eq!(
            read.len(),
            objects.len(),
            "{source}: one document per object"
        );
        for object in objects.iter() {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            let back = find(&read, kind, name);
            assert_eq!(back["metadata"]["labels"]["outpost.dev/source"], source);
            assert_same(object, &without_ownership(back, object), "PyYAML");
        }
        // serde_yaml_ng (YAML 1.2, the agent's own reader) agrees.
        let ours = site.applied_objects(source);
        assert_eq!(ours, read, "{source}: serde_yaml_ng and PyYAML disagree");
    }
}

#[test]
fn render_prints_the_bytes_the_directory_target_writes() {
    let strings = tricky_strings();
    let (repo, _) = repository(&strings);
    let site = site_for(&repo);
    site.sync_ok();
    for source in ["api", "custom", "keys"] {
        let out = site.run(&["render", "--source", source]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            site.applied(source),
            "{source}: render and the written file differ"
        );
    }
}

#[test]
fn kubectl_create_dry_run_against_the_double_reads_back_the_same_values() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        println!("skipped: kubectl is not installed");
        return;
    }
    let strings = tricky_strings();
    let (repo, Sources { api, keys, .. }) = repository(&strings);
    let site = site_for(&repo);
    site.sync_ok();
    let double = KubeDouble::start();
    let kubeconfig = double.write_kubeconfig(site.dir.path());
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["create", "--dry-run=server", "-o", "json", "-f"])
        .arg(site.applied_file("api"))
        .env("HOME", site.dir.path())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One JSON object per created object, one after the other.
    let items: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("kubectl prints JSON");
    assert_eq!(items.len(), api.len());
    for object in &api {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let created = find(&items, kind, name);
        if let Some(d) = first_missing(object, created, "") {
            panic!("kubectl and the API server read back a different value at {d}");
        }
    }
    assert!(
        double
            .get("/api/v1/namespaces/default/configmaps/tricky")
            .is_none(),
        "a dry run stores nothing"
    );

    // Map keys through the same Go reader: a client-side dry run prints what kubectl decoded.
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "create",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "-f",
        ])
        .arg(site.applied_file("keys"))
        .env("HOME", site.dir.path())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Value = serde_json::from_slice(&out.stdout).expect("kubectl prints JSON");
    if let Some(d) = first_difference(&keys[0]["data"], &decoded["data"], ".data") {
        panic!("kubectl read back different keys or values at {d}");
    }
}

/// The `yaml_emit` fuzz corpus (seeds per scalar family and what the fuzzer kept) read back by PyYAML too: the
/// stable replay in `fuzz_corpus.rs` reads it with serde_yaml_ng, a YAML 1.2 reader.
#[test]
fn the_yaml_emit_fuzz_corpus_reads_back_exactly_with_pyyaml() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/yaml_emit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus lost its seeds");
    let values: Vec<Value> = files
        .iter()
        .map(|f| outpost_agent::fuzzing::yaml_emit_value(&std::fs::read(f).unwrap()))
        .collect();
    let text: String = values
        .iter()
        .map(|v| {
            format!(
                "---\n{}",
                outpost_agent::deploy::directory::emit::document(v)
            )
        })
        .collect();
    let read = outpost_tests::pyyaml::load_all(&text).unwrap();
    assert_eq!(read.len(), values.len());
    for ((file, value), back) in files.iter().zip(&values).zip(&read) {
        if let Some(d) = first_difference(value, back, "") {
            panic!(
                "{}: PyYAML read back a different value at {d}",
                file.display()
            );
        }
    }
}

/// `layout = "kustomization"`: `outpost sync` writes one folder per source that kustomize (what MicroShift runs
/// on `manifests.d/*`) builds into exactly the source's objects, and removing the source takes the folder away.
#[test]
fn kustomization_layout_is_what_kustomize_builds_and_goes_with_the_source() {
    // kustomize (kubectl 1.32) cannot build any object holding a DEL character, however it is written: its YAML
    // library prints DEL raw and then refuses to read it back ("control characters are not allowed"). It also
    // prints NEL raw, which YAML 1.1 readers take for a line break, so its output cannot show whether it read a
    // NEL right. Both stay in the other tests.
    let strings: Vec<String> = tricky_strings()
        .into_iter()
        .filter(|s| !s.contains(['\u{7f}', '\u{85}']))
        .collect();
    let (repo, Sources { api, .. }) = repository(&strings);
    let mut site = Site::new();
    site.source(
        "api",
        &repo.file_url(),
        "branch = \"main\"",
        "api",
        "layout = \"kustomization\"",
    );
    site.sync_ok();
    let folder = site.target_dir().join("api");
    assert!(
        !site.applied_file("api").exists(),
        "no <source>.yaml beside the folder"
    );
    let file = folder.join("api.yaml");
    let read = pyyaml_documents(&file);
    assert_eq!(read.len(), api.len());
    for object in &api {
        let kind = object["kind"].as_str().unwrap();
        let back = find(&read, kind, object["metadata"]["name"].as_str().unwrap());
        assert_same(object, &without_ownership(back, object), "PyYAML");
    }
    let render = site.run(&["render", "--source", "api"]);
    assert_eq!(
        render.stdout,
        std::fs::read(&file).unwrap(),
        "render prints the manifest file"
    );
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok()
    {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&folder)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // kustomize prints YAML 1.2 (a plain `<<`, which a YAML 1.1 reader takes for a merge key), so its output
        // is read as YAML 1.2; what is checked is that it read our file right.
        let text = String::from_utf8(out.stdout).unwrap();
        let built: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(built.len(), read.len());
        for object in &read {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            if let Some(d) = first_difference(object, find(&built, kind, name), "") {
                panic!("kustomize built {kind}/{name} differently from the file: {d}");
            }
        }
    } else {
        println!("skipped the kubectl kustomize check: kubectl is not installed");
    }

    // The source leaves the config (prune is on by default): what we wrote goes, and only that.
    std::fs::write(folder.join("operator-notes.txt"), "kept").unwrap();
    site.sources.clear();
    site.source("other", &repo.file_url(), "branch = \"main\"", "custom", "");
    site.sync_ok();
    assert!(!file.exists() && !folder.join("kustomization.yaml").exists());
    assert!(folder.join("operator-notes.txt").exists());
    assert!(site.applied_file("other").exists());
}
