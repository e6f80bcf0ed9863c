//! Loading `[[lists]]`: each entry's settings checked with positions, files read, URL
//! lists taken from the process's copies (memory, disk) or fetched, all at once.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::ListInfo;
use crate::config::load::Located;
use crate::config::{ByteSize, ListConfig, LoadedConfig, SourceFile};
use crate::diag::Diagnostic;
use crate::lists::url::{self, UrlLists, UrlSpec};
use crate::lists::{List, ListFormat, ListKind};

/// Where a configured list comes from.
enum Source {
    /// Read from this file.
    File(PathBuf),
    /// Index into the URL specs.
    Url(usize),
    /// Held in the configuration (`entries`).
    Entries(String),
}

/// One `[[lists]]` entry that passed the checks, before its contents are read.
struct Pending {
    name: String,
    kind: ListKind,
    format: ListFormat,
    source: Source,
    /// The file and span to report a read error at (`path` or `url`).
    file: usize,
    span: Range<usize>,
    name_span: Range<usize>,
}

pub(super) fn load_lists(
    cfg: &LoadedConfig,
    url_lists: &UrlLists,
    now: std::time::SystemTime,
    diags: &mut Vec<Diagnostic>,
) -> (HashMap<String, Arc<List>>, Vec<ListInfo>, Vec<UrlSpec>) {
    let mut pending = Vec::new();
    let mut specs = Vec::new();
    for loc in &cfg.lists {
        if let Some(p) = check_list(cfg, loc, &mut specs, diags) {
            pending.push(p);
        }
    }
    // Every URL list at once: fetching the missing ones concurrently bounds the wait by
    // the slowest source, not the sum.
    let mut fetched: Vec<Option<Result<url::Loaded, url::Error>>> = if specs.is_empty() {
        Vec::new()
    } else {
        let mf = cfg.main_file();
        let configured = cfg
            .main
            .server
            .state_dir
            .as_ref()
            .map(|d| mf.resolve(d.get_ref()));
        let dir = url::cache_dir(configured.as_deref());
        url_lists
            .ensure(&specs, &dir, now)
            .into_iter()
            .map(Some)
            .collect()
    };

    let mut lists = HashMap::new();
    let mut info = Vec::new();
    for p in pending {
        let file = &cfg.files[p.file];
        let name = p.name;
        let (list, entries, skipped) = match p.source {
            Source::File(path) => {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        diags.push(file.diag(
                            &p.span,
                            format!("list `{name}`: cannot read {}: {e}", path.display()),
                        ));
                        continue;
                    }
                };
                let (list, stats) = List::parse(p.kind, p.format, &text);
                if stats.skipped > 0 {
                    info!(list = %name, skipped = stats.skipped, first = ?stats.warnings.first(), "list lines skipped");
                }
                (Arc::new(list), stats.entries, stats.skipped)
            }
            Source::Entries(text) => {
                let (list, stats) = List::parse(p.kind, p.format, &text);
                (Arc::new(list), stats.entries, stats.skipped)
            }
            Source::Url(i) => match fetched.get_mut(i).and_then(Option::take) {
                Some(Ok(l)) => (l.list, l.entries, l.skipped),
                Some(Err(e)) => {
                    diags.push(file.diag(
                        &p.span,
                        format!("list `{name}`: {e}, and there is no saved copy"),
                    ));
                    continue;
                }
                None => continue,
            },
        };
        if lists.insert(name.clone(), list).is_some() {
            diags.push(file.diag(&p.name_span, format!("duplicate list name `{name}`")));
        }
        info.push(ListInfo {
            name,
            entries,
            skipped,
        });
    }
    (lists, info, specs)
}

/// Checks one `[[lists]]` entry's settings; a URL list adds its spec to `specs`.
fn check_list(
    cfg: &LoadedConfig,
    loc: &Located<ListConfig>,
    specs: &mut Vec<UrlSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Pending> {
    let file = &cfg.files[loc.file];
    let l = loc.item.get_ref();
    let name = l.name.get_ref().clone();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_name {
        diags.push(file.diag(
            &l.name.span(),
            format!("list name `{name}` may hold only letters, digits, `_` and `-`"),
        ));
        return None;
    }
    let kind = match l.kind.get_ref().as_str() {
        "domain" => ListKind::Domain,
        "ip" => ListKind::Ip,
        "email" => ListKind::Email,
        "string" => ListKind::String,
        other => {
            diags.push(file.diag(
                &l.kind.span(),
                format!("unknown list type `{other}` (expected domain, ip, email or string)"),
            ));
            return None;
        }
    };
    let format = match l.format.as_ref().map(|f| f.get_ref().as_str()) {
        None if kind == ListKind::Domain => ListFormat::Domains,
        None => ListFormat::Plain,
        Some("domains") => ListFormat::Domains,
        Some("hosts") => ListFormat::Hosts,
        Some("adblock") => ListFormat::Adblock,
        Some("plain") => ListFormat::Plain,
        Some(other) => {
            let span = l.format.as_ref().map(|f| f.span()).unwrap_or_default();
            diags.push(file.diag(
                &span,
                format!(
                    "unknown list format `{other}` (expected domains, hosts, adblock or plain)"
                ),
            ));
            return None;
        }
    };
    let (source, span) = match (&l.path, &l.url) {
        _ if l.entries.is_some() && (l.path.is_some() || l.url.is_some()) => {
            let span = l.entries.as_ref().map(|e| e.span()).unwrap_or_default();
            diags.push(file.diag(
                &span,
                format!("list `{name}` has `entries` and a `path` or `url`: give one"),
            ));
            return None;
        }
        (None, None) if l.entries.is_some() => {
            let e = l.entries.as_ref()?;
            (Source::Entries(e.get_ref().join("\n")), e.span())
        }
        (Some(p), None) => {
            for (key, span) in [
                ("refresh", l.refresh.as_ref().map(|r| r.span())),
                ("max_size", l.max_size.as_ref().map(|m| m.span())),
            ] {
                if let Some(span) = span {
                    diags.push(file.diag(
                        &span,
                        format!("list `{name}`: `{key}` applies to url lists only"),
                    ));
                }
            }
            (Source::File(file.resolve(p.get_ref())), p.span())
        }
        (None, Some(u)) => {
            let spec = url_spec(file, l, name.clone(), kind, format, diags)?;
            specs.push(spec);
            (Source::Url(specs.len() - 1), u.span())
        }
        (Some(_), Some(u)) => {
            diags.push(file.diag(
                &u.span(),
                format!("list `{name}` has both `path` and `url`: give one"),
            ));
            return None;
        }
        (None, None) => {
            diags.push(file.diag(
                &loc.item.span(),
                format!("list `{name}` needs a `path`, a `url` or `entries`"),
            ));
            return None;
        }
    };
    Some(Pending {
        name,
        kind,
        format,
        source,
        file: loc.file,
        span,
        name_span: l.name.span(),
    })
}

/// Checks a URL list's `url`, `refresh` and `max_size`.
fn url_spec(
    file: &SourceFile,
    l: &ListConfig,
    name: String,
    kind: ListKind,
    format: ListFormat,
    diags: &mut Vec<Diagnostic>,
) -> Option<UrlSpec> {
    let u = l.url.as_ref()?;
    let before = diags.len();
    match reqwest::Url::parse(u.get_ref()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        Ok(parsed) => diags.push(file.diag(
            &u.span(),
            format!(
                "list `{name}`: `{}` is not an http:// or https:// URL{}",
                u.get_ref(),
                if parsed.scheme() == "file" {
                    " (use `path` for a local file)"
                } else {
                    ""
                }
            ),
        )),
        Err(e) => diags.push(file.diag(
            &u.span(),
            format!("list `{name}`: `{}` is not a URL: {e}", u.get_ref()),
        )),
    }
    let refresh = match &l.refresh {
        None => url::DEFAULT_REFRESH,
        Some(r) => match url::parse_duration(r.get_ref()) {
            Ok(d) if d <= url::MAX_REFRESH => d,
            Ok(_) => {
                diags.push(file.diag(
                    &r.span(),
                    format!("list `{name}`: `refresh` is more than a year"),
                ));
                url::DEFAULT_REFRESH
            }
            Err(e) => {
                diags.push(file.diag(&r.span(), format!("list `{name}`: {e}")));
                url::DEFAULT_REFRESH
            }
        },
    };
    let max_size = match &l.max_size {
        None => url::DEFAULT_MAX_SIZE,
        Some(m) => {
            let size = match m.get_ref() {
                ByteSize::Bytes(n) => Ok(*n),
                ByteSize::Text(t) => url::parse_size(t).map_err(|e| e.to_string()),
            };
            match size {
                Ok(0) => Err("max_size must be above 0".to_owned()),
                other => other,
            }
            .map_err(|e| diags.push(file.diag(&m.span(), format!("list `{name}`: {e}"))))
            .unwrap_or(0)
        }
    };
    (diags.len() == before).then(|| UrlSpec {
        name,
        url: u.get_ref().clone(),
        kind,
        format,
        refresh,
        max_size,
    })
}
