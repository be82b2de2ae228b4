#!/usr/bin/env bash
# Fuzzes the request-body-to-cards path (HookRequest::parse + evaluate) with cargo fuzz for a
# bounded time: no panic, no input slower than FUZZ_TIMEOUT s, no more than FUZZ_RSS_MB of memory.
#
#   scripts/fuzz.sh                   # 5 minutes
#   FUZZ_SECONDS=3600 scripts/fuzz.sh
#
# The seeds (a few example requests) are in fuzz/seeds/hook_request; what the fuzzer finds
# grows target/fuzz-corpus/hook_request (not committed). A crash is written to
# fuzz/artifacts/hook_request/ and reproduced with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none hook_request fuzz/artifacts/hook_request/crash-...
# cargo fuzz needs nightly compiler flags: RUSTC_BOOTSTRAP=1 lets this stable toolchain accept
# them. The fuzz crate is a workspace of its own, so `cargo test` never builds it.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-2048}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"   # the crate forbids unsafe code; `address` works too
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

CORPUS=target/fuzz-corpus/hook_request
mkdir -p "$CORPUS"
cargo fuzz run --sanitizer "$FUZZ_SANITIZER" hook_request "$CORPUS" fuzz/seeds/hook_request -- \
  -max_total_time="$FUZZ_SECONDS" \
  -timeout="$FUZZ_TIMEOUT" \
  -rss_limit_mb="$FUZZ_RSS_MB" \
  -max_len=65536 \
  -print_final_stats=1
