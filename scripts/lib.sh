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
