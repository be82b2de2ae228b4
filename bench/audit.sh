#!/usr/bin/env bash
# The audit trail under load (issue 15's method): wrk, 32 connections, 15 s at saturation, then
# the audit rows once the writer has caught up; and hey at a fixed 1,000 calls/s for the
# throughput and p99 a hook call gets. For each binary given, on SQLite and on PostgreSQL, in one
# run (the machine is shared: compare the rows of one run, not runs of different days).
#
#   bash bench/audit.sh before=/tmp/popliteal-before:/work/before after=target/release/popliteal
#
# Each argument is label=binary[:folder]: the binary runs in that folder (an older build reads
# ./config from its working directory), else in the repository.
# Writes bench/out/audit.md. Needs wrk, hey and jq (Debian's packages), a PostgreSQL at
# postgres://postgres@127.0.0.1:5432 (trust), and the payloads (bench/run.sh writes them, or
# `target/release/examples/bench_payloads write bench/out`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
PORT="${BENCH_PORT:-18091}"
SATURATION_SECONDS="${BENCH_SATURATION_SECONDS:-15}"
FIXED_SECONDS="${BENCH_FIXED_SECONDS:-10}"
PG_ADMIN="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
BODY="$OUT/large.json"
[ -f "$BODY" ] || { echo "bench: $BODY is missing (bench/run.sh or bench_payloads write bench/out)" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/cds-services/posterior-knee-pain"

count_rows() { # backend, url-or-file
  if [ "$1" = sqlite ]; then
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from audit_invocation').fetchone()[0])" "$2"
  else
    psql -X -q -tA "$2" -c 'select count(*) from audit_invocation'
  fi
}

# The writer has caught up when /ready's counts stop moving (a binary without a spool) or its
# backlog is empty (with one): at most 120 s.
wait_for_writer() {
  local last="" now
  for _ in $(seq 240); do
    now=$(curl -fsS "http://127.0.0.1:$PORT/ready" | jq -c '.audit') || now=""
    if echo "$now" | jq -e '.backlog.records == 0' >/dev/null 2>&1; then return; fi
    if [ -n "$now" ] && ! echo "$now" | jq -e 'has("backlog")' >/dev/null 2>&1 && [ "$now" = "$last" ]; then return; fi
    last=$now
    sleep 0.5
  done
}

measure() { # label, binary, backend, working folder
  local label=$1 binary=$2 backend=$3 workdir=$4 dir database url spool_env=()
  dir=$(mktemp -d)
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/audit.db?mode=rwc"; database="$dir/audit.db"
  else
    local name="popliteal_bench_$RANDOM$RANDOM"
    psql -X -q "$PG_ADMIN" -c "create database $name"
    url="${PG_ADMIN%/*}/$name"; database=$url
  fi
  # A binary with the spool takes its folder; an older one refuses the key, so it is not given.
  if strings "$binary" | grep -q 'spool_dir'; then spool_env=(POPLITEAL__AUDIT__SPOOL_DIR="$dir/spool"); fi
  (cd "$workdir" && exec env APP_ENVIRONMENT=local POPLITEAL__SERVER__PORT="$PORT" POPLITEAL__LOG__LEVEL=warn \
    POPLITEAL__LOG__FORMAT=json POPLITEAL__LIMITS__REQUESTS_PER_SECOND=10000000 POPLITEAL__LIMITS__BURST=10000000 \
    POPLITEAL__DATABASE__URL="$url" "${spool_env[@]}" "$binary") > "$dir/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
  # A fixed 1,000 calls/s (20 workers x 50/s), with the writer idle before it: the latency a
  # hook call gets at a load the audit trail keeps up with.
  hey -z "${FIXED_SECONDS}s" -c 20 -q 50 -m POST -T application/json -D "$BODY" "$URL" > "$dir/hey.txt"
  local fixed_rps p99 fixed_answered
  fixed_rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$dir/hey.txt")
  p99=$(awk '/99% in/ {printf "%.2f", $3 * 1000}' "$dir/hey.txt")
  fixed_answered=$(awk '/\[200\]/ {print $2}' "$dir/hey.txt")
  wait_for_writer
  # Saturation: every answered call must end up with its audit record.
  BENCH_BODY="$BODY" wrk -t2 -c32 -d"${SATURATION_SECONDS}s" -s bench/hook.lua "$URL" > "$dir/wrk.txt"
  local requests non2xx answered
  requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt"); non2xx=${non2xx:-0}
  answered=$((requests - non2xx))
  local rps
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$dir/wrk.txt")
  wait_for_writer
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  local rows total
  rows=$(count_rows "$backend" "$database")
  total=$((answered + fixed_answered))
  # wrk does not count the calls in flight when it stops (up to its 32 connections): answered by
  # the server and audited, they make the rows exceed the count by at most 32.
  local lost=$(( total - rows ))
  [ "$lost" -lt 0 ] && [ "$lost" -ge -32 ] && lost="0 (+$(( rows - total )) in flight at wrk's stop)"
  echo "| $label | $backend | $answered | $rps | $fixed_rps | $p99 | $total | $rows | $lost |"
  [ "$backend" = postgres ] && psql -X -q "$PG_ADMIN" -c "drop database if exists ${database##*/} with (force)"
  rm -rf "$dir"
}

{
  echo "| binary | backend | answered at saturation | calls/s at saturation | calls/s at 1,000/s | p99 ms at 1,000/s | answered in all | audit rows | lost |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for pair in "$@"; do
    label=${pair%%=*}; rest=${pair#*=}; binary=${rest%%:*}; workdir=$PWD
    [ "$rest" != "$binary" ] && workdir=${rest#*:}
    binary=$(realpath "$binary")
    for backend in sqlite postgres; do measure "$label" "$binary" "$backend" "$workdir"; done
  done
} | tee "$OUT/audit.md"
