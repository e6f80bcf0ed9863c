#!/usr/bin/env bash
# dnsgate under abuse, on loopback (issue "Close the holes"): what one packet costs, and
# reloads on one busy core.
#
#   benches/abuse.sh                     # ~1 minute
#   DNSGATE_BIN=target/release/dnsgate benches/abuse.sh
#
# 1. CPU per packet at a fixed rate (dnsperf -Q): cache hits from an allowed client, and
#    queries from outside allow_networks (refused from the header, rate-limited: a flood
#    of spoofed outsiders). dnsgate on core 0, dnsperf and the upstream on core 1.
# 2. Reload under load on one core: dnsgate pinned to core 0 with a 1,000,000-name list,
#    a CPU hog on the same core ("the machine is busy"), dnsperf at 20,000 qps for 12 s,
#    four SIGHUP reloads 2 s apart: queries lost.
# Needs dnsperf and unbound (apt-installed when missing, as root). Nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${ABUSE_PORT_BASE:-16353}
DG=$BASE UP=$((BASE + 1))
RATE=${RATE:-20000}
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v unbound >/dev/null || need+=(unbound)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
BIN=${DNSGATE_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --locked -q
    BIN=${CARGO_TARGET_DIR:-target}/release/dnsgate
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/upstream.conf" <<EOF
server:
  interface: 127.0.0.1@$UP
  port: $UP
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
remote-control:
  control-enable: no
EOF
taskset -c 1 unbound -d -c "$WORK/upstream.conf" 2>"$WORK/upstream.log" &
PIDS+=($!)

# CPU seconds (user + system) of a process.
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }

start_dnsgate() { # CONFIG CORE
    TOKIO_WORKER_THREADS=1 taskset -c "$2" "$BIN" run -c "$1" 2>"$WORK/dnsgate.log" &
    DG_PID=$!
    PIDS+=("$DG_PID")
    for _ in $(seq 600); do
        grep -q "listening" "$WORK/dnsgate.log" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$WORK/dnsgate.log" >&2
    exit 1
}

config() { # ALLOW [LIST]
    cat <<EOF
[server]
listen = ["127.0.0.1:$DG"]
allow_networks = ["$1"]
[upstream]
servers = ["udp://127.0.0.1:$UP"]
EOF
    if [ -n "${2:-}" ]; then
        printf '[[lists]]\nname = "big"\npath = "%s"\n[[policies]]\nname = "big"\naction = "block"\ntraffic = %s\n' \
            "$2" "'any(dns.domains[*] in \$big)'"
    fi
}

for i in $(seq 100); do echo "name$i.example A"; done >"$WORK/names.txt"

per_packet() { # LABEL ALLOW OUTSTANDING
    config "$2" >"$WORK/dg.toml"
    start_dnsgate "$WORK/dg.toml" 0
    # Warm the caches (allowed) or the limiter (outsiders): same names, same rate.
    # (-q: for a flood that gets no answers, enough outstanding queries that unanswered
    # ones never hold the rate back.)
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DG" -d "$WORK/names.txt" -l 2 -Q "$RATE" -q "$3" -t 1 >/dev/null 2>&1 || true
    local c0 c1
    c0=$(cpu "$DG_PID")
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DG" -d "$WORK/names.txt" -l 10 -Q "$RATE" -q "$3" -t 1 >"$WORK/perf.out" 2>&1 || true
    c1=$(cpu "$DG_PID")
    local sent answered
    sent=$(awk '/Queries sent:/ { print $3 }' "$WORK/perf.out")
    answered=$(awk '/Queries completed:/ { print $3 }' "$WORK/perf.out")
    awk -v l="$1" -v c0="$c0" -v c1="$c1" -v s="$sent" -v a="$answered" \
        'BEGIN { printf "| %s | %d | %d | %.1f %% | %.2f µs |\n", l, s, a, (c1 - c0) * 10, (c1 - c0) / s * 1e6 }'
    kill "$DG_PID"; wait "$DG_PID" 2>/dev/null || true
}

echo "## CPU per packet at $RATE qps (dnsgate on one core)"
echo
echo "| queries | sent | answered | dnsgate CPU | CPU per packet |"
echo "|---|---:|---:|---:|---:|"
per_packet "cache hits (allowed client)" "127.0.0.0/8" 100
per_packet "refused outsiders (client not in allow_networks)" "192.0.2.0/24" 50000

echo
echo "## Reload under load, one busy core"
python3 - "$WORK/list.txt" "$WORK/perf-list.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f, open(sys.argv[2], "w") as q:
    for i in range(1_000_000):
        f.write("blocked%d.example\n" % i)
    for i in range(0, 1_000_000, 1000):
        q.write("blocked%d.example A\n" % i)
        q.write("allowed%d.example A\n" % i)
PY
config "127.0.0.0/8" "$WORK/list.txt" >"$WORK/dg-list.toml"
start_dnsgate "$WORK/dg-list.toml" 0
# The busy machine: a CPU hog on the same core.
taskset -c 0 sh -c 'while :; do :; done' &
HOG=$!
PIDS+=("$HOG")
taskset -c 1 dnsperf -s 127.0.0.1 -p "$DG" -d "$WORK/perf-list.txt" -l 12 -Q "$RATE" -t 2 >"$WORK/perf-reload.out" 2>&1 &
PERF=$!
sleep 2
first=$(date +%s.%N)
for _ in 1 2 3 4; do
    kill -HUP "$DG_PID"
    sleep 2
done
wait "$PERF" || true
served=$(grep -c "configuration reloaded" "$WORK/dnsgate.log" || true)
# The reloads still queued finish now (the hog still running).
for _ in $(seq 600); do
    [ "$(grep -c "configuration reloaded" "$WORK/dnsgate.log" || true)" -ge 4 ] && break
    sleep 0.1
done
all=$(date +%s.%N)
kill "$HOG" 2>/dev/null || true
reloads=$(grep -c "configuration reloaded" "$WORK/dnsgate.log" || true)
took=$(echo "$all" | awk -v t="$first" '{ printf "%.1f", $1 - t }')
sent=$(awk '/Queries sent:/ { print $3 }' "$WORK/perf-reload.out")
lost=$(awk '/Queries lost:/ { print $3 }' "$WORK/perf-reload.out")
echo
echo "| reloads done during the 12 s of load | all 4 done after (s from the first SIGHUP) | sent | lost |"
echo "|---:|---:|---:|---:|"
echo "| $served | $reloads in $took | $sent | $lost |"
