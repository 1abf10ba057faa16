//! The config's checks, one test per rule.

use super::*;

const KEY_A: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const KEY_B: &str = "ed25519:Pcgey5ND1cgYMtUHz9oIMGbMfgf1dH0UuqKiChqCaIM=";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/outpost/hub.toml"))
}

fn problem(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_and_relative_paths() -> Result<(), ConfigError> {
    let config = parse("state_dir = \"state\"\nkey_file = \"keys/hub.key\"\n")?;
    assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(config.state_dir, Path::new("/etc/outpost/state"));
    assert_eq!(config.key_file, Path::new("/etc/outpost/keys/hub.key"));
    assert_eq!(config.max_body, MAX_BODY_BYTES);
    assert_eq!(config.freshness, Freshness::default());
    assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
    Ok(())
}

#[test]
fn unknown_keys_are_named() {
    let message = problem("listen = \"127.0.0.1:1\"\nlisten_port = 5\n");
    assert!(message.contains("listen_port"), "{message}");
    let message = problem("[[agent]]\nid = \"a\"\npublic_key = \"x\"\ncolor = 1\n");
    assert!(message.contains("color"), "{message}");
}

#[test]
fn plain_http_only_on_loopback() {
    let message = problem("listen = \"0.0.0.0:8443\"\n");
    assert!(
        message.contains("`listen`") && message.contains("[tls]"),
        "{message}"
    );
    assert!(parse("listen = \"[::1]:8443\"\n").is_ok());
    let with_tls =
        "listen = \"0.0.0.0:8443\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
    assert!(parse(with_tls).is_ok());
    let message = problem("listen = \"localhost:8443\"\n");
    assert!(message.contains("not an IP address"), "{message}");
}

#[test]
fn agents_are_checked() {
    let message = problem(&format!(
        "[[agent]]\nid = \"a b\"\npublic_key = \"{KEY_A}\"\n"
    ));
    assert!(message.contains("agent[0].id"), "{message}");
    let message = problem("[[agent]]\nid = \"a\"\npublic_key = \"ssh-ed25519 AAAA\"\n");
    assert!(
        message.contains("agent[0].public_key") && message.contains("outpost keygen"),
        "{message}"
    );
    let twice = format!("[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\n[[agent]]\nid = \"b\"\npublic_key = \"{KEY_A}\"\n");
    assert!(problem(&twice).contains("agent[1].public_key"));
    let both = format!("[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\nheartbeat_interval = \"10s\"\n[[agent]]\nid = \"b\"\npublic_key = \"{KEY_B}\"\n");
    let config = parse(&both).map_err(|e| e.to_string());
    assert_eq!(
        config.as_ref().map(|c| c.heartbeat_interval_of("a")),
        Ok(Duration::from_secs(10))
    );
    assert_eq!(
        config.as_ref().map(|c| c.heartbeat_interval_of("b")),
        Ok(Duration::from_secs(30))
    );
}

#[test]
fn assignments_pick_the_highest_generation() -> Result<(), ConfigError> {
    let text = r#"
[[assignment]]
agents = ["*"]
generation = 3
[[assignment.source]]
name = "platform"
url = "https://git.example.com/platform.git"
branch = "main"
target = "kubernetes"

[[assignment]]
agents = ["store-042"]
generation = 3
[[assignment.source]]
name = "special"
url = "https://git.example.com/special.git"
tag = "v1"
target = "directory:/srv/outpost"

[[assignment]]
agents = ["store-043"]
generation = 2
"#;
    let config = parse(text)?;
    let name = |id: &str| {
        config
            .assignments
            .for_agent(id)
            .map(|a| (a.generation, a.sources.first().map(|s| s.name.clone())))
    };
    assert_eq!(name("store-042"), Some((3, Some("special".into()))));
    assert_eq!(name("store-043"), Some((3, Some("platform".into()))));
    assert_eq!(name("other"), Some((3, Some("platform".into()))));
    let none = parse("")?;
    assert!(none.assignments.for_agent("store-042").is_none());
    Ok(())
}

#[test]
fn assignments_are_validated() {
    let secret = "[[assignment]]\nagents = [\"*\"]\ngeneration = 1\n[[assignment.source]]\nname = \"a\"\nurl = \"https://u:p@h/r\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n";
    let message = problem(secret);
    assert!(
        message.contains("assignment[0]") && message.contains("password"),
        "{message}"
    );
    let token = "[[assignment]]\nagents = [\"*\"]\ngeneration = 1\n[[assignment.source]]\nname = \"a\"\nurl = \"https://h/r\"\nbranch = \"main\"\ntarget = \"kubernetes\"\ntoken = \"x\"\n";
    assert!(problem(token).contains("token"));
    let zero = "[[assignment]]\nagents = [\"*\"]\ngeneration = 0\n";
    assert!(problem(zero).contains("generation"));
    let clash = "[[assignment]]\nagents = [\"a\", \"b\"]\ngeneration = 4\n[[assignment]]\nagents = [\"b\"]\ngeneration = 4\n";
    let message = problem(clash);
    assert!(
        message.contains("assignment[1].generation") && message.contains("\"b\""),
        "{message}"
    );
    assert!(
        problem("[[assignment]]\nagents = []\ngeneration = 1\n").contains("assignment[0].agents")
    );
}

#[test]
fn names_are_host_and_port() -> Result<(), ConfigError> {
    assert_eq!(parse("")?.names, None);
    let config = parse("names = [\"hub.example.com:8443\", \"hub.example.com\"]\n")?;
    assert_eq!(
        config.names,
        Some(vec![
            "hub.example.com:8443".into(),
            "hub.example.com".into()
        ])
    );
    let message = problem("names = [\"https://hub.example.com\"]\n");
    assert!(message.contains("names[0]"), "{message}");
    assert!(problem("names = []\n").contains("`names` is empty"));
    Ok(())
}

#[test]
fn units() {
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    for bad in ["", "5", "m", "5 minutes", "-1s", "1.5s"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(parse_size("1MiB"), Some(1 << 20));
    assert_eq!(parse_size("2048"), Some(2048));
    assert_eq!(parse_size("1GiB"), None);
    assert_eq!(parse_size("MiB"), None);
    assert!(problem("max_body = \"2MiB\"\n").contains("max_body"));
    assert!(problem("freshness = \"2h\"\n").contains("freshness"));
}
