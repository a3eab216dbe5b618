#!/usr/bin/env bash
# A node down over the days a sanction started and ended, with real credexd processes.
#
# Dates are law: a sanction starts and ends on the dates its decision says, in every city the
# same day, and a downstream system following a city's change feed (View.Watch) must learn both,
# whether or not that city's node was up on those days. Changsha and Wuhan run under
# libfaketime (Debian's `faketime` package, installed by lib.sh's use_faketime if missing), their
# clocks reading noon China Standard Time (UTC+8) of some day D plus an offset in days.
# What must hold, and what this script checks:
#   - on D Changsha publishes a record published from D+2 to D+4 (in force three days) and
#     another in force today whose repair takes effect on D+3; Wuhan holds both, then stops;
#   - Changsha is up on D+2, D+3 and D+5: its feed says ENTERED on D+2, LEFT (repaired) on D+3,
#     LEFT (expired) on D+5;
#   - Wuhan starts again on D+7, down over all three dates: its feed holds the same changes in the
#     same order, each dated the same day, and its status counts are current.
#
# Usage: deploy/fault/down-over-days.sh [--short]   (the same either way)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7960}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
use_faketime
WAIT_S=${WAIT_S:-90}

# The nodes' clock on day D: real time + offset reads 12:00:00 CST (04:00:00 UTC) of D.
clock_at 04:00:00
# on CITY DAYS: start CITY (changsha or wuhan, peered with each other only) on D + DAYS.
on() {
  local city=$1 peer
  [[ $city == changsha ]] && peer="wuhan=$(addr 1)" || peer="changsha=$(addr 0)"
  # shellcheck disable=SC2046 # the prefix is words on purpose
  start "$city" "$H/$city" "$peer" $(clock $((offset + $2 * 86400)))
  wait_for "$city up on $(day "$2")" ctl "$city" status
  wait_for "$city's counts current on $(day "$2")" counted "$city"
}

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
failed=0
# feed CITY: the city's change feed, "RECORD KIND vN REASON EFFECTIVE_ON" a line, in its order.
feed() {
  { timeout 5 "$BIN/credexctl" --home "$H" --city "$1" --json watch --from-start || true; } |
    python3 -c '
import json, sys
lines = []
for line in sys.stdin:
    c = json.loads(line)
    lines.append(" ".join((c["record_id"], c["kind"], "v%s" % c["version"],
                           c.get("reason", "-"), c["effective_on"])))
print("\n".join(lines))'
}

say "on $D: changsha publishes a record in force $(day 2) to $(day 4), and one repaired from $(day 3)"
on changsha 0
on wuhan 0
ctl changsha gen --count 2 --seed 5 --today "$D" >"$work/v1.jsonl"
python3 - "$work" "$(day 2)" "$(day 4)" "$(day 3)" <<'PY'
import json, sys
work, starts, ends, repaired = sys.argv[1:]
a, b = (json.loads(line) for line in open(f"{work}/v1.jsonl"))
a["publication"] = {"starts_on": starts, "ends_on": ends}
b2 = dict(b, version=2, status={"kind": "STATUS_KIND_REPAIRED", "reason": "履行完毕，信用修复",
                                "effective_on": repaired})
with open(f"{work}/v1.jsonl", "w") as f:
    for r in (a, b):
        print(json.dumps(r, ensure_ascii=False), file=f)
with open(f"{work}/v2.jsonl", "w") as f:
    print(json.dumps(b2, ensure_ascii=False), file=f)
with open(f"{work}/ids", "w") as f:
    print(a["record_id"], b["record_id"], file=f)
PY
read -r a b <"$work/ids"
ctl changsha publish "$work/v1.jsonl" >/dev/null
ctl changsha publish "$work/v2.jsonl" >/dev/null
wait_for "wuhan holds changsha's three entries" converged changsha wuhan
stop wuhan
stop changsha

for d in 2 3 5; do
  say "changsha up on $(day "$d")"
  on changsha "$d"
  stop changsha
done
expected="$b KIND_ENTERED v1 EXCLUSION_REASON_UNSPECIFIED $D
$a KIND_ENTERED v1 EXCLUSION_REASON_UNSPECIFIED $(day 2)
$b KIND_LEFT v2 EXCLUSION_REASON_REPAIRED $(day 3)
$a KIND_LEFT v1 EXCLUSION_REASON_EXPIRED $(day 5)"

say "wuhan starts again on $(day 7), down over all three dates"
on changsha 7
at_changsha=$(feed changsha)
on wuhan 7
at_wuhan=$(feed wuhan)
if [[ $at_changsha == "$expected" ]]; then
  echo "ok: changsha's feed, up on each date:"; sed 's/^/    /' <<<"$at_changsha"
else
  echo "FAIL: changsha's feed:"; sed 's/^/    /' <<<"$at_changsha"; echo "expected:"; sed 's/^/    /' <<<"$expected"; failed=1
fi
if [[ $at_wuhan == "$at_changsha" ]]; then
  echo "ok: wuhan's feed, down over them, holds the same changes on the same days, in the same order"
else
  echo "FAIL: wuhan's feed:"; sed 's/^/    /' <<<"$at_wuhan"; failed=1
fi
stop wuhan
stop changsha

figure "changes at changsha (up each day) $(wc -l <<<"$at_changsha"), at wuhan (down) $(grep -c . <<<"$at_wuhan" || true), same dates: $([[ $at_wuhan == "$at_changsha" ]] && echo yes || echo no)"
((failed == 0)) || exit 1
echo
echo "down over days: every check passed"
