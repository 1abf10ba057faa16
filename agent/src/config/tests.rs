use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/outpost/agent.toml"), text).map_err(|e| e.to_string())
}

const MINIMAL: &str = r#"
    [agent]
    id = "store-042"
    state_dir = "/var/lib/outpost"
    [[source]]
    name = "platform"
    url = "https://git.example.com/fleet/platform.git"
    branch = "main"
    path = "clusters/store-042/"
    target = "directory:/srv/manifests"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    let s = &c.sources[0];
    assert_eq!(s.git_ref, GitRef::Branch("main".into()));
    assert_eq!(s.path, "clusters/store-042");
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.timeout, Duration::from_secs(120));
    assert_eq!(s.target, TargetSpec::Directory("/srv/manifests".into()));
    assert!(s.prune);
    assert_eq!(c.agent.limits, Limits::default());
}

#[test]
fn transfer_and_repository_size_limits() {
    let with = |line: &str| parse(&MINIMAL.replace("[[source]]", &format!("{line}\n[[source]]")));
    let c = with("max_pack_size = \"64MiB\"\nmax_repo_size = \"2GiB\"").unwrap();
    assert_eq!(c.agent.limits.max_pack_size, 64 << 20);
    assert_eq!(c.agent.limits.max_repo_size, 2 << 30);
    let err = with("max_repo_size = \"0\"").unwrap_err();
    assert!(
        err.contains("max_repo_size") && err.contains("above zero"),
        "{err}"
    );
    let err = with("max_pack_size = \"lots\"").unwrap_err();
    assert!(err.contains("max_pack_size = \"lots\""), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let err =
        parse(&MINIMAL.replace("branch = \"main\"", "branch = \"main\"\nbrnach = 1")).unwrap_err();
    assert!(err.contains("brnach"), "{err}");
    assert!(err.contains("remove the key"), "{err}");
    assert!(
        err.contains("line "),
        "the line of the bad key is named: {err}"
    );
}

#[test]
fn exactly_one_ref() {
    let err = parse(&MINIMAL.replace("branch = \"main\"", "branch = \"main\"\ntag = \"v1\""))
        .unwrap_err();
    assert!(
        err.contains("source \"platform\": set exactly one of branch, tag, semver, commit"),
        "{err}"
    );
    let err = parse(&MINIMAL.replace("branch = \"main\"", "")).unwrap_err();
    assert!(err.contains("set exactly one of"), "{err}");
}

#[test]
fn bad_values_name_key_value_and_fix() {
    let err = parse(&MINIMAL.replace(
        "branch = \"main\"",
        "branch = \"main\"\ninterval = \"5 minutes\"",
    ))
    .unwrap_err();
    assert!(
        err.contains("interval") && err.contains("5 minutes") && err.contains("\"5m\""),
        "{err}"
    );
    let err = parse(&MINIMAL.replace("directory:/srv/manifests", "folder")).unwrap_err();
    assert!(
        err.contains("target") && err.contains("directory:/path/to/folder"),
        "{err}"
    );
    let err = parse(
        &MINIMAL
            .replace("main\"", "main\"\nsemver = \"\"")
            .replace("branch = \"main\"", ""),
    )
    .unwrap_err();
    assert!(err.contains("semver"), "{err}");
    let err = parse(&MINIMAL.replace("clusters/store-042/", "../etc")).unwrap_err();
    assert!(err.contains("path") && err.contains(".."), "{err}");
}

#[test]
fn duplicate_names_and_bad_names() {
    let twice = format!("{MINIMAL}\n[[source]]\nname = \"platform\"\nurl = \"file:///x\"\nbranch = \"b\"\ntarget = \"directory:/d\"\n");
    assert!(parse(&twice).unwrap_err().contains("used twice"));
    let err = parse(&MINIMAL.replace("name = \"platform\"", "name = \"Plat/form\"")).unwrap_err();
    assert!(err.contains("lowercase"), "{err}");
}

#[test]
fn verify_section_is_typed_and_its_files_read_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    std::fs::write(
        dir.path().join("signers"),
        format!("ops@x ssh-ed25519 {key}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken"), "# ok\nops@x ssh-ed25519 !!!\n").unwrap();
    let load = |extra: &str, reference: &str| {
        let text = MINIMAL.replace("branch = \"main\"", reference) + "\n[source.verify]\n" + extra;
        Config::parse(&config, &text).map_err(|e| e.to_string())
    };
    // Relative to the config file, like every other path.
    let ok = load(
        "mode = \"head\"\nallowed_signers = \"signers\"\n",
        "branch = \"main\"",
    )
    .unwrap();
    let policy = ok.sources[0].verify.as_ref().unwrap();
    assert_eq!(policy.mode, crate::signature::Mode::Head);
    assert_eq!(
        policy.allowed_signers.as_ref().unwrap().path,
        dir.path().join("signers")
    );
    assert!(load(
        "mode = \"tag\"\nallowed_signers = \"signers\"\n",
        "semver = \">=1\""
    )
    .is_ok());

    let err = load(
        "mode = \"tag\"\nallowed_signers = \"signers\"\n",
        "branch = \"main\"",
    )
    .unwrap_err();
    assert!(
        err.contains("branch main") && err.contains("mode = \"head\""),
        "{err}"
    );
    let err = load("mode = \"head\"\n", "branch = \"main\"").unwrap_err();
    assert!(
        err.contains("allowed_signers") && err.contains("pgp_keys"),
        "{err}"
    );
    let err = load("mode = \"all\"\npgp_keys = \"k\"\n", "branch = \"main\"").unwrap_err();
    assert!(err.contains("tag_and_head"), "{err}");
    let err = load(
        "mode = \"head\"\nallowed_signer = \"signers\"\n",
        "branch = \"main\"",
    )
    .unwrap_err();
    assert!(err.contains("unknown field"), "{err}");
    let err = load(
        "mode = \"head\"\nallowed_signers = \"broken\"\n",
        "branch = \"main\"",
    )
    .unwrap_err();
    assert!(
        err.contains("broken line 2") && err.contains("base64"),
        "{err}"
    );
    let err = load(
        "mode = \"head\"\npgp_keys = \"missing.asc\"\n",
        "branch = \"main\"",
    )
    .unwrap_err();
    assert!(
        err.contains("missing.asc") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn kubernetes_section_has_defaults_and_checks_its_values() {
    let ok = parse(&MINIMAL.replace("directory:/srv/manifests", "kubernetes")).unwrap();
    assert_eq!(ok.sources[0].target, TargetSpec::Kubernetes);
    assert_eq!(ok.kubernetes.field_manager, "outpost");
    assert_eq!(ok.kubernetes.lease_duration, Duration::from_secs(15));
    assert_eq!(ok.kubernetes.renew_deadline, Duration::from_secs(10));
    assert!(ok.kubernetes.leader_election);
    let k = parse(&format!(
        "{MINIMAL}\n[kubernetes]\nkubeconfig = \"k3s.yaml\"\nconcurrency = 4\nleader_election = false\n"
    ))
    .unwrap();
    assert!(
        k.kubernetes.kubeconfig.unwrap().is_absolute(),
        "relative paths follow the config file"
    );
    assert_eq!(k.kubernetes.concurrency, 4);
    let err = parse(&format!(
        "{MINIMAL}\n[kubernetes]\nrenew_deadline = \"20s\"\n"
    ))
    .unwrap_err();
    assert!(
        err.contains("renew_deadline") && err.contains("shorter"),
        "{err}"
    );
    let err = parse(&format!("{MINIMAL}\n[kubernetes]\nconcurency = 4\n")).unwrap_err();
    assert!(err.contains("concurency"), "{err}");
    let err = parse(&format!(
        "{MINIMAL}\n[kubernetes]\nlease_name = \"Leader\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("lease_name"), "{err}");
}

#[test]
fn each_agent_gets_its_own_lease_unless_one_is_named() {
    let k = parse(MINIMAL).unwrap().kubernetes;
    assert_eq!(k.lease_name("store-042"), "outpost-leader-store-042");
    assert_eq!(
        k.lease_name("store-042"),
        k.lease_name("store-042"),
        "replicas of one agent share it"
    );
    // Ids that are not DNS labels as they stand: still valid names, and still distinct.
    let odd = ["Store_042", "store.042", "store-042-", &"x".repeat(120)];
    let mut names: Vec<String> = odd.iter().map(|id| k.lease_name(id)).collect();
    names.push(k.lease_name("store-042"));
    for name in &names {
        assert!(
            name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.ends_with('-'),
            "{name}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    let named = parse(&format!(
        "{MINIMAL}\n[kubernetes]\nlease_name = \"outpost-leader\"\n"
    ))
    .unwrap()
    .kubernetes;
    assert_eq!(named.lease_name("store-042"), "outpost-leader");
}

#[test]
fn upstream_needs_a_url_and_the_hub_key() {
    let key = "ed25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
    let ok = parse(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"https://hub.example.com/\"\nhub_key = \"{key}\"\n"
    ))
    .unwrap();
    let up = ok.upstream.unwrap();
    assert_eq!(up.url, "https://hub.example.com");
    assert_eq!(up.heartbeat_interval, Duration::from_secs(30));
    let err = parse(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"hub.example.com\"\nhub_key = \"{key}\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("[upstream] url"), "{err}");
    let err = parse(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"https://h\"\nhub_key = \"rsa:xyz\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("hub_key"), "{err}");
}

#[test]
fn auth_combinations() {
    let with_auth = |a: &str| parse(&format!("{MINIMAL}\n[source.auth]\n{a}\n"));
    assert!(with_auth("token_file = \"/t\"").is_ok());
    assert!(with_auth("username = \"u\"")
        .unwrap_err()
        .contains("password_file"));
    assert!(
        with_auth("ssh_key_file = \"/k\"\nknown_hosts_file = \"/kh\"")
            .unwrap_err()
            .contains("ssh")
    );
    let ssh = MINIMAL.replace(
        "https://git.example.com/fleet/platform.git",
        "git@example.com:fleet/platform.git",
    );
    let err = parse(&format!("{ssh}\n[source.auth]\nssh_key_file = \"/k\"\n")).unwrap_err();
    assert!(err.contains("known_hosts_file"), "{err}");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let c = parse(
        &MINIMAL
            .replace("/var/lib/outpost", "state")
            .replace("directory:/srv/manifests", "directory:out"),
    )
    .unwrap();
    assert_eq!(c.agent.state_dir, PathBuf::from("/etc/outpost/state"));
    assert_eq!(
        c.sources[0].target,
        TargetSpec::Directory("/etc/outpost/out".into())
    );
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(parse_duration("1x"), None);
    assert_eq!(parse_size("8MiB"), Some(8 << 20));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("1 TB"), None);
}

#[test]
fn directory_layout_is_checked_against_the_target() {
    assert_eq!(
        parse(MINIMAL).unwrap().sources[0].layout,
        DirectoryLayout::File
    );
    let with = |line: &str| parse(&format!("{MINIMAL}    {line}\n"));
    assert_eq!(
        with("layout = \"kustomization\"").unwrap().sources[0].layout,
        DirectoryLayout::Kustomization
    );
    assert_eq!(
        with("layout = \"file\"").unwrap().sources[0].layout,
        DirectoryLayout::File
    );
    let err = with("layout = \"folders\"").unwrap_err();
    assert!(
        err.contains("source \"platform\": layout = \"folders\"")
            && err.contains("\"file\"")
            && err.contains("\"kustomization\""),
        "{err}"
    );
    let err = parse(&format!(
        "{}    layout = \"kustomization\"\n",
        MINIMAL.replace("directory:/srv/manifests", "kubernetes")
    ))
    .unwrap_err();
    assert!(
        err.contains("layout") && err.contains("only a directory target"),
        "{err}"
    );
}

/// `${var}` substitution is Flux-like opt-in: a source without vars of its own and without `substitute = true`
/// gets none, so shell scripts and CRD descriptions holding `${X}` are applied as written.
#[test]
fn substitution_is_opt_in_per_source() {
    let with = |line: &str| parse(&format!("{MINIMAL}{line}\n"));
    let plain = with("").unwrap();
    assert!(!plain.sources[0].substitute);
    assert_eq!(plain.sources[0].vars(&plain.agent), None);
    let by_vars = with("vars = { site = \"042\" }").unwrap();
    assert!(by_vars.sources[0].substitute);
    let vars = by_vars.sources[0].vars(&by_vars.agent).unwrap();
    assert_eq!(vars["site"], "042");
    assert_eq!(vars["OUTPOST_SOURCE"], "platform");
    assert!(with("substitute = true").unwrap().sources[0].substitute);
    let err = with("substitute = false\nvars = { site = \"042\" }").unwrap_err();
    assert!(
        err.contains("substitute = false") && err.contains("vars"),
        "{err}"
    );
}
