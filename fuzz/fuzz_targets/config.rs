//! The configuration loader, on any text: TOML into the model (`config::load::from_text`),
//! then every check the runtime build makes (addresses, upstreams, block settings, lists'
//! settings, categories, policies with their expressions, rule builders and schedules).
//!
//! Input: the main file's text (UTF-8; anything else is skipped, as the loader's read
//! does). Nothing is read from disk or the network: includes are not followed, the GeoIP
//! database and identity directory are dropped, every list's `path` reads `/dev/null`
//! and a URL list's `refresh` and `max_size` are checked here and the list read as a file.
#![no_main]

use std::sync::Arc;

use dnsgate::clock::Clock;
use dnsgate::config::load::from_text;
use dnsgate::config::{ByteSize, SourceFile};
use dnsgate::lists::url::{self, Mode, UrlLists};
use dnsgate::runtime::Runtime;
use libfuzzer_sys::fuzz_target;
use toml::Spanned;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = SourceFile::new("/nonexistent/dnsgate.toml", text);
    let mut cfg = match from_text(file) {
        Ok(cfg) => cfg,
        Err(diags) => return check(text, &diags),
    };
    cfg.main.geoip = None;
    cfg.main.identity.directory = None;
    for loc in &mut cfg.lists {
        let l = loc.item.get_mut();
        if l.url.take().is_some() {
            if let Some(r) = l.refresh.take() {
                let _ = url::parse_duration(r.get_ref());
            }
            if let Some(ByteSize::Text(s)) = l.max_size.take().map(Spanned::into_inner) {
                let _ = url::parse_size(&s);
            }
            if l.path.is_none() {
                l.path = Some(Spanned::new(0..0, String::new()));
            }
        }
        if let Some(p) = &mut l.path {
            *p.get_mut() = "/dev/null".to_owned();
        }
    }
    let url_lists = Arc::new(UrlLists::new(Mode::ReadOnly));
    if let Err(diags) = Runtime::build(Arc::new(cfg), &url_lists, &Clock::new()) {
        check(text, &diags);
    }
});

fn check(text: &str, diags: &[dnsgate::diag::Diagnostic]) {
    assert!(!diags.is_empty());
    for d in diags {
        assert!(d.line >= 1 && d.col >= 1, "{d}");
        assert!(d.line <= text.split('\n').count(), "{d}");
        let _ = d.to_string();
    }
}
