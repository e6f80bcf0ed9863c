//! Reloads (SPEC §7: "no query is dropped by a reload") and the systemd notification
//! protocol around them (SPEC §1: `READY=1` once listening; `Type=notify` with a HUP reload).

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::cli::{Server, write_config};
use crate::client::{self, Opts, ede, ips};
use crate::gate;

/// What one query during the reloads got.
#[derive(Debug, PartialEq)]
enum Got {
    Real,
    Blocked,
    NoAnswer,
    Other(String),
}

fn classify(m: &Message) -> Got {
    if m.metadata.response_code != ResponseCode::NoError {
        return Got::Other(format!("{:?}", m.metadata.response_code));
    }
    match (ips(m).as_slice(), ede(m)) {
        ([ip], None) if ip == "192.0.2.10" => Got::Real,
        ([ip], Some((15, _))) if ip == "0.0.0.0" => Got::Blocked,
        _ => Got::Other(format!("{m:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_is_dropped_by_a_reload() {
    let g = gate("", &[]).await;
    let plain = std::fs::read_to_string(g.config_path()).unwrap();
    let blocking = format!(
        "{plain}[[policies]]\nname = \"block www\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n"
    );

    let addr = g.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut answered) = tokio::sync::watch::channel(0usize);
    let querier = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut got = Vec::new();
            while got.len() < 300 || !stop.load(Ordering::SeqCst) {
                let (id, wire) = client::build("www.test.", RecordType::A, Opts::default());
                let g = match client::udp_raw(addr, &wire, Duration::from_secs(10)).await {
                    None => Got::NoAnswer,
                    Some(bytes) => match Message::from_vec(&bytes) {
                        Ok(m) if m.metadata.id == id => classify(&m),
                        Ok(m) => Got::Other(format!("id {} for {id}", m.metadata.id)),
                        Err(e) => Got::Other(format!("unparsable answer: {e}")),
                    },
                };
                got.push(g);
                let _ = tx.send(got.len());
            }
            got
        }
    });

    for k in 0..10 {
        let text = if k % 2 == 0 { &blocking } else { &plain };
        std::fs::write(g.config_path(), text).unwrap();
        g.running
            .shared
            .reload()
            .await
            .unwrap_or_else(|d| panic!("reload {k} rejected: {}", dnsgate::diag::Diagnostics(d)));
        // Let a few queries run under this configuration before the next swap, so both
        // configurations serve and every swap happens mid-stream.
        let at = *answered.borrow();
        tokio::time::timeout(Duration::from_secs(60), answered.wait_for(|n| *n >= at + 3))
            .await
            .expect("queries keep being answered after a reload")
            .expect("the querier is running");
    }
    stop.store(true, Ordering::SeqCst);
    let got = tokio::time::timeout(Duration::from_secs(120), querier)
        .await
        .expect("querier finishes")
        .unwrap();

    assert!(got.len() >= 300, "{}", got.len());
    let bad: Vec<(usize, &Got)> = got
        .iter()
        .enumerate()
        .filter(|(_, g)| matches!(g, Got::NoAnswer | Got::Other(_)))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} queries went wrong: {bad:?}",
        bad.len(),
        got.len()
    );
    assert!(
        got.contains(&Got::Real) && got.contains(&Got::Blocked),
        "both configurations served"
    );
    // The last reload installed the configuration without the policy.
    assert_eq!(
        classify(&client::query(g.addr, "www.test.", RecordType::A).await),
        Got::Real
    );
}

/// Receives datagrams until one contains `needle` (each wait bounded by the socket's
/// read timeout); returns everything received on the way, in order.
fn receive_until(sock: &UnixDatagram, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no `{needle}` notification (got {seen:?}): {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = text.lines().any(|l| l == needle);
        seen.push(text);
        if done {
            return seen;
        }
    }
}

#[test]
fn notify_socket_gets_ready_and_reloading_then_ready_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let good =
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n";
    let cfg = write_config(dir.path(), good);
    let server = Server::start_with_env(&cfg, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);

    let first = receive_until(&sock, "READY=1");
    assert!(
        first.iter().all(|d| !d.contains("RELOADING=1")),
        "{first:?}"
    );

    // A good reload: RELOADING=1, then READY=1 again.
    write_config(
        dir.path(),
        &format!(
            "{good}[[policies]]\nname = \"b\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"x.test\"'\n"
        ),
    );
    server.hup();
    let reload = receive_until(&sock, "READY=1");
    let lines: Vec<&str> = reload.iter().flat_map(|d| d.lines()).collect();
    let reloading = lines.iter().position(|l| *l == "RELOADING=1");
    let ready = lines.iter().position(|l| *l == "READY=1");
    assert!(
        reloading.is_some() && reloading < ready,
        "RELOADING=1 before READY=1: {reload:?}"
    );
    server.wait_for_log("configuration reloaded");

    // A rejected reload still ends in READY=1: the old configuration keeps serving.
    write_config(
        dir.path(),
        &format!(
            "{good}[[policies]]\nname = \"bad\"\naction = \"block\"\ntraffic = 'dns.fqdn =='\n"
        ),
    );
    server.hup();
    let rejected = receive_until(&sock, "READY=1");
    assert!(
        rejected
            .iter()
            .any(|d| d.lines().any(|l| l == "RELOADING=1")),
        "{rejected:?}"
    );
}
