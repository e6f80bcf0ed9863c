//! `tls://` upstreams (SPEC §10): dnsgate forwarding over DNS over TLS to a real Unbound
//! DoT listener whose certificate comes from a test CA given as `ca_file`; connections
//! reused; a certificate that does not verify fails closed (SERVFAIL), never plain DNS.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{ede, ips, query};
use crate::dot::{HOSTNAME, certificates};
use crate::gate_with;

/// Unbound answering `www.tls.test` from local data over DoT on 127.0.0.1:`port`.
struct UnboundDot {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for UnboundDot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn unbound_dot(chain: &str, key: &str) -> (UnboundDot, SocketAddr) {
    unbound_tls(chain, key, false, "").await
}

/// Unbound with a DoT listener, or (`https`) a DoH one at `/dns-query`; `extra`: more
/// `server:` lines.
async fn unbound_tls(chain: &str, key: &str, https: bool, extra: &str) -> (UnboundDot, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), chain).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let port = free_port();
    let conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  {listener}: {port}\n  http-endpoint: \"/dns-query\"\n  \
         tls-service-key: \"{d}/key.pem\"\n  tls-service-pem: \"{d}/cert.pem\"\n  \
         do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  pidfile: \"\"\n  \
         use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  access-control: 127.0.0.0/8 allow\n  \
         local-zone: \"tls.test.\" static\n  local-data: \"www.tls.test. 300 IN A 192.0.2.123\"\n  \
         local-zone: \".\" static\n{extra}remote-control:\n  control-enable: no\n",
        d = dir.path().display(),
        listener = if https { "https-port" } else { "tls-port" },
    );
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(crate::unbound::UNBOUND)
        .args(["-d", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unbound starts");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (UnboundDot { child, _dir: dir }, addr)
}

/// A TCP relay to `to` that counts the connections it carried.
async fn counting_relay(
    to: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn forwarding_over_tls_verifies_the_certificate_and_reuses_connections() {
    let (ca, chain, key) = certificates();
    let (_u, unbound) = unbound_dot(&chain, &key).await;
    let (addr, connections) = counting_relay(unbound).await;
    let config = |ca_file: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\n\
             servers = [\"tls://{addr}#{HOSTNAME}\"]\nca_file = \"{ca_file}\"\ntimeout_ms = 2000\n\
             [cache]\nsize = 0\n"
        )
    };
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config("ca.pem"), &[("ca.pem", &ca)]).await;
    for _ in 0..5 {
        let m = query(g.addr, "www.tls.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.123"]);
    }
    // One TLS connection carried the five questions (the cache is off): reused.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A CA that did not sign Unbound's certificate: SERVFAIL (EDE 23), never plain DNS.
    let (other_ca, _, _) = certificates();
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config("other.pem"), &[("other.pem", &other_ca)]).await;
    let m = query(g.addr, "www.tls.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(23));
}

/// Questions asked together share one DoT connection (pipelining: RFC 7858 §3.3), answered
/// out of order; when the server closes it while idle, the next question opens another.
#[tokio::test]
async fn dot_upstream_pipelines_questions_and_reconnects_after_the_server_closes() {
    let (ca, chain, key) = certificates();
    let (_u, unbound) = unbound_tls(&chain, &key, false, "  tcp-idle-timeout: 300\n").await;
    let (addr, connections) = counting_relay(unbound).await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\n\
         servers = [\"tls://{addr}#{HOSTNAME}\"]\nca_file = \"ca.pem\"\ntimeout_ms = 3000\n\
         [cache]\nsize = 0\n"
    );
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config, &[("ca.pem", &ca)]).await;
    let asks = (0..40).map(|i| {
        let name = if i == 0 {
            "www.tls.test.".to_owned()
        } else {
            format!("n{i}.tls.test.")
        };
        async move { (i, query(g.addr, &name, RecordType::A).await) }
    });
    for (i, m) in futures_util::future::join_all(asks).await {
        if i == 0 {
            assert_eq!(ips(&m), ["192.0.2.123"]);
        } else {
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "n{i}: {m:?}"
            );
        }
    }
    // Forty questions at once, one connection: they were pipelined, not queued for
    // connections of their own.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Unbound closes the idle connection after 300 ms; the next question still gets its
    // answer, over a second connection.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let m = query(g.addr, "www.tls.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.123"]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A certificate for `name` from a fresh test CA: (CA PEM, chain PEM, key PEM).
pub(crate) fn certificate_for(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: with rcgen's default the leaf's issuer would equal its subject,
    // which OpenSSL (dig, curl) takes for a self-signed certificate.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "dnsgate test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// An `https://` upstream named by host: its address found through the plain upstream
/// (`ns.test` is 127.0.0.1 in the test zone), then RFC 8484 POSTs to Unbound's DoH
/// listener over one kept HTTP/2 connection.
#[tokio::test]
async fn forwarding_over_https_bootstraps_the_host_and_keeps_the_connection() {
    let (ca, chain, key) = certificate_for("ns.test");
    let (_u, unbound) = unbound_tls(&chain, &key, true, "").await;
    let (addr, connections) = counting_relay(unbound).await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\n\
         servers = [\"udp://{{UPSTREAM}}\"]\nca_file = \"ca.pem\"\ntimeout_ms = 2000\n\
         [cache]\nsize = 0\n\n\
         [[policies]]\nname = \"doh\"\naction = \"resolve\"\n\
         upstreams = [\"https://ns.test:{}/dns-query\"]\n\
         traffic = 'any(dns.domains[*] == \"tls.test\")'\n",
        addr.port()
    );
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config, &[("ca.pem", &ca)]).await;
    for _ in 0..5 {
        let m = query(g.addr, "www.tls.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.123"], "{m:?}");
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The plain upstream still answers the rest.
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    // A CA that did not sign Unbound's certificate: SERVFAIL with EDE 23 (the plain
    // upstream, asked instead, would have said NXDOMAIN: it has no tls.test).
    let (other_ca, _, _) = certificate_for("ns.test");
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config, &[("ca.pem", &other_ca)]).await;
    let m = query(g.addr, "www.tls.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(23));
}
