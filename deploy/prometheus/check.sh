#!/usr/bin/env bash
# Checks the alert rules and the Grafana dashboard: `promtool check rules` on credex-rules.yml
# and on the dashboard's queries (its variables filled in), `promtool check config` on
# prometheus.example.yml, then that every credex_* and process_* series either names is one
# real credexd processes serve: two nodes on 127.0.0.1, Changsha publishes, Wuhan receives,
# and both admin listeners' /metrics are scraped.
#
# Usage: deploy/prometheus/check.sh   (installs Debian's prometheus package for promtool if it
# is missing, with apt-get as root; builds the debug binaries unless BIN=dir names others).
# Everything listens on 127.0.0.1; the work folder is removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
rules=deploy/prometheus/credex-rules.yml
BIN_GIVEN=${BIN:-}
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7740}

if ! command -v promtool >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "check.sh: promtool is missing; install Debian's prometheus package (as root)" >&2
        exit 1
    fi
    echo "check.sh: installing Debian's prometheus package for promtool" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
dashboard=deploy/grafana/credex-dashboard.json
promtool check rules "$rules"
# The dashboard's queries as recording rules, so promtool parses every one of them.
dashboard_rules=$(mktemp --suffix=.yml)
python3 - "$dashboard" >"$dashboard_rules" <<'PY'
import json, sys
panels = json.load(open(sys.argv[1]))["panels"]
print("groups:\n  - name: dashboard\n    rules:")
for i, target in enumerate(t for p in panels for t in p.get("targets", [])):
    expr = target["expr"].replace("$__rate_interval", "5m").replace("$city", ".*")
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$dashboard_rules"
rm -f "$dashboard_rules"
# The token files it names exist only where Prometheus runs.
promtool check config --syntax-only deploy/prometheus/prometheus.example.yml

# Stale binaries would scrape as stale metrics: build unless BIN names others.
[[ -n ${BIN_GIVEN:-} ]] || cargo build --bins --locked
source deploy/fault/lib.sh

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
start changsha "$H/changsha" "wuhan=$(addr 1)"
start wuhan "$H/wuhan" "changsha=$(addr 0)"
wait_for "changsha up" ctl changsha status
wait_for "wuhan up" ctl wuhan status
ctl changsha gen --count 20 --seed 1 | ctl changsha publish >/dev/null
has_all() { [[ $(figures wuhan changsha | cut -d' ' -f2) == 20 ]]; }
wait_for "wuhan holds changsha's 20 entries in its view" has_all
# consortium init puts city i's admin listener on 127.0.0.1:BASE_PORT+100+i.
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$((BASE_PORT + 100 + $1))/metrics"; }
cosigned() { scrape 0 | grep -q '^credex_cosignature_seconds_count{.*witness="wuhan"'; }
wait_for "changsha's checkpoint cosigned by wuhan" cosigned
# A client that speaks no TLS: counted in credex_tls_handshakes_dropped_total.
curl -s --max-time 2 "http://$(addr 0)/" >/dev/null || true
dropped() { scrape 0 | grep -q '^credex_tls_handshakes_dropped_total{.*reason="failed"} [1-9]'; }
wait_for "changsha counted a failed handshake" dropped
{ scrape 0; scrape 1; } >"$work/scraped.txt"

# Series names in the rules' expressions and the dashboard's queries (histograms by their
# _bucket/_count names).
names=$({ grep -E '^\s*expr:|^\s{10}' "$rules"; grep '"expr"' "$dashboard"; } |
    grep -oE '\b(credex|process)_[a-z_]+' | sort -u)
missing=0
for name in $names; do
    if grep -qE "^${name}[{ ]" "$work/scraped.txt"; then
        echo "served: $name"
    else
        echo "check.sh: the rules or the dashboard use $name, which no node served" >&2
        missing=1
    fi
done
((missing == 0))
echo "check.sh: the rules and the dashboard pass promtool and name only metrics credexd serves"
