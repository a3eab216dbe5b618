# shellcheck shell=bash
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
# start NAME CITY-DIR PEERS [PREFIX...]: runs credexd with the config in CITY-DIR, peers
# overridden; PREFIX is a command to run it under (`env CREDEX_DATA_DIR=…`, `faketime …`).
start() {
  local name=$1 dir=$2 peers=$3
  shift 3
  CREDEX_PEERS=$peers "$@" "$BIN/credexd" --config "$dir/node.toml" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}
stop() {
  local name=$1
  kill -TERM "${pids[$name]}"
  wait "${pids[$name]}" || true
  unset "pids[$name]"
}
# kill9 NAME: SIGKILL, and reaped.
kill9() {
  local name=$1
  kill -9 "${pids[$name]}"
  wait "${pids[$name]}" 2>/dev/null || true
  unset "pids[$name]"
}
# wait_for WHAT COMMAND...: polls the command until it succeeds, for at most WAIT_S seconds (60)
# of wall time however long each try takes.
wait_for() {
  local what=$1; shift
  local end=$((SECONDS + ${WAIT_S:-60}))
  while ((SECONDS < end)); do
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
print(*(int(n) for n in (o.get("local_size", 0), o.get("indexed_size", 0),
      v.get("records_in_force", 0), v.get("subjects", 0), s.get("invalid_entries", 0))))' "$2"
}
# counted CITY: CITY's status holds current counts of its view: not while the node counts every
# record again (a store counted under other rules) or before the date tick has reached today
# (engine::counts), so compare view figures only once this holds.
counted() {
  ctl "$1" --json status 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin).get("view") or {}
sys.exit(0 if v.get("current") else 1)'
}
# quarantined CITY REASON: how many entries CITY quarantined for REASON.
quarantined() {
  ctl "$1" --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(int(q["count"]) for q in s["quarantine"] if q["reason"] == sys.argv[1]))' "$2"
}

# use_faketime: finds Debian's libfaketime for `clock`, installing the `faketime` package when
# run as root; exits 77 (skipped) where it cannot. credexd has no clock option (tests inject a
# clock in process), so the clock scenarios run nodes under libfaketime.
use_faketime() {
  find_libfaketime() { compgen -G '/usr/lib/*/faketime/libfaketimeMT.so.1' | head -1; }
  if [[ -z $(find_libfaketime) ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq faketime >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq faketime; } >/dev/null
    else
      echo "SKIP: no libfaketime (apt-get install faketime)"; exit 77
    fi
  fi
  libfaketime=$(find_libfaketime)
}
# clock SECONDS: a command prefix running a program under a clock SECONDS ahead of the real
# one (negative: behind), through libfaketime preloaded (not the `faketime` wrapper, which
# forks: the pid the script holds must be the node's). Monotonic clocks are left alone: they
# measure intervals, and these scenarios are about the wall clock.
clock() { echo env LD_PRELOAD="$libfaketime" FAKETIME="$(printf '%+d' "$1")" FAKETIME_DONT_FAKE_MONOTONIC=1; }
# clock_file FILE SECONDS: the same, the offset read from FILE (written here) at most a second
# old, so the script can move a running node's clock with set_clock_file FILE SECONDS.
set_clock_file() { printf '%+d\n' "$2" >"$1"; }
clock_file() {
  set_clock_file "$1" "$2"
  echo env LD_PRELOAD="$libfaketime" FAKETIME_TIMESTAMP_FILE="$1" FAKETIME_CACHE_DURATION=1 FAKETIME_DONT_FAKE_MONOTONIC=1
}
# clock_at HH:MM:SS: sets `offset` so that real time + offset reads that UTC time of a day D, the
# next such instant at least 10 minutes away (so no day turns, on either clock, while a script
# runs), and `D`; `day N` prints D + N days.
clock_at() {
  local real at
  real=$(date +%s)
  at=$(date -u -d "$(date -u -d "@$real" +%F) $1" +%s)
  ((at - real >= 600)) || at=$((at + 86400))
  offset=$((at - real))
  D=$(date -u -d "@$at" +%F)
}
day() { date -u -d "$D + $1 day" +%F; }

# The members in `consortium init` order: city i listens on BASE_PORT + i.
cities=(changsha wuhan hefei nanchang)
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# secs_since MS: seconds since the `now_ms` reading MS, one decimal.
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }
# figure TEXT: the scenario's figures, printed and handed to suite.sh (FAULT_FIGURES) if it runs us.
figure() {
  echo "figures: $*"
  if [[ -n ${FAULT_FIGURES:-} ]]; then echo "$*" >>"$FAULT_FIGURES"; fi
}
# metric INDEX NAME: the value of the gauge or counter NAME that city INDEX's node serves on its
# admin listener (127.0.0.1:BASE_PORT+100+INDEX, as consortium init puts it).
metric() {
  curl -fsS --max-time 5 "http://127.0.0.1:$((BASE_PORT + 100 + $1))/metrics" |
    sed -n "s/^$2{[^}]*} \(-*[0-9]*\)\$/\1/p"
}
# status_json CITY: `credexctl --json status` at CITY, kept in $work/status.CITY.json.
status_json() { ctl "$1" --json status >"$work/status.$1.json.tmp" && mv "$work/status.$1.json.tmp" "$work/status.$1.json"; }
# converged [CITY...]: every listed city (default all) holds every listed city's log at the
# size the origin itself holds, all of it in its view, with nothing invalid, quarantined or
# forked. Prints "SIZE..." per origin on success.
converged() {
  local members=("$@")
  ((${#members[@]})) || members=("${cities[@]}")
  local c
  for c in "${members[@]}"; do status_json "$c" || return 1; done
  python3 - "$work" "${members[@]}" <<'PY'
import json, sys
work, members = sys.argv[1], sys.argv[2:]
st = {c: json.load(open(f"{work}/status.{c}.json")) for c in members}
own = {c: int(next(o for o in st[c]["origins"] if o["origin"] == c)["local_size"]) for c in members}
for c in members:
    s = st[c]
    if int(s["invalid_entries"]) or s["quarantine"]:
        sys.exit(f"{c}: invalid {s['invalid_entries']}, quarantine {s['quarantine']}")
    for o in s["origins"]:
        if o["origin"] in own and (int(o["local_size"]), int(o["indexed_size"])) != (own[o["origin"]],) * 2:
            sys.exit(1)
        if o["forked"]:
            sys.exit(f"{c} marks {o['origin']} forked")
print(" ".join(f"{c}={own[c]}" for c in members))
PY
}
# size_at CITY ORIGIN: the size of ORIGIN's log CITY holds.
size_at() { read -r size _ <<<"$(figures "$1" "$2")"; echo "$size"; }

# The link proxies (proxy.py): route a>b listens on PROXY_BASE + 4*index(a) + index(b).
PROXY_BASE=${PROXY_BASE:-$((BASE_PORT + 20))}
route_port() { echo $((PROXY_BASE + 4 * $1 + $2)); }
proxy_start() {
  local routes=() i j
  for i in "${!cities[@]}"; do
    for j in "${!cities[@]}"; do
      ((i == j)) || routes+=("${cities[i]}>${cities[j]}=$(route_port "$i" "$j"):$((BASE_PORT + j))")
    done
  done
  python3 "$(dirname "${BASH_SOURCE[0]}")/proxy.py" "$((PROXY_BASE + 16))" "${routes[@]}" >>"$work/proxy.log" 2>&1 &
  pids[proxy]=$!
  wait_for "link proxies up" proxyctl ping
}
# proxyctl COMMAND...: one control command; fails unless the proxy answers "ok".
proxyctl() {
  local fd reply
  exec {fd}<>"/dev/tcp/127.0.0.1/$((PROXY_BASE + 16))" || return 1
  printf '%s\n' "$*" >&"$fd"
  read -r reply <&"$fd" || reply="err no answer"
  exec {fd}>&-
  echo "$reply"
  [[ $reply == ok* ]]
}
# peers_via_proxy INDEX: CREDEX_PEERS for city INDEX, every peer reached through its route.
peers_via_proxy() {
  local i=$1 j list=()
  for j in "${!cities[@]}"; do
    ((i == j)) || list+=("${cities[j]}=127.0.0.1:$(route_port "$i" "$j")")
  done
  local IFS=,
  echo "${list[*]}"
}
# peers_direct INDEX: CREDEX_PEERS for city INDEX, every other member at its own address.
peers_direct() {
  local i=$1 j list=()
  for j in "${!cities[@]}"; do ((i == j)) || list+=("${cities[j]}=$(addr "$j")"); done
  local IFS=,
  echo "${list[*]}"
}

# publisher CITY DIR BATCH [PACE_MS]: publishes BATCH generated records at a time at CITY until
# the file DIR/stop exists, a batch every PACE_MS at most (0: back to back), each batch (seed 1,
# 2, …) retried until the node acknowledges all of it, so a node that is down or restarting
# delays it but loses nothing. Every acknowledgement the node gave is in DIR/ack.SEED.N
# (credexctl's --json output, partial if the run broke off).
publisher() {
  local city=$1 dir=$2 batch=$3 pace=${4:-0} seed=1 try began left
  mkdir -p "$dir"
  while [[ ! -e $dir/stop ]]; do
    began=$(now_ms)
    ctl "$city" gen --count "$batch" --seed "$seed" >"$dir/batch.$seed.jsonl"
    try=0
    until ctl "$city" --json publish "$dir/batch.$seed.jsonl" >"$dir/ack.$seed.$try" 2>>"$dir/errors"; do
      try=$((try + 1))
      if ((try > 600)); then echo "publisher $city: batch $seed never acknowledged" >>"$dir/errors"; return 1; fi
      sleep 0.1 # a retry's back-off, not a synchronisation: the node may be restarting
    done
    seed=$((seed + 1))
    left=$((began + pace - $(now_ms)))
    if ((left > 0)); then sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"; fi # the pace
  done
}
# acked DIR: the record ids acknowledged in DIR's publisher output, one a line, sorted, unique.
acked() { cat "$1"/ack.* 2>/dev/null | sed -n 's/^ *"record_id": "\([^"]*\)",$/\1/p' | sort -u; }
