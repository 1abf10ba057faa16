#!/usr/bin/env bash
# Quickstart: build outpost, sync examples/manifests from this repository's own Git history (a file:// URL) into a
# directory target, show what was applied and what `outpost status` says. Needs only cargo and git; no cluster.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

cargo build -j2 --release -p outpost-agent
bin="$repo/target/release/outpost"

work="${OUTPOST_QUICKSTART_DIR:-$repo/target/quickstart}"
mkdir -p "$work"
# Follow the checked-out branch; a detached checkout (as CI makes) pins the commit instead.
branch="$(git -C "$repo" symbolic-ref --quiet --short HEAD || true)"
if [ -n "$branch" ]; then ref="branch = \"$branch\""; else ref="commit = \"$(git -C "$repo" rev-parse HEAD)\""; fi

cat > "$work/agent.toml" <<TOML
[agent]
id = "quickstart"
state_dir = "$work/state"

[[source]]
name = "shop"
url = "file://$repo"
$ref
path = "examples/manifests"
interval = "30s"
target = "directory:$work/manifests"
TOML

echo "== outpost sync (config: $work/agent.toml)"
"$bin" --config "$work/agent.toml" sync
echo
echo "== what was applied: $work/manifests/shop.yaml"
cat "$work/manifests/shop.yaml"
echo
echo "== outpost status"
"$bin" --config "$work/agent.toml" status
echo
echo "Next: run the daemon with  $bin --config $work/agent.toml run"
