//! `dnsgate test`: policy test files, one query per case through the serving pipeline.

use crate::cli::{dnsgate, write_config};
use crate::write_files;

#[test]
fn the_example_sets_pass_their_own_policy_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let files: Vec<String> = ["security", "family", "office"]
        .iter()
        .map(|set| format!("{root}/policies/{set}/tests.toml"))
        .collect();
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = dnsgate(&args);
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("closing line: {last:?}"));
    assert!(passed >= 20, "{out}");
}

/// A configuration with identities, a schedule and a post-resolution policy.
fn fixture(dir: &std::path::Path) -> String {
    write_files(
        dir,
        &[(
            "ids.toml",
            "[[groups]]\nid = \"g-kids\"\nname = \"kids\"\n\n[[users]]\nemail = \"bob@x.test\"\ngroups = [\"g-kids\"]\n\n\
             [[devices]]\nid = \"bob-phone\"\nuser = \"bob@x.test\"\nips = [\"127.0.0.9\"]\ndoh_token = \"tok-bob\"\n",
        )],
    );
    write_config(
        dir,
        "[identity]\ndirectory = \"ids.toml\"\n\n\
         [[policies]]\nname = \"kids: no games\"\nprecedence = 10\naction = \"block\"\n\
         traffic = 'any(dns.domains[*] == \"games.test\")'\nidentity = 'any(identity.groups.name[*] == \"kids\")'\n\n\
         [[policies]]\nname = \"night\"\nprecedence = 20\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
         traffic = 'dns.fqdn == \"late.test\"'\nschedule = { time_zone = \"UTC\", tue = \"22:00-24:00\" }\n\n\
         [[policies]]\nname = \"no private answers\"\nprecedence = 30\naction = \"block\"\n\
         traffic = 'any(dns.resolved_ips[*] in {10.0.0.0/8})'\n",
    )
}

#[test]
fn cases_name_the_device_token_time_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n\n\
             [[case]]\nname = \"by device\"\nquery = \"www.games.test\"\ndevice = \"bob-phone\"\n\
             expect = { action = \"block\", policy = \"kids: no games\", ede = 15, answer = [\"0.0.0.0\"] }\n\n\
             [[case]]\nname = \"by token\"\nquery = \"games.test\"\ntoken = \"tok-bob\"\nexpect = { action = \"block\" }\n\n\
             [[case]]\nname = \"by address\"\nquery = \"games.test\"\nclient = \"127.0.0.9\"\nexpect = { action = \"block\" }\n\n\
             [[case]]\nname = \"anyone else\"\nquery = \"games.test\"\nexpect = { action = \"allow\" }\n\n\
             [[case]]\nname = \"inside the schedule\"\nquery = \"late.test\"\ntime = \"2026-12-01T23:00:00Z\"\n\
             expect = { action = \"block\", rcode = \"NXDOMAIN\" }\n\n\
             [[case]]\nname = \"outside it\"\nquery = \"late.test\"\ntime = \"2026-12-01T21:00:00Z\"\nexpect = { action = \"allow\" }\n\n\
             [[case]]\nname = \"post phase on a given answer\"\nquery = \"a.test\"\nresolved = [\"10.1.2.3\"]\n\
             expect = { action = \"block\", policy = \"no private answers\", answer = [\"0.0.0.0\"] }\n\n\
             [[case]]\nname = \"no answer given: post phase skipped\"\nquery = \"a.test\"\nexpect = { action = \"allow\" }\n",
        )],
    );
    let file = dir.path().join("tests.toml");
    let (code, out, err) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "8 passed, 0 failed");
}

#[test]
fn a_failing_case_says_what_was_expected_and_what_was_decided_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n\n\
             [[case]]\nname = \"right\"\nquery = \"games.test\"\nclient = \"127.0.0.9\"\nexpect = { action = \"block\" }\n\n\
             [[case]]\nname = \"wrong action\"\nquery = \"games.test\"\nexpect = { action = \"block\" }\n\n\
             [[case]]\nname = \"wrong policy\"\nquery = \"games.test\"\nclient = \"127.0.0.9\"\n\
             expect = { action = \"block\", policy = \"night\", rcode = \"NXDOMAIN\" }\n",
        )],
    );
    let file = dir.path().join("tests.toml");
    let (code, out, _) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("tests.toml:9:1")
            && lines[0].contains("\"wrong action\"")
            && lines[0].contains("expected action=block")
            && lines[0].contains("decided action=allow"),
        "{out}"
    );
    assert!(
        lines[1].contains("expected policy=\"night\", rcode=NXDOMAIN")
            && lines[1].contains("decided policy=\"kids: no games\", rcode=NOERROR"),
        "{out}"
    );
    assert_eq!(lines[2], "1 passed, 2 failed");
}

#[test]
fn a_bad_case_is_reported_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n\n[[case]]\nname = \"x\"\nquery = \"a.test\"\ndevice = \"nobody\"\nexpect = {}\n",
        )],
    );
    let file = dir.path().join("tests.toml");
    let (code, _, err) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tests.toml:3:1") && err.contains("no device `nobody`"),
        "{err}"
    );
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n[[case]]\nname = 1\n",
        )],
    );
    let (code, _, err) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("tests.toml:3:"), "{err}");
}

/// Policy test cases stub the verdicts of `external` policies (SPEC §13); a case without a
/// stub gets the policy's `on_error`, as offline.
#[test]
fn cases_stub_external_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("risk.secret", "k")]);
    write_config(
        dir.path(),
        "[[policies]]\nname = \"risk\"\nprecedence = 1\naction = \"external\"\n\
         traffic = 'any(dns.domains[*] == \"ext.test\")'\n\
         external = { url = \"https://risk.example/dns\", secret_file = \"risk.secret\", on_error = \"allow\" }\n\n\
         [[policies]]\nname = \"later\"\nprecedence = 2\naction = \"block\"\ntraffic = 'dns.fqdn == \"a.ext.test\"'\n",
    );
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n\n\
             [[case]]\nname = \"stubbed block\"\nquery = \"a.ext.test\"\nexternal = { risk = \"block\" }\n\
             expect = { action = \"block\", policy = \"risk\" }\n\n\
             [[case]]\nname = \"continue reaches the next policy\"\nquery = \"a.ext.test\"\n\
             external = { risk = \"continue\" }\nexpect = { action = \"block\", policy = \"later\" }\n\n\
             [[case]]\nname = \"no stub: on_error\"\nquery = \"a.ext.test\"\n\
             expect = { action = \"allow\", policy = \"risk\" }\n",
        )],
    );
    let file = dir.path().join("tests.toml");
    let (code, out, err) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().last(), Some("3 passed, 0 failed"), "{out}");
    // A stub for a policy that is not external is a mistake in the test file.
    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n[[case]]\nname = \"x\"\nquery = \"a.ext.test\"\n\
             external = { later = \"block\" }\nexpect = {}\n",
        )],
    );
    let (code, _, err) = dnsgate(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("`later` is not an external policy"), "{err}");
}
