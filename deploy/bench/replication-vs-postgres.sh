#!/usr/bin/env bash
# credex replication beside PostgreSQL 15 logical replication, on the same machine in the same
# run. Two throwaway PostgreSQL clusters (publisher → subscriber, 127.0.0.1 only) measure:
#
#   - initial table sync: ENTRIES rows of ~400 bytes loaded into the publisher, then a
#     subscription created with copy_data = true; rows/s until the table is synced;
#   - backlog catch-up: a subscription created disabled (its slot holds the WAL), ENTRIES rows
#     inserted on the publisher in 256-row transactions (credex's batch), then the subscription
#     enabled; rows/s until the subscriber holds every row;
#   - live latency: RATE single-row commits per second for LIVE_SECONDS (pgbench -R), each row
#     carrying clock_timestamp() from its INSERT; a subscriber trigger (ENABLE ALWAYS) stamps
#     clock_timestamp() when the apply worker inserts it; p50/p90/p99/max of the difference.
#
# then `credexctl bench catchup --entries ENTRIES` (one node catches up a log from another over
# mutual TLS, verifying every signature), `credexctl bench publish --records ENTRIES` (durable
# publish rate, the node's RSS and disk per entry) and `credexctl bench propagation` (4 nodes;
# publish → in all three peers' views) at the same rate and count, and prints each credex figure
# beside PostgreSQL's (the subscriber's table with index and TOAST for disk per row) with the
# ratio credex / PostgreSQL.
#
#   deploy/bench/replication-vs-postgres.sh [ENTRIES]
#
# Environment: ENTRIES (default 1000000; e.g. 20000 for a smoke run), RATE (20), LIVE_SECONDS
# (30), PG_PORT (54329; the subscriber uses PG_PORT+1), KEEP=1 keeps the work folder.
# Needs root (apt-get, and the clusters run as the `postgres` user) or to be run as `postgres`
# with PostgreSQL installed; jq; cargo if target/release lacks the binaries.
set -euo pipefail

entries="${1:-${ENTRIES:-1000000}}"
rate="${RATE:-20}"
live_seconds="${LIVE_SECONDS:-30}"
pub_port="${PG_PORT:-54329}"
sub_port=$((pub_port + 1))
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
credexctl="$target/release/credexctl"
pgbin=/usr/lib/postgresql/15/bin
batch=256

say() { printf '\n== %s\n' "$*" >&2; }
die() {
    echo "replication-vs-postgres: $*" >&2
    exit 1
}
now() { date +%s.%N; }
# a / b, printed with the given decimals
div() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "-"; else printf "%.*f\n", d, a / b }'; }

[[ "$entries" =~ ^[0-9]+$ ]] && ((entries > 0)) || die "ENTRIES must be a positive number, not '$entries'"
command -v jq >/dev/null || die "jq is not installed (apt-get install -y jq)"

# ------------------------------------------------------------------ PostgreSQL 15
if [[ ! -x "$pgbin/initdb" ]]; then
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL 15 is not installed and this is not root"
    say "installing PostgreSQL 15 (Debian packages)"
    # No default cluster on 5432: this script runs its own.
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
[[ -x "$pgbin/initdb" ]] || die "$pgbin/initdb is missing after installing postgresql"

if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "there is no postgres user"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# ------------------------------------------------------------------ credex binaries
if [[ ! -x "$credexctl" || ! -x "$target/release/credexd" ]]; then
    say "building the release binaries"
    (cd "$root" && cargo build --release --bin credexctl --bin credexd)
fi

# ------------------------------------------------------------------ the two clusters
work="$(mktemp -d /tmp/credex-vs-pg.XXXXXX)"
[[ "$(id -u)" == 0 ]] && chown postgres: "$work"
cleanup() {
    for c in pub sub; do
        if [[ -f "$work/$c/postmaster.pid" ]]; then
            as_pg "$pgbin/pg_ctl" -D "$work/$c" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    if [[ "${KEEP:-}" == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

say "two PostgreSQL clusters in $work (publisher 127.0.0.1:$pub_port, subscriber 127.0.0.1:$sub_port)"
for c in pub sub; do
    as_pg mkdir "$work/$c" "$work/$c-socket"
    as_pg "$pgbin/initdb" -D "$work/$c" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    port=$pub_port
    [[ "$c" == sub ]] && port=$sub_port
    # Durable commits (fsync, synchronous_commit on: the defaults), as credex flushes before it
    # acknowledges; a WAL ceiling that keeps checkpoints out of the measured phases.
    cat >>"$work/$c/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/$c-socket'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_logical_replication_workers = 8
shared_buffers = 256MB
max_wal_size = 8GB
logging_collector = off
# The launcher starts apply workers at most this often (default 5 s): a subscription enabled
# right after another one started would otherwise wait up to 5 s in the measured time.
wal_retrieve_retry_interval = '100ms'
EOF
    as_pg "$pgbin/pg_ctl" -D "$work/$c" -l "$work/$c.log" -w start >/dev/null
done
psql_at() {
    local port="$1"
    shift
    as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -At "$@"
}
pub() { psql_at "$pub_port" "$@"; }
sub() { psql_at "$sub_port" "$@"; }
conn="host=127.0.0.1 port=$pub_port dbname=postgres user=postgres"
pg_version="$(pub -c 'SHOW server_version')"
table_sql() { echo "CREATE TABLE $1 (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL);"; }
row_sql="g, clock_timestamp(), repeat(md5(g::text), 12)" # 384 characters of payload

# Waits (inside the server, polling every 50 ms) until the SQL condition holds.
wait_sql() {
    local port="$1" condition="$2"
    psql_at "$port" -c "DO \$\$ BEGIN
        FOR k IN 1..72000 LOOP EXIT WHEN ($condition); PERFORM pg_sleep(0.05); END LOOP;
        IF NOT ($condition) THEN RAISE EXCEPTION 'timed out waiting for %', \$c\$$condition\$c\$; END IF;
    END \$\$"
}

# ------------------------------------------------------------------ (a) initial table sync
say "PostgreSQL: initial table sync of $entries rows (copy_data = true)"
pub -c "$(table_sql snap)" -c "INSERT INTO snap SELECT $row_sql FROM generate_series(1, $entries) g" \
    -c "CREATE PUBLICATION pub_snap FOR TABLE snap"
row_bytes="$(pub -c "SELECT round(avg(pg_column_size(snap.*))) FROM snap")"
sub -c "$(table_sql snap)"
t0="$(now)"
sub -c "CREATE SUBSCRIPTION sub_snap CONNECTION '$conn' PUBLICATION pub_snap WITH (copy_data = true)"
wait_sql "$sub_port" "EXISTS (SELECT 1 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
    WHERE s.subname = 'sub_snap' AND r.srsubstate IN ('s', 'r'))"
t1="$(now)"
got="$(sub -c 'SELECT count(*) FROM snap')"
((got == entries)) || die "initial sync: the subscriber holds $got rows, expected $entries"
pg_sync_secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
pg_sync_rate="$(div "$entries" "$pg_sync_secs" 0)"
sub -c "DROP SUBSCRIPTION sub_snap"
echo "synced in $pg_sync_secs s: $pg_sync_rate rows/s (rows of ~$row_bytes bytes)" >&2

# ------------------------------------------------------------------ (a) backlog catch-up
say "PostgreSQL: backlog catch-up of $entries rows committed $batch per transaction"
pub -c "$(table_sql backlog)" -c "CREATE PUBLICATION pub_backlog FOR TABLE backlog"
sub -c "$(table_sql backlog)" \
    -c "CREATE SUBSCRIPTION sub_backlog CONNECTION '$conn' PUBLICATION pub_backlog WITH (enabled = false, copy_data = false)"
t0="$(now)"
pub -c "DO \$\$ DECLARE i bigint := 0; BEGIN
    WHILE i < $entries LOOP
        INSERT INTO backlog SELECT $row_sql FROM generate_series(i + 1, least(i + $batch, $entries)) g;
        COMMIT;
        i := i + $batch;
    END LOOP;
END \$\$"
t1="$(now)"
pg_load_rate="$(awk -v n="$entries" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
echo "publisher committed the backlog at $pg_load_rate rows/s" >&2
t0="$(now)"
sub -c "ALTER SUBSCRIPTION sub_backlog ENABLE"
wait_sql "$sub_port" "(SELECT coalesce(max(id), 0) FROM backlog) >= $entries"
t1="$(now)"
got="$(sub -c 'SELECT count(*) FROM backlog')"
((got == entries)) || die "backlog: the subscriber holds $got rows, expected $entries"
pg_backlog_secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
pg_backlog_rate="$(div "$entries" "$pg_backlog_secs" 0)"
sub -c "DROP SUBSCRIPTION sub_backlog"
echo "caught up in $pg_backlog_secs s: $pg_backlog_rate rows/s" >&2
sub -c "VACUUM backlog"
pg_disk_per_row="$(sub -c "SELECT round(pg_total_relation_size('backlog')::numeric / $entries)")"
echo "the subscriber's table with its index and TOAST: $pg_disk_per_row bytes per row" >&2

# ------------------------------------------------------------------ (b) live latency
live_count=$((rate * live_seconds))
say "PostgreSQL: live latency, $rate single-row commits/s for $live_seconds s"
pub -c "CREATE TABLE live (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL)" \
    -c "CREATE PUBLICATION pub_live FOR TABLE live"
sub -c "CREATE TABLE live (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL, applied_at timestamptz)" \
    -c "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END \$\$" \
    -c "CREATE TRIGGER stamp BEFORE INSERT ON live FOR EACH ROW EXECUTE FUNCTION stamp()" \
    -c "ALTER TABLE live ENABLE ALWAYS TRIGGER stamp" \
    -c "CREATE SUBSCRIPTION sub_live CONNECTION '$conn' PUBLICATION pub_live WITH (copy_data = false)"
wait_sql "$sub_port" "EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = 'sub_live' AND pid IS NOT NULL AND received_lsn IS NOT NULL)"
echo "INSERT INTO live (created_at, payload) VALUES (clock_timestamp(), repeat(md5(random()::text), 12));" |
    as_pg tee "$work/live.sql" >/dev/null
as_pg "$pgbin/pgbench" -n -h 127.0.0.1 -p "$pub_port" -U postgres -c 1 -R "$rate" -T "$live_seconds" \
    -f "$work/live.sql" postgres >"$work/pgbench.out" 2>&1 || {
    cat "$work/pgbench.out" >&2
    die "pgbench failed"
}
published="$(pub -c 'SELECT count(*) FROM live')"
wait_sql "$sub_port" "(SELECT count(*) FROM live) >= $published"
read -r pg_n pg_p50 pg_p90 pg_p99 pg_max < <(sub -F ' ' -c "
    SELECT count(*),
           round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(percentile_disc(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(max(ms)::numeric, 1)
    FROM (SELECT extract(epoch FROM applied_at - created_at) * 1000 AS ms FROM live) l")
echo "$pg_n rows: p50 $pg_p50 ms, p90 $pg_p90 ms, p99 $pg_p99 ms, max $pg_max ms" >&2

# The clusters are not needed any more: stop them so credex has the machine.
cleanup_pg() {
    for c in pub sub; do
        as_pg "$pgbin/pg_ctl" -D "$work/$c" -m fast -w stop >/dev/null
    done
}
cleanup_pg

# ------------------------------------------------------------------ credex
say "credex: bench catchup --entries $entries"
sample=$((entries < 100000 ? entries : 100000))
catchup="$("$credexctl" --json bench catchup --entries "$entries" --sample "$sample")"
cx_rate="$(jq -r '.log_entries_per_second | floor' <<<"$catchup")"
cx_secs="$(jq -r '.log_seconds * 1000 | round / 1000' <<<"$catchup")"
cx_view_rate="$(jq -r '.view_entries_per_second | floor' <<<"$catchup")"
cx_view_secs="$(jq -r '.view_seconds * 1000 | round / 1000' <<<"$catchup")"
cx_strict="$(jq -r '.strict_verify_per_second | floor' <<<"$catchup")"
cx_strict_ratio="$(jq -r '.ratio_to_strict * 100 | round / 100' <<<"$catchup")"

say "credex: bench publish --records $entries"
publish="$("$credexctl" --json bench publish --records "$entries")"
cx_publish_rate="$(jq -r '.records_per_second | floor' <<<"$publish")"
cx_sled_rate="$(jq -r '.ceiling_records_per_second | floor' <<<"$publish")"
cx_sign_rate="$(jq -r '.signing_records_per_second | floor' <<<"$publish")"
cx_disk_per_entry="$(jq -r '.disk_bytes_per_record | round' <<<"$publish")"
cx_rss="$(jq -r '.rss_mib | round' <<<"$publish")"
cx_peak_rss="$(jq -r '.peak_rss_mib | round' <<<"$publish")"

say "credex: bench propagation --count $live_count --rate $rate"
propagation="$("$credexctl" --json bench propagation --count "$live_count" --rate "$rate")"
cx() { jq -r ".propagation_ms.$1" <<<"$propagation" | awk '{ printf "%.1f", $1 }'; }
cx_p50="$(cx p50)" cx_p90="$(cx p90)" cx_p99="$(cx p99)" cx_max="$(cx max)"

# ------------------------------------------------------------------ report
cores="$(nproc)"
echo
echo "credex vs PostgreSQL $pg_version logical replication, one machine ($cores cores), $entries rows/entries"
echo "(PostgreSQL rows of ~$row_bytes bytes, committed durably; credex generated records, every signature verified)"
echo
printf '%-48s %14s %14s %10s\n' "catch-up" "PostgreSQL" "credex" "credex/PG"
printf '%-48s %12s/s %12s/s %10s\n' "initial table sync (copy_data), rows/s" "$pg_sync_rate" "$cx_rate" "$(div "$cx_rate" "$pg_sync_rate")"
printf '%-48s %12s/s %12s/s %10s\n' "backlog catch-up (WAL apply), rows/s" "$pg_backlog_rate" "$cx_rate" "$(div "$cx_rate" "$pg_backlog_rate")"
printf '%-48s %13ss %13ss\n' "  time for $entries" "$pg_backlog_secs" "$cx_secs"
echo "  credex: the log (durable, every run under a root its origin signed, servable and provable)"
printf '%-48s %12s/s %12s/s %10s\n' "  credex view caught up (signatures verified)" "$pg_backlog_rate" "$cx_view_rate" "$(div "$cx_view_rate" "$pg_backlog_rate")"
printf '%-48s %13ss %13ss\n' "  time for $entries" "$pg_backlog_secs" "$cx_view_secs"
printf '%-48s %14s %12s/s %10s\n' "  view ceiling: Ed25519 verify_strict" "" "$cx_strict" "$cx_strict_ratio"
echo
printf '%-48s %14s %14s %10s\n' "live latency at $rate/s, ms" "PostgreSQL" "credex" "credex/PG"
for p in p50 p90 p99 max; do
    pg_var="pg_$p" cx_var="cx_$p"
    printf '%-48s %14s %14s %10s\n' "  $p" "${!pg_var}" "${!cx_var}" "$(div "${!cx_var}" "${!pg_var}")"
done
echo "  PostgreSQL: INSERT → applied on its one subscriber ($pg_n rows, pgbench -R: Poisson arrivals)"
echo "  credex: Publish sent → in the view of all three peers (View.Watch; $(jq -r .records <<<"$propagation") records, evenly spaced)"
echo
printf '%-48s %14s %14s %10s\n' "publishing and footprint" "PostgreSQL" "credex" "credex/PG"
printf '%-48s %12s/s %12s/s %10s\n' "durable writes, $batch per commit" "$pg_load_rate" "$cx_publish_rate" "$(div "$cx_publish_rate" "$pg_load_rate")"
printf '%-48s %14s %12s/s %10s\n' "  credex ceiling: sled writing the same leaves" "" "$cx_sled_rate" "$(div "$cx_publish_rate" "$cx_sled_rate")"
printf '%-48s %14s %12s/s %10s\n' "  credex ceiling: Ed25519 signing, $cores cores" "" "$cx_sign_rate" "$(div "$cx_publish_rate" "$cx_sign_rate")"
printf '%-48s %12s B %12s B %10s\n' "disk per row / entry after $entries" "$pg_disk_per_row" "$cx_disk_per_entry" "$(div "$cx_disk_per_entry" "$pg_disk_per_row")"
printf '%-48s %14s %10s MiB\n' "  credex node RSS after publishing (peak)" "" "$cx_rss ($cx_peak_rss)"
