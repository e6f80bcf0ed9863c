//! Instruction counts (callgrind, through gungraun): what one query costs in instructions,
//! which the shared machine's load does not change — wall-clock benches drift by half here.
//!
//! 1. `policy`: `PolicySet::run` (pre-resolution) over the realistic set of `common` — 100
//!    policies, 100,000 listed names, 10,000 IP ranges, a directory — for an allowed name
//!    (every policy is evaluated), the same with one policy `external` (not matching), and
//!    a blocked one.
//! 2. `packet_cache`: the UDP fast path of a hit — parse the query, check the ACL, classify
//!    the client, build the key, copy out the stored response.
//! 3. `list`: a 100,000-name domain list's suffix match, hit and miss (1,000 lookups a
//!    call: the list's hash seed is random, and one lookup's count varies with it).
//! 4. `full_path`: decode a query and answer it through `pipeline::run`, resolving to a
//!    given address (no network), allowed and blocked. The response is not encoded.
//!
//! Everything a benchmark needs is built by its `setup` function (not measured; it runs
//! under valgrind too, hence lists of 100,000 names rather than a million) and leaked, so
//! no drop is counted either. Where a first call pays for lazy initialisation (tracing
//! call sites, first allocations), setup makes one unmeasured call first.
//!
//! ```text
//! apt-get install valgrind
//! cargo install gungraun-runner --version 0.18.2
//! cargo bench --bench instructions
//! ```

#![allow(clippy::unwrap_used)] // a benchmark: a failure should stop it loudly

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use dnsgate::clock::Instant;
use dnsgate::geoip::GeoInfo;
use dnsgate::label::{QueryAction, Rcode};
use dnsgate::lists::{DomainList, List, ListFormat, ListKind};
use dnsgate::pipeline::{self, Client, DeviceHint, Externals, Outcome, Request, Resolver};
use dnsgate::policy::fields::{ListMemo, Phase, QueryFacts};
use dnsgate::policy::{Flow, PolicySet};
use dnsgate::runtime::Runtime;
use dnsgate::server::packet::{Key, Meta, PacketCache};
use dnsgate::server::wire::Query;
use gungraun::{library_benchmark, library_benchmark_group, main};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::xfer::Protocol;

/// Names in the realistic configuration's lists, and in the list of benchmark 3.
const NAMES: usize = 100_000;

/// What `Resolver::Given` answers with.
const GIVEN: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))];

/// The realistic runtime, loaded and kept for the rest of the process.
fn runtime() -> &'static Runtime {
    load(false)
}

/// The realistic runtime with one of its policies (one no benchmark query matches) an
/// `external` policy.
fn runtime_with_external() -> &'static Runtime {
    load(true)
}

fn load(external: bool) -> &'static Runtime {
    let (dir, rt) = common::realistic_with(NAMES, external);
    // The lists are read at load: the directory may go, the runtime must stay.
    drop(dir);
    Box::leak(Box::new(rt))
}

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

// 1. Policy evaluation.

type PolicyInput = (&'static PolicySet, QueryFacts<'static>, jiff::Timestamp);

/// The facts of a query for `fqdn` by the directory's device, built as the pipeline builds
/// them: categories first, through the query's memo.
fn facts(rt: &'static Runtime, fqdn: &str) -> QueryFacts<'static> {
    let fqdn: &'static str = Box::leak(fqdn.into());
    let client = common::device_ip();
    let memo = leak(ListMemo::default());
    let (content, security) = rt.policies.categorize(fqdn, memo);
    QueryFacts {
        fqdn,
        rtype: "A",
        src_ip: client,
        location: None,
        identity: rt.directory.identity_for_ip(client).map(|a| &**a),
        content_categories: leak(content).as_slice(),
        security_categories: leak(security).as_slice(),
        src_geo: GeoInfo::default(),
        post: None,
        memo,
    }
}

/// The policies and fresh facts for `fqdn`, after one unmeasured run (with facts of their
/// own, so the measured run starts from the memo `categorize` left) that must give
/// `expect`.
fn policy_setup(fqdn: &str, expect: fn(&Flow) -> bool) -> PolicyInput {
    policy_setup_in(runtime(), fqdn, expect)
}

fn policy_setup_in(rt: &'static Runtime, fqdn: &str, expect: fn(&Flow) -> bool) -> PolicyInput {
    let now = jiff::Timestamp::now();
    let flow = rt.policies.run(Phase::Pre, &facts(rt, fqdn), now, &mut ());
    assert!(expect(&flow), "{fqdn}: {flow:?}");
    (&rt.policies, facts(rt, fqdn), now)
}

/// No policy matches: all 100 are evaluated.
fn policy_allowed() -> PolicyInput {
    policy_setup(&common::allowed_query(7), |flow| {
        matches!(flow, Flow::Continue { policy: None, .. })
    })
}

/// As [`policy_allowed`], one of the 100 policies an `external` one that does not match:
/// the same count means an external policy costs nothing until it matches.
fn policy_allowed_with_external() -> PolicyInput {
    policy_setup_in(runtime_with_external(), &common::allowed_query(7), |flow| {
        matches!(flow, Flow::Continue { policy: None, .. })
    })
}

/// A listed name's subdomain: blocked.
fn policy_blocked() -> PolicyInput {
    policy_setup(&common::blocked_query(7, NAMES), |flow| {
        matches!(flow, Flow::Decide(_))
    })
}

#[library_benchmark]
#[bench::allowed(setup = policy_allowed)]
#[bench::allowed_with_external(setup = policy_allowed_with_external)]
#[bench::blocked(setup = policy_blocked)]
fn policy(setup: PolicyInput) -> Flow {
    let (policies, facts, now) = setup;
    black_box(policies.run(Phase::Pre, black_box(&facts), now, &mut ()))
}

// 2. A packet-cache hit.

fn query_packet(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(HQuery::query(Name::from_str(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn response_packet(query: &[u8]) -> Vec<u8> {
    let mut m = Message::from_vec(query).unwrap();
    m.metadata.message_type = MessageType::Response;
    let name = m.queries[0].name().clone();
    m.answers.push(Record::from_rdata(
        name,
        300,
        RData::A(A::new(192, 0, 2, 7)),
    ));
    m.to_vec().unwrap()
}

struct PacketHit {
    rt: &'static Runtime,
    cache: &'static PacketCache,
    packet: &'static [u8],
    src: IpAddr,
    now: Instant,
    out: &'static mut Vec<u8>,
}

fn packet_hit(
    rt: &Runtime,
    cache: &PacketCache,
    packet: &[u8],
    src: IpAddr,
    now: Instant,
    out: &mut Vec<u8>,
) -> Option<Meta> {
    let q = Query::parse(packet)?;
    // As the UDP fast path: outsiders and zone transfers go the full path.
    if !rt.is_allowed(src) || matches!(q.qtype, 251 | 252) {
        return None;
    }
    let class = Client::identify(rt, src, &DeviceHint::None).class(&rt.policies);
    let key = Key::new(packet, &q, class)?;
    cache.answer(&key, packet, &q, rt.generation, now, out)
}

/// A response stored for the directory's device, and another query (another id) for it.
fn packet_setup() -> PacketHit {
    let rt = runtime();
    let src = common::device_ip();
    let cache = leak(PacketCache::new(64 * 1024));
    let first = query_packet(1, "www.example.com.");
    let q = Query::parse(&first).unwrap();
    let class = Client::identify(rt, src, &DeviceHint::None).class(&rt.policies);
    let key = Key::new(&first, &q, class).unwrap();
    let meta = Meta {
        action: QueryAction::Allow,
        policy: None,
        phase: None,
        rcode: Rcode::NoError,
        cname: None,
    };
    let now = rt.clock.now();
    let response = response_packet(&first);
    cache.insert(
        &key,
        &response,
        meta.clone(),
        rt.generation,
        now,
        Duration::MAX,
    );
    let packet: &'static [u8] =
        Box::leak(query_packet(0xbeef, "www.example.com.").into_boxed_slice());
    let out = Box::leak(Box::new(Vec::with_capacity(1232)));
    // Warm: the same call once, and it is a hit.
    assert_eq!(packet_hit(rt, cache, packet, src, now, out), Some(meta));
    PacketHit {
        rt,
        cache,
        packet,
        src,
        now,
        out,
    }
}

#[library_benchmark]
#[bench::hit(setup = packet_setup)]
fn packet_cache(s: PacketHit) -> Option<Meta> {
    black_box(packet_hit(
        s.rt,
        s.cache,
        black_box(s.packet),
        s.src,
        s.now,
        s.out,
    ))
}

// 3. A domain-list lookup.

/// Lookups per measured call; divide by it for the cost of one. The list hashes with a
/// per-process random seed, so a single lookup's count moved by up to 15% between runs
/// (collisions); over a thousand names hits move by about 0.4% and misses by up to 4%
/// (every miss also probes `com` and one of 13 `exampleN.com`, whose luck is shared).
const LOOKUPS: usize = 1000;

type ListInput = (&'static DomainList, &'static [String]);

/// The list of `NAMES` names and `LOOKUPS` queries, one for every 97th name.
fn list_setup(query: fn(&str) -> String) -> ListInput {
    let text: String = (0..NAMES).map(|i| common::name(i) + "\n").collect();
    let (List::Domain(list), _) = List::parse(ListKind::Domain, ListFormat::Domains, &text) else {
        unreachable!("a domain list")
    };
    let queries = (0..LOOKUPS)
        .map(|i| query(&common::name(i * 97 % NAMES)))
        .collect::<Vec<_>>();
    (leak(list), queries.leak())
}

/// Subdomains of listed names: each found on its second probe.
fn list_hit() -> ListInput {
    let setup = list_setup(|name| format!("www.{name}"));
    assert_eq!(lookups(setup.0, setup.1), LOOKUPS);
    setup
}

/// Siblings of listed names: all five suffixes of each are probed, and miss.
fn list_miss() -> ListInput {
    let setup = list_setup(|name| format!("www.x{name}"));
    assert_eq!(lookups(setup.0, setup.1), 0);
    setup
}

/// How many of `names` `list` matches.
fn lookups(list: &DomainList, names: &[String]) -> usize {
    names
        .iter()
        .filter(|name| list.matches_suffix(black_box(name)))
        .count()
}

#[library_benchmark]
#[bench::suffix_hit_x1000(setup = list_hit)]
#[bench::suffix_miss_x1000(setup = list_miss)]
fn list(setup: ListInput) -> usize {
    black_box(lookups(setup.0, setup.1))
}

// 4. The full path.

struct FullPath {
    rt: &'static Runtime,
    tokio: &'static tokio::runtime::Runtime,
    packet: Vec<u8>,
    src: SocketAddr,
}

/// Steps a listener takes for one datagram, minus the socket: decode, then the pipeline.
fn answer(
    rt: &Runtime,
    tokio: &tokio::runtime::Runtime,
    packet: Vec<u8>,
    src: SocketAddr,
) -> (hickory_server::server::Request, Outcome) {
    let decoded = hickory_server::server::Request::from_bytes(packet, src, Protocol::Udp).unwrap();
    let name = decoded
        .request_info()
        .unwrap()
        .query
        .original()
        .name()
        .clone();
    let req = Request::query(&rt.clock, src.ip(), name, RecordType::A);
    let outcome = tokio.block_on(pipeline::run(
        rt,
        Resolver::Given(&GIVEN),
        Externals::Ask,
        &req,
        &mut (),
    ));
    (decoded, outcome)
}

fn full_path_setup(name: &str, action: QueryAction) -> FullPath {
    let rt = runtime();
    let tokio = leak(
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    );
    let src = SocketAddr::new(common::device_ip(), 53000);
    let packet = query_packet(0xbeef, &format!("{name}."));
    // Warm (lazy statics, tracing call sites), and check the decision.
    let (_, outcome) = answer(rt, tokio, packet.clone(), src);
    assert_eq!(outcome.action, action);
    FullPath {
        rt,
        tokio,
        packet,
        src,
    }
}

fn full_path_allowed() -> FullPath {
    full_path_setup(&common::allowed_query(7), QueryAction::Allow)
}

fn full_path_blocked() -> FullPath {
    full_path_setup(&common::blocked_query(7, NAMES), QueryAction::Block)
}

// Returns what it built, so that dropping it is not counted.
#[library_benchmark]
#[bench::allowed(setup = full_path_allowed)]
#[bench::blocked(setup = full_path_blocked)]
fn full_path(s: FullPath) -> (hickory_server::server::Request, Outcome) {
    black_box(answer(s.rt, s.tokio, black_box(s.packet), s.src))
}

library_benchmark_group!(
    name = instructions,
    benchmarks = [policy, packet_cache, list, full_path]
);

main!(library_benchmark_groups = instructions);
