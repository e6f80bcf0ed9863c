//! DNS over TLS (SPEC §10): a test CA made here (rcgen), a real TLS client (rustls), the
//! device named by the SNI label, `unknown_client`, who may come in from outside
//! `allow_networks`, and a certificate swapped by a reload.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{Opts, build, ede, ips};
use crate::{Gate, gate_with};

pub(crate) const HOSTNAME: &str = "dns.gate.test";
/// A secret label (16 characters or more).
pub(crate) const KID_LABEL: &str = "kidsphone-7f3a9c2e1b";

/// A CA and a server certificate for `HOSTNAME` and `*.HOSTNAME`: (CA PEM, chain PEM,
/// key PEM).
pub(crate) fn certificates() -> (String, String, String) {
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
    let leaf = CertificateParams::new(vec![HOSTNAME.to_owned(), format!("*.{HOSTNAME}")])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

pub(crate) const IDENTITIES: &str = r#"
[[users]]
email = "kid@example.com"
name = "kid"

[[devices]]
id = "kidphone"
user = "kid@example.com"
dot_name = "kidsphone-7f3a9c2e1b"

[[devices]]
id = "laptop"
"#;

/// A gate with a DoT listener; `extra` goes into `[server]`.
async fn dot_gate(extra: &str, tls: &(String, String, String)) -> Gate {
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{HOSTNAME}\"\n\
         dot = {{ listen = [\"127.0.0.1:0\"], cert = \"cert.pem\", key = \"key.pem\" }}\n{extra}\n\
         [upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\ntimeout_ms = 1000\n\n\
         [identity]\ndirectory = \"identities.toml\"\n\n\
         [[policies]]\nname = \"kids\"\naction = \"block\"\n\
         traffic = 'identity.device_id == \"kidphone\" and dns.fqdn == \"www.test\"'\n"
    );
    let up = crate::upstream::start().await;
    gate_with(
        up,
        &config,
        &[
            ("identities.toml", IDENTITIES),
            ("cert.pem", &tls.1),
            ("key.pem", &tls.2),
        ],
    )
    .await
}

/// One query over DoT to `addr`, with `sni` as the server name, trusting `ca`.
async fn dot_query(addr: SocketAddr, sni: &str, ca: &str, name: &str) -> Result<Message, String> {
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
    config.alpn_protocols = vec![b"dot".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, wire) = build(
        name,
        RecordType::A,
        Opts {
            edns: Some(1232),
            ..Opts::default()
        },
    );
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    tls.write_all(&framed).await.map_err(|e| e.to_string())?;
    let read = async {
        let len = tls.read_u16().await?;
        let mut body = vec![0u8; usize::from(len)];
        tls.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| "no answer in 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    Message::from_vec(&body).map_err(|e| e.to_string())
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn dot_answers_and_the_sni_label_names_the_device() {
    let tls = certificates();
    let g = dot_gate("", &tls).await;
    let addr = g.running.dot_addrs[0];
    // The bare host name: no device; answered.
    let m = dot_query(addr, HOSTNAME, &tls.0, "www.test.")
        .await
        .unwrap();
    assert_eq!(ips(&m), ["192.0.2.10"]);
    // The kid's phone, by its dot_name: its policy applies.
    let m = dot_query(
        addr,
        &format!("{KID_LABEL}.{HOSTNAME}"),
        &tls.0,
        "www.test.",
    )
    .await
    .unwrap();
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // Labels are case-insensitive.
    let m = dot_query(
        addr,
        &format!("KidsPhone-7F3A9C2E1B.{HOSTNAME}"),
        &tls.0,
        "www.test.",
    )
    .await
    .unwrap();
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // A label naming nobody: REFUSED + EDE 18.
    let m = dot_query(addr, &format!("stranger.{HOSTNAME}"), &tls.0, "www.test.")
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(ede(&m).map(|e| e.0), Some(18));
    // A certificate the client does not trust: no answer at all.
    let (other_ca, _, _) = certificates();
    assert!(
        dot_query(addr, HOSTNAME, &other_ca, "www.test.")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unknown_labels_may_be_served_anonymously() {
    let tls = certificates();
    let g = dot_gate("unknown_client = \"anonymous\"\n", &tls).await;
    let m = dot_query(
        g.running.dot_addrs[0],
        &format!("stranger.{HOSTNAME}"),
        &tls.0,
        "www.test.",
    )
    .await
    .unwrap();
    assert_eq!(ips(&m), ["192.0.2.10"]);
}

#[tokio::test]
async fn only_a_dot_name_lets_a_client_outside_allow_networks_in() {
    let tls = certificates();
    let g = dot_gate("allow_networks = [\"10.0.0.0/8\"]\n", &tls).await;
    let addr = g.running.dot_addrs[0];
    // 127.0.0.1 is outside: no label, or a label that is only a device id, is refused.
    let m = dot_query(addr, HOSTNAME, &tls.0, "www.test.")
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = dot_query(addr, &format!("laptop.{HOSTNAME}"), &tls.0, "www.test.")
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // The secret dot_name comes in (a phone on a mobile network).
    let m = dot_query(
        addr,
        &format!("{KID_LABEL}.{HOSTNAME}"),
        &tls.0,
        "mail.test.",
    )
    .await
    .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_for_the_next_handshake() {
    let tls = certificates();
    let g = dot_gate("", &tls).await;
    let addr = g.running.dot_addrs[0];
    assert!(dot_query(addr, HOSTNAME, &tls.0, "www.test.").await.is_ok());
    let new = certificates();
    std::fs::write(g.dir.path().join("cert.pem"), &new.1).unwrap();
    std::fs::write(g.dir.path().join("key.pem"), &new.2).unwrap();
    g.running.shared.reload().await.unwrap();
    assert!(dot_query(addr, HOSTNAME, &new.0, "www.test.").await.is_ok());
    assert!(
        dot_query(addr, HOSTNAME, &tls.0, "www.test.")
            .await
            .is_err()
    );
    // A bad certificate is rejected by the reload; the one in service stays.
    std::fs::write(g.dir.path().join("cert.pem"), "not a certificate").unwrap();
    assert!(g.running.shared.reload().await.is_err());
    assert!(dot_query(addr, HOSTNAME, &new.0, "www.test.").await.is_ok());
}

/// A gate with DoT and DoH listeners on one certificate, and the test CA written beside
/// its configuration (the path returned).
async fn dot_and_doh_gate(tls: &(String, String, String)) -> (Gate, std::path::PathBuf) {
    let g = dot_gate("", tls).await;
    let text = std::fs::read_to_string(g.config_path()).unwrap().replacen(
        "dot = {",
        "doh = { listen = [\"127.0.0.1:0\"], cert = \"cert.pem\", key = \"key.pem\" }\ndot = {",
        1,
    );
    let up = crate::upstream::start().await;
    let text = text.replace(&g.upstream.addr.to_string(), &up.addr.to_string());
    drop(g);
    let g = gate_with(
        up,
        &text,
        &[
            ("identities.toml", IDENTITIES),
            ("cert.pem", &tls.1),
            ("key.pem", &tls.2),
        ],
    )
    .await;
    let ca = g.dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.0).unwrap();
    (g, ca)
}

/// Runs `program` with `args` (10 s at most) beside the server, which shares this test's
/// runtime and must not be blocked; its standard output.
async fn run(program: &str, args: Vec<String>) -> String {
    let out = tokio::process::Command::new("timeout")
        .arg("10")
        .arg(program)
        .args(args)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with how to install `program` when it is missing (`.ci/run` installs it).
fn require(program: &str, package: &str) {
    if std::process::Command::new(program)
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("{program} is missing: apt-get install {package} (.ci/run installs it)");
    }
}

/// kdig (knot-dnsutils), a real DoT and DoH client: the certificate verified against the
/// test CA and the host name, the device named by the SNI label.
#[tokio::test]
async fn kdig_speaks_dot_and_doh_to_dnsgate() {
    require("kdig", "knot-dnsutils");
    let tls = certificates();
    let (g, ca) = dot_and_doh_gate(&tls).await;
    let kdig = |args| run("kdig", args);
    let dot = g.running.dot_addrs[0];
    let common = |addr: std::net::SocketAddr| {
        vec![
            format!("@{}", addr.ip()),
            "-p".into(),
            addr.port().to_string(),
            format!("+tls-ca={}", ca.display()),
            format!("+tls-hostname={HOSTNAME}"),
            "+short".into(),
        ]
    };
    let mut args = common(dot);
    args.extend(["www.test".into(), "A".into()]);
    assert_eq!(kdig(args).await.trim(), "192.0.2.10");
    let mut args = common(dot);
    args.extend([
        format!("+tls-sni={KID_LABEL}.{HOSTNAME}"),
        "www.test".into(),
        "A".into(),
    ]);
    assert_eq!(
        kdig(args).await.trim(),
        "0.0.0.0",
        "the kid's phone, by its SNI label"
    );
    let doh = g.running.doh_addrs[0];
    for method in [None, Some("+https-get")] {
        let mut args = common(doh);
        args.push(format!("+https=https://{HOSTNAME}/dns-query"));
        args.extend(method.map(str::to_owned));
        args.extend(["www.test".into(), "A".into()]);
        assert_eq!(kdig(args).await.trim(), "192.0.2.10", "DoH {method:?}");
    }
}

/// BIND's dig (`+tls`, `+https`, `+https-get`) verifying the certificate against the test
/// CA, and curl resolving a web server's name through dnsgate's DoH (`--doh-url`); a
/// wrong path token leaves curl without an address.
#[tokio::test]
async fn dig_and_curl_speak_dot_and_doh_to_dnsgate() {
    require("dig", "dnsutils");
    require("curl", "curl");
    let tls = certificates();
    let (g, ca) = dot_and_doh_gate(&tls).await;
    let dot = g.running.dot_addrs[0];
    let doh = g.running.doh_addrs[0];
    let dig = |addr: SocketAddr, transport: &[&str]| {
        let mut args = vec![
            format!("@{}", addr.ip()),
            "-p".into(),
            addr.port().to_string(),
            format!("+tls-ca={}", ca.display()),
            format!("+tls-hostname={HOSTNAME}"),
            "+short".into(),
        ];
        args.extend(transport.iter().map(|&a| a.to_owned()));
        args.extend(["www.test".into(), "A".into()]);
        run("dig", args)
    };
    assert_eq!(dig(dot, &["+tls"]).await.trim(), "192.0.2.10", "dig +tls");
    assert_eq!(
        dig(doh, &["+https"]).await.trim(),
        "192.0.2.10",
        "dig +https"
    );
    assert_eq!(
        dig(doh, &["+https-get"]).await.trim(),
        "192.0.2.10",
        "dig +https-get"
    );
    // A wrong CA: dig refuses the server (no answer), it does not fall back.
    let (other_ca, _, _) = certificates();
    let other = g.dir.path().join("other.pem");
    std::fs::write(&other, other_ca).unwrap();
    let mut args = vec![
        format!("@{}", dot.ip()),
        "-p".into(),
        dot.port().to_string(),
        format!("+tls-ca={}", other.display()),
        format!("+tls-hostname={HOSTNAME}"),
        "+short".into(),
        "+tries=1".into(),
        "www.test".into(),
    ];
    args.push("A".into());
    assert!(!run("dig", args).await.contains("192.0.2.10"));

    // A web server on loopback, named `ns.test` (127.0.0.1) in the upstream's zone.
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_port = web.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = web.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello\n",
                    )
                    .await;
            });
        }
    });
    let curl = |path: &str| {
        run(
            "curl",
            vec![
                "-s".into(),
                "--cacert".into(),
                ca.display().to_string(),
                // The DoH server's own name, pinned: curl would ask the system for it.
                "--resolve".into(),
                format!("{HOSTNAME}:{}:127.0.0.1", doh.port()),
                "--doh-url".into(),
                format!("https://{HOSTNAME}:{}{path}", doh.port()),
                format!("http://ns.test:{web_port}/"),
            ],
        )
    };
    assert_eq!(curl("/dns-query").await, "hello\n", "curl --doh-url");
    // Through a wrong token the name is refused: curl cannot resolve it, so no page.
    assert_eq!(curl("/dns-query/wrong-token").await, "", "a wrong token");
}

/// A free loopback TCP port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// DDR (RFC 9462): `_dns.resolver.arpa SVCB` names the DoH and DoT endpoints, with the
/// address the query came to as the hint; `resolver.arpa` never goes upstream.
#[tokio::test]
async fn ddr_names_the_encrypted_endpoints() {
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
    let tls = certificates();
    let (dot_port, doh_port) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{HOSTNAME}\"\n\
         dot = {{ listen = [\"127.0.0.1:{dot_port}\"], cert = \"cert.pem\", key = \"key.pem\" }}\n\
         doh = {{ listen = [\"127.0.0.1:{doh_port}\"], cert = \"cert.pem\", key = \"key.pem\" }}\n\n\
         [upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\ntimeout_ms = 1000\n"
    );
    let up = crate::upstream::start().await;
    let g = gate_with(up, &config, &[("cert.pem", &tls.1), ("key.pem", &tls.2)]).await;
    let m = crate::client::query(g.addr, "_dns.resolver.arpa.", RecordType::SVCB).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let svcb: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SVCB(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(svcb.len(), 2, "{:?}", m.answers);
    let param = |s: &hickory_proto::rr::rdata::SVCB, k: SvcParamKey| {
        s.svc_params
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
    };
    let (doh, dot) = (&svcb[0], &svcb[1]);
    assert_eq!((doh.svc_priority, dot.svc_priority), (1, 2));
    assert_eq!(doh.target_name.to_ascii(), format!("{HOSTNAME}."));
    assert_eq!(
        param(doh, SvcParamKey::Port),
        Some(SvcParamValue::Port(doh_port))
    );
    assert_eq!(
        param(dot, SvcParamKey::Port),
        Some(SvcParamValue::Port(dot_port))
    );
    use hickory_proto::rr::rdata::svcb::{Alpn, IpHint};
    let alpn = |p: &str| Some(SvcParamValue::Alpn(Alpn(vec![p.to_owned()])));
    assert_eq!(param(doh, SvcParamKey::Alpn), alpn("h2"));
    assert_eq!(param(dot, SvcParamKey::Alpn), alpn("dot"));
    let hint = Some(SvcParamValue::Ipv4Hint(IpHint(vec![
        hickory_proto::rr::rdata::A::new(127, 0, 0, 1),
    ])));
    assert_eq!(param(dot, SvcParamKey::Ipv4Hint), hint);
    assert_eq!(param(doh, SvcParamKey::Ipv4Hint), hint);
    match param(doh, SvcParamKey::Unknown(7)) {
        Some(SvcParamValue::Unknown(u)) => assert_eq!(u.0, b"/dns-query{?dns}"),
        other => panic!("dohpath: {other:?}"),
    }
    // Anything else in resolver.arpa: answered here, never forwarded.
    let asked = g.upstream.queries();
    let m = crate::client::query(g.addr, "other.resolver.arpa.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = crate::client::query(g.addr, "_dns.resolver.arpa.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(g.upstream.queries(), asked);
}
