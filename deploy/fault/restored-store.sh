#!/usr/bin/env bash
# A city's node restarted on an empty store, with real credexd processes: its operator moved
# the store aside (an upgrade across store layouts, a lost disk) while its publishers keep
# trying to publish.
#
# Changsha publishes N records, which Wuhan takes in; Changsha stops, its store is moved aside,
# and it starts again on an empty one with Wuhan as its peer. From the moment it answers status,
# a publisher tries to publish one record every 0.2 s. Changsha takes its own log back from
# Wuhan. What must hold: nothing is published into the log before it is back — an entry
# published then would take a seq Changsha already signed for, a second history that Wuhan
# would prove as a fork — so the record lands at seq N exactly, neither node marks Changsha
# forked, and both hold the same N + 1 entries, all in their views. How many attempts were
# refused, and with which reason, is printed, not asserted: a node on an empty store knows its
# log is being restored only once a peer has shown it a checkpoint of its own (README
# "Upgrading across a store layout"), and on a quick machine the log may be back before the
# first attempt. Two refusals guard the window: "came back from a peer" (the log is shorter
# than a checkpoint its city signed) and "while they are checked" (the indexer has not reached
# the log's end). While the log is restored the indexer leaves it alone, so the second covers
# most of the window by itself; the first is what stops a publish when the two are level, as
# at the very start, before any entry is back (the engine test
# `nothing_is_published_into_a_log_shorter_than_a_checkpoint_its_city_signed` takes that case
# deterministically; a run here may or may not meet it).
#
# Usage: deploy/fault/restored-store.sh [--short]   (--short: 30,000 records, else 100,000)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7780}
N=100000
[[ ${1:-} == --short ]] && N=30000
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
say "changsha publishes $N records; wuhan takes them in"
start changsha "$H/changsha" "wuhan=$(addr 1)"
start wuhan "$H/wuhan" "changsha=$(addr 0)"
wait_for "changsha up" ctl changsha status
ctl changsha gen --count "$N" --seed 11 >"$work/records.jsonl"
ctl changsha publish "$work/records.jsonl" >/dev/null
held_at_wuhan() { (($(size_at wuhan changsha) == N)); }
WAIT_S=120 wait_for "wuhan holds changsha's $N entries" held_at_wuhan

say "changsha restarts on an empty store while a publisher keeps trying"
stop changsha
mv "$H/changsha/data/store" "$work/store.aside"
start changsha "$H/changsha" "wuhan=$(addr 1)"
wait_for "changsha up" ctl changsha status
ctl changsha gen --count 1 --seed 12 >"$work/one.jsonl"
t0=$(now_ms)
attempts=0 restoring=0 checking=0 other=0
while :; do
  attempts=$((attempts + 1))
  if ctl changsha publish --json "$work/one.jsonl" >"$work/published.json" 2>"$work/refused.txt"; then
    break
  fi
  case $(cat "$work/refused.txt") in
    *"came back from a peer"*) restoring=$((restoring + 1)) ;;
    *"while they are checked"*) checking=$((checking + 1)) ;;
    *) other=$((other + 1)); echo "refused: $(cat "$work/refused.txt")" ;;
  esac
  if (($(now_ms) - t0 > 120000)); then echo "FAIL: nothing published within 120 s"; exit 1; fi
  sleep 0.2
done
published_s=$(secs_since "$t0")
seq=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["published"][0]["seq"])' "$work/published.json")
echo "published after $attempts attempts in ${published_s}s at seq $seq: refused $restoring times while the log was restored, $checking while it was checked, $other otherwise"

failed=0
((seq == N)) || { echo "FAIL: the record landed at seq $seq, expected $N"; failed=1; }
((other == 0)) || { echo "FAIL: $other refusals for another reason"; failed=1; }
both() { converged changsha wuhan; }
if ! WAIT_S=60 wait_for "changsha and wuhan converge" both; then
  ctl changsha status; ctl wuhan status
  converged changsha wuhan || true
  echo "FAIL: changsha and wuhan do not agree (or one marks changsha forked)"; failed=1
fi
for c in changsha wuhan; do
  size=$(size_at "$c" changsha)
  ((size == N + 1)) || { echo "FAIL: $c holds $size of changsha's entries, expected $((N + 1))"; failed=1; }
done
ctl changsha audit log changsha >/dev/null || { echo "FAIL: audit log changsha fails at changsha"; failed=1; }
figure "N=$N; restarted empty, published after $attempts attempts in ${published_s}s at seq $seq (refused $restoring restoring, $checking checking); not forked; both hold $((N + 1))"
((failed == 0)) || exit 1
echo
echo "restored store: changsha published nothing into its log before it was back; every check passed"
