#!/usr/bin/env bash
# Checks that the example node.toml and consortium.toml load in credexd, the way the
# systemd unit runs it: the examples go into a scratch /etc/credex-like folder beside a
# throw-away consortium's CA, certificates and keys, and credexd must start serving, then
# stop cleanly on SIGTERM. A second run with consortium.toml exactly as written must get
# as far as checking the signer keys against it (which the scratch keys then fail).
#
#   deploy/examples/check-examples.sh
#
# Environment: CREDEXD, CREDEXCTL (default: target/debug/..., built if missing);
# DEADLINE seconds to wait for credexd (default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
credexd="${CREDEXD:-$root/target/debug/credexd}"
credexctl="${CREDEXCTL:-$root/target/debug/credexctl}"
deadline_secs="${DEADLINE:-30}"

if [[ ! -x "$credexd" || ! -x "$credexctl" ]]; then
    (cd "$root" && cargo build --bin credexd --bin credexctl)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/credex-examples.XXXXXX")"
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$credexctl" consortium init --out "$work/generated" --host 127.0.0.1 >/dev/null
etc="$work/etc"
mkdir -p "$etc"
cp -- "$here/node.toml" "$etc/node.toml"
cp -- "$work/generated/ca.pem" "$etc/ca.pem"
for file in node.pem node.key log.key witness.key; do
    cp -- "$work/generated/changsha/$file" "$etc/$file"
done
# The example's pinned keys replaced by the scratch consortium's, city by city; every other
# line as written.
awk '
    /^city = / { city = $3 }
    FNR == NR { if ($1 == "log_key" || $1 == "witness_key") key[city, $1] = $0; next }
    ($1 == "log_key" || $1 == "witness_key") && (city, $1) in key { print key[city, $1]; next }
    { print }
' "$work/generated/consortium.toml" "$here/consortium.toml" >"$etc/consortium.toml"
if cmp -s "$etc/consortium.toml" "$here/consortium.toml"; then
    echo "check-examples: replacing the pinned keys changed nothing" >&2
    exit 1
fi

# What differs from a production run: the store, a port nothing else is using, no admin
# listener (credexd refuses an admin port equal to the gRPC one, and both would be 0).
run_credexd() {
    : >"$work/credexd.log"
    CREDEX_DATA_DIR="$work/data" CREDEX_LISTEN=127.0.0.1:0 CREDEX_ADMIN_LISTEN='' \
        NO_COLOR=1 "$credexd" --config "$etc/node.toml" 2>"$work/credexd.log" &
    pid=$!
}

# 1. With keys that match, it serves, then stops cleanly.
run_credexd
deadline=$((SECONDS + deadline_secs))
until grep -q 'credexd serving' "$work/credexd.log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "check-examples: credexd exited instead of serving:" >&2
        cat "$work/credexd.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "check-examples: credexd did not serve within ${deadline_secs}s:" >&2
        cat "$work/credexd.log" >&2
        exit 1
    fi
    sleep 0.2
done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
if ((status != 0)); then
    echo "check-examples: credexd exited with $status on SIGTERM:" >&2
    cat "$work/credexd.log" >&2
    exit 1
fi
echo "check-examples: node.toml and consortium.toml load; credexd served and stopped cleanly"

# 2. consortium.toml as written parses and validates; only the keys differ from the scratch
#    ones, which credexd must notice before it signs anything.
cp -- "$here/consortium.toml" "$etc/consortium.toml"
rm -rf -- "$work/data"
run_credexd
status=0
wait "$pid" || status=$?
pid=""
if ((status == 0)) || ! grep -q 'is not the one the consortium pins for changsha' "$work/credexd.log"; then
    echo "check-examples: consortium.toml as written: expected a signer key mismatch, got exit $status:" >&2
    cat "$work/credexd.log" >&2
    exit 1
fi
echo "check-examples: consortium.toml as written loads (its pinned keys are not the scratch ones, as expected)"
