#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another in one process
# each, and prints a line of figures per target: seconds it ran (less when it crashed, a
# little more for start-up), inputs run, inputs per second, coverage (edges), features,
# corpus size. Needs nightly and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# The corpus each target grows is kept in fuzz/target/corpus/<target> (not committed); the
# committed seeds in fuzz/corpus/<target> are read, never written. A crash stops its target;
# the input is saved under fuzz/artifacts/<target>/ and the script exits 1 at the end.
# SANITIZER=address runs with ASan (slower; credex forbids unsafe code, so the default is none).
set -euo pipefail

seconds=${1:-600}
shift || true
cd "$(dirname "$0")/.."
sanitizer=${SANITIZER:-none}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -s "$sanitizer"
mkdir -p fuzz/target/logs
failed=0
printf '%-18s %6s %12s %8s %6s %7s %7s  %s\n' target seconds runs exec/s cov features corpus result
for t in "${targets[@]}"; do
    work="$PWD/fuzz/target/corpus/$t" seeds="$PWD/fuzz/corpus/$t"
    mkdir -p "$work" "$seeds"
    log="fuzz/target/logs/$t.log"
    status=0
    start=$SECONDS
    cargo +nightly fuzz run -s "$sanitizer" "$t" "$work" "$seeds" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 >"$log" 2>&1 || status=$?
    elapsed=$((SECONDS - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    if [ "$status" -eq 0 ]; then
        result="no crash"
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -1)
        result="CRASH ${artifact:-(see $log)}"
    fi
    printf '%-18s %6s %12s %8s %6s %7s %7s  %s\n' "$t" "$elapsed" "${runs:--}" "${rate:--}" \
        "${cov:--}" "${ft:--}" "${corp:--}" "$result"
done
exit $failed
