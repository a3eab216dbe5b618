#!/usr/bin/env bash
# kill -9 of a node twice in the middle of a catch-up, with real credexd processes.
#
# Changsha publishes N records; Wuhan, started empty, takes Changsha's log (appended under
# Changsha's signed roots) and checks each entry into its view behind the append. Wuhan pulls
# through proxy.py at RATE bytes a second (16 MB/s, a WAN link's order), so its log takes
# seconds to arrive and the first kill can land while it does. Wuhan is
# killed -9 once while its log is still arriving (at a quarter of N or more), restarted, and
# killed -9 again once its log is complete and its view part way; then restarted for good. What
# must hold: its log and view reach N exactly (nothing lost, nothing twice), with Changsha's own
# figures (records in force, subjects), none invalid or quarantined, and `credexctl audit log`
# replays the whole log at Wuhan against Changsha's signed checkpoints.
#
#   deploy/fault/kill-mid-catchup.sh            # N=200000
#   deploy/fault/kill-mid-catchup.sh --short    # N=50000
# Debug binaries, built if missing; BIN=target/release for the release ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7830}
N=${N:-200000}
RATE=${RATE:-16000000}
PROXY_BASE=${PROXY_BASE:-7700}
[[ ${1:-} == --short ]] && N=${N_SHORT:-50000}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
WAIT_S=${WAIT_S:-900}

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
proxy_start
proxyctl rate wuhan changsha "$RATE" >/dev/null
via_proxy="changsha=127.0.0.1:$(route_port 1 0)"
say "changsha publishes $N records"
start changsha "$H/changsha" ""
wait_for "changsha up" ctl changsha status
ctl changsha gen --count "$N" --seed 7 | ctl changsha publish >/dev/null
wait_for "changsha's view counted" counted changsha
want=$(figures changsha changsha)
echo "changsha (log, view, in force, subjects, invalid): $want"
failed=0

say "wuhan catches up from empty and is killed -9 while its log arrives"
t0=$(now_ms)
start wuhan "$H/wuhan" "$via_proxy"
log_arriving() { read -r size _ <<<"$(figures wuhan changsha)"; ((size >= N / 4)); }
wait_for "a quarter of changsha's log at wuhan" log_arriving
kill9 wuhan
polled1=$size
echo "killed -9 when it last said $size of $N entries"
start wuhan "$H/wuhan" "$via_proxy"
wait_for "wuhan up" ctl wuhan status
read -r size1 idx1 _ <<<"$(figures wuhan changsha)"
echo "wuhan came back holding $size1 entries, $idx1 in its view"
if ((polled1 >= N)); then
  echo "FAIL: its log was complete before the first kill landed (a lower RATE slows it)"; failed=1
fi

say "killed -9 again with its log complete and its view part way"
log_done_view_not() { read -r size idx _ <<<"$(figures wuhan changsha)"; ((size == N && idx > 0 && idx < N)); }
wait_for "wuhan's log complete, its view part way" log_done_view_not
kill9 wuhan
echo "killed -9 when it last said $size entries, $idx in its view"
polled2=$idx
start wuhan "$H/wuhan" "$via_proxy"
wait_for "wuhan up" ctl wuhan status
read -r size2 idx2 _ <<<"$(figures wuhan changsha)"
echo "wuhan came back holding $size2 entries, $idx2 in its view"

say "wuhan finishes the catch-up"
view_done() { read -r _ idx _ <<<"$(figures wuhan changsha)"; ((idx >= N)); }
wait_for "wuhan's view complete" view_done
catchup_s=$(secs_since "$t0")
wait_for "wuhan's view counted" counted wuhan
got=$(figures wuhan changsha)
echo "wuhan    (log, view, in force, subjects, invalid): $got"
if [[ $got != "$want" ]]; then echo "FAIL: wuhan's figures differ from changsha's"; failed=1; fi
if ! ctl wuhan --json status | python3 -c 'import json, sys; sys.exit(1 if json.load(sys.stdin)["quarantine"] else 0)'; then
  echo "FAIL: wuhan quarantined entries"; failed=1
fi
if ctl wuhan audit log changsha >"$work/audit.txt" 2>&1; then
  echo "audit log changsha at wuhan: $(tail -1 "$work/audit.txt")"
else
  echo "FAIL: audit log changsha at wuhan: $(tail -3 "$work/audit.txt")"; failed=1
fi
figure "N=$N; 1st kill -9 with log at >=$polled1, kept $size1 (view $idx1); 2nd with log complete, view at >=$polled2, kept view $idx2; caught up in ${catchup_s}s; wuhan (log view in-force subjects invalid) $got = changsha's"
((failed == 0)) || exit 1
echo
echo "kill -9 mid catch-up: every check passed"
