//! Listeners on wildcard addresses answer from the address each query was sent to
//! (RFC 2181 §4.1): a client that checks where its answer comes from (any connected
//! socket, `dig`) must get it from there, on the fast path and the full path alike.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::client::{self, Opts, ips};
use crate::{base_config, gate_with, upstream};

/// Asks `name` from 127.0.0.1 to `to` on a connected socket: only an answer from `to`
/// itself is received.
async fn ask_connected(to: SocketAddr, name: &str) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(to).await.unwrap();
    let (_, wire) = client::build(name, RecordType::A, Opts::default());
    sock.send(&wire).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Message::from_vec(&buf[..n]).ok()
}

async fn answers_from_the_address_asked(listen: &str) {
    let up = upstream::start().await;
    let text = base_config(up.addr).replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"{listen}\"]"),
    );
    let g = gate_with(up, &text, &[]).await;
    // 127.0.0.2 is on the loopback interface too; the kernel would answer from 127.0.0.1.
    let to = SocketAddr::from(([127, 0, 0, 2], g.addr.port()));
    for (name, path) in [
        ("www.test.", "full path"),
        ("www.test.", "packet cache"),
        ("nx.test.", "negative"),
    ] {
        let m = ask_connected(to, name)
            .await
            .unwrap_or_else(|| panic!("{listen}: no answer from {to} ({path})"));
        if name == "www.test." {
            assert_eq!(ips(&m), ["192.0.2.10"], "{path}");
        } else {
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        }
    }
    // An unreadable datagram's FORMERR comes from there too.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(to).await.unwrap();
    sock.send(&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff])
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("FORMERR from the address asked")
        .unwrap();
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR: {:?}", &buf[..n]);
}

#[tokio::test]
async fn an_ipv4_wildcard_listener_answers_from_the_address_asked() {
    answers_from_the_address_asked("0.0.0.0:0").await;
}

#[tokio::test]
async fn a_dual_stack_wildcard_listener_answers_ipv4_from_the_address_asked() {
    answers_from_the_address_asked("[::]:0").await;
}

#[tokio::test]
async fn a_datagram_cut_at_the_buffer_is_not_answered() {
    let g = crate::gate("", &[]).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(g.addr).await.unwrap();
    // A valid query padded past the 4096-byte read buffer: its prefix would parse.
    let (_, mut wire) = client::build("www.test.", RecordType::A, Opts::default());
    wire.resize(5000, 0);
    sock.send(&wire).await.unwrap();
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await;
    assert!(got.is_err(), "no answer to a cut datagram");
    // The server still answers the next one.
    let m = ask_connected(g.addr, "www.test.").await.expect("an answer");
    assert_eq!(ips(&m), ["192.0.2.10"]);
}
