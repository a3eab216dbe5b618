# Shared by the fault scripts: real credexd processes on 127.0.0.1, one consortium in a temp dir.
# Callers set BIN and BASE_PORT, then source this file.
work=$(mktemp -d)
H=$work/consortium
declare -A pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
ctl() { local city=$1; shift; "$BIN/credexctl" --home "$H" --city "$city" --timeout 30 "$@"; }
addr() { echo "127.0.0.1:$((BASE_PORT + $1))"; }
# start NAME CITY-DIR PEERS: runs credexd with the config in CITY-DIR, peers overridden.
start() {
  local name=$1 dir=$2 peers=$3
  CREDEX_PEERS=$peers "$BIN/credexd" --config "$dir/node.toml" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}
stop() {
  local name=$1
  kill -TERM "${pids[$name]}"
  wait "${pids[$name]}" || true
  unset "pids[$name]"
}
# wait_for WHAT COMMAND...: polls the command until it succeeds, for at most WAIT_S seconds (60).
wait_for() {
  local what=$1; shift
  for _ in $(seq $((${WAIT_S:-60} * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $what" >&2
  return 1
}
# figures CITY ORIGIN: "log-size in-view records-in-force subjects invalid-entries" at CITY.
figures() {
  ctl "$1" --json status 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
o = next((o for o in s["origins"] if o["origin"] == sys.argv[1]), {})
v = s.get("view") or {}
print(o.get("local_size", 0), o.get("indexed_size", 0), v.get("records_in_force", 0),
      v.get("subjects", 0), s.get("invalid_entries", 0))' "$2"
}
# quarantined CITY REASON: how many entries CITY quarantined for REASON.
quarantined() {
  ctl "$1" --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(q["count"] for q in s["quarantine"] if q["reason"] == sys.argv[1]))' "$2"
}
