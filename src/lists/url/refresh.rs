//! The refresh task of `dnsgate run`: asks each URL list's source again every `refresh`
//! (conditionally, so an unchanged list costs a 304), and swaps a changed list into the
//! serving runtime by itself — policies and categories recompiled against the new list,
//! everything else (directory, GeoIP, upstreams and their state, the cache) taken over as
//! it is. Nothing is re-read from disk, so this is not a reload.
//!
//! A failure (no answer, an error status, too big, unusable) is logged and counted; the
//! copy in service stays, and the source is asked again after 1 minute, then 2, 4, ... up
//! to `refresh`. The task follows reloads: each round it reads the lists of the runtime in
//! service, so a list a reload added is refreshed and one it removed is forgotten.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, warn};

use super::{Entry, Error, Fetched, UrlLists, UrlSpec, Validators, decode, disk, save_copy};
use crate::clock::Clock;
use crate::lists::List;
use crate::metrics::{self, FetchResult};

/// What the refresh task serves: the configuration in service, and the one place that
/// swaps a changed list into it (the runtime above implements this; lists never name it).
pub trait Host: Send + Sync + 'static {
    /// The list store, the URL lists configured now and the lists in service.
    fn in_service(&self) -> InService;

    /// Puts a new version of `spec`'s list into service (policies recompiled against it),
    /// unless the configuration no longer has that list.
    fn swap_list(
        &self,
        spec: &UrlSpec,
        list: Arc<List>,
        entries: usize,
        skipped: usize,
    ) -> impl Future<Output = ()> + Send;

    /// The clock refreshes are timed by.
    fn clock(&self) -> &Clock;
}

/// The URL lists of the configuration in service.
#[derive(Debug)]
pub struct InService {
    /// The process's list copies.
    pub store: Arc<UrlLists>,
    /// The URL lists configured.
    pub specs: Vec<UrlSpec>,
    /// Every list in service, by name.
    pub lists: HashMap<String, Arc<List>>,
}

/// The longest sleep between rounds: list ages are published this often.
const TICK: Duration = Duration::from_secs(10);

/// Runs until the process ends. Spawn it once, after the server started.
pub async fn run(host: Arc<impl Host>) {
    let mut published: HashSet<String> = HashSet::new();
    loop {
        let InService {
            store,
            specs,
            lists,
        } = host.in_service();
        let now = host.clock().system_time();

        // Ages first: a scrape between rounds sees values at most one TICK old.
        let mut current = HashSet::new();
        for (name, age) in store.ages(&specs, now) {
            ::metrics::gauge!(metrics::LIST_AGE_SECONDS, "list" => name.clone())
                .set(age.as_secs_f64().floor());
            current.insert(name);
        }
        // A list no longer configured keeps no age (a recorder cannot drop a series).
        for gone in published.difference(&current) {
            ::metrics::gauge!(metrics::LIST_AGE_SECONDS, "list" => gone.clone()).set(0.0);
        }
        published = current;

        store.prune();
        store.adopt_missing(&specs, &lists, now);
        drop(lists);
        let (due, next) = store.take_due(&specs, now);
        for (spec, have) in due {
            tokio::spawn(refresh_one(host.clone(), store.clone(), spec, have));
        }
        let wait = next
            .and_then(|t| t.duration_since(now).ok())
            .unwrap_or(TICK)
            .clamp(Duration::from_millis(50), TICK);
        tokio::select! {
            () = host.clock().sleep(wait) => {}
            () = store.wake.notified() => {}
        }
    }
}

/// One refresh of one list: fetch, then keep (304), swap (a new body) or count a failure.
async fn refresh_one(
    host: Arc<impl Host>,
    store: Arc<UrlLists>,
    spec: UrlSpec,
    have: Option<Validators>,
) {
    let fetched = match store.fetcher() {
        Ok(f) => f.fetch(&spec.url, have.as_ref(), spec.max_size).await,
        Err(e) => Err(e),
    };
    let now = host.clock().system_time();
    let outcome = match fetched {
        Ok(Fetched::NotModified(v)) => {
            confirmed(&store, &spec, v, now).await;
            Ok(())
        }
        Ok(Fetched::Body { body, validators }) => {
            take_body(&*host, &store, &spec, body, validators, now).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        let retry = store.failed(&spec, now);
        metrics::count_fetch(&spec.name, FetchResult::Failed);
        warn!(list = %spec.name, url = %spec.url, error = %e, retry_in_secs = retry.as_secs(), "list refresh failed; the copy in service stays");
    }
    store.wake.notify_one();
}

/// The copy in service is current (a 304, or the same body again): record when, here and
/// on disk.
async fn confirmed(store: &UrlLists, spec: &UrlSpec, v: Validators, now: SystemTime) {
    if let Some((dir, checksum)) = store.not_modified(spec, &v, now) {
        let s = spec.clone();
        let saved = tokio::task::spawn_blocking(move || {
            disk::confirm(&dir, &s.name, &s.url, checksum, &v, now)
        })
        .await;
        if let Ok(Err(e)) = saved {
            debug!(list = %spec.name, error = %e, "cannot record the confirmation on disk");
        }
    }
    debug!(list = %spec.name, url = %spec.url, "list not modified");
    metrics::count_fetch(&spec.name, FetchResult::NotModified);
}

/// A 200: the same body as in service (a source without validators) is a confirmation;
/// a new one is parsed, saved and swapped in.
async fn take_body(
    host: &impl Host,
    store: &Arc<UrlLists>,
    spec: &UrlSpec,
    body: Vec<u8>,
    validators: Validators,
    now: SystemTime,
) -> Result<(), Error> {
    let dir = store.dir_of(spec);
    let (s, v, st) = (spec.clone(), validators.clone(), store.clone());
    // Hashing, parsing and saving a big list take a while: off the serving threads.
    let parsed = crate::sys::background("list-parse", move || {
        let checksum = disk::fnv1a64(&body);
        if st.same_body(&s, checksum) {
            return Ok(None);
        }
        let (list, stats) = decode(&s, &body)?;
        let serving = st.entries_in_service(&s);
        if stats.entries == 0 && serving > 0 {
            return Err(Error::Emptied(serving));
        }
        save_copy(dir.as_deref(), &s, &body, &v, now);
        Ok(Some((list, stats, checksum)))
    })
    .await
    .unwrap_or_else(|| Err(Error::Client("the parse task failed".to_owned())))?;
    let Some((list, stats, checksum)) = parsed else {
        confirmed(store, spec, validators, now).await;
        return Ok(());
    };
    let list = Arc::new(list);
    store.replaced(
        spec,
        &list,
        stats.entries,
        stats.skipped,
        validators,
        checksum,
        now,
    );
    // Counted before the swap, so whoever sees the new list sees the count.
    metrics::count_fetch(&spec.name, FetchResult::Updated);
    host.swap_list(spec, list, stats.entries, stats.skipped)
        .await;
    Ok(())
}

impl UrlLists {
    /// The lists of `specs` due for a refresh at `now`, marked in flight, with the
    /// validators of the copy in service; and when the next of the others is due.
    fn take_due(
        &self,
        specs: &[UrlSpec],
        now: SystemTime,
    ) -> (Vec<(UrlSpec, Option<Validators>)>, Option<SystemTime>) {
        let mut map = self.lock();
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for spec in specs {
            let Some(e) = map.get_mut(&spec.key()) else {
                continue;
            };
            if e.in_flight || e.kind != spec.kind || e.format != spec.format {
                continue;
            }
            let at = e.due(spec);
            if at <= now {
                e.in_flight = true;
                // A 304 means "keep what you have": ask conditionally only while we have it.
                let have = (e.list.strong_count() > 0).then(|| e.validators.clone());
                due.push((spec.clone(), have));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (due, next)
    }

    /// Makes sure every list in service has an entry to schedule its refreshes. Normally
    /// loading made one; it is missing only after a race (a rejected reload that changed a
    /// list's `format` while it was being refreshed), and then the list in service is
    /// taken over as it is and asked for again at once.
    fn adopt_missing(
        &self,
        specs: &[UrlSpec],
        lists: &std::collections::HashMap<String, Arc<List>>,
        now: SystemTime,
    ) {
        let dir = self
            .dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut map = self.lock();
        for spec in specs {
            let Some(list) = lists.get(&spec.name) else {
                continue;
            };
            let old = map.get(&spec.key());
            if old.is_some_and(|e| e.in_flight || e.list.strong_count() > 0) {
                continue;
            }
            let confirmed = old.map_or(now, |e| e.confirmed);
            map.insert(
                spec.key(),
                Entry {
                    confirmed,
                    ..Entry::new(spec, list, dir.clone())
                },
            );
        }
    }

    /// Seconds since each listed source last confirmed its copy.
    fn ages(&self, specs: &[UrlSpec], now: SystemTime) -> Vec<(String, Duration)> {
        let map = self.lock();
        specs
            .iter()
            .filter_map(|s| {
                let e = map.get(&s.key())?;
                Some((
                    s.name.clone(),
                    now.duration_since(e.confirmed).unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Forgets sources no runtime uses any more.
    fn prune(&self) {
        self.lock()
            .retain(|_, e| e.in_flight || e.list.strong_count() > 0);
    }

    /// Runs `f` on the entry of `spec`, if it is still the one `spec` was fetched for (a
    /// reload may have changed the list's type or format meanwhile).
    fn entry<R>(&self, spec: &UrlSpec, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.lock()
            .get_mut(&spec.key())
            .filter(|e| e.kind == spec.kind && e.format == spec.format)
            .map(f)
    }

    fn dir_of(&self, spec: &UrlSpec) -> Option<PathBuf> {
        self.entry(spec, |e| e.dir.clone()).flatten()
    }

    /// Whether `checksum` is that of the body in service.
    /// Entries of the copy in service (0 if none is).
    fn entries_in_service(&self, spec: &UrlSpec) -> usize {
        self.entry(spec, |e| {
            if e.list.strong_count() > 0 {
                e.entries
            } else {
                0
            }
        })
        .unwrap_or(0)
    }

    fn same_body(&self, spec: &UrlSpec, checksum: u64) -> bool {
        self.entry(spec, |e| {
            e.checksum == Some(checksum) && e.list.strong_count() > 0
        })
        .unwrap_or(false)
    }

    /// Records a 304; returns where the copy is saved and the checksum of the one in service.
    fn not_modified(
        &self,
        spec: &UrlSpec,
        v: &Validators,
        now: SystemTime,
    ) -> Option<(PathBuf, Option<u64>)> {
        self.entry(spec, |e| {
            e.validators = v.clone();
            e.confirmed = now;
            e.checked = now;
            e.failures = 0;
            e.in_flight = false;
            e.dir.clone().map(|d| (d, e.checksum))
        })
        .flatten()
    }

    /// Records a new body.
    #[allow(clippy::too_many_arguments)]
    fn replaced(
        &self,
        spec: &UrlSpec,
        list: &Arc<List>,
        entries: usize,
        skipped: usize,
        v: Validators,
        checksum: u64,
        now: SystemTime,
    ) {
        self.entry(spec, |e| {
            e.list = Arc::downgrade(list);
            e.entries = entries;
            e.skipped = skipped;
            e.validators = v;
            e.checksum = Some(checksum);
            e.confirmed = now;
            e.checked = now;
            e.failures = 0;
            e.in_flight = false;
        });
    }

    /// Records a failure; returns the wait before the next try.
    fn failed(&self, spec: &UrlSpec, now: SystemTime) -> Duration {
        self.entry(spec, |e| {
            e.checked = now;
            e.failures = e.failures.saturating_add(1);
            e.in_flight = false;
            e.due(spec).duration_since(now).unwrap_or_default()
        })
        .unwrap_or(spec.refresh)
    }
}
