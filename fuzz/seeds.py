#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ from the repository's real inputs.

Run from the repository root: `python3 fuzz/seeds.py` (needs the `cryptography` package for the signature
seeds). Seeds are named `seed-*`; inputs the fuzzer found are kept beside them after `cargo fuzz cmin`.
The input formats are the ones documented in agent/src/fuzzing.rs and proto/src/fuzzing.rs.
"""

import base64
import hashlib
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / f"seed-{name}").write_bytes(data)


def config():
    write("config", "debian-agent.toml", (ROOT / "packaging/debian/agent.toml").read_text())
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
        write("config", f"readme-{i}.toml", block)
    configmap = (ROOT / "packaging/kubernetes/configmap.yaml").read_text()
    embedded = configmap.split("agent.toml: |\n", 1)[1]
    lines = []
    for line in embedded.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    write("config", "configmap.toml", "\n".join(lines) + "\n")
    quickstart = (ROOT / "examples/quickstart.sh").read_text()
    write("config", "quickstart.toml", quickstart.split("<<TOML\n", 1)[1].split("\nTOML", 1)[0] + "\n")


def yaml_bundle():
    manifests = sorted((ROOT / "examples/manifests").rglob("*.yaml"))
    for path in manifests:
        write("yaml_bundle", path.name, path.read_text())
    write("yaml_bundle", "examples-all", b"\0".join(p.read_bytes() for p in manifests))
    for name in ["deployment.yaml", "rbac-cluster.yaml", "configmap.yaml"]:
        write("yaml_bundle", f"packaging-{name}", (ROOT / "packaging/kubernetes" / name).read_text())
    write(
        "yaml_bundle",
        "list-json-substitute",
        '{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"apps/v1","kind":"Deployment",'
        '"metadata":{"name":"web","labels":{"site":"${OUTPOST_AGENT_ID}"}},"spec":{"replicas":"${replicas}"}}]}'
        "\0apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: ${region:=eu}\n"
        "data:\n  mode: 0644\n  x: &a [1, 2]\n  y: *a\n---\n# empty\n",
    )


def yaml_budget():
    """One file per input: the examples, real manifests, and the hostile shapes the budget exists for."""
    for path in sorted((ROOT / "examples/manifests").rglob("*.yaml")):
        write("yaml_budget", path.name, path.read_text())
    for name in ["deployment.yaml", "daemonset.yaml", "rbac-cluster.yaml"]:
        write("yaml_budget", f"packaging-{name}", (ROOT / "packaging/kubernetes" / name).read_text())
    write("yaml_budget", "aliases", "a: &a [1, {b: &b x}]\nc: [*a, *a, *b]\nd: '<<'\n<<: {e: 0644}\n")
    write("yaml_budget", "json", '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{}}')
    write("yaml_budget", "flow-mappings", "a: [" + ",".join(["{}"] * 3000) + "]\n")
    write("yaml_budget", "small-mappings", "a: [" + ",".join(["{a: 1}"] * 2000) + "]\n")
    write("yaml_budget", "nesting", "[" * 300)
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        laughs += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    write("yaml_budget", "laughs", laughs)
    write("yaml_budget", "long-alias", "a: &a " + "x" * 4000 + "\nb: [" + ", ".join(["*a"] * 500) + "]\n")
    write("yaml_budget", "documents", "kind: ConfigMap\n---\n" * 40)


def kustomization():
    cases = ROOT / "tests/fixtures/kustomize"
    for case in sorted(p for p in cases.iterdir() if p.is_dir()):
        entries = []
        for path in sorted(case.rglob("*")):
            rel = path.relative_to(case).as_posix()
            if rel == "ERROR" or path.is_dir():
                continue
            if path.is_symlink():
                entries.append(f"{rel} -> {path.readlink()}".encode())
            else:
                entries.append(rel.encode() + b"\n" + path.read_bytes())
        data = b"\0".join(entries)
        if len(data) <= 16 * 1024:
            write("kustomization", case.name, data)


# The request fuzzing::signature checks, and the RFC 9421 B.1.4 test key it verifies with.
NOW = 1_700_000_000
BODY = b'{"schema":"outpost.heartbeat/v1"}'
RFC_KEY_SEED = base64.b64decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")[-32:]


def signature():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(RFC_KEY_SEED)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + raw
    keyid = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":"
    values = {
        "@method": "POST",
        "@authority": "hub.example.com",
        "@path": "/v1/heartbeats",
        "content-digest": digest,
        "content-type": "application/json",
    }
    for name, created, extra in [
        ("outpost-fresh", NOW - 10, ""),
        ("outpost-stale", NOW - 3600, ""),
        ("outpost-expires", NOW, ";expires=1699999000"),
    ]:
        components = " ".join(f'"{c}"' for c in values)
        params = f'({components});created={created};keyid="{keyid}";alg="ed25519"{extra}'
        base = "".join(f'"{c}": {v}\n' for c, v in values.items()) + f'"@signature-params": {params}'
        sig = base64.b64encode(key.sign(base.encode())).decode()
        write("signature", name, f"outpost={params}\noutpost=:{sig}:\n")
    write(
        "signature",
        "rfc9421-b26",
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");'
        'created=1618884473;keyid="test-key-ed25519"\n'
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:\n"
        "Date: Tue, 20 Apr 2021 02:07:55 GMT\nContent-Length: 18\n",
    )
    write(
        "signature",
        "sfv-types",
        'outpost=("@query" "x-a" "@target-uri" "@scheme");created=1699999990;nonce="n";tag="t";x=?1;d=-1.5;'
        "t=tok/en*, other=:AAAA:;p, b\n"
        "outpost=:AAAA:, other=(1 2.5 \"s\\\\\\\"\" ?0 :YQ==: t);k\nX-A: one\nx-a: two\n",
    )


REV_A = "0123456789abcdef0123456789abcdef01234567"
REV_B = "fedcba9876543210fedcba9876543210fedcba98"
DIGEST = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def wire():
    heartbeat = {
        "schema": "outpost.heartbeat/v1",
        "agent_id": "store-042",
        "seq": 1234,
        "boot_id": "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f",
        "observed_at": "2026-09-21T14:13:20Z",
        "agent_version": "0.1.0 (3f2a9c1)",
        "assignment_generation": 3,
        "dropped": 0,
        "sources": [
            {"name": "platform", "state": "Ready", "fetched_revision": REV_A, "applied_revision": REV_A,
             "last_good_revision": REV_A, "object_count": 42, "inventory_digest": DIGEST},
            {"name": "apps-eu", "state": "Failed", "fetched_revision": REV_B, "applied_revision": REV_A,
             "last_good_revision": REV_A, "last_error": "health check: Deployment web: 0/2 ready\nafter 5m",
             "object_count": 7},
            {"name": "new-one", "state": "Progressing", "object_count": 0},
            {"name": "paused", "state": "Suspended", "object_count": 0},
            {"name": "offline", "state": "Stale", "object_count": 0},
        ],
        "assignment_error": {"generation": 4, "kind": "name_clash",
                             "reason": "source \"platform\": the config file already has a source of that name"},
    }
    write("heartbeat_json", "full.json", json.dumps(heartbeat, indent=1))
    minimal = dict(heartbeat, sources=[], seq=1)
    del minimal["assignment_error"]
    write("heartbeat_json", "minimal.json", json.dumps(minimal))

    assignment = {
        "schema": "outpost.assignment/v1",
        "generation": 7,
        "sources": [
            {"name": "platform", "url": "https://git.example.com/fleet/platform.git", "branch": "main",
             "path": "clusters/store-042", "interval": "1m", "timeout": "2m", "target": "kubernetes",
             "prune": True, "namespace": "default", "wait": True, "rollback": True, "force": False,
             "auth": {"token_file": "/etc/outpost/git-token"}},
            {"name": "apps", "url": "ssh://git@git.example.com:2222/fleet/apps.git", "tag": "v1.4.2",
             "target": "directory:/var/lib/rancher/k3s/server/manifests/outpost",
             "auth": {"ssh_key_file": "/etc/outpost/id_ed25519", "known_hosts_file": "/etc/outpost/known_hosts"}},
            {"name": "monitoring", "url": "https://git.example.com/fleet/monitoring.git", "semver": ">=1.2.0 <2",
             "target": "kubernetes",
             "auth": {"username": "outpost-bot", "password_file": "/etc/outpost/git-password"}},
            {"name": "pinned", "url": "git@github.com:example/pinned.git", "commit": REV_A, "interval": "1h30m",
             "target": "kubernetes"},
        ],
    }
    write("assignment_json", "full.json", json.dumps(assignment, indent=1))
    write("assignment_json", "withdraw-all.json", '{"schema":"outpost.assignment/v1","generation":8,"sources":[]}')
    clash = dict(assignment, sources=[dict(assignment["sources"][0], name="local")])
    write("assignment_json", "name-clash.json", json.dumps(clash))


def yaml_emit():
    """Fields separated by 0xFF: one seed per family of scalars a YAML 1.1 or 1.2 reader could misread."""
    words = ["y", "n", "yes", "no", "on", "off", "true", "false"]
    families = {
        "bool": words + [w.upper() for w in words] + [w.title() for w in words] + ["yEs", "oFF"],
        "null": ["~", "null", "Null", "NULL", "", "nil"],
        "int": ["0", "-1", "+1", "1_000", "0o17", "017", "0x1F", "0b101", "1:20", "190:20:30", "18446744073709551616"],
        "float": ["1e3", "1E+3", ".5", "-.5", "5.", "1.5", "1:20:30.5", ".inf", "-.Inf", ".NaN", "nan", "Infinity",
                  "6.02e23", "1e-300", "-0.0"],
        "timestamp": ["2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "2002-12-14T02:59:43Z"],
        "indicator": ["<<", "=", "---", "..."] + [c + "x" for c in "-?:,[]{}#&*!|>'\"%@`"] + [c + " x" for c in "-?:#"],
        "spaces": [" lead", "trail ", "a: b", "a:", "a #b", "x\ty", "key: value: more", "nginx:1.25", "hello world"],
        "control": ["\0", "bell\x07", "esc\x1b[0m", "\x7f", "nel\x85", "ls\u2028ps\u2029", "\ufeffbom", "cr\r"],
        "multiline": ["one\ntwo\n", "no final\nnewline", "\nleading", "two\n\n", " indented\nx",
                      "trailing \nx", "# c\n---\n...\n- i\nk: v\n", "x\n   \ny"],
        "unicode": ["café", "日本語", "🚀", "\u00a0", "Ω=1", "\ufffe"],
        "long-key": ["k" * 600, "v", "\"" * 300, "q"],
    }
    for name, fields in families.items():
        write("yaml_emit", name, b"\xff".join(f.encode("utf-8", "surrogatepass") for f in fields))
    # Bytes that are not UTF-8 become U+FFFD.
    write("yaml_emit", "invalid-utf8", b"\xc3\x28\xff\xa0\xa1\xffok")


if __name__ == "__main__":
    config()
    yaml_bundle()
    yaml_budget()
    kustomization()
    signature()
    wire()
    yaml_emit()
