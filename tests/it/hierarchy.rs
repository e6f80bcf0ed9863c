//! A loopback DNS hierarchy for testing a recursive resolver: a root, two TLDs and their
//! delegations, each zone served by real in-process hickory authoritative servers
//! (`Catalog` + `InMemoryZoneHandler`, UDP and TCP) on port 53 of their own loopback
//! address, as NS glue carries no port.
//!
//! # Addresses
//!
//! [`Hierarchy::start`]`(net)` binds everything under `127.<net>.0.0/16`, so tests running
//! at the same time must pass distinct `net`s. Taken so far (add yours here):
//!
//! | net | test |
//! | --- | --- |
//! | 201–205 | `hierarchy.rs` (the servers queried directly) |
//! | 211–220 | `unbound.rs` (Unbound recursing over the hierarchy) |
//! | 221–235 | `recursion.rs` (dnsgate recursing over the hierarchy) |
//! | 236–250 | the signed hierarchy ([`crate::signed::start_signed`]): `signed.rs` takes 236–239 |
//!
//! [`crate::signed::start_signed`]`(net)` starts a *signed* hierarchy instead (other zones
//! under the TLD `sec.`, its own address plan: see signed.rs) through the same
//! [`Hierarchy::serve`], so the handle, switches and wrapper below are the same.
//!
//! Inside the /16 (`N` = net), for [`Hierarchy::start`]:
//!
//! | address | host | serves |
//! | --- | --- | --- |
//! | 127.N.0.1 | a.root-servers.test. | `.` |
//! | 127.N.0.2 | b.root-servers.test. | `.` (make it dead with [`Mode::Silent`]) |
//! | 127.N.1.1, .1.2 | ns1.test., ns2.test. | `test.` |
//! | 127.N.2.1 | ns1.example. | `example.` |
//! | 127.N.3.1 | ns1.sub.test. | `sub.test.` (in-bailiwick glue in `test.`) |
//! | 127.N.4.1, .4.2 | ns1/ns2.hosting.example. | `far.test.` (NS names under `example.`: no glue) |
//! | 127.N.5.1 | ns1.lame.test. | `lame.test.`, but starts in [`Mode::Refuse`] (lame) |
//! | 127.N.5.2 | ns2.lame.test. | `lame.test.` |
//! | 127.N.6.1 | ns1.dead.test. | nothing is bound there (dead) |
//! | 127.N.6.2 | ns2.dead.test. | `dead.test.` |
//! | 127.N.7.1 | ns1.slow.test. | `slow.test.`, answers after [`SLOW_DELAY`] |
//! | 127.N.7.2 | ns2.slow.test. | `slow.test.`, at once |
//! | 127.N.8.1 | ns1.late.test. | `late.test.`, its only server, answers after [`LATE_DELAY`] |
//! | 127.N.255.k | — | resolvers under test ([`Hierarchy::client_addr`]) |
//!
//! # What hickory's authoritative `Catalog` does not do, and this wrapper does
//!
//! - Referrals: hickory puts the child's NS set in the authority section but sets AA, adds
//!   no glue, and answers `NS` queries for the child name (and CNAME chains into the child)
//!   from the parent as if authoritative (the child's NS set in the answer section, AA).
//!   Here a query at or below a zone cut (but `DS` at the cut) gets a real referral: AA
//!   clear, NS set in authority, A/AAAA glue for the NS names inside the zone.
//! - Additional section of `NS` answers: hickory looks up only the first NS name, and when
//!   that name sits below a cut it adds the child's NS set there. Here: every NS name's
//!   address records held in the zone.
//! - CNAME chains: hickory chases in-zone CNAMEs but when the target is below a cut it puts
//!   the child's NS set in the answer section; those NS records are removed here.
//! - DNAME (RFC 6672): hickory-proto cannot read a DNAME from zone text
//!   (`UnsupportedRecordType`), decodes it from the wire only as `RData::Unknown`, and the
//!   server never synthesizes. Here `owner [ttl] [IN] DNAME target` lines are taken out of
//!   the zone text before hickory parses it, and this wrapper answers them: the DNAME
//!   itself for `owner DNAME`, and for any name below the owner the DNAME plus a
//!   synthesized CNAME (TTL of the DNAME; YXDOMAIN when the new name is too long). The
//!   synthesized target is not chased, even when this server holds it.
//! - DNSSEC (signed zones only, queries with DO): referrals carry the DS RRset and its
//!   RRSIG, or else the NSEC/NSEC3 records hickory gives for a `DS` query at the cut (the
//!   proof of no DS, which hickory's own NSEC referrals lack); the RRSIG hickory makes
//!   over a delegation NS set is dropped with that NS set from CNAME answers; the wrapper's
//!   own responses copy the DO bit.

// An API for other tests (the resolver's, differential runs): not all of it is used here.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Header, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{NS, NULL};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, LookupOptions, MessageResponse, MessageResponseBuilder, Nsec3QueryInfo,
    ZoneHandler, ZoneType,
};
use tokio::net::{TcpListener, UdpSocket};

use crate::client;

/// How long `ns1.slow.test.` waits before answering (it starts so; change with
/// [`Auth::set_delay`]). A resolver should give up on it and ask `ns2.slow.test.`.
pub(crate) const SLOW_DELAY: Duration = Duration::from_millis(1500);

/// How long `ns1.late.test.`, the only server of `late.test.`, waits before answering.
pub(crate) const LATE_DELAY: Duration = Duration::from_millis(300);

/// The root servers, as in the root hints.
pub(crate) const ROOT_SERVERS: [&str; 2] = ["a.root-servers.test.", "b.root-servers.test."];

/// The root zone. `{N}` is replaced by the net.
const ROOT_ZONE: &str = r#"
$ORIGIN .
$TTL 86400
@                     IN SOA a.root-servers.test. hostmaster.test. 1 1800 900 604800 300
@                     IN NS  a.root-servers.test.
@                     IN NS  b.root-servers.test.
test.                 IN NS  ns1.test.
test.                 IN NS  ns2.test.
example.              IN NS  ns1.example.
ns1.test.             IN A   127.{N}.1.1
ns2.test.             IN A   127.{N}.1.2
ns1.example.          IN A   127.{N}.2.1
a.root-servers.test.  IN A   127.{N}.0.1
b.root-servers.test.  IN A   127.{N}.0.2
"#;

const TEST_ZONE: &str = r#"
$ORIGIN test.
$TTL 300
@              3600 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 60
@                   IN NS  ns1.test.
@                   IN NS  ns2.test.
ns1                 IN A   127.{N}.1.1
ns2                 IN A   127.{N}.1.2
a.root-servers      IN A   127.{N}.0.1
b.root-servers      IN A   127.{N}.0.2
www                 IN A   192.0.2.1
www                 IN AAAA 2001:db8::1
mail                IN MX  10 mx.test.
mx                  IN A   192.0.2.25
txt                 IN TXT "hello from test"
short          5    IN A   192.0.2.5
nodata              IN TXT "only a TXT here"
alias               IN CNAME www.sub.test.
chain               IN CNAME alias.test.
shortcname     5    IN CNAME www.example.
loop1               IN CNAME loop2.example.
old                 IN DNAME new.example.
sub                 IN NS  ns1.sub.test.
ns1.sub             IN A   127.{N}.3.1
far                 IN NS  ns1.hosting.example.
far                 IN NS  ns2.hosting.example.
lame                IN NS  ns1.lame.test.
lame                IN NS  ns2.lame.test.
ns1.lame            IN A   127.{N}.5.1
ns2.lame            IN A   127.{N}.5.2
dead                IN NS  ns1.dead.test.
dead                IN NS  ns2.dead.test.
ns1.dead            IN A   127.{N}.6.1
ns2.dead            IN A   127.{N}.6.2
slow                IN NS  ns1.slow.test.
slow                IN NS  ns2.slow.test.
ns1.slow            IN A   127.{N}.7.1
ns2.slow            IN A   127.{N}.7.2
late                IN NS  ns1.late.test.
ns1.late            IN A   127.{N}.8.1
"#;

const EXAMPLE_ZONE: &str = r#"
$ORIGIN example.
$TTL 300
@              3600 IN SOA ns1.example. hostmaster.example. 1 3600 600 86400 60
@                   IN NS  ns1.example.
ns1                 IN A   127.{N}.2.1
ns1.hosting         IN A   127.{N}.4.1
ns2.hosting         IN A   127.{N}.4.2
www                 IN A   192.0.2.20
www                 IN AAAA 2001:db8::20
x                   IN CNAME y.far.test.
loop2               IN CNAME loop1.test.
www.new             IN A   192.0.2.30
mail.new            IN MX  10 www.new.example.
txt                 IN TXT "hello from example"
"#;

const SUB_ZONE: &str = r#"
$ORIGIN sub.test.
$TTL 300
@              3600 IN SOA ns1.sub.test. hostmaster.test. 1 3600 600 86400 60
@                   IN NS  ns1.sub.test.
ns1                 IN A   127.{N}.3.1
www                 IN A   192.0.2.10
www                 IN AAAA 2001:db8::10
deep                IN CNAME www.sub.test.
txt.ent             IN TXT "below an empty non-terminal"
"#;

const FAR_ZONE: &str = r#"
$ORIGIN far.test.
$TTL 300
@              3600 IN SOA ns1.hosting.example. hostmaster.example. 1 3600 600 86400 60
@                   IN NS  ns1.hosting.example.
@                   IN NS  ns2.hosting.example.
www                 IN A   192.0.2.40
y                   IN A   192.0.2.41
"#;

/// `lame.test.`, `dead.test.`, `slow.test.`, `late.test.`: the same data under each
/// (`{Z}` is the zone's first label).
const LEAF_ZONE: &str = r#"
$ORIGIN {Z}.test.
$TTL 300
@              3600 IN SOA ns1.{Z}.test. hostmaster.test. 1 3600 600 86400 60
@                   IN NS  ns1.{Z}.test.
{NS2}
www                 IN A   192.0.2.{LAST}
txt                 IN TXT "hello from {Z}"
"#;

/// The zones, by origin, with `{N}` replaced.
fn zone_texts(net: u8) -> BTreeMap<&'static str, String> {
    let n = net.to_string();
    let leaf = |z: &str, last: u8, two: bool| {
        let ns2 = if two {
            format!("@ IN NS ns2.{z}.test.")
        } else {
            String::new()
        };
        LEAF_ZONE
            .replace("{Z}", z)
            .replace("{NS2}", &ns2)
            .replace("{LAST}", &last.to_string())
    };
    [
        (".", ROOT_ZONE.to_string()),
        ("test.", TEST_ZONE.to_string()),
        ("example.", EXAMPLE_ZONE.to_string()),
        ("sub.test.", SUB_ZONE.to_string()),
        ("far.test.", FAR_ZONE.to_string()),
        ("lame.test.", leaf("lame", 50, true)),
        ("dead.test.", leaf("dead", 60, true)),
        ("slow.test.", leaf("slow", 70, true)),
        ("late.test.", leaf("late", 80, false)),
    ]
    .into_iter()
    .map(|(o, t)| (o, t.replace("{N}", &n)))
    .collect()
}

/// A server of the hierarchy: host name, the last two octets of its address, the zones it
/// serves, how it starts. A host with no zones is never started (nothing bound: dead).
pub(crate) struct Host {
    pub(crate) name: &'static str,
    pub(crate) at: [u8; 2],
    pub(crate) zones: &'static [&'static str],
    pub(crate) mode: Mode,
    pub(crate) delay: Duration,
}

/// A host answering at once from `zones`.
pub(crate) const fn host(name: &'static str, at: [u8; 2], zones: &'static [&'static str]) -> Host {
    Host {
        name,
        at,
        zones,
        mode: Mode::Answer,
        delay: Duration::ZERO,
    }
}

const SERVERS: &[Host] = &[
    host("a.root-servers.test.", [0, 1], &["."]),
    host("b.root-servers.test.", [0, 2], &["."]),
    host("ns1.test.", [1, 1], &["test."]),
    host("ns2.test.", [1, 2], &["test."]),
    host("ns1.example.", [2, 1], &["example."]),
    host("ns1.sub.test.", [3, 1], &["sub.test."]),
    host("ns1.hosting.example.", [4, 1], &["far.test."]),
    host("ns2.hosting.example.", [4, 2], &["far.test."]),
    Host {
        mode: Mode::Refuse,
        ..host("ns1.lame.test.", [5, 1], &["lame.test."])
    },
    host("ns2.lame.test.", [5, 2], &["lame.test."]),
    host("ns1.dead.test.", [6, 1], &[]),
    host("ns2.dead.test.", [6, 2], &["dead.test."]),
    Host {
        delay: SLOW_DELAY,
        ..host("ns1.slow.test.", [7, 1], &["slow.test."])
    },
    host("ns2.slow.test.", [7, 2], &["slow.test."]),
    Host {
        delay: LATE_DELAY,
        ..host("ns1.late.test.", [8, 1], &["late.test."])
    },
];

/// How a server behaves (after its delay, if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Answers from its zones.
    Answer = 0,
    /// Never answers: the resolver sees a timeout.
    Silent = 1,
    /// Answers REFUSED to everything (lame: a server that does not serve the zone).
    Refuse = 2,
    /// Answers SERVFAIL to everything.
    ServFail = 3,
    /// Lame the old way: NOERROR, AA clear, an upward referral to the root.
    Lame = 4,
    /// Broken for QNAME minimisation (hickory issue 3833's servers): NXDOMAIN to every
    /// question of type A, whatever exists; other types answered right.
    NxForA = 5,
    /// REFUSED to DNSKEY questions only (a chain of trust that cannot be fetched).
    NoDnskey = 6,
}

impl Mode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Silent,
            2 => Self::Refuse,
            3 => Self::ServFail,
            4 => Self::Lame,
            5 => Self::NxForA,
            6 => Self::NoDnskey,
            _ => Self::Answer,
        }
    }
}

/// One query as a server received it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// The question name as spelled in the query (its case kept), with the final dot.
    pub(crate) name: String,
    /// The question type.
    pub(crate) qtype: RecordType,
    /// Who asked.
    pub(crate) src: SocketAddr,
    /// Over TCP (else UDP).
    pub(crate) tcp: bool,
    /// The EDNS DO bit was set.
    pub(crate) dnssec_ok: bool,
    /// The CD header bit was set.
    pub(crate) checking_disabled: bool,
}

#[derive(Default)]
struct Switches {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    queries: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// A handle on one authoritative server: switches and what it received.
pub(crate) struct Auth {
    /// Its host name, e.g. `ns1.test.`.
    pub(crate) host: &'static str,
    /// Its address (port 53, UDP and TCP).
    pub(crate) addr: SocketAddr,
    sw: Arc<Switches>,
    _server: Server<Node>,
}

impl Auth {
    /// Queries received so far (those that got no answer included).
    pub(crate) fn queries(&self) -> usize {
        self.sw.queries.load(Ordering::SeqCst)
    }

    /// Every query received so far, in order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.sw.seen.lock().unwrap().clone()
    }

    /// Every question name received so far, as spelled (0x20 case kept), in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.name).collect()
    }

    /// Forgets the queries received so far (counter and list).
    pub(crate) fn clear(&self) {
        self.sw.queries.store(0, Ordering::SeqCst);
        self.sw.seen.lock().unwrap().clear();
    }

    /// How it behaves from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.sw.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// How it behaves now.
    pub(crate) fn mode(&self) -> Mode {
        Mode::from_u8(self.sw.mode.load(Ordering::SeqCst))
    }

    /// Stop (or resume) answering.
    pub(crate) fn set_silent(&self, silent: bool) {
        self.set_mode(if silent { Mode::Silent } else { Mode::Answer });
    }

    /// Answer REFUSED to everything (or stop doing so).
    pub(crate) fn set_refusing(&self, refusing: bool) {
        self.set_mode(if refusing { Mode::Refuse } else { Mode::Answer });
    }

    /// Wait this long before handling each query (zero: at once).
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.sw
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

/// A running hierarchy. Dropping it stops the servers (with the test's runtime at the
/// latest).
pub(crate) struct Hierarchy {
    /// The second octet of every address: 127.net.0.0/16.
    pub(crate) net: u8,
    servers: BTreeMap<&'static str, Auth>,
    next_client: AtomicU8,
    hosts: &'static [Host],
    roots: &'static [&'static str],
    texts: BTreeMap<&'static str, String>,
    trust_anchor: Option<String>,
}

impl Hierarchy {
    /// Starts every server of the hierarchy under 127.`net`.0.0/16 (see the module doc for
    /// the nets taken). Panics if an address is in use.
    pub(crate) async fn start(net: u8) -> Self {
        let texts = zone_texts(net);
        let zones = texts
            .iter()
            .map(|(&origin, text)| (origin, ZoneData::load(text)))
            .collect();
        Self::serve(net, SERVERS, &ROOT_SERVERS, texts, zones, None).await
    }

    /// Starts `hosts` under 127.`net`.0.0/16, each serving its zones out of `zones` (by
    /// origin, as written in [`Host::zones`]). `roots` are the root servers' host names
    /// (for the hints); `texts` and `trust_anchor` are only handed back by
    /// [`Self::zone_texts`] and [`Self::trust_anchor`].
    pub(crate) async fn serve(
        net: u8,
        hosts: &'static [Host],
        roots: &'static [&'static str],
        texts: BTreeMap<&'static str, String>,
        zones: BTreeMap<&'static str, ZoneData>,
        trust_anchor: Option<String>,
    ) -> Self {
        assert!(net != 0, "127.0.0.0/16 holds the usual loopback services");
        let mut servers = BTreeMap::new();
        for &Host {
            name: host,
            at: [x, y],
            zones: served,
            mode,
            delay,
        } in hosts
        {
            if served.is_empty() {
                continue;
            }
            let served: Vec<ZoneData> = served
                .iter()
                .map(|z| {
                    zones
                        .get(z)
                        .unwrap_or_else(|| panic!("{host} serves {z}: no such zone"))
                        .clone()
                })
                .collect();
            let mut catalog = Catalog::new();
            for z in &served {
                catalog.upsert(z.origin.clone(), vec![z.handler.clone()]);
            }
            let sw = Arc::new(Switches::default());
            sw.mode.store(mode as u8, Ordering::SeqCst);
            sw.delay_ms
                .store(delay.as_millis() as u64, Ordering::SeqCst);
            let node = Node {
                catalog: Arc::new(catalog),
                zones: Arc::new(served),
                sw: sw.clone(),
                roots,
            };
            let addr = SocketAddr::from((Ipv4Addr::new(127, net, x, y), 53));
            let udp = UdpSocket::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("bind udp {addr} ({host}): {e}: is net {net} taken?"));
            let tcp = TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("bind tcp {addr} ({host}): {e}: is net {net} taken?"));
            let mut server = Server::new(node);
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 65_535);
            servers.insert(
                host,
                Auth {
                    host,
                    addr,
                    sw,
                    _server: server,
                },
            );
        }
        Self {
            net,
            servers,
            next_client: AtomicU8::new(1),
            hosts,
            roots,
            texts,
            trust_anchor,
        }
    }

    /// The server named `host` (e.g. `ns1.test.`). Panics for a host that is not running
    /// (`ns1.dead.test.`) or unknown.
    pub(crate) fn server(&self, host: &str) -> &Auth {
        self.servers
            .get(host)
            .unwrap_or_else(|| panic!("no running server {host}"))
    }

    /// Every running server, by host name.
    pub(crate) fn servers(&self) -> impl Iterator<Item = &Auth> {
        self.servers.values()
    }

    /// The address of `host`, running or not (`ns1.dead.test.` has nothing bound).
    pub(crate) fn addr_of(&self, host: &str) -> SocketAddr {
        let [x, y] = self
            .hosts
            .iter()
            .find(|s| s.name == host)
            .map(|s| s.at)
            .unwrap_or_else(|| panic!("unknown host {host}"));
        SocketAddr::from((Ipv4Addr::new(127, self.net, x, y), 53))
    }

    /// The root servers' addresses.
    pub(crate) fn root_ips(&self) -> Vec<IpAddr> {
        self.roots.iter().map(|h| self.addr_of(h).ip()).collect()
    }

    /// The root hints in named.root format, to write to a file.
    pub(crate) fn root_hints(&self) -> String {
        let mut s = String::from("; loopback root hints of a test hierarchy\n");
        for h in self.roots {
            s.push_str(&format!(".  3600000  NS  {}\n", h.to_ascii_uppercase()));
        }
        for h in self.roots {
            s.push_str(&format!(
                "{}  3600000  A  {}\n",
                h.to_ascii_uppercase(),
                self.addr_of(h).ip()
            ));
        }
        s
    }

    /// A fresh address in 127.net.255.0/24 for a resolver under test to listen on and send
    /// from (nothing of the hierarchy uses that /24). Panics after 254 of them.
    pub(crate) fn client_addr(&self) -> Ipv4Addr {
        let k = self.next_client.fetch_add(1, Ordering::SeqCst);
        assert!((1..255).contains(&k), "client addresses exhausted");
        Ipv4Addr::new(127, self.net, 255, k)
    }

    /// Every query received by every server, with the server's host name.
    pub(crate) fn seen(&self) -> Vec<(&'static str, Seen)> {
        self.servers
            .values()
            .flat_map(|a| a.seen().into_iter().map(move |s| (a.host, s)))
            .collect()
    }

    /// The zone texts as written (DNAME lines included; for a signed hierarchy before
    /// signing, without DS, DNSKEY, RRSIG or NSEC), by origin: for signing them, or for
    /// another server to serve the same data.
    pub(crate) fn zone_texts(&self) -> BTreeMap<&'static str, String> {
        self.texts.clone()
    }

    /// For a signed hierarchy ([`crate::signed`]): the root's trust anchor, zone-file lines
    /// (a DS record) for Unbound's `trust-anchor-file` or dnsgate's `trust_anchor`.
    pub(crate) fn trust_anchor(&self) -> Option<&str> {
        self.trust_anchor.as_deref()
    }
}

/// A question of the corpus, with what a correct resolver answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Question {
    /// The name, fully qualified.
    pub(crate) name: &'static str,
    /// The type.
    pub(crate) qtype: RecordType,
    /// The response code a correct resolver gives.
    pub(crate) rcode: ResponseCode,
    /// Whether its answer section holds records of the type asked (else: none, or only
    /// CNAME/DNAME).
    pub(crate) data: bool,
    /// What it exercises.
    pub(crate) what: &'static str,
}

/// Questions with varied outcomes over the hierarchy, for a differential run.
pub(crate) fn corpus() -> Vec<Question> {
    use RecordType::*;
    use ResponseCode::{NXDomain, NoError, ServFail};
    let q = |name, qtype, rcode, what: &'static str| Question {
        name,
        qtype,
        rcode,
        data: rcode == NoError && !what.contains("NODATA"),
        what,
    };
    vec![
        q("www.test.", A, NoError, "TLD data"),
        q("www.test.", AAAA, NoError, "AAAA"),
        q("www.test.", MX, NoError, "NODATA: other types exist"),
        q("mail.test.", MX, NoError, "MX (exchange in zone)"),
        q("txt.test.", TXT, NoError, "TXT"),
        q("short.test.", A, NoError, "TTL 5"),
        q("nodata.test.", A, NoError, "NODATA: only a TXT"),
        q("nx.test.", A, NXDomain, "NXDOMAIN in a TLD"),
        q("test.", SOA, NoError, "apex SOA"),
        q("test.", NS, NoError, "apex NS"),
        q("nosuchtld.", A, NXDomain, "NXDOMAIN from the root"),
        q(".", NS, NoError, "root NS"),
        q(
            "www.sub.test.",
            A,
            NoError,
            "referral with in-bailiwick glue",
        ),
        q("www.sub.test.", AAAA, NoError, "referral, AAAA"),
        q("www.sub.test.", TXT, NoError, "NODATA below a referral"),
        q("nx.sub.test.", A, NXDomain, "NXDOMAIN below a referral"),
        q("deep.sub.test.", A, NoError, "in-zone CNAME"),
        q("sub.test.", NS, NoError, "child NS"),
        q("www.far.test.", A, NoError, "out-of-bailiwick NS names"),
        q("far.test.", NS, NoError, "out-of-bailiwick NS set"),
        q("www.example.", A, NoError, "second TLD"),
        q("txt.example.", TXT, NoError, "TXT in the second TLD"),
        q("alias.test.", A, NoError, "CNAME into a child zone"),
        q(
            "chain.test.",
            A,
            NoError,
            "CNAME chain, in zone then into a child",
        ),
        q(
            "shortcname.test.",
            A,
            NoError,
            "CNAME with TTL 5 across TLDs",
        ),
        q(
            "x.example.",
            A,
            NoError,
            "CNAME to an out-of-bailiwick zone",
        ),
        q("x.example.", TXT, NoError, "CNAME then NODATA"),
        q("loop1.test.", A, ServFail, "CNAME loop across zones"),
        q("www.old.test.", A, NoError, "DNAME, then A in another TLD"),
        q("mail.old.test.", MX, NoError, "DNAME, then MX"),
        q("nx.old.test.", A, NXDomain, "DNAME, then NXDOMAIN"),
        q("www.lame.test.", A, NoError, "one lame server"),
        q("www.dead.test.", A, NoError, "one dead server"),
        q("www.slow.test.", A, NoError, "one slow server"),
        q("www.late.test.", A, NoError, "only a slow server"),
        q("nx.late.test.", A, NXDomain, "NXDOMAIN from a slow server"),
    ]
}

/// A zone text parsed: its origin, its RRsets as hickory's parser gives them, and the
/// DNAME lines taken out (see [`ZoneData::new`]).
pub(crate) struct ParsedZone {
    pub(crate) origin: Name,
    pub(crate) sets: BTreeMap<RrKey, RecordSet>,
    dnames: Vec<(Name, Name, u32)>,
}

impl ParsedZone {
    /// Parses a zone text (DNAME lines allowed; no DNSSEC records but DS). Panics on an
    /// error.
    pub(crate) fn parse(text: &str) -> Self {
        let (text, dnames) = take_dnames(text);
        let (origin, sets) = Parser::new(text, None, None)
            .parse()
            .expect("test zone parses");
        Self {
            origin,
            sets,
            dnames,
        }
    }
}

/// One zone: hickory's handler for it plus what the wrapper needs to answer what hickory
/// gets wrong (cuts, glue, DNAME, proofs in referrals).
#[derive(Clone)]
pub(crate) struct ZoneData {
    origin: LowerName,
    handler: Arc<dyn ZoneHandler>,
    /// Every record of the zone text but the DNAMEs, owner names lowercased.
    records: Vec<Record>,
    /// (owner, target, TTL), lowercased.
    dnames: Vec<(Name, Name, u32)>,
}

impl ZoneData {
    /// An unsigned zone from its text.
    fn load(text: &str) -> Self {
        let parsed = ParsedZone::parse(text);
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            parsed.origin.clone(),
            parsed.sets.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None,
        )
        .expect("test zone loads");
        Self::new(&parsed, Arc::new(handler))
    }

    /// A zone served by `handler` (built from `parsed`, then perhaps signed or changed):
    /// the wrapper finds cuts, glue and DNAMEs in `parsed`; proofs for referrals (DS, or
    /// NSEC/NSEC3 for no DS) come from `handler` when it has an `nx_proof_kind`.
    pub(crate) fn new(parsed: &ParsedZone, handler: Arc<dyn ZoneHandler>) -> Self {
        let records: Vec<Record> = parsed
            .sets
            .values()
            .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .map(|mut r| {
                r.name = r.name.to_lowercase();
                r
            })
            .collect();
        Self {
            origin: LowerName::from(&parsed.origin),
            handler,
            records,
            dnames: parsed.dnames.clone(),
        }
    }

    /// What a signed zone adds to its referral to `cut` for a DO query: the DS RRset and
    /// its RRSIGs, or else the NSEC/NSEC3 records (and RRSIGs) that prove there is no DS,
    /// as hickory answers a `DS` query for the cut. Nothing for an unsigned zone.
    async fn referral_proof(&self, cut: &Name) -> Vec<Record> {
        let Some(kind) = self.handler.nx_proof_kind() else {
            return Vec::new();
        };
        let options = LookupOptions::for_dnssec();
        let cut = LowerName::from(cut);
        let ds = self
            .handler
            .lookup(&cut, RecordType::DS, None, options)
            .await
            .map_result();
        if let Some(Ok(ds)) = ds {
            let ds: Vec<Record> = ds.iter().cloned().collect();
            if ds.iter().any(|r| r.record_type() == RecordType::DS) {
                return ds;
            }
        }
        let proof = match kind {
            NxProofKind::Nsec => self.handler.nsec_records(&cut, options).await,
            NxProofKind::Nsec3 {
                algorithm,
                salt,
                iterations,
                ..
            } => {
                let info = Nsec3QueryInfo {
                    qname: &cut,
                    qtype: RecordType::DS,
                    has_wildcard_match: false,
                    algorithm: *algorithm,
                    salt,
                    iterations: *iterations,
                };
                self.handler.nsec3_records(info, options).await
            }
        };
        match proof.map_result() {
            Some(Ok(proof)) => proof.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    fn rrset(&self, name: &Name, qtype: RecordType) -> Vec<Record> {
        self.records
            .iter()
            .filter(|r| r.record_type() == qtype && r.name == *name)
            .cloned()
            .collect()
    }

    /// The A/AAAA records the zone holds for `name` (authoritative or glue).
    fn addresses(&self, name: &Name) -> Vec<Record> {
        let mut v = self.rrset(name, RecordType::A);
        v.extend(self.rrset(name, RecordType::AAAA));
        v
    }

    /// The topmost zone cut at or above `qname` (below the apex), if any.
    fn cut_for(&self, qname: &Name) -> Option<Name> {
        let apex_labels = self.origin.num_labels();
        (apex_labels + 1..=qname.num_labels())
            .map(|n| qname.trim_to(n as usize))
            .find(|n| !self.rrset(n, RecordType::NS).is_empty())
    }

    /// The referral for `cut`: its NS set, and the glue the zone holds for it.
    fn referral(&self, cut: &Name) -> (Vec<Record>, Vec<Record>) {
        let ns = self.rrset(cut, RecordType::NS);
        let glue = ns
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(NS(target)) if self.origin.zone_of(&LowerName::from(target)) => {
                    Some(self.addresses(&target.to_lowercase()))
                }
                _ => None,
            })
            .flatten()
            .collect();
        (ns, glue)
    }

    /// The answer a DNAME of this zone gives for (qname, qtype), if any: (records, rcode).
    fn dname(&self, qname: &Name, qtype: RecordType) -> Option<(Vec<Record>, ResponseCode)> {
        for (owner, target, ttl) in &self.dnames {
            let record = dname_record(owner, target, *ttl);
            if qname == owner {
                if matches!(qtype, RecordType::DNAME | RecordType::ANY) {
                    return Some((vec![record], ResponseCode::NoError));
                }
            } else if owner.zone_of(qname) {
                let keep = (qname.num_labels() - owner.num_labels()) as usize;
                let labels: Vec<Vec<u8>> = qname.iter().take(keep).map(<[u8]>::to_vec).collect();
                let synthesized = Name::from_labels(labels.iter().map(Vec::as_slice))
                    .and_then(|prefix| prefix.append_domain(target));
                return Some(match synthesized {
                    Ok(new) => {
                        let cname = Record::from_rdata(
                            qname.clone(),
                            *ttl,
                            RData::CNAME(hickory_proto::rr::rdata::CNAME(new)),
                        );
                        (vec![record, cname], ResponseCode::NoError)
                    }
                    Err(_) => (vec![record], ResponseCode::YXDomain),
                });
            }
        }
        None
    }
}

/// A DNAME record: hickory has no DNAME rdata, so its wire form as unknown data (the
/// target uncompressed, as RFC 6672 requires).
pub(crate) fn dname_record(owner: &Name, target: &Name, ttl: u32) -> Record {
    let bytes = target.to_bytes().expect("name encodes");
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::Unknown {
            code: RecordType::DNAME,
            rdata: NULL::with(bytes),
        },
    )
}

/// The target of a DNAME record as decoded by hickory (unknown data), if it is one.
pub(crate) fn dname_target(record: &Record) -> Option<Name> {
    match &record.data {
        RData::Unknown {
            code: RecordType::DNAME,
            rdata,
        } => {
            use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
            Name::read(&mut BinDecoder::new(&rdata.anything)).ok()
        }
        _ => None,
    }
}

/// Splits the DNAME lines (`owner [ttl] [IN] DNAME target`) out of a zone text, which
/// hickory cannot parse, resolving relative names against `$ORIGIN`.
fn take_dnames(text: &str) -> (String, Vec<(Name, Name, u32)>) {
    let mut origin = Name::root();
    let mut default_ttl = 3600;
    let mut rest = String::new();
    let mut dnames = Vec::new();
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens.as_slice() {
            ["$ORIGIN", o, ..] => origin = Name::from_ascii(o).unwrap(),
            ["$TTL", t, ..] => default_ttl = t.parse().unwrap(),
            _ => {}
        }
        let Some(pos) = tokens.iter().position(|t| t.eq_ignore_ascii_case("DNAME")) else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        };
        let abs = |s: &str| {
            if s == "@" {
                origin.clone()
            } else {
                Name::parse(s, Some(&origin)).unwrap()
            }
        };
        let owner = abs(tokens[0]).to_lowercase();
        let target = abs(tokens[pos + 1]).to_lowercase();
        let ttl = tokens[1..pos]
            .iter()
            .find_map(|t| t.parse().ok())
            .unwrap_or(default_ttl);
        dnames.push((owner, target, ttl));
    }
    (rest, dnames)
}

/// The request handler of one server: switches, then referrals and DNAMEs, then hickory's
/// `Catalog` with its answer mended.
#[derive(Clone)]
struct Node {
    catalog: Arc<Catalog>,
    zones: Arc<Vec<ZoneData>>,
    sw: Arc<Switches>,
    roots: &'static [&'static str],
}

#[async_trait::async_trait]
impl RequestHandler for Node {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.sw.queries.fetch_add(1, Ordering::SeqCst);
        let question = request
            .queries
            .queries()
            .first()
            .map(|q| (q.original().name().clone(), q.query_type()));
        if let Some((name, qtype)) = &question {
            self.sw.seen.lock().unwrap().push(Seen {
                name: name.to_ascii(),
                qtype: *qtype,
                src: request.src(),
                tcp: request.protocol() == Protocol::Tcp,
                dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
                checking_disabled: request.metadata.checking_disabled,
            });
        }
        let delay = self.sw.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut md = Metadata::response_from_request(&request.metadata);
        let edns = response_edns(request);
        match Mode::from_u8(self.sw.mode.load(Ordering::SeqCst)) {
            Mode::Answer => {}
            Mode::NxForA if question.as_ref().is_some_and(|q| q.1 == RecordType::A) => {
                md.response_code = ResponseCode::NXDomain;
                md.authoritative = true;
                return send(request, response_handle, md, &[], &[], &[], edns.as_ref()).await;
            }
            Mode::NxForA => {}
            Mode::NoDnskey if question.as_ref().is_some_and(|q| q.1 == RecordType::DNSKEY) => {
                md.response_code = ResponseCode::Refused;
                return send(request, response_handle, md, &[], &[], &[], edns.as_ref()).await;
            }
            Mode::NoDnskey => {}
            Mode::Silent => {
                md.response_code = ResponseCode::ServFail;
                return ResponseInfo::from(Header {
                    metadata: md,
                    counts: Default::default(),
                });
            }
            Mode::Refuse => {
                md.response_code = ResponseCode::Refused;
                return send(request, response_handle, md, &[], &[], &[], edns.as_ref()).await;
            }
            Mode::ServFail => {
                md.response_code = ResponseCode::ServFail;
                return send(request, response_handle, md, &[], &[], &[], edns.as_ref()).await;
            }
            Mode::Lame => {
                let up: Vec<Record> = self
                    .roots
                    .iter()
                    .map(|h| {
                        Record::from_rdata(
                            Name::root(),
                            86400,
                            RData::NS(NS(Name::from_ascii(h).unwrap())),
                        )
                    })
                    .collect();
                return send(request, response_handle, md, &[], &up, &[], edns.as_ref()).await;
            }
        }
        let Some((name, qtype)) = question else {
            return self
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        };
        let qname = name.to_lowercase();
        let zone = self
            .zones
            .iter()
            .filter(|z| z.origin.zone_of(&LowerName::from(&qname)))
            .max_by_key(|z| z.origin.num_labels());
        if let Some(zone) = zone {
            if let Some(cut) = zone.cut_for(&qname)
                && !(qtype == RecordType::DS && cut == qname)
            {
                let (mut ns, glue) = zone.referral(&cut);
                if edns.as_ref().is_some_and(|e| e.flags().dnssec_ok) {
                    ns.extend(zone.referral_proof(&cut).await);
                }
                return send(request, response_handle, md, &[], &ns, &glue, edns.as_ref()).await;
            }
            if let Some((answers, rcode)) = zone.dname(&qname, qtype) {
                md.authoritative = true;
                md.response_code = rcode;
                return send(
                    request,
                    response_handle,
                    md,
                    &answers,
                    &[],
                    &[],
                    edns.as_ref(),
                )
                .await;
            }
        }

        // hickory's answer, captured and mended.
        let capture = Capture::default();
        let info = self
            .catalog
            .handle_request::<Capture, T>(request, capture.clone())
            .await;
        let Some(bytes) = capture.0.lock().unwrap().take() else {
            return info;
        };
        let Ok(mut msg) = Message::from_vec(&bytes) else {
            return info;
        };
        if let Some(zone) = zone {
            mend(&mut msg, zone, &qname, qtype);
        }
        send(
            request,
            response_handle,
            msg.metadata,
            &msg.answers,
            &msg.authorities,
            &msg.additionals,
            msg.edns.as_ref(),
        )
        .await
    }
}

/// Fixes what hickory's `Catalog` gets wrong in an answer from `zone` (see the module doc).
fn mend(msg: &mut Message, zone: &ZoneData, qname: &Name, qtype: RecordType) {
    if !matches!(qtype, RecordType::NS | RecordType::ANY) {
        // A CNAME chased into a child zone: hickory appends the child's NS set (and, in a
        // signed zone, the RRSIGs it made over that delegation NS set).
        msg.answers.retain(|r| match &r.data {
            RData::NS(_) => false,
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered != RecordType::NS,
            _ => true,
        });
    }
    msg.additionals
        .retain(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA));
    if qtype == RecordType::NS && !msg.answers.is_empty() {
        msg.additionals = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(NS(t)) => Some(zone.addresses(&t.to_lowercase())),
                _ => None,
            })
            .flatten()
            .collect();
    }
    // The owner of a DNAME exists even when nothing else is there.
    if msg.metadata.response_code == ResponseCode::NXDomain
        && zone.dnames.iter().any(|(owner, ..)| owner == qname)
    {
        msg.metadata.response_code = ResponseCode::NoError;
    }
}

/// The response OPT for a request with one: payload max(request's, 512), version 0, the
/// DO bit copied.
fn response_edns(request: &Request) -> Option<Edns> {
    let req = request.edns.as_ref()?;
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().max(512));
    e.set_version(0);
    e.set_dnssec_ok(req.flags().dnssec_ok);
    Some(e)
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    metadata: Metadata,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    edns: Option<&Edns>,
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answers.iter(),
        authorities.iter(),
        std::iter::empty(),
        additionals.iter(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut md = metadata;
            md.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: md,
                counts: Default::default(),
            })
        }
    }
}

/// A response handler that keeps the encoded response instead of sending it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(512);
        let info = response.destructive_emit(&mut BinEncoder::new(&mut buf))?;
        *self.0.lock().unwrap() = Some(buf);
        Ok(info)
    }
}

// The harness itself, asked directly (no resolver).
/// Asks `server` over UDP, the name spelled as given (the test client's IDNA lowercases).
async fn query_cased(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    use hickory_proto::op::{MessageType, OpCode, Query};
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    client::exchange(server, &m).await.0
}

fn names_of(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_ascii()).collect()
}

#[tokio::test]
async fn referrals_carry_glue_and_no_aa() {
    let h = Hierarchy::start(201).await;
    let root = h.server("a.root-servers.test.").addr;
    let r = client::query(root, "www.sub.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authoritative, "a referral is not authoritative");
    assert!(r.answers.is_empty());
    assert!(
        r.authorities
            .iter()
            .all(|n| n.record_type() == RecordType::NS && n.name.to_ascii() == "test.")
    );
    let mut glue: Vec<String> = r
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(glue, ["127.201.1.1", "127.201.1.2"]);

    // The priming answer: every root server's address, nothing else.
    let r = client::query(root, ".", RecordType::NS).await;
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 2);
    let mut adds = names_of(&r.additionals);
    adds.sort();
    assert_eq!(adds, ["a.root-servers.test.", "b.root-servers.test."]);

    // test. delegates sub.test. with glue, far.test. without (NS names elsewhere).
    let tld = h.server("ns1.test.").addr;
    let r = client::query(tld, "sub.test.", RecordType::NS).await;
    assert!(!r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(names_of(&r.additionals), ["ns1.sub.test."]);
    let r = client::query(tld, "www.far.test.", RecordType::A).await;
    assert!(!r.metadata.authoritative);
    assert_eq!(r.authorities.len(), 2);
    assert!(
        r.additionals.is_empty(),
        "out-of-bailiwick NS names get no glue"
    );

    // A CNAME into a child: the CNAME alone, authoritative.
    let r = client::query(tld, "alias.test.", RecordType::A).await;
    assert!(r.metadata.authoritative);
    assert_eq!(client::cnames(&r), ["www.sub.test."]);
    assert_eq!(r.answers.len(), 1);

    // DS at the cut is the parent's: NODATA with the parent's SOA.
    let r = client::query(tld, "sub.test.", RecordType::DS).await;
    assert!(r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].name.to_ascii(), "test.");

    // Negative answers.
    let r = client::query(tld, "nx.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = client::query(tld, "nodata.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn dname_is_synthesized() {
    let h = Hierarchy::start(202).await;
    let tld = h.server("ns2.test.").addr;
    let r = query_cased(tld, "WwW.old.test.", RecordType::A).await;
    assert!(r.metadata.authoritative);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 2, "{:?}", r.answers);
    assert_eq!(r.answers[0].name.to_ascii(), "old.test.");
    assert_eq!(
        dname_target(&r.answers[0]).map(|n| n.to_ascii()).as_deref(),
        Some("new.example.")
    );
    assert_eq!(r.answers[1].name.to_ascii(), "www.old.test.");
    assert_eq!(client::cnames(&r), ["www.new.example."]);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "WwW.old.test.",
        "question echoed"
    );

    let r = client::query(tld, "old.test.", RecordType::DNAME).await;
    assert_eq!(r.answers.len(), 1);
    assert!(dname_target(&r.answers[0]).is_some());
    let r = client::query(tld, "old.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "NODATA");
    assert!(r.answers.is_empty());
}

#[tokio::test]
async fn switches_and_records() {
    let h = Hierarchy::start(203).await;
    let s = h.server("ns1.example.");
    let r = query_cased(s.addr, "wWw.Example.", RecordType::A).await;
    assert_eq!(client::ips(&r), ["192.0.2.20"]);
    assert_eq!(s.queries(), 1);
    assert_eq!(s.names(), ["wWw.Example."]);

    s.set_refusing(true);
    let r = client::query(s.addr, "www.example.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    s.set_mode(Mode::Lame);
    let r = client::query(s.addr, "www.example.", RecordType::A).await;
    assert!(!r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(r.authorities[0].name.to_ascii(), ".");
    s.set_silent(true);
    let (_, wire) = client::build("www.example.", RecordType::A, client::Opts::default());
    let none = client::udp_raw(s.addr, &wire, Duration::from_millis(300)).await;
    assert!(none.is_none(), "a silent server does not answer");
    s.set_mode(Mode::Answer);
    s.set_delay(Duration::from_millis(200));
    let t = std::time::Instant::now();
    client::query(s.addr, "www.example.", RecordType::A).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(s.queries(), 5);
    s.clear();
    assert!(s.seen().is_empty());

    // Over TCP too; the lame server starts refusing; nothing on the dead one.
    let tcp = client::Opts {
        tcp: true,
        ..Default::default()
    };
    let r = client::query_with(
        h.server("ns2.lame.test.").addr,
        "www.lame.test.",
        RecordType::A,
        tcp,
    )
    .await;
    assert_eq!(client::ips(&r), ["192.0.2.50"]);
    assert!(h.server("ns2.lame.test.").seen()[0].tcp);
    let r = client::query(
        h.server("ns1.lame.test.").addr,
        "www.lame.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let dead = h.addr_of("ns1.dead.test.");
    assert!(
        client::udp_raw(dead, &wire, Duration::from_millis(200))
            .await
            .is_none()
    );
    assert!(
        h.root_hints()
            .contains("A.ROOT-SERVERS.TEST.  3600000  A  127.203.0.1")
    );
}
