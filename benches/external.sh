#!/usr/bin/env bash
# External evaluation (issue 10, "Performance"): queries per second through a matching
# `external` policy whose verdict is cached, against the same queries through a plain
# `block` policy, dnsgate against itself on loopback with dnsperf.
#
#   benches/external.sh                 # 3 rounds x 6 s per configuration (~1 min)
#   benches/external.sh --rounds 5 --duration 10 --out /tmp/external.md
#
# Two configurations of one dnsgate binary, each pinned to core 0 with one tokio worker:
#   block     [[policies]] action = "block", traffic 'any(dns.domains[*] == "ext.bench")'
#   external  the same traffic, action = "external", an endpoint on 127.0.0.1 that verifies
#             the signature and answers {"action":"block","reason":"bench","ttl":300}
# dnsperf (core 1, 10 clients, 100 outstanding) asks 10,000 names under ext.bench, each
# asked once before measuring, so every verdict is cached (the endpoint's request count
# is reported: it must stay at the warm-up's). The configurations alternate within each
# round; the median of the rounds is reported, with the endpoint's requests and dnsgate's
# own external-request counters.
#
# Needs root only to apt-get install what is missing (dnsperf, python3).
# Environment: DNSGATE_BIN (skip the build), CARGO_TARGET_DIR, TMPDIR,
# EXTERNAL_PORT_BASE (default 15393; three ports from there on 127.0.0.1 are used).
set -euo pipefail

ROUNDS=3
DURATION=6
OUT=""
NAMES=10000
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "external.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[external %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "$0")/.."
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
command -v dig >/dev/null || need+=(dnsutils)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]} (run as root to apt-get install them)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

BASE="${EXTERNAL_PORT_BASE:-15393}"
DNS_PORT=$BASE
METRICS_PORT=$((BASE + 1))
ENDPOINT_PORT=$((BASE + 2))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dnsgate-external.XXXXXX")"
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

printf 'bench-secret\n' >"$WORK/risk.secret"
cat >"$WORK/endpoint.py" <<'EOF'
# Verifies X-Dnsgate-Signature and answers block with a ttl; counts requests.
import hashlib, hmac, http.server, json, sys
KEY = open(sys.argv[2], "rb").read().rstrip(b"\n")
COUNT = [0, 0]  # requests, bad signatures
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        t, v1 = self.headers["x-dnsgate-signature"].split(",")
        mac = hmac.new(KEY, t[2:].encode() + b"." + body, hashlib.sha256).hexdigest()
        COUNT[0] += 1
        if not hmac.compare_digest(mac, v1[3:]):
            COUNT[1] += 1
        reply = json.dumps({"action": "block", "reason": "bench", "ttl": 300}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
    def do_GET(self):
        reply = ("%d %d\n" % tuple(COUNT)).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
taskset -c 1 python3 "$WORK/endpoint.py" "$ENDPOINT_PORT" "$WORK/risk.secret" &
PIDS+=($!)

for kind in block external; do
    {
        printf '[server]\nlisten = ["127.0.0.1:%s"]\n\n' "$DNS_PORT"
        printf '[upstream]\nservers = ["udp://127.0.0.1:9"]\n\n'
        printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$METRICS_PORT"
        printf '[[policies]]\nname = "bench"\ntraffic = '"'"'any(dns.domains[*] == "ext.bench")'"'"'\n'
        if [ "$kind" = block ]; then
            printf 'action = "block"\nblock_reason = "bench"\n'
        else
            printf 'action = "external"\nexternal = { url = "http://127.0.0.1:%s/dns", secret_file = "risk.secret", timeout_ms = 1000 }\n' "$ENDPOINT_PORT"
        fi
    } >"$WORK/$kind.toml"
    "$BIN" check -c "$WORK/$kind.toml" >/dev/null || die "$kind.toml does not load"
done
for i in $(seq 0 $((NAMES - 1))); do echo "n$i.ext.bench A"; done >"$WORK/names.txt"

wait_ready() {
    for _ in $(seq 1 100); do
        if dig +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 n0.ext.bench A >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "dnsgate did not start"
}

qps() { awk '/Queries per second:/ {print $4}' "$1"; }

run() { # kind round -> QPS
    local kind="$1" round="$2" pid
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" run -c "$WORK/$kind.toml" 2>"$WORK/$kind-$round.log" &
    pid=$!
    wait_ready
    # Warm-up: every name once (the verdicts, then the answers, are cached), gently
    # enough for a Python endpoint to keep up within the timeout.
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -n 1 -c 1 -q 4 >"$WORK/$kind-$round-warm.txt" 2>&1
    local before after
    before=$(curl -s "http://127.0.0.1:$ENDPOINT_PORT/" | cut -d' ' -f1)
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/names.txt" -l "$DURATION" -c 10 -q 100 >"$WORK/$kind-$round.txt" 2>&1
    after=$(curl -s "http://127.0.0.1:$ENDPOINT_PORT/" | cut -d' ' -f1)
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^dnsgate_external_requests_total' >"$WORK/$kind-$round-metrics.txt" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    grep -q 'NOERROR' "$WORK/$kind-$round.txt" || die "$kind: no NOERROR answers ($WORK/$kind-$round.txt)"
    grep -A3 'Response codes' "$WORK/$kind-$round.txt" | sed "s/^/[$kind $round] /" >&2
    echo "$(qps "$WORK/$kind-$round.txt") $((after - before))"
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order=(block external); else order=(external block); fi
    for kind in "${order[@]}"; do
        r=$(run "$kind" "$round")
        RESULTS[$kind-$round]="$r"
        log "round $round $kind: $r (QPS, endpoint requests during the run)"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
b=$(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[block-$r]}" | cut -d' ' -f1; done | median)
e=$(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[external-$r]}" | cut -d' ' -f1; done | median)
req=$(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[external-$r]}" | cut -d' ' -f2; done | awk '{s += $1} END {print s}')
bad=$(curl -s "http://127.0.0.1:$ENDPOINT_PORT/" | cut -d' ' -f2)
report=$(cat <<EOF
| configuration | QPS (median of $ROUNDS x ${DURATION} s) | per round |
|---|---:|---|
| block policy | $b | $(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[block-$r]}" | cut -d' ' -f1; done | paste -sd' ') |
| external policy, cached verdict | $e | $(for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[external-$r]}" | cut -d' ' -f1; done | paste -sd' ') |

external / block: **$(awk -v e="$e" -v b="$b" 'BEGIN {printf "%.3f", e / b}')**; endpoint requests during the measured runs: $req; bad signatures seen by the endpoint: $bad.
EOF
)
echo "$report"
[ -n "$OUT" ] && echo "$report" >"$OUT"
exit 0
