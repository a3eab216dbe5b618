#!/usr/bin/env bash
# A node that serves a tampered log, with real credexd processes.
#
# Changsha publishes its records in batches (a signed checkpoint after each); then, while it
# is down, one hex digit of one record's id is changed in its own store — the record in the
# middle of a batch half-way through the log — by credex-store's example `tamper_leaf`, which
# leaves the store's tree hashes as they were: Changsha serves an entry that is not the one it
# signed beside checkpoints it signed over the original. Wuhan, syncing from it, must append
# nothing from that entry on, only whole runs under checkpoints before it, all of it in its
# view; quarantine the altered entry as bad_signature and the rest as unsigned_root; keep a
# log whose root Changsha signed (`audit log` passes); and not call Changsha forked: a lying
# relay is not an equivocating origin. The long form then waits for Wuhan's redial after its
# quarantine backoff (10 s and up to half again): the altered entry is refused again and
# nothing from it on is appended.
#
# How much of what Changsha signed before the altered entry Wuhan appends is printed, not
# asserted: a group of runs that fails at a root past the altered entry is appended up to the
# last signed root below it that came with the group (`Engine::commit`), which depends on
# which checkpoints reached Wuhan (README "Fault suite").
#
# Usage: deploy/fault/lying-relay.sh [--short]   (--short: 4 batches of 300, else 10 of 1,000)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7760}
BATCHES=10 BATCH=1000 REDIAL=1
[[ ${1:-} == --short ]] && BATCHES=4 BATCH=300 REDIAL=0
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
# The tamper tool (crates/credex-store/examples/tamper_leaf.rs), built into $BIN's profile.
# Resolved over the workspace, as the binaries were, so only credex-store itself is built again
# with the feature (`-p credex-store` resolves its dependencies' features anew and rebuilds them).
profile=()
[[ $(basename "$BIN") == release ]] && profile=(--release)
cargo build -q "${profile[@]}" --workspace --features credex-store/test-support --example tamper_leaf
source deploy/fault/lib.sh

N=$((BATCHES * BATCH))
# The altered entry: seq K, in the middle of the batch half-way through the log.
K=$((BATCHES / 2 * BATCH + BATCH / 2))
"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
say "changsha publishes $N records in $BATCHES batches, then one digit of entry $K's record id is changed in its store"
start changsha "$H/changsha" ""
wait_for "changsha up" ctl changsha status
for seed in $(seq 1 "$BATCHES"); do
  ctl changsha gen --count "$BATCH" --seed "$seed" >"$work/batch.$seed.jsonl"
  ctl changsha publish --json "$work/batch.$seed.jsonl" >"$work/published.$seed.json"
done
read -r size _ <<<"$(figures changsha changsha)"
((size == N)) || { echo "FAIL: changsha holds $size entries, published $N"; exit 1; }
stop changsha
# The record Changsha logged as entry K: publish sends a file's records in several requests at
# once, so its output, not the file's order, says which record got which seq.
record=$(python3 -c '
import json, sys
published = json.load(open(sys.argv[1]))["published"]
print(next(p["record_id"] for p in published if p["seq"] == int(sys.argv[2])))' "$work/published.$((K / BATCH + 1)).json" "$K")
# The leaves are in zstd-compressed blocks indexed in sled (store layout 5), so the tool
# decompresses the block, flips a digit of the id's hex part (the entry still decodes and its
# record is still well formed: what is wrong with it is only that its origin did not sign it),
# and writes that block and every later one again at the end of the file with their index.
# The store's tree hashes stay those of the entry Changsha signed.
"$BIN/examples/tamper_leaf" "$H/changsha/data/store" changsha "$record" "$K"

say "wuhan syncs from the lying changsha"
start changsha "$H/changsha" ""
wait_for "changsha up" ctl changsha status
t0=$(now_ms)
start wuhan "$H/wuhan" "changsha=$(addr 0)"
refused() { (($(quarantined wuhan bad_signature) >= 1 && $(quarantined wuhan unsigned_root) >= 1)); }
wait_for "wuhan quarantines the altered run" refused
refused_s=$(secs_since "$t0")
# held: "log-size in-view bad_signature unsigned_root forked" of changsha's log at wuhan.
held() {
  status_json wuhan && python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
o = next((o for o in s["origins"] if o["origin"] == "changsha"), {})
q = {r: sum(int(x["count"]) for x in s["quarantine"] if x["reason"] == r) for r in ("bad_signature", "unsigned_root")}
print(int(o.get("local_size", 0)), int(o.get("indexed_size", 0)), q["bad_signature"], q["unsigned_root"], int(o.get("forked", False)))' "$work/status.wuhan.json"
}
# What wuhan holds once its view has taken in everything appended.
in_view() { read -r s i _ <<<"$(held)" && ((s == i)); }
wait_for "wuhan's view holds what it appended" in_view
read -r size idx bad unsigned forked <<<"$(held)"
ctl wuhan status
failed=0
# check SIZE IN-VIEW BAD_SIGNATURE FORKED: what must hold of wuhan's copy of changsha's log.
check() {
  local size=$1 idx=$2 bad=$3 forked=$4
  if ((size > K)); then
    echo "FAIL: wuhan appended $size of changsha's entries; entry $K is the altered one"; failed=1
  fi
  if ((idx != size)); then echo "FAIL: wuhan's view holds $idx of the $size entries appended"; failed=1; fi
  # The altered entry is the only one that fails its own signature check.
  if ((bad != 1)); then echo "FAIL: $bad entries quarantined as bad_signature, expected the altered one"; failed=1; fi
  if ((size > 0)) && ! ctl wuhan audit log changsha >/dev/null; then echo "FAIL: audit log changsha fails at wuhan"; failed=1; fi
  if ((forked)); then echo "FAIL: wuhan marked changsha forked"; failed=1; fi
}
check "$size" "$idx" "$bad" "$forked"
echo "wuhan: $size of changsha's $N entries appended (entry $K altered), quarantined $bad bad_signature + $unsigned unsigned_root after ${refused_s}s"
summary="N=$N in $BATCHES batches, entry $K altered; wuhan appended $size of the $K before it (view $idx), quarantined $bad bad_signature + $unsigned unsigned_root in ${refused_s}s; audit log passes; not forked"

if ((REDIAL)); then
  say "wuhan redials after its quarantine backoff"
  # The second quarantine doubles the wait before the next attempt (20 s and up to half again).
  again() {
    status_json wuhan && python3 -c '
import json, re, sys
s = json.load(open(sys.argv[1]))
error = next((p["last_error"] for p in s["peers"] if p["city"] == "changsha"), "")
wait = re.search(r"quarantined.*; next attempt in (\d+) s", error)
sys.exit(0 if wait and int(wait.group(1)) >= 20 else 1)' "$work/status.wuhan.json"
  }
  WAIT_S=60 wait_for "wuhan's redial refuses the altered entry again" again
  redial_s=$(secs_since "$t0")
  read -r size2 idx2 bad2 unsigned2 forked2 <<<"$(held)"
  check "$size2" "$idx2" "$bad2" "$forked2"
  echo "wuhan: redialled and refused again at ${redial_s}s: $size2 appended, quarantined $bad2 bad_signature + $unsigned2 unsigned_root"
  summary="$summary; redial at ${redial_s}s refused again ($bad2 + $unsigned2 quarantined in all), $size2 appended"
fi
figure "$summary"
((failed == 0)) || exit 1
echo
echo "lying relay: wuhan holds $size entries, all under roots changsha signed; every check passed"
