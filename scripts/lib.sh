# Shared by the scripts in this folder; source it.

# Waits until something accepts connections on 127.0.0.1:$1, for up to 10 s.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "nothing listens on port $1${2:+; see $2}" >&2
  exit 1
}

# Waits until file $2 has a line starting with $1, for up to 10 s.
wait_line() {
  for _ in $(seq 100); do
    if grep -q "^$1" "$2" 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "no line \"$1\" in $2" >&2
  exit 1
}

# Processes started in the background by the script, stopped by stop_started (and at exit, by
# the trap a script sets with it).
PIDS=()

# Stops (SIGTERM) and reaps process $1 if it still runs; nothing when $1 is empty.
stop_pid() {
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1"
    wait "$1" || true
  fi
}

# Stops every process in PIDS and forgets them.
stop_started() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}
