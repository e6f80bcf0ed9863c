//! Unit tests of the evaluation helpers (label suffixes, lowering); the per-field tests
//! and the differential tests have files of their own.

use super::*;

#[test]
fn name_or_parent_is_a_label_suffix() {
    for (fqdn, x, want) in [
        ("a.example.com", "example.com", true),
        ("example.com", "example.com", true),
        ("badexample.com", "example.com", false),
        ("example.com", "a.example.com", false),
        ("example.com", "com", true),
        ("example.com", "", false),
        ("", "", false),
        ("a..b", ".b", true),
    ] {
        assert_eq!(is_name_or_parent(fqdn, x), want, "{fqdn} {x}");
        assert_eq!(
            domains(fqdn).any(|d| d == x),
            want,
            "{fqdn} {x} (reference)"
        );
    }
}

#[test]
fn lowering_uses_the_stack_and_handles_long_values() {
    let eq = |x: &str| StrTest::Eq(x.into());
    assert!(eq("mixed").eval_lowered("MiXeD"));
    assert!(eq("already").eval_lowered("already"));
    assert!(!eq("Upper").eval_lowered("Upper"));
    assert!(eq(&"a".repeat(300)).eval_lowered(&"A".repeat(300)));
    assert!(eq("Àb").eval_lowered("ÀB"));
}
