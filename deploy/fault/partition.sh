#!/usr/bin/env bash
# Links cut and a city isolated, with real credexd processes and a TCP proxy on every link.
#
# Every node reaches every peer through proxy.py (route a>b: the connections a dials to b), so
# the script can cut a link and heal it. What must hold, and what this script checks:
#   1. Changsha–Wuhan cut (reset: connections refused): records published at each end reach
#      the other through Hefei or Nanchang, with no byte crossing the cut link.
#   2. Hefei isolated (drop: nothing crosses, nothing is closed, as in a WAN partition) while
#      all four keep publishing: neither side receives the other's new records; on heal all
#      four converge (same log sizes, every entry in every view, none invalid or quarantined,
#      no origin forked, the same view counts), in the seconds printed.
#
# Usage: deploy/fault/partition.sh [--short]   (--short: a 10 s isolation, else 45 s, which
# outlasts the 30 s sync idle deadline, so the nodes redial into the partition and must come
# back on fresh connections). Debug binaries, built if missing; BIN=dir for others.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7800}
ISOLATE_S=45
[[ ${1:-} == --short ]] && ISOLATE_S=10
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
WAIT_S=${WAIT_S:-120}

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
proxy_start
for i in "${!cities[@]}"; do start "${cities[i]}" "$H/${cities[i]}" "$(peers_via_proxy "$i")"; done
for c in "${cities[@]}"; do wait_for "$c up" ctl "$c" status; done
publish() { ctl "$1" gen --count "$2" --seed "$3" | ctl "$1" publish >/dev/null; }
for i in "${!cities[@]}"; do publish "${cities[i]}" 50 "$((i + 1))"; done
wait_for "the four converge" converged "${cities[@]}"
echo "meshed through the proxies: $(converged "${cities[@]}")"

say "changsha-wuhan cut (reset); each end publishes"
proxyctl cut changsha wuhan reset
bytes_cut() { proxyctl stats | tr ' ' '\n' | awk -F'[=/]' '$1 == "changsha>wuhan" || $1 == "wuhan>changsha" { s += $4 } END { print s + 0 }'; }
before=$(bytes_cut)
publish changsha 100 11
publish wuhan 100 12
t0=$(now_ms)
cs=$(size_at changsha changsha) wh=$(size_at wuhan wuhan)
holds() { (($(size_at "$1" "$2") == $3)); }
wait_for "wuhan holds changsha's new records" holds wuhan changsha "$cs"
wait_for "changsha holds wuhan's new records" holds changsha wuhan "$wh"
relay_s=$(secs_since "$t0")
wait_for "the four converge" converged "${cities[@]}"
failed=0
after=$(bytes_cut)
if ((after != before)); then echo "FAIL: $((after - before)) bytes crossed the cut link"; failed=1; fi
echo "both ends hold each other's records ${relay_s} s after publishing, through a third city"
proxyctl heal changsha wuhan

say "hefei isolated (drop) for $ISOLATE_S s while every city publishes"
proxyctl isolate hefei drop
frozen=$(converged "${cities[@]}")
declare -A at_cut=()
for c in "${cities[@]}"; do at_cut[$c]=$(size_at "$c" "$c"); done
end=$(($(date +%s) + ISOLATE_S))
keep_publishing() {
  local city=$1 seed=$2
  while (($(date +%s) < end)); do publish "$city" 20 "$seed"; seed=$((seed + 1)); done
}
publishers=()
for i in "${!cities[@]}"; do keep_publishing "${cities[i]}" "$((100 * (i + 1)))" & publishers+=($!) pids[pub.$i]=$!; done
for p in "${publishers[@]}"; do wait "$p"; done
for c in changsha wuhan nanchang; do
  if (($(size_at hefei "$c") != at_cut[$c])); then echo "FAIL: hefei received $c's records while isolated"; failed=1; fi
  if (($(size_at "$c" hefei) != at_cut[hefei])); then echo "FAIL: $c received hefei's records while isolated"; failed=1; fi
done
wait_for "the three others converge without hefei" converged changsha wuhan nanchang
published=0
for c in "${cities[@]}"; do published=$((published + $(size_at "$c" "$c") - at_cut[$c])); done
echo "at the cut: $frozen; published while isolated: $published"

say "hefei's links healed"
proxyctl heal hefei
t0=$(now_ms)
wait_for "the four converge after the heal" converged "${cities[@]}"
heal_s=$(secs_since "$t0")
final=$(converged "${cities[@]}")
for c in "${cities[@]}"; do wait_for "$c's view counted" counted "$c"; done
views=$(for c in "${cities[@]}"; do read -r _ _ inforce subjects _ <<<"$(figures "$c" "$c")"; echo "$inforce/$subjects"; done | sort -u)
if [[ $(wc -l <<<"$views") != 1 ]]; then echo "FAIL: the views differ: $views"; failed=1; fi
for c in "${cities[@]}"; do
  if ! ctl "$c" audit log hefei >/dev/null; then echo "FAIL: audit log hefei fails at $c"; failed=1; fi
done
echo "converged ${heal_s} s after the heal: $final"
figure "cut link relayed in ${relay_s}s; isolated ${ISOLATE_S}s, ${published} published meanwhile; converged ${heal_s}s after heal ($final)"
((failed == 0)) || exit 1
echo
echo "partition: every check passed"
