//! PyYAML as an independent YAML 1.1 reader: the Go reader behind kubectl, k3s and RKE2 resolves plain scalars by
//! the same YAML 1.1 rules (`yes`, `on`, `1:20`, `0o17`...), so a file PyYAML reads back exactly is one they read
//! back exactly too. Needs `python3` with the `yaml` module (Debian: python3-yaml).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Reads every document of `text` with `yaml.safe_load_all` (empty documents left out) and returns them as JSON.
/// A value that is not JSON (a timestamp, bytes) comes back as `{"not json": "<repr>"}`, so a comparison with the
/// source shows what YAML 1.1 made of it.
pub fn load_all(text: &str) -> Result<Vec<Value>, String> {
    let script = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(sys.stdin.buffer.read().decode('utf-8')) if d is not None]\n\
        sys.stdout.write(json.dumps(docs, default=lambda o: {'not json': repr(o)}))\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3 ({e}); install python3 and python3-yaml"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.as_bytes().to_vec();
    // Written from a thread so a large file cannot fill both pipes at once.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "PyYAML could not read the text (install python3-yaml if the module is missing): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("PyYAML's JSON: {e}"))
}
