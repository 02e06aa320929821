#!/usr/bin/env bash
# The fan-out benchmark in one command: builds in release mode, and for each scenario starts a
# fresh daemon in demo mode (scripts/bench.toml), runs bff-load against it, stops the daemon,
# and finally prints one summary table. Results: target/bench/<scenario>.{txt,json}.
#
# A scenario that publishes (--publish-hz) also gets a fresh redis-server of its own on a free
# port, without persistence: the daemon subscribes to it (--redis-url) and bff-load publishes
# ticks on it (--redis) and measures each one from PUBLISH to every client.
#
#   scripts/bench.sh                 # every scenario, 60 s each (about 9 minutes)
#   scripts/bench.sh steady-10k      # only the named scenarios
#   DURATION=20 scripts/bench.sh     # shorter steady windows
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

DURATION=${DURATION:-60}
PORT=${PORT:-3100}
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"

# name | bff-load arguments
SCENARIOS=(
  "steady-1k|--clients 1000 --connect-rate 1000 --duration $DURATION"
  "steady-10k|--clients 10000 --connect-rate 2000 --duration $DURATION"
  "steady-19k|--clients 19000 --connect-rate 2000 --duration $DURATION"
  "storm-10k|--clients 10000 --connect-rate 0 --duration 10"
  "stalled-50|--clients 1050 --stall 50 --connect-rate 1000 --duration $DURATION"
  "push-100|--clients 100 --connect-rate 1000 --duration $DURATION --publish-hz 5"
  "push-10k|--clients 10000 --connect-rate 2000 --duration $DURATION --publish-hz 5"
)

cargo build --release --bins --quiet

DAEMON=
stop_daemon() {
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
    kill -TERM "$DAEMON"
    wait "$DAEMON" || true
  fi
  DAEMON=
}

REDIS=
REDIS_PORT=
stop_redis() {
  if [ -n "$REDIS" ] && kill -0 "$REDIS" 2>/dev/null; then
    kill -TERM "$REDIS"
    wait "$REDIS" || true
  fi
  REDIS=
}
trap 'stop_daemon; stop_redis' EXIT

# start_daemon NAME [bff options…]
start_daemon() {
  local name=$1
  shift
  "$BIN/bff" --demo --config scripts/bench.toml --listen "127.0.0.1:$PORT" "$@" >"$OUT/$name.daemon.log" 2>&1 &
  DAEMON=$!
  wait_port "$PORT" "$OUT/$name.daemon.log"
}

start_redis() {
  REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/$1.redis.log" 2>&1 &
  REDIS=$!
  wait_port "$REDIS_PORT" "$OUT/$1.redis.log"
}

ran=()
for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  daemon_args=()
  if [[ " $args " == *" --publish-hz "* ]]; then
    start_redis "$name"
    daemon_args=(--redis-url "redis://127.0.0.1:$REDIS_PORT")
    args="$args --redis 127.0.0.1:$REDIS_PORT"
  fi
  echo "=== $name: bff-load $args"
  start_daemon "$name" "${daemon_args[@]}"
  # Let the daemon settle (first polls, allocator warm-up, its Redis subscription) before its
  # memory is read.
  sleep 2
  # shellcheck disable=SC2086
  "$BIN/bff-load" --url "ws://127.0.0.1:$PORT/" --daemon-pid "$DAEMON" --json "$OUT/$name.json" $args \
    | grep -v '^JSON ' | tee "$OUT/$name.txt"
  stop_daemon
  stop_redis
  ran+=("$name")
done

python3 - "$OUT" "${ran[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
rows = [("scenario", "clients", "missed", "WELCOME p99 ms", "spread p50/p99 ms", "stale p99 ms",
         "push p50/p99 ms", "push/poll p99", "daemon CPU % (kernel)", "RSS peak MB", "KB/conn",
         "loadgen CPU %")]
for name in names:
    r = json.load(open(f"{out}/{name}.json"))
    c, s, d, m = r["connect"], r["steady"], r.get("daemon") or {}, r["missed"]
    spread = s.get("fanout_spread_ms") or {}
    stale = s.get("staleness_ms") or {}
    push = r.get("push")
    latency = (push or {}).get("latency_ms")
    ratio = (push or {}).get("latency_p99_over_poll_spread_p99")
    rows.append((name, f'{c["connected"]}/{c["attempted"]}', str(m["total"]),
                 f'{c["welcome_ms"]["p99"]:.1f}',
                 f'{spread.get("p50", 0):.1f}/{spread.get("p99", 0):.1f}',
                 f'{stale.get("p99", 0):.1f}',
                 f'{latency["p50"]:.1f}/{latency["p99"]:.1f}' if latency else "-",
                 f'{ratio:.2f}' if ratio is not None else "-",
                 f'{d.get("cpu_pct_window", 0):.1f} ({d.get("kernel_pct_window", 0):.1f})',
                 f'{d.get("peak_rss_kb", 0) / 1024:.0f}',
                 f'{d.get("kb_per_connection", 0):.1f}',
                 f'{r["load_generator"]["cpu_pct_window"]:.1f}'))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
print()
for row in rows:
    print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
PY
