//! Unbound (Debian package `unbound`, /usr/sbin/unbound) as a recursive resolver over a
//! loopback [`Hierarchy`]: a real peer that shows the hierarchy is a valid one, and a
//! reference for differential runs against our own resolver.
//!
//! It is given only the hierarchy's loopback root hints, listens on and sends from an
//! address of the hierarchy's 127.N.255.0/24 (a socket bound to a loopback address
//! cannot reach the Internet), and is killed when the handle drops.

// An API for other tests: not all of it is used here.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::client;
use crate::hierarchy::{self, Hierarchy, Mode, dname_target};

/// Where Debian puts it.
pub(crate) const UNBOUND: &str = "/usr/sbin/unbound";

/// How to run Unbound.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    /// `None`: `module-config: "iterator"`. `Some(anchors)`: `"validator iterator"` with
    /// `anchors` (zone-file lines of DS or DNSKEY records) as its `trust-anchor-file`.
    pub(crate) trust_anchors: Option<String>,
    /// More `server:` lines, e.g. `"use-caps-for-id: yes"`.
    pub(crate) extra: Vec<String>,
    /// Unbound's `verbosity` (0 is errors only; 1 is the default here).
    pub(crate) verbosity: Option<u8>,
    /// `unknown-server-time-limit`: how long it waits for a server it has no RTT for
    /// before trying another (Unbound's default 376 ms; 128 here, so that a dead or slow
    /// server costs little on loopback).
    pub(crate) unknown_server_ms: Option<u32>,
}

/// A running Unbound. Killed (by its PID) on drop.
pub(crate) struct Unbound {
    /// Where to send queries (UDP and TCP, port 53).
    pub(crate) addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts Unbound over `h` on a fresh [`Hierarchy::client_addr`], port 53, and waits
    /// (at most 5 s) until it takes TCP connections. Panics if it is not installed or
    /// does not come up (its log in the message).
    pub(crate) async fn start(h: &Hierarchy, cfg: Config) -> Self {
        assert!(
            std::path::Path::new(UNBOUND).exists(),
            "{UNBOUND} is missing: apt-get install unbound"
        );
        let ip = h.client_addr();
        let addr = SocketAddr::from((ip, 53));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("root.hints"), h.root_hints()).unwrap();
        let modules = match &cfg.trust_anchors {
            None => "iterator".to_string(),
            Some(anchors) => {
                std::fs::write(d.join("anchors"), anchors).unwrap();
                format!(
                    "validator iterator\"\n    trust-anchor-file: \"{}",
                    d.join("anchors").display()
                )
            }
        };
        let mut conf = format!(
            r#"server:
    verbosity: {verbosity}
    interface: {ip}
    port: 53
    outgoing-interface: {ip}
    access-control: 127.0.0.0/8 allow
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    directory: "{dir}"
    logfile: ""
    use-syslog: no
    log-time-ascii: yes
    log-servfail: yes
    num-threads: 1
    so-reuseport: no
    outgoing-range: 64
    num-queries-per-thread: 32
    msg-cache-size: 1m
    rrset-cache-size: 1m
    key-cache-size: 1m
    neg-cache-size: 256k
    infra-cache-numhosts: 100
    root-hints: "{dir}/root.hints"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    local-zone: "example." nodefault
    qname-minimisation: yes
    prefetch: no
    unknown-server-time-limit: {unknown_ms}
    trust-anchor-signaling: no
    root-key-sentinel: no
    module-config: "{modules}"
"#,
            verbosity = cfg.verbosity.unwrap_or(1),
            unknown_ms = cfg.unknown_server_ms.unwrap_or(128),
            dir = d.display(),
        );
        for line in &cfg.extra {
            conf.push_str(&format!("    {line}\n"));
        }
        conf.push_str("remote-control:\n    control-enable: no\n");
        std::fs::write(d.join("unbound.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("unbound.log")).unwrap();
        let child = Command::new(UNBOUND)
            .arg("-d")
            .arg("-c")
            .arg(d.join("unbound.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unbound starts");
        let mut me = Self { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = me.child.try_wait().unwrap() {
                panic!("unbound exited ({status}):\n{}", me.log());
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unbound not up in 5 s:\n{}",
                me.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }

    /// Its configuration file.
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("unbound.conf")
    }

    /// Asks it (UDP, RD, EDNS 1232; panics after 10 s).
    pub(crate) async fn query(&self, name: &str, qtype: RecordType) -> Message {
        client::query(self.addr, name, qtype).await
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The answer's records as (owner, type, data) strings, DNAME targets decoded.
pub(crate) fn answer_summary(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .map(|r| {
            let data = dname_target(r)
                .map(|t| t.to_ascii())
                .unwrap_or_else(|| r.data.to_string());
            format!("{} {} {}", r.name.to_ascii(), r.record_type(), data)
        })
        .collect()
}

/// The SOA owner of the authority section, if any.
fn soa_owner(msg: &Message) -> Option<String> {
    msg.authorities
        .iter()
        .find(|r| matches!(r.data, RData::SOA(_)))
        .map(|r| r.name.to_ascii())
}

async fn up(net: u8) -> (Hierarchy, Unbound) {
    up_with(net, Config::default()).await
}

async fn up_with(net: u8, cfg: Config) -> (Hierarchy, Unbound) {
    let h = Hierarchy::start(net).await;
    let u = Unbound::start(&h, cfg).await;
    (h, u)
}

#[tokio::test]
async fn unbound_follows_referrals_with_glue() {
    let (h, u) = up(211).await;
    let r = u.query("www.sub.test.", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "{}",
        u.log()
    );
    assert_eq!(client::ips(&r), ["192.0.2.10"]);
    // The child answered, found through the root and the TLD; QNAME minimisation: the
    // root never saw the full name, only `test.` (and the priming `.`).
    assert!(h.server("ns1.sub.test.").queries() > 0);
    let root: Vec<String> = h
        .seen()
        .into_iter()
        .filter(|(host, _)| host.ends_with("root-servers.test."))
        .map(|(_, s)| s.name.to_ascii_lowercase())
        .collect();
    assert!(!root.is_empty());
    assert!(
        root.iter().all(|n| n == "." || n == "test."),
        "root saw {root:?}"
    );
    // Everything it sent came from its own address.
    let src = u.addr.ip();
    assert!(h.seen().iter().all(|(_, s)| s.src.ip() == src));
}

#[tokio::test]
async fn unbound_resolves_out_of_bailiwick_ns_names() {
    let (h, u) = up(212).await;
    let r = u.query("www.far.test.", RecordType::A).await;
    assert_eq!(client::ips(&r), ["192.0.2.40"], "{}", u.log());
    // It had to look the NS names up in example. itself: no glue for them.
    let asked: Vec<String> = h
        .server("ns1.example.")
        .names()
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    assert!(
        asked.iter().any(|n| n.ends_with("hosting.example.")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn unbound_skips_lame_and_dead_servers() {
    let (h, u) = up(213).await;
    let r = u.query("www.lame.test.", RecordType::A).await;
    assert_eq!(client::ips(&r), ["192.0.2.50"], "{}", u.log());
    assert!(h.server("ns2.lame.test.").queries() > 0);
    let r = u.query("www.dead.test.", RecordType::A).await;
    assert_eq!(client::ips(&r), ["192.0.2.60"], "{}", u.log());

    // The other lame kind: an upward referral.
    h.server("ns1.lame.test.").set_mode(Mode::Lame);
    let r = u.query("txt.lame.test.", RecordType::TXT).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
}

#[tokio::test]
async fn unbound_survives_a_dead_root_and_slow_servers() {
    let (h, u) = up(214).await;
    h.server("b.root-servers.test.").set_silent(true);
    let t = Instant::now();
    // Asked again after 4 s as a stub resolver would: Unbound may spend that long on the
    // silent root and slow servers when the machine is busy.
    let ask = |name: &'static str| {
        let u = &u;
        async move {
            for _ in 0..3 {
                if let Ok(r) =
                    tokio::time::timeout(Duration::from_secs(4), u.query(name, RecordType::A)).await
                {
                    return r;
                }
            }
            panic!("no answer for {name} in 12 s: {}", u.log());
        }
    };
    let r = ask("www.slow.test.").await;
    assert_eq!(client::ips(&r), ["192.0.2.70"], "{}", u.log());
    let r = ask("www.late.test.").await;
    assert_eq!(client::ips(&r), ["192.0.2.80"], "{}", u.log());
    assert!(
        h.server("ns1.late.test.").queries() > 0,
        "late.test. has only the slow server"
    );
    assert!(t.elapsed() < Duration::from_secs(24), "{:?}", t.elapsed());
}

#[tokio::test]
async fn unbound_follows_cnames_across_zones() {
    let (_h, u) = up(215).await;
    let r = u.query("alias.test.", RecordType::A).await;
    assert_eq!(
        answer_summary(&r),
        [
            "alias.test. CNAME www.sub.test.",
            "www.sub.test. A 192.0.2.10"
        ],
        "{}",
        u.log()
    );
    let r = u.query("chain.test.", RecordType::A).await;
    assert_eq!(client::cnames(&r), ["alias.test.", "www.sub.test."]);
    assert_eq!(client::ips(&r), ["192.0.2.10"]);
    let r = u.query("x.example.", RecordType::A).await;
    assert_eq!(
        answer_summary(&r),
        ["x.example. CNAME y.far.test.", "y.far.test. A 192.0.2.41"]
    );
}

#[tokio::test]
async fn unbound_follows_a_dname() {
    let (_h, u) = up(216).await;
    let r = u.query("www.old.test.", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "{}",
        u.log()
    );
    assert_eq!(
        answer_summary(&r),
        [
            "old.test. DNAME new.example.",
            "www.old.test. CNAME www.new.example.",
            "www.new.example. A 192.0.2.30",
        ]
    );
    let r = u.query("nx.old.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(client::cnames(&r), ["nx.new.example."]);
    assert_eq!(soa_owner(&r).as_deref(), Some("example."));
}

#[tokio::test]
async fn unbound_fails_a_cname_loop() {
    let (_h, u) = up(217).await;
    let r = u.query("loop1.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{r:?}");
}

#[tokio::test]
async fn unbound_gives_negative_answers_with_soa() {
    let (_h, u) = up(218).await;
    let r = u.query("nx.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&r).as_deref(), Some("test."));
    let r = u.query("nodata.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(soa_owner(&r).as_deref(), Some("test."));
    let r = u.query("nx.sub.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&r).as_deref(), Some("sub.test."));
    let r = u.query("nosuchtld.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&r).as_deref(), Some("."));
}

#[tokio::test]
async fn unbound_answers_the_corpus() {
    let (h, u) = up_with(
        219,
        Config {
            extra: vec!["use-caps-for-id: yes".into()],
            ..Default::default()
        },
    )
    .await;
    let t = Instant::now();
    let mut wrong = Vec::new();
    for q in hierarchy::corpus() {
        let res = tokio::time::timeout(Duration::from_secs(3), u.query(q.name, q.qtype)).await;
        let Ok(r) = res else {
            wrong.push(format!(
                "{} {} ({}): no answer in 3 s",
                q.name, q.qtype, q.what
            ));
            continue;
        };
        let data = r.answers.iter().any(|a| a.record_type() == q.qtype);
        if r.metadata.response_code != q.rcode || data != q.data {
            wrong.push(format!(
                "{} {} ({}): {} {:?}",
                q.name,
                q.qtype,
                q.what,
                r.metadata.response_code,
                answer_summary(&r)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", u.log());
    // 0x20: the servers saw names in mixed case.
    assert!(
        h.seen()
            .iter()
            .any(|(_, s)| s.name.chars().any(|c| c.is_ascii_uppercase())),
        "use-caps-for-id"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[tokio::test]
async fn unbound_validator_variant_needs_signed_zones() {
    // The hierarchy is unsigned: under a root trust anchor everything is bogus. This
    // only shows that the "validator iterator" variant runs; signed zones are for later.
    let anchor =
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n";
    let (_h, u) = up_with(
        220,
        Config {
            trust_anchors: Some(anchor.into()),
            extra: vec!["val-log-level: 2".into()],
            ..Default::default()
        },
    )
    .await;
    let r = u.query("www.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(u.log().contains("validation failure"), "{}", u.log());
    assert!(
        std::fs::read_to_string(u.config_path())
            .unwrap()
            .contains("validator iterator")
    );
}
