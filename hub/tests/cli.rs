//! The real binary's errors: each names the thing that is wrong and what to do, with the cause underneath.

use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn hub(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_outpost-hub"))
        .args(args)
        .env("OUTPOST_HUB_LOG", "warn")
        .output()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn command_errors_name_the_thing_and_the_fix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("state").display(),
            dir.path().join("hub.key").display()
        ),
    )?;
    let config = config.to_str().ok_or("path")?;

    let migrate = failed(&hub(&["migrate", "--config", config])?);
    assert!(
        migrate.contains("uses the embedded store, which migrates itself; `migrate` is for [store] backend = \"postgres\""),
        "{migrate}"
    );

    let taken = dir.path().join("taken.jsonl");
    std::fs::write(&taken, "")?;
    let export = failed(&hub(&[
        "export",
        "--config",
        config,
        "--out",
        taken.to_str().ok_or("path")?,
    ])?);
    assert!(
        export.contains(&format!("cannot create {}", taken.display()))
            && export.contains("name a new file (export never overwrites one)"),
        "{export}"
    );

    let missing = dir.path().join("missing.jsonl");
    let import = failed(&hub(&[
        "import",
        "--config",
        config,
        "--in",
        missing.to_str().ok_or("path")?,
    ])?);
    assert!(
        import.contains("name the file `outpost-hub export` wrote"),
        "{import}"
    );

    let name = failed(&hub(&[
        "credential",
        "create",
        "--role",
        "read",
        "--name",
        "bad\tname",
        "--token-file",
        dir.path().join("t").to_str().ok_or("path")?,
    ])?);
    assert!(
        name.contains("--name must be a short printable name"),
        "{name}"
    );

    // A module's error keeps its cause on the next line.
    let absent = failed(&hub(&["serve", "--config", "/nonexistent/hub.toml"])?);
    assert!(absent.starts_with("outpost-hub: "), "{absent}");
    assert!(absent.contains("/nonexistent/hub.toml"), "{absent}");
    Ok(())
}
