#!/usr/bin/env bash
# Cached DNS over TLS and DNS over HTTPS: dnsgate versus Unbound's own DoT/DoH listeners,
# on loopback (issue 9: "Cached DoT and DoH QPS vs Unbound's own DoT/DoH listeners, both
# pinned to one core: target >= 1.0x").
#
#   benches/encrypted.sh                  # 3 rounds x 6 s per server and transport (~3.5 min)
#   benches/encrypted.sh --quick          # 1 round x 3 s (~1 min)
#   benches/encrypted.sh --rounds 5 --profile /tmp/enc-prof --out /tmp/encrypted.md
#
# The conventions of benches/compare.sh: a local upstream (an Unbound answering every name
# authoritatively, A 192.0.2.1) that dnsgate (forward mode) and Unbound (forward-zone ".")
# both forward to; 10,000 names, all cached by a warm-up before anything is measured;
# servers pinned to core 0 (dnsgate one tokio worker, Unbound num-threads: 1), the load
# generator and the upstream on core 1; servers alternating within each round (which one
# goes first alternates too); the median of the rounds reported.
#
# One self-signed ECDSA P-256 certificate (openssl) for HOSTNAME and *.HOSTNAME serves both.
# dnsgate: [server] hostname, dot = { listen, cert, key }, doh = { listen, cert, key,
# path = "/dns-query" }. Unbound 1.17 (Debian's, built --with-libnghttp2): tls-service-key,
# tls-service-pem, tls-port, https-port, http-endpoint "/dns-query", http-notls-downstream
# no, incoming-num-tcp 256 (the default 10 is the number of connections the clients open).
#
# Transports, all asking the same 10,000 cached names (A), 100 queries in flight over 10
# connections:
#   udp       dnsperf -m udp -c 10 -q 100 (the reference, as in compare.sh)
#   dot       dnsperf -m dot -c 10 -q 100 (10 TLS connections, pipelined)
#   doh-get   h2load -c 10 -m 10: 10 HTTP/2 connections, 10 streams each, GET ?dns= over
#             the 10,000 names (base64url, ID 0 as RFC 8484 advises)
#   doh-post  h2load -c 10 -m 10, POST application/dns-message, one cached name
# DoH is driven by h2load (nghttp2-client) and not by dnsperf 2.10's `-m doh`: dnsperf keeps
# one response buffer per connection and, when one read brings several HTTP/2 responses
# (a server that packs them into one TLS record, as hyper over rustls does), returns
# NGHTTP2_ERR_PAUSE from its data callback, which drops that chunk (nghttp2 counts a paused
# chunk as consumed); the stream then "completes" empty and its query times out
# (DNS-OARC/dnsperf issue 240 is this symptom). Unbound writes one response per record and
# is not hit. A short `dnsperf -m doh` check against both is still run and reported.
#
# Every answer must be NOERROR: dnsperf's response-code summary, h2load's 2xx count, and
# each server's own counters over the run (dnsgate_responses_total{rcode}; Unbound's
# extended statistics num.answer.rcode.*). A run with another rcode stops the script.
#
# Needs root only to apt-get install what is missing (dnsperf, unbound, dnsutils,
# nghttp2-client, openssl, python3, curl; linux-perf for --profile).
# Environment: DNSGATE_BIN (skip the build), CARGO_TARGET_DIR, TMPDIR,
# ENCRYPTED_PORT_BASE (default 15373; ten ports from there on 127.0.0.1 are used).
set -euo pipefail

ROUNDS=3
DURATION=6
OUT=""
KEEP=0
PROFILE=""
HOSTNAME_DNS=dns.bench
CLIENTS=10
STREAMS=10
TRANSPORTS=(udp dot doh-get doh-post)
ARGS_SEEN="$*"

usage() {
    cat <<'EOF'
Usage: benches/encrypted.sh [options]
  --quick           1 round, 3 s runs
  --rounds N        rounds (default 3); the median is reported
  --duration S      seconds per run (default 6)
  --transports L    comma-separated subset of udp,dot,doh-get,doh-post (default all)
  --profile DIR     after the rounds: both servers' syscalls per answer over DoT and DoH GET
                    (perf stat), and dnsgate's CPU profile over one DoT and one DoH GET run
                    (perf record -e cpu-clock --call-graph dwarf) summed by component;
                    written to DIR and added to the report
  --out FILE        also write the Markdown report to FILE
  --keep            keep the work directory (configs, logs, client output)
  -h, --help        this text
Environment: DNSGATE_BIN=path (do not build), CARGO_TARGET_DIR, TMPDIR, ENCRYPTED_PORT_BASE.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; DURATION=3 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --transports) IFS=, read -r -a TRANSPORTS <<<"$2"; shift ;;
        --profile) PROFILE=$(realpath -m "$2"); shift ;;
        --out) OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "encrypted.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in ROUNDS DURATION; do
    case "${!v}" in ''|*[!0-9]*) echo "encrypted.sh: $v must be a number" >&2; exit 2 ;; esac
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then
    echo "encrypted.sh: --rounds and --duration must be >= 1" >&2
    exit 2
fi
for t in "${TRANSPORTS[@]}"; do
    case "$t" in udp|dot|doh-get|doh-post) ;; *) echo "encrypted.sh: unknown transport $t" >&2; exit 2 ;; esac
done

log() { printf '[encrypted %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCRIPT_START=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- tools ----------------------------------------------------------------------------
need_pkgs=()
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v unbound >/dev/null || need_pkgs+=(unbound)
command -v unbound-control >/dev/null || need_pkgs+=(unbound)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v h2load >/dev/null || need_pkgs+=(nghttp2-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if [ -n "$PROFILE" ]; then command -v perf >/dev/null || need_pkgs+=(linux-perf); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${need_pkgs[*]}: run as root, or apt-get install them"
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
fi
unbound -V 2>/dev/null | grep -q -- '--with-libnghttp2' ||
    die "this unbound is built without libnghttp2: it has no https-port (DoH)"

# --- dnsgate binary -------------------------------------------------------------------
if [ -n "${DNSGATE_BIN:-}" ]; then
    BIN=$DNSGATE_BIN
else
    log "building dnsgate (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked >&2)
    target=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$target" in /*) ;; *) target=$ROOT/$target ;; esac
    BIN=$target/release/dnsgate
fi
[ -x "$BIN" ] || die "no dnsgate binary at $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# --- ports, cores, work dir -----------------------------------------------------------
BASE=${ENCRYPTED_PORT_BASE:-15373}
UP_PORT=$BASE
DG_UDP=$((BASE + 1)); DG_DOT=$((BASE + 2)); DG_DOH=$((BASE + 3)); DG_METRICS=$((BASE + 4))
UB_UDP=$((BASE + 5)); UB_DOT=$((BASE + 6)); UB_DOH=$((BASE + 7)); UB_CTL=$((BASE + 8))
if command -v ss >/dev/null; then
    for p in $(seq "$BASE" $((BASE + 9))); do
        if ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; then
            die "port $p is in use on this machine; set ENCRYPTED_PORT_BASE"
        fi
    done
fi
NCPU=$(nproc)
SERVER_CORE=0
CLIENT_CORE=$((NCPU >= 2 ? 1 : 0))
[ "$NCPU" -ge 2 ] || log "warning: 1 CPU: servers and clients share core 0"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnsgate-encrypted.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ "$KEEP" -eq 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
stop_pid() { # graceful, then forceful; the pid must be our child
    local p=$1
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    forget_pid "$p"
}

now_ns() { date +%s%N; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# CHILD_S = user + system seconds of this shell's waited-for children (`times`, in this shell)
children_cpu() {
    local cu cs
    times >"$WORK/times.txt"
    { read -r _ _; read -r cu cs; } <"$WORK/times.txt"
    CHILD_S=$(awk -v u="$cu" -v s="$cs" 'function sec(x, a) { split(x, a, /[ms]/); return a[1] * 60 + a[2] }
        BEGIN { printf "%.3f", sec(u) + sec(s) }')
}

# --- generated data: names, DoH requests, certificate, configurations -------------------
log "work directory $WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
    -subj "/CN=$HOSTNAME_DNS" -addext "subjectAltName=DNS:$HOSTNAME_DNS,DNS:*.$HOSTNAME_DNS" \
    -keyout "$WORK/privkey.pem" -out "$WORK/fullchain.pem" 2>"$WORK/openssl.log" ||
    { cat "$WORK/openssl.log" >&2; die "openssl could not make the certificate"; }

python3 - "$WORK" "$HOSTNAME_DNS" "$DG_DOH" "$UB_DOH" <<'PY'
import base64, os, struct, sys
work, host, dg_doh, ub_doh = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
# The cached names of compare.sh: allowed-looking names, A records.
aw = ["acme", "north", "river", "stone", "maple", "harbor", "summit", "orchard", "meadow",
      "canyon", "lumen", "atlas", "quartz", "willow", "falcon", "cedar", "ember", "tundra"]
asub = ["www", "api", "mail", "static", "login", "app", "docs", "shop", "news", "img"]
tlds = ["com", "net", "org", "io", "info", "xyz", "top", "biz", "co", "online", "site", "club"]
names = ["%s.%s%d.%s" % (asub[i % 10], aw[(i // 10) % 18], i, tlds[(i * 5) % 12]) for i in range(10000)]
with open(os.path.join(work, "cached.txt"), "w") as f:
    f.write("".join(n + " A\n" for n in names))
def query(name):  # ID 0 (RFC 8484 §4.1), RD, one question, no EDNS (as dnsperf sends)
    m = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        m += bytes([len(label)]) + label.encode()
    return m + b"\0" + struct.pack(">HH", 1, 1)
for srv, port in (("dnsgate", dg_doh), ("unbound", ub_doh)):
    with open(os.path.join(work, "doh-get-%s.txt" % srv), "w") as f:
        for n in names:
            f.write("https://%s:%s/dns-query?dns=%s\n"
                    % (host, port, base64.urlsafe_b64encode(query(n)).decode().rstrip("=")))
with open(os.path.join(work, "doh-post.bin"), "wb") as f:
    f.write(query(names[0]))
PY

cat >"$WORK/dnsgate.toml" <<EOF
# generated by benches/encrypted.sh
[server]
listen = ["127.0.0.1:$DG_UDP"]
allow_networks = ["127.0.0.0/8"]
hostname = "$HOSTNAME_DNS"
dot = { listen = ["127.0.0.1:$DG_DOT"], cert = "fullchain.pem", key = "privkey.pem" }
doh = { listen = ["127.0.0.1:$DG_DOH"], cert = "fullchain.pem", key = "privkey.pem", path = "/dns-query" }

[upstream]
mode = "forward"
servers = ["udp://127.0.0.1:$UP_PORT"]
timeout_ms = 2000

[cache]
size = 1000000

[metrics]
listen = "127.0.0.1:$DG_METRICS"
EOF
# The [server] threads key, if this build has one; else TOKIO_WORKER_THREADS (below).
sed '/^\[server\]/a threads = 1' "$WORK/dnsgate.toml" >"$WORK/probe.toml"
if "$BIN" check -c "$WORK/probe.toml" >/dev/null 2>&1; then cp "$WORK/probe.toml" "$WORK/dnsgate.toml"; fi
"$BIN" check -c "$WORK/dnsgate.toml" >&2 || die "dnsgate rejects the generated configuration"

common() { # PORT-LINES...
    cat <<EOF
server:
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  num-threads: 1
EOF
}
{
    common
    cat <<EOF
  interface: 127.0.0.1@$UB_UDP
  interface: 127.0.0.1@$UB_DOT
  interface: 127.0.0.1@$UB_DOH
  port: $UB_UDP
  verbosity: 1
  so-reuseport: yes
  so-rcvbuf: 4m
  qname-minimisation: no
  do-not-query-localhost: no
  msg-cache-size: 128m
  rrset-cache-size: 256m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  prefetch: no
  minimal-responses: yes
  incoming-num-tcp: 256
  extended-statistics: yes
  tls-service-key: "$WORK/privkey.pem"
  tls-service-pem: "$WORK/fullchain.pem"
  tls-port: $UB_DOT
  https-port: $UB_DOH
  http-endpoint: "/dns-query"
  http-notls-downstream: no
remote-control:
  control-enable: yes
  control-interface: 127.0.0.1
  control-port: $UB_CTL
  control-use-cert: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP_PORT
EOF
} >"$WORK/unbound.conf"
{
    common
    cat <<EOF
  interface: 127.0.0.1
  port: $UP_PORT
  verbosity: 0
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
  local-data: ". 3600 IN AAAA 2001:db8::1"
remote-control:
  control-enable: no
EOF
} >"$WORK/upstream.conf"
unbound-checkconf "$WORK/unbound.conf" >/dev/null || die "unbound rejects its configuration"
unbound-checkconf "$WORK/upstream.conf" >/dev/null || die "unbound rejects the upstream configuration"

# --- servers --------------------------------------------------------------------------
wait_ready() { # PORT PID
    local port=$1 pid=$2 deadline=$(($(date +%s) + 60)) out
    while :; do
        kill -0 "$pid" 2>/dev/null || return 1
        out=$(dig +tries=1 +time=5 @127.0.0.1 -p "$port" load-probe.bench A 2>/dev/null || true)
        case "$out" in *"status: "*) return 0 ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

(cd "$WORK" && exec taskset -c "$CLIENT_CORE" unbound -d -c "$WORK/upstream.conf" 2>"$WORK/upstream.log") &
UP_PID=$!
PIDS+=("$UP_PID")
wait_ready "$UP_PORT" "$UP_PID" || { cat "$WORK/upstream.log" >&2; die "the upstream did not start"; }
(cd "$WORK" && TOKIO_WORKER_THREADS=1 exec taskset -c "$SERVER_CORE" "$BIN" run -c "$WORK/dnsgate.toml" 2>"$WORK/dnsgate.log") &
DG_PID=$!
PIDS+=("$DG_PID")
wait_ready "$DG_UDP" "$DG_PID" || { tail -20 "$WORK/dnsgate.log" >&2; die "dnsgate did not start"; }
(cd "$WORK" && exec taskset -c "$SERVER_CORE" unbound -d -c "$WORK/unbound.conf" 2>"$WORK/unbound.log") &
UB_PID=$!
PIDS+=("$UB_PID")
wait_ready "$UB_UDP" "$UB_PID" || { tail -20 "$WORK/unbound.log" >&2; die "unbound did not start"; }
log "servers up: dnsgate pid $DG_PID (udp $DG_UDP, dot $DG_DOT, doh $DG_DOH), unbound pid $UB_PID (udp $UB_UDP, dot $UB_DOT, doh $UB_DOH); servers on core $SERVER_CORE, clients and upstream on core $CLIENT_CORE"

pid_of() { if [ "$1" = dnsgate ]; then echo "$DG_PID"; else echo "$UB_PID"; fi; }
port_of() { # SERVER TRANSPORT
    case "$1-$2" in
        dnsgate-udp) echo "$DG_UDP" ;; dnsgate-dot) echo "$DG_DOT" ;; dnsgate-doh*) echo "$DG_DOH" ;;
        unbound-udp) echo "$UB_UDP" ;; unbound-dot) echo "$UB_DOT" ;; unbound-doh*) echo "$UB_DOH" ;;
    esac
}

# One answer over each encrypted listener, and the TLS each negotiates with an OpenSSL client.
for srv in dnsgate unbound; do
    a=$(dig +tls +tries=1 +time=5 @127.0.0.1 -p "$(port_of "$srv" dot)" www.acme0.com A 2>&1 || true)
    case "$a" in *"status: NOERROR"*192.0.2.1*) ;; *) echo "$a" >&2; die "$srv: no NOERROR answer over DoT (dig +tls)" ;; esac
    a=$(dig +https +tries=1 +time=5 @127.0.0.1 -p "$(port_of "$srv" doh)" www.acme0.com A 2>&1 || true)
    case "$a" in *"status: NOERROR"*192.0.2.1*) ;; *) echo "$a" >&2; die "$srv: no NOERROR answer over DoH (dig +https)" ;; esac
    for t in dot doh; do
        alpn=dot; [ "$t" = doh ] && alpn=h2
        tls=$(timeout 10 openssl s_client -connect "127.0.0.1:$(port_of "$srv" "$t")" -alpn "$alpn" </dev/null 2>&1 |
            awk '/^New, / {sub(/,$/, "", $2); p = $2; c = $NF} /^Server Temp Key:/ {sub(/^Server Temp Key: /, ""); k = $0}
                /^ALPN protocol:/ {a = $3} END {printf "%s %s, key exchange %s, ALPN %s", p, c, k, a ? a : "none"}')
        echo "tls_${srv}_$t=$tls" >>"$WORK/tls.txt"
    done
done
log "DoT and DoH answer NOERROR on both servers; $(cut -d= -f2 "$WORK/tls.txt" | sort -u | paste -sd';')"

# --- counters -------------------------------------------------------------------------
# rcodes SERVER: "noerror total" answers the server counted so far
rcodes() {
    if [ "$1" = dnsgate ]; then
        curl -fsS --max-time 5 "http://127.0.0.1:$DG_METRICS/metrics" |
            awk '/^dnsgate_responses_total\{/ { t += $2; if ($1 ~ /rcode="NOERROR"/) n += $2 } END { printf "%d %d", n, t }'
    else
        unbound-control -c "$WORK/unbound.conf" stats_noreset |
            awk -F= '/^num\.answer\.rcode\./ { t += $2; if ($1 == "num.answer.rcode.NOERROR") n += $2 } END { printf "%d %d", n, t }'
    fi
}

# --- load generators ------------------------------------------------------------------
# client SERVER TRANSPORT SECONDS OUT: runs the load on the client core; output in OUT
client() {
    local srv=$1 t=$2 secs=$3 out=$4 port
    port=$(port_of "$srv" "$t")
    case "$t" in
        udp|dot)
            timeout $((secs + 30)) taskset -c "$CLIENT_CORE" dnsperf -m "$t" -s 127.0.0.1 -p "$port" \
                -d "$WORK/cached.txt" -l "$secs" -c "$CLIENTS" -q $((CLIENTS * STREAMS)) -t 5 -v >"$out" 2>"$out.err" ;;
        doh-get)
            timeout $((secs + 30)) taskset -c "$CLIENT_CORE" h2load -i "$WORK/doh-get-$srv.txt" \
                --connect-to="127.0.0.1:$port" -c "$CLIENTS" -m "$STREAMS" -D "$secs" \
                --log-file="$out.log" >"$out" 2>"$out.err" ;;
        doh-post)
            timeout $((secs + 30)) taskset -c "$CLIENT_CORE" h2load -d "$WORK/doh-post.bin" \
                -H "content-type: application/dns-message" -H "accept: application/dns-message" \
                --connect-to="127.0.0.1:$port" -c "$CLIENTS" -m "$STREAMS" -D "$secs" \
                --log-file="$out.log" "https://$HOSTNAME_DNS:$port/dns-query" >"$out" 2>"$out.err" ;;
    esac
}

# parse OUT TRANSPORT: "qps mean_ms p99_ms lost sent answered resp_bytes noerror_seen"
parse() {
    python3 - "$1" "$2" <<'PY'
import math, re, sys
out, t = sys.argv[1], sys.argv[2]
text = open(out, errors="replace").read()
lat = []
def p99(xs):
    xs.sort()
    return xs[max(0, math.ceil(0.99 * len(xs)) - 1)] if xs else float("nan")
if t in ("udp", "dot"):
    stats = {}
    for line in text.splitlines():
        if line.startswith("> "):
            parts = line.split()
            if len(parts) >= 5 and parts[1] != "T":
                try:
                    lat.append(float(parts[-1]) * 1000)
                except ValueError:
                    pass
            continue
        m = re.match(r"\s*(Queries sent|Queries completed|Queries lost|Queries per second|Average Latency \(s\)):\s+([0-9.]+)", line)
        if m and m.group(1) not in stats:
            stats[m.group(1)] = float(m.group(2))
    if "Queries per second" not in stats:
        sys.exit("dnsperf printed no statistics")
    rc = re.search(r"Response codes:\s*(.*)", text)
    codes = dict((k, int(v)) for k, v in re.findall(r"([A-Z]+) (\d+) \(", rc.group(1))) if rc else {}
    size = re.search(r"Average packet size:\s+request (\d+), response (\d+)", text)
    answered = int(stats.get("Queries completed", 0))
    ok = 1 if codes and set(codes) == {"NOERROR"} and codes["NOERROR"] == answered else 0
    print("%.0f %.4f %.4f %d %d %d %s %d" % (stats["Queries per second"], stats["Average Latency (s)"] * 1000,
          p99(lat), stats.get("Queries lost", 0), stats["Queries sent"], answered, size.group(2) if size else "0", ok))
else:
    m = re.search(r"finished in ([0-9.]+)s, ([0-9.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not m or not r or not s:
        sys.exit("h2load printed no statistics")
    total, started, done, succ = (int(r.group(i)) for i in (1, 2, 3, 4))
    data = re.search(r"traffic: .*\((\d+)\) data", text)
    for line in open(out + ".log"):
        f = line.split()
        if len(f) >= 3 and f[1].startswith("2"):
            lat.append(int(f[2]) / 1000)
    non2xx = int(s.group(2)) + int(s.group(3)) + int(s.group(4))
    ok = 1 if non2xx == 0 and succ == done else 0
    print("%.0f %.4f %.4f %d %d %d %d %d" % (float(m.group(2)), sum(lat) / len(lat) if lat else float("nan"), p99(lat),
          total - succ, total, succ, int(data.group(1)) // max(succ, 1) if data else 0, ok))
PY
}

RESULTS=$WORK/results.tsv # transport server round qps mean p99 lost sent answered resp cpu_srv cpu_cli cpu_other srv_us rss_kb
: >"$RESULTS"
# run SERVER TRANSPORT SECONDS [ROUND]: one measured run; RUN = the parse line; records if ROUND
run() {
    local srv=$1 t=$2 secs=$3 round=${4:-} pid out c0 b0 p0 t0 wall r0 r1 cpu
    pid=$(pid_of "$srv")
    out=$WORK/out-$t-$srv-${round:-x}
    r0=$(rcodes "$srv")
    c0=$(cpu_ticks "$pid"); b0=$(busy_ticks); children_cpu; p0=$CHILD_S; t0=$(now_ns)
    client "$srv" "$t" "$secs" "$out" || { tail -5 "$out.err" >&2; die "$t client failed against $srv"; }
    wall=$(($(now_ns) - t0))
    children_cpu
    cpu=$(awk -v s0="$c0" -v s1="$(cpu_ticks "$pid")" -v b0="$b0" -v b1="$(busy_ticks)" -v p0="$p0" -v p1="$CHILD_S" \
        -v w="$wall" -v hz="$CLK_TCK" 'BEGIN { w /= 1e9; s = (s1 - s0) / hz; p = p1 - p0; o = (b1 - b0) / hz - s - p
            if (o < 0) o = 0
            printf "%.0f %.0f %.0f %.4f", s / w * 100, p / w * 100, o / w * 100, s }')
    r1=$(rcodes "$srv")
    RUN=$(parse "$out" "$t") || die "cannot read the $t client output ($out)"
    local qps mean p99 lost sent answered resp ok scpu pcpu ocpu ssec n0 t0c n1 t1c
    read -r qps mean p99 lost sent answered resp ok <<<"$RUN"
    read -r scpu pcpu ocpu ssec <<<"$cpu"
    read -r n0 t0c <<<"$r0"; read -r n1 t1c <<<"$r1"
    # The server's own count: every answer it gave in the run NOERROR, and at least as many as the client took.
    if [ "$ok" -ne 1 ] || [ $((n1 - n0)) -ne $((t1c - t0c)) ] || [ $((n1 - n0)) -lt "$answered" ]; then
        grep -E 'Response codes|status codes|requests:' "$out" >&2 || true
        die "$srv over $t: not every answer NOERROR / 2xx (client ok=$ok; server NOERROR +$((n1 - n0)) of +$((t1c - t0c)), client answered $answered)"
    fi
    if [ -n "$round" ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$srv" "$round" "$qps" "$mean" "$p99" \
            "$lost" "$sent" "$answered" "$resp" "$scpu" "$pcpu" "$ocpu" \
            "$(awk -v s="$ssec" -v a="$answered" 'BEGIN { printf "%.2f", (a > 0 ? s / a * 1e6 : 0) }')" "$(rss_kb "$pid")" >>"$RESULTS"
        log "  $t $srv round $round: $qps qps, mean $mean ms, p99 $p99 ms, lost $lost of $sent; CPU %: server $scpu, client $pcpu, other $ocpu; NOERROR +$((n1 - n0))"
    fi
    [ "$KEEP" -eq 1 ] || rm -f "$out.log"
}

# --- warm-up: every name cached, every transport's path and connections exercised once ---
RSS0=$WORK/rss-start.tsv
: >"$RSS0"
for srv in dnsgate unbound; do
    run "$srv" udp 3
    for t in "${TRANSPORTS[@]}"; do
        run "$srv" "$t" 2
    done
    printf '%s\t%s\n' "$srv" "$(rss_kb "$(pid_of "$srv")")" >>"$RSS0"
done
log "warmed: 10,000 names cached in both; RSS dnsgate $(($(rss_kb "$DG_PID") / 1024)) MiB, unbound $(($(rss_kb "$UB_PID") / 1024)) MiB"

# --- rounds ---------------------------------------------------------------------------
log "${ROUNDS} round(s) x ${#TRANSPORTS[@]} transports x 2 servers x ${DURATION} s"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order=(dnsgate unbound); else order=(unbound dnsgate); fi
    for t in "${TRANSPORTS[@]}"; do
        for srv in "${order[@]}"; do
            run "$srv" "$t" "$DURATION" "$r"
        done
    done
done

# --- dnsperf -m doh: the client check (see the header) ----------------------------------
DNSPERF_DOH=$WORK/dnsperf-doh.tsv # server sent completed lost http200 qps
: >"$DNSPERF_DOH"
for srv in dnsgate unbound; do
    out=$WORK/out-dnsperf-doh-$srv
    timeout 40 taskset -c "$CLIENT_CORE" dnsperf -m doh -O "doh-uri=https://$HOSTNAME_DNS/dns-query" -s 127.0.0.1 \
        -p "$(port_of "$srv" doh)" -d "$WORK/cached.txt" -l 3 -c "$CLIENTS" -q $((CLIENTS * STREAMS)) -t 2 >"$out" 2>&1 || true
    python3 - "$out" "$srv" >>"$DNSPERF_DOH" <<'PY'
import re, sys
t = open(sys.argv[1], errors="replace").read()
g = lambda p: (re.search(p, t).group(1) if re.search(p, t) else "0")
print("\t".join([sys.argv[2], g(r"Queries sent:\s+(\d+)"), g(r"Queries completed:\s+(\d+)"), g(r"Queries lost:\s+(\d+)"),
                 g(r"HTTP/2 return codes:.*?200: (\d+)"), g(r"Queries per second:\s+([0-9.]+)")]))
PY
done

# --- profile --------------------------------------------------------------------------
# Syscalls per answer of both servers (perf stat on the server over one run), then dnsgate's
# CPU profile over one DoT and one DoH GET run, summed by component from the call stacks.
SYSCALLS=$WORK/syscalls.tsv # server transport answers syscalls writes reads
: >"$SYSCALLS"
if [ -n "$PROFILE" ]; then
    mkdir -p "$PROFILE"
    ev=raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto
    ev=$ev,syscalls:sys_enter_sendmsg,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom
    for srv in dnsgate unbound; do
        for t in dot doh-get; do
            taskset -c "$CLIENT_CORE" perf stat -x, -e "$ev" -p "$(pid_of "$srv")" -o "$WORK/stat-$srv-$t.txt" 2>/dev/null &
            perf_pid=$!
            PIDS+=("$perf_pid")
            sleep 0.3
            run "$srv" "$t" "$DURATION"
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" || true
            forget_pid "$perf_pid"
            awk -F, -v s="$srv" -v t="$t" -v a="$(awk '{print $6}' <<<"$RUN")" '
                $1 ~ /^[0-9]+$/ { if ($3 ~ /raw_syscalls/) n = $1; else if ($3 ~ /write|send/) w += $1; else r += $1 }
                END { printf "%s\t%s\t%d\t%d\t%d\t%d\n", s, t, a, n, w, r }' "$WORK/stat-$srv-$t.txt" >>"$SYSCALLS"
        done
    done
    for t in dot doh-get; do
        log "profiling dnsgate over $t (perf record -e cpu-clock --call-graph dwarf, $DURATION s)"
        taskset -c "$CLIENT_CORE" perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$DG_PID" \
            -o "$WORK/perf-$t.data" 2>"$WORK/perf-$t.err" &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 0.5
        run dnsgate "$t" "$DURATION"
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" || true
        forget_pid "$perf_pid"
        echo "$RUN" >"$PROFILE/$t-run.txt"
        log "  perf report ($t)"
        timeout 900 taskset -c "$CLIENT_CORE" perf report -i "$WORK/perf-$t.data" --no-children --stdio \
            --sort dso,symbol --percent-limit 0.5 -g none 2>/dev/null | cut -c1-220 >"$PROFILE/$t-self.txt" || true
        timeout 900 taskset -c "$CLIENT_CORE" perf script -i "$WORK/perf-$t.data" 2>/dev/null >"$WORK/perf-$t.script" || true
        python3 - "$WORK/perf-$t.script" >"$PROFILE/$t-breakdown.txt" <<'PY'
import collections, re, sys
def samples(path):  # perf script: a header line, then one frame a line, a blank line
    cur = None
    for line in open(path, errors="replace"):
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line.startswith(("\t", " ")):
            cur = []
        elif cur is not None:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip())
            if m:
                cur.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
    if cur:
        yield cur
CRATES = [("ring", "ring (AES-GCM)"), ("rustls", "rustls (records, not crypto)"), ("tokio_rustls", "rustls (records, not crypto)"),
          ("h2", "h2 (HTTP/2 frames, HPACK, stream state)"), ("hyper", "hyper (service, H2Stream)"), ("hyper_util", "hyper (service, H2Stream)"),
          ("http", "hyper (service, H2Stream)"), ("hickory_proto", "hickory (message decode/encode)"),
          ("hickory_server", "hickory (message decode/encode)"), ("dnsgate", "dnsgate (pipeline, cache, handlers)"),
          ("quick_cache", "dnsgate (pipeline, cache, handlers)"), ("data_encoding", "dnsgate (pipeline, cache, handlers)"),
          ("tokio", "tokio (scheduler, tasks, channels)"), ("mio", "tokio (scheduler, tasks, channels)")]
def crate(sym):
    m = re.match(r"<?([a-z0-9_]+)::", sym)
    return m.group(1) if m else None
def leaf(st):
    sym, dso = st[0]
    stack = " ".join(s for s, _ in st)
    if "kernel" in dso:
        if re.search(r"do_writev|ksys_write|tcp_sendmsg|__sys_sendto|sendmsg", stack):
            return "kernel: write path (TCP send + loopback delivery)"
        if re.search(r"ksys_read|tcp_recvmsg|__sys_recvfrom|recvmsg", stack):
            return "kernel: read path"
        if "epoll" in stack:
            return "kernel: epoll"
        return "kernel: other"
    if re.search(r"mem(move|cpy)", sym):
        return "memcpy: moving task futures (tokio spawn, set_stage)" if "tokio::runtime::task" in stack else "memcpy: other"
    if "libc" in dso:
        return "malloc/free" if re.search(r"malloc|free|_int_|unlink_chunk|consolidate|realloc", sym) else "libc: other"
    if sym.startswith("ring_core") or re.match(r"(aes|gcm|GFp|chacha|ChaCha)", sym):
        return "ring (AES-GCM)"
    for s, _ in st:
        c = crate(s)
        for pre, name in CRATES:
            if c == pre:
                return name
        if s.startswith(("alloc::fmt", "core::fmt")):
            return "formatting (format!)"
    return "other"
INCL = [("rustls write_tls (encrypt + the writev under it)", r"ConnectionCommon<Data>::write_tls|ChunkVecBuffer::write_to"),
        ("ring seal/open", r"ring_core|ring::aead"),
        ("dnsgate Handler::serve (pipeline, cache lookup, answer encoding)", r"dnsgate::server::serve::Handler::serve"),
        ("dnsgate doh::handle (the whole DoH request, serve included)", r"dnsgate::server::doh::handle"),
        ("dnsgate tcp::query (the whole DoT query task, serve included)", r"dnsgate::server::tcp::query"),
        ("hickory Request::from_bytes (decode)", r"Request::from_bytes"),
        ("h2 HPACK decode", r"h2::hpack::decoder"), ("h2 HPACK encode", r"h2::hpack::encoder"),
        ("tokio::spawn (a task per query / stream)", r"tokio::task::spawn::spawn"),
        ("format! (doh.rs Cache-Control value)", r"alloc::fmt::format")]
c, inc, n = collections.Counter(), collections.Counter(), 0
for st in samples(sys.argv[1]):
    n += 1
    c[leaf(st)] += 1
    stack = " ".join(s for s, _ in st)
    for name, pat in INCL:
        if re.search(pat, stack):
            inc[name] += 1
if not n:
    sys.exit("no samples")
print("samples\t%d" % n)
for k, v in c.most_common():
    print("self\t%.1f\t%s" % (100.0 * v / n, k))
for name, _ in INCL:
    print("incl\t%.1f\t%s" % (100.0 * inc[name] / n, name))
PY
        [ "$KEEP" -eq 1 ] && cp "$WORK/perf-$t.data" "$PROFILE/" || true
        rm -f "$WORK/perf-$t.script"
    done
    cp "$SYSCALLS" "$PROFILE/syscalls.tsv"
    log "profiles in $PROFILE"
fi

# --- report ---------------------------------------------------------------------------
for srv in dnsgate unbound; do
    printf '%s\t%s\t%s\n' "$srv" "$(rss_kb "$(pid_of "$srv")")" "$(hwm_kb "$(pid_of "$srv")")" >>"$WORK/rss-end.tsv"
done
cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then rev="$rev (modified)"; fi
{
    echo "cpu=$cpu"
    echo "nproc=$NCPU"
    echo "kernel=$(uname -r)"
    echo "loadavg=$LOADAVG_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "dnsperf=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2; exit}')"
    echo "h2load=$(h2load --version 2>&1 | awk '{print $2; exit}')"
    echo "unbound=$(unbound -V 2>/dev/null | awk '/^Version/ {print $2; exit}')"
    echo "openssl=$(unbound -V 2>/dev/null | sed -n 's/.*OpenSSL \([^ ]*\).*/\1/p' | head -1)"
    echo "dnsgate=$rev"
    echo "command=benches/encrypted.sh${ARGS_SEEN:+ $ARGS_SEEN}"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "clients=$CLIENTS"
    echo "streams=$STREAMS"
    echo "elapsed=$(($(date +%s) - SCRIPT_START))"
    echo "profile=$PROFILE"
    cat "$WORK/tls.txt"
} >"$WORK/meta.txt"

REPORT=$WORK/report.md
python3 - "$WORK" >"$REPORT" <<'PY'
import os, statistics, sys
work = sys.argv[1]
def rows(name):
    p = os.path.join(work, name)
    return [l.rstrip("\n").split("\t") for l in open(p) if l.strip()] if os.path.exists(p) else []
meta = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(work, "meta.txt")) if "=" in l)
med = lambda xs: statistics.median(xs) if xs else float("nan")
f = lambda x, d=2: "n/a" if x != x else "%.*f" % (d, x)
ratio = lambda a, b: a / b if b and a == a and b == b else float("nan")
res = rows("results.tsv")
rss0 = dict((r[0], int(r[1])) for r in rows("rss-start.tsv"))
rss1 = dict((r[0], (int(r[1]), int(r[2]))) for r in rows("rss-end.tsv"))
order = ["udp", "dot", "doh-get", "doh-post"]
ts = [t for t in order if any(r[0] == t for r in res)]
def agg(t, srv):
    rs = [r for r in res if r[0] == t and r[1] == srv]
    col = lambda i: [float(r[i]) for r in rs]
    return dict(qps=med(col(3)), mean=med(col(4)), p99=med(col(5)), lost=sum(int(r[6]) for r in rs),
                sent=sum(int(r[7]) for r in rs), resp=med(col(9)), cpu=[med(col(i)) for i in (10, 11, 12)],
                us=med(col(13)), rss=max(col(14)) / 1024, all=col(3))
client = {"udp": "dnsperf -m udp", "dot": "dnsperf -m dot", "doh-get": "h2load GET", "doh-post": "h2load POST"}
print("## Encrypted transports: dnsgate vs Unbound (benches/encrypted.sh)\n")
print("- Machine: %s, %s CPUs, Linux %s; load average %s" % (meta["cpu"], meta["nproc"], meta["kernel"], meta["loadavg"]))
print("- dnsgate %s, Unbound %s (OpenSSL %s), dnsperf %s, h2load %s; %s UTC; run took %s s"
      % (meta["dnsgate"], meta["unbound"], meta["openssl"], meta["dnsperf"], meta["h2load"], meta["date"], meta["elapsed"]))
print("- Command: `%s`" % meta["command"])
print("- Servers on core 0 (dnsgate one tokio worker, Unbound num-threads 1), clients and the upstream on core 1; "
      "10,000 cached names; %s connections x %s queries in flight; %s rounds x %s s, servers alternating; median of the rounds"
      % (meta["clients"], meta["streams"], meta["rounds"], meta["duration"]))
tls = sorted(set(v for k, v in meta.items() if k.startswith("tls_")))
print("- TLS (openssl s_client to each listener): " + "; ".join(
      "%s %s: %s" % (k[4:].split("_")[0], k.split("_")[-1], v) for k, v in sorted(meta.items()) if k.startswith("tls_")))
print()
print("| transport | client | server | QPS | mean ms | p99 ms | lost / sent | CPU % server / client / other | server CPU µs per answer | answer bytes | RSS MiB | QPS per round |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for t in ts:
    for srv in ("dnsgate", "unbound"):
        a = agg(t, srv)
        print("| %s | %s | %s | %s | %s | %s | %d / %d | %s | %s | %s | %s | %s |" % (
            t, client[t], srv, format(round(a["qps"]), ","), f(a["mean"], 3), f(a["p99"], 3), a["lost"], a["sent"],
            " / ".join(f(c, 0) for c in a["cpu"]), f(a["us"]), f(a["resp"], 0), f(a["rss"], 1),
            " ".join(format(round(x), ",") for x in a["all"])))
print("\nCPU: user + system over the run in %% of one core (server, the load generator, everything else on the machine). "
      "Server CPU per answer = server CPU seconds / answers the client received. RSS: the most seen after a run "
      "(dnsgate %s -> %s MiB, peak %s; Unbound %s -> %s MiB, peak %s, from after the warm-up to the end)."
      % tuple(f(x / 1024, 1) for x in (rss0.get("dnsgate", 0), rss1.get("dnsgate", (0, 0))[0], rss1.get("dnsgate", (0, 0))[1],
                                        rss0.get("unbound", 0), rss1.get("unbound", (0, 0))[0], rss1.get("unbound", (0, 0))[1])))
print("\n| transport | QPS dnsgate / Unbound | QPS per server core dnsgate / Unbound | CPU per answer dnsgate / Unbound | mean latency ratio | p99 ratio |")
print("|---|---:|---:|---:|---:|---:|")
for t in ts:
    d, u = agg(t, "dnsgate"), agg(t, "unbound")
    print("| %s | %s | %s | %s | %s | %s |" % (t, f(ratio(d["qps"], u["qps"])), f(ratio(u["us"], d["us"])),
          f(ratio(d["us"], u["us"])), f(ratio(d["mean"], u["mean"])), f(ratio(d["p99"], u["p99"]))))
dp = rows("dnsperf-doh.tsv")
if dp:
    print("\n`dnsperf -m doh` (GET, 3 s, same clients and in-flight queries), kept as a check of that client:\n")
    print("| server | sent | completed | lost | HTTP/2 200 seen | QPS |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in dp:
        print("| %s | %s | %s | %s | %s | %s |" % (r[0], r[1], r[2], r[3], r[4], format(round(float(r[5])), ",")))
    print("\nMore 200s than completed queries, and lost queries, mean dnsperf 2.10 dropped responses that arrived in "
          "one TLS record with another (see the script's header); h2load above gets every one.")
sc = rows("syscalls.tsv")
if sc:
    print("\nSyscalls per answer (perf stat on the server over one %s s run each):\n" % meta["duration"])
    print("| server | transport | answers | syscalls / answer | write, writev, send* / answer | read, recv* / answer |")
    print("|---|---|---:|---:|---:|---:|")
    for r in sc:
        a = max(int(r[2]), 1)
        print("| %s | %s | %s | %.2f | %.2f | %.2f |" % (r[0], r[1], r[2], int(r[3]) / a, int(r[4]) / a, int(r[5]) / a))
prof = meta.get("profile", "")
for t in ("dot", "doh-get"):
    p = os.path.join(prof, "%s-breakdown.txt" % t) if prof else ""
    if not p or not os.path.exists(p):
        continue
    b = [l.rstrip("\n").split("\t") for l in open(p) if "\t" in l]
    n = next((x[1] for x in b if x[0] == "samples"), "?")
    print("\ndnsgate CPU over %s (perf record -e cpu-clock --call-graph dwarf, %s samples), where it is:\n" % (t, n))
    print("| share | component (leaf of the stack) |")
    print("|---:|---|")
    for x in b:
        if x[0] == "self" and float(x[1]) >= 0.5:
            print("| %s%% | %s |" % (x[1], x[2]))
    print("\n| share | on the stack |")
    print("|---:|---|")
    for x in b:
        if x[0] == "incl":
            print("| %s%% | %s |" % (x[1], x[2]))
PY

cat "$REPORT"
if [ -n "$OUT" ]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
log "done in $(($(date +%s) - SCRIPT_START)) s"
