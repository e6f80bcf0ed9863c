#!/usr/bin/env bash
# dnsgate versus Unbound on loopback, with dnsperf (issue 3, "Instruments").
#
#   benches/compare.sh                    # default run: 1 and 2 threads, 3 rounds x 6 s (~5 min)
#   benches/compare.sh --quick            # 1 thread, 1 round x 3 s (~1 min)
#   benches/compare.sh --soak 600 --out /tmp/compare.md
#
# Everything runs on 127.0.0.1: a local upstream (an Unbound instance answering every name
# authoritatively), dnsgate and Unbound both forwarding to it, and dnsperf. The 1,000,000-
# domain blocklist is generated once and given to both: dnsgate as a `domains` list with a
# block policy (plus 99 other policies that do not match), Unbound as `local-zone: "NAME."
# always_nxdomain` lines; both answer blocked names with NXDOMAIN. Servers are pinned to
# core 0 and dnsperf plus the upstream to core 1 ("1 thread"); with 2 threads the servers
# get two cores (on a 2-core machine they share them with dnsperf). Servers alternate
# within each round and the median of the rounds is reported. See README, "Benchmarks".
#
# Needs root only to apt-get install what is missing (dnsperf, unbound, dnsutils, python3).
# Environment: DNSGATE_BIN (skip the build), CARGO_TARGET_DIR, TMPDIR,
# COMPARE_PORT_BASE (default 15353; five ports from there are used).
set -euo pipefail

ROUNDS=3
DURATION=6
THREADS_OPT=both
SOAK=0
OUT=""
EDNS=0
KEEP=0
RELOAD=1
VERBOSE=(-v)
LIST_SIZE=1000000
CLIENTS=10
OUTSTANDING=100
ARGS_SEEN="$*"

usage() {
    cat <<'EOF'
Usage: benches/compare.sh [options]
  --quick           1 thread only, 1 round, 3 s runs (about 1 minute)
  --rounds N        rounds per scenario (default 3); the median is reported
  --duration S      seconds per dnsperf run (default 6)
  --threads T       1, 2 or both (default both)
  --soak S          after the list scenario, soak dnsgate (1M list, full rate) for S seconds,
                    sampling RSS every 10 s (the issue's target: --soak 600)
  --no-reload       skip the reload-while-serving measurement
  --edns            dnsperf sends EDNS0 (-e)
  --no-p99          run dnsperf without -v (per-query output, the source of p99): a little
                    more client headroom, no p99 column
  --list-size N     blocklist size (default 1000000; the targets are stated for 1M)
  --out FILE        also write the Markdown report to FILE
  --keep            keep the work directory (configs, logs, dnsperf output)
  -h, --help        this text
Environment: DNSGATE_BIN=path (do not build), CARGO_TARGET_DIR, TMPDIR, COMPARE_PORT_BASE.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; DURATION=3; THREADS_OPT=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --threads) THREADS_OPT="$2"; shift ;;
        --soak) SOAK="$2"; shift ;;
        --no-reload) RELOAD=0 ;;
        --edns) EDNS=1 ;;
        --no-p99) VERBOSE=() ;;
        --list-size) LIST_SIZE="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in ROUNDS DURATION SOAK LIST_SIZE; do
    case "${!v}" in ''|*[!0-9]*) echo "compare.sh: $v must be a number" >&2; exit 2 ;; esac
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then
    echo "compare.sh: --rounds and --duration must be >= 1" >&2
    exit 2
fi
case "$THREADS_OPT" in
    1) THREAD_MODES=(1) ;;
    2) THREAD_MODES=(2) ;;
    both) THREAD_MODES=(1 2) ;;
    *) echo "compare.sh: --threads takes 1, 2 or both" >&2; exit 2 ;;
esac

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${need_pkgs[*]}: run as root, or apt-get install them"
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
    # The Debian package starts a system Unbound on port 53; it does not get in our way.
fi
HAVE_CURL=0
command -v curl >/dev/null && HAVE_CURL=1

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
BASE=${COMPARE_PORT_BASE:-15353}
UP_PORT=$BASE
DG_PORT=$((BASE + 1))
UB_PORT=$((BASE + 2))
DG_METRICS=$((BASE + 3))
UB_CTL=$((BASE + 4))
if command -v ss >/dev/null; then
    for p in "$UP_PORT" "$DG_PORT" "$UB_PORT" "$DG_METRICS" "$UB_CTL"; do
        if ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; then
            die "port $p is in use on this machine; set COMPARE_PORT_BASE"
        fi
    done
fi

NCPU=$(nproc)
LAST=$((NCPU - 1))
if [ "$NCPU" -lt 2 ]; then
    log "warning: 1 CPU: server, dnsperf and upstream all share core 0"
fi
cores_for() { # $1 = thread mode; sets SERVER_CORES, CLIENT_CORES, SHARED
    if [ "$1" -eq 1 ]; then
        SERVER_CORES=0
        CLIENT_CORES=$((NCPU >= 2 ? 1 : 0))
        SHARED=$((NCPU >= 2 ? 0 : 1))
    elif [ "$NCPU" -ge 4 ]; then
        SERVER_CORES=0,1
        CLIENT_CORES=2,3
        SHARED=0
    else
        SERVER_CORES=0-$LAST
        CLIENT_CORES=0-$LAST
        SHARED=1
    fi
}
UP_CORE=$((NCPU >= 2 ? 1 : 0))
[ "$NCPU" -ge 4 ] && UP_CORE=3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnsgate-compare.XXXXXX")
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
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system

# --- generated data -------------------------------------------------------------------
log "work directory $WORK; generating the ${LIST_SIZE}-domain blocklist, query files and 100 policies"
gen_start=$(now_ns)
python3 - "$WORK" "$LIST_SIZE" "$UP_PORT" "$DG_PORT" "$DG_METRICS" "$UB_PORT" "$UB_CTL" <<'PY'
import os, random, sys

work, n = sys.argv[1], int(sys.argv[2])
up_port, dg_port, dg_metrics, ub_port, ub_ctl = sys.argv[3:8]
rng = random.Random(20240601)

# Blocked names look like the ad/tracker domains of real lists: two words, a number, a TLD;
# a third of them are a host under such a domain. Allowed names come from disjoint words.
bw1 = ["ad", "ads", "track", "pixel", "beacon", "stat", "click", "banner", "promo", "metric",
       "tag", "popup", "affil", "telemetry", "analytic", "spy", "cpm", "rtb", "bid", "counter"]
bw2 = ["serv", "hub", "cdn", "net", "zone", "flow", "logic", "media", "cloud", "sync",
       "point", "base", "link", "wave", "grid", "box", "lab", "works", "spot", "stream"]
bsub = ["ads", "t", "px", "log", "s", "cdn", "img", "api", "go", "m"]
tlds = ["com", "net", "org", "io", "info", "xyz", "top", "biz", "co", "online", "site", "club"]
aw = ["acme", "north", "river", "stone", "maple", "harbor", "summit", "orchard", "meadow",
      "canyon", "lumen", "atlas", "quartz", "willow", "falcon", "cedar", "ember", "tundra"]
asub = ["www", "api", "mail", "static", "login", "app", "docs", "shop", "news", "img"]

def blocked(i):
    base = "%s%s%d.%s" % (bw1[i % 20], bw2[(i // 20) % 20], i, tlds[(i * 7) % 12])
    return ("%s.%s" % (bsub[(i // 3) % 10], base)) if i % 3 == 0 else base

def allowed(i):
    return "%s.%s%d.%s" % (asub[i % 10], aw[(i // 10) % 18], i, tlds[(i * 5) % 12])

with open(os.path.join(work, "blocklist.txt"), "w") as f:
    f.write("# generated by benches/compare.sh: %d domains\n" % n)
    for i in range(n):
        f.write(blocked(i) + "\n")
with open(os.path.join(work, "unbound-blocklist.conf"), "w") as f:
    for i in range(n):
        f.write('local-zone: "%s." always_nxdomain\n' % blocked(i))

# Cached scenario: 10,000 allowed names, A records.
with open(os.path.join(work, "cached.txt"), "w") as f:
    for i in range(10000):
        f.write(allowed(i) + " A\n")
# List scenario: 8,000 allowed names (not those of the cached file) and 2,000 blocked
# ones, half of them list entries, half a host under an entry; shuffled.
q = [allowed(100000 + i) + " A" for i in range(8000)]
picks = rng.sample(range(n), min(n, 2000))
q += [(blocked(p) if k % 2 == 0 else "www." + blocked(p)) + " A" for k, p in enumerate(picks)]
rng.shuffle(q)
with open(os.path.join(work, "list.txt"), "w") as f:
    f.write("\n".join(q) + "\n")
bset = set(blocked(i) for i in range(n))
for line in q:
    name = line.split()[0]
    labels = name.split(".")
    hit = any(".".join(labels[k:]) in bset for k in range(len(labels)))
    assert hit == (not name.split(".")[1].startswith(tuple(aw))), name

# Five small category lists (names never queried) for the category policies.
os.makedirs(os.path.join(work, "lists"), exist_ok=True)
for c in range(1, 6):
    with open(os.path.join(work, "lists", "cat%d.txt" % c), "w") as f:
        for i in range(200):
            f.write("cat%d-site%d.example\n" % (c, i))

# 99 policies that do not match the benchmark's names, then the blocklist policy: every
# query evaluates all pre-resolution policies, and allowed answers the post-resolution ones.
P = []
def pol(name, action, traffic=None, **kw):
    P.append((name, action, traffic, kw))
for i in range(20):
    pol("Block host %d" % i, "block", 'dns.fqdn == "bad-host-%d.example.org"' % i)
for i in range(15):
    pol("Block domains %d" % i, "block",
        'any(dns.domains[*] in {"bad%da.example" "bad%db.example" "bad%dc.example"})' % (i, i, i))
for i in range(8):
    pol("No ANY or AXFR %d" % i, "block",
        'dns.query_rtype in {"ANY" "AXFR"} and any(dns.domains[*] == "zone%d.example")' % i)
for i in range(10):
    pol("Guest network %d" % i, "block",
        'dns.src_ip in {10.%d.0.0/16 192.168.%d.0/24} and any(dns.domains[*] in {"games.example" "video.example"})' % (i, i))
for i in range(10):
    pol("Allow partner %d" % i, "allow", 'any(dns.domains[*] == "partner%d.example")' % i)
for i in range(10):
    pol("Block numbered ad hosts %d" % i, "block",
        'dns.fqdn matches "^ad[0-9]+\\\\.x%d\\\\."' % i)
for i in range(8):
    pol("User rule %d" % i, "block",
        'any(dns.domains[*] in {"social%d.example" "stream%d.example"})' % (i, i),
        identity='identity.email == "user%d@example.com"' % i)
for i in range(5):
    pol("Category %d" % (i + 1), "block", "any(dns.content_category[*] in {%d})" % (i + 1))
for i in range(2):
    pol("Kids safe search %d" % i, "safesearch", None,
        identity='any(identity.groups.name[*] == "kids%d")' % i)
for i in range(3):
    pol("Intranet override %d" % i, "override", 'dns.fqdn == "intranet%d.corp.example"' % i,
        override_ips=["192.0.2.%d" % (10 + i)])
for i in range(3):
    pol("Corp resolver %d" % i, "resolve", 'any(dns.domains[*] == "corp%d.internal")' % i,
        upstreams=["udp://127.0.0.1:%s" % up_port])
for i in range(3):
    pol("Long name %d" % i, "block", 'dns.fqdn contains "xn--bad%d"' % i)
pol("No rebinding", "block",
    'any(dns.resolved_ips[*] in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 127.0.0.0/8})'
    ' and not any(dns.domains[*] == "lan.example")')
pol("CNAME cloaking", "block", 'any(dns.response.cname[*] in {"tracker.cloak.example"})')
assert len(P) == 99, len(P)

def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
def lit(s):
    assert "'" not in s
    return "'" + s + "'"
with open(os.path.join(work, "policies.toml"), "w") as f:
    f.write("# generated by benches/compare.sh\n")
    for c in range(1, 6):
        f.write('[[lists]]\nname = "cat%d"\npath = "lists/cat%d.txt"\n\n' % (c, c))
        f.write('[[categories]]\nid = %d\nname = "Category %d"\nlists = ["cat%d"]\n\n' % (c, c, c))
    f.write('[[lists]]\nname = "blocklist"\npath = "blocklist.txt"\nformat = "domains"\n\n')
    for k, (name, action, traffic, kw) in enumerate(P):
        f.write("[[policies]]\nname = %s\nprecedence = %d\naction = %s\n"
                % (toml_str(name), k + 1, toml_str(action)))
        if traffic is not None:
            f.write("traffic = %s\n" % lit(traffic))
        if "identity" in kw:
            f.write("identity = %s\n" % lit(kw["identity"]))
        for key in ("override_ips", "upstreams"):
            if key in kw:
                f.write("%s = [%s]\n" % (key, ", ".join(toml_str(v) for v in kw[key])))
        f.write("\n")
    f.write('[[policies]]\nname = "Blocklist"\nprecedence = 1000\naction = "block"\n'
            "traffic = 'any(dns.domains[*] in $blocklist)'\n"
            'block_reason = "On the blocklist"\n')

def dnsgate_conf(path, with_list):
    with open(path, "w") as f:
        f.write("# generated by benches/compare.sh\n")
        if with_list:
            f.write('include = ["policies.toml"]\n')
        f.write('\n[server]\nlisten = ["127.0.0.1:%s"]\nallow_networks = ["127.0.0.0/8"]\n'
                '\n[upstream]\nmode = "forward"\nservers = ["udp://127.0.0.1:%s"]\ntimeout_ms = 2000\n'
                '\n[cache]\nsize = 1000000\n'
                '\n[metrics]\nlisten = "127.0.0.1:%s"\n'
                '\n[block]\nmode = "nxdomain"\n' % (dg_port, up_port, dg_metrics))
dnsgate_conf(os.path.join(work, "dg-empty.toml"), False)
dnsgate_conf(os.path.join(work, "dg-list.toml"), True)

common = """server:
  interface: 127.0.0.1
  port: %s
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
"""
def unbound_conf(path, threads, with_list):
    with open(path, "w") as f:
        f.write(common % (ub_port, work))
        f.write("""  num-threads: %d
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
""" % threads)
        if with_list:
            f.write('  include: "%s/unbound-blocklist.conf"\n' % work)
        f.write('remote-control:\n  control-enable: yes\n  control-interface: 127.0.0.1\n'
                '  control-port: %s\n  control-use-cert: no\n' % ub_ctl)
        f.write('forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@%s\n' % up_port)
for t in (1, 2):
    unbound_conf(os.path.join(work, "ub-empty-%d.conf" % t), t, False)
    unbound_conf(os.path.join(work, "ub-list-%d.conf" % t), t, True)

# The local upstream: every name is answered authoritatively, A 192.0.2.1, AAAA 2001:db8::1.
with open(os.path.join(work, "upstream.conf"), "w") as f:
    f.write(common % (up_port, work))
    f.write("""  num-threads: 1
  verbosity: 0
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
  local-data: ". 3600 IN AAAA 2001:db8::1"
remote-control:
  control-enable: no
""")
PY
log "generated in $(ms_since "$gen_start") ms"

# dnsgate's worker count: a [server] threads key if this build has one, else the
# TOKIO_WORKER_THREADS environment variable (tokio's own), and the CPU affinity.
THREADS_KEY=0
sed '/^\[server\]/a threads = 1' "$WORK/dg-empty.toml" >"$WORK/probe-threads.toml"
if "$BIN" check -c "$WORK/probe-threads.toml" >/dev/null 2>&1; then
    THREADS_KEY=1
fi
"$BIN" check -c "$WORK/dg-empty.toml" >/dev/null || die "dnsgate rejects the generated empty configuration"
"$BIN" check -c "$WORK/dg-list.toml" >&2 || die "dnsgate rejects the generated list configuration"
for t in 1 2; do
    for v in empty list; do
        if [ "$THREADS_KEY" -eq 1 ]; then
            sed "/^\[server\]/a threads = $t" "$WORK/dg-$v.toml" >"$WORK/dg-$v-$t.toml"
        else
            cp "$WORK/dg-$v.toml" "$WORK/dg-$v-$t.toml"
        fi
    done
done
unbound-checkconf "$WORK/ub-empty-1.conf" >/dev/null || die "unbound rejects its configuration"
unbound-checkconf "$WORK/upstream.conf" >/dev/null || die "unbound rejects the upstream configuration"

# --- servers --------------------------------------------------------------------------
# probe PORT PID: waits until the server answers a query (a query sent before it reads its
# socket waits in the socket buffer, so the time is exact); fails if the process died.
wait_ready() {
    local port=$1 pid=$2 deadline=$(($(date +%s) + 120)) out
    while :; do
        kill -0 "$pid" 2>/dev/null || return 1
        out=$(dig +tries=1 +time=30 @127.0.0.1 -p "$port" load-probe.bench A 2>/dev/null || true)
        case "$out" in *"status: "*) return 0 ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.005
    done
}

LOADS=$WORK/loads.tsv     # threads server variant load_ms rss_kb
RESULTS=$WORK/results.tsv # scenario threads server round qps mean_ms p99_ms lost sent; CPU %: server upstream dnsperf other
RELOADS=$WORK/reloads.tsv # threads server reload_ms lost sent qps rss_before rss_after max_ms
SOAKS=$WORK/soak.tsv      # elapsed_s rss_kb
AFTER=$WORK/after.tsv     # threads server variant rss_kb hwm_kb (after the benchmark load)
: >"$LOADS"; : >"$RESULTS"; : >"$RELOADS"; : >"$SOAKS"; : >"$AFTER"

start_upstream() {
    taskset -c "$UP_CORE" unbound -d -c "$WORK/upstream.conf" 2>"$WORK/upstream.log" &
    UP_PID=$!
    PIDS+=("$UP_PID")
    wait_ready "$UP_PORT" "$UP_PID" || { cat "$WORK/upstream.log" >&2; die "the upstream did not start"; }
}

# start_server dnsgate|unbound empty|list THREADS: sets SERVER_PID, records load time and RSS
start_server() {
    local srv=$1 variant=$2 t=$3 t0 port logf ms rss
    logf=$WORK/$srv-$variant-$t.log
    t0=$(now_ns)
    if [ "$srv" = dnsgate ]; then
        port=$DG_PORT
        TOKIO_WORKER_THREADS=$t taskset -c "$SERVER_CORES" "$BIN" run -c "$WORK/dg-$variant-$t.toml" 2>"$logf" &
    else
        port=$UB_PORT
        taskset -c "$SERVER_CORES" unbound -d -c "$WORK/ub-$variant-$t.conf" 2>"$logf" &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! wait_ready "$port" "$SERVER_PID"; then
        tail -20 "$logf" >&2
        die "$srv ($variant, $t threads) did not start"
    fi
    ms=$(ms_since "$t0")
    rss=$(rss_kb "$SERVER_PID")
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$srv" "$variant" "$ms" "$rss" >>"$LOADS"
    log "$srv ($variant, $t thread(s)) answering after ${ms} ms, RSS $((rss / 1024)) MiB"
}

# children_cpu: CHILD_S = user + system seconds of this shell's waited-for children (so
# dnsperf's, once it has exited). `times` must run in this shell, not in $(...).
children_cpu() {
    local cu cs
    times >"$WORK/times.txt"
    { read -r _ _; read -r cu cs; } <"$WORK/times.txt"
    CHILD_S=$(awk -v u="$cu" -v s="$cs" 'function sec(x, a) { split(x, a, /[ms]/); return a[1] * 60 + a[2] }
        BEGIN { printf "%.3f", sec(u) + sec(s) }')
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; } # all cores

# run_perf NAME PORT FILE SECONDS [dnsperf options]: runs dnsperf on the client cores, leaves
# "qps mean_ms p99_ms lost sent max_ms" in PERF, and in CPU the CPU time used during the run,
# in percent of one core: "server dnsperf upstream other" (other: everything else on the
# machine — another build, say — from /proc/stat).
run_perf() {
    local name=$1 port=$2 file=$3 secs=$4 out spid c0 u0 b0 p0 t0 wall
    shift 4
    if [ "$port" = "$DG_PORT" ]; then spid=$DG_PID; else spid=$UB_PID; fi
    c0=$(cpu_ticks "$spid"); u0=$(cpu_ticks "$UP_PID"); b0=$(busy_ticks)
    children_cpu; p0=$CHILD_S
    t0=$(now_ns)
    out=$WORK/perf-$name.out
    local edns=()
    [ "$EDNS" -eq 1 ] && edns=(-e)
    timeout $((secs + 60)) taskset -c "$CLIENT_CORES" dnsperf -s 127.0.0.1 -p "$port" -d "$file" \
        -l "$secs" -c "$CLIENTS" -q "$OUTSTANDING" -T "$PERF_THREADS" -t 5 "${edns[@]}" "${VERBOSE[@]}" "$@" \
        >"$out" 2>"$WORK/perf-$name.err" || { cat "$WORK/perf-$name.err" >&2; die "dnsperf failed ($name)"; }
    wall=$(($(now_ns) - t0))
    children_cpu
    CPU=$(awk -v s0="$c0" -v s1="$(cpu_ticks "$spid")" -v u0="$u0" -v u1="$(cpu_ticks "$UP_PID")" \
        -v b0="$b0" -v b1="$(busy_ticks)" -v p0="$p0" -v p1="$CHILD_S" -v w="$wall" -v hz="$CLK_TCK" 'BEGIN {
            w /= 1e9; s = (s1 - s0) / hz; u = (u1 - u0) / hz; p = p1 - p0; o = (b1 - b0) / hz - s - u - p
            if (o < 0) o = 0
            printf "%.0f %.0f %.0f %.0f", s / w * 100, p / w * 100, u / w * 100, o / w * 100 }')
    PERF=$(parse_perf "$out")
    if [ "$KEEP" -eq 0 ]; then
        grep -v '^> ' "$out" >"$out.stats" || true
        rm -f "$out"
    fi
}

parse_perf() {
    python3 - "$1" <<'PY'
import math, re, sys
lat, stats = [], {}
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        if line.startswith("> "):
            parts = line.split()
            if len(parts) >= 5 and parts[1] != "T":
                try:
                    lat.append(float(parts[-1]))
                except ValueError:
                    pass
            continue
        m = re.match(r"\s*(Queries sent|Queries lost|Queries per second|Average Latency \(s\)):\s+([0-9.]+)", line)
        if m:
            stats[m.group(1)] = float(m.group(2))
if "Queries per second" not in stats:
    sys.exit("dnsperf printed no statistics")
lat.sort()
p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)] * 1000 if lat else float("nan")
mx = lat[-1] * 1000 if lat else float("nan")
print("%.0f %.4f %.4f %d %d %.2f" % (stats["Queries per second"], stats["Average Latency (s)"] * 1000,
                                    p99, stats.get("Queries lost", 0), stats.get("Queries sent", 0), mx))
PY
}

record() { # scenario threads server round
    local qps mean p99 lost sent _mx scpu pcpu ucpu ocpu
    read -r qps mean p99 lost sent _mx <<<"$PERF"
    read -r scpu pcpu ucpu ocpu <<<"$CPU"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$qps" "$mean" "$p99" \
        "$lost" "$sent" "$scpu" "$ucpu" "$pcpu" "$ocpu" >>"$RESULTS"
    log "  $1, $2 thread(s), $3, round $4: $qps qps, mean $mean ms, p99 $p99 ms, lost $lost of $sent; CPU %: server $scpu, dnsperf $pcpu, upstream $ucpu, other $ocpu"
}

metric() { # NAME: dnsgate's counter (sum over labels), or empty
    [ "$HAVE_CURL" -eq 1 ] || return 0
    curl -fsS --max-time 2 "http://127.0.0.1:$DG_METRICS/metrics" 2>/dev/null |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d", s}' || true
}

port_of() { if [ "$1" = dnsgate ]; then echo "$DG_PORT"; else echo "$UB_PORT"; fi; }

warm() { # server file
    run_perf "warm-$1" "$(port_of "$1")" "$2" 60 -n 1
    local lost
    lost=$(echo "$PERF" | awk '{print $4}')
    [ "$lost" -eq 0 ] || log "warning: $lost queries lost while warming $1"
}

# rounds SCENARIO THREADS FILE-OR-"miss": the servers alternate within each round
rounds() {
    local scen=$1 t=$2 file=$3 r srv f h0 m0
    for r in $(seq 1 "$ROUNDS"); do
        for srv in dnsgate unbound; do
            f=$file
            if [ "$file" = miss ]; then
                # Names never asked before: a label unique to this run, so every query is
                # a cache miss forwarded upstream (the file is run through at most once).
                f=$WORK/miss.txt
                awk -v n=$((DURATION * 150000)) -v tag="r$r-t$t-${srv:0:2}" \
                    'BEGIN { for (i = 0; i < n; i++) printf "q%d.%s.miss.bench A\n", i, tag }' >"$f"
            fi
            h0=""; m0=""
            if [ "$srv" = dnsgate ]; then h0=$(metric dnsgate_cache_hits_total); m0=$(metric dnsgate_cache_misses_total); fi
            if [ "$file" = miss ]; then
                run_perf "$scen-$t-$srv-$r" "$(port_of "$srv")" "$f" "$DURATION" -n 1
            else
                run_perf "$scen-$t-$srv-$r" "$(port_of "$srv")" "$f" "$DURATION"
            fi
            record "$scen" "$t" "$srv" "$r"
            if [ -n "$h0" ]; then
                log "    dnsgate cache: +$(($(metric dnsgate_cache_hits_total) - h0)) hits, +$(($(metric dnsgate_cache_misses_total) - m0)) misses"
            fi
        done
    done
    rm -f "$WORK/miss.txt"
}

after_rss() { # threads server variant pid
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(rss_kb "$4")" "$(hwm_kb "$4")" >>"$AFTER"
}

# reload_test THREADS SERVER PID: dnsperf at full rate on the list file; 2 s in, dnsgate gets
# SIGHUP / Unbound `unbound-control reload_keep_cache`; the time runs until the server logs
# that the new configuration serves; dnsperf stops 2 s later (SIGINT) and counts lost queries.
reload_test() {
    local t=$1 srv=$2 pid=$3 logf pat n0 t0 ms=-1 perfpid edns=() rss0 out
    logf=$WORK/$srv-list-$t.log
    if [ "$srv" = dnsgate ]; then pat="configuration reloaded"; else pat="start of service"; fi
    [ "$EDNS" -eq 1 ] && edns=(-e)
    out=$WORK/perf-reload-$srv-$t.out
    taskset -c "$CLIENT_CORES" dnsperf -s 127.0.0.1 -p "$(port_of "$srv")" -d "$WORK/list.txt" -l 90 \
        -c "$CLIENTS" -q "$OUTSTANDING" -T "$PERF_THREADS" -t 5 "${edns[@]}" "${VERBOSE[@]}" >"$out" 2>"$out.err" &
    perfpid=$!
    PIDS+=("$perfpid")
    sleep 2
    rss0=$(rss_kb "$pid")
    n0=$(grep -c "$pat" "$logf" || true)
    t0=$(now_ns)
    if [ "$srv" = dnsgate ]; then
        kill -HUP "$pid"
    else
        if ! unbound-control -c "$WORK/ub-list-$t.conf" reload_keep_cache >/dev/null 2>>"$logf"; then
            log "warning: unbound-control reload_keep_cache failed; plain reload (which empties the cache)"
            unbound-control -c "$WORK/ub-list-$t.conf" reload >/dev/null 2>>"$logf" || true
        fi
    fi
    while [ $(($(now_ns) - t0)) -lt 60000000000 ]; do
        if [ "$(grep -c "$pat" "$logf" || true)" -gt "$n0" ]; then
            ms=$(ms_since "$t0")
            break
        fi
        if [ "$srv" = dnsgate ] && grep -q "reload rejected" "$logf"; then
            log "warning: dnsgate rejected the reload"
            break
        fi
        sleep 0.01
    done
    sleep 2
    local rss1
    rss1=$(rss_kb "$pid")
    kill -INT "$perfpid" 2>/dev/null || true
    wait "$perfpid" || true
    forget_pid "$perfpid"
    PERF=$(parse_perf "$out")
    [ "$KEEP" -eq 1 ] || rm -f "$out"
    local qps mean p99 lost sent mx
    read -r qps mean p99 lost sent mx <<<"$PERF"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$srv" "$ms" "$lost" "$sent" "$qps" "$rss0" "$rss1" "$mx" >>"$RELOADS"
    log "  reload of $srv ($t thread(s)) under load: ${ms} ms, lost $lost of $sent, slowest answer $mx ms, RSS $((rss0 / 1024)) -> $((rss1 / 1024)) MiB"
}

soak() { # THREADS PID
    local t=$1 pid=$2 perfpid start el edns=()
    [ "$EDNS" -eq 1 ] && edns=(-e)
    log "soak: dnsgate ($LIST_SIZE-domain list, $t thread(s)) at full rate for $SOAK s, RSS every 10 s"
    taskset -c "$CLIENT_CORES" dnsperf -s 127.0.0.1 -p "$DG_PORT" -d "$WORK/list.txt" -l "$SOAK" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T "$PERF_THREADS" -t 5 "${edns[@]}" >"$WORK/perf-soak.out" 2>&1 &
    perfpid=$!
    PIDS+=("$perfpid")
    start=$(date +%s)
    while kill -0 "$perfpid" 2>/dev/null; do
        el=$(($(date +%s) - start))
        printf '%s\t%s\n' "$el" "$(rss_kb "$pid")" >>"$SOAKS"
        for _ in $(seq 1 100); do
            kill -0 "$perfpid" 2>/dev/null || break
            sleep 0.1
        done
    done
    wait "$perfpid" || true
    forget_pid "$perfpid"
    printf '%s\t%s\n' "$(($(date +%s) - start))" "$(rss_kb "$pid")" >>"$SOAKS"
    PERF=$(parse_perf "$WORK/perf-soak.out")
    echo "$PERF" >"$WORK/soak-perf.txt"
    log "  soak: $(awk '{printf "%s qps, lost %s of %s", $1, $4, $5}' <<<"$PERF")"
}

# --- the run --------------------------------------------------------------------------
per_mode=$((ROUNDS * 2 * 3 * DURATION + RELOAD * 2 * 6 + 15))
log "about $(( ${#THREAD_MODES[@]} * per_mode + SOAK + 20 )) s of measurement (plus Unbound's list loads) from here"
start_upstream
for t in "${THREAD_MODES[@]}"; do
    cores_for "$t"
    PERF_THREADS=$t
    log "== $t thread(s): servers on cores $SERVER_CORES, dnsperf on $CLIENT_CORES, upstream on $UP_CORE$([ "$SHARED" -eq 1 ] && echo ' (cores shared)')"

    start_server dnsgate empty "$t"; DG_PID=$SERVER_PID
    start_server unbound empty "$t"; UB_PID=$SERVER_PID
    warm dnsgate "$WORK/cached.txt"
    warm unbound "$WORK/cached.txt"
    log "scenario cached (no policies)"
    rounds cached "$t" "$WORK/cached.txt"
    log "scenario miss (every query forwarded to the local upstream, no policies)"
    rounds miss "$t" miss
    after_rss "$t" dnsgate empty "$DG_PID"; after_rss "$t" unbound empty "$UB_PID"
    stop_pid "$DG_PID"; stop_pid "$UB_PID"

    start_server dnsgate list "$t"; DG_PID=$SERVER_PID
    start_server unbound list "$t"; UB_PID=$SERVER_PID
    warm dnsgate "$WORK/list.txt"
    warm unbound "$WORK/list.txt"
    log "scenario list ($LIST_SIZE-domain blocklist, 100 policies; 80% allowed, 20% blocked)"
    rounds list "$t" "$WORK/list.txt"
    after_rss "$t" dnsgate list "$DG_PID"; after_rss "$t" unbound list "$UB_PID"
    if [ "$SOAK" -gt 0 ] && [ "$t" = "${THREAD_MODES[0]}" ]; then
        soak "$t" "$DG_PID"
    fi
    if [ "$RELOAD" -eq 1 ]; then
        reload_test "$t" dnsgate "$DG_PID"
        reload_test "$t" unbound "$UB_PID"
    fi
    stop_pid "$DG_PID"; stop_pid "$UB_PID"
done

# --- report ---------------------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then rev="$rev (modified)"; fi
{
    echo "cpu=$cpu"
    echo "nproc=$NCPU"
    echo "kernel=$(uname -r)"
    echo "loadavg=$LOADAVG_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "dnsperf=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2; exit}')"
    echo "unbound=$(unbound -V 2>/dev/null | awk '/^Version/ {print $2; exit}')"
    echo "dnsgate=$rev"
    echo "command=benches/compare.sh${ARGS_SEEN:+ $ARGS_SEEN}"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "list_size=$LIST_SIZE"
    echo "clients=$CLIENTS"
    echo "outstanding=$OUTSTANDING"
    echo "edns=$EDNS"
    echo "p99=${#VERBOSE[@]}"
    echo "threads_key=$THREADS_KEY"
    echo "soak=$SOAK"
    echo "elapsed=$(($(date +%s) - SCRIPT_START))"
    for t in "${THREAD_MODES[@]}"; do
        cores_for "$t"
        echo "cores_$t=server $SERVER_CORES, dnsperf $CLIENT_CORES, upstream $UP_CORE$([ "$SHARED" -eq 1 ] && echo ' (shared)')"
    done
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
def f(x, d=2):
    return "n/a" if x is None or x != x else ("%.*f" % (d, x))
def ratio(a, b):
    return a / b if b and a == a and b == b else float("nan")

print("## dnsgate vs Unbound (benches/compare.sh)\n")
print("- Machine: %s, %s CPUs, Linux %s; load average %s" % (meta["cpu"], meta["nproc"], meta["kernel"], meta["loadavg"]))
print("- dnsgate %s, Unbound %s, dnsperf %s; %s UTC; run took %s s"
      % (meta["dnsgate"], meta["unbound"], meta["dnsperf"], meta["date"], meta["elapsed"]))
print("- Command: `%s`" % meta["command"])
print("- Pinning: " + "; ".join("%s thread(s): %s" % (k[6:], v) for k, v in meta.items() if k.startswith("cores_")))
print("- dnsperf: UDP, %s clients, %s outstanding, 5 s timeout, one dnsperf thread per server thread%s%s; %s rounds x %s s, servers alternating; median of the rounds"
      % (meta["clients"], meta["outstanding"], ", EDNS0" if meta["edns"] == "1" else ", no EDNS",
         ", -v (p99 from every answer's latency)" if meta["p99"] != "0" else ", no -v (no p99)", meta["rounds"], meta["duration"]))
print("- dnsgate workers: %s" % ("`[server] threads`" if meta["threads_key"] == "1" else "TOKIO_WORKER_THREADS and the CPU affinity"))
print("- Scenarios: **cached** = 10,000 names asked over and over after a warm-up, no policies; "
      "**list** = %s-domain blocklist (dnsgate: a `domains` list, 99 non-matching policies and a block policy; "
      "Unbound: `local-zone ... always_nxdomain`), 80%% allowed cached names, 20%% blocked (NXDOMAIN from both); "
      "**miss** = names never asked before, forwarded to the local upstream, no policies.\n" % format(int(meta["list_size"]), ","))

res = rows("results.tsv")
keys = []
for r in res:
    k = (r[0], r[1])
    if k not in keys:
        keys.append(k)
order = {"cached": 0, "list": 1, "miss": 2}
keys.sort(key=lambda k: (order.get(k[0], 9), k[1]))
def agg(scen, t, srv):
    rs = [r for r in res if r[0] == scen and r[1] == t and r[2] == srv]
    return {"qps": med([float(r[4]) for r in rs]), "mean": med([float(r[5]) for r in rs]),
            "p99": med([float(r[6]) for r in rs]), "lost": sum(int(r[7]) for r in rs),
            "sent": sum(int(r[8]) for r in rs), "all": [float(r[4]) for r in rs],
            "cpu": [med([float(r[k]) for r in rs]) for k in (9, 11, 10, 12)],
            "eff": med([float(r[4]) * 100 / float(r[9]) for r in rs if float(r[9]) > 0])}
print("### Throughput and latency (median of the rounds)\n")
print("| scenario | threads | server | QPS | mean ms | p99 ms | lost / sent | CPU % server / dnsperf / upstream / other | QPS per server core | QPS per round |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
for scen, t in keys:
    for srv in ("dnsgate", "unbound"):
        a = agg(scen, t, srv)
        print("| %s | %s | %s | %s | %s | %s | %d / %d | %s | %s | %s |" % (scen, t, srv, format(round(a["qps"]), ","),
              f(a["mean"], 3), f(a["p99"], 3), a["lost"], a["sent"], " / ".join(f(c, 0) for c in a["cpu"]),
              format(round(a["eff"]), ",") if a["eff"] == a["eff"] else "n/a",
              " ".join(format(round(x), ",") for x in a["all"])))
print("\nCPU: user + system time over the dnsperf run in % of one core, for the server, dnsperf, the upstream, and "
      "everything else on the machine. A server below ~95% per thread was not the bottleneck: dnsperf near 100% "
      "(per dnsperf thread) means the client set the pace; a large \"other\" means the machine was busy and the run is noisy. "
      "QPS per server core = QPS / server CPU: the server's cost per query, comparable even when it was not saturated.")
print("\n### dnsgate / Unbound\n")
print("| scenario | threads | QPS ratio | QPS per server core ratio | mean latency ratio | p99 ratio |")
print("|---|---|---:|---:|---:|---:|")
ratios = {}
for scen, t in keys:
    d, u = agg(scen, t, "dnsgate"), agg(scen, t, "unbound")
    ratios[(scen, t)] = ratio(d["qps"], u["qps"])
    print("| %s | %s | %s | %s | %s | %s |" % (scen, t, f(ratios[(scen, t)]), f(ratio(d["eff"], u["eff"])),
                                             f(ratio(d["mean"], u["mean"])), f(ratio(d["p99"], u["p99"]))))

loads = rows("loads.tsv")
after = rows("after.tsv")
reloads = rows("reloads.tsv")
mib = lambda kb: float(kb) / 1024
print("\n### Load, memory, reload\n")
print("| threads | server | load empty s | RSS empty MiB | load list s | RSS list MiB | extra MiB | RSS after list bench MiB | reload s | lost in reload / sent | slowest answer in reload ms | RSS before -> after reload MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
summary = {}
for t in sorted(set(r[0] for r in loads)):
    for srv in ("dnsgate", "unbound"):
        le = [r for r in loads if r[0] == t and r[1] == srv and r[2] == "empty"]
        ll = [r for r in loads if r[0] == t and r[1] == srv and r[2] == "list"]
        al = [r for r in after if r[0] == t and r[1] == srv and r[2] == "list"]
        rl = [r for r in reloads if r[0] == t and r[1] == srv]
        if not le or not ll:
            continue
        extra = mib(ll[0][4]) - mib(le[0][4])
        rel = (float(rl[0][2]) / 1000 if float(rl[0][2]) >= 0 else float("nan")) if rl else None
        summary[(t, srv)] = dict(load=float(ll[0][3]) / 1000, extra=extra, reload=rel,
                                 lost=int(rl[0][3]) if rl else None)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t, srv, f(float(le[0][3]) / 1000), f(mib(le[0][4]), 1), f(float(ll[0][3]) / 1000), f(mib(ll[0][4]), 1),
            f(extra, 1), f(mib(al[0][3]), 1) if al else "n/a",
            f(rel) if rl else "n/a", ("%s / %s" % (rl[0][3], rl[0][4])) if rl else "n/a", f(float(rl[0][8]), 0) if rl else "n/a",
            ("%s -> %s" % (f(mib(rl[0][6]), 1), f(mib(rl[0][7]), 1))) if rl else "n/a"))
print("\nLoad time: process start until it answers a query. RSS: VmRSS when it first answers (\"empty\": no list, no policies). "
      "Reload: dnsgate SIGHUP until it logs \"configuration reloaded\"; Unbound `unbound-control reload_keep_cache` "
      "until it logs \"start of service\"; both under full dnsperf load, whose lost queries (5 s timeout) are counted.")

soak = rows("soak.tsv")
if soak:
    r = [mib(x[1]) for x in soak]
    perf = open(os.path.join(work, "soak-perf.txt")).read().split()
    print("\n### Soak (dnsgate, %s-domain list and 100 policies, list queries at full rate, %s s, after the list rounds)\n"
          % (format(int(meta["list_size"]), ","), soak[-1][0]))
    print("| RSS start MiB | peak MiB | end MiB | QPS | lost / sent |")
    print("|---:|---:|---:|---:|---:|")
    print("| %s | %s | %s | %s | %s / %s |" % (f(r[0], 1), f(max(r), 1), f(r[-1], 1), format(int(perf[0]), ","), perf[3], perf[4]))
    print("\nRSS every 10 s (MiB): " + " ".join(f(x, 1) for x in r))

print("\n### Targets (issue 3)\n")
def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")
for (scen, t), q in sorted(ratios.items()):
    if scen == "list":
        print("- %s thread(s): cached QPS with the list and 100 policies >= 1.0 x Unbound's: %s (%s)" % (t, f(q), verdict(q == q and q >= 1.0)))
for (t, srv), s in sorted(summary.items()):
    if srv != "dnsgate":
        continue
    print("- %s thread(s): %s list domains%s, extra RSS <= 64 MiB: %s MiB (%s); load <= 1.5 s: %s s (%s)"
          % (t, format(int(meta["list_size"]), ","), "" if meta["list_size"] == "1000000" else " (the targets are for 1,000,000)",
             f(s["extra"], 1), verdict(s["extra"] <= 64), f(s["load"]), verdict(s["load"] <= 1.5)), end="")
    if s["reload"] is not None:
        ok = s["reload"] == s["reload"] and s["reload"] <= 1.5
        print("; reload <= 1.5 s: %s s (%s); lost during reload: %s (%s)" % (f(s["reload"]), verdict(ok), s["lost"], verdict(s["lost"] == 0)))
    else:
        print()
if soak:
    r = [mib(x[1]) for x in soak]
    print("- memory flat over the soak: start %s, peak %s, end %s MiB" % (f(r[0], 1), f(max(r), 1), f(r[-1], 1)))
PY

cat "$REPORT"
if [ -n "$OUT" ]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
log "done in $(($(date +%s) - SCRIPT_START)) s"
