//! CNAME uncloaking (`[block] cname_inspection`, on by default): a tracker behind a
//! first-party CNAME is blocked as if the client had asked for the tracker's name.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{ede, ips, query};
use crate::{gate, query_log};

const BLOCK_CDN: &str = "[[lists]]\nname = \"trackers\"\npath = \"trackers.txt\"\n\n\
    [[policies]]\nname = \"trackers\"\nprecedence = 20\naction = \"block\"\n\
    traffic = 'any(dns.domains[*] in $trackers)'\nblock_reason = \"tracker\"\n";

#[tokio::test]
async fn a_cname_into_a_blocked_name_is_blocked_and_logged_with_the_cname() {
    let g = gate(
        &format!("[querylog]\npath = \"q.jsonl\"\n\n{BLOCK_CDN}"),
        &[("trackers.txt", "cdn.test\n")],
    )
    .await;
    for _ in 0..2 {
        // The second comes from the packet cache, with the same verdict and log line.
        let m = query(g.addr, "cloaked.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ips(&m), ["0.0.0.0"], "{m:?}");
        assert_eq!(ede(&m), Some((15, "tracker".to_owned())));
    }
    let log = query_log(&g.dir.path().join("q.jsonl"), |l| l.len() >= 2).await;
    for line in &log {
        assert_eq!(line["name"], "cloaked.test", "{line}");
        assert_eq!(line["action"], "block", "{line}");
        assert_eq!(line["policy"], "trackers", "{line}");
        assert_eq!(line["cname"], "target.cdn.test", "{line}");
    }
    assert_eq!(
        log[1]["cached"], false,
        "a synthesized answer, replayed: {}",
        log[1]
    );
    // A name whose answer has no CNAME into the list is answered for real, without a
    // `cname` in its log line.
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    let log = query_log(&g.dir.path().join("q.jsonl"), |l| l.len() >= 3).await;
    assert!(log[2].get("cname").is_none(), "{}", log[2]);
}

#[tokio::test]
async fn every_cname_of_a_chain_is_inspected() {
    let g = gate(
        "[[policies]]\nname = \"www\"\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
         traffic = 'dns.fqdn == \"www.test\"'\n",
        &[],
    )
    .await;
    // chain.test -> alias.test -> www.test: the last link is blocked, so is the chain.
    let m = query(g.addr, "chain.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert_eq!(ede(&m).map(|e| e.0), Some(15));
}

#[tokio::test]
async fn an_allow_for_the_name_itself_is_not_undone_and_inspection_can_be_turned_off() {
    let allowed = gate(
        &format!(
            "{BLOCK_CDN}\n[[policies]]\nname = \"ours\"\nprecedence = 10\naction = \"allow\"\n\
             traffic = 'dns.fqdn == \"cloaked.test\"'\n"
        ),
        &[("trackers.txt", "cdn.test\n")],
    )
    .await;
    let m = query(allowed.addr, "cloaked.test.", RecordType::A).await;
    assert_eq!(
        ips(&m),
        ["192.0.2.66"],
        "an allow decided for the name: {m:?}"
    );

    let off = gate(
        &format!("[block]\ncname_inspection = false\n\n{BLOCK_CDN}"),
        &[("trackers.txt", "cdn.test\n")],
    )
    .await;
    let m = query(off.addr, "cloaked.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.66"], "inspection off: {m:?}");
    assert!(ede(&m).is_none());
    // The tracker's own name is blocked either way.
    let m = query(off.addr, "target.cdn.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
}

#[tokio::test]
async fn explain_names_the_cname_that_matched() {
    let g = gate(BLOCK_CDN, &[("trackers.txt", "cdn.test\n")]).await;
    let cfg = g.config_path();
    let out = tokio::process::Command::new(crate::cli::BIN)
        .args([
            "explain",
            "-c",
            cfg.to_str().unwrap(),
            "cloaked.test",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["action"], "block", "{v:#}");
    assert_eq!(v["decision"]["policy"], "trackers", "{v:#}");
    assert_eq!(v["decision"]["cname"], "target.cdn.test", "{v:#}");
    let rows = v["policies"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["cname"] == "target.cdn.test" && r["result"] == "matched"),
        "{v:#}"
    );
}
