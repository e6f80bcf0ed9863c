//! Setup shared by the policy benches (`policy.rs`, criterion) and the instruction-count
//! benches (`instructions.rs`, callgrind): a realistic configuration — 100 policies of ten
//! shapes, three domain lists, 10,000 IP ranges, an identity directory, the LAN allowed to
//! query — and the names queried against it.

use std::fmt::Write as _;
use std::net::IpAddr;

use dnsgate::runtime::Runtime;

/// The `i`th listed name (four labels, under 977 × 13 parents).
pub(crate) fn name(i: usize) -> String {
    format!("host{i}.domain{}.example{}.com", i % 977, i % 13)
}

/// A name no list holds and no policy names: every policy is evaluated and none matches.
pub(crate) fn allowed_query(i: usize) -> String {
    format!("www.site{i}.org")
}

/// A subdomain of listed name `i` (`i < names`): blocked by a list policy.
pub(crate) fn blocked_query(i: usize, names: usize) -> String {
    format!("sub.{}", name(i * 997 % names))
}

/// The client the directory knows: device `tablet` of bob, in group `kids`.
pub(crate) fn device_ip() -> IpAddr {
    IpAddr::from([192, 168, 1, 20])
}

/// Writes the configuration and its lists — `names` domain names in all, split 50/30/20
/// between `ads`, `trackers` and `malware` — into a temporary directory and loads it.
/// Keep the directory alive as long as the runtime.
#[allow(dead_code)] // not every benchmark binary uses it
pub(crate) fn realistic(names: usize) -> (tempfile::TempDir, Runtime) {
    realistic_with(names, false)
}

/// [`realistic`], with policy `p8` (`identity.email == "user8@example.com"`, which no
/// benchmark query's client matches) an `external` policy instead of a block: what an
/// external policy that does not match costs.
#[allow(dead_code)] // not every benchmark binary uses it
pub(crate) fn realistic_with(names: usize, external: bool) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from(
        "[server]\nallow_networks = [\"127.0.0.0/8\", \"::1/128\", \"192.168.0.0/16\"]\n\n\
         [identity]\ndirectory = \"ids.toml\"\n",
    );
    for (list, range) in [
        ("ads", 0..names / 2),
        ("trackers", names / 2..names * 8 / 10),
        ("malware", names * 8 / 10..names),
    ] {
        let mut text = String::new();
        for i in range {
            writeln!(text, "{}", name(i)).unwrap();
        }
        std::fs::write(dir.path().join(format!("{list}.txt")), text).unwrap();
        writeln!(cfg, "[[lists]]\nname = \"{list}\"\npath = \"{list}.txt\"\n").unwrap();
    }
    let mut nets = String::new();
    for i in 0..10_000u32 {
        let a = 0x0a00_0000 + i * 256;
        writeln!(nets, "{}/24", std::net::Ipv4Addr::from(a)).unwrap();
    }
    std::fs::write(dir.path().join("nets.txt"), nets).unwrap();
    cfg.push_str("[[lists]]\nname = \"nets\"\ntype = \"ip\"\npath = \"nets.txt\"\n\n");
    cfg.push_str("[[categories]]\nid = 1\nname = \"Ads\"\nlists = [\"ads\", \"trackers\"]\n\n");
    cfg.push_str(
        "[[categories]]\nid = 80\nname = \"Malware\"\nlists = [\"malware\"]\nsecurity = true\n\n",
    );
    std::fs::write(
        dir.path().join("ids.toml"),
        "[[groups]]\nid = \"g1\"\nname = \"kids\"\n[[users]]\nemail = \"bob@example.com\"\ngroups = [\"g1\"]\n\
         [[devices]]\nid = \"tablet\"\nuser = \"bob@example.com\"\nips = [\"192.168.1.20\"]\n",
    )
    .unwrap();
    let shapes = [
        "any(dns.domains[*] in $ads)",
        "any(dns.domains[*] in $trackers) and not dns.src_ip in $nets",
        "any(dns.security_category[*] in {80})",
        "dns.fqdn == \"exact{i}.example.org\"",
        "any(dns.domains[*] == \"blocked{i}.example.net\")",
        "dns.query_rtype == \"ANY\" and dns.fqdn contains \"x{i}\"",
        "any(dns.content_category[*] in {1}) and any(identity.groups.name[*] == \"kids\")",
        "dns.fqdn matches \"^ad[0-9]+\\\\.tracker{i}\\\\.\"",
        "identity.email == \"user{i}@example.com\"",
        "any(dns.domains[*] in {\"a{i}.com\" \"b{i}.com\" \"c{i}.com\"})",
    ];
    std::fs::write(dir.path().join("risk.secret"), "bench\n").unwrap();
    for i in 0..100 {
        let traffic = shapes[i % shapes.len()].replace("{i}", &i.to_string());
        let action = if external && i == 8 {
            "external\"\nexternal = { url = \"http://127.0.0.1:9/dns\", secret_file = \"risk.secret\" }"
        } else {
            "block\""
        };
        writeln!(cfg, "[[policies]]\nname = \"p{i}\"\nprecedence = {}\naction = \"{action}\ntraffic = '{traffic}'\n", 1000 - i)
            .unwrap();
    }
    let path = dir.path().join("dnsgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let rt = Runtime::load(&path).unwrap_or_else(|d| panic!("{d:?}"));
    (dir, rt)
}
