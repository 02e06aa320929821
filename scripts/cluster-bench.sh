#!/usr/bin/env bash
# Several daemons at scale: one redis-server, one engine simulator, three daemons sharing the
# poll (--cluster), and three bff-load processes (one per daemon, each under its own open-file
# limit) holding CLIENTS dashboards in all. Prints, per daemon, the load generator's missed ticks,
# staleness and spread, and the daemon's CPU and RSS; then how often the engine was polled (the
# state endpoint, summed over the daemons' /metrics) and each daemon's role.
# Results: target/bench/cluster-<n>.{txt,json}.
#
#   scripts/cluster-bench.sh                      # 50,000 dashboards, 60 s
#   CLIENTS=3000 DURATION=20 scripts/cluster-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

CLIENTS=${CLIENTS:-50000}
DURATION=${DURATION:-60}
BASE=${PORT:-3200}
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
cargo build --release --bins --quiet

trap stop_started EXIT

REDIS_PORT=$((BASE + 90))
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --loglevel warning >"$OUT/cluster.redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" "$OUT/cluster.redis.log"

ENGINE_PORT=$((BASE + 91))
"$BIN/bff" demo-engine --on "127.0.0.1:$ENGINE_PORT" >"$OUT/cluster.engine.log" 2>&1 &
PIDS+=($!)
wait_port "$ENGINE_PORT" "$OUT/cluster.engine.log"

DAEMONS=()
for n in 1 2 3; do
  "$BIN/bff" --config scripts/bench.toml --listen "127.0.0.1:$((BASE + n))" \
    --engine-url "http://127.0.0.1:$ENGINE_PORT" --cluster "redis://127.0.0.1:$REDIS_PORT" \
    >"$OUT/cluster-$n.daemon.log" 2>&1 &
  DAEMONS+=($!)
  PIDS+=($!)
  wait_port "$((BASE + n))" "$OUT/cluster-$n.daemon.log"
done
sleep 3

polls() {
  local sum=0
  for n in 1 2 3; do
    local count
    count=$(curl -s "http://127.0.0.1:$((BASE + n))/metrics" |
      awk '/^bff_poll_duration_seconds_count\{source="state"\}/ {print $2}')
    sum=$((sum + ${count:-0}))
  done
  echo "$sum"
}

PER=$(((CLIENTS + 2) / 3))
LOADS=()
before=$(polls)
started=$(date +%s)
for n in 1 2 3; do
  "$BIN/bff-load" --url "ws://127.0.0.1:$((BASE + n))/" --clients "$PER" --connect-rate 1500 \
    --duration "$DURATION" --daemon-pid "${DAEMONS[$((n - 1))]}" --json "$OUT/cluster-$n.json" \
    >"$OUT/cluster-$n.txt" 2>&1 &
  LOADS+=($!)
done
for pid in "${LOADS[@]}"; do wait "$pid"; done
elapsed=$(($(date +%s) - started))
after=$(polls)

echo "engine state polls: $((after - before)) in ${elapsed} s (one poller: about one a second)"
for n in 1 2 3; do
  echo "daemon $n: $(curl -s "http://127.0.0.1:$((BASE + n))/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mode"])')"
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("daemon", "clients", "missed", "largest gap ms", "stale p50/p99 ms", "spread p99 ms", "CPU % (kernel)", "RSS peak MB")]
for n in (1, 2, 3):
    r = json.load(open(f"{out}/cluster-{n}.json"))
    c, s, d, m = r["connect"], r["steady"], r.get("daemon") or {}, r["missed"]
    stale, spread = s.get("staleness_ms") or {}, s.get("fanout_spread_ms") or {}
    rows.append((str(n), f'{c["connected"]}/{c["attempted"]}', str(m["total"]),
                 f'{m.get("max_interval_ms", 0):.0f}',
                 f'{stale.get("p50", 0):.1f}/{stale.get("p99", 0):.1f}',
                 f'{spread.get("p99", 0):.1f}',
                 f'{d.get("cpu_pct_window", 0):.1f} ({d.get("kernel_pct_window", 0):.1f})',
                 f'{d.get("peak_rss_kb", 0) / 1024:.0f}'))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
print()
for row in rows:
    print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
PY
