#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called through wait_for
# An origin that shows two histories of different sizes, with real credexd processes.
#
# Two copies of Nanchang's data dir and keys run one after the other on Nanchang's address:
# copy A publishes 15 entries and is shown to Changsha and Wuhan only; copy B, which shares
# A's first 5 entries, publishes 20 and is shown to Hefei only. Then the three honest cities
# are meshed with each other (Nanchang down). What must hold, and what this script checks:
#   - all three mark Nanchang forked, within seconds;
#   - each holds a Nanchang log whose root is one Nanchang signed (15, 15 and 20 entries: never
#     a splice of A and B);
#   - each one's evidence is PROVEN offline by `credexctl audit verify`;
#   - `credexctl audit log nanchang` exits non-zero and says the origin is forked.
#
# Usage: deploy/fault/fork-of-two-sizes.sh   (builds the debug binaries if missing; BIN=dir
# to use others). Everything listens on 127.0.0.1 only; the work folder is removed at the end
# unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7640}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh

size_of() { ctl "$1" --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next((o["local_size"] for o in s["origins"] if o["origin"] == sys.argv[1]), 0))' "$2"; }
forked() { ctl "$1" --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if any(o["origin"] == "nanchang" and o["forked"] for o in s["origins"]) else 1)'; }
has_size() { [[ $(size_of "$1" "$2") == "$3" ]]; }
publish() { ctl nanchang gen --count "$1" --seed "$2" | ctl nanchang publish >/dev/null; }

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null

say "nanchang publishes 5 entries, then its data dir and keys are copied"
start nanchang "$H/nanchang" ""
wait_for "nanchang up" ctl nanchang status
publish 5 1
stop nanchang
cp -a "$H/nanchang" "$H/nanchang-b"

say "copy A publishes 10 more (15), copy B 15 others (20)"
start nanchang "$H/nanchang" ""
wait_for "nanchang A up" ctl nanchang status
publish 10 2
stop nanchang
start nanchang-b "$H/nanchang-b" ""
wait_for "nanchang B up" ctl nanchang status
publish 15 3
stop nanchang-b

say "changsha and wuhan hear only copy A; hefei only copy B"
start nanchang "$H/nanchang" ""
start changsha "$H/changsha" "nanchang=$(addr 3)"
start wuhan "$H/wuhan" "nanchang=$(addr 3)"
wait_for "changsha holds A" has_size changsha nanchang 15
wait_for "wuhan holds A" has_size wuhan nanchang 15
for name in nanchang changsha wuhan; do stop "$name"; done
start nanchang-b "$H/nanchang-b" ""
start hefei "$H/hefei" "nanchang=$(addr 3)"
wait_for "hefei holds B" has_size hefei nanchang 20
for name in nanchang-b hefei; do stop "$name"; done

say "the honest cities are meshed"
started=$(date +%s%N)
start changsha "$H/changsha" "wuhan=$(addr 1),hefei=$(addr 2)"
start wuhan "$H/wuhan" "changsha=$(addr 0),hefei=$(addr 2)"
start hefei "$H/hefei" "changsha=$(addr 0),wuhan=$(addr 1)"
for city in changsha wuhan hefei; do
  wait_for "$city marks nanchang forked" forked "$city"
done
echo "all three marked nanchang forked $(( ($(date +%s%N) - started) / 1000000 )) ms after the mesh started"

failed=0
for city in changsha wuhan hefei; do
  say "$city"
  size=$(size_of "$city" nanchang)
  want=15; [[ $city == hefei ]] && want=20
  if [[ $size != "$want" ]]; then
    echo "FAIL: $city holds $size nanchang entries, expected $want"; failed=1
  fi
  ctl "$city" audit evidence --out "$work/$city.evidence" >/dev/null
  if "$BIN/credexctl" audit verify "$work/$city.evidence" --consortium "$H/consortium.toml"; then
    echo "ok: $city's evidence verifies offline"
  else
    echo "FAIL: $city's evidence does not verify"; failed=1
  fi
  if out=$(ctl "$city" audit log nanchang 2>&1); then
    echo "FAIL: audit log of a forked origin exited 0"; failed=1
  elif grep -q "forked" <<<"$out"; then
    echo "ok: audit log nanchang exits non-zero: forked"
  else
    echo "FAIL: audit log says: $out"; failed=1
  fi
  # The held log is one Nanchang signed: the replay finds no unsigned root.
  if grep -q "never signed" <<<"$out"; then
    echo "FAIL: $city holds a root nanchang never signed"; failed=1
  fi
done
if [[ $failed == 0 ]]; then echo; echo "fork of two sizes: every check passed"; fi
exit "$failed"
