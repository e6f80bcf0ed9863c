#!/usr/bin/env bash
# The query store (issue 11, "Benchmarks"): cached-answer QPS with the SQLite store on
# against off (target: on >= 0.95 x off), then 20,000 qps for 60 s with the store on and
# zero rows dropped. dnsgate against itself on loopback with dnsperf.
#
#   benches/querystore.sh                       # 3 rounds x 6 s per setting, then 60 s at 20k qps (~2 min)
#   benches/querystore.sh --rounds 5 --out /tmp/querystore.md
#   benches/querystore.sh --no-sustained        # the QPS comparison only
#
# Two configurations of one dnsgate binary, each with [api] on and pinned to core 0 with one
# tokio worker (the store's writer thread shares that core: its cost is in the figure):
#   off   [querylog] store = "none"
#   on    [querylog] store = "sqlite" (the default with [api]), a fresh state_dir per run
# The upstream is an Unbound answering every name authoritatively (core 1). dnsperf (core 1,
# 10 clients, 100 outstanding) asks 10,000 names, each asked once before measuring, so
# every answer is cached. The settings alternate within each round; the median is reported.
# During the comparison a busy loop also runs on core 0 under SCHED_IDLE (below even the
# store's writer at nice 19; --no-spinner: none), so that core never idles in either
# setting: on a VM a halted vCPU is slow to wake, and without it the store's own writer
# kept the core awake and made "on" faster than "off" (1.34x, 2026-11-30), which measured
# the VM, not the store. The sustained run has no spinner.
# Sustained: dnsperf -Q 20000 -l 60 against the store; then dnsgate's
# dnsgate_querylog_dropped_total{sink="store"} must be 0 and the table's row count equal
# the queries dnsgate answered (the sum of dnsgate_queries_total), both read after the
# writer's last batch.
#
# Needs root only to apt-get install what is missing (dnsperf, unbound, python3, dnsutils).
# Environment: DNSGATE_BIN (skip the build), CARGO_TARGET_DIR, TMPDIR,
# QUERYSTORE_PORT_BASE (default 15453; four ports from there on 127.0.0.1 are used).
set -euo pipefail

ROUNDS=3
DURATION=6
OUT=""
NAMES=10000
SUSTAINED=1
RATE=20000
SUSTAIN_S=60
SPINNER=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --sustain) SUSTAIN_S="$2"; shift ;;
        --no-sustained) SUSTAINED=0 ;;
        --no-spinner) SPINNER=0 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "querystore.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[querystore %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "$0")/.."
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v unbound >/dev/null || need+=(unbound)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
command -v dig >/dev/null || need+=(dnsutils)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]} (run as root to apt-get install them)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

BASE="${QUERYSTORE_PORT_BASE:-15453}"
DNS_PORT=$BASE
METRICS_PORT=$((BASE + 1))
API_PORT=$((BASE + 2))
UP_PORT=$((BASE + 3))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dnsgate-querystore.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${DNSGATE_BIN:-}" ]; then
    BIN="$DNSGATE_BIN"
else
    log "building dnsgate (release)"
    cargo build --release --locked -q
    BIN="${CARGO_TARGET_DIR:-target}/release/dnsgate"
fi

# The upstream: every name answered authoritatively.
cat >"$WORK/upstream.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $UP_PORT
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  num-threads: 1
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
  local-data: ". 3600 IN AAAA 2001:db8::1"
remote-control:
  control-enable: no
EOF
unbound-checkconf "$WORK/upstream.conf" >/dev/null || die "unbound rejects the upstream configuration"
taskset -c 1 unbound -d -c "$WORK/upstream.conf" 2>"$WORK/upstream.log" &
PIDS+=($!)

for kind in off on; do
    {
        printf '[server]\nlisten = ["127.0.0.1:%s"]\nstate_dir = "state"\n\n' "$DNS_PORT"
        printf '[upstream]\nservers = ["udp://127.0.0.1:%s"]\n\n' "$UP_PORT"
        printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$METRICS_PORT"
        printf '[api]\nlisten = "127.0.0.1:%s"\n\n' "$API_PORT"
        if [ "$kind" = off ]; then
            printf '[querylog]\nstore = "none"\n'
        else
            printf '[querylog]\nstore = "sqlite"\n'
        fi
    } >"$WORK/$kind.toml"
    "$BIN" check -c "$WORK/$kind.toml" >/dev/null || die "$kind.toml does not load"
done
for i in $(seq 0 $((NAMES - 1))); do echo "n$i.qs.bench A"; done >"$WORK/names.txt"

wait_ready() {
    for _ in $(seq 1 100); do
        if dig +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 n0.qs.bench A >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "dnsgate did not start"
}

qps() { awk '/Queries per second:/ {print $4}' "$1"; }
metric_sum() { # NAME-PREFIX: the sum of the series whose line starts so
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%d\n", s}'
}
rows() { # DB: the rows in the store
    python3 -c 'import sqlite3, sys; print(sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True).execute("SELECT count(*) FROM queries").fetchone()[0])' "$1"
}
# The rows once the writer has caught up: until rows + dropped reach the queries answered
# (read once the load has stopped), at most 30 s. Sets STORED and DROPPED.
settle() { # DB ANSWERED
    for _ in $(seq 1 60); do
        STORED=$(rows "$1")
        DROPPED=$(metric_sum 'dnsgate_querylog_dropped_total{sink="store"}')
        [ $((STORED + DROPPED)) -ge "$2" ] && return 0
        sleep 0.5
    done
    log "warning: the store did not catch up in 30 s: $STORED rows + $DROPPED dropped < $2 answered"
}

start() { # kind tag: starts dnsgate in a fresh directory; sets PID, DIR
    DIR="$WORK/run-$2"
    mkdir -p "$DIR"
    cp "$WORK/$1.toml" "$DIR/dnsgate.toml"
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" run -c "$DIR/dnsgate.toml" 2>"$DIR/dnsgate.log" &
    PID=$!
    wait_ready
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

run() { # kind round -> "QPS dropped rows answered"
    local kind="$1" round="$2" dropped=0 stored=0 answered
    start "$kind" "$kind-$round"
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -n 1 -c 10 -q 100 >"$DIR/warm.txt" 2>&1
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -l "$DURATION" -c 10 -q 100 >"$DIR/perf.txt" 2>&1
    grep -q 'NOERROR' "$DIR/perf.txt" || die "$kind: no NOERROR answers ($DIR/perf.txt)"
    answered=$(metric_sum 'dnsgate_queries_total{')
    if [ "$kind" = on ]; then
        settle "$DIR/state/querylog.sqlite" "$answered"
        stored=$STORED dropped=$DROPPED
    fi
    stop
    echo "$(qps "$DIR/perf.txt") $dropped $stored $answered"
}

SPIN_PID=""
if [ "$SPINNER" = 1 ]; then
    taskset -c 0 chrt --idle 0 sh -c 'while :; do :; done' &
    SPIN_PID=$!
    PIDS+=("$SPIN_PID")
fi
declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order=(off on); else order=(on off); fi
    for kind in "${order[@]}"; do
        r=$(run "$kind" "$round")
        RESULTS[$kind-$round]="$r"
        log "round $round $kind: $r (QPS, rows dropped, rows stored, queries answered)"
    done
done

if [ -n "$SPIN_PID" ]; then kill "$SPIN_PID"; wait "$SPIN_PID" 2>/dev/null || true; fi

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
col() { for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[$1-$r]}" | cut -d' ' -f"$2"; done; }
off=$(col off 1 | median)
on=$(col on 1 | median)
report=$(cat <<EOF
| store | QPS (median of $ROUNDS x ${DURATION} s) | per round | rows dropped / stored / queries answered, per round |
|---|---:|---|---|
| none | $off | $(col off 1 | paste -sd' ') | |
| sqlite | $on | $(col on 1 | paste -sd' ') | $(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[on-$r]}" | awk '{printf "%s / %s / %s", $2, $3, $4}'; echo; done | paste -sd';') |

sqlite / none: **$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a / b}')** (target >= 0.95; core 0 spinner: $([ "$SPINNER" = 1 ] && echo on || echo off)).
EOF
)

if [ "$SUSTAINED" = 1 ]; then
    log "sustained: $RATE qps for $SUSTAIN_S s with the store on"
    start on sustained
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -n 1 -c 10 -q 100 >"$DIR/warm.txt" 2>&1
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -Q "$RATE" -l "$SUSTAIN_S" -c 10 -q 100 >"$DIR/perf.txt" 2>&1
    answered=$(metric_sum 'dnsgate_queries_total{')
    settle "$DIR/state/querylog.sqlite" "$answered"
    stored=$STORED dropped=$DROPPED
    cpu=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    # The store's writer thread ("dnsgate-querystore", cut to 15 characters by the kernel).
    writer_cpu=0
    for t in /proc/"$PID"/task/*; do
        if [ "$(cat "$t/comm")" = "dnsgate-queryst" ]; then writer_cpu=$(awk '{print $14 + $15}' "$t/stat"); fi
    done
    hz=$(getconf CLK_TCK)
    stop
    size=$(du -k "$DIR/state/querylog.sqlite" | cut -f1)
    sent=$(awk '/Queries sent:/ {print $3}' "$DIR/perf.txt")
    completed=$(awk '/Queries completed:/ {print $3}' "$DIR/perf.txt")
    lost=$(awk '/Queries lost:/ {print $3}' "$DIR/perf.txt")
    verdict=$([ "$dropped" = 0 ] && [ "$stored" = "$answered" ] && echo "met" || echo "MISSED")
    report+=$(cat <<EOF


Sustained, store on: dnsperf -Q $RATE -l $SUSTAIN_S: $(qps "$DIR/perf.txt") QPS, $completed of $sent queries answered ($lost lost); dnsgate answered $answered in all (warm-up included), the store holds **$stored rows**, **$dropped dropped** (target: 0 dropped, every query a row: $verdict); dnsgate used $(awk -v t="$cpu" -v h="$hz" 'BEGIN {printf "%.1f", t / h}') s of CPU in all, its store writer $(awk -v t="$writer_cpu" -v h="$hz" 'BEGIN {printf "%.1f", t / h}') s ($(awk -v t="$writer_cpu" -v h="$hz" -v n="$stored" 'BEGIN {printf "%.1f", t / h * 1e6 / n}') µs a row); database $((size / 1024)) MiB, $(awk -v k="$size" -v n="$stored" 'BEGIN {printf "%.0f", k * 1024 / n}') bytes a row.
EOF
)
fi
echo "$report"
[ -n "$OUT" ] && echo "$report" >"$OUT"
exit 0
