//! A Git token must never leave its file: not in any log line at any level or in either format (trace included,
//! where the HTTP and TLS libraries log too), not in the status, not anywhere in the state directory.

mod common;

use common::{configmap, files_holding, https_token_site};
use outpost_tests::{GitHttpServer, GitRepo};

const GOOD: &str = "tok-GOOD-4f1c9a7e2b";
const WRONG: &str = "tok-WRONG-8d3e6b1f0a";

#[test]
fn the_token_is_in_no_log_line_at_any_level_in_either_format_nor_in_the_store() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("app 1");
    let server = GitHttpServer::builder(repo.serve_dir())
        .tls(true)
        .require_bearer(GOOD)
        .start();

    let mut checked = 0;
    for format in ["text", "json"] {
        for level in ["error", "warn", "info", "debug", "trace"] {
            let (site, token) = https_token_site(&server, &repo, GOOD);
            let flags = ["--log-format", format, "--log-level", level];

            // A full sync with the right token, then a failing fetch with a wrong one.
            let ok = site.run(&[&flags[..], &["sync"]].concat());
            assert!(
                ok.status.success(),
                "{format}/{level}: the first sync works"
            );
            std::fs::write(&token, format!("{WRONG}\n")).unwrap();
            repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
            repo.commit("app 2");
            let failed = site.run(&[&flags[..], &["sync"]].concat());
            assert!(
                !failed.status.success(),
                "{format}/{level}: a wrong token fails"
            );
            let status = site.run(&["status", "--json"]);

            for out in [&ok, &failed, &status] {
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                for secret in [GOOD, WRONG] {
                    assert!(
                        !said.contains(secret),
                        "{format}/{level}: the token is in the output:\n{said}"
                    );
                }
                checked += said.lines().count();
            }
            if level == "error" {
                // The failure is still reported, with the fix, at the quietest level.
                let said = String::from_utf8_lossy(&failed.stdout);
                assert!(said.contains("token_file"), "{format}/{level}: {said}");
            }
            for secret in [GOOD, WRONG] {
                let holding = files_holding(&site.state_dir(), secret);
                assert!(holding.is_empty(), "{format}/{level}: token in {holding:?}");
            }
        }
    }
    // Trace output is large; make sure the loop really read output rather than nothing.
    assert!(checked > 100, "only {checked} lines of output were checked");
}
