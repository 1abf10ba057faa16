#!/usr/bin/env bash
# Fleet quickstart: a hub on the embedded store, an admin and a read credential, one bootstrap token per site,
# two agents enrolled with `outpost enroll`, each syncing a directory target from a local Git repository, and
# the fleet page's address with its read credential. Needs cargo and git; no cluster, no network.
#
# OUTPOST_BIN / OUTPOST_HUB_BIN: use these binaries instead of building (the test does).
# OUTPOST_FLEET_QUICKSTART_DIR: where everything goes (default target/fleet-quickstart, emptied first).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

if [ -z "${OUTPOST_BIN:-}" ] || [ -z "${OUTPOST_HUB_BIN:-}" ]; then
  cargo build -j2 --release -p outpost-agent -p outpost-hub
fi
outpost="${OUTPOST_BIN:-$repo/target/release/outpost}"
hub="${OUTPOST_HUB_BIN:-$repo/target/release/outpost-hub}"

work="${OUTPOST_FLEET_QUICKSTART_DIR:-$repo/target/fleet-quickstart}"
rm -rf "$work"
mkdir -p "$work"
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT

echo "== a Git repository with one manifest: $work/repo"
git init -q -b main "$work/repo"
mkdir -p "$work/repo/deploy"
cat > "$work/repo/deploy/shop.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop
data:
  greeting: hello from the fleet quickstart
YAML
git -C "$work/repo" add deploy
git -C "$work/repo" -c user.name=quickstart -c user.email=quickstart@example.invalid commit -q -m "shop"

echo "== the hub: embedded store, an admin and a read credential (tokens in files, hashes in hub.toml)"
cat > "$work/hub.toml" <<TOML
listen = "127.0.0.1:0"
state_dir = "$work/hub-state"
heartbeat_interval = "5s"
TOML
"$hub" credential create --role admin --name quickstart-admin --token-file "$work/admin.token" >> "$work/hub.toml"
"$hub" credential create --role read --name quickstart-browser --token-file "$work/read.token" >> "$work/hub.toml"
"$hub" serve --config "$work/hub.toml" > "$work/hub.out" 2> "$work/hub.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "^listening on" "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's/^listening on //p' "$work/hub.out")"
fingerprint="$(sed -n 's/^hub key fingerprint: //p' "$work/hub.out")"
[ -n "$addr" ] || { echo "the hub did not start; its log:"; cat "$work/hub.log"; exit 1; }
# The tools find the running hub through the config's listen address: write the port it got.
sed -i "s/^listen = .*/listen = \"$addr\"/" "$work/hub.toml"
echo "hub on http://$addr, key fingerprint $fingerprint"

for site in berlin lyon; do
  dir="$work/site-$site"
  mkdir -p "$dir"
  echo
  echo "== site $site: a bootstrap token (labels site=$site, valid 1h), then outpost enroll"
  "$hub" token create --config "$work/hub.toml" --token-file "$work/admin.token" \
    --out "$dir/bootstrap.token" --labels "site=$site" --expires 1h
  cat > "$dir/agent.toml" <<TOML
[agent]
id = "shop-$site"
state_dir = "$dir/state"

[[source]]
name = "shop"
url = "file://$work/repo"
branch = "main"
path = "deploy"
interval = "30s"
target = "directory:$dir/manifests"
TOML
  "$outpost" --config "$dir/agent.toml" enroll --hub "http://$addr" \
    --token-file "$dir/bootstrap.token" --hub-key-fingerprint "$fingerprint"
  "$outpost" --config "$dir/agent.toml" run 2> "$dir/agent.log" &
  pids+=($!)
done

echo
echo "== waiting for both sites to report their source Ready"
ready=""
for _ in $(seq 150); do
  listing="$("$hub" status --config "$work/hub.toml" --token-file "$work/read.token" --json)"
  if [ "$(grep -c '"state": "Ready"' <<< "$listing")" -ge 2 ]; then ready=yes; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "the sites did not report Ready in 30s; agent logs:"; cat "$work"/site-*/agent.log; exit 1; }
"$hub" status --config "$work/hub.toml" --token-file "$work/read.token"
echo
"$hub" agents list --config "$work/hub.toml" --token-file "$work/admin.token"
echo
echo "== applied on site berlin: $work/site-berlin/manifests/shop.yaml"
cat "$work/site-berlin/manifests/shop.yaml"
echo
echo "The fleet page: http://$addr/"
echo "  in a browser: any user name, and as password the read credential in $work/read.token"
echo "  or: curl -u fleet:\"\$(cat $work/read.token)\" http://$addr/"
if [ -t 0 ]; then
  read -r -p "Press Enter to stop the hub and the two agents. " _
fi
