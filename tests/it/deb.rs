//! The Debian package (issue 12): `cargo deb --no-build` packs the binary this test run
//! built (`CARGO_BIN_EXE_dnsgate`, no second release build), `dpkg -i` installs it, the
//! installed `dnsgate check` accepts the installed configuration, the installed binary
//! answers queries as the `dnsgate` user, and `dpkg --purge` leaves nothing behind.
//!
//! Installing needs root, dpkg and cargo-deb: CI runs as root on Debian and `.ci/run`
//! installs cargo-deb. Elsewhere the test fails and says which is missing, as the tests that
//! bind port 53 fail without root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use hickory_proto::rr::RecordType;

use crate::cli::{BIN, Server, free_port};
use crate::client::{ips, query};
use crate::upstream;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `cmd` under coreutils' `timeout` (a test bound, not a check) and returns its output.
fn run(secs: u32, cmd: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(secs: u32, cmd: &str, args: &[&str]) -> String {
    let out = run(secs, cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packaged unit is the repository's `systemd/dnsgate.service` with the binary in
/// /usr/bin and the `dnsgate` user instead of `DynamicUser`, and nothing else.
#[test]
fn the_packaged_unit_is_the_repositorys_with_usr_bin_and_a_static_user() {
    let repo = std::fs::read_to_string(format!("{MANIFEST_DIR}/systemd/dnsgate.service")).unwrap();
    let deb = std::fs::read_to_string(format!("{MANIFEST_DIR}/debian/dnsgate.service")).unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let expected: Vec<String> = strip(&repo)
        .into_iter()
        .flat_map(|l| {
            if l == "DynamicUser=yes" {
                vec!["User=dnsgate".to_owned(), "Group=dnsgate".to_owned()]
            } else {
                vec![l.replace("/usr/local/bin/dnsgate", "/usr/bin/dnsgate")]
            }
        })
        .collect();
    assert_eq!(strip(&deb), expected);
}

/// Purges the package (and takes back a `policy-rc.d` this test wrote) however the test
/// ends, so a failed run leaves the machine as it was.
struct Installed {
    policy_rc_d: bool,
}

impl Installed {
    fn purge(&self) -> Output {
        run(120, "dpkg", &["--purge", "dnsgate"])
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = self.purge();
        if self.policy_rc_d {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// Where a machine forbids maintainer scripts to start services (exit 101).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// The uid and gid of `user`, from the passwd database.
fn ids(user: &str) -> Option<(u32, u32)> {
    let out = run(10, "getent", &["passwd", user]);
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = line.trim().split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

#[tokio::test]
async fn the_debian_package_installs_checks_serves_and_purges() {
    // What the test needs, each named when missing.
    let uid = ok(10, "id", &["-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "the Debian package test installs with dpkg -i: run the tests as root (CI does)"
    );
    assert!(
        run(10, "dpkg", &["--version"]).status.success(),
        "the Debian package test needs dpkg (a Debian machine)"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    assert!(
        run(30, &cargo, &["deb", "--version"]).status.success(),
        "the Debian package test needs cargo-deb: cargo install cargo-deb --locked (.ci/run does)"
    );
    let status = run(10, "dpkg-query", &["-W", "-f=${Status}", "dnsgate"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "a dnsgate package is installed on this machine; the test would replace it \
         (dpkg --purge dnsgate first)"
    );

    // Build: the test binary where the asset `target/release/dnsgate` is looked for, in a
    // target directory of our own (the shared one's release build is left alone).
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(BIN, target.join("release/dnsgate")).unwrap();
    let deb = work.path().join("dnsgate.deb");
    let out = Command::new("timeout")
        .arg("300")
        .arg(&cargo)
        .args(["deb", "--no-build", "--strip", "--fast", "--output"])
        .arg(&deb)
        .current_dir(MANIFEST_DIR)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Install. Where systemd runs, postinst would start the service (forwarding to Quad9 on
    // port 53): a policy-rc.d forbids that for this install, as in image builds.
    let systemd = Path::new("/run/systemd/system").is_dir();
    let mut guard = Installed { policy_rc_d: false };
    if systemd && !Path::new(POLICY_RC_D).exists() {
        std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n").unwrap();
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755)).unwrap();
        guard.policy_rc_d = true;
    }
    ok(120, "dpkg", &["-i", deb.to_str().unwrap()]);
    if guard.policy_rc_d {
        std::fs::remove_file(POLICY_RC_D).unwrap();
        guard.policy_rc_d = false;
    }

    // Contents: the binary, the unit, the configuration (a conffile), the policy sets.
    let files = ok(10, "dpkg", &["-L", "dnsgate"]);
    let files: Vec<&str> = files.lines().collect();
    for f in [
        "/usr/bin/dnsgate",
        "/usr/lib/systemd/system/dnsgate.service",
        "/etc/dnsgate/dnsgate.toml",
        "/etc/dnsgate/identities.toml",
        "/etc/dnsgate/policies/security/policies.toml",
        "/etc/dnsgate/policies/security/lists/malware.txt",
        "/etc/dnsgate/policies/family/policies.toml",
        "/etc/dnsgate/policies/family/lists/ads.txt",
        "/etc/dnsgate/policies/office/policies.toml",
        "/usr/share/dnsgate/geoip/test-country.mmdb",
        "/usr/share/doc/dnsgate/REFERENCE.md",
    ] {
        assert!(files.contains(&f), "{f} is not in the package: {files:?}");
    }
    let conffiles = std::fs::read_to_string("/var/lib/dpkg/info/dnsgate.conffiles").unwrap();
    for f in [
        "/etc/dnsgate/dnsgate.toml",
        "/etc/dnsgate/identities.toml",
        "/etc/dnsgate/policies/family/policies.toml",
    ] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} is not a conffile: {conffiles}"
        );
    }
    // Enabled by postinst (deb-systemd-helper makes the link with or without systemd).
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/dnsgate.service").exists(),
        "the unit is not enabled"
    );
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/dnsgate.service").unwrap();
    assert!(unit.contains("\nUser=dnsgate\n"), "{unit}");
    assert!(unit.contains("ExecStart=/usr/bin/dnsgate run -c /etc/dnsgate/dnsgate.toml"));

    // The system user and its state directory (postinst).
    let (uid, gid) = ids("dnsgate").expect("postinst makes the dnsgate user");
    assert!(uid < 1000, "a system user: uid {uid}");
    let state = std::fs::metadata("/var/lib/dnsgate").unwrap();
    assert_eq!(
        (state.uid(), state.gid()),
        (uid, gid),
        "/var/lib/dnsgate owner"
    );

    // The installed configuration checks as installed, offline, as the service's user
    // (the unit's ExecStartPre).
    let out = Command::new("/usr/bin/dnsgate")
        .args(["check", "-c", "/etc/dnsgate/dnsgate.toml"])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok:"),
        "dnsgate check: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Serve: the installed binary as the dnsgate user, the installed policies, a loopback
    // port and the loopback test upstream.
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("dnsgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "include = [\"/etc/dnsgate/policies/security/*.toml\", \"/etc/dnsgate/policies/family/*.toml\"]\n\
             [server]\nlisten = [\"127.0.0.1:{}\"]\nstate_dir = \"/var/lib/dnsgate\"\n\
             [upstream]\nservers = [\"udp://{}\"]\ntimeout_ms = 1000\n\
             [identity]\ndirectory = \"/etc/dnsgate/identities.toml\"\n",
            free_port(),
            up.addr
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new("/usr/bin/dnsgate");
    cmd.args(["run", "-c", cfg.to_str().unwrap()])
        .uid(uid)
        .gid(gid);
    let server = Server::spawn(cmd);
    let running_as = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(running_as, uid.to_string());
    assert_eq!(
        ips(&query(server.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(up.queries(), 1);
    // The installed family set blocks ads.
    assert_eq!(
        ips(&query(server.addr, "doubleclick.net.", RecordType::A).await),
        ["0.0.0.0"]
    );
    drop(server);

    // Purge: files, user, state and the unit's links go.
    let out = guard.purge();
    assert!(
        out.status.success(),
        "dpkg --purge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for gone in [
        "/usr/bin/dnsgate",
        "/etc/dnsgate",
        "/var/lib/dnsgate",
        "/usr/lib/systemd/system/dnsgate.service",
        "/etc/systemd/system/multi-user.target.wants/dnsgate.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(
        ids("dnsgate").is_none(),
        "the dnsgate user is left after purge"
    );
}
