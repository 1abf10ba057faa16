//! The in-cluster install (`packaging/kubernetes/`) and the container image (`packaging/Containerfile`).
//!
//! These files are only ever read by kubectl, the kubelet and a container builder, so nothing else would notice
//! when an edit drops a hardening setting, breaks the agent's config or points the probe at a binary the image
//! does not have. The checks here read the files as data and assert each promise their headers make; the kubectl
//! checks run them through kubectl's own validation against the API double (and against a real cluster when
//! `OUTPOST_E2E_KUBECONFIG` names a kubeconfig).

use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_agent::config::{Config, TargetSpec};
use outpost_tests::KubeDouble;
use serde_json::{json, Value};

/// Where the image keeps the binary; the workloads must run the same path (a scratch image has no PATH).
#[path = "packaging/image.rs"]
mod image;
#[path = "packaging/kubectl.rs"]
mod kubectl;

const BINARY: &str = "/outpost";
const IMAGE: &str = "ghcr.io/outpost-dev/outpost:0.1.0";
const CONFIG_FILE: &str = "/etc/outpost/agent.toml";
const STATE_DIR: &str = "/var/lib/outpost";
const KUBECTL: &str = "/usr/bin/kubectl";

fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn manifests_dir() -> PathBuf {
    packaging_dir().join("kubernetes")
}

/// Every Kubernetes manifest: all `*.yaml` files but the kustomization, which is kustomize's, not the API's.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("read packaging/kubernetes")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The documents of one multi-document YAML text, as JSON values. Documents are split at `---` lines, which is
/// the only separator these files use.
fn documents(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().expect("at least one document");
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn file_docs(name: &str) -> Vec<Value> {
    documents(&read(&manifests_dir().join(name)))
}

/// The one object of `kind` in file `name`.
fn object(name: &str, kind: &str) -> Value {
    let mut found: Vec<Value> = file_docs(name)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "{name}: expected one {kind}");
    found.remove(0)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn every_manifest_parses_and_names_its_objects() {
    let files = manifest_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac-cluster.yaml",
        "rbac-namespaced.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "pvc.yaml",
        "deployment.yaml",
        "daemonset.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    for file in files
        .iter()
        .chain([&manifests_dir().join("kustomization.yaml")])
    {
        let text = read(file);
        assert!(
            text.starts_with("# "),
            "{}: start with a comment saying why the file looks as it does",
            file.display()
        );
    }
    for file in &files {
        let docs = documents(&read(file));
        assert!(!docs.is_empty(), "{}: no documents", file.display());
        for doc in docs {
            for key in ["apiVersion", "kind"] {
                assert!(
                    doc[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{}: a document without {key}: {doc}",
                    file.display()
                );
            }
            assert!(
                doc["metadata"]["name"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{}: a document without metadata.name: {doc}",
                file.display()
            );
        }
    }
}

/// The pod spec of the workload in `file` (a Deployment or DaemonSet).
fn pod_spec(file: &str, kind: &str) -> Value {
    let workload = object(file, kind);
    assert_eq!(
        workload["metadata"]["namespace"], "outpost-system",
        "{file}"
    );
    workload["spec"]["template"]["spec"].clone()
}

fn assert_hardened(file: &str, pod: &Value) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{file}: pod runAsNonRoot");
    assert_eq!(psc["runAsUser"], 65532, "{file}: pod runAsUser");
    assert_eq!(psc["runAsGroup"], 65532, "{file}: pod runAsGroup");
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "{file}: pod seccomp"
    );
    assert_eq!(pod["serviceAccountName"], "outpost", "{file}");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30, "{file}");
    assert!(
        pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
        "{file}"
    );

    let containers: Vec<&Value> = pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten()
        .collect();
    assert!(!containers.is_empty(), "{file}: no containers");
    for c in containers {
        let at = format!("{file}: container {}", c["name"]);
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{at}: runAsNonRoot");
        assert_eq!(sc["runAsUser"], 65532, "{at}: runAsUser");
        assert_eq!(sc["runAsGroup"], 65532, "{at}: runAsGroup");
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{at}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{at}: allowPrivilegeEscalation"
        );
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{at}: drop ALL");
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{at}: adds capabilities"
        );
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{at}"
        );
        assert_eq!(
            sc["seccompProfile"]["type"], "RuntimeDefault",
            "{at}: seccomp"
        );
        assert_eq!(
            c["resources"],
            json!({
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            }),
            "{at}: resources"
        );
        assert_eq!(c["image"], IMAGE, "{at}: image");
        assert_eq!(c["command"][0], BINARY, "{at}: the image's binary");
        assert!(c["ports"].is_null(), "{at}: the agent listens on no port");
        let env = c["env"].as_array().cloned().unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e["name"] == "OUTPOST_CONFIG" && e["value"] == CONFIG_FILE),
            "{at}: OUTPOST_CONFIG={CONFIG_FILE}"
        );
        let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
        let config_mount = mounts
            .iter()
            .find(|m| m["mountPath"] == "/etc/outpost")
            .unwrap_or_else(|| panic!("{at}: the config is mounted at /etc/outpost"));
        assert_eq!(config_mount["readOnly"], true, "{at}: config read-only");
        assert!(
            mounts.iter().any(|m| m["mountPath"] == STATE_DIR),
            "{at}: the state directory is mounted at {STATE_DIR}"
        );
    }

    let main = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "outpost"))
        .unwrap_or_else(|| panic!("{file}: a container named outpost"));
    assert_eq!(main["command"], json!([BINARY, "run"]), "{file}: command");
    let probe = &main["livenessProbe"];
    assert_eq!(
        probe["exec"]["command"],
        json!([BINARY, "status", "--check"]),
        "{file}: liveness by exec"
    );
    assert!(
        probe["httpGet"].is_null() && probe["tcpSocket"].is_null() && probe["grpc"].is_null(),
        "{file}: the probe must not need a port"
    );
    for name in ["POD_NAME", "POD_NAMESPACE"] {
        assert!(
            main["env"].as_array().is_some_and(|e| e
                .iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"]["fieldPath"].is_string())),
            "{file}: {name} from the downward API"
        );
    }

    // The config volume serves agent.toml from the ConfigMap, at the path OUTPOST_CONFIG names.
    let volume = |mount_path: &str| {
        let name = main["volumeMounts"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["mountPath"] == mount_path))
            .map(|m| m["name"].clone())
            .unwrap_or_else(|| panic!("{file}: nothing mounted at {mount_path}"));
        pod["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{file}: no volume {name}"))
    };
    let config = volume("/etc/outpost");
    let sources = config["projected"]["sources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        sources
            .iter()
            .any(|s| s["configMap"]["name"] == "outpost-config"
                && s["configMap"]["items"].as_array().is_some_and(|i| i
                    .iter()
                    .any(|i| i["key"] == "agent.toml" && i["path"] == "agent.toml"))),
        "{file}: agent.toml from the ConfigMap outpost-config: {config}"
    );
    assert!(
        sources.iter().any(|s| s["secret"]["name"] == "outpost-git"),
        "{file}: the Git token beside the config: {config}"
    );
    // The keygen init container copies the key from where the optional Secret projects it.
    assert!(
        sources
            .iter()
            .any(|s| s["secret"]["name"] == "outpost-agent-key"
                && s["secret"]["optional"] == true
                && s["secret"]["items"] == json!([{"key": "agent.key", "path": "agent.key"}])),
        "{file}: the optional agent key Secret: {config}"
    );
    let keygen = pod["initContainers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "keygen"))
        .unwrap_or_else(|| panic!("{file}: no keygen init container"));
    assert_eq!(
        keygen["command"],
        json!([BINARY, "keygen", "--from", "/etc/outpost/agent.key"]),
        "{file}"
    );

    // No volume at all is an emptyDir: the state must survive a restart, and nothing else needs scratch space.
    for v in pod["volumes"].as_array().into_iter().flatten() {
        assert!(v["emptyDir"].is_null(), "{file}: emptyDir volume {v}");
    }
}

#[test]
fn the_deployment_is_hardened_and_keeps_its_state_on_the_claim() {
    let pod = pod_spec("deployment.yaml", "Deployment");
    assert_hardened("deployment.yaml", &pod);
    let deployment = object("deployment.yaml", "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "old and new pod must not share the store"
    );
    let state = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == "state"))
        .cloned()
        .expect("a volume named state");
    let claim = object("pvc.yaml", "PersistentVolumeClaim");
    assert_eq!(
        state["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"],
        "the state directory is pvc.yaml's claim: {state}"
    );
    assert_eq!(claim["metadata"]["namespace"], "outpost-system");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
}

#[test]
fn the_daemonset_is_hardened_and_keeps_its_state_on_the_host() {
    let pod = pod_spec("daemonset.yaml", "DaemonSet");
    assert_hardened("daemonset.yaml", &pod);
    let state = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == "state"))
        .cloned()
        .expect("a volume named state");
    assert_eq!(
        state["hostPath"]["path"], STATE_DIR,
        "the state directory is the host's: {state}"
    );
    let daemonset = object("daemonset.yaml", "DaemonSet");
    assert_eq!(
        daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 0,
        "old and new pod on a node must not share the store"
    );
}

/// Verbs granted on `resource` in `group` by the rules of the roles in `docs` of `kind` in `namespace`.
fn granted(
    docs: &[Value],
    kind: &str,
    namespace: Option<&str>,
    group: &str,
    resource: &str,
) -> Vec<String> {
    let mut verbs = Vec::new();
    for role in docs.iter().filter(|d| d["kind"] == kind) {
        if namespace.is_some_and(|ns| role["metadata"]["namespace"] != ns) {
            continue;
        }
        for rule in role["rules"].as_array().into_iter().flatten() {
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            if (groups.contains(&group) || groups.contains(&"*"))
                && (resources.contains(&resource) || resources.contains(&"*"))
            {
                verbs.extend(strings(&rule["verbs"]).into_iter().map(str::to_string));
            }
        }
    }
    verbs
}

fn bound_to_agent(docs: &[Value], binding_kind: &str, role_kind: &str, role: &Value) -> bool {
    docs.iter().filter(|d| d["kind"] == binding_kind).any(|b| {
        b["roleRef"]["kind"] == role_kind
            && b["roleRef"]["name"] == role["metadata"]["name"]
            && b["metadata"]["namespace"] == role["metadata"]["namespace"]
            && b["subjects"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "outpost"
                        && s["namespace"] == "outpost-system"
                })
            })
    })
}

fn assert_lease_granted(file: &str, docs: &[Value]) {
    let verbs = granted(
        docs,
        "Role",
        Some("outpost-system"),
        "coordination.k8s.io",
        "leases",
    );
    for verb in ["get", "create", "update"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "{file}: leases {verb} in outpost-system (granted: {verbs:?})"
        );
    }
    let lease_role = docs
        .iter()
        .find(|d| {
            d["kind"] == "Role"
                && d["metadata"]["namespace"] == "outpost-system"
                && d["rules"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|r| strings(&r["resources"]).contains(&"leases"))
                })
        })
        .unwrap_or_else(|| panic!("{file}: a Role for the lease"));
    assert!(
        bound_to_agent(docs, "RoleBinding", "Role", lease_role),
        "{file}: the lease Role is bound to outpost-system/outpost"
    );
}

#[test]
fn cluster_rbac_lets_the_agent_apply_any_kind_and_hold_the_lease() {
    let docs = file_docs("rbac-cluster.yaml");
    assert_lease_granted("rbac-cluster.yaml", &docs);
    let role = object("rbac-cluster.yaml", "ClusterRole");
    assert!(bound_to_agent(
        &docs,
        "ClusterRoleBinding",
        "ClusterRole",
        &role
    ));
    let verbs = granted(&docs, "ClusterRole", None, "any.example.com", "widgets");
    for verb in ["get", "list", "create", "patch", "delete"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "any kind: {verb} ({verbs:?})"
        );
    }
    assert!(
        !verbs.iter().any(|v| v == "*" || v == "watch"),
        "only the verbs the agent sends: {verbs:?}"
    );
}

#[test]
fn namespaced_rbac_stays_in_the_tenant_namespace() {
    let file = "rbac-namespaced.yaml";
    let docs = file_docs(file);
    assert_lease_granted(file, &docs);
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        assert!(
            kind == "Role" || kind == "RoleBinding",
            "{file}: only Roles and RoleBindings, found {kind}"
        );
        assert!(doc["metadata"]["namespace"].is_string(), "{file}: {doc}");
    }
    let tenant = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "tenant-a")
        .expect("a Role in tenant-a");
    assert!(bound_to_agent(&docs, "RoleBinding", "Role", tenant));
    for rule in tenant["rules"].as_array().into_iter().flatten() {
        for list in ["apiGroups", "resources", "verbs"] {
            assert!(
                !strings(&rule[list]).contains(&"*"),
                "{file}: wildcard in {list}: {rule}"
            );
        }
        for r in ["roles", "rolebindings"] {
            assert!(
                !strings(&rule["resources"]).contains(&r),
                "{file}: {r} would let the tenant's source grant itself anything"
            );
        }
    }
    for (group, resource) in [
        ("", "configmaps"),
        ("", "secrets"),
        ("", "services"),
        ("apps", "deployments"),
        ("batch", "jobs"),
        ("networking.k8s.io", "ingresses"),
    ] {
        let verbs = granted(&docs, "Role", Some("tenant-a"), group, resource);
        for verb in ["get", "list", "create", "patch", "delete"] {
            assert!(verbs.iter().any(|v| v == verb), "{resource}: {verb}");
        }
    }
}

#[test]
fn the_configmap_holds_a_config_the_agent_accepts() {
    let cm = object("configmap.yaml", "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "outpost-config");
    assert_eq!(cm["metadata"]["namespace"], "outpost-system");
    let text = cm["data"]["agent.toml"].as_str().expect("data.agent.toml");
    let config = Config::parse(Path::new(CONFIG_FILE), text)
        .unwrap_or_else(|e| panic!("configmap.yaml agent.toml: {e}"));
    assert_eq!(config.agent.state_dir, Path::new(STATE_DIR));
    assert!(!config.sources.is_empty());
    assert!(config
        .sources
        .iter()
        .all(|s| s.target == TargetSpec::Kubernetes));
    assert_eq!(config.kubernetes.kubeconfig, None, "in-cluster config");
    assert!(config.kubernetes.leader_election);
    assert_eq!(
        config.kubernetes.lease_name(&config.agent.id),
        "outpost-leader",
        "the Lease the RBAC names"
    );
    assert_eq!(
        config.kubernetes.lease_namespace, None,
        "the lease belongs in the pod's namespace, where the RBAC grants it"
    );
    // The token file is where the workloads project the Secret's key.
    let secret = object("secret.example.yaml", "Secret");
    for s in &config.sources {
        if let Some(token) = &s.auth.token_file {
            let key = token
                .strip_prefix("/etc/outpost")
                .expect("token under /etc/outpost")
                .to_string_lossy()
                .into_owned();
            assert!(
                secret["stringData"][&key].is_string(),
                "secret.example.yaml has no key {key}"
            );
        }
    }
}

#[test]
fn the_kustomization_installs_the_deployment_variant() {
    let kustomization: Value =
        serde_yaml_ng::from_str(&read(&manifests_dir().join("kustomization.yaml"))).unwrap();
    let resources = strings(&kustomization["resources"]);
    for f in &resources {
        assert!(
            manifests_dir().join(f).is_file(),
            "kustomization.yaml: {f} does not exist"
        );
    }
    for f in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "configmap.yaml",
        "pvc.yaml",
        "deployment.yaml",
    ] {
        assert!(resources.contains(&f), "kustomization.yaml misses {f}");
    }
    for f in ["daemonset.yaml", "secret.example.yaml"] {
        assert!(
            !resources.contains(&f),
            "kustomization.yaml must not hold {f}"
        );
    }
}
