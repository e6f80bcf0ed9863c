//! A real authoritative upstream for the tests: hickory-server's `Catalog` with in-memory
//! zones parsed from zone-file text, on 127.0.0.1 with an ephemeral port.
//!
//! A thin wrapper counts the queries it receives (to see the cache work) and can be told
//! to go silent (to see timeouts, SERVFAIL + EDE and serve-stale) — the answers themselves
//! are hickory's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::rr::LowerName;
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// The zones every test upstream serves.
pub(crate) const TEST_ZONE: &str = r#"
$ORIGIN test.
$TTL 300
@        3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60
@             IN NS  ns.test.
ns            IN A   127.0.0.1
www           IN A   192.0.2.10
www           IN AAAA 2001:db8::10
alias         IN CNAME www.test.
chain         IN CNAME alias.test.
jp            IN A   192.0.2.55
pt            IN A   198.51.100.7
us            IN A   203.0.113.9
v6de          IN AAAA 2001:db8::77
mixed         IN A   192.0.2.56
mixed         IN A   203.0.113.10
mail          IN MX  10 mx.test.
mx            IN A   192.0.2.25
txt           IN TXT "hello world"
short    2    IN A   192.0.2.20
ads           IN A   192.0.2.30
tracker.ads   IN A   192.0.2.31
good.ads      IN A   192.0.2.32
internal      IN A   192.0.2.40
svc           IN HTTPS 1 . alpn=h2
cloaked       IN CNAME target.cdn.test.
target.cdn    IN A   192.0.2.66
"#;

/// Search-engine zones for safe search.
pub(crate) const SEARCH_ZONES: [&str; 4] = [
    r#"
$ORIGIN google.com.
$TTL 300
@   3600 IN SOA ns.google.com. admin.google.com. 1 3600 600 86400 60
www          IN A 142.250.0.1
forcesafesearch IN A 216.239.38.120
forcesafesearch IN AAAA 2001:4860:4802:32::78
mail         IN A 142.250.0.2
"#,
    r#"
$ORIGIN youtube.com.
$TTL 300
@   3600 IN SOA ns.youtube.com. admin.youtube.com. 1 3600 600 86400 60
www      IN A 142.250.0.3
restrict IN A 216.239.38.120
"#,
    r#"
$ORIGIN bing.com.
$TTL 300
@   3600 IN SOA ns.bing.com. admin.bing.com. 1 3600 600 86400 60
www    IN A 13.107.21.200
strict IN A 204.79.197.220
"#,
    r#"
$ORIGIN example.net.
$TTL 300
@   3600 IN SOA ns.example.net. admin.example.net. 1 3600 600 86400 60
safe  IN A 192.0.2.99
"#,
];

/// A zone with a TXT set too large for a 1232-byte UDP answer.
pub(crate) fn big_zone() -> String {
    let mut z = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60\n",
    );
    for i in 0..40 {
        z.push_str(&format!(
            "@ IN TXT \"record number {i:03} padding padding padding padding padding\"\n"
        ));
    }
    z
}

#[derive(Clone)]
struct Counting {
    catalog: Arc<Catalog>,
    queries: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    flags: Arc<Flags>,
}

/// How many received queries carried the CD header bit and the EDNS DO bit.
#[derive(Default)]
struct Flags {
    cd: AtomicUsize,
    dnssec_ok: AtomicUsize,
    /// The source port of every UDP query, in order.
    udp_ports: std::sync::Mutex<Vec<u16>>,
    /// Every question name as received (with its case), in order.
    names: std::sync::Mutex<Vec<String>>,
    /// Milliseconds to wait before answering.
    delay_ms: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if request.metadata.checking_disabled {
            self.flags.cd.fetch_add(1, Ordering::SeqCst);
        }
        if request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok) {
            self.flags.dnssec_ok.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(q) = request.queries.queries().first() {
            self.flags
                .names
                .lock()
                .unwrap()
                .push(q.original().name().to_ascii());
        }
        let delay = self.flags.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if request.protocol() == hickory_server::net::xfer::Protocol::Udp {
            self.flags
                .udp_ports
                .lock()
                .unwrap()
                .push(request.src().port());
        }
        if self.silent.load(Ordering::SeqCst) {
            // Never answer: the client sees a timeout. Hold the task a little so nothing
            // is sent and nothing spins.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut md = hickory_proto::op::Metadata::response_from_request(&request.metadata);
            md.response_code = hickory_proto::op::ResponseCode::ServFail;
            return ResponseInfo::from(hickory_proto::op::Header {
                metadata: md,
                counts: Default::default(),
            });
        }
        if self.refusing.load(Ordering::SeqCst) {
            // Answer REFUSED, as a server whose ACL leaves us out.
            let mut response_handle = response_handle;
            let builder =
                hickory_server::zone_handler::MessageResponseBuilder::new(&request.queries, None);
            let msg =
                builder.error_msg(&request.metadata, hickory_proto::op::ResponseCode::Refused);
            return response_handle.send_response(msg).await.unwrap();
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// A running test upstream.
pub struct Upstream {
    /// Its address (UDP and TCP).
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    flags: Arc<Flags>,
    _server: Server<Counting>,
}

impl Upstream {
    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Queries received so far with the CD (checking disabled) header bit set.
    pub fn queries_with_cd(&self) -> usize {
        self.flags.cd.load(Ordering::SeqCst)
    }

    /// Queries received so far with the EDNS DO bit set.
    pub fn queries_with_do(&self) -> usize {
        self.flags.dnssec_ok.load(Ordering::SeqCst)
    }

    /// The source ports of the UDP queries received so far, in order.
    pub fn udp_source_ports(&self) -> Vec<u16> {
        self.flags.udp_ports.lock().unwrap().clone()
    }

    /// Stop (or resume) answering.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// Every question name received so far, as spelled in the query.
    pub fn names(&self) -> Vec<String> {
        self.flags.names.lock().unwrap().clone()
    }

    /// Answer every query only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.flags
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answer every query REFUSED (or stop doing so).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }
}

fn zone(text: &str) -> (LowerName, Arc<dyn ZoneHandler>) {
    let (origin, records) = Parser::new(text, None, None)
        .parse()
        .expect("test zone parses");
    let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
        None,
    )
    .expect("test zone loads");
    (LowerName::from(&origin), Arc::new(handler))
}

/// Starts an upstream serving the test zones.
pub(crate) async fn start() -> Upstream {
    let mut catalog = Catalog::new();
    let big = big_zone();
    for text in [TEST_ZONE, big.as_str()].into_iter().chain(SEARCH_ZONES) {
        let (name, h) = zone(text);
        catalog.upsert(name, vec![h]);
    }
    let handler = Counting {
        catalog: Arc::new(catalog),
        queries: Arc::default(),
        silent: Arc::default(),
        refusing: Arc::default(),
        flags: Arc::default(),
    };
    let (queries, silent, refusing, flags) = (
        handler.queries.clone(),
        handler.silent.clone(),
        handler.refusing.clone(),
        handler.flags.clone(),
    );
    let mut server = Server::new(handler);
    // The TCP listener takes the UDP socket's port; if another test holds that TCP port,
    // try another.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65_535);
    Upstream {
        addr,
        queries,
        silent,
        refusing,
        flags,
        _server: server,
    }
}
