#!/usr/bin/env bash
# End-to-end check of the docker deployment: builds the image, writes a fresh consortium,
# brings the four nodes up with docker-compose, waits until every node is connected to its
# three peers, publishes records in Changsha, waits until they are in every other city's
# log and view, checks the metrics port, stops the nodes (each must exit 0 on SIGTERM) and
# removes everything again, also when a step fails.
#
#   deploy/docker/smoke-test.sh [debug|release]     (default: debug)
#
# Needs docker (with the legacy builder), docker-compose 1.x, jq and curl, host ports
# 127.0.0.1:7001-7004 and 7101-7104 free, and root or sudo (see init-consortium.sh).
# Environment: DEADLINE seconds for each wait (default 120), KEEP=1 to leave the
# consortium folder in place (printed) for a look after the run.
set -euo pipefail

profile="${1:-debug}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
credexctl="$root/target/$profile/credexctl"
deadline_secs="${DEADLINE:-120}"
cities=(changsha wuhan hefei nanchang)
records=20

for tool in docker docker-compose jq curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "smoke-test: $tool is not installed" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/credex-smoke.XXXXXX")"
home="$work/consortium"
project="credex-smoke-$$"
compose=(docker-compose --file "$here/docker-compose.yml" --project-name "$project")
export CREDEX_CONSORTIUM_DIR="$home"
started=0

cleanup() {
    local status=$?
    set +e
    if ((started)); then
        if ((status != 0)); then
            echo "smoke-test: FAILED; the nodes' state and last log lines:" >&2
            "${compose[@]}" ps >&2
            "${compose[@]}" logs --no-color --tail 40 >&2
        fi
        "${compose[@]}" down --volumes --remove-orphans >&2
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "smoke-test: consortium folder kept in $home" >&2
    else
        rm -rf -- "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s\n' "$*" >&2; }

# Runs "$@" until it succeeds, once a second, for at most $deadline_secs; on timeout says
# what it was waiting for and shows the last attempt's error output.
wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + deadline_secs))
    until "$@" 2>"$work/last-attempt.err"; do
        if ((SECONDS >= deadline)); then
            echo "smoke-test: timed out after ${deadline_secs}s waiting for $what; last attempt:" >&2
            cat "$work/last-attempt.err" >&2
            return 1
        fi
        sleep 1
    done
}

status_json() {
    "$credexctl" --home "$home" --city "$1" --json --timeout 5 status
}

# Serving, and connected to each of its peers.
connected() {
    local city="$1" peers=$((${#cities[@]} - 1))
    status_json "$city" |
        jq -e --argjson n "$peers" \
            '(.peers | length) == $n and all(.peers[]; .connected)' >/dev/null
}

# Holds at least $2 entries of origin $3's log, and a view as large as Changsha's. Status's
# 64-bit counts are proto3 JSON strings: a string compared with a number in jq is always larger.
caught_up() {
    local city="$1" size="$2" origin="$3" in_force="$4"
    status_json "$city" |
        jq -e --arg o "$origin" --argjson size "$size" --argjson in_force "$in_force" \
            '(.origins[] | select(.origin == $o) | .local_size | tonumber >= $size)
             and (.view.records_in_force | tonumber) == $in_force' >/dev/null
}

step "checking the example configs"
"$root/deploy/examples/check-examples.sh"

step "building the image ($profile)"
if [[ ! -x "$credexctl" ]]; then
    if [[ "$profile" == release ]]; then
        (cd "$root" && cargo build --release --bin credexctl)
    else
        (cd "$root" && cargo build --bin credexctl)
    fi
fi
"$here/build-image.sh" "$profile"

step "writing the consortium to $home"
CREDEXCTL="$credexctl" "$here/init-consortium.sh" "$home"

step "starting the nodes (project $project)"
started=1
"${compose[@]}" up -d

step "waiting for every node to connect to its peers"
for city in "${cities[@]}"; do
    wait_for "$city to serve and connect to every peer" connected "$city"
    echo "$city: serving, connected to its $((${#cities[@]} - 1)) peers" >&2
done

step "publishing $records records in changsha"
published="$("$credexctl" gen --city changsha --count "$records" |
    "$credexctl" --home "$home" --city changsha --json publish)"
size="$(jq -e '.tree_size' <<<"$published")"
count="$(jq -e '.published | length' <<<"$published")"
if ((count != records)); then
    echo "smoke-test: published $count records, expected $records" >&2
    exit 1
fi
in_force="$(status_json changsha | jq -e '.view.records_in_force | tonumber')"
echo "changsha's log holds $size entries, its view $in_force records in force" >&2

step "waiting for the records to reach the other cities"
for city in "${cities[@]:1}"; do
    wait_for "$city to hold changsha's $size entries" caught_up "$city" "$size" changsha "$in_force"
    echo "$city: has changsha's $size entries, $in_force records in force" >&2
done
"$credexctl" --home "$home" --city wuhan status

step "checking wuhan's metrics on the host"
metrics="$(curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$home/wuhan/admin.token")" \
    http://127.0.0.1:7102/metrics)"
if ! grep -q '^credex_entries_appended_total{city="wuhan",origin="changsha"} [1-9]' <<<"$metrics"; then
    echo "smoke-test: wuhan's metrics do not count entries appended from changsha" >&2
    exit 1
fi
appended="$(grep '^credex_entries_appended_total{city="wuhan",origin="changsha"}' <<<"$metrics")"
echo "wuhan: $appended" >&2

step "stopping the nodes: each must exit 0 on SIGTERM"
ids="$("${compose[@]}" ps -q)"
mapfile -t containers <<<"$ids"
if ((${#containers[@]} != ${#cities[@]})); then
    echo "smoke-test: expected ${#cities[@]} containers, found ${#containers[@]}" >&2
    exit 1
fi
"${compose[@]}" stop
for container in "${containers[@]}"; do
    state="$(docker inspect --format '{{.Name}} {{.State.ExitCode}}' "$container")"
    read -r name code <<<"$state"
    echo "${name#/}: exit $code" >&2
    if ((code != 0)); then
        echo "smoke-test: ${name#/} exited with $code" >&2
        exit 1
    fi
done

step "smoke test passed"
