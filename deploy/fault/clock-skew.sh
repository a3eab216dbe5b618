#!/usr/bin/env bash
# One node's clock 10 minutes ahead, then 10 minutes behind, with real credexd processes.
#
# credexd has no clock option (tests inject a clock in process), so every node runs under
# libfaketime (Debian's `faketime` package, installed by this script if missing): the honest three at
# 23:55 China Standard Time (UTC+8) of some day D, Nanchang at 00:05 of D+1, later at 23:45 of
# D. The midnight between them is the point: a record's validity depends on its reference date,
# which for a relayed entry must be the date its origin logged it (`logged_at`), never the
# receiver's own clock. What must hold, and what this script checks:
#   - a new city: Nanchang, its log empty, starts two hours ahead of the rest: its first publish
#     is refused (its witnesses cosigned the checkpoint over its empty log, and their
#     cosignatures told their clocks), nothing is logged; it restarts 10 minutes ahead;
#   - ahead: Nanchang publishes a record decided on D+2, its tomorrow (the consortium allows
#     decisions one day ahead); the other three append it and hold it valid, though on their
#     clock D+2 is two days ahead; all four converge with nothing invalid or quarantined, and
#     every origin's newest checkpoint is cosigned by every other city (final);
#   - transaction time follows the origin's clock: at Wuhan, Nanchang's records are not yet
#     known as of Wuhan's "now" and are as of 11 minutes later;
#   - behind: Nanchang restarts 20 minutes earlier than it stopped and publishes on; all four
#     converge again, nothing invalid, every newest checkpoint final;
#   - jumped: Nanchang, restarted on the honest clock, publishes and is cosigned; then its clock
#     jumps two hours ahead while it runs: its publish is refused (UNAVAILABLE, its clock ahead
#     of every witness's), nothing appended, credex_clock_ahead_of_witnesses_seconds says about
#     two hours, and its view stays on the witnesses' day (a listing repaired from tomorrow
#     stays in force there, as everywhere); set right again, it publishes and all four
#     converge. The same when it is
#     restarted two hours ahead and published to at once: publishing waits for the witnesses'
#     answers to its cosigning round at start, which carry their clocks, and so does a lookup of
#     today sent with it (it answers for D, not D+1);
#   - a day behind while it runs: its view takes the witnesses' day (a listing repaired from
#     today is out of force there, as everywhere), credex_clock_behind_witnesses_seconds says a
#     day, and what it publishes is taken by all four.
#
# Usage: deploy/fault/clock-skew.sh [--short]   (the same either way)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7890}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
use_faketime
WAIT_S=${WAIT_S:-90}

# The honest clock: real time + offset reads 23:55:00 CST (15:55:00 UTC) of D.
clock_at 15:55:00
honest=$(($(date +%s) + offset))
fake_now_ms() { echo $((($(date +%s) + offset) * 1000)); }

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
# shellcheck disable=SC2046 # the prefix is words on purpose
for i in 0 1 2; do start "${cities[i]}" "$H/${cities[i]}" "$(peers_direct "$i")" $(clock "$offset"); done
for c in "${cities[@]:0:3}"; do wait_for "$c up" ctl "$c" status; done
failed=0

say "nanchang, a new city that has logged nothing, starts two hours ahead of its witnesses"
# Its log is empty, so there is no checkpoint of entries for the witnesses to cosign; they
# cosign the one over its empty log, whose cosignatures carry their clocks, and its first
# entry is judged by them, not stamped two hours ahead.
# shellcheck disable=SC2046
start nanchang "$H/nanchang" "$(peers_direct 3)" $(clock $((offset + 7200)))
wait_for "nanchang up" ctl nanchang status
first=$(ctl nanchang gen --count 1 --seed 5 --today "$D" | ctl nanchang publish 2>&1 && echo PUBLISHED) || true
if [[ $first == *"s ahead of every witness's"* ]]; then
  echo "ok: a new city two hours ahead: refused: ${first#*UNAVAILABLE: }"
else
  echo "FAIL: a new city two hours ahead: its first publish: $first"; failed=1
fi
[[ $(size_at nanchang nanchang) == 0 ]] || { echo "FAIL: a new city two hours ahead: nanchang's log grew"; failed=1; }
stop nanchang

# shellcheck disable=SC2046
start nanchang "$H/nanchang" "$(peers_direct 3)" $(clock $((offset + 600)))
wait_for "nanchang up" ctl nanchang status
echo "honest clocks at $(date -u -d "@$honest" '+%F %T') UTC (23:55 CST of $D); nanchang 10 minutes ahead (00:05 CST of $(day 1))"
publish() { ctl "$1" gen --count "$2" --seed "$3" --today "$4" | ctl "$1" publish >/dev/null; }
for i in 0 1 2; do publish "${cities[i]}" 30 "$((i + 1))" "$D"; done
publish nanchang 30 4 "$(day 1)"

say "nanchang publishes a record decided on $(day 2), its tomorrow"
# decided CITY DAY: a record CITY generates, every date moved so that it was decided on DAY.
decided() {
  ctl "$1" gen --count 1 --seed 9 --today "$(day 30)" | python3 -c '
import datetime, json, sys
r = json.loads(sys.stdin.readline())
day = datetime.date.fromisoformat
shift = day(sys.argv[1]) - day(r["decision"]["decided_on"])
def moved(text): return (day(text) + shift).isoformat()
r["decision"]["decided_on"] = moved(r["decision"]["decided_on"])
for k in ("starts_on", "ends_on"): r["publication"][k] = moved(r["publication"][k])
if r["status"].get("effective_on"): r["status"]["effective_on"] = moved(r["status"]["effective_on"])
print(json.dumps(r, ensure_ascii=False))' "$2"
}
decided nanchang "$(day 2)" >"$work/ahead.jsonl"
read -r ahead_id ahead_from <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["record_id"], r["publication"]["starts_on"])' "$work/ahead.jsonl")"
ctl nanchang publish "$work/ahead.jsonl" | tail -1
if ctl wuhan publish "$work/ahead.jsonl" >/dev/null 2>&1; then
  echo "FAIL: wuhan took a record of nanchang's"; failed=1
fi
# The honest nodes' own judgement of that date, for contrast: a record of Wuhan's own (its
# record id, its authorities) decided on D+2, two days ahead of D, is refused for that date
# alone. (Nanchang's record renamed would be refused for its authority too, a Nanchang one.)
decided wuhan "$(day 2)" >"$work/ahead-at-wuhan.jsonl"
if refusal=$(ctl wuhan publish "$work/ahead-at-wuhan.jsonl" 2>&1); then
  echo "FAIL: wuhan itself takes a decision dated $(day 2) on $D"; failed=1
elif [[ $refusal =~ record\ wuhan-[0-9a-f]+:\ decision\.decided_on:\ ([^;]*)$ ]]; then
  echo "ok: wuhan's own publish of that date is refused on its clock: ${BASH_REMATCH[1]}"
else
  echo "FAIL: wuhan refused its own record decided on $(day 2) for another reason than its date: $refusal"; failed=1
fi
t0=$(now_ms)
wait_for "the four converge" converged "${cities[@]}"
converge_s=$(secs_since "$t0")
echo "converged in ${converge_s} s: $(converged "${cities[@]}") (no entry invalid anywhere)"
# final CITY...: at every listed city, every origin's newest checkpoint has every other city's
# cosignature.
final() {
  local c
  for c in "${cities[@]}"; do
    status_json "$c" || return 1
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if all(o["final_size"] == o["local_size"] for o in s["origins"]) else 1)' "$work/status.$c.json" || return 1
  done
}
if wait_for "every newest checkpoint final" final; then
  echo "ok: every origin's newest checkpoint is cosigned by all three others, at every city"
else
  echo "FAIL: checkpoints not final: $(for c in "${cities[@]}"; do ctl "$c" status | awk -v c="$c" 'NR > 1 && $1 ~ /^(changsha|wuhan|hefei|nanchang)$/ { printf "%s:%s final %s of %s; ", c, $1, $8, $2 }'; done)"
  failed=1
fi
for c in "${cities[@]}"; do
  if ! ctl "$c" --json list --origin nanchang --all --as-of "$ahead_from" | grep -q "\"$ahead_id\""; then
    echo "FAIL: $c's view on $ahead_from lacks nanchang's record decided on $(day 2)"; failed=1
  fi
done
((failed)) || echo "ok: every city's view on $ahead_from, when its publication starts, holds it"

say "transaction time at wuhan follows nanchang's clock"
known() { ctl wuhan --json list --origin nanchang --all --as-of "$(day 1)" --as-known-at "$1" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["records"]))'; }
now_fake=$(fake_now_ms)
before=$(known "$now_fake")
after=$(known $((now_fake + 660000)))
echo "nanchang's records in wuhan's view of $(day 1): $before as known at wuhan's now, $after as known 11 minutes later"
if ((before != 0 || after == 0)); then echo "FAIL: expected none, then all of them"; failed=1; fi

say "nanchang restarts 10 minutes behind and publishes on"
stop nanchang
# shellcheck disable=SC2046
start nanchang "$H/nanchang" "$(peers_direct 3)" $(clock $((offset - 600)))
wait_for "nanchang up" ctl nanchang status
publish nanchang 30 5 "$D"
for i in 0 1 2; do publish "${cities[i]}" 10 "$((i + 11))" "$D"; done
t0=$(now_ms)
wait_for "the four converge" converged "${cities[@]}"
behind_s=$(secs_since "$t0")
echo "converged in ${behind_s} s: $(converged "${cities[@]}")"
if wait_for "every newest checkpoint final" final; then
  echo "ok: every newest checkpoint final again"
else
  echo "FAIL: checkpoints not final with nanchang behind"; failed=1
fi
say "nanchang's clock jumps two hours ahead while it runs"
stop nanchang
clockfile=$work/nanchang.clock
# shellcheck disable=SC2046
start nanchang "$H/nanchang" "$(peers_direct 3)" $(clock_file "$clockfile" "$offset")
wait_for "nanchang up" ctl nanchang status
# A listing of Changsha's in force today and its repair effective tomorrow: dates are law, so it
# stays in force in every city's view until tomorrow comes, whatever one node's clock says.
decided changsha "$(day -30)" >"$work/listed.jsonl"
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
r["version"] = 2
r["status"] = {"kind": "STATUS_KIND_REPAIRED", "reason": "履行完毕，信用修复", "effective_on": sys.argv[2]}
print(json.dumps(r, ensure_ascii=False))' "$work/listed.jsonl" "$(day 1)" >"$work/repaired.jsonl"
ctl changsha publish "$work/listed.jsonl" >/dev/null
ctl changsha publish "$work/repaired.jsonl" >/dev/null
# A second listing about the same subject, repaired from today: out of force everywhere today.
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
r["record_id"] = r["record_id"][:-1] + ("0" if r["record_id"][-1] != "0" else "1")
print(json.dumps(r, ensure_ascii=False))
r["version"] = 2
r["status"] = {"kind": "STATUS_KIND_REPAIRED", "reason": "履行完毕，信用修复", "effective_on": sys.argv[2]}
print(json.dumps(r, ensure_ascii=False))' "$work/listed.jsonl" "$D" >"$work/repaired-today.jsonl"
sed -n 1p "$work/repaired-today.jsonl" | ctl changsha publish >/dev/null
sed -n 2p "$work/repaired-today.jsonl" | ctl changsha publish >/dev/null
today_id=$(sed -n 1p "$work/repaired-today.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["record_id"])')
read -r listed_id listed_subject <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["record_id"], r["subject"].get("uscc") or r["subject"]["id_number"])' "$work/listed.jsonl")"
# in_force_at CITY [ID]: 1 if the listing (or record ID of the same subject) is in force in
# CITY's view today, else 0.
in_force_at() {
  ctl "$1" --json lookup "$listed_subject" | python3 -c '
import json, sys
view = json.load(sys.stdin)
print(sum(1 for r in view.get("in_force", []) if r["record"]["record_id"] == sys.argv[1]))' "${2:-$listed_id}"
}
publish nanchang 5 6 "$D"
wait_for "the four converge" converged "${cities[@]}"
# Every witness has cosigned nanchang's newest checkpoint: the node knows their clocks.
wait_for "every newest checkpoint final" final || { echo "FAIL: nanchang not cosigned"; failed=1; }
# node_clock: the node's wall clock, from the Date header its admin listener sends.
node_clock() { date -d "$(curl -fsSI --max-time 5 "http://127.0.0.1:$((BASE_PORT + 103))/metrics" | sed -n 's/^[Dd]ate: //p' | tr -d '\r')" +%s; }
# clock_reads MIN MAX: the node's clock is MIN to MAX seconds ahead of the honest one.
clock_reads() { local t; t=$(node_clock) && (($1 <= t - $(date +%s) - offset && t - $(date +%s) - offset <= $2)); }
ahead_gauge() { metric 3 credex_clock_ahead_of_witnesses_seconds; }
# publish_one: publishes one record at nanchang; prints what the node answered, and PUBLISHED
# last if it took the record.
publish_one() { ctl nanchang gen --count 1 --seed 7 --today "$D" | ctl nanchang publish 2>&1 && echo PUBLISHED; }
# refused_ahead WHEN SEED SIZE_BEFORE ANSWER: nanchang refused the publish that ANSWER is
# publish_one's output of, for its clock, appended nothing since its log held SIZE_BEFORE
# entries, its gauge says about two hours, and its view keeps the listing repaired from
# tomorrow in force; then, its clock set right, it publishes again (seed SEED) and all four
# converge.
refused_ahead() {
  local refusal=$4 ahead
  if [[ $refusal == *PUBLISHED ]]; then
    echo "FAIL: $1: nanchang published two hours ahead of its witnesses"; failed=1
  elif [[ $refusal == *"s ahead of every witness's"* ]]; then
    echo "ok: $1: refused: ${refusal#*UNAVAILABLE: }"
  else
    echo "FAIL: $1: refused for another reason: $refusal"; failed=1
  fi
  [[ $(size_at nanchang nanchang) == "$3" ]] || { echo "FAIL: $1: nanchang's log grew"; failed=1; }
  ahead=$(ahead_gauge)
  if ((${ahead:-0} >= 7100 && ${ahead:-0} <= 7300)); then
    echo "ok: $1: credex_clock_ahead_of_witnesses_seconds at nanchang: $ahead"
  else
    echo "FAIL: $1: credex_clock_ahead_of_witnesses_seconds at nanchang: ${ahead:-none}, expected about 7200"; failed=1
  fi
  # Its clock reads tomorrow, 01:55: its view stays on the witnesses' day, as every other city's.
  local at_nanchang at_wuhan
  at_nanchang=$(in_force_at nanchang) at_wuhan=$(in_force_at wuhan)
  if [[ $at_nanchang == 1 && $at_wuhan == 1 ]]; then
    echo "ok: $1: the listing repaired from $(day 1) is in force at nanchang, as at wuhan"
  else
    echo "FAIL: $1: the listing repaired from $(day 1) in force at nanchang: $at_nanchang, at wuhan: $at_wuhan"; failed=1
  fi
  set_clock_file "$clockfile" "$offset"
  # Refused until the node reads the file again (within a second), then published. (The Date
  # header cannot tell: hyper refreshes it only once its clock passes the next second it cached.)
  wait_for "nanchang publishing again, its clock set right" publish nanchang 5 "$2" "$D"
  wait_for "the four converge" converged "${cities[@]}"
  echo "$1, set right: published and converged: $(converged "${cities[@]}")"
}
set_clock_file "$clockfile" $((offset + 7200))
wait_for "nanchang's clock two hours ahead" clock_reads 7100 7300
size_before=$(size_at nanchang nanchang)
refused_ahead "jumped while running" 8 "$size_before" "$(publish_one)"

say "nanchang restarted two hours ahead, published to before its witnesses answer"
stop nanchang
# Its dials to the witnesses go through the link proxies, held until the publish is in.
proxy_start
proxyctl isolate nanchang drop >/dev/null
# shellcheck disable=SC2046
start nanchang "$H/nanchang" "$(peers_via_proxy 3)" $(clock_file "$clockfile" $((offset + 7200)))
wait_for "nanchang up" ctl nanchang status
size_before=$(size_at nanchang nanchang)
publish_one >"$work/early" &
early=$!
# And a lookup of today, answered by the day the witnesses' clocks give once they answer.
ctl nanchang --json lookup "$listed_subject" >"$work/early-lookup" 2>&1 &
early_lookup=$!
# clients_in: the publish's and the lookup's clients each hold a connection to nanchang's gRPC
# port, or have their answers.
clients_in() {
  local connected waiting=0
  connected=$(ss -Htnp state established "( dport = :$((BASE_PORT + 3)) )" | grep -c '"credexctl"' || true)
  if kill -0 "$early" 2>/dev/null; then waiting=$((waiting + 1)); fi
  if kill -0 "$early_lookup" 2>/dev/null; then waiting=$((waiting + 1)); fi
  ((connected >= waiting))
}
wait_for "the publish and the lookup connected to nanchang" clients_in
proxyctl heal nanchang >/dev/null
wait "$early" || true
wait "$early_lookup" || true
# The publish came in before any witness had answered the cosigning round at start: publishing
# waits for their answers, which carry their clocks, before it stamps anything.
refused_ahead "restarted ahead" 10 "$size_before" "$(cat "$work/early")"
# So does a query of today: its day is the witnesses', not tomorrow by the clock two hours on.
early_day=$(python3 -c '
import json, sys
try: v = json.load(open(sys.argv[1]))
except ValueError: v = {}
print(v.get("as_of") or v.get("asOf") or "none")' "$work/early-lookup")
if [[ $early_day == "$D" ]]; then
  echo "ok: restarted ahead: a lookup of today sent before the witnesses answered is of $D"
else
  echo "FAIL: restarted ahead: a lookup of today sent before the witnesses answered is of $early_day, not $D: $(head -c 300 "$work/early-lookup")"; failed=1
fi
say "nanchang's clock a day behind while it runs"
set_clock_file "$clockfile" $((offset - 86400))
# The date tick sets the gauge every 200 ms; the Date header cannot show a clock put back,
# hyper caching it until its clock passes.
behind_gauge() { metric 3 credex_clock_behind_witnesses_seconds; }
a_day_behind() { local b; b=$(behind_gauge) && ((${b:-0} >= 86300 && ${b:-0} <= 86500)); }
wait_for "nanchang's clock a day behind its witnesses'" a_day_behind
echo "ok: a day behind: credex_clock_behind_witnesses_seconds at nanchang: $(behind_gauge)"
# Its clock reads yesterday: its view takes the witnesses' day, on which the listing repaired
# from today is out of force, as at Wuhan.
at_nanchang=$(in_force_at nanchang "$today_id") at_wuhan=$(in_force_at wuhan "$today_id")
if [[ $at_nanchang == 0 && $at_wuhan == 0 ]]; then
  echo "ok: a day behind: the listing repaired from $D is out of force at nanchang, as at wuhan"
else
  echo "FAIL: a day behind: the listing repaired from $D in force at nanchang: $at_nanchang, at wuhan: $at_wuhan"; failed=1
fi
# What it publishes is stamped with the witnesses' time, judged on today, and reaches all four.
publish nanchang 5 12 "$D"
wait_for "the four converge" converged "${cities[@]}"
set_clock_file "$clockfile" "$offset"
echo "a day behind: published and converged: $(converged "${cities[@]}")"
figure "new city +2h: refused, nothing logged; +10min: D+2 decision accepted by all, converged ${converge_s}s, known-at $before then $after; -10min: converged ${behind_s}s; final cosigned; +2h while running and at a restart (published to before its witnesses answered): refused, its view on D; a day behind: its view on D, published; $(converged "${cities[@]}")"
((failed == 0)) || exit 1
echo
echo "clock skew: every check passed"
