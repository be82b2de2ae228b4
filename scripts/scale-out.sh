#!/usr/bin/env bash
# The scale-out check (README, "Many replicas"): HAProxy (Debian's package) in front of three
# release builds of the service sharing one PostgreSQL database, under load from 16 clients with
# a freshly signed EHR token per call; one replica killed with SIGKILL and restarted. The driver
# (examples/scale_out.rs) prints its counts and exits 1 when an assertion fails. Bounded: 20 s of
# load, at most 60 s for the audit writers to catch up, the whole run killed after 5 minutes.
#
#   scripts/scale-out.sh                      # PostgreSQL at postgres://postgres@127.0.0.1:5432/postgres
#   SCALE_OUT_SECONDS=60 scripts/scale-out.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/popliteal/target}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

HAPROXY="$(command -v haproxy || true)"
if [ -z "$HAPROXY" ] && [ -x /usr/sbin/haproxy ]; then HAPROXY=/usr/sbin/haproxy; fi
if [ -z "$HAPROXY" ]; then
    echo "scale-out: installing HAProxy from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q haproxy
    HAPROXY=/usr/sbin/haproxy
fi

cargo build --release --locked --bin popliteal --example scale_out
timeout 300 "$CARGO_TARGET_DIR/release/examples/scale_out" \
    --binary "$CARGO_TARGET_DIR/release/popliteal" \
    --haproxy "$HAPROXY" \
    --postgres "${POPLITEAL_SCALE_OUT_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}" \
    --seconds "${SCALE_OUT_SECONDS:-20}"
