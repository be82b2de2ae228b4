#!/usr/bin/env bash
# The load benchmark: release binary on loopback, oha as the load generator.
#   bash bench/run.sh            (about 2 minutes; writes bench/out/results.md)
# Reports requests/s and p50/p99/p99.9 latency for patient-view with a ~60 KB record and a ~5 KB
# one, at a fixed 1,000 requests/s and at saturation; GET /health on the same server (the HTTP
# floor); serde_json parsing of the same body (the parsing floor); the server's peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${BENCH_PORT:-18090}"
SECONDS_EACH="${BENCH_SECONDS:-10}"
OUT=bench/out
mkdir -p "$OUT"
rm -rf "$OUT"/audit.db* "$OUT/spool"

command -v oha >/dev/null || cargo install oha --locked
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
cargo build --release --quiet --example bench_payloads --bin popliteal
target/release/examples/bench_payloads write "$OUT"

# One load generator is one client: lift the per-client rate limit for the benchmark.
POPLITEAL__SERVER__PORT="$PORT" POPLITEAL__LOG__FORMAT=json APP_ENVIRONMENT=local \
  POPLITEAL__LIMITS__REQUESTS_PER_SECOND=10000000 POPLITEAL__LIMITS__BURST=10000000 \
  POPLITEAL__DATABASE__URL="sqlite://$OUT/audit.db?mode=rwc" POPLITEAL__AUDIT__SPOOL_DIR="$OUT/spool" \
  target/release/popliteal > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT/cds-services/posterior-knee-pain"
run() { # name, oha arguments...
  local name=$1; shift
  oha --no-tui --output-format json --latency-correction -z "${SECONDS_EACH}s" "$@" > "$OUT/$name.json"
  # Every answer must be a 200: a benchmark of refusals measures nothing.
  if jq -e '.statusCodeDistribution | keys - ["200"] | length > 0' "$OUT/$name.json" >/dev/null; then
    echo "bench: $name got answers other than 200: $(jq -c .statusCodeDistribution "$OUT/$name.json")" >&2
    exit 1
  fi
  jq -r --arg name "$name" '"| \($name) | \(.summary.requestsPerSec | floor) | \(.latencyPercentiles.p50 * 1000 | . * 100 | floor / 100) | \(.latencyPercentiles.p99 * 1000 | . * 100 | floor / 100) | \(.latencyPercentiles["p99.9"] * 1000 | . * 100 | floor / 100) | \(.summary.successRate * 100 | floor)% |"' "$OUT/$name.json"
}

{
  echo "| run | requests/s | p50 ms | p99 ms | p99.9 ms | success |"
  echo "|---|---|---|---|---|---|"
  run "health-saturation" -c 32 "http://127.0.0.1:$PORT/health"
  run "large-1000rps" -q 1000 -c 16 -m POST -H 'Content-Type: application/json' -D "$OUT/large.json" "$URL"
  run "large-saturation" -c 32 -m POST -H 'Content-Type: application/json' -D "$OUT/large.json" "$URL"
  run "small-1000rps" -q 1000 -c 16 -m POST -H 'Content-Type: application/json' -D "$OUT/small.json" "$URL"
  run "small-saturation" -c 32 -m POST -H 'Content-Type: application/json' -D "$OUT/small.json" "$URL"
} | tee "$OUT/results.md"

PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
# The audit trail at this load: records lost (a spool that could not be written; GET /ready
# counts them), and written (read from the database once the spool is drained).
for _ in $(seq 240); do
  [ "$(curl -fsS "http://127.0.0.1:$PORT/ready" | jq '.audit.backlog.records')" = 0 ] && break
  sleep 0.5
done
AUDIT_LOST=$(curl -fsS "http://127.0.0.1:$PORT/ready" | jq '.audit.lost')
kill $SERVER; wait $SERVER 2>/dev/null || true
AUDITED=$(python3 -c "import sqlite3; print(sqlite3.connect('$OUT/audit.db').execute('select count(*) from audit_invocation').fetchone()[0])")
PARSE_LARGE=$(target/release/examples/bench_payloads parse-floor "$OUT/large.json" 5 2)
PARSE_SMALL=$(target/release/examples/bench_payloads parse-floor "$OUT/small.json" 5 2)
TOKENIZE_LARGE=$(target/release/examples/bench_payloads parse-floor "$OUT/large.json" 5 2 ignored)
LARGE_SAT=$(jq '.summary.requestsPerSec | floor' "$OUT/large-saturation.json")
SMALL_SAT=$(jq '.summary.requestsPerSec | floor' "$OUT/small-saturation.json")
HEALTH_SAT=$(jq '.summary.requestsPerSec | floor' "$OUT/health-saturation.json")
{
  echo
  echo "| reference | per second |"
  echo "|---|---|"
  echo "| serde_json parse only, large body, 2 threads | $PARSE_LARGE |"
  echo "| serde_json parse only, small body, 2 threads | $PARSE_SMALL |"
  echo "| serde_json tokenise only (IgnoredAny), large body, 2 threads | $TOKENIZE_LARGE |"
  echo "| GET /health at saturation | $HEALTH_SAT |"
  echo
  echo "- large patient-view at saturation / parse floor: $(( 100 * LARGE_SAT / PARSE_LARGE ))% (target >= 50%)"
  echo "- large patient-view at saturation / tokenise-only floor: $(( 100 * LARGE_SAT / TOKENIZE_LARGE ))%"
  echo "- small patient-view at saturation / parse floor: $(( 100 * SMALL_SAT / PARSE_SMALL ))%"
  echo "- large patient-view at saturation / GET /health: $(( 100 * LARGE_SAT / HEALTH_SAT ))%"
  echo "- server peak memory (VmHWM): $(( PEAK_KB / 1024 )) MB (target < 100 MB)"
  echo "- audit records lost over all runs: $AUDIT_LOST ($AUDITED written; bench/audit.sh compares them with the calls answered)"
} | tee -a "$OUT/results.md"
