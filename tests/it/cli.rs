//! The binary: `check`, `explain`, and `run` with SIGHUP reloads, metrics and the query
//! log — driven as a user would, through `CARGO_BIN_EXE_dnsgate`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{ede, ips, query};
use crate::{base_config, upstream, write_files};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_dnsgate");

pub(crate) fn dnsgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("dnsgate.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn check_prints_a_summary_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("ads.txt", "ads.test\nads2.test\n")]);
    let cfg = write_config(
        dir.path(),
        "[[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n[[policies]]\nname = \"x\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n",
    );
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("1 policies") && out.contains("2 entries"),
        "{out}"
    );
}

#[test]
fn check_reports_every_error_with_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "p/more.toml",
            "[[policies]]\nname = \"b\"\naction = \"block\"\ntraffic = 'dns.src_ip == \"1.2.3.4\"'\n",
        )],
    );
    let cfg = write_config(
        dir.path(),
        "include = [\"p/*.toml\"]\n[[policies]]\nname = \"a\"\naction = \"block\"\ntraffic = 'dns.fqdnn == \"x\"'\n\n[[policies]]\nname = \"c\"\naction = \"explode\"\n",
    );
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    // dns.fqdnn starts at line 5, column 12 of the main file.
    assert!(err.contains(&format!("{cfg}:5:12:")), "{err}");
    assert!(err.contains("dns.fqdnn"), "{err}");
    assert!(
        err.contains(&format!("{cfg}:9:10:")),
        "unknown action position: {err}"
    );
    // The included file's error names that file: the string literal is at line 4 col 25.
    let more = dir.path().join("p/more.toml");
    assert!(err.contains(&format!("{}:4:", more.display())), "{err}");
}

#[test]
fn check_rejects_unknown_keys_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[server]\nlisten = [\"127.0.0.1:5353\"]\nlisen = 1\n",
    );
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{cfg}:3:1:")), "{err}");
    let cfg = write_config(dir.path(), "[[lists]]\nname = \"a\"\npath = \"nope.txt\"\n");
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{cfg}:3:8:")) && err.contains("nope.txt"),
        "{err}"
    );
    let cfg = write_config(
        dir.path(),
        "[geoip]\ndatabase = \"missing.mmdb\"\n[[policies]]\nname = \"g\"\naction = \"block\"\ntraffic = 'dns.src.geo.country == \"PT\"'\n",
    );
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{cfg}:2:12:")), "{err}");
}

#[test]
fn a_geo_field_without_a_database_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[policies]]\nname = \"g\"\naction = \"block\"\ntraffic = 'any(dns.dst.geo.country[*] == \"PT\")'\n",
    );
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("geoip"), "{err}");
}

#[test]
fn post_fields_in_override_policies_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[policies]]\nname = \"o\"\naction = \"override\"\noverride_ips = [\"192.0.2.1\"]\ntraffic = 'any(dns.resolved_ips[*] == 192.0.2.2)'\n",
    );
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("pre-resolution fields only"), "{err}");
}

#[test]
fn a_policy_block_mode_ips_without_block_ips_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "[[policies]]\nname = \"page\"\naction = \"block\"\nblock_mode = \"ips\"\ntraffic = 'dns.fqdn == \"x.test\"'\n";
    let cfg = write_config(dir.path(), policy);
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1, "a block page with no addresses: {out}{err}");
    assert!(out.is_empty(), "{out}");
    // block_mode is on line 4 of the file.
    assert!(err.contains(&format!("{cfg}:4:")), "{err}");
    assert!(err.contains("ips"), "{err}");
    // With [block] ips the same policy loads.
    let cfg = write_config(
        dir.path(),
        &format!("[block]\nips = [\"192.0.2.250\"]\n{policy}"),
    );
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
}

fn explain_config(dir: &Path) -> String {
    write_files(dir, &[("ads.txt", "ads.test\n")]);
    let geoip = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/test-country.mmdb");
    write_config(
        dir,
        &format!(
            "[server]\nallow_networks = [\"0.0.0.0/0\", \"::/0\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\ntimeout_ms = 300\n\
             [geoip]\ndatabase = \"{geoip}\"\n\
             [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\
             [[policies]]\nname = \"allow www\"\nprecedence = 5\naction = \"allow\"\ntraffic = 'dns.fqdn == \"www.test\"'\n\
             [[policies]]\nname = \"ads\"\nprecedence = 10\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\nblock_reason = \"no ads\"\n\
             [[policies]]\nname = \"JP answers\"\nprecedence = 20\naction = \"block\"\ntraffic = 'any(dns.dst.geo.country[*] == \"JP\")'\n\
             [[policies]]\nname = \"PT clients\"\nprecedence = 30\naction = \"block\"\ntraffic = 'dns.src.geo.country == \"PT\" and dns.fqdn == \"pt.test\"'\n"
        ),
    )
}

#[test]
fn explain_says_which_policy_decided_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = explain_config(dir.path());
    let (code, out, err) = dnsgate(&["explain", "-c", &cfg, "tracker.ads.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"ads\""), "{out}");
    assert!(out.contains("MATCHED"), "{out}");
    assert!(out.contains("decision: block by \"ads\""), "{out}");
    assert!(out.contains("EDE 15"), "{out}");
    // Evaluation order: the allow (precedence 5) was considered first and did not match.
    let allow_at = out.find("allow www").unwrap();
    assert!(allow_at < out.find("\"ads\"").unwrap());

    let (code, out, _) = dnsgate(&[
        "explain",
        "-c",
        &cfg,
        "jp.test",
        "A",
        "--resolved",
        "192.0.2.1",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["action"], "block");
    assert_eq!(v["decision"]["policy"], "JP answers");
    assert_eq!(v["decision"]["phase"], "post");
    let rows = v["policies"].as_array().unwrap();
    assert_eq!(rows.last().unwrap()["name"], "JP answers");
    assert_eq!(rows.last().unwrap()["result"], "matched");

    let (_, out, _) = dnsgate(&[
        "explain",
        "-c",
        &cfg,
        "pt.test",
        "--client",
        "198.51.100.20",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["policy"], "PT clients");
    assert_eq!(v["query"]["src_country"], "PT");

    let (_, out, _) = dnsgate(&["explain", "-c", &cfg, "www.test", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["action"], "allow");
    assert_eq!(v["decision"]["policy"], "allow www");
}

/// A running `dnsgate run` child, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn start(cfg: &str) -> Self {
        Self::start_with_env(cfg, &[])
    }

    /// Starts `dnsgate run -c cfg` with extra environment variables.
    pub(crate) fn start_with_env(cfg: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "-c", cfg]).envs(env.iter().copied());
        Self::spawn(cmd)
    }

    /// Starts `dnsgate run -c cfg` with at most `nofile` open files (soft and hard).
    pub(crate) fn start_with_nofile(cfg: &str, nofile: u32) -> Self {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .args(["--", BIN, "run", "-c", cfg]);
        Self::spawn(cmd)
    }

    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("dnsgate prints its listening address");
            if let Some(rest) = line.split("listening addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Self {
            child,
            addr,
            stderr: rx,
        }
    }

    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("log line with `{needle}`"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The log lines printed so far and not yet read.
    pub(crate) fn drain_log(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    pub(crate) fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

#[tokio::test]
async fn run_serves_reloads_on_sighup_and_exports_metrics() {
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("queries.jsonl");
    let head = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:{port}\"\n[querylog]\npath = \"{}\"\n",
        base_config(up.addr),
        log.display()
    );
    let block = "[[policies]]\nname = \"Block www\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\nblock_reason = \"testing\"\n";
    let cfg = write_config(dir.path(), &head);
    let server = Server::start(&cfg);

    assert_eq!(
        ips(&query(server.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );

    // A good reload swaps the policies in.
    write_config(dir.path(), &format!("{head}{block}"));
    server.hup();
    server.wait_for_log("configuration reloaded");
    let m = query(server.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert_eq!(ede(&m), Some((15, "testing".into())));

    // A bad reload is rejected and counted; the old configuration keeps serving.
    write_config(
        dir.path(),
        &format!(
            "{head}{block}[[policies]]\nname = \"bad\"\naction = \"block\"\ntraffic = 'dns.fqdn =='\n"
        ),
    );
    server.hup();
    server.wait_for_log("reload rejected");
    assert_eq!(
        ips(&query(server.addr, "www.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    let nx = query(server.addr, "nope.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    let text = metrics(port).await;
    for needle in [
        "dnsgate_queries_total{protocol=\"udp\",action=\"block\"} 2",
        "dnsgate_queries_total{protocol=\"udp\",action=\"allow\"} 2",
        "dnsgate_responses_total{rcode=\"NXDOMAIN\"} 1",
        "dnsgate_policy_matches_total{policy=\"Block www\"} 2",
        "dnsgate_config_reloads_total{result=\"success\"} 1",
        "dnsgate_config_reloads_total{result=\"failure\"} 1",
        "dnsgate_cache_misses_total",
        "dnsgate_query_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
    assert!(!text.contains("www.test"), "no query names in labels");

    // The query log has one JSON line per query with the SPEC fields.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    for key in [
        "time",
        "client",
        "device",
        "user",
        "name",
        "type",
        "action",
        "policy",
        "phase",
        "rcode",
        "latency_ms",
        "cached",
    ] {
        assert!(v.get(key).is_some(), "query log line lacks {key}: {v}");
    }
    assert_eq!(v["action"], "block");
    assert_eq!(v["policy"], "Block www");
    assert_eq!(v["name"], "www.test");
}

#[tokio::test]
async fn a_bad_configuration_at_start_exits_non_zero_with_the_check_messages() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[upstream]\nmode = \"sideways\"\n");
    let (code, _, err) = dnsgate(&["run", "-c", &cfg]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{cfg}:2:8:")), "{err}");
}

#[test]
fn the_example_configuration_and_every_policy_set_load() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = dnsgate(&["check", "-c", &format!("{root}/etc/dnsgate.toml")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok:"), "{out}");
    for set in ["family", "office", "security"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            &format!(
                "include = [\"{root}/policies/{set}/*.toml\"]\n[geoip]\ndatabase = \"{root}/geoip/test-country.mmdb\"\n"
            ),
        );
        let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
        assert_eq!(code, 0, "policy set {set}: {err}");
        assert!(!out.contains(" 0 policies"), "{set}: {out}");
    }
}
