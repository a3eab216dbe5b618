#!/usr/bin/env bash
# A node's clock set ten days ahead, then put right, with a real credexd process.
#
# Dates are law: a sanction ends on the date its repair says, and not before, whatever a clock
# once said. Changsha's node runs alone under libfaketime (Debian's `faketime` package, installed
# by lib.sh's use_faketime if missing), its clock reading noon China Standard Time (UTC+8) of
# some day D plus an offset in days. What must hold, and what this script checks:
#   - ten days ahead (D+10): a record, then its repair effective D+5 (in the past on that clock):
#     the sanction is lifted at once (lookup: excluded, repaired; the change feed: LEFT);
#   - put right (D, the node restarted on the true clock): the sanction holds again — lookup
#     finds it in force, the change feed says ENTERED on D, status counts it in force, current,
#     and the node's metrics count one step back (credex_view_steps_back_total);
#   - put right, a new record: stamped just after the log's last entry (logged on D+10), not on
#     D, so the log goes forward in time: as known at the checkpoint of size 2 the view lacks
#     it, at size 3 it holds it, and credex_publish_clock_behind_seconds says ten days;
#   - on D+5 (restarted five days ahead): lifted again, the change feed's LEFT dated D+5.
#
# Usage: deploy/fault/clock-back.sh [--short]   (the same either way)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7930}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
use_faketime
WAIT_S=${WAIT_S:-90}

# The node's clock on day D: real time + offset reads 12:00:00 CST (04:00:00 UTC) of D.
clock_at 04:00:00
# on DAYS: start changsha with its clock on D + DAYS.
on() {
  # shellcheck disable=SC2046 # the prefix is words on purpose
  start changsha "$H/changsha" "" $(clock $((offset + $1 * 86400)))
  wait_for "changsha up on $(day "$1")" ctl changsha status
}

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
failed=0
# standing SUBJECT [LOOKUP OPTION…]: "in force vN", "excluded REASON vN" or "absent", from a
# lookup.
standing() {
  ctl changsha --json lookup "$@" | python3 -c '
import json, sys
v = json.load(sys.stdin)
f, x = v.get("in_force") or [], v.get("excluded") or []
if f: print("in force v%s" % f[0]["record"]["version"])
elif x: print("excluded %s v%s" % (x[0].get("reason", "?"), x[0].get("version", "?")))
else: print("absent")'
}
# last_change: the change feed's newest change, "KIND vN EFFECTIVE_ON".
last_change() {
  { timeout 5 "$BIN/credexctl" --home "$H" --city changsha --json watch --from-start || true; } |
    tail -1 | python3 -c '
import json, sys
c = json.loads(sys.stdin.read())
print(c["kind"], "v%s" % c["version"], c["effective_on"])'
}
# in_force_counted: status counts the record in force, and its counts are current.
in_force_counted() {
  ctl changsha --json status | python3 -c '
import json, sys
v = json.load(sys.stdin).get("view") or {}
sys.exit(0 if v.get("current") and int(v.get("records_in_force", 0)) == int(sys.argv[1]) else 1)' "$1"
}
check() {
  local what=$1 got=$2 want=$3
  if [[ $got == "$want" ]]; then echo "ok: $what: $got"; else echo "FAIL: $what: $got, expected $want"; failed=1; fi
}

say "changsha's clock ten days ahead, on $(day 10): a record, then its repair effective $(day 5)"
on 10
ctl changsha gen --count 1 --seed 3 --today "$D" >"$work/v1.jsonl"
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
r["version"] = 2
r["status"] = {"kind": "STATUS_KIND_REPAIRED", "reason": "履行完毕，信用修复", "effective_on": sys.argv[2]}
print(json.dumps(r, ensure_ascii=False))' "$work/v1.jsonl" "$(day 5)" >"$work/v2.jsonl"
subject=$(python3 -c '
import json, sys
s = json.loads(open(sys.argv[1]).readline())["subject"]
print(s.get("uscc") or s["id_number"])' "$work/v1.jsonl")
ctl changsha publish "$work/v1.jsonl" >/dev/null
ctl changsha publish "$work/v2.jsonl" >/dev/null
check "lookup on $(day 10)" "$(standing "$subject")" "excluded EXCLUSION_REASON_REPAIRED v2"
check "the change feed" "$(last_change)" "KIND_LEFT v2 $(day 5)"
stop changsha

say "the clock put right, on $D"
t0=$(now_ms)
on 0
if wait_for "the record counted in force again" in_force_counted 1; then
  echo "ok: status counts it in force, current, $(secs_since "$t0") s after the start"
else
  echo "FAIL: status does not count the record in force on $D"; failed=1
fi
back=$(standing "$subject")
check "lookup on $D" "$back" "in force v1"
check "the change feed" "$(last_change)" "KIND_ENTERED v1 $D"
steps=$(metric 0 credex_view_steps_back_total)
check "credex_view_steps_back_total" "$steps" 1
say "a new record on $D, the log's last entry logged on $(day 10)"
ctl changsha gen --count 1 --seed 4 --today "$D" >"$work/new.jsonl"
fresh=$(python3 -c '
import json, sys
s = json.loads(open(sys.argv[1]).readline())["subject"]
print(s.get("uscc") or s["id_number"])' "$work/new.jsonl")
ctl changsha publish "$work/new.jsonl" >/dev/null
check "the new record as known at checkpoint 2" "$(standing "$fresh" --as-known-at-checkpoint 2)" "absent"
check "the new record as known at checkpoint 3" "$(standing "$fresh" --as-known-at-checkpoint 3)" "in force v1"
behind=$(metric 0 credex_publish_clock_behind_seconds)
# Ten days less the seconds between the two publishes (each clock counts on from its noon).
check "credex_publish_clock_behind_seconds ($behind) within an hour of ten days" \
  "$((${behind:-0} > 860400 && ${behind:-0} <= 864000))" 1
stop changsha

say "on $(day 5), the repair's own date"
on 5
# In force: only the new record.
wait_for "the record counted lifted" in_force_counted 1 || { echo "FAIL: still counted in force on $(day 5)"; failed=1; }
again=$(standing "$subject")
check "lookup on $(day 5)" "$again" "excluded EXCLUSION_REASON_REPAIRED v2"
check "the change feed" "$(last_change)" "KIND_LEFT v2 $(day 5)"
stop changsha

figure "+10d: lifted by a repair dated +5d; put right: $back; on +5d: $again"
((failed == 0)) || exit 1
echo
echo "clock back: every check passed"
