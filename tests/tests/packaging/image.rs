//! The container image: `packaging/Containerfile` must build a scratch image that runs the binary the
//! workloads name, as a user that is not root.

use super::*;

#[test]
fn the_image_is_scratch_non_root_and_runs_the_binary_the_workloads_name() {
    let all = outpost_tests::support::containerfile_instructions(&read(
        &packaging_dir().join("Containerfile"),
    ));
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("a FROM");
    assert_eq!(
        all[last_from].1, "scratch",
        "the final stage is FROM scratch"
    );
    let last = &all[last_from + 1..];
    let one = |keyword: &str| {
        let found: Vec<&String> = last
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {keyword} in the final stage: {found:?}"
        );
        found[0].clone()
    };
    let user = one("USER");
    let (uid, gid) = user.split_once(':').unwrap_or((&user, ""));
    for id in [uid, gid] {
        assert!(
            id.parse::<u32>().is_ok_and(|n| n != 0),
            "USER {user}: numeric and not root, so runAsNonRoot can check it"
        );
    }
    assert_eq!(user, "65532:65532", "the uid/gid the workloads run as");
    let entrypoint: Value =
        serde_json::from_str(&one("ENTRYPOINT")).expect("ENTRYPOINT in JSON form");
    assert_eq!(entrypoint, json!([BINARY]));
    let cmd: Value = serde_json::from_str(&one("CMD")).expect("CMD in JSON form");
    assert_eq!(cmd, json!(["run"]));
    assert!(
        last.iter()
            .any(|(k, v)| k == "COPY" && v.ends_with(&format!(" {BINARY}"))),
        "the binary is copied to {BINARY}"
    );
    for (file, kind) in [
        ("deployment.yaml", "Deployment"),
        ("daemonset.yaml", "DaemonSet"),
    ] {
        let pod = pod_spec(file, kind);
        for c in pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten()
        {
            assert_eq!(
                c["command"][0], entrypoint[0],
                "{file}: {} runs the image's binary",
                c["name"]
            );
        }
    }
}
