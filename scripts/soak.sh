#!/usr/bin/env bash
# Soak: the daemon for a bounded time under steady clients, client churn and an engine that
# keeps going away. Samples its RSS, open file descriptors and task count with no clients
# (idle-start), with the steady clients (start), every minute, at the end with the steady
# clients still connected (end), and once they have left (idle-end).
#
#   scripts/soak.sh                          # 30 minutes, 2,000 steady clients, churn of 200
#   MINUTES=5 CLIENTS=500 scripts/soak.sh    # shorter
#
# Churn: batches of CHURN clients connect all at once, stay 5 s and leave, back to back.
# Flapping: every FLAP_EVERY seconds the engine simulator is stopped for FLAP_DOWN seconds.
# Results: target/soak/ (samples.txt: one line a minute; steady.txt: the steady clients' report).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

MINUTES=${MINUTES:-30}
CLIENTS=${CLIENTS:-2000}
CHURN=${CHURN:-200}
FLAP_EVERY=${FLAP_EVERY:-120}
FLAP_DOWN=${FLAP_DOWN:-20}
PORT=${PORT:-3200}
ENGINE_PORT=${ENGINE_PORT:-3201}
OUT=target/soak
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/samples.txt

cargo build --release --bins --quiet

ENGINE= DAEMON= LOAD= CHURNER= FLAPPER=
cleanup() {
  for pid in $FLAPPER $CHURNER $LOAD $ENGINE $DAEMON; do kill "$pid" 2>/dev/null || true; done
  pkill -f "bff demo-engine --on 127.0.0.1:$ENGINE_PORT" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_engine() {
  ./target/release/bff demo-engine --on "127.0.0.1:$ENGINE_PORT" >>"$OUT/engine.log" 2>&1 &
  ENGINE=$!
}
sample() {
  local rss fds tasks
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$DAEMON/status")
  fds=$(ls "/proc/$DAEMON/fd" | wc -l)
  tasks=$(curl -s "http://127.0.0.1:$PORT/health" | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["tasks"], h["connections"], h["state"])')
  echo "$1 t=${SECONDS}s rss_kb=$rss fds=$fds tasks/connections/status=$tasks" | tee -a "$OUT/samples.txt"
}

start_engine
wait_port "$ENGINE_PORT"
./target/release/bff --config scripts/bench.toml --engine-url "http://127.0.0.1:$ENGINE_PORT" \
  --listen "127.0.0.1:$PORT" >"$OUT/daemon.log" 2>&1 &
DAEMON=$!
wait_port "$PORT"
sleep 2
sample idle-start

./target/release/bff-load --url "ws://127.0.0.1:$PORT/" --clients "$CLIENTS" --connect-rate 1000 \
  --duration $((MINUTES * 60 + FLAP_EVERY + FLAP_DOWN + 30)) --daemon-pid "$DAEMON" --json "$OUT/steady.json" \
  2>"$OUT/steady.progress" | grep -v '^JSON ' >"$OUT/steady.txt" &
LOAD=$!
until grep -q "steady window" "$OUT/steady.progress" 2>/dev/null; do sleep 1; done
sample start

end=$((SECONDS + MINUTES * 60 - 15))
(
  while [ $SECONDS -lt $end ]; do
    ./target/release/bff-load --url "ws://127.0.0.1:$PORT/" --clients "$CHURN" --connect-rate 0 \
      --source-ips 8 --duration 5 >/dev/null 2>&1 || true
  done
) &
CHURNER=$!
(
  while [ $((SECONDS + FLAP_EVERY + FLAP_DOWN)) -lt $end ]; do
    sleep "$FLAP_EVERY"
    pkill -f "bff demo-engine --on 127.0.0.1:$ENGINE_PORT" || true
    echo "engine down at ${SECONDS}s" >>"$OUT/flaps.log"
    sleep "$FLAP_DOWN"
    ./target/release/bff demo-engine --on "127.0.0.1:$ENGINE_PORT" >>"$OUT/engine.log" 2>&1 &
    echo "engine up at ${SECONDS}s" >>"$OUT/flaps.log"
  done
) &
FLAPPER=$!
while [ $SECONDS -lt $end ]; do
  sleep 60
  sample minute
done
wait "$CHURNER" "$FLAPPER" || true
start_engine
sleep 10
sample end
wait "$LOAD" || true
sleep 5
sample idle-end

echo
echo "=== soak: $MINUTES min, $CLIENTS steady clients, churn batches of $CHURN, engine down ${FLAP_DOWN}s every ${FLAP_EVERY}s"
grep -E '^(idle-start|start|end|idle-end) ' "$OUT/samples.txt"
echo "engine outages: $(grep -c down "$OUT/flaps.log" || true)"
echo "warnings logged: source stale $(grep -c 'Source stale' "$OUT/daemon.log" || true), recovered $(grep -c 'Source recovered' "$OUT/daemon.log" || true)"
grep -E '^(MISSED|  largest interval|  normal clients ended|DAEMON|  RSS)' "$OUT/steady.txt" || true
