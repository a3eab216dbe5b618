#!/usr/bin/env bash
# A node whose data volume fills up, with real credexd processes.
#
# Wuhan's data dir is a small tmpfs of its own (CREDEX_DATA_DIR); Changsha's is not. Once both
# hold each other's records, a file fills Wuhan's volume. What must hold, and what this script
# checks:
#   - a publish at Wuhan is refused, and the error says the disk is full (no space);
#   - Wuhan keeps answering status and lookups while full, also after Changsha sends it more;
#   - when the file is removed, Wuhan recovers by itself, not restarted: it takes publishes
#     again and catches up with Changsha, nothing invalid or quarantined.
# The volume stays full FULL_S seconds (10, --short 5), long enough for
# the store's background flushes to meet the full disk too, and reads are asked throughout.
#
# Needs root with CAP_SYS_ADMIN for the tmpfs (a loop device needs the same); without it the
# script says so and exits 77 (skipped). ulimit -f is no substitute: it raises SIGXFSZ/EFBIG,
# not ENOSPC. Usage: deploy/fault/full-disk.sh [--short]; RECOVER_S (30, --short 15) bounds the
# recovery.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/debug}
BASE_PORT=${BASE_PORT:-7870}
VOLUME_MB=${VOLUME_MB:-64}
[[ -x $BIN/credexd && -x $BIN/credexctl ]] || cargo build --bins
source deploy/fault/lib.sh
WAIT_S=${WAIT_S:-60}
# How long the volume stays full, and how soon after the space returns the node must have
# recovered (publishes taken and the catch-up done).
FULL_S=${FULL_S:-10} RECOVER_S=${RECOVER_S:-30}
[[ ${1:-} == --short ]] && FULL_S=5 RECOVER_S=15

vol=$(mktemp -d)
unmount() { umount -l "$vol" 2>/dev/null || true; rmdir "$vol"; }
# lib.sh's cleanup stops the nodes first; the volume goes after them.
trap 'cleanup; unmount' EXIT
if [[ $(id -u) != 0 ]] || ! mount -t tmpfs -o "size=${VOLUME_MB}m" credex-fault "$vol" 2>"$work/mount.err"; then
  echo "SKIP: cannot mount a ${VOLUME_MB} MiB tmpfs here (uid $(id -u)): $(cat "$work/mount.err" 2>/dev/null)"
  figure "skipped: no tmpfs (needs root with CAP_SYS_ADMIN)"
  exit 77
fi

# quick CITY ARGS...: one credexctl call with a short deadline (a wedged node must not hold
# the script for the default 30 s).
quick() { local city=$1; shift; "$BIN/credexctl" --home "$H" --city "$city" --timeout 10 "$@"; }
publish() { ctl "$1" gen --count "$2" --seed "$3" >"$work/batch.$1.$3" && quick "$1" publish "$work/batch.$1.$3"; }
reads_served() {
  quick wuhan status >/dev/null && quick wuhan lookup "$subject" >/dev/null
}
holds() { (($(size_at "$1" "$2") == $3)); }

"$BIN/credexctl" consortium init --out "$H" --base-port "$BASE_PORT" >/dev/null
start changsha "$H/changsha" "wuhan=$(addr 1)"
start wuhan "$H/wuhan" "changsha=$(addr 0)" env CREDEX_DATA_DIR="$vol"
for c in changsha wuhan; do wait_for "$c up" ctl "$c" status; done
publish changsha 200 1 >/dev/null
publish wuhan 200 2 >/dev/null
wait_for "both hold both logs" converged changsha wuhan
subject=$(python3 -c 'import json, sys; s = json.loads(open(sys.argv[1]).readline())["subject"]; print(s.get("uscc") or s["id_number"])' "$work/batch.wuhan.2")
echo "before: $(converged changsha wuhan); wuhan's volume: $(df -h --output=used,size "$vol" | tail -1)"

say "wuhan's volume is filled"
dd if=/dev/zero of="$vol/filler" bs=1M status=none 2>/dev/null || true
echo "wuhan's volume: $(df -h --output=used,avail,size "$vol" | tail -1)"
failed=0
full_t0=$(now_ms)
if answer=$(publish wuhan 20 3 2>&1); then
  echo "FAIL: wuhan took a publish on a full volume"; failed=1
elif grep -qi "no space\|disk.*full\|storage.*full" <<<"$answer"; then
  echo "ok: the publish is refused: ${answer##*: INTERNAL: }"
else
  echo "FAIL: the refusal does not say the disk is full: $answer"; failed=1
fi
refusal=$(grep -o '[A-Z_]*: storage: .*' <<<"$answer" | head -1 || true)
cs_before=$(size_at changsha changsha)
publish changsha 100 4 >/dev/null
asked=0 unanswered=0
while (($(now_ms) - full_t0 < FULL_S * 1000)); do
  asked=$((asked + 1))
  reads_served || unanswered=$((unanswered + 1))
done
if ((unanswered == 0)); then
  echo "ok: status and lookups answered while full for ${FULL_S} s ($asked times), also after changsha published more"
else
  echo "FAIL: wuhan left $unanswered of $asked status and lookup rounds unanswered while full: $(quick wuhan status 2>&1 | tail -1)"; failed=1
fi

say "space returns; wuhan must recover by itself"
rm -f "$vol/filler"
echo "wuhan's volume: $(df -h --output=used,avail,size "$vol" | tail -1)"
t0=$(now_ms)
cs=$(size_at changsha changsha)
publish_ok() { publish wuhan 20 5 >"$work/recovery.out" 2>&1; }
recovered=1
WAIT_S=$RECOVER_S
if wait_for "wuhan takes a publish again" publish_ok; then
  echo "ok: wuhan takes publishes again $(secs_since "$t0") s after the space returned"
else
  echo "FAIL: wuhan refuses publishes ${RECOVER_S} s after the space returned: $(tail -1 "$work/recovery.out")"; failed=1; recovered=0
fi
WAIT_S=$((RECOVER_S - ($(now_ms) - t0) / 1000))
if ((WAIT_S > 0)) && wait_for "wuhan catches up changsha's records" holds wuhan changsha "$cs"; then
  echo "ok: wuhan holds changsha's $cs entries"
else
  echo "FAIL: wuhan holds $(size_at wuhan changsha) of changsha's $cs entries (was $cs_before when it filled) ${RECOVER_S} s after the space returned"
  failed=1; recovered=0
fi
if ((recovered)) && wait_for "both converge" converged changsha wuhan; then
  echo "after: $(converged changsha wuhan)"
fi
recovery_s=$(secs_since "$t0")
if ! reads_served; then echo "FAIL: wuhan no longer answers status and lookups"; failed=1; fi
echo "wuhan's log lines about the full volume:"
grep -i "space\|reopen" "$work/wuhan.log" | sed 's/^/  /' | head -8 || true
if ((recovered)); then
  figure "${VOLUME_MB}MiB tmpfs filled; publish refused ($refusal); reads served; recovered ${recovery_s}s after space returned"
else
  figure "${VOLUME_MB}MiB tmpfs filled; publish refused ($refusal); no recovery within ${RECOVER_S}s of space returning (filled $(secs_since "$full_t0")s ago)"
fi
((failed == 0)) || exit 1
echo
echo "full disk: every check passed"
