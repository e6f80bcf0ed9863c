//! The identities file loader (`identities.toml`), on any text.
//!
//! Input: the file's text (UTF-8; anything else is skipped, as the loader's read does).
//! A directory that loads is then asked the lookups the server makes.
#![no_main]

use std::net::IpAddr;
use std::path::Path;

use dnsgate::identity::Directory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Directory::parse(Path::new("identities.toml"), text) {
        Ok(d) => {
            // Every quoted address in the file, and a few others.
            let quoted = text.split('"').skip(1).step_by(2);
            let others = ["10.0.0.1", "::1", "2001:db8::1", "::ffff:192.168.1.20"];
            for ip in quoted
                .chain(others)
                .filter_map(|s| s.parse::<IpAddr>().ok())
            {
                let _ = d.identity_for_ip(ip);
                let _ = d.location_for_ip(ip);
            }
            for s in text.split('"').skip(1).step_by(2) {
                let _ = d.identity_for_token(s);
                let _ = d.identity_for_device(s);
            }
            let _ = (
                d.len_groups(),
                d.len_users(),
                d.len_devices(),
                d.len_locations(),
            );
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.line >= 1 && d.col >= 1, "{d}");
                assert!(d.line <= text.split('\n').count(), "{d}");
                let _ = d.to_string();
            }
        }
    }
});
