use serde_json::json;

use super::files::join;
use super::*;

fn repo(files: &[(&str, &str)]) -> RepoFiles {
    let mut r = RepoFiles::new(&Limits::default());
    for (p, c) in files {
        r.insert(p, Entry::File(c.as_bytes().to_vec()));
    }
    r
}

#[test]
fn hash_matches_kustomize() {
    // `kubectl kustomize` names this ConfigMap app-config-kh7f5d858d.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
        "data": {"A": "1", "B": "<x&y>"}});
    assert_eq!(refs::content_hash(&cm), "kh7f5d858d");
}

#[test]
fn references_resolve_lexically_and_never_leave_the_repository() {
    assert_eq!(join("apps/prod", "../base").as_deref(), Some("apps/base"));
    assert_eq!(join("apps", "../../etc"), None);
    assert_eq!(join("", "/etc/passwd"), None);
}

#[test]
fn cycle_is_named() {
    let files = repo(&[
        ("a/kustomization.yaml", "resources: [../b]\n"),
        ("b/kustomization.yaml", "resources: [../a]\n"),
    ]);
    let err = build(&files, "a", &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("a -> b -> a"), "{err}");
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let files = repo(&[("k/kustomization.yaml", "helmCharts:\n- name: x\n")]);
    let err = build(&files, "k", &Limits::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("k/kustomization.yaml") && text.contains("helmCharts"),
        "{text}"
    );
}

#[test]
fn strategic_merge_follows_merge_keys_and_directives() {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x", "args": ["1", "2"],
            "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]},
            {"name": "gone", "image": "y"}]}});
    let patch = json!({"spec": {"containers": [
        {"name": "a", "args": ["9"], "env": [{"name": "B", "value": "2"}]},
        {"name": "gone", "$patch": "delete"}]}});
    smp::merge_with(&mut pod, &patch, "", "Pod", None);
    let c = &pod["spec"]["containers"];
    assert_eq!(c.as_array().unwrap().len(), 1, "{pod}");
    assert_eq!(c[0]["image"], "x", "fields the patch does not name stay");
    assert_eq!(c[0]["args"], json!(["9"]), "atomic lists are replaced");
    // kustomize puts the patch's elements first, then the others.
    assert_eq!(
        c[0]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"},
        {"name": "C", "value": "3"}])
    );
}

#[test]
fn json_patch_operations_and_errors() {
    let mut v = json!({"a": {"b": [1, 2]}});
    let ops = json!([{"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "replace", "path": "/a/b/0", "value": 0},
        {"op": "move", "from": "/a/b", "path": "/c"},
        {"op": "test", "path": "/c", "value": [0, 2, 3]}]);
    jsonpatch::apply(&mut v, ops.as_array().unwrap()).unwrap();
    assert_eq!(v, json!({"a": {}, "c": [0, 2, 3]}));
    let bad = json!([{"op": "remove", "path": "/nothere"}]);
    let err = jsonpatch::apply(&mut v, bad.as_array().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("operation 1") && err.contains("/nothere"),
        "{err}"
    );
}

#[test]
fn escaping_resource_names_the_kustomization() {
    let files = repo(&[(
        "apps/site/kustomization.yaml",
        "resources:\n- ../../../etc\n",
    )]);
    let err = build(&files, "apps/site", &Limits::default()).unwrap_err();
    assert!(
        matches!(err, KustomizeError::Escapes { ref file, .. } if file == "apps/site/kustomization.yaml"),
        "{err}"
    );
}

/// A hand-made input for the kustomization fuzz harness (the fuzzer did not get there in its 4 minutes): each
/// `copy` of `/data` into `/data/kN` doubles the ConfigMap, so forty operations asked for 2^40 values.
#[test]
fn json_patch_copies_cannot_double_an_object_without_bound() {
    let ops: String = (0..40)
        .map(|i| format!("      - op: copy\n        from: /data\n        path: /data/k{i}\n"))
        .collect();
    let files = repo(&[
        (
            "kustomization.yaml",
            &format!("resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |-\n{ops}"),
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: y\n",
        ),
    ]);
    let start = std::time::Instant::now();
    let err = build(&files, "", &Limits::default()).unwrap_err();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    let message = err.to_string();
    assert!(
        message.contains("kustomization.yaml: patch 1:")
            && message.contains("copy from /data to /data/k")
            && message.contains("more than 10000 values"),
        "{message}"
    );

    let mut v = json!({"a": {"b": [1, 2]}});
    let ops = json!([{"op": "copy", "from": "/a", "path": "/c"}]);
    jsonpatch::apply(&mut v, ops.as_array().unwrap()).unwrap();
    assert_eq!(v, json!({"a": {"b": [1, 2]}, "c": {"b": [1, 2]}}));
}

/// Helm, plugins and remote files stay refused, each naming the field and the file.
#[test]
fn helm_plugins_and_remote_files_are_refused_by_field_and_file() {
    let cases = [
        (
            "transformers:\n- |-\n  apiVersion: example.com/v1\n  kind: MyPlugin\n  metadata:\n    name: p\n",
            "transformers[0] (example.com/v1 MyPlugin)",
        ),
        (
            "generators:\n- |-\n  apiVersion: builtin\n  kind: HelmChartInflationGenerator\n  metadata:\n    name: h\n",
            "HelmChartInflationGenerator",
        ),
        ("openapi:\n  path: https://example.com/schema.json\n", "remote"),
        ("components:\n- https://github.com/x/y//c\n", "remote"),
        ("validators:\n- v.yaml\n", "validators"),
    ];
    for (kustomization, field) in cases {
        let files = repo(&[("k/kustomization.yaml", kustomization)]);
        let err = build(&files, "k", &Limits::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("k/kustomization.yaml") && text.contains(field),
            "{kustomization}: {text}"
        );
        assert!(matches!(err, KustomizeError::Unsupported { .. }), "{text}");
    }
}

/// Builtin transformer configs run as the kustomization fields would; an unknown builtin kind is named.
#[test]
fn builtin_transformer_configs_run_and_unknown_ones_are_named() {
    let files = repo(&[
        (
            "k/kustomization.yaml",
            "resources: [cm.yaml]\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: AnnotationsTransformer\n  metadata:\n    name: a\n  annotations:\n    team: web\n  fieldSpecs:\n  - path: metadata/annotations\n    create: true\n",
        ),
        ("k/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"),
    ]);
    let out = build(&files, "k", &Limits::default()).unwrap();
    assert_eq!(out[0]["metadata"]["annotations"]["team"], "web");
    let files = repo(&[(
        "k/kustomization.yaml",
        "transformers:\n- |-\n  apiVersion: builtin\n  kind: SortOrderTransformer\n  metadata:\n    name: s\n",
    )]);
    let err = build(&files, "k", &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unable to load builtin SortOrderTransformer"),
        "{err}"
    );
}

#[test]
fn name_references_are_fixed_once_after_every_level() {
    // kustomize fixes references at the top only: an overlay's replacement still reads the base's reference as
    // written (`kubectl kustomize` prints `seen: cfg`), and the reference itself ends up with the final name.
    let files = repo(&[
        ("base/kustomization.yaml", "namePrefix: b-\nresources: [r.yaml]\n"),
        (
            "base/r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n    spec:\n      volumes:\n      - name: v\n        configMap: {name: cfg}\n",
        ),
        (
            "ov/kustomization.yaml",
            "resources: [../base]\nreplacements:\n- source: {kind: Deployment, fieldPath: spec.template.spec.volumes.0.configMap.name}\n  targets:\n  - select: {kind: ConfigMap}\n    fieldPaths: [metadata.annotations.seen]\n    options: {create: true}\n",
        ),
    ]);
    let out = build(&files, "ov", &Limits::default()).unwrap();
    let cm = out.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["name"], "b-cfg");
    assert_eq!(cm["metadata"]["annotations"]["seen"], "cfg");
    let d = out.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        d.pointer("/spec/template/spec/volumes/0/configMap/name"),
        Some(&json!("b-cfg"))
    );
}

#[test]
fn a_reference_two_renamed_objects_answer_to_is_refused_unless_affixes_tell_them_apart() {
    // Two overlays of one base each get their own copy of the ServiceAccount; each RoleBinding finds its own by
    // the prefixes it received. An overlay's own `sa` (prefixed like the overlay's copy) makes the reference in
    // that overlay ambiguous, as in kustomize.
    let base = [
        ("base/kustomization.yaml", "namePrefix: p-\nresources: [r.yaml]\n"),
        (
            "base/r.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects:\n- kind: ServiceAccount\n  name: sa\n",
        ),
        ("a/kustomization.yaml", "namePrefix: a-\nresources: [../base]\n"),
        ("top/kustomization.yaml", "resources: [../a, ../b]\n"),
    ];
    let mut ok = base.to_vec();
    ok.push((
        "b/kustomization.yaml",
        "namePrefix: b-\nresources: [../base]\n",
    ));
    let out = build(&repo(&ok), "top", &Limits::default()).unwrap();
    for prefix in ["a-", "b-"] {
        let rb = out
            .iter()
            .find(|o| {
                o["kind"] == "RoleBinding" && o["metadata"]["name"] == format!("{prefix}p-rb")
            })
            .unwrap();
        assert_eq!(rb["subjects"][0]["name"], format!("{prefix}p-sa"));
    }
    let mut clash = base.to_vec();
    clash.push((
        "b/kustomization.yaml",
        "namePrefix: b-\nresources: [../base, sa.yaml]\n",
    ));
    clash.push((
        "b/sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: other}\n",
    ));
    // In another namespace: not reachable from the RoleBinding, so still unambiguous.
    build(&repo(&clash), "top", &Limits::default()).unwrap();
    clash.pop();
    clash.push((
        "b/sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  annotations: {x: y}\n",
    ));
    let err = build(&repo(&clash), "top", &Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("could mean several objects"),
        "{err}"
    );
}

#[test]
fn local_config_objects_serve_the_build_and_are_left_out() {
    // kubectl kustomize prints only the Deployment, holding the local Pod's spec.
    let files = repo(&[
        (
            "kustomization.yaml",
            "resources: [pod.yaml, d.yaml]\nreplacements:\n- source: {kind: Pod, fieldPath: spec}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.template.spec]\n    options: {create: true}\n",
        ),
        (
            "pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {config.kubernetes.io/local-config: \"true\"}\nspec:\n  containers: [{name: app, image: nginx}]\n",
        ),
        ("d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"),
    ]);
    let out = build(&files, "", &Limits::default()).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("nginx"))
    );
}

#[test]
fn builtin_generator_configs_read_as_kustomize_reads_them() {
    // The generator's `name` names the ConfigMap (metadata.name names the config); fields kustomize's builtin
    // generator does not know are without effect (`kubectl kustomize` prints bob-<hash>, without labels).
    let files = repo(&[
        ("kustomization.yaml", "generators: [g.yaml]\n"),
        (
            "g.yaml",
            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata: {name: notImportantHere}\nname: bob\nlabels: {a: b}\nliterals: [x=1]\n",
        ),
    ]);
    let out = build(&files, "", &Limits::default()).unwrap();
    let name = out[0]["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("bob-"), "{name}");
    assert!(out[0]["metadata"].get("labels").is_none(), "{out:?}");
}

#[test]
fn legacy_sort_options_with_fifo_are_refused() {
    let files = repo(&[
        (
            "kustomization.yaml",
            "resources: [cm.yaml]\nsortOptions:\n  order: fifo\n  legacySortOptions: {}\n",
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        ),
    ]);
    let err = build(&files, "", &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("legacySortOptions"), "{err}");
}

#[test]
fn a_prefix_suffix_transformer_adds_both() {
    // kubectl kustomize names the Service baked-apple-pie.
    let files = repo(&[
        (
            "kustomization.yaml",
            "resources: [s.yaml]\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: PrefixSuffixTransformer\n  metadata: {name: x}\n  prefix: baked-\n  suffix: -pie\n  fieldSpecs:\n  - path: metadata/name\n",
        ),
        ("s.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: apple}\n"),
    ]);
    let out = build(&files, "", &Limits::default()).unwrap();
    assert_eq!(out[0]["metadata"]["name"], "baked-apple-pie");
}

#[test]
fn crds_schema_extensions_make_name_references() {
    let files = repo(&[
        (
            "kustomization.yaml",
            "crds: [crd.json]\nnamePrefix: x-\nresources: [r.yaml]\n",
        ),
        (
            "crd.json",
            r#"{"a.v1.MyKind": {"Schema": {"properties": {"kind": {}, "apiVersion": {}, "metadata": {},
                "spec": {"$ref": "a.v1.Spec"}}}},
               "a.v1.Spec": {"Schema": {"properties": {"secretRef": {
                "x-kubernetes-object-ref-api-version": "v1", "x-kubernetes-object-ref-kind": "Secret"}}}}}"#,
        ),
        (
            "r.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: a/v1\nkind: MyKind\nmetadata: {name: m}\nspec:\n  secretRef: {name: s}\n",
        ),
    ]);
    let out = build(&files, "", &Limits::default()).unwrap();
    let m = out.iter().find(|o| o["kind"] == "MyKind").unwrap();
    assert_eq!(m["spec"]["secretRef"]["name"], "x-s");
}

#[test]
fn components_run_after_the_generators_of_their_kustomization() {
    // kustomize v5.5: a component's nameSuffix reaches the ConfigMap its parent generates
    // (`kubectl kustomize` prints generated-suffix).
    let files = repo(&[
        (
            "kustomization.yaml",
            "components: [comp]\nconfigMapGenerator:\n- name: generated\n  literals: [k=v]\n  options: {disableNameSuffixHash: true}\n",
        ),
        (
            "comp/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nnameSuffix: -suffix\n",
        ),
    ]);
    let out = build(&files, "", &Limits::default()).unwrap();
    assert_eq!(out[0]["metadata"]["name"], "generated-suffix");
}

#[test]
fn configurations_merge_as_kustomize_merges_field_specs() {
    // A kustomization's own `namePrefix` spec for Foo replaces the default for every kind (kubectl: cm, p-foo);
    // over a base that keeps the default, both apply, so Foo is prefixed twice (kubectl: p-cm, p-p-foo).
    let narrow = "namePrefix:\n- path: metadata/name\n  kind: Foo\n";
    let objects = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\napiVersion: x/v1\nkind: Foo\nmetadata: {name: foo}\n";
    let names = |out: Vec<Value>| -> Vec<String> {
        let mut n: Vec<String> = out
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let single = repo(&[
        (
            "kustomization.yaml",
            "namePrefix: p-\nresources: [r.yaml]\nconfigurations: [c.yaml]\n",
        ),
        ("c.yaml", narrow),
        ("r.yaml", objects),
    ]);
    let out = build(&single, "", &Limits::default()).unwrap();
    assert_eq!(names(out), ["cm", "p-foo"]);
    let over_base = repo(&[
        (
            "kustomization.yaml",
            "namePrefix: p-\nresources: [base]\nconfigurations: [c.yaml]\n",
        ),
        ("c.yaml", narrow),
        ("base/kustomization.yaml", "resources: [r.yaml]\n"),
        ("base/r.yaml", objects),
    ]);
    let out = build(&over_base, "", &Limits::default()).unwrap();
    assert_eq!(names(out), ["p-cm", "p-p-foo"]);
}

#[test]
fn value_add_and_plain_scalars_in_builtin_configs() {
    // kubectl kustomize: namespace dog-222 (the folder's name), external projects/dog-222/x, area: "51".
    let files = repo(&[
        (
            "dog-222/kustomization.yaml",
            "resources: [r.yaml]\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: ValueAddTransformer\n  metadata: {name: v}\n  targets:\n  - fieldPath: metadata/namespace\n  - selector: {kind: Thing}\n    fieldPath: spec/ref\n    filePathPosition: 2\n- |-\n  apiVersion: builtin\n  kind: AnnotationsTransformer\n  metadata: {name: a}\n  annotations: {area: 51}\n  fieldSpecs: [{path: metadata/annotations, create: true}]\n",
        ),
        (
            "dog-222/r.yaml",
            "apiVersion: x/v1\nkind: Thing\nmetadata: {name: t}\nspec: {ref: projects/x}\n",
        ),
    ]);
    let out = build(&files, "dog-222", &Limits::default()).unwrap();
    assert_eq!(out[0]["metadata"]["namespace"], "dog-222");
    assert_eq!(out[0]["spec"]["ref"], "projects/dog-222/x");
    assert_eq!(out[0]["metadata"]["annotations"]["area"], "51");
}

/// kustomize refuses a mapping that names one key twice (kustomize's TestDuplicateKeys); plain manifests keep
/// the last value, as they always have.
#[test]
fn a_key_written_twice_is_refused_in_a_kustomize_build() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: one\n  x: two\n";
    let files = repo(&[
        ("kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("cm.yaml", cm),
    ]);
    let err = build(&files, "", &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cm.yaml"), "{err}");
    assert!(err.to_ascii_lowercase().contains("duplicate"), "{err}");
    let plain = crate::bundle::yaml::parse_documents("cm.yaml", cm, 10).unwrap();
    assert_eq!(plain[0]["data"]["x"], "two");
}
