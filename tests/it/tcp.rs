//! TCP connections are a bounded resource: a cap in total (the idlest closed to make
//! room), a share per client, and no spinning when the process runs out of descriptors.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::{Server, write_config};
use crate::client::{Opts, ips, query_with};
use crate::{base_config, gate_with, upstream};

fn tcp() -> Opts {
    Opts {
        tcp: true,
        ..Opts::default()
    }
}

/// Whether the server has closed `s` (EOF within `wait`).
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

#[tokio::test]
async fn a_full_server_closes_its_idlest_connections_and_keeps_answering() {
    let up = upstream::start().await;
    let text = base_config(up.addr).replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\ntcp_max_connections = 20\ntcp_max_per_client = 100",
    );
    let g = gate_with(up, &text, &[]).await;
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect(g.addr).await.unwrap());
        // Accepted in order: each newcomer pushes out the idlest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A query still gets through, on a connection of its own.
    let m = query_with(g.addr, "www.test.", RecordType::A, tcp()).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    // The oldest idle ones were closed to make room; the newest are still open.
    assert!(
        closed(&mut idle[0], Duration::from_secs(2)).await,
        "the idlest is closed"
    );
    assert!(
        !closed(&mut idle[29], Duration::from_millis(200)).await,
        "the newest stays"
    );
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let up = upstream::start().await;
    let text = base_config(up.addr).replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\ntcp_max_per_client = 5",
    );
    let g = gate_with(up, &text, &[]).await;
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(connect_from("127.0.0.1", g.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut sixth = connect_from("127.0.0.1", g.addr).await;
    assert!(
        closed(&mut sixth, Duration::from_secs(2)).await,
        "past its share: closed"
    );
    assert!(
        !closed(&mut mine[0], Duration::from_millis(200)).await,
        "its first five stay"
    );
    // Another client is served.
    let mut other = connect_from("127.0.0.2", g.addr).await;
    let m = ask_on(&mut other, "www.test.").await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
}

/// Asks `name` A on an open connection.
async fn ask_on(s: &mut TcpStream, name: &str) -> hickory_proto::op::Message {
    use tokio::io::AsyncWriteExt;
    let (_, wire) = crate::client::build(name, RecordType::A, Opts::default());
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    s.write_all(&framed).await.unwrap();
    let io = async {
        let len = s.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        s.read_exact(&mut body).await.unwrap();
        body
    };
    let body = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .expect("an answer within 5 s");
    hickory_proto::op::Message::from_vec(&body).unwrap()
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn more_idle_connections_than_file_descriptors_neither_spin_nor_block_new_queries() {
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &base_config(up.addr));
    let server = Server::start_with_nofile(&cfg, 1024);
    // 1,500 idle connections from 30 addresses (within each one's share).
    let mut idle = Vec::new();
    for i in 0..1500 {
        idle.push(connect_from(&format!("127.0.0.{}", 10 + i % 30), server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_seconds(server.child.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds(server.child.id()) - before;
    assert!(
        used < 0.3,
        "{used:.2} CPU seconds in one second with 1,500 idle connections"
    );
    // A new client still gets its answer over TCP: the idlest connection made room.
    let mut fresh = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(ips(&ask_on(&mut fresh, "www.test.").await), ["192.0.2.10"]);
}
