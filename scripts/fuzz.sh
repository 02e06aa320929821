#!/usr/bin/env bash
# Fuzzes the engine-answer normaliser and the client-message parser for a bounded time each,
# seeded from fixtures/engine/ and fuzz/seeds/. A crash leaves its input in fuzz/artifacts/;
# turn it into a regression test (a fixture case or a unit test) before fixing it.
#
#   scripts/fuzz.sh          # 60 s per target
#   scripts/fuzz.sh 600      # 10 minutes per target
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz passes nightly-only flags (the sanitizer); this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

run() {
  local target=$1 seeds=$2
  local corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  echo "=== $target: $SECONDS_PER_TARGET s, seeds from $seeds"
  cargo fuzz run "$target" "$corpus" "$seeds" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 2>&1 \
    | grep -E '^(#[0-9]+\s+(DONE|INITED)|==[0-9]+==|SUMMARY|Done|artifact_prefix|Test unit written)' || true
  if ls fuzz/artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "$target: crash inputs in fuzz/artifacts/$target/" >&2
    return 1
  fi
}

run normalize fixtures/engine
run client_message fuzz/seeds/client_message
echo "no crashes"
