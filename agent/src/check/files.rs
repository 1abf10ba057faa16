//! The offline checks: every file and folder the config names, read the way `outpost run` reads it.

use std::path::Path;

use super::Finding;
use crate::config::{Config, SourceConfig, TargetSpec};
use crate::identity;
use outpost_proto::keys::SigningKey;

pub fn all(config: &Config) -> Vec<Finding> {
    let mut out = vec![state_dir(&config.agent.state_dir)];
    out.push(agent_key(config));
    if let Some(upstream) = &config.upstream {
        if let Some(ca) = &upstream.ca_file {
            out.push(ca_file("[upstream] ca_file", ca));
        }
    }
    for source in &config.sources {
        out.extend(source_files(source));
    }
    if config
        .sources
        .iter()
        .any(|s| s.target == TargetSpec::Kubernetes)
    {
        out.push(kubeconfig(config));
    }
    out
}

/// The state directory must be writable by this user (or creatable), since the store and the Git caches live
/// there.
fn state_dir(dir: &Path) -> Finding {
    let subject = "state_dir";
    match writable_dir(dir) {
        Ok(true) => Finding::ok(subject, format!("{} is writable", dir.display())),
        Ok(false) => Finding::ok(
            subject,
            format!("{} does not exist yet; it will be created", dir.display()),
        ),
        Err(why) => Finding::fail(
            subject,
            format!(
                "{}: {why}; create it for the agent's user or set [agent] state_dir",
                dir.display()
            ),
        ),
    }
}

/// Why a folder cannot be written.
#[derive(Debug, thiserror::Error)]
enum NotWritable {
    #[error("cannot write in it ({0})")]
    Denied(std::io::Error),
    #[error("exists but is not a folder")]
    NotAFolder,
    #[error("no existing parent folder")]
    NoParent,
}

/// `Ok(true)`: exists and a file can be created in it; `Ok(false)`: missing but its nearest existing parent is
/// writable.
fn writable_dir(dir: &Path) -> Result<bool, NotWritable> {
    if dir.is_dir() {
        let probe = dir.join(format!(".outpost-check-{}", std::process::id()));
        return match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                Ok(true)
            }
            Err(e) => Err(NotWritable::Denied(e)),
        };
    }
    if dir.exists() {
        return Err(NotWritable::NotAFolder);
    }
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .ok_or(NotWritable::NoParent)?;
    writable_dir(parent).map(|_| false)
}

/// The key signs heartbeats: needed only with `[upstream]`.
fn agent_key(config: &Config) -> Finding {
    let path = config.agent.key_path();
    let subject = "agent key";
    match (SigningKey::load(&path), &config.upstream) {
        (Ok(key), _) => Finding::ok(
            subject,
            format!(
                "{} loads (fingerprint {})",
                path.display(),
                key.public_key().fingerprint()
            ),
        ),
        (Err(e), Some(_)) => Finding::fail(
            subject,
            identity::IdentityError::Missing { path, source: e }.to_string(),
        ),
        (Err(_), None) if !path.exists() => Finding::ok(
            subject,
            format!("none at {}; only needed with [upstream]", path.display()),
        ),
        (Err(e), None) => Finding::warn(
            subject,
            format!(
                "{e}; not used without [upstream], but `outpost keygen` will refuse to replace it"
            ),
        ),
    }
}

/// A PEM bundle with at least one certificate, as reqwest will read it.
fn ca_file(subject: &str, path: &Path) -> Finding {
    match std::fs::read(path) {
        Err(e) => Finding::fail(subject, format!("cannot read {}: {e}", path.display())),
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Finding::ok(
                subject,
                format!("{} holds {} certificate(s)", path.display(), certs.len()),
            ),
            Ok(_) => Finding::fail(
                subject,
                format!(
                    "{} holds no PEM certificate; give the CA's certificate in PEM form",
                    path.display()
                ),
            ),
            Err(e) => Finding::fail(subject, format!("{}: {e}", path.display())),
        },
    }
}

/// A file a credential is read from: it must be readable and not empty.
fn secret_file(subject: &str, path: &Path) -> Finding {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
            Finding::fail(subject, format!("{} is empty", path.display()))
        }
        Ok(_) => Finding::ok(subject, format!("{} is readable", path.display())),
        Err(e) => Finding::fail(subject, format!("cannot read {}: {e}", path.display())),
    }
}

fn source_files(s: &SourceConfig) -> Vec<Finding> {
    let at = |what: &str| format!("source {:?} {what}", s.name);
    let mut out = Vec::new();
    let auth = &s.auth;
    for (what, file) in [
        ("token_file", &auth.token_file),
        ("password_file", &auth.password_file),
        ("ssh_key_file", &auth.ssh_key_file),
        ("known_hosts_file", &auth.known_hosts_file),
    ] {
        if let Some(path) = file {
            out.push(secret_file(&at(what), path));
        }
    }
    if let Some(ca) = &s.ca_file {
        out.push(ca_file(&at("ca_file"), ca));
    }
    if let Some(policy) = &s.verify {
        // The key files were read and parsed when the config loaded; say what they hold.
        let signers = policy
            .allowed_signers
            .as_ref()
            .map(|a| format!("allowed_signers {}", a.path.display()));
        let pgp = policy
            .pgp_keys
            .as_ref()
            .map(|k| format!("pgp_keys {}", k.path.display()));
        let files: Vec<String> = [signers, pgp].into_iter().flatten().collect();
        out.push(Finding::ok(
            at("verify"),
            format!(
                "mode {}: {} read",
                policy.mode.as_str(),
                files.join(" and ")
            ),
        ));
    }
    if let TargetSpec::Directory(dir) = &s.target {
        out.push(match writable_dir(dir) {
            Ok(true) => Finding::ok(at("target"), format!("{} is writable", dir.display())),
            Ok(false) => Finding::ok(
                at("target"),
                format!("{} does not exist yet; it will be created", dir.display()),
            ),
            Err(why) => Finding::fail(
                at("target"),
                format!(
                    "{}: {why}; create it for the agent's user, or fix target",
                    dir.display()
                ),
            ),
        });
    }
    out
}

/// Where the Kubernetes connection comes from, in the order `outpost run` looks.
fn kubeconfig(config: &Config) -> Finding {
    let subject = "kubernetes credentials";
    if let Some(path) = &config.kubernetes.kubeconfig {
        return match kube::config::Kubeconfig::read_from(path) {
            Ok(_) => Finding::ok(
                subject,
                format!("[kubernetes] kubeconfig {} reads", path.display()),
            ),
            Err(e) => Finding::fail(
                subject,
                format!("[kubernetes] kubeconfig {}: {e}", path.display()),
            ),
        };
    }
    const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && Path::new(TOKEN).exists() {
        return Finding::ok(subject, "in-cluster service account");
    }
    match kube::config::Kubeconfig::read() {
        Ok(_) => Finding::ok(subject, "KUBECONFIG or ~/.kube/config reads"),
        Err(e) => Finding::fail(
            subject,
            format!("no cluster configured ({e}); set [kubernetes] kubeconfig, KUBECONFIG, or run the agent in the cluster"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "[agent]\nid = \"site\"\nstate_dir = \"{}/state\"\n[[source]]\nname = \"web\"\nurl = \"https://git.example/a.git\"\nbranch = \"main\"\ntarget = \"directory:{}/out\"\n{extra}",
            dir.display(),
            dir.display()
        );
        Config::parse(&dir.join("agent.toml"), &text).unwrap()
    }

    #[test]
    fn a_fresh_site_passes_with_folders_to_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let findings = all(&config(dir.path(), ""));
        assert!(
            findings.iter().all(|f| f.level == Level::Ok),
            "{findings:?}"
        );
        assert!(findings
            .iter()
            .any(|f| f.subject == "state_dir" && f.detail.contains("will be created")));
    }

    #[test]
    fn a_missing_token_file_and_a_bad_ca_file_fail_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let extra = "ca_file = \"ca.pem\"\n[source.auth]\ntoken_file = \"missing.token\"\n";
        let findings = all(&config(dir.path(), extra));
        let failed: Vec<&Finding> = findings.iter().filter(|f| f.level == Level::Fail).collect();
        assert_eq!(failed.len(), 2, "{findings:?}");
        assert!(failed.iter().any(
            |f| f.subject == "source \"web\" token_file" && f.detail.contains("missing.token")
        ));
        assert!(failed
            .iter()
            .any(|f| f.subject == "source \"web\" ca_file" && f.detail.contains("ca.pem")));
    }

    #[test]
    fn a_missing_agent_key_fails_only_with_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let key = outpost_proto::keys::Pkcs8Document::generate().unwrap();
        let hub = key.signing_key().unwrap().public_key();
        let with_hub = config(
            dir.path(),
            &format!("[upstream]\nurl = \"https://hub.example\"\nhub_key = \"{hub}\"\n"),
        );
        let finding = agent_key(&with_hub);
        assert_eq!(finding.level, Level::Fail, "{finding:?}");
        assert!(finding.detail.contains("outpost keygen"), "{finding:?}");
        assert_eq!(agent_key(&config(dir.path(), "")).level, Level::Ok);
    }

    #[test]
    fn a_target_under_a_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out"), "a file where the folder should be").unwrap();
        let findings = all(&config(dir.path(), ""));
        let target = findings
            .iter()
            .find(|f| f.subject == "source \"web\" target")
            .unwrap();
        assert_eq!(target.level, Level::Fail, "{target:?}");
    }
}
