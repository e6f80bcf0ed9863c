//! URL lists (SPEC §2: `url = "https://..."`, fetched, cached on disk, `refresh`).
//!
//! [`UrlLists`] holds what the process knows about each list source (list name + URL):
//! the parsed list (weakly: the runtimes using it own it), the validators for the next
//! conditional GET, when the source last confirmed it, and when to ask again. Loading a
//! configuration ([`UrlLists::ensure`]) takes each URL list from memory, else from the copy
//! on disk, else from the network; so a SIGHUP reload refetches nothing it already has,
//! and a start with the source down still serves the last good copy. After start,
//! [`refresh`] re-checks every list every `refresh` and swaps a changed one in on its own.
//!
//! Files: `fetch` (one conditional GET with a size limit), `disk` (the cached copies),
//! `units` (`"24h"`, `"64MiB"`), `refresh` (the background task and the swap).

mod disk;
mod fetch;
pub mod refresh;
mod units;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{List, ListFormat, ListKind, ParseStats};
use crate::metrics;
pub use disk::{cache_dir, state_dir};
pub use fetch::{Fetched, Fetcher, Validators};
pub use units::{UnitError, parse_duration, parse_size};

/// `refresh` when the list does not say.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// `max_size` when the list does not say.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;
/// The first retry after a failed refresh; each further failure doubles it, up to `refresh`.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest `refresh` accepted (a year): longer is a configuration error.
pub const MAX_REFRESH: Duration = Duration::from_secs(365 * 86_400);

/// Why a URL list could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No answer: DNS, connection, TLS, timeout, or the body broke off.
    #[error("cannot fetch: {0}")]
    Http(String),
    /// An answer other than 200 (or 304 to a conditional GET).
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The body passed `max_size`.
    #[error("the list is larger than max_size ({limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body is not UTF-8.
    #[error("the list is not UTF-8 text")]
    NotText,
    /// Not one line of the body was a usable entry: an error page served with status 200,
    /// or the wrong `format`.
    #[error(
        "no usable entry in {skipped} non-comment lines (line {line}: {why}): is it a list in this format?"
    )]
    Unusable {
        /// Lines skipped.
        skipped: usize,
        /// The first skipped line.
        line: usize,
        /// Why it was skipped.
        why: String,
    },
    /// The body has no entry at all while the copy in service has some: an emptied file
    /// on the server, not a list to stop filtering with.
    #[error("the new copy is empty while the one in service has {0} entries; keeping it")]
    Emptied(usize),
    /// The HTTP client could not be built.
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// One URL list of a configuration: its source and how to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSpec {
    /// The list's name.
    pub name: String,
    /// Where it comes from (`http://` or `https://`).
    pub url: String,
    /// Its value type.
    pub kind: ListKind,
    /// Its format.
    pub format: ListFormat,
    /// How often the source is asked again.
    pub refresh: Duration,
    /// The largest body accepted, in bytes.
    pub max_size: u64,
}

impl UrlSpec {
    /// Whether `other` yields the same parsed list (its timers may differ).
    pub fn same_source(&self, other: &Self) -> bool {
        self.name == other.name
            && self.url == other.url
            && self.kind == other.kind
            && self.format == other.format
    }

    fn key(&self) -> (String, String) {
        (self.name.clone(), self.url.clone())
    }
}

/// What a store may do besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `run`: save copies to disk and keep refresh state.
    Serve,
    /// `check`, `explain`, tests: read copies on disk, fetch the missing ones, write nothing.
    ReadOnly,
}

/// A URL list ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed list.
    pub list: Arc<List>,
    /// Its entries.
    pub entries: usize,
    /// Lines skipped while parsing it.
    pub skipped: usize,
}

/// What is known about one source.
#[derive(Debug)]
struct Entry {
    kind: ListKind,
    format: ListFormat,
    /// The runtimes hold the list; once none does, the entry is pruned.
    list: Weak<List>,
    entries: usize,
    skipped: usize,
    validators: Validators,
    /// FNV-1a 64 of the body in service: a source without validators that sends the same
    /// body again changes nothing.
    checksum: Option<u64>,
    /// When the source last confirmed the copy (200 or 304): what the age metric counts.
    confirmed: SystemTime,
    /// When it was last asked (or, for a copy read from disk, confirmed).
    checked: SystemTime,
    /// Failed refreshes in a row.
    failures: u32,
    /// A refresh is under way.
    in_flight: bool,
    /// Where its copy is saved.
    dir: Option<PathBuf>,
}

impl Entry {
    /// The entry of `list` in service, fresh: no validators, checked never, no failures.
    fn new(spec: &UrlSpec, list: &Arc<List>, dir: Option<PathBuf>) -> Self {
        Self {
            kind: spec.kind,
            format: spec.format,
            list: Arc::downgrade(list),
            entries: list.len(),
            skipped: 0,
            validators: Validators::default(),
            checksum: None,
            confirmed: SystemTime::UNIX_EPOCH,
            checked: SystemTime::UNIX_EPOCH,
            failures: 0,
            in_flight: false,
            dir,
        }
    }

    fn loaded(&self) -> Option<Loaded> {
        Some(Loaded {
            list: self.list.upgrade()?,
            entries: self.entries,
            skipped: self.skipped,
        })
    }

    fn due(&self, spec: &UrlSpec) -> SystemTime {
        let wait = match self.failures {
            0 => spec.refresh,
            n => FIRST_RETRY
                .saturating_mul(1 << (n - 1).min(16))
                .min(spec.refresh),
        };
        self.checked
            .checked_add(wait)
            .unwrap_or(self.checked + MAX_REFRESH)
    }
}

/// The URL-list copies of a process, shared by every runtime it builds.
#[derive(Debug)]
pub struct UrlLists {
    mode: Mode,
    entries: Mutex<HashMap<(String, String), Entry>>,
    fetcher: Mutex<Option<Fetcher>>,
    /// The cache directory the last configuration used (for lists the refresh task has to
    /// take over, see `refresh`).
    dir: Mutex<Option<PathBuf>>,
    /// Wakes the refresh task (a refresh finished, or a configuration was loaded).
    wake: tokio::sync::Notify,
}

impl UrlLists {
    /// An empty store.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            entries: Mutex::default(),
            fetcher: Mutex::default(),
            dir: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// What the store may do.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        // A panic while holding this lock leaves plain data behind: keep going.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The HTTP client, built on first use (it reads the system's CA certificates).
    pub fn fetcher(&self) -> Result<Fetcher, Error> {
        let mut f = self
            .fetcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = &*f {
            return Ok(f.clone());
        }
        let new = Fetcher::new()?;
        *f = Some(new.clone());
        Ok(new)
    }

    /// A copy of every list in `specs`, in order: from memory, else from the copy on disk
    /// under `dir`, else fetched (the missing ones at once, each bounded by the fetch
    /// timeouts). Blocks the calling thread while fetching; the fetches run on a helper
    /// thread, so this works from synchronous code and inside an async task alike.
    /// `now` is the server clock's wall time (copies older than `refresh` are due).
    pub fn ensure(
        &self,
        specs: &[UrlSpec],
        dir: &Path,
        now: SystemTime,
    ) -> Vec<Result<Loaded, Error>> {
        let dir = self.usable_dir(dir);
        dir.clone_into(
            &mut self
                .dir
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut out: Vec<Option<Result<Loaded, Error>>> = specs.iter().map(|_| None).collect();
        let mut missing = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            metrics::register_list_series(&spec.name);
            if let Some(l) = self.in_memory(spec) {
                out[i] = Some(Ok(l));
            } else if let Some(l) = dir.as_deref().and_then(|d| self.on_disk(spec, d, now)) {
                out[i] = Some(Ok(l));
            } else {
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let fetched = match self.fetcher() {
                Ok(f) => fetch_all(&f, missing.iter().map(|&i| &specs[i])),
                Err(e) => missing.iter().map(|_| Err(e.clone())).collect(),
            };
            for (&i, result) in missing.iter().zip(fetched) {
                out[i] = Some(self.accept_first(&specs[i], result, dir.as_deref(), now));
            }
        }
        self.wake.notify_one();
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Client("internal: no result".into()))))
            .collect()
    }

    /// The cache directory if this store may use it: created for `run`, existing for the
    /// read-only commands. Without one, copies live in memory only.
    fn usable_dir(&self, dir: &Path) -> Option<PathBuf> {
        match self.mode {
            Mode::ReadOnly => dir.is_dir().then(|| dir.to_path_buf()),
            Mode::Serve => match std::fs::create_dir_all(dir) {
                Ok(()) => Some(dir.to_path_buf()),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot create the list cache directory: URL lists are kept in memory only, so a restart while a source is down loses them (set [server] state_dir)");
                    None
                }
            },
        }
    }

    fn in_memory(&self, spec: &UrlSpec) -> Option<Loaded> {
        let map = self.lock();
        let e = map.get(&spec.key())?;
        if e.kind != spec.kind || e.format != spec.format {
            return None;
        }
        e.loaded()
    }

    fn on_disk(&self, spec: &UrlSpec, dir: &Path, now: SystemTime) -> Option<Loaded> {
        let copy = match disk::load(dir, &spec.name, &spec.url) {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => {
                warn!(list = %spec.name, dir = %dir.display(), error = %e, "cannot read the saved copy of the list");
                return None;
            }
        };
        let (list, stats) = match decode(spec, &copy.body) {
            Ok(x) => x,
            Err(e) => {
                warn!(list = %spec.name, error = %e, "the saved copy of the list is unusable");
                return None;
            }
        };
        let age = now.duration_since(copy.confirmed).unwrap_or_default();
        info!(list = %spec.name, url = %spec.url, entries = stats.entries, age_secs = age.as_secs(), "list loaded from its saved copy");
        let list = Arc::new(list);
        self.lock().insert(
            spec.key(),
            Entry {
                entries: stats.entries,
                skipped: stats.skipped,
                checksum: Some(disk::fnv1a64(&copy.body)),
                validators: copy.validators,
                confirmed: copy.confirmed,
                // A copy older than `refresh` is due at once: the refresh task asks the
                // source right after start, while the copy serves.
                checked: copy.confirmed.min(now),
                ..Entry::new(spec, &list, Some(dir.to_path_buf()))
            },
        );
        Some(Loaded {
            list,
            entries: stats.entries,
            skipped: stats.skipped,
        })
    }

    /// Takes a list fetched because there was no copy at all.
    fn accept_first(
        &self,
        spec: &UrlSpec,
        result: Result<Fetched, Error>,
        dir: Option<&Path>,
        now: SystemTime,
    ) -> Result<Loaded, Error> {
        let decoded = result.and_then(|f| match f {
            Fetched::Body { body, validators } => {
                decode(spec, &body).map(|(l, s)| (l, s, body, validators))
            }
            // Only an answer to a conditional GET, which this was not.
            Fetched::NotModified(_) => Err(Error::Status(304)),
        });
        let (list, stats, body, validators) = match decoded {
            Ok(x) => x,
            Err(e) => {
                metrics::count_fetch(&spec.name, metrics::FetchResult::Failed);
                return Err(e);
            }
        };
        metrics::count_fetch(&spec.name, metrics::FetchResult::Updated);
        info!(list = %spec.name, url = %spec.url, entries = stats.entries, "list fetched");
        let dir = dir.filter(|_| self.mode == Mode::Serve);
        save_copy(dir, spec, &body, &validators, now);
        let list = Arc::new(list);
        self.lock().insert(
            spec.key(),
            Entry {
                entries: stats.entries,
                skipped: stats.skipped,
                checksum: Some(disk::fnv1a64(&body)),
                validators,
                confirmed: now,
                checked: now,
                ..Entry::new(spec, &list, dir.map(Path::to_path_buf))
            },
        );
        Ok(Loaded {
            list,
            entries: stats.entries,
            skipped: stats.skipped,
        })
    }
}

/// Saves a fetched body as the list's copy in `dir` (if any); a failure is a warning: the
/// list serves from memory.
pub(super) fn save_copy(
    dir: Option<&Path>,
    spec: &UrlSpec,
    body: &[u8],
    v: &Validators,
    now: SystemTime,
) {
    if let Some(dir) = dir {
        if let Err(e) = disk::save(dir, &spec.name, &spec.url, body, v, now) {
            warn!(list = %spec.name, dir = %dir.display(), error = %e, "cannot save the list's copy");
        }
    }
}

/// Fetches every spec at once on a helper thread with its own runtime, and waits.
fn fetch_all<'a>(
    fetcher: &Fetcher,
    specs: impl Iterator<Item = &'a UrlSpec>,
) -> Vec<Result<Fetched, Error>> {
    let jobs: Vec<(String, u64)> = specs.map(|s| (s.url.clone(), s.max_size)).collect();
    let n = jobs.len();
    let fetcher = fetcher.clone();
    let run = move || -> Result<Vec<Result<Fetched, Error>>, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, (url, max)) in jobs.into_iter().enumerate() {
                let f = fetcher.clone();
                set.spawn(async move { (i, f.fetch(&url, None, max).await) });
            }
            let mut out: Vec<Option<Result<Fetched, Error>>> = (0..n).map(|_| None).collect();
            while let Some(done) = set.join_next().await {
                if let Ok((i, r)) = done {
                    out[i] = Some(r);
                }
            }
            Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(Error::Http("the fetch task failed".into()))))
                .collect())
        })
    };
    let joined = std::thread::Builder::new()
        .name("dnsgate-fetch".into())
        .spawn(run)
        .map_err(|e| Error::Client(e.to_string()))
        .and_then(|h| {
            h.join()
                .map_err(|_| Error::Client("the fetch thread panicked".into()))?
        });
    match joined {
        Ok(v) => v,
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
    }
}

/// Parses a body. A body with lines but not one usable entry is refused: that is an error
/// page served with 200 (a captive portal, a CDN's HTML) or the wrong `format`, and taking
/// it would silently empty the list.
pub fn decode(spec: &UrlSpec, body: &[u8]) -> Result<(List, ParseStats), Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (list, stats) = List::parse(spec.kind, spec.format, text);
    if stats.entries == 0 && stats.skipped > 0 {
        let (line, why) = stats.warnings.first().cloned().unwrap_or_default();
        return Err(Error::Unusable {
            skipped: stats.skipped,
            line,
            why,
        });
    }
    if stats.skipped > 0 {
        info!(list = %spec.name, skipped = stats.skipped, first = ?stats.warnings.first(), "list lines skipped");
    }
    Ok((list, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_doubling_up_to_refresh() {
        let spec = UrlSpec {
            name: "ads".into(),
            url: "http://x.test/ads".into(),
            kind: ListKind::Domain,
            format: ListFormat::Domains,
            refresh: Duration::from_secs(3600),
            max_size: DEFAULT_MAX_SIZE,
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut e = Entry {
            kind: spec.kind,
            format: spec.format,
            list: Weak::new(),
            entries: 0,
            skipped: 0,
            validators: Validators::default(),
            checksum: None,
            confirmed: t0,
            checked: t0,
            failures: 0,
            in_flight: false,
            dir: None,
        };
        let wait = |e: &Entry| e.due(&spec).duration_since(t0).unwrap().as_secs();
        assert_eq!(wait(&e), 3600, "healthy: every refresh");
        let mut waits = Vec::new();
        for n in 1..=8 {
            e.failures = n;
            waits.push(wait(&e));
        }
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        e.failures = u32::MAX;
        assert_eq!(wait(&e), 3600, "no overflow after many failures");
        // A refresh near the limit of the clock does not overflow either.
        let far = UrlSpec {
            refresh: MAX_REFRESH,
            ..spec.clone()
        };
        e.failures = 0;
        assert!(e.due(&far) > t0);
    }
}
