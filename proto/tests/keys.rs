//! Ed25519 keys: files that stay private, the `ed25519:` text form, and fingerprints that match what
//! `ssh-keygen -lf` prints (checked against the real tool when it is installed), and keys made by
//! `openssl genpkey`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use outpost_proto::keys::{KeyError, Pkcs8Document, PublicKey, SigningKey};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// RFC 9421 Appendix B.1.4's `test-key-ed25519` (a PKCS#8 v1 document, as OpenSSL writes them).
const RFC_PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
const RFC_PUBLIC_KEY: &str = "ed25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

fn mode(path: &Path) -> Result<u32, std::io::Error> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), std::io::Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[test]
fn generated_key_is_saved_private_and_loads_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.key");
    let document = Pkcs8Document::generate()?;
    document.save(&path)?;
    assert_eq!(mode(&path)?, 0o600);
    assert!(fs::read_to_string(&path)?.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    let loaded = SigningKey::load(&path)?;
    let original = document.signing_key()?;
    assert_eq!(loaded.public_key(), original.public_key());
    let signature = loaded.sign(b"heartbeat");
    assert!(original.public_key().verify(b"heartbeat", &signature));
    assert!(!original.public_key().verify(b"heartbeat!", &signature));
    Ok(())
}

#[test]
fn saving_never_overwrites_a_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.key");
    Pkcs8Document::generate()?.save(&path)?;
    let before = fs::read(&path)?;
    let result = Pkcs8Document::generate()?.save(&path);
    assert!(
        matches!(result, Err(KeyError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(fs::read(&path)?, before);
    Ok(())
}

#[test]
fn loose_permissions_are_refused_with_the_fix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.key");
    Pkcs8Document::generate()?.save(&path)?;
    for loose in [0o644, 0o640, 0o604, 0o660, 0o700, 0o666] {
        set_mode(&path, loose)?;
        match SigningKey::load(&path) {
            Err(error @ KeyError::Permissions { .. }) => {
                let message = error.to_string();
                let shown = path.display().to_string();
                assert!(message.contains(&shown), "{message}");
                assert!(message.contains(&format!("{loose:04o}")), "{message}");
                assert!(message.contains(&format!("chmod 600 {shown}")), "{message}");
            }
            // 0700 gives nothing to group or others, so it is as private as 0600.
            Ok(_) if loose & 0o077 == 0 => {}
            other => return Err(format!("mode {loose:o} gave {other:?}").into()),
        }
    }
    set_mode(&path, 0o400)?;
    SigningKey::load(&path)?;
    Ok(())
}

#[test]
fn unreadable_or_foreign_files_get_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = SigningKey::load(&dir.path().join("absent.key"));
    assert!(
        matches!(missing, Err(KeyError::Io { action: "open", .. })),
        "{missing:?}"
    );

    let garbage = dir.path().join("garbage.key");
    fs::write(&garbage, "not a key\n")?;
    set_mode(&garbage, 0o600)?;
    let error = SigningKey::load(&garbage).err().ok_or("garbage loaded")?;
    assert!(matches!(error, KeyError::Format { .. }), "{error:?}");
    assert!(error.to_string().contains("garbage.key"), "{error}");

    let openssh = dir.path().join("id_ed25519");
    fs::write(
        &openssh,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n",
    )?;
    set_mode(&openssh, 0o600)?;
    let error = SigningKey::load(&openssh)
        .err()
        .ok_or("OpenSSH key loaded")?;
    assert!(error.to_string().contains("OpenSSH"), "{error}");

    let directory = dir.path().join("keys");
    fs::create_dir(&directory)?;
    set_mode(&directory, 0o700)?;
    let result = SigningKey::load(&directory);
    assert!(
        matches!(result, Err(KeyError::NotAFile { .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn pkcs8_v1_pem_and_der_both_load() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pem = dir.path().join("rfc.pem");
    fs::write(&pem, RFC_PRIVATE_KEY_PEM)?;
    set_mode(&pem, 0o600)?;
    let key = SigningKey::load(&pem)?;
    assert_eq!(key.public_key().to_string(), RFC_PUBLIC_KEY);

    let der = dir.path().join("rfc.der");
    fs::write(
        &der,
        Pkcs8Document::from_pem_or_der(RFC_PRIVATE_KEY_PEM.as_bytes())?.as_der(),
    )?;
    set_mode(&der, 0o600)?;
    assert_eq!(
        SigningKey::load(&der)?.public_key().to_string(),
        RFC_PUBLIC_KEY
    );
    Ok(())
}

#[test]
fn public_key_text_form_round_trips_and_rejects_bad_text() -> TestResult {
    let key: PublicKey = RFC_PUBLIC_KEY.parse()?;
    assert_eq!(key.to_string(), RFC_PUBLIC_KEY);
    for bad in [
        "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=",
        "ED25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=",
        "ed25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs",
        "ed25519:JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs=",
        "ed25519:AAAA",
        "ed25519: JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=",
        "ed25519:",
    ] {
        let result = bad.parse::<PublicKey>();
        assert!(
            matches!(result, Err(KeyError::PublicKeyText { .. })),
            "{bad:?} gave {result:?}"
        );
    }
    Ok(())
}

#[test]
fn secrets_stay_out_of_debug_output() -> TestResult {
    let document = Pkcs8Document::from_pem_or_der(RFC_PRIVATE_KEY_PEM.as_bytes())?;
    let shown = format!("{document:?} {:?}", document.signing_key()?);
    assert!(
        !shown.contains("MC4CAQAw") && !shown.contains("n4Ni"),
        "{shown}"
    );
    assert!(shown.contains(RFC_PUBLIC_KEY), "{shown}");
    Ok(())
}

#[test]
fn openssh_text_form_round_trips() -> TestResult {
    let key: PublicKey = RFC_PUBLIC_KEY.parse()?;
    let line = key.to_openssh();
    assert!(
        line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
        "{line}"
    );
    assert_eq!(
        PublicKey::from_openssh(&format!("{line} comment here"))?,
        key
    );
    for bad in [
        "ssh-rsa AAAA",
        "ssh-ed25519",
        "ssh-ed25519 !!!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA",
    ] {
        assert!(PublicKey::from_openssh(bad).is_err(), "{bad:?}");
    }
    Ok(())
}

/// Runs a tool, or returns `None` (with a note) when it is not installed.
fn run(program: &str, args: &[&str]) -> Result<Option<String>, Box<dyn std::error::Error>> {
    match Command::new(program).args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: {program} is not installed; skipping the comparison with it");
            Ok(None)
        }
        Err(e) => Err(e.into()),
        Ok(out) if !out.status.success() => Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into()),
        Ok(out) => Ok(Some(String::from_utf8(out.stdout)?)),
    }
}

/// The `SHA256:...` field of `ssh-keygen -lf FILE` ("256 SHA256:... comment (ED25519)").
fn ssh_keygen_fingerprint(pub_file: &Path) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let Some(out) = run("ssh-keygen", &["-lf", &pub_file.display().to_string()])? else {
        return Ok(None);
    };
    let field = out
        .split_whitespace()
        .nth(1)
        .ok_or("unexpected ssh-keygen -lf output")?;
    Ok(Some(field.to_owned()))
}

#[test]
fn fingerprint_matches_ssh_keygen_for_its_own_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let private = dir.path().join("x");
    let created = run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "test",
            "-f",
            &private.display().to_string(),
        ],
    )?;
    if created.is_none() {
        return Ok(());
    }
    let pub_file = dir.path().join("x.pub");
    let key = PublicKey::from_openssh(fs::read_to_string(&pub_file)?.trim())?;
    let expected = ssh_keygen_fingerprint(&pub_file)?.ok_or("ssh-keygen vanished")?;
    assert_eq!(key.fingerprint(), expected);
    Ok(())
}

#[test]
fn fingerprint_matches_ssh_keygen_for_our_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key = Pkcs8Document::generate()?.signing_key()?.public_key();
    let pub_file = dir.path().join("ours.pub");
    fs::write(&pub_file, format!("{} outpost\n", key.to_openssh()))?;
    if let Some(expected) = ssh_keygen_fingerprint(&pub_file)? {
        assert_eq!(key.fingerprint(), expected);
        assert!(
            expected.starts_with("SHA256:") && !expected.ends_with('='),
            "{expected}"
        );
    }
    Ok(())
}

/// OpenSSL writes PKCS#8 v1; those keys must load. (The other direction does not work: OpenSSL 3.0 cannot read
/// the v2 documents we write, see the `keys` module.)
#[test]
fn keys_made_by_openssl_load() -> TestResult {
    let dir = tempfile::tempdir()?;
    let theirs = dir.path().join("theirs.pem");
    let shown = theirs.display().to_string();
    if run(
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", &shown],
    )?
    .is_none()
    {
        return Ok(());
    }
    set_mode(&theirs, 0o600)?;
    let key = SigningKey::load(&theirs)?;
    let spki_pem = run("openssl", &["pkey", "-in", &shown, "-pubout"])?.unwrap_or_default();
    // A 44-byte Ed25519 SPKI is a 12-byte header (16 base64 characters) followed by the raw key.
    let body: String = spki_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        body.len() == 60 && body.starts_with("MCowBQYDK2VwAyEA"),
        "{spki_pem}"
    );
    let their_key = format!("ed25519:{}", body.get(16..).unwrap_or_default());
    assert_eq!(key.public_key().to_string(), their_key);
    Ok(())
}
