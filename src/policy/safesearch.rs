//! Which names safe search and YouTube restricted mode rewrite, and to what (SPEC §4.5):
//! a policy with those actions decides only for these names.

/// The safe-search host for a search-engine name (SPEC §4.5), or `None` for other names.
/// With `youtube_only`, only YouTube names are rewritten (ytrestricted).
pub fn target(fqdn: &str, youtube_only: bool) -> Option<&'static str> {
    const YOUTUBE: [&str; 6] = [
        "youtube.com",
        "www.youtube.com",
        "m.youtube.com",
        "youtubei.googleapis.com",
        "youtube.googleapis.com",
        "www.youtube-nocookie.com",
    ];
    if YOUTUBE.contains(&fqdn) {
        return Some("restrict.youtube.com");
    }
    if youtube_only {
        return None;
    }
    let bare = fqdn.strip_prefix("www.").unwrap_or(fqdn);
    match bare {
        "bing.com" => return Some("strict.bing.com"),
        "duckduckgo.com" | "start.duckduckgo.com" | "html.duckduckgo.com" => {
            return Some("safe.duckduckgo.com");
        }
        _ => {}
    }
    // google.com, google.de, google.co.uk, google.com.au ...; yandex.ru, yandex.com.tr ...
    let (engine, tld) = bare.split_once('.')?;
    let tld_ok = !tld.is_empty()
        && tld.split('.').count() <= 2
        && tld
            .split('.')
            .all(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
    match engine {
        "google" if tld_ok => Some("forcesafesearch.google.com"),
        "yandex" if tld_ok => Some("familysearch.yandex.ru"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_search_names() {
        assert_eq!(
            target("www.google.com", false),
            Some("forcesafesearch.google.com")
        );
        assert_eq!(
            target("google.co.uk", false),
            Some("forcesafesearch.google.com")
        );
        assert_eq!(target("www.bing.com", false), Some("strict.bing.com"));
        assert_eq!(target("duckduckgo.com", false), Some("safe.duckduckgo.com"));
        assert_eq!(target("yandex.ru", false), Some("familysearch.yandex.ru"));
        assert_eq!(
            target("www.youtube.com", false),
            Some("restrict.youtube.com")
        );
        assert_eq!(
            target("www.youtube.com", true),
            Some("restrict.youtube.com")
        );
        assert_eq!(target("www.google.com", true), None);
        // The targets themselves and look-alikes are left alone (no loops).
        for n in [
            "forcesafesearch.google.com",
            "strict.bing.com",
            "safe.duckduckgo.com",
            "restrict.youtube.com",
            "familysearch.yandex.ru",
            "mail.google.com",
            "google.example.org",
            "example.com",
        ] {
            assert_eq!(target(n, false), None, "{n}");
        }
    }
}
