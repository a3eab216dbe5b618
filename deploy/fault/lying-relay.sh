#!/usr/bin/env bash
# A node that serves a tampered log, with real credexd processes.
#
# Changsha publishes 1,200 records in four requests (a signed checkpoint after each batch);
# then one byte in the middle of its own leaf file is flipped while it is down, so it serves
# an entry that is not the one it signed. Wuhan, syncing from it, must append only up to the
# last checkpoint before that entry, quarantine what follows (the altered entry as
# bad_signature, the rest as unsigned_root), keep a log whose root Changsha signed (audit log
# passes), and not call Changsha forked: a lying relay is not an equivocating origin.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7760}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
say "changsha publishes 1,200 records, then one byte of its leaf file is flipped"
start changsha "$H/changsha" ""
wait_for "changsha up" ctl changsha status
for seed in 1 2 3 4; do ctl changsha gen --count 300 --seed "$seed" | ctl changsha publish >/dev/null; done
stop changsha
file=$(find "$H/changsha" -path '*leaves*' -name '*.dat' | head -1)
offset=$(($(stat -c %s "$file") / 2))
python3 - "$file" "$offset" <<'PY'
import sys
path, offset = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
data[offset] ^= 0x20
open(path, "wb").write(data)
PY

say "wuhan syncs from the lying changsha"
start changsha "$H/changsha" ""
start wuhan "$H/wuhan" "changsha=$(addr 0)"
refused() { (($(quarantined wuhan bad_signature) >= 1 && $(quarantined wuhan unsigned_root) >= 1)); }
wait_for "wuhan quarantines the altered run" refused
read -r size idx _ <<<"$(figures wuhan changsha)"
ctl wuhan status
failed=0
if ((size >= 1200 || idx != size)); then
  echo "FAIL: wuhan holds $size entries ($idx in view); expected the prefix before the altered one"; failed=1
fi
if ! ctl wuhan audit log changsha >/dev/null; then
  echo "FAIL: audit log changsha fails at wuhan"; failed=1
fi
if ctl wuhan --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if any(o["origin"] == "changsha" and o["forked"] for o in s["origins"]) else 1)'; then
  echo "FAIL: wuhan marked changsha forked"; failed=1
fi
((failed == 0)) || exit 1
echo
echo "lying relay: wuhan holds $size entries, all under roots changsha signed; every check passed"
