use super::*;

fn file(path: &str, content: &str) -> ManifestFile {
    ManifestFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
    }
}

fn limits() -> Limits {
    Limits::default()
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";

#[test]
fn multi_document_files_keep_order_and_skip_empty_documents() {
    let files = [
        file("a.yaml", &format!("# only a comment\n---\n{CM}---\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n")),
        file("b/c.json", r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"x"}}"#),
    ];
    let b = build(&files, &limits()).unwrap();
    let kinds: Vec<&str> = b
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ConfigMap", "Secret", "Deployment"]);
    assert!(b.digest.starts_with("sha256:") && b.digest.len() == 7 + 64);
}

#[test]
fn lists_are_flattened() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: svc\n",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}"#
    );
    let b = build(&[file("l.yaml", &list)], &limits()).unwrap();
    assert_eq!(b.objects.len(), 2);
    assert_eq!(b.objects[1]["kind"], "Service");
}

#[test]
fn digest_is_stable_and_content_sensitive() {
    let a = build(&[file("a.yaml", CM)], &limits()).unwrap();
    let reordered = "kind: ConfigMap\ndata:\n  k: v\nmetadata:\n  name: a\napiVersion: v1\n";
    let b = build(&[file("a.yaml", reordered)], &limits()).unwrap();
    assert_eq!(a.digest, b.digest, "key order must not change the digest");
    let c = build(&[file("a.yaml", &CM.replace("k: v", "k: w"))], &limits()).unwrap();
    assert_ne!(a.digest, c.digest);
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let err = build(
        &[file(
            "apps/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
        )],
        &limits(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("apps/bad.yaml, line "), "{msg}");
    assert!(msg.contains("malformed YAML"), "{msg}");
}

#[test]
fn missing_kind_or_name_is_refused() {
    let err = build(
        &[file("x.yaml", "apiVersion: v1\nmetadata:\n  name: a\n")],
        &limits(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("x.yaml, document 1: has no kind"),
        "{err}"
    );
    let err = build(
        &[file(
            "x.yaml",
            &format!("{CM}---\napiVersion: v1\nkind: Secret\nmetadata: {{}}\n"),
        )],
        &limits(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("document 2: Secret has no metadata.name"),
        "{err}"
    );
    let err = build(&[file("x.yaml", "- just\n- a list\n")], &limits()).unwrap_err();
    assert!(err.to_string().contains("not a mapping"), "{err}");
}

#[test]
fn duplicates_name_both_places() {
    let err = build(
        &[
            file("a.yaml", CM),
            file("b.yaml", &CM.replace("k: v", "k: other")),
        ],
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        BuildError::Duplicate {
            id: "ConfigMap a".into(),
            first: "a.yaml, document 1".into(),
            second: "b.yaml, document 1".into()
        }
    );
    // Same name in another namespace, or another kind, is a different object.
    let other_ns = CM.replace("name: a", "name: a\n  namespace: other");
    assert!(build(&[file("a.yaml", CM), file("b.yaml", &other_ns)], &limits()).is_ok());
}

#[test]
fn non_utf8_is_refused() {
    let f = ManifestFile {
        path: "bin.yaml".into(),
        content: b"apiVersion: v1\nkind: \xff\xfe\n".to_vec(),
    };
    let err = build(&[f], &limits()).unwrap_err();
    assert_eq!(
        err,
        BuildError::NotUtf8 {
            file: "bin.yaml".into(),
            offset: 21
        }
    );
}

#[test]
fn object_limit_is_enforced() {
    let many: String = (0..5)
        .map(|i| CM.replace("name: a", &format!("name: a{i}")) + "---\n")
        .collect();
    let tight = Limits {
        max_objects: 4,
        ..Limits::default()
    };
    assert_eq!(
        build(&[file("m.yaml", &many)], &tight).unwrap_err(),
        BuildError::TooManyObjects { limit: 4 }
    );
    assert_eq!(
        build(&[file("m.yaml", &many)], &limits())
            .unwrap()
            .objects
            .len(),
        5
    );
}

#[test]
fn nothing_to_apply_is_an_error() {
    assert_eq!(build(&[], &limits()).unwrap_err(), BuildError::Empty);
    // Files that exist but hold nothing are named as such, not as "no files".
    let err = build(&[file("a.yaml", "# nothing\n")], &limits()).unwrap_err();
    assert_eq!(err, BuildError::NoObjects { files: 1 });
    assert!(err.to_string().contains("hold no objects"), "{err}");
}

#[test]
fn identity_leaves_out_the_version() {
    let a: Value = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}});
    assert_eq!(identity(&a).unwrap(), "apps/Deployment shop/web");
}

#[test]
fn inventory_digest_ignores_order_but_not_content() {
    let a = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}});
    let b = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}});
    let one = inventory_digest(&[a.clone(), b.clone()]);
    assert_eq!(one, inventory_digest(&[b.clone(), a.clone()]));
    assert!(one.starts_with("sha256:") && one.len() == 71);
    let mut changed = a.clone();
    changed["data"]["k"] = "2".into();
    assert_ne!(one, inventory_digest(&[changed, b.clone()]));
    assert_ne!(one, inventory_digest(&[a]));
    assert_ne!(
        Bundle::new(vec![b.clone()]).digest,
        inventory_digest(&[b]),
        "distinct from the bundle digest"
    );
}

#[test]
fn billion_laughs_fails_fast() {
    let mut doc = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let prev = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev}]\n"
        ));
    }
    doc.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n");
    let start = std::time::Instant::now();
    let err = build(&[file("lol.yaml", &doc)], &limits()).unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, BuildError::Budget { ref message, .. } if message.contains("aliases expanded")),
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let depth = 10_000;
    let doc = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = build(&[file("deep.yaml", &doc)], &limits()).unwrap_err();
    assert!(
        err.to_string().contains("nested more than 128 levels deep"),
        "{err}"
    );
}

/// A hand-made input broke the yaml_bundle fuzz harness's check that every bundle object has an identity: a
/// whole-value `${var}` holding a number made `metadata.name` the integer 3.
#[test]
fn substitution_that_breaks_an_identity_is_refused() {
    let manifests = Manifests {
        files: vec![file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${replicas}\n",
        )],
        ..Manifests::default()
    };
    let vars = BTreeMap::from([("replicas".to_string(), "3".to_string())]);
    let err = build_revision(&manifests, Some(&vars), &limits()).unwrap_err();
    assert!(
        matches!(err, BuildError::SubstitutedIdentity { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.starts_with("ConfigMap ${replicas}:"), "{message}");
    assert!(message.contains("has no metadata.name"), "{message}");
}

/// A hand-made input broke the yaml_bundle fuzz harness's check that no identity is twice in a bundle: a
/// variable made one object's name that of another, and both went into the bundle.
#[test]
fn substitution_that_makes_two_objects_one_is_refused() {
    let manifests = Manifests {
        files: vec![file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${region}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: eu-west\n",
        )],
        ..Manifests::default()
    };
    let vars = BTreeMap::from([("region".to_string(), "eu-west".to_string())]);
    let err = build_revision(&manifests, Some(&vars), &limits()).unwrap_err();
    assert_eq!(
        err,
        BuildError::SubstitutedIdentity {
            object: "ConfigMap eu-west".into(),
            problem: "it is ConfigMap eu-west, the same object as ConfigMap ${region}".into(),
        }
    );
}

/// A source that did not opt in to substitution keeps `${…}` as written (a shell script, a CRD description).
#[test]
fn without_opt_in_nothing_is_substituted() {
    let manifests = Manifests {
        files: vec![file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\ndata:\n  run.sh: echo ${FRONTEND}\n  doc: e.g. ${var:=default}\n",
        )],
        ..Manifests::default()
    };
    let bundle = build_revision(&manifests, None, &limits()).unwrap();
    assert_eq!(bundle.objects[0]["data"]["run.sh"], "echo ${FRONTEND}");
    assert_eq!(bundle.objects[0]["data"]["doc"], "e.g. ${var:=default}");
}
