#!/usr/bin/env bash
# Cold recursion: dnsgate recursive versus Unbound recursive over one loopback hierarchy.
#
#   benches/recursion.sh                  # default run: 3 rounds (~1 min)
#   benches/recursion.sh --quick          # 1 round (~25 s)
#   benches/recursion.sh --rounds 5 --unbound-no-qmin --out /tmp/recursion.md
#   benches/recursion.sh --dnssec --rounds 5   # the same hierarchy signed, both validating
#
# The issue: "40,000 questions never asked before (10,000 names x A, AAAA, MX, TXT) through
# dnsgate recursive vs Unbound recursive over the same loopback hierarchy, both pinned to
# one core, restarted per round. Target >= 1.0x Unbound's QPS."
#
# The hierarchy is served by NSD, one process per address, each on port 53 of its own
# loopback address (referrals carry no port):
#
#   127.53.0.1            a.root-servers.bench.   `.`      (the only address in the hints)
#   127.53.1.1, .1.2      ns1.bench., ns2.bench.  `bench.` (glue in `.`)
#   127.53.2.1 - .2.4     ns1/ns2.zN.bench.       100 zones z0.bench. ... z99.bench., each on
#                                                  two of the four (in-bailiwick glue in `bench.`)
#
# Each leaf zone holds 100 names (n0.zN.bench. ... n99.zN.bench.) with A, AAAA, MX and TXT
# records; the query file is the 40,000 (name, type) pairs in shuffled order, each asked once
# (dnsperf -n 1). Per round each resolver is started fresh (empty caches) on core 0, asked
# the 40,000 questions ("cold"), then the same file again ("warm", all cached; 3 passes),
# and stopped; the resolvers alternate which goes first. NSD and dnsperf share core 1;
# NSD's CPU is measured to show it was not the bottleneck, and the queries NSD received
# (its BIND8 statistics, dumped with SIGUSR1) give the outgoing queries per question.
#
# dnsgate: [upstream] mode = "recursive", root_hints = the loopback root, dnssec = "off",
# [cache] prefetch = false. Unbound: module-config "iterator", the same root hints,
# do-not-query-localhost: no, qname-minimisation: yes (dnsgate does relaxed QNAME
# minimisation too), num-threads: 1, caches big enough to hold all 40,000 answers, otherwise
# Unbound's defaults (`bench.` is none of its default local zones, so no nodefault is
# needed). Neither can reach the Internet: the only root either knows is 127.53.0.1.
# --unbound-no-qmin adds a third resolver, Unbound with qname-minimisation: no: Unbound 1.17
# minimises down to the last label, so a name's first question costs it an extra A query.
#
# --dnssec: the same hierarchy signed and both resolvers validating. Every zone (`.`,
# `bench.`, the 100 leaves) gets its own ECDSAP256SHA256 (algorithm 13) KSK and ZSK
# (ldns-keygen) and is signed with ldns-signzone: NSEC (not NSEC3) everywhere, signatures
# valid from now - 1 h to now + 30 days, the KSK signing only the DNSKEY RRset. The leaves
# are signed first, their DS (SHA-256, ldns-key2ds) added to `bench.`, which is then signed,
# its DS added to `.`, which is signed last; the root KSK's DS is the trust anchor file both
# resolvers get. dnsgate: dnssec = "validate", trust_anchor = that file. Unbound:
# module-config "validator iterator", trust-anchor-file (a static anchor: no RFC 5011
# probing, which only auto-trust-anchor-file does), trust-anchor-signaling: no (no RFC 8145
# key-tag queries), val-log-level: 1. dnsperf still asks without EDNS; after each cold pass
# the sample is asked again with DO (dig +dnssec) and every answer must be NOERROR with the
# AD bit, and the cold pass must be 100% NOERROR: otherwise the run stops (exit 4) and
# publishes nothing.
#
# Needs root (NSD binds port 53 of 127.53.x.y; apt-get installs nsd, unbound, dnsperf,
# dnsutils, python3, and ldnsutils for --dnssec, if missing; the nsd package's own service
# is disabled, not started).
# Environment: DNSGATE_BIN (skip the build), CARGO_TARGET_DIR, TMPDIR,
# RECURSION_PORT_BASE (default 15363; three ports from there on 127.0.0.1 are used).
set -euo pipefail

ROUNDS=3
LIMIT=120
OUT=""
KEEP=0
WARM=1
WARM_PASSES=3
DNSSEC=0
NOQMIN=0
CLIENTS=10
OUTSTANDING=100
TIMEOUT=5
NAMES_PER_ZONE=100
ZONES=100
ARGS_SEEN="$*"

usage() {
    cat <<'EOF'
Usage: benches/recursion.sh [options]
  --quick           1 round (about 25 s)
  --rounds N        rounds (default 3); each resolver restarted cold per round; the median
                    of the rounds is reported
  --outstanding Q   dnsperf -q: queries outstanding (default 100)
  --clients C       dnsperf -c: client sockets (default 10)
  --limit S         dnsperf -l: time limit of one pass in seconds (default 120)
  --no-warm         skip the warm pass (the same questions again, all cached)
  --unbound-no-qmin also run Unbound with qname-minimisation: no (a reference: Unbound
                    1.17 minimises the last label too, one extra A query per new name)
  --dnssec          the same hierarchy signed (ECDSAP256SHA256, NSEC), both resolvers
                    validating from a trust anchor on the loopback root
  --out FILE        also write the Markdown report to FILE
  --keep            keep the work directory (zones, configs, logs, dnsperf output)
  -h, --help        this text
Environment: DNSGATE_BIN=path (do not build), CARGO_TARGET_DIR, TMPDIR, RECURSION_PORT_BASE.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --outstanding) OUTSTANDING="$2"; shift ;;
        --clients) CLIENTS="$2"; shift ;;
        --limit) LIMIT="$2"; shift ;;
        --no-warm) WARM=0 ;;
        --unbound-no-qmin) NOQMIN=1 ;;
        --dnssec) DNSSEC=1 ;;
        --out) OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "recursion.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in ROUNDS OUTSTANDING CLIENTS LIMIT; do
    case "${!v}" in ''|*[!0-9]*) echo "recursion.sh: $v must be a number" >&2; exit 2 ;; esac
    [ "${!v}" -ge 1 ] || { echo "recursion.sh: $v must be >= 1" >&2; exit 2; }
done

log() { printf '[recursion %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCRIPT_START=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- tools ----------------------------------------------------------------------------
need_pkgs=()
command -v nsd >/dev/null || need_pkgs+=(nsd)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v unbound >/dev/null || need_pkgs+=(unbound)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if [ "$DNSSEC" -eq 1 ]; then
    for t in ldns-keygen ldns-signzone ldns-key2ds; do
        command -v "$t" >/dev/null || { need_pkgs+=(ldnsutils); break; }
    done
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${need_pkgs[*]}: run as root, or apt-get install them"
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
    # The nsd package enables (and, where allowed, starts) a system NSD on port 53 of every
    # address, which would take 127.53.x.y:53 from ours: stop and disable it.
    if [[ " ${need_pkgs[*]} " == *" nsd "* ]] && command -v systemctl >/dev/null; then
        systemctl stop nsd >/dev/null 2>&1 || true
        systemctl disable nsd >/dev/null 2>&1 || true
    fi
fi
[ "$(id -u)" -eq 0 ] || die "NSD must bind port 53 (of 127.53.x.y): run as root"

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

# --- addresses, ports, cores, work dir ------------------------------------------------
NSD_ADDRS=(127.53.0.1 127.53.1.1 127.53.1.2 127.53.2.1 127.53.2.2 127.53.2.3 127.53.2.4)
BASE=${RECURSION_PORT_BASE:-15363}
DG_PORT=$BASE
UB_PORT=$((BASE + 1))
DG_METRICS=$((BASE + 2))
if command -v ss >/dev/null; then
    for p in "$DG_PORT" "$UB_PORT" "$DG_METRICS"; do
        if ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; then
            die "port $p is in use on this machine; set RECURSION_PORT_BASE"
        fi
    done
    # Port 53 on a wildcard address (a system NSD, Unbound or dnsmasq on 0.0.0.0) would take
    # our 127.53.x.y:53 too.
    if ss -Hlnu 'sport = :53' | awk '{print $4}' | grep -Eq '^(127\.53\.|0\.0\.0\.0:|\*:|\[::\]:)'; then
        ss -Hlnup 'sport = :53' >&2 || true
        die "something listens on port 53 of 127.53.x.y or of every address; stop it first"
    fi
fi

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    RES_CORE=0
    AUX_CORE=1
else
    log "warning: 1 CPU: resolver, NSD and dnsperf all share core 0"
    RES_CORE=0
    AUX_CORE=0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnsgate-recursion.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    # NSD's main process stops its own children on SIGTERM; they are in PIDS too, in case.
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
cpu_ticks() { # user + system of the given pids, summed (a pid gone counts 0)
    local p s=0 t
    for p in "$@"; do
        # after "pid (comm) ": comm may hold spaces ("nsd: server 1")
        t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
        t=${t:-0}
        s=$((s + t))
    done
    echo "$s"
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; } # all cores

# --- the hierarchy, the query file, the configurations --------------------------------
log "work directory $WORK; generating the zones ($ZONES x $NAMES_PER_ZONE names), the query file and the configurations"
python3 - "$WORK" "$ZONES" "$NAMES_PER_ZONE" "$DG_PORT" "$DG_METRICS" "$UB_PORT" "$DNSSEC" <<'PY'
import os, random, sys

work, zones, per_zone = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dg_port, dg_metrics, ub_port = sys.argv[4:7]
dnssec = sys.argv[7] == "1"
anchor = os.path.join(work, "trust-anchor.ds")  # written by sign_zones (--dnssec)
rng = random.Random(20261201)
zdir = os.path.join(work, "zones")
os.makedirs(zdir)

ROOT_NS = ("a.root-servers.bench.", "127.53.0.1")
TLD_NS = [("ns1.bench.", "127.53.1.1"), ("ns2.bench.", "127.53.1.2")]
LEAF = ["127.53.2.%d" % (k + 1) for k in range(4)]
TTL = 3600

def leaf_servers(z):  # zone z is on two of the four leaf servers
    return [LEAF[z % 4], LEAF[(z + 1) % 4]]

def soa(origin, ns):
    return "%s %d IN SOA %s hostmaster.bench. 2026120101 3600 600 86400 300\n" % (origin, TTL, ns)

# The root: the root server itself and the delegation of bench. with glue.
with open(os.path.join(zdir, "root.zone"), "w") as f:
    f.write(soa(".", ROOT_NS[0]))
    f.write(". %d IN NS %s\n" % (TTL, ROOT_NS[0]))
    for n, _ in TLD_NS:
        f.write("bench. %d IN NS %s\n" % (TTL, n))
    for n, ip in TLD_NS + [ROOT_NS]:
        f.write("%s %d IN A %s\n" % (n, TTL, ip))

# bench.: its own servers, the root server's name, and 100 delegations with glue.
with open(os.path.join(zdir, "bench.zone"), "w") as f:
    f.write(soa("bench.", TLD_NS[0][0]))
    for n, _ in TLD_NS:
        f.write("bench. %d IN NS %s\n" % (TTL, n))
    for n, ip in TLD_NS + [ROOT_NS]:
        f.write("%s %d IN A %s\n" % (n, TTL, ip))
    for z in range(zones):
        for k, ip in enumerate(leaf_servers(z)):
            f.write("z%d.bench. %d IN NS ns%d.z%d.bench.\n" % (z, TTL, k + 1, z))
            f.write("ns%d.z%d.bench. %d IN A %s\n" % (k + 1, z, TTL, ip))

# The leaf zones: n0 ... n99 with A, AAAA, MX and TXT.
served = {ip: [] for ip in LEAF}
for z in range(zones):
    origin = "z%d.bench." % z
    for ip in leaf_servers(z):
        served[ip].append(origin)
    with open(os.path.join(zdir, origin + "zone"), "w") as f:
        f.write("$ORIGIN %s\n$TTL %d\n" % (origin, TTL))
        f.write("@ IN SOA ns1 hostmaster.bench. 2026120101 3600 600 86400 300\n")
        for k, ip in enumerate(leaf_servers(z)):
            f.write("@ IN NS ns%d\nns%d IN A %s\n" % (k + 1, k + 1, ip))
        f.write("mail IN A 198.18.255.%d\n" % (z % 250 + 1))
        for n in range(per_zone):
            f.write("n%d IN A 198.18.%d.%d\n" % (n, z % 256, n % 250 + 1))
            f.write("n%d IN AAAA 2001:db8:%x::%x\n" % (n, z, n + 1))
            f.write("n%d IN MX 10 mail\n" % n)
            f.write('n%d IN TXT "bench name n%d of zone z%d" "v=spf1 -all"\n' % (n, n, z))

# One NSD per address: its zones.
nsd = {"root": ("127.53.0.1", ["."]), "tld1": ("127.53.1.1", ["bench."]), "tld2": ("127.53.1.2", ["bench."])}
for k, ip in enumerate(LEAF):
    nsd["leaf%d" % (k + 1)] = (ip, served[ip])
for name, (ip, zs) in nsd.items():
    d = os.path.join(work, "nsd-" + name)
    os.makedirs(d)
    with open(os.path.join(d, "nsd.conf"), "w") as f:
        f.write("""server:
  ip-address: %s
  port: 53
  do-ip4: yes
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonesdir: "%s"
  zonelistfile: "%s/zone.list"
  xfrdfile: "%s/xfrd.state"
  xfrdir: "%s"
  pidfile: "%s/nsd.pid"
  logfile: "%s/nsd.log"
  verbosity: 1
  hide-version: yes
  refuse-any: yes
remote-control:
  control-enable: no
""" % (ip, zdir, d, d, d, d, d))
        for z in zs:
            f.write('zone:\n  name: "%s"\n  zonefile: "%s"\n' % (z, "root.zone" if z == "." else z + "zone"))

with open(os.path.join(work, "root.hints"), "w") as f:
    f.write(". 3600000 NS %s\n%s 3600000 A %s\n" % (ROOT_NS[0], ROOT_NS[0], ROOT_NS[1]))

# The questions: every (name, type) once, shuffled.
q = ["n%d.z%d.bench %s" % (n, z, t) for z in range(zones) for n in range(per_zone)
     for t in ("A", "AAAA", "MX", "TXT")]
rng.shuffle(q)
with open(os.path.join(work, "queries.txt"), "w") as f:
    f.write("\n".join(q) + "\n")
with open(os.path.join(work, "sample.txt"), "w") as f:  # checked after each cold pass
    f.write("\n".join(rng.sample(q, 8)) + "\n")

hints = os.path.join(work, "root.hints")
with open(os.path.join(work, "dnsgate.toml"), "w") as f:
    f.write("""# generated by benches/recursion.sh
[server]
listen = ["127.0.0.1:%s"]
allow_networks = ["127.0.0.0/8"]

[upstream]
mode = "recursive"
root_hints = "%s"
%s

[cache]
prefetch = false

[metrics]
listen = "127.0.0.1:%s"
""" % (dg_port, hints,
       'dnssec = "validate"\ntrust_anchor = "%s"' % anchor if dnssec else 'dnssec = "off"',
       dg_metrics))

with open(os.path.join(work, "unbound.conf"), "w") as f:
    f.write("""# generated by benches/recursion.sh
server:
  interface: 127.0.0.1
  port: %s
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  module-config: "%s"
  root-hints: "%s"
  do-not-query-localhost: no
  qname-minimisation: yes
  num-threads: 1
  so-reuseport: yes
  prefetch: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
%sremote-control:
  control-enable: no
""" % (ub_port, work, "validator iterator" if dnssec else "iterator", hints,
       """  trust-anchor-file: "%s"
  trust-anchor-signaling: no
  val-log-level: 1
""" % anchor if dnssec else ""))
# The reference variant: the same without QNAME minimisation.
conf = open(os.path.join(work, "unbound.conf")).read()
with open(os.path.join(work, "unbound-nqm.conf"), "w") as f:
    f.write(conf.replace("qname-minimisation: yes", "qname-minimisation: no"))
PY

# --- signing (--dnssec) ---------------------------------------------------------------
# sign_zone ORIGIN FILE: a KSK and a ZSK (ECDSAP256SHA256) for ORIGIN, FILE signed in place
# (NSEC; the unsigned original kept in zones/unsigned/); prints the KSK's DS (SHA-256).
SIG_INCEPTION=$(date -u -d '-1 hour' +%Y%m%d%H%M%S)
SIG_EXPIRATION=$(date -u -d '+30 days' +%Y%m%d%H%M%S)
sign_zone() {
    local origin=$1 file=$2 keys=$WORK/keys ksk zsk
    mkdir -p "$keys" "$WORK/zones/unsigned"
    ksk=$(cd "$keys" && ldns-keygen -a ECDSAP256SHA256 -k -r /dev/urandom "$origin") || die "ldns-keygen failed for $origin"
    zsk=$(cd "$keys" && ldns-keygen -a ECDSAP256SHA256 -r /dev/urandom "$origin") || die "ldns-keygen failed for $origin"
    cp "$file" "$WORK/zones/unsigned/"
    ldns-signzone -o "$origin" -i "$SIG_INCEPTION" -e "$SIG_EXPIRATION" -f "$file.signed" \
        "$file" "$keys/$ksk" "$keys/$zsk" || die "ldns-signzone failed for $origin"
    mv "$file.signed" "$file"
    ldns-key2ds -n -2 "$keys/$ksk.key" || die "ldns-key2ds failed for $origin"
}
sign_zones() {
    local z t0
    t0=$(now_ns)
    for z in $(seq 0 $((ZONES - 1))); do
        sign_zone "z$z.bench." "$WORK/zones/z$z.bench.zone" >>"$WORK/zones/bench.zone"
    done
    sign_zone bench. "$WORK/zones/bench.zone" >>"$WORK/zones/root.zone"
    sign_zone . "$WORK/zones/root.zone" >"$WORK/trust-anchor.ds"
    awk '$4 == "DS" {f = 1} END {exit !f}' "$WORK/trust-anchor.ds" || die "no DS for the root's KSK"
    log "signed $((ZONES + 2)) zones (ECDSAP256SHA256 KSK + ZSK each, NSEC, valid $SIG_INCEPTION - $SIG_EXPIRATION UTC) in $(ms_since "$t0") ms; trust anchor: $(awk '{print $1, $4, $5, $6, $7}' "$WORK/trust-anchor.ds")"
}
if [ "$DNSSEC" -eq 1 ]; then
    sign_zones
fi

for d in "$WORK"/nsd-*; do
    nsd-checkconf "$d/nsd.conf" || die "nsd rejects $d/nsd.conf"
done
for z in "$WORK"/zones/*.zone; do
    o=$(basename "$z" .zone); [ "$o" = root ] && o=.
    nsd-checkzone "$o" "$z" >/dev/null || die "nsd rejects the zone $z"
done
"$BIN" check -c "$WORK/dnsgate.toml" >/dev/null || die "dnsgate rejects the generated configuration"
for c in unbound unbound-nqm; do
    unbound-checkconf "$WORK/$c.conf" >/dev/null || die "unbound rejects the generated configuration $c.conf"
done
NQ=$(wc -l <"$WORK/queries.txt")

# --- NSD ------------------------------------------------------------------------------
NSD_MAIN=()  # the processes we started (each becomes that NSD's xfrd)
NSD_ALL=()   # with their descendants (main, server), whose CPU is what NSD costs
start_nsd() {
    local d pid ip k
    for d in "$WORK"/nsd-*; do
        taskset -c "$AUX_CORE" nsd -d -c "$d/nsd.conf" 2>"$d/stderr" &
        pid=$!
        PIDS+=("$pid")
        NSD_MAIN+=("$pid")
    done
    local i=0 deadline=$(($(date +%s) + 30))
    for d in "$WORK"/nsd-*; do
        pid=${NSD_MAIN[$i]}; i=$((i + 1))
        ip=$(awk '/ip-address:/ {print $2; exit}' "$d/nsd.conf")
        while :; do
            kill -0 "$pid" 2>/dev/null || { cat "$d/stderr" "$d/nsd.log" >&2 2>/dev/null; die "nsd on $ip exited"; }
            if dig +tries=1 +time=1 +norec @"$ip" SOA "$(awk '/^ *name:/ {gsub(/"/, "", $2); print $2; exit}' "$d/nsd.conf")" 2>/dev/null |
                grep -q 'status: NOERROR'; then
                break
            fi
            [ "$(date +%s)" -lt "$deadline" ] || { cat "$d/nsd.log" >&2 2>/dev/null; die "nsd on $ip does not answer"; }
            sleep 0.1
        done
    done
    # What we started becomes NSD's xfrd; its child is the main process, whose child serves.
    # Once every server answers, the tree is complete.
    for pid in "${NSD_MAIN[@]}"; do
        for k in $(descendants "$pid"); do PIDS+=("$k"); NSD_ALL+=("$k"); done
        NSD_ALL+=("$pid")
    done
}

descendants() { # PID: its children, grandchildren, ...
    local k
    for k in $(pgrep -P "$1" || true); do
        echo "$k"
        descendants "$k"
    done
}

# nsd_queries: queries each of our NSD servers received so far, "leaf1 ... leaf4 root tld1
# tld2" (the order of the nsd-* directories). SIGUSR1 makes NSD log its BIND8 statistics
# (cumulative since start): "XSTATS ... RQ=n".
nsd_queries() {
    local d n before pid i=0 out=()
    for d in "$WORK"/nsd-*; do
        pid=${NSD_MAIN[$i]}; i=$((i + 1))
        before=$(grep -c XSTATS "$d/nsd.log" 2>/dev/null || true)
        kill -USR1 "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ "$(grep -c XSTATS "$d/nsd.log" 2>/dev/null || true)" -gt "$before" ] && break
            sleep 0.02
        done
        n=$(grep XSTATS "$d/nsd.log" 2>/dev/null | tail -1 | sed -n 's/.* RQ=\([0-9]*\).*/\1/p')
        out+=("${n:-0}")
    done
    echo "${out[*]}"
}
NSD_NAMES=$(cd "$WORK" && ls -d nsd-* | sed 's/^nsd-//' | tr '\n' ' ')

# --- resolvers ------------------------------------------------------------------------
# wait_ready PORT PID: until the resolver answers a CHAOS question (both answer those
# themselves, dnsgate REFUSED, Unbound version.bind: nothing is asked of the hierarchy,
# the caches stay cold).
wait_ready() {
    local port=$1 pid=$2 deadline=$(($(date +%s) + 60)) out
    while :; do
        kill -0 "$pid" 2>/dev/null || return 1
        out=$(dig +tries=1 +time=2 @127.0.0.1 -p "$port" CH TXT version.bind 2>/dev/null || true)
        case "$out" in *"status: "*) return 0 ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

port_of() { if [ "$1" = dnsgate ]; then echo "$DG_PORT"; else echo "$UB_PORT"; fi; } # one runs at a time

start_resolver() { # dnsgate|unbound ROUND: sets RES_PID
    local srv=$1 r=$2 logf=$WORK/$1-$2.log
    if [ "$srv" = dnsgate ]; then
        TOKIO_WORKER_THREADS=1 taskset -c "$RES_CORE" "$BIN" run -c "$WORK/dnsgate.toml" 2>"$logf" &
    else
        taskset -c "$RES_CORE" unbound -d -c "$WORK/$srv.conf" 2>"$logf" &
    fi
    RES_PID=$!
    PIDS+=("$RES_PID")
    if ! wait_ready "$(port_of "$srv")" "$RES_PID"; then
        tail -20 "$logf" >&2
        die "$srv did not start"
    fi
}

metric() { # NAME: dnsgate's counter (sum over labels), or empty
    command -v curl >/dev/null || return 0
    curl -fsS --max-time 2 "http://127.0.0.1:$DG_METRICS/metrics" 2>/dev/null |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d", s}' || true
}

dnssec_results() { # dnsgate's dnsgate_dnssec_results_total: "secure insecure bogus indeterminate"
    command -v curl >/dev/null || return 0
    curl -fsS --max-time 2 "http://127.0.0.1:$DG_METRICS/metrics" 2>/dev/null |
        awk '$1 ~ /^dnsgate_dnssec_results_total\{/ { for (k in w) if (index($1, "\"" k "\"")) c[k] += $2 }
             BEGIN { w["secure"]; w["insecure"]; w["bogus"]; w["indeterminate"] }
             END { printf "%d %d %d %d", c["secure"], c["insecure"], c["bogus"], c["indeterminate"] }' || true
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

parse_perf() { # dnsperf -v output -> "qps run_s completed sent lost noerror mean_ms p99_ms max_ms"
    python3 - "$1" <<'PY'
import math, re, sys
lat, stats, noerror = [], {}, 0
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
        m = re.match(r"\s*(Queries sent|Queries completed|Queries lost|Queries per second|Run time \(s\)|Average Latency \(s\)):\s+([0-9.]+)", line)
        if m:
            stats[m.group(1)] = float(m.group(2))
        m = re.match(r"\s*Response codes:\s+(.*)", line)
        if m:
            c = re.search(r"NOERROR (\d+)", m.group(1))
            noerror = int(c.group(1)) if c else 0
if "Queries per second" not in stats:
    sys.exit("dnsperf printed no statistics")
lat.sort()
p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)] * 1000 if lat else float("nan")
mx = lat[-1] * 1000 if lat else float("nan")
print("%.0f %.3f %d %d %d %d %.4f %.4f %.2f" % (
    stats["Queries per second"], stats.get("Run time (s)", 0), stats.get("Queries completed", 0),
    stats.get("Queries sent", 0), stats.get("Queries lost", 0), noerror,
    stats["Average Latency (s)"] * 1000, p99, mx))
PY
}

RESULTS=$WORK/results.tsv
# pass round server qps run_s completed sent lost noerror mean_ms p99_ms max_ms
# res_cpu_s nsd_cpu_s dnsperf_cpu_s other_cpu_s wall_s nsd_queries dg_outgoing rss_kb
# nsd_queries_per_server ("leaf1=n,...")
: >"$RESULTS"

# run_pass PASS SERVER ROUND PASSES: dnsperf over the query file PASSES times (-n), one
# row in results.tsv.
run_pass() {
    local pass=$1 srv=$2 r=$3 n=$4 out c0 nsd0 b0 p0 t0 wall q0 o0="" o1="" v0="" v1=""
    out=$WORK/perf-$pass-$srv-$r.out
    c0=$(cpu_ticks "$RES_PID"); nsd0=$(cpu_ticks "${NSD_ALL[@]}"); b0=$(busy_ticks)
    q0=$(nsd_queries)
    [ "$srv" = dnsgate ] && o0=$(metric dnsgate_outgoing_queries_total)
    [ "$srv" = dnsgate ] && [ "$DNSSEC" -eq 1 ] && v0=$(dnssec_results)
    children_cpu; p0=$CHILD_S
    t0=$(now_ns)
    timeout $((LIMIT + 30)) taskset -c "$AUX_CORE" dnsperf -s 127.0.0.1 -p "$(port_of "$srv")" \
        -d "$WORK/queries.txt" -n "$n" -l "$LIMIT" -c "$CLIENTS" -q "$OUTSTANDING" -t "$TIMEOUT" -v \
        >"$out" 2>"$out.err" || { cat "$out.err" >&2; die "dnsperf failed ($pass, $srv, round $r)"; }
    wall=$(($(now_ns) - t0))
    children_cpu
    local c1 nsd1 b1 q1 qd qt
    c1=$(cpu_ticks "$RES_PID"); nsd1=$(cpu_ticks "${NSD_ALL[@]}"); b1=$(busy_ticks)
    q1=$(nsd_queries)
    # per NSD server: "name=n,name=n,...", and the total
    qd=$(awk -v a="$q0" -v b="$q1" -v names="$NSD_NAMES" 'BEGIN { split(a, x, " "); split(b, y, " "); k = split(names, nm, " ")
        for (i = 1; i <= k; i++) { printf "%s%s=%d", (i > 1 ? "," : ""), nm[i], y[i] - x[i] } }')
    qt=$(awk -v a="$q0" -v b="$q1" 'BEGIN { k = split(a, x, " "); split(b, y, " "); for (i = 1; i <= k; i++) t += y[i] - x[i]; print t }')
    [ "$srv" = dnsgate ] && o1=$(metric dnsgate_outgoing_queries_total)
    [ "$srv" = dnsgate ] && [ "$DNSSEC" -eq 1 ] && v1=$(dnssec_results)
    local perf cpu
    perf=$(parse_perf "$out")
    cpu=$(awk -v s0="$c0" -v s1="$c1" -v n0="$nsd0" -v n1="$nsd1" -v b0="$b0" -v b1="$b1" \
        -v p0="$p0" -v p1="$CHILD_S" -v w="$wall" -v hz="$CLK_TCK" 'BEGIN {
            s = (s1 - s0) / hz; n = (n1 - n0) / hz; p = p1 - p0; o = (b1 - b0) / hz - s - n - p
            if (o < 0) o = 0
            printf "%.3f %.3f %.3f %.3f %.3f", s, n, p, o, w / 1e9 }')
    local dgo=""
    [ -n "$o0" ] && [ -n "$o1" ] && dgo=$((o1 - o0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pass" "$r" "$srv" "$(tr ' ' '\t' <<<"$perf")" \
        "$(tr ' ' '\t' <<<"$cpu")" "$qt" "${dgo:--}" "$(rss_kb "$RES_PID")" "$qd" >>"$RESULTS"
    [ "$KEEP" -eq 1 ] || { grep -v '^> ' "$out" >"$out.stats" || true; rm -f "$out"; }
    local qps run_s comp sent lost noerr mean p99 _mx rs ns ps os _w
    read -r qps run_s comp sent lost noerr mean p99 _mx <<<"$perf"
    read -r rs ns ps os _w <<<"$cpu"
    log "  $pass, $srv, round $r: $qps qps ($comp of $sent in $run_s s, lost $lost, NOERROR $noerr), mean $mean ms, p99 $p99 ms;" \
        "CPU s: $srv $rs, NSD $ns, dnsperf $ps, other $os; NSD got $qt queries${dgo:+, dnsgate sent $dgo}"
    if [ -n "$v1" ]; then
        log "  dnsgate's validation verdicts this pass (secure insecure bogus indeterminate):" \
            "$(awk -v a="$v0" -v b="$v1" 'BEGIN { split(a, x, " "); split(b, y, " "); for (i = 1; i <= 4; i++) printf "%s%d", (i > 1 ? " " : ""), y[i] - x[i] }')"
    fi
    if [ "$DNSSEC" -eq 1 ] && [ "$noerr" -ne "$comp" ]; then
        KEEP=1
        log "error: $srv answered $noerr of $comp questions NOERROR in the $pass pass with validation on ($(grep -i 'Response codes' "$out.stats" "$out" 2>/dev/null | head -1 | sed 's/.*codes: *//')); the log is $WORK/$srv-$r.log"
        tail -20 "$WORK/$srv-$r.log" >&2 || true
        exit 4
    fi
}

# check_sample SERVER ROUND: a few of the questions, now cached, must have answers. With
# --dnssec they are asked with DO and each must be NOERROR, have the AD bit and an answer of
# the type asked: otherwise the run stops here (validation failed, nothing to compare).
check_sample() {
    local srv=$1 r=$2 name type out bad=0 flags status
    if [ "$DNSSEC" -eq 1 ]; then
        while read -r name type; do
            out=$(dig +dnssec +tries=1 +time=3 @127.0.0.1 -p "$(port_of "$srv")" "$name" "$type" 2>&1 || true)
            printf ';; --- %s %s, %s round %s\n%s\n' "$name" "$type" "$srv" "$r" "$out" >>"$WORK/check-$srv-$r.txt"
            status=$(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$out" | head -1)
            flags=$(sed -n 's/^;; flags: \([a-z ]*\);.*/\1/p' <<<"$out" | head -1)
            if [ "$status" != NOERROR ] || [[ " $flags " != *" ad "* ]] ||
                ! awk -v t="$type" '/^;; ANSWER SECTION:/ {a = 1; next} /^$/ {a = 0} a && $4 == t {f = 1} END {exit !f}' <<<"$out"; then
                log "error: $srv: $name $type with DO: status ${status:-none}, flags '${flags}' (want NOERROR, ad, a $type answer)"
                bad=$((bad + 1))
            fi
        done <"$WORK/sample.txt"
        if [ "$bad" -gt 0 ]; then
            KEEP=1
            log "$srv failed validation for $bad of $(wc -l <"$WORK/sample.txt") sampled questions; the dig output is in $WORK/check-$srv-$r.txt, the log in $WORK/$srv-$r.log"
            tail -20 "$WORK/$srv-$r.log" >&2 || true
            exit 4
        fi
        log "  $srv: the $(wc -l <"$WORK/sample.txt") sampled questions, asked with DO: NOERROR, AD, answered"
        return 0
    fi
    while read -r name type; do
        out=$(dig +tries=1 +time=3 +short @127.0.0.1 -p "$(port_of "$srv")" "$name" "$type" 2>/dev/null || true)
        if [ -z "$out" ]; then
            log "warning: $srv has no answer for $name $type after the cold pass"
            bad=$((bad + 1))
        fi
    done <"$WORK/sample.txt"
    [ "$bad" -eq 0 ] || log "warning: $srv: $bad of $(wc -l <"$WORK/sample.txt") sampled questions unanswered"
}

# --- the run --------------------------------------------------------------------------
log "starting ${#NSD_ADDRS[@]} NSD servers on core $AUX_CORE (127.53.0.1, 127.53.1.1-2, 127.53.2.1-4)"
start_nsd
log "$NQ questions per pass; resolvers on core $RES_CORE, NSD and dnsperf on core $AUX_CORE; $ROUNDS round(s)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order=(dnsgate unbound); else order=(unbound dnsgate); fi
    [ "$NOQMIN" -eq 0 ] || order+=(unbound-nqm)
    for srv in "${order[@]}"; do
        start_resolver "$srv" "$r"
        run_pass cold "$srv" "$r" 1
        check_sample "$srv" "$r"
        if [ "$WARM" -eq 1 ]; then
            run_pass warm "$srv" "$r" "$WARM_PASSES"
        fi
        stop_pid "$RES_PID"
        if [ "$srv" = dnsgate ] && grep -qiE '\b(WARN|ERROR)\b' "$WORK/$srv-$r.log"; then
            log "dnsgate logged warnings or errors in round $r:"
            grep -iE '\b(WARN|ERROR)\b' "$WORK/$srv-$r.log" | head -5 >&2
        fi
    done
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
    echo "nsd=$(nsd -v 2>&1 | awk '/^NSD version/ {print $3; exit}')"
    echo "dnsgate=$rev"
    echo "command=benches/recursion.sh${ARGS_SEEN:+ $ARGS_SEEN}"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rounds=$ROUNDS"
    echo "questions=$NQ"
    echo "warm_passes=$WARM_PASSES"
    echo "clients=$CLIENTS"
    echo "outstanding=$OUTSTANDING"
    echo "timeout=$TIMEOUT"
    echo "elapsed=$(($(date +%s) - SCRIPT_START))"
    echo "cores=resolver $RES_CORE, NSD and dnsperf $AUX_CORE"
    echo "dnssec=$DNSSEC"
    [ "$DNSSEC" -eq 0 ] || echo "ldns=$(ldns-signzone -v 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
} >"$WORK/meta.txt"

REPORT=$WORK/report.md
python3 - "$WORK" >"$REPORT" <<'PY'
import os, statistics, sys
work = sys.argv[1]
meta = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(work, "meta.txt")) if "=" in l)
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(work, "results.tsv")) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def f(x, d=2):
    return "n/a" if x is None or x != x else ("%.*f" % (d, x))
def ratio(a, b):
    return a / b if b and a == a and b == b else float("nan")
def n(x):
    return format(round(x), ",") if x == x else "n/a"

# columns: 0 pass 1 round 2 server 3 qps 4 run_s 5 completed 6 sent 7 lost 8 noerror
# 9 mean 10 p99 11 max 12 res_cpu 13 nsd_cpu 14 dnsperf_cpu 15 other_cpu 16 wall
# 17 nsd_queries 18 dg_outgoing 19 rss_kb 20 per NSD server
def agg(p, srv):
    rs = [r for r in rows if r[0] == p and r[2] == srv]
    if not rs:
        return None
    fl = lambda k: [float(r[k]) for r in rs]
    comp = fl(5)
    return {
        "qps": med(fl(3)), "run": med(fl(4)), "all": fl(3),
        "completed": sum(int(r[5]) for r in rs), "sent": sum(int(r[6]) for r in rs),
        "lost": sum(int(r[7]) for r in rs), "noerror": sum(int(r[8]) for r in rs),
        "mean": med(fl(9)), "p99": med(fl(10)), "max": med(fl(11)),
        "cpu_s": med(fl(12)),
        "us_per_q": med([float(r[12]) / int(r[5]) * 1e6 for r in rs if int(r[5]) > 0]),
        "res_pct": med([float(r[12]) / float(r[16]) * 100 for r in rs]),
        "nsd_pct": med([float(r[13]) / float(r[16]) * 100 for r in rs]),
        "nsd_max_pct": max(float(r[13]) / float(r[16]) * 100 for r in rs),
        "perf_pct": med([float(r[14]) / float(r[16]) * 100 for r in rs]),
        "other_pct": med([float(r[15]) / float(r[16]) * 100 for r in rs]),
        "upq": med([int(r[17]) / int(r[5]) for r in rs if int(r[5]) > 0]),
        "us_per_up": med([float(r[12]) / int(r[17]) * 1e6 for r in rs if int(r[17]) > 0]),
        "per_nsd": {k: med([float(dict(x.split("=") for x in r[20].split(","))[k]) for r in rs])
                    for k in (x.split("=")[0] for x in rs[0][20].split(","))},
        "rss": med([float(r[19]) / 1024 for r in rs]),
    }

passes = [p for p in ("cold", "warm") if any(r[0] == p for r in rows)]
dnssec = meta.get("dnssec") == "1"
print("### Cold recursion%s (benches/recursion.sh%s)\n" % ((", DNSSEC-validating", " --dnssec") if dnssec else ("", "")))
print("- Machine: %s, %s CPUs, Linux %s; load average %s" % (meta["cpu"], meta["nproc"], meta["kernel"], meta["loadavg"]))
print("- dnsgate %s, Unbound %s, NSD %s, dnsperf %s; %s UTC; run took %s s"
      % (meta["dnsgate"], meta["unbound"], meta["nsd"], meta["dnsperf"], meta["date"], meta["elapsed"]))
print("- Command: `%s`" % meta["command"])
print("- Pinning: %s; each resolver restarted (cold caches) per round, dnsgate and Unbound alternating which goes first; median of %s round(s)"
      % (meta["cores"], meta["rounds"]))
print("- dnsperf: UDP, %s clients, %s outstanding, %s s timeout, no EDNS; **cold** = the %s questions (10,000 names x A, AAAA, MX, TXT, shuffled) once each (`-n 1`) "
      "right after the start; **warm** = the same file %s times more, all cached"
      % (meta["clients"], meta["outstanding"], meta["timeout"], format(int(meta["questions"]), ","), meta["warm_passes"]))
print("- Hierarchy: NSD, one process per address: `.` on 127.53.0.1, `bench.` on 127.53.1.1-2, 100 zones `zN.bench.` (100 names each) on two of 127.53.2.1-4; referrals with glue%s"
      % ("" if not dnssec else "; every zone signed (ldns-signzone %s: ECDSAP256SHA256 KSK + ZSK, NSEC), DS records in the parents, "
         "the root KSK's DS the trust anchor of both; dnsgate `dnssec = \"validate\"`, Unbound `validator iterator`; "
         "a sample asked with DO after each cold pass: NOERROR with AD from both" % meta.get("ldns", "?")))
print()
print("| pass | server | QPS | run s | lost / sent | NOERROR | mean ms | p99 ms | resolver CPU s | CPU µs / question | CPU % resolver / NSD / dnsperf / other | NSD queries / question | CPU µs / NSD query | RSS MiB | QPS per round |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
SERVERS = ("dnsgate", "unbound", "unbound-nqm")
for p in passes:
    for srv in SERVERS:
        a = agg(p, srv)
        if a is None:
            continue
        print("| %s | %s | %s | %s | %d / %d | %s | %s | %s | %s | %s | %s / %s / %s / %s | %s | %s | %s | %s |" % (
            p, srv if srv != "unbound-nqm" else "unbound, no QNAME min.", n(a["qps"]), f(a["run"]), a["lost"], a["sent"],
            "%.2f%%" % (100.0 * a["noerror"] / a["completed"]) if a["completed"] else "n/a",
            f(a["mean"], 3), f(a["p99"], 3), f(a["cpu_s"]), f(a["us_per_q"], 1),
            f(a["res_pct"], 0), f(a["nsd_pct"], 0), f(a["perf_pct"], 0), f(a["other_pct"], 0),
            f(a["upq"], 3), f(a["us_per_up"], 1) if p == "cold" else "-", f(a["rss"], 1), " ".join(n(x) for x in a["all"])))
print("\nQPS: dnsperf's (answers / run time). CPU: user + system time over the pass, in % of one core (NSD: the "
      "seven servers together, on the core they share with dnsperf); \"other\" is everything else on the machine "
      "(a busy machine makes the run noisy). A resolver near 100% was the bottleneck; NSD far below its core means "
      "the hierarchy was not. NSD queries / question: queries the authoritative servers received per answered "
      "question (the resolver's outgoing queries); CPU µs / NSD query: the resolver's CPU per outgoing query.")
names = list(agg("cold", "dnsgate")["per_nsd"].keys()) if agg("cold", "dnsgate") else []
addr = {"root": "root 127.53.0.1", "tld1": "bench. 127.53.1.1", "tld2": "bench. 127.53.1.2"}
addr.update({"leaf%d" % k: "leaves 127.53.2.%d" % k for k in range(1, 5)})
order = [x for x in ("root", "tld1", "tld2", "leaf1", "leaf2", "leaf3", "leaf4") if x in names]
if order:
    print("\nQueries each NSD server received during a cold pass (median of the rounds):\n")
    print("| server | " + " | ".join(addr.get(x, x) for x in order) + " |")
    print("|---|" + "---:|" * len(order))
    for srv in SERVERS:
        a = agg("cold", srv)
        if a:
            print("| %s | %s |" % (srv if srv != "unbound-nqm" else "unbound, no QNAME min.",
                                   " | ".join(n(a["per_nsd"][x]) for x in order)))
def paired(p, other, k):
    # the median of the per-round ratios: both ran within seconds of each other, under the
    # same background load
    d = {r[1]: float(r[k]) for r in rows if r[0] == p and r[2] == "dnsgate"}
    u = {r[1]: float(r[k]) for r in rows if r[0] == p and r[2] == other}
    return med([d[x] / u[x] for x in d if x in u and u[x] > 0])
print("\n| pass | dnsgate / | QPS | QPS, median of per-round ratios | CPU per question | mean latency | p99 latency |")
print("|---|---|---:|---:|---:|---:|---:|")
for p in passes:
    for other, label in (("unbound", "Unbound"), ("unbound-nqm", "Unbound, no QNAME min.")):
        d, u = agg(p, "dnsgate"), agg(p, other)
        if d and u:
            print("| %s | %s | %s | %s | %s | %s | %s |" % (p, label, f(ratio(d["qps"], u["qps"])), f(paired(p, other, 3)),
                                                   f(ratio(d["us_per_q"], u["us_per_q"])),
                                                   f(ratio(d["mean"], u["mean"])), f(ratio(d["p99"], u["p99"]))))
d, u = agg("cold", "dnsgate"), agg("cold", "unbound")
if d and u:
    q = ratio(d["qps"], u["qps"])
    pq = paired("cold", "unbound", 3)
    print("\nTarget (cold QPS >= 1.0 x Unbound's): %s, per-round median %s (%s)"
          % (f(q), f(pq), "met" if q == q and q >= 1.0 and pq >= 1.0 else "**missed**"))
    worst = max(a["nsd_max_pct"] for a in (agg(p, srv) for p in passes for srv in SERVERS) if a)
    print("NSD's busiest pass used %s%% of a core (all seven servers)%s" % (f(worst, 0),
          "" if worst < 60 else " — **close to saturating its core: the hierarchy may have set the pace**"))
PY

cat "$REPORT"
if [ -n "$OUT" ]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
log "done in $(($(date +%s) - SCRIPT_START)) s"
