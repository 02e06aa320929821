#!/usr/bin/env bash
# The fan-out benchmark in one command: builds in release mode, and for each scenario starts a
# fresh daemon (scripts/bench.toml) polling a fresh demo engine in a process of its own
# (`bff demo-engine`, as a real engine is: simulating the engine is not the daemon's cost), runs
# bff-load against it, stops both, and finally prints one summary table. Results:
# target/bench/<scenario>.{txt,json}.
#
# The steady and storm scenarios first run the same bff-load against bff-floor, the least a
# server can do to feed those clients (one thread, epoll, one pre-framed packet of the daemon's
# size and one send per client per tick), measured the same way; the summary then gives each
# daemon figure over the floor's. Results: target/bench/<scenario>.floor.{txt,json}.
#
# The steady-10k-<form> scenarios ask for one of the daemon's other forms (bff-load --deflate,
# --delta, --format msgpack; docs/PROTOCOL.md §13), and verify what 20 clients decode against a
# plain reference connection. The daemon runs first in each of their rounds, and the floor then
# sends plain frames of the daemon's measured mean frame size in that round (its report's
# form.wire_bytes_per_packet, less the frame header), not PACKET_BYTES: the same bytes on the
# wire, without the work of making them. A run whose decoding failed is marked in the summary.
#
# A scenario that publishes (--publish-hz) also gets a fresh redis-server of its own on a free
# port, without persistence: the daemon subscribes to it (redis.url) and bff-load publishes
# ticks on it (--redis) and measures each one from PUBLISH to every client.
#
#   scripts/bench.sh                 # every scenario, 60 s each (about 30 minutes)
#   scripts/bench.sh steady-10k      # only the named scenarios
#   DURATION=20 scripts/bench.sh     # shorter steady windows
#   FLOOR=0 scripts/bench.sh         # the daemon alone, no floor runs
#   PACKET_BYTES=4300 scripts/bench.sh  # the floor's packet size (the daemon's demo: 4.1-4.3 KB;
#                                       # the form scenarios' floors take the daemon's instead)
#   ROUNDS=3 scripts/bench.sh        # floor and daemon alternated three times; the medians judge
#
# One 30-60 s window moves by a tenth from run to run on a shared machine (the same build has
# measured 7.3 to 9.2 % of a core within an hour), as much as the daemon's distance from the
# floor. Alternated rounds share whatever the machine does meanwhile, and the median of their
# ratios is what the summary's last table gives.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

DURATION=${DURATION:-60}
PORT=${PORT:-3100}
FLOOR=${FLOOR:-1}
ROUNDS=${ROUNDS:-1}
PACKET_BYTES=${PACKET_BYTES:-4200}
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"

# name | bff-load arguments | bff-floor arguments ("-": no floor run) | bff-load arguments for the
# daemon run only
SCENARIOS=(
  "steady-1k|--clients 1000 --connect-rate 1000 --duration $DURATION||"
  "steady-10k|--clients 10000 --connect-rate 2000 --duration $DURATION||"
  # The forms a client may ask for, each against the floor sending frames of the same size.
  "steady-10k-deflate|--clients 10000 --connect-rate 2000 --duration $DURATION --deflate||"
  "steady-10k-delta|--clients 10000 --connect-rate 2000 --duration $DURATION --delta||"
  "steady-10k-delta-deflate|--clients 10000 --connect-rate 2000 --duration $DURATION --delta --deflate||"
  "steady-10k-msgpack|--clients 10000 --connect-rate 2000 --duration $DURATION --format msgpack||"
  "steady-10k-msgpack-deflate|--clients 10000 --connect-rate 2000 --duration $DURATION --format msgpack --deflate||"
  # Five packets a second: the floor ticks at 5 Hz, the daemon pushes five Redis ticks a second
  # (at most redis.max_push_hz, 5, a second, besides the 1 Hz poll: up to 6 packets a second
  # against the floor's 5), as in push-10k.
  "steady-10k-5hz|--clients 10000 --connect-rate 2000 --duration $DURATION|--hz 5|--publish-hz 5"
  "steady-19k|--clients 19000 --connect-rate 2000 --duration $DURATION||"
  "storm-10k|--clients 10000 --connect-rate 0 --duration 10||"
  "stalled-50|--clients 1050 --stall 50 --connect-rate 1000 --duration $DURATION|-|"
  "push-100|--clients 100 --connect-rate 1000 --duration $DURATION --publish-hz 5|-|"
  "push-10k|--clients 10000 --connect-rate 2000 --duration $DURATION --publish-hz 5|-|"
)

# The daemon on its own, so that it is built with its own dependencies' features, as a
# `cargo build -p bff` or `cargo install` builds it, not with those the load generator adds.
cargo build --release -p bff --bin bff --quiet
cargo build --release -p bff-bench --bins --quiet

# The daemon or the floor, whichever runs, and the daemon's demo engine.
SERVER=
ENGINE=
stop_server() {
  stop_pid "$SERVER"
  SERVER=
  stop_pid "$ENGINE"
  ENGINE=
}

REDIS=
REDIS_PORT=
stop_redis() {
  stop_pid "$REDIS"
  REDIS=
}
trap 'stop_server; stop_redis' EXIT

# start_daemon NAME [bff options…]: the demo engine on a free port, then the daemon polling it.
start_daemon() {
  local name=$1 engine_port
  shift
  engine_port=$(free_port)
  "$BIN/bff" demo-engine --on "127.0.0.1:$engine_port" >"$OUT/$name.engine.log" 2>&1 &
  ENGINE=$!
  wait_port "$engine_port" "$OUT/$name.engine.log"
  "$BIN/bff" --engine-url "http://127.0.0.1:$engine_port" --config "${CONFIG:-scripts/bench.toml}" \
    --listen "127.0.0.1:$PORT" "$@" >"$OUT/$name.daemon.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT" "$OUT/$name.daemon.log"
}

# A port nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_floor NAME BYTES [bff-floor options…]
start_floor() {
  local name=$1 bytes=$2
  shift 2
  "$BIN/bff-floor" --listen "127.0.0.1:$PORT" --packet-bytes "$bytes" "$@" >"$OUT/$name.floor.log" 2>&1 &
  SERVER=$!
  wait_line "Listening addr=" "$OUT/$name.floor.log"
}

start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/$1.redis.log" 2>&1 &
  REDIS=$!
  wait_port "$REDIS_PORT" "$OUT/$1.redis.log"
}

# load REPORT [bff-load arguments…]: runs bff-load against whatever $SERVER is, after letting it
# settle (first polls, allocator warm-up, its Redis subscription) so that its memory before the
# clients is read once it is steady. A run whose decoding failed (bff-load exits 1, its report
# says form.failed) goes on to the summary, which marks it; any other failure stops the script.
load() {
  local report=$1 status=0
  shift
  sleep 2
  "$BIN/bff-load" --url "ws://127.0.0.1:$PORT/" --daemon-pid "$SERVER" --json "$OUT/$report.json" "$@" \
    | grep -v '^JSON ' | tee "$OUT/$report.txt" || status=$?
  if [ "$status" != 0 ]; then
    grep -q '"failed": true' "$OUT/$report.json" 2>/dev/null || exit "$status"
    echo "=== $report: decoding FAILED (see $OUT/$report.txt); going on" >&2
  fi
}

# The floor's --packet-bytes for a form: the mean frame the daemon sent in report $1 (bytes on
# the wire per packet, less the frame header).
frame_bytes() {
  python3 - "$1" <<'PY'
import json, sys
wire = json.load(open(sys.argv[1]))["form"]["wire_bytes_per_packet"]
header = 2 if wire < 128 else 4 if wire < 65540 else 10
print(max(1, round(wire) - header))
PY
}

# Whether bff-load arguments $1 ask for a form: its floor is sized by the daemon's frames.
asks_form() {
  [[ " $1 " == *" --deflate "* || " $1 " == *" --delta "* || " $1 " == *" --format "* ]]
}

# Scenario names, with "+floor:N" for those that also ran against the floor, N rounds.
ran=()
for entry in "${SCENARIOS[@]}"; do
  IFS='|' read -r name args floor_args daemon_only <<<"$entry"
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  daemon_args="$args${daemon_only:+ $daemon_only}"
  CONFIG=
  if [[ " $daemon_args " == *" --publish-hz "* ]]; then
    # Through the config file: the demo engine is not told of it (it would publish its own
    # ticks there too, and the measured ones would be overtaken by them).
    CONFIG="$OUT/$name.toml"
  fi
  floored=0
  rounds=1
  if [ "$floor_args" != "-" ] && [ "$FLOOR" != 0 ]; then floored=1 rounds=$ROUNDS; fi
  for round in $(seq "$rounds"); do
    # Round 1 keeps the plain report names; later rounds add ".rN".
    suffix=
    [ "$round" -gt 1 ] && suffix=".r$round"
    if [ "$floored" = 1 ] && ! asks_form "$args"; then
      echo "=== $name (round $round/$rounds), floor: bff-floor --packet-bytes $PACKET_BYTES $floor_args; bff-load $args"
      # shellcheck disable=SC2086
      start_floor "$name" "$PACKET_BYTES" $floor_args
      # shellcheck disable=SC2086
      load "$name.floor$suffix" $args
      stop_server
    fi
    run_args=$daemon_args
    if [ -n "$CONFIG" ]; then
      start_redis "$name"
      { cat scripts/bench.toml; printf '\n[redis]\nurl = "redis://127.0.0.1:%s"\n' "$REDIS_PORT"; } >"$CONFIG"
      run_args="$run_args --redis 127.0.0.1:$REDIS_PORT"
    fi
    echo "=== $name (round $round/$rounds): bff-load $run_args"
    start_daemon "$name"
    # shellcheck disable=SC2086
    load "$name$suffix" $run_args
    stop_server
    stop_redis
    if [ "$floored" = 1 ] && asks_form "$args"; then
      bytes=$(frame_bytes "$OUT/$name$suffix.json")
      echo "=== $name (round $round/$rounds), floor: bff-floor --packet-bytes $bytes (the daemon's mean frame) $floor_args; bff-load $args"
      # shellcheck disable=SC2086
      start_floor "$name" "$bytes" $floor_args
      # shellcheck disable=SC2086
      load "$name.floor$suffix" $args
      stop_server
    fi
  done
  if [ "$floored" = 1 ]; then
    ran+=("$name+floor:$rounds")
  else
    ran+=("$name")
  fi
done

python3 - "$OUT" "${ran[@]}" <<'PY'
import json, statistics, sys
out, names = sys.argv[1], sys.argv[2:]


def table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


def form_cells(form):
    """Bytes on the wire per client per packet, and the verification (FAILED if decoding did)."""
    if not form:
        return ("-", "-")
    v = form["verify"]
    verdict = f'{v["verified"]}/{v["mismatched"]}' + (" FAILED" if form["failed"] else "")
    return (f'{form["wire_bytes_per_packet"]:.0f}', verdict)


def figures(r):
    """CPU % (of one core, over the steady window), spread p99, WELCOME p99 and RSS peak MB."""
    d = r.get("daemon") or {}
    spread = r["steady"].get("fanout_spread_ms") or {}
    return (d.get("cpu_pct_window", 0), spread.get("p99", 0), r["connect"]["welcome_ms"]["p99"],
            d.get("peak_rss_kb", 0) / 1024)


rows = [("scenario", "clients", "missed", "WELCOME p99 ms", "spread p50/p99 ms", "stale p99 ms",
         "push p50/p99 ms", "push/poll p99", "server CPU % (kernel)", "RSS peak MB", "KB/conn",
         "loadgen CPU %", "B/packet", "verified/mismatched")]
ratios = [("scenario", "CPU % floor/daemon", "CPU ×", "spread p99 ms floor/daemon", "spread ×",
           "WELCOME p99 ms floor/daemon", "WELCOME ×", "RSS peak MB floor/daemon")]
medians = [("scenario", "rounds", "CPU ×", "spread ×", "WELCOME ×", "RSS peak MB (highest)")]
for entry in names:
    name, _, floored = entry.partition("+floor:")
    rounds = int(floored) if floored else 1
    suffixes = [""] + [f".r{i}" for i in range(2, rounds + 1)]
    runs = []
    for i, suffix in enumerate(suffixes):
        tag = f" #{i + 1}" if rounds > 1 else ""
        if floored:
            runs.append((f"{name} floor{tag}", f"{name}.floor{suffix}"))
        runs.append((f"{name}{tag}", f"{name}{suffix}"))
    for label, report in runs:
        r = json.load(open(f"{out}/{report}.json"))
        c, s, d, m = r["connect"], r["steady"], r.get("daemon") or {}, r["missed"]
        spread = s.get("fanout_spread_ms") or {}
        stale = s.get("staleness_ms") or {}
        push = r.get("push")
        latency = (push or {}).get("latency_ms")
        ratio = (push or {}).get("latency_p99_over_poll_spread_p99")
        rows.append((label, f'{c["connected"]}/{c["attempted"]}', str(m["total"]),
                     f'{c["welcome_ms"]["p99"]:.1f}',
                     f'{spread.get("p50", 0):.1f}/{spread.get("p99", 0):.1f}',
                     f'{stale.get("p99", 0):.1f}',
                     f'{latency["p50"]:.1f}/{latency["p99"]:.1f}' if latency else "-",
                     f'{ratio:.2f}' if ratio is not None else "-",
                     f'{d.get("cpu_pct_window", 0):.1f} ({d.get("kernel_pct_window", 0):.1f})',
                     f'{d.get("peak_rss_kb", 0) / 1024:.0f}',
                     f'{d.get("kb_per_connection", 0):.1f}',
                     f'{r["load_generator"]["cpu_pct_window"]:.1f}',
                     *form_cells(r.get("form"))))
    if not floored:
        continue
    each = []  # per round: the three ratios (None where the floor's figure is 0)
    for i, suffix in enumerate(suffixes):
        floor = figures(json.load(open(f"{out}/{name}.floor{suffix}.json")))
        daemon = figures(json.load(open(f"{out}/{name}{suffix}.json")))
        cells, times = [], []
        for k in range(3):
            times.append(daemon[k] / floor[k] if floor[k] > 0 else None)
            cells.append(f"{floor[k]:.1f}/{daemon[k]:.1f}")
            cells.append(f"{times[k]:.2f}" if times[k] is not None else "-")
        cells.append(f"{floor[3]:.0f}/{daemon[3]:.0f}")
        ratios.append((name + (f" #{i + 1}" if rounds > 1 else ""), *cells))
        each.append((times, daemon[3]))
    if rounds > 1:
        def median(k):
            values = sorted(t[k] for t, _ in each if t[k] is not None)
            return f"{statistics.median(values):.2f}" if values else "-"
        medians.append((name, str(rounds), median(0), median(1), median(2),
                        f"{max(rss for _, rss in each):.0f}"))
table(rows)
if len(ratios) > 1:
    print()
    print("The daemon against the floor (same bff-load arguments, back to back; × = daemon / floor):")
    table(ratios)
if len(medians) > 1:
    print()
    print("Medians of the alternated rounds' ratios:")
    table(medians)
PY
