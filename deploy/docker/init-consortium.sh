#!/usr/bin/env bash
# Writes the consortium folder the compose file runs: the four provincial capitals, a dev
# CA, certificates, keys and node configs, addressed the way docker-compose.yml publishes
# the nodes.
#
#   deploy/docker/init-consortium.sh [OUT]     (default: deploy/docker/consortium)
#
# Addressing scheme (one `--host` for every member is all `consortium init` offers):
#   - consortium.toml gives member i (changsha, wuhan, hefei, nanchang) the address
#     127.0.0.1:7001+i: the port docker-compose.yml publishes that node's gRPC port on, on the
#     host's loopback, so `credexctl --home OUT --city wuhan status` works from the host;
#     the admin HTTP listener (metrics, probes) is published on 127.0.0.1:7101+i.
#   - inside the compose network every node listens on 0.0.0.0:7000 (admin 0.0.0.0:9100)
#     and reaches its peers as <city>:7000: the image sets CREDEX_LISTEN and
#     CREDEX_ADMIN_LISTEN, the compose file CREDEX_PEERS, overriding node.toml's 127.0.0.1
#     addresses. Beyond loopback the admin listener needs a token: each city folder gets a
#     random admin.token (CREDEX_ADMIN_TOKEN_FILE in the image), readable by the node and by
#     the caller's group: `curl -H "Authorization: Bearer $(cat OUT/wuhan/admin.token)" ...`.
#   - node certificates carry the DNS/IP SANs 127.0.0.1 and localhost only, which is enough:
#     credex clients and nodes verify a server by its SPIFFE ID
#     (spiffe://mid-yangtze/<city>/node), never by the host name they dialled.
#
# The nodes run as uid/gid 65532 in their containers, so each city's node.key, log.key and
# witness.key (0600) are handed to 65532 here; everything else stays with the caller, who
# keeps using the client keys in <city>/clients/. This needs root (or sudo).
#
# Environment: CREDEXCTL (default: target/debug/credexctl, built if missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/consortium}"
credexctl="${CREDEXCTL:-$root/target/debug/credexctl}"
node_uid=65532
node_gid=65532
# The order fixes the ports: city i is published on 7001+i (see docker-compose.yml).
cities=(changsha wuhan hefei nanchang)

if [[ ! -x "$credexctl" ]]; then
    echo "building credexctl" >&2
    (cd "$root" && cargo build --bin credexctl)
fi

# Give the node secrets away before anything else can fail half-way through.
uid="$(id -u)"
if [[ "$uid" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "$0: handing the node keys to uid $node_uid needs root or sudo" >&2
    exit 1
fi

member_args=()
for city in "${cities[@]}"; do
    member_args+=(--member "$city")
done
"$credexctl" consortium init --out "$out" --host 127.0.0.1 --base-port 7001 "${member_args[@]}"

for city in "${cities[@]}"; do
    token="$out/$city/admin.token"
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$token")
    chmod 0640 "$token"
    "${as_root[@]}" chown "$node_uid:$(id -g)" -- "$token"
    "${as_root[@]}" chown "$node_uid:$node_gid" -- \
        "$out/$city/node.key" "$out/$city/log.key" "$out/$city/witness.key"
done

echo "ca.key in $out is the consortium's CA key: docker-compose.yml does not mount it" >&2
