#!/usr/bin/env bash
# kill -9 of a node whose log has caught up but whose view has not, with real credexd processes.
#
# Changsha publishes N records; Wuhan, started empty, takes Changsha's log (appended under
# Changsha's signed roots) faster than its indexer checks each entry into the view. Wuhan is
# killed -9 as soon as its log is complete and its view is not, then restarted: its view must
# reach every entry, with the same figures as Changsha's own, none invalid and none twice.
#
#   deploy/fault/kill-mid-index.sh            # N=60000, release binaries (built if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
BASE_PORT=${BASE_PORT:-7740}
N=${N:-60000}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --release --bins
source deploy/fault/lib.sh
WAIT_S=600

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
say "changsha publishes $N records"
start changsha "$H/changsha" ""
wait_for "changsha up" ctl changsha status
ctl changsha gen --count "$N" --seed 7 | ctl changsha publish >/dev/null
want=$(figures changsha changsha)
echo "changsha (log, view, in force, subjects, invalid): $want"

say "wuhan catches up from empty and is killed -9 between its log and its view"
start wuhan "$H/wuhan" "changsha=$(addr 0)"
log_done_view_not() { read -r size idx _ <<<"$(figures wuhan changsha)"; ((size == N && idx < N)); }
wait_for "wuhan's log complete, its view not" log_done_view_not
read -r size idx _ <<<"$(figures wuhan changsha)"
kill -9 "${pids[wuhan]}"
wait "${pids[wuhan]}" 2>/dev/null || true
unset 'pids[wuhan]'
echo "killed with $size entries in the log, $idx in the view"

say "wuhan restarts"
start wuhan "$H/wuhan" "changsha=$(addr 0)"
view_done() { read -r _ idx _ <<<"$(figures wuhan changsha)"; ((idx == N)); }
wait_for "wuhan's view complete" view_done
got=$(figures wuhan changsha)
echo "wuhan    (log, view, in force, subjects, invalid): $got"
if [[ $got != "$want" ]]; then
  echo "FAIL: wuhan's figures differ from changsha's"
  exit 1
fi
echo
echo "kill -9 between log and view: every check passed"
