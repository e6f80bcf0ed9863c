//! DNS over HTTPS (SPEC §10, RFC 8484): GET and POST, HTTP/2 and HTTP/1.1 with a real
//! client (reqwest over rustls, trusting a test CA), DNS errors as HTTP 200, the cache
//! lifetime header, and the device named by a path token or a host label.

use std::net::SocketAddr;
use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::client::{Opts, build, ede, ips};
use crate::dot::{HOSTNAME, IDENTITIES, KID_LABEL, certificates};
use crate::{Gate, gate_with};

const TOKEN: &str = "laptop-token-9q8w7e6r";
const OFFICE_TOKEN: &str = "office-token-5t6y7u8i";
const OFFICE_LABEL: &str = "office-label-a1b2c3d4e5";

async fn doh_gate(extra: &str, tls: &(String, String, String)) -> Gate {
    let identities = IDENTITIES.replace(
        "id = \"laptop\"\n",
        &format!("id = \"laptop\"\ndoh_token = \"{TOKEN}\"\n"),
    ) + &format!(
        "\n[[locations]]\nname = \"office\"\nnetworks = [\"192.168.77.0/24\"]\n\
         doh_token = \"{OFFICE_TOKEN}\"\ndot_name = \"{OFFICE_LABEL}\"\n"
    );
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{HOSTNAME}\"\n\
         doh = {{ listen = [\"127.0.0.1:0\"], cert = \"cert.pem\", key = \"key.pem\" }}\n{extra}\n\
         [upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\ntimeout_ms = 1000\n\n\
         [identity]\ndirectory = \"identities.toml\"\n\n\
         [[policies]]\nname = \"kids\"\naction = \"block\"\n\
         traffic = '(identity.device_id == \"kidphone\" or identity.device_id == \"laptop\") and dns.fqdn == \"www.test\"'\n\n\
         [[policies]]\nname = \"office\"\naction = \"block\"\n\
         traffic = 'dns.location == \"office\" and dns.fqdn == \"mail.test\"'\n"
    );
    let up = crate::upstream::start().await;
    gate_with(
        up,
        &config,
        &[
            ("identities.toml", &identities),
            ("cert.pem", &tls.1),
            ("key.pem", &tls.2),
        ],
    )
    .await
}

/// A DoH client trusting `ca`, sending every `*.HOSTNAME` and `HOSTNAME` to `addr`.
fn client(ca: &str, addr: SocketAddr, labels: &[&str], http1: bool) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if http1 {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve(HOSTNAME, addr);
    for l in labels {
        b = b.resolve(&format!("{l}.{HOSTNAME}"), addr);
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

fn query(name: &str) -> Vec<u8> {
    build(
        name,
        RecordType::A,
        Opts {
            edns: Some(1232),
            ..Opts::default()
        },
    )
    .1
}

async fn get(
    c: &reqwest::Client,
    host: &str,
    port: u16,
    path: &str,
    name: &str,
) -> reqwest::Response {
    let url = format!(
        "https://{host}:{port}{path}?dns={}",
        BASE64URL_NOPAD.encode(&query(name))
    );
    c.get(url).send().await.unwrap()
}

async fn post(
    c: &reqwest::Client,
    host: &str,
    port: u16,
    path: &str,
    name: &str,
) -> reqwest::Response {
    c.post(format!("https://{host}:{port}{path}"))
        .header("content-type", "application/dns-message")
        .body(query(name))
        .send()
        .await
        .unwrap()
}

async fn dns(r: reqwest::Response) -> Message {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dns-message");
    Message::from_vec(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn get_and_post_over_http2_and_http1() {
    let tls = certificates();
    let g = doh_gate("", &tls).await;
    let addr = g.running.doh_addrs[0];
    for http1 in [false, true] {
        let c = client(&tls.0, addr, &[], http1);
        let r = get(&c, HOSTNAME, addr.port(), "/dns-query", "www.test.").await;
        assert_eq!(
            r.version(),
            if http1 {
                reqwest::Version::HTTP_11
            } else {
                reqwest::Version::HTTP_2
            }
        );
        let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
        let m = dns(r).await;
        assert_eq!(ips(&m), ["192.0.2.10"]);
        assert!(cache.starts_with("private, max-age="), "{cache}");
        let age: u32 = cache.rsplit('=').next().unwrap().parse().unwrap();
        assert!(age > 0 && age <= 300, "{cache}");
        let m = dns(post(&c, HOSTNAME, addr.port(), "/dns-query", "www.test.").await).await;
        assert_eq!(ips(&m), ["192.0.2.10"]);
        // A DNS error is still HTTP 200, carrying the rcode.
        let m = dns(get(
            &c,
            HOSTNAME,
            addr.port(),
            "/dns-query",
            "nothing-here.test.",
        )
        .await)
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    // Not DNS: HTTP errors.
    let c = client(&tls.0, addr, &[], false);
    let r = c
        .get(format!(
            "https://{HOSTNAME}:{}/dns-query?dns=%%%",
            addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("https://{HOSTNAME}:{}/other", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("https://{HOSTNAME}:{}/dns-query", addr.port()))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn the_path_token_or_host_label_names_the_device() {
    let tls = certificates();
    let g = doh_gate("allow_networks = [\"10.0.0.0/8\"]\n", &tls).await;
    let addr = g.running.doh_addrs[0];
    let port = addr.port();
    let c = client(&tls.0, addr, &[KID_LABEL, "laptop", "stranger"], false);
    // From outside allow_networks, with nothing naming a device: refused (HTTP 200).
    let m = dns(get(&c, HOSTNAME, port, "/dns-query", "www.test.").await).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // A token is a secret: in, and the laptop's policy applies.
    let m = dns(get(
        &c,
        HOSTNAME,
        port,
        &format!("/dns-query/{TOKEN}"),
        "www.test.",
    )
    .await)
    .await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // A wrong token: REFUSED + EDE 18.
    let m = dns(get(&c, HOSTNAME, port, "/dns-query/wrong-token", "www.test.").await).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(ede(&m).map(|e| e.0), Some(18));
    // The host label: a dot_name comes in, a bare id does not.
    let m = dns(get(
        &c,
        &format!("{KID_LABEL}.{HOSTNAME}"),
        port,
        "/dns-query",
        "www.test.",
    )
    .await)
    .await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let m = dns(get(
        &c,
        &format!("laptop.{HOSTNAME}"),
        port,
        "/dns-query",
        "www.test.",
    )
    .await)
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

/// Answers replayed from the packet cache over DoH are the ones the pipeline gives this
/// device: the laptop's token keeps its block, the address alone its answer, however they
/// alternate; a wrong token is refused even for a question in the cache.
#[tokio::test]
async fn replays_keep_devices_apart_and_never_let_a_wrong_token_in() {
    let tls = certificates();
    let g = doh_gate("", &tls).await;
    let addr = g.running.doh_addrs[0];
    let c = client(&tls.0, addr, &[], false);
    let port = addr.port();
    let token_path = format!("/dns-query/{TOKEN}");
    for round in 0..3 {
        let m = dns(post(&c, HOSTNAME, port, "/dns-query", "www.test.").await).await;
        assert_eq!(ips(&m), ["192.0.2.10"], "round {round}: by address");
        let m = dns(get(&c, HOSTNAME, port, &token_path, "www.test.").await).await;
        assert_eq!(ips(&m), ["0.0.0.0"], "round {round}: the laptop");
    }
    let m = dns(get(&c, HOSTNAME, port, "/dns-query/wrong-token", "www.test.").await).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(ede(&m).map(|e| e.0), Some(18));
    // A UDP client shares the address's answer.
    assert_eq!(
        ips(&crate::client::query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

#[tokio::test]
async fn a_token_or_label_may_name_a_location() {
    let tls = certificates();
    let g = doh_gate("allow_networks = [\"10.0.0.0/8\"]\n", &tls).await;
    let addr = g.running.doh_addrs[0];
    let port = addr.port();
    let c = client(&tls.0, addr, &[OFFICE_LABEL], false);
    // The office's URL: its policy (dns.location), from anywhere.
    let path = format!("/dns-query/{OFFICE_TOKEN}");
    let m = dns(get(&c, HOSTNAME, port, &path, "mail.test.").await).await;
    assert_eq!(ips(&m), ["0.0.0.0"], "{m:?}");
    let m = dns(get(&c, HOSTNAME, port, &path, "www.test.").await).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    let host = format!("{OFFICE_LABEL}.{HOSTNAME}");
    let m = dns(get(&c, &host, port, "/dns-query", "mail.test.").await).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
}

/// Tokens are secrets: the query log names the device, never the token.
#[tokio::test]
async fn the_query_log_names_the_device_not_the_token() {
    let tls = certificates();
    let g = doh_gate("[querylog]\npath = \"queries.jsonl\"\n", &tls).await;
    let addr = g.running.doh_addrs[0];
    let c = client(&tls.0, addr, &[], false);
    let path = format!("/dns-query/{TOKEN}");
    let m = dns(get(&c, HOSTNAME, addr.port(), &path, "www.test.").await).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let log = g.dir.path().join("queries.jsonl");
    let lines = crate::query_log(&log, |l| !l.is_empty()).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["device"], "laptop", "{lines:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN), "{text}");
}

/// A DoH connection with no request for `tcp_idle_timeout_ms` is closed (HTTP/1.1 here;
/// HTTP/2 gets a GOAWAY first), not before.
#[tokio::test]
async fn an_idle_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = certificates();
    let g = doh_gate("tcp_idle_timeout_ms = 400\n", &tls).await;
    let addr = g.running.doh_addrs[0];
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.0.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOSTNAME).unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let request = format!(
        "GET /dns-query?dns={} HTTP/1.1\r\nhost: {HOSTNAME}\r\n\r\n",
        BASE64URL_NOPAD.encode(&query("www.test."))
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Kept open while it is not idle for long...
    let answered = std::time::Instant::now();
    let end = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), end)
        .await
        .expect("closed within 3 s of idling");
    // ...and closed once it is.
    let after = answered.elapsed();
    assert!(
        after >= std::time::Duration::from_millis(300),
        "closed after {after:?}"
    );
}
