//! The API server a Kubernetes end-to-end test talks to: the test double, or the real cluster named by
//! `OUTPOST_E2E_KUBECONFIG`, with the few operations the scenarios need (read an object, edit it as another
//! field manager), and the repositories and sites the scenarios start from.

use std::path::PathBuf;
use std::process::Command;

use outpost_tests::{GitRepo, KubeDouble};
use serde_json::Value;

use super::common::Site;

/// The API server a test talks to.
pub struct Cluster {
    pub double: Option<KubeDouble>,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    /// This test's namespace (created by the bundle, deleted at the end on a real cluster).
    pub ns: String,
    /// A CRD group of this test's own.
    pub group: String,
    /// Leases in `default` that this test's agents made under their derived names, deleted at the end.
    pub leases: std::sync::Mutex<Vec<String>>,
    /// More namespaces of this test's (a second agent's), deleted at the end.
    pub namespaces: std::sync::Mutex<Vec<String>>,
}

impl Cluster {
    pub fn start(test: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let suffix = format!("{:06x}", rand_u32() & 0xff_ffff);
        let (double, kubeconfig) = match std::env::var_os("OUTPOST_E2E_KUBECONFIG") {
            Some(k) => {
                eprintln!(
                    "running against the real cluster in {}",
                    k.to_string_lossy()
                );
                (None, PathBuf::from(k))
            }
            None => {
                let d = KubeDouble::start();
                let k = d.write_kubeconfig(dir.path());
                (Some(d), k)
            }
        };
        Cluster {
            double,
            kubeconfig,
            _dir: dir,
            ns: format!("e2e-{test}-{suffix}"),
            group: format!("e2e{suffix}.outpost.dev"),
            leases: Default::default(),
            namespaces: Default::default(),
        }
    }

    pub fn double(&self) -> Option<&KubeDouble> {
        self.double.as_ref()
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl is installed")
    }

    /// An object by API path, `None` when it does not exist.
    pub fn get(&self, path: &str) -> Option<Value> {
        if let Some(d) = self.double() {
            return d.get(path);
        }
        let out = self.kubectl(&["get", "--raw", path]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
    }

    pub fn cm(&self, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/namespaces/{}/configmaps/{name}", self.ns))
    }

    pub fn cm_value(&self, name: &str) -> Option<String> {
        self.cm(name)
            .and_then(|o| o["data"]["version"].as_str().map(str::to_string))
    }

    /// A merge patch of a namespaced object by another field manager (someone at the site with kubectl).
    pub fn edit(&self, api: &str, resource: &str, name: &str, patch: Value, manager: &str) {
        if let Some(d) = self.double() {
            let path = format!(
                "{api}/namespaces/{}/{resource}/{name}?fieldManager={manager}",
                self.ns
            );
            let (status, body) = d.request(
                "PATCH",
                &path,
                Some("application/merge-patch+json"),
                Some(&patch),
            );
            assert_eq!(status, 200, "edit {path}: {body}");
            return;
        }
        let out = self.kubectl(&[
            "patch",
            resource,
            name,
            "-n",
            &self.ns,
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
            "--field-manager",
            manager,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `[kubernetes]` table for agents of this test.
    pub fn table(&self) -> String {
        format!(
            "[kubernetes]\nkubeconfig = \"{}\"\nlease_namespace = \"default\"\nlease_name = \"{}\"\nlease_duration = \"4s\"\nrenew_deadline = \"3s\"\n",
            self.kubeconfig.display(),
            self.ns
        )
    }

    /// A site with one source `apps` from `repo`, applied to this cluster. Its agent id is this test's own: tests
    /// running beside it on one real cluster are other agents, whose objects it must never touch.
    pub fn site(&self, repo: &GitRepo, extra: &str) -> Site {
        self.agent_site(&self.ns, repo, &self.ns, extra)
    }

    /// Like `site`, for agent `id` (another agent on the same cluster, or a replica when `id` repeats) whose
    /// source `apps` applies into namespace `ns`.
    pub fn agent_site(&self, id: &str, repo: &GitRepo, ns: &str, extra: &str) -> Site {
        let mut site = Site::new();
        site.agent_id = id.to_string();
        set_source_in(&mut site, repo, ns, extra);
        site.tables = self.table();
        site
    }

    /// The `[kubernetes]` table with leader election on and no lease named: each agent takes the lease its id
    /// gives it (`outpost-leader-<id>`), which is deleted when the test ends.
    pub fn table_with_default_lease(&self, agent_id: &str) -> String {
        self.leases
            .lock()
            .unwrap()
            .push(format!("outpost-leader-{agent_id}"));
        format!(
            "[kubernetes]\nkubeconfig = \"{}\"\nlease_namespace = \"default\"\nlease_duration = \"4s\"\nrenew_deadline = \"3s\"\n",
            self.kubeconfig.display()
        )
    }

    /// Makes `apps` the site's only source, with `extra` settings (the same agent, changed configuration).
    pub fn set_source(&self, site: &mut Site, repo: &GitRepo, extra: &str) {
        set_source_in(site, repo, &self.ns, extra);
    }

    pub fn namespace_yaml(&self) -> String {
        namespace_yaml(&self.ns)
    }

    /// Another namespace of this test's, `<ns>-<suffix>`, deleted when the test ends.
    pub fn other_namespace(&self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.ns);
        self.namespaces.lock().unwrap().push(ns.clone());
        ns
    }

    /// Deletes a namespaced object of this test's namespace, as someone at the site would; says what happened.
    pub fn kubectl_or_double_delete(&self, resource: &str, name: &str) -> String {
        if let Some(d) = self.double() {
            let path = format!("/api/v1/namespaces/{}/{resource}/{name}", self.ns);
            let (status, body) = d.request("DELETE", &path, None, None);
            return format!("DELETE {path}: {status} {body}");
        }
        let out = self.kubectl(&["delete", resource, name, "-n", &self.ns, "--wait=true"]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// A ConfigMap of this cluster by namespace and name.
    pub fn cm_in(&self, ns: &str, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/namespaces/{ns}/configmaps/{name}"))
    }

    pub fn namespace(&self, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/namespaces/{name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.double.is_none() {
            let _ = self.kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
            for ns in self.namespaces.lock().unwrap().iter() {
                let _ = self.kubectl(&["delete", "namespace", ns, "--wait=false"]);
            }
            let _ = self.kubectl(&[
                "delete",
                "crd",
                &format!("widgets.{}", self.group),
                "--ignore-not-found",
            ]);
            let mut leases = self.leases.lock().unwrap().clone();
            leases.push(self.ns.clone());
            for lease in leases {
                let _ = self.kubectl(&[
                    "delete",
                    "lease",
                    "-n",
                    "default",
                    &lease,
                    "--ignore-not-found",
                ]);
            }
        }
    }
}

pub fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u32::from_le_bytes(b)
}

/// Makes `apps` the site's only source, applied into namespace `ns`.
fn set_source_in(site: &mut Site, repo: &GitRepo, ns: &str, extra: &str) {
    site.sources.clear();
    site.source_to(
        "apps",
        &repo.file_url(),
        &format!("branch = \"{}\"", repo.branch()),
        ".",
        "kubernetes",
        &format!("namespace = \"{ns}\"\n{extra}"),
    );
}

pub fn namespace_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// A repository holding the test namespace and the given files.
pub fn repo_with(c: &Cluster, files: &[(&str, String)]) -> GitRepo {
    let repo = GitRepo::new();
    repo.write("namespace.yaml", c.namespace_yaml().as_bytes());
    for (name, text) in files {
        repo.write(name, text.as_bytes());
    }
    repo.commit("initial");
    repo
}

pub fn deployment(name: &str, selector: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {selector}\n  template:\n    metadata:\n      labels:\n        app: {selector}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n"
    )
}
