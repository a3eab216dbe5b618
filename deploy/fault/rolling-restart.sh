#!/usr/bin/env bash
# All four nodes restarted one by one while every city publishes continuously, with real
# credexd processes.
#
# Each city's platform (a `credexctl publish` loop, `publisher` in lib.sh) publishes batches of
# generated records to its node without pause, retrying a batch the node did not acknowledge
# (down, restarting) until it does; every acknowledgement is kept. Changsha and Hefei are
# stopped with SIGTERM, Wuhan and Nanchang with SIGKILL; each comes back, catches up and takes
# publishes again before the next goes down. What must hold, once the publishers stop and the
# four converge:
#   - each origin's log holds exactly the records its node acknowledged (a retried batch comes
#     back "already present", never twice in the log);
#   - every acknowledged record is in every city's view (all four recognise every origin, the
#     default policy), once, and nothing else is.
#
# Usage: deploy/fault/rolling-restart.sh [--short]   (--short: batches of 20 back to back and
# one round of restarts, else a batch of 100 every 500 ms per city and three rounds). Debug
# binaries, built if missing; BIN=dir for others.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7850}
# The long form paces each city to a batch of 100 every 500 ms: back to back, four debug nodes on
# two cores grow views of several hundred thousand records in minutes, and Operator.Status,
# which counts the view by a full scan (Engine::view_counts), then takes longer than the 30 s
# deadline of the `credexctl status` the script waits on.
BATCH=100 PACE_MS=500 ROUNDS=3
[[ ${1:-} == --short ]] && BATCH=20 PACE_MS=0 ROUNDS=1
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
WAIT_S=${WAIT_S:-120}

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
for i in "${!cities[@]}"; do start "${cities[i]}" "$H/${cities[i]}" "$(peers_direct "$i")"; done
for c in "${cities[@]}"; do wait_for "$c up" ctl "$c" status; done

say "every city publishes batches of $BATCH without pause (at most one every $PACE_MS ms)"
declare -A feeds=()
for c in "${cities[@]}"; do publisher "$c" "$work/pub.$c" "$BATCH" "$PACE_MS" & feeds[$c]=$! pids[pub.$c]=$!; done
# batches CITY: how many batches CITY's node has acknowledged in full.
batches() { local n; n=$(find "$work/pub.$1" -name 'batch.*.jsonl' | wc -l); echo $((n > 0 ? n - 1 : 0)); }
more_batches() { (($(batches "$1") >= $2)); }
for c in "${cities[@]}"; do wait_for "$c's first batches" more_batches "$c" 2; done

t0=$(now_ms)
restarts=0
for round in $(seq "$ROUNDS"); do
  for i in "${!cities[@]}"; do
    c=${cities[i]}
    if ((i % 2 == 0)); then how=SIGTERM; stop "$c"; else how=SIGKILL; kill9 "$c"; fi
    declare -A seen=()
    for o in "${cities[@]}"; do [[ $o == "$c" ]] || seen[$o]=$(size_at "$o" "$o"); done
    start "$c" "$H/$c" "$(peers_direct "$i")"
    wait_for "$c up" ctl "$c" status
    caught_up() { local o; for o in "${!seen[@]}"; do (($(size_at "$c" "$o") >= seen[$o])) || return 1; done; }
    wait_for "$c catches up" caught_up
    done_before=$(batches "$c")
    wait_for "$c takes publishes again" more_batches "$c" $((done_before + 1))
    restarts=$((restarts + 1))
    echo "round $round: $c stopped ($how), back, caught up, publishing: batches acknowledged $(for o in "${cities[@]}"; do printf '%s=%s ' "$o" "$(batches "$o")"; done)"
    unset seen
  done
done
restart_s=$(secs_since "$t0")

say "the publishers stop; the four converge"
for c in "${cities[@]}"; do touch "$work/pub.$c/stop"; done
failed=0
for c in "${cities[@]}"; do
  if ! wait "${feeds[$c]}"; then echo "FAIL: $c's publisher gave up: $(tail -2 "$work/pub.$c/errors")"; failed=1; fi
done
wait_for "the four converge" converged "${cities[@]}"
echo "converged: $(converged "${cities[@]}")"

acks=0
for o in "${cities[@]}"; do
  acked "$work/pub.$o" >"$work/acked.$o"
  n=$(wc -l <"$work/acked.$o")
  acks=$((acks + n))
  size=$(size_at "$o" "$o")
  if ((size != n)); then echo "FAIL: $o's log holds $size entries, its node acknowledged $n distinct records"; failed=1; fi
  for c in "${cities[@]}"; do
    ctl "$c" --json list --origin "$o" --all --page-size 1000 >"$work/list.$c.$o.json"
    if ! python3 - "$work/acked.$o" "$work/list.$c.$o.json" "$c" "$o" <<'PY'; then failed=1; fi
import collections, json, sys
acked = set(open(sys.argv[1]).read().split())
listed = [r["record"]["record_id"] for r in json.load(open(sys.argv[2]))["records"]]
city, origin = sys.argv[3], sys.argv[4]
twice = [i for i, n in collections.Counter(listed).items() if n > 1]
missing = acked - set(listed)
extra = set(listed) - acked
for what, ids in (("twice", twice), ("missing", missing), ("not acknowledged", extra)):
    if ids:
        print(f"FAIL: {city}'s view: {len(ids)} of {origin}'s records {what}, e.g. {sorted(ids)[:3]}")
sys.exit(1 if twice or missing or extra else 0)
PY
  done
done
retries=$(find "$work"/pub.* -name 'ack.*.[1-9]*' | wc -l)
present=$(cat "$work"/pub.*/ack.* | grep -c '"outcome": "already_present"' || true)
echo "$acks records acknowledged, each in all four views once; $retries publish attempts were retried, $present records in them answered already present"
figure "$restarts restarts (SIGTERM, SIGKILL alternating) in ${restart_s}s; $acks acknowledged records in all 4 views once, logs hold exactly them; $retries retried attempts ($present already present)"
((failed == 0)) || exit 1
echo
echo "rolling restart: every check passed"
