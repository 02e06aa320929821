#!/usr/bin/env bash
# The cadence under engine faults: for each fault of the state endpoint (hang, slow, down,
# malformed, huge, and none for comparison), a fresh daemon polls an engine stand-in
# (scripts/fault-engine.py) that misbehaves that way, and bff-load reads the stream with 100
# clients; the fault starts 8 s in, so its first ticks are measured too. Prints the largest
# interval between two packets at any client and the missed ticks.
#
#   scripts/faults.sh                 # every fault, 20 s each
#   DURATION=10 scripts/faults.sh hang
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

DURATION=${DURATION:-20}
PORT=${PORT:-3300}
ENGINE=$((PORT + 1))
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
cargo build --release --bins --quiet

trap stop_started EXIT

FAULTS=(none hang slow down malformed huge)
if [ $# -gt 0 ]; then FAULTS=("$@"); fi
echo "fault      missed  largest interval ms  (period 1000 ms)"
for fault in "${FAULTS[@]}"; do
  # The fault starts once the clients are connected and reading: its first tick counts.
  python3 scripts/fault-engine.py "$ENGINE" "$fault" 8 &
  PIDS+=($!)
  wait_port "$ENGINE"
  "$BIN/bff" --listen "127.0.0.1:$PORT" --engine-url "http://127.0.0.1:$ENGINE" \
    --config scripts/faults.toml >"$OUT/fault-$fault.daemon.log" 2>&1 &
  PIDS+=($!)
  wait_port "$PORT" "$OUT/fault-$fault.daemon.log"
  "$BIN/bff-load" --url "ws://127.0.0.1:$PORT/" --clients 100 --duration "$DURATION" \
    --json "$OUT/fault-$fault.json" >"$OUT/fault-$fault.txt" 2>&1
  python3 - "$OUT/fault-$fault.json" "$fault" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["missed"]
print(f'{sys.argv[2]:<10} {m["total"]:>6}  {m["max_interval_ms"]:>19.0f}')
PY
  stop_started
done
