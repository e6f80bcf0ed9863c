//! The runtime in service, and the one place that replaces it: a SIGHUP reload, a URL
//! list that changed (and later the admin API) all come through [`Live`], one at a time
//! under its lock, so no replacement ever loses another's change (SPEC §7).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{debug, error, info, warn};

use super::Runtime;
use crate::clock::Clock;
use crate::diag::Diagnostic;
use crate::lists::List;
use crate::lists::url::UrlSpec;
use crate::lists::url::refresh::{Host, InService};
use crate::metrics;

/// The configuration in service. Each query takes one snapshot ([`Live::load`]) and uses
/// it to the end, so a replacement never mixes two configurations in one answer.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Runtime>,
    /// Held while the runtime is replaced.
    replacing: tokio::sync::Mutex<()>,
    config_path: PathBuf,
    clock: Clock,
}

impl Live {
    /// `rt`, loaded from `config_path`, in service; time told by its clock.
    pub fn new(config_path: &Path, rt: Runtime) -> Self {
        publish_list_gauges(&rt, None);
        let clock = rt.clock.clone();
        Self {
            current: ArcSwap::from_pointee(rt),
            replacing: tokio::sync::Mutex::new(()),
            config_path: config_path.to_path_buf(),
            clock,
        }
    }

    /// The runtime in service (cheap; hold it only for one query or one batch).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
    }

    /// The runtime in service, to keep across awaits.
    pub fn load_full(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// The server's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Reloads the configuration file (SIGHUP): the new runtime replaces the old only if
    /// all of it loads; otherwise the old keeps serving and the errors are returned.
    /// Loading reads files and may fetch lists: it runs on the blocking pool.
    pub async fn reload(self: &Arc<Self>) -> Result<(), Vec<Diagnostic>> {
        self.reload_approved(|_| Ok(())).await
    }

    /// [`Self::reload`], with `approve` told the result (the new runtime, or why it was
    /// rejected) before anything changes: the admin API writes its audit line there, and
    /// a failure to write it (an `Err` naming why) keeps the running configuration.
    pub async fn reload_approved(
        self: &Arc<Self>,
        approve: impl FnOnce(Result<&Runtime, &[Diagnostic]>) -> Result<(), String>,
    ) -> Result<(), Vec<Diagnostic>> {
        let _one_at_a_time = self.replacing.lock().await;
        let live = self.clone();
        let loaded = crate::sys::background("reload", move || {
            // URL lists: the copies this process holds are taken as they are (a reload
            // reads the configuration, not the network); only a list without one is fetched.
            let old = live.load_full();
            let mut rt = Runtime::load_with(&live.config_path, &old.url_lists, &old.clock)?;
            rt.adopt_upstreams(&old);
            rt.directory.adopt_last_seen(&old.directory);
            if rt.settings != old.settings {
                warn!(
                    "listen, metrics, query log and cache settings take effect at the next restart"
                );
            }
            Ok(rt)
        })
        .await
        .unwrap_or_else(|| {
            Err(vec![Diagnostic::file(
                &self.config_path,
                "the reload task failed",
            )])
        });
        let approved = approve(loaded.as_ref().map_err(Vec::as_slice));
        if let Err(why) = approved {
            return Err(vec![Diagnostic::file(&self.config_path, why)]);
        }
        match loaded {
            Ok(rt) => {
                let summary = rt.summary();
                self.replace(rt).await;
                // Counted before it is logged: whoever sees the line sees the count.
                ::metrics::counter!(metrics::CONFIG_RELOADS_TOTAL, "result" => "success")
                    .increment(1);
                info!(summary = %summary, "configuration reloaded");
                Ok(())
            }
            Err(diags) => {
                ::metrics::counter!(metrics::CONFIG_RELOADS_TOTAL, "result" => "failure")
                    .increment(1);
                for d in &diags {
                    error!("{d}");
                }
                error!(
                    errors = diags.len(),
                    "reload rejected; the running configuration keeps serving"
                );
                Err(diags)
            }
        }
    }

    /// Puts `rt` into service (the caller holds the lock). The old runtime is dropped and
    /// the heap trimmed on the blocking pool: freeing a million-name list takes a while.
    async fn replace(&self, rt: Runtime) {
        let old = self.current.load_full();
        publish_list_gauges(&rt, Some(&old));
        self.current.store(Arc::new(rt));
        crate::sys::background("free", move || {
            drop(old);
            crate::sys::release_memory();
        })
        .await;
    }
}

impl Host for Live {
    fn in_service(&self) -> InService {
        let rt = self.load();
        InService {
            store: rt.url_lists.clone(),
            specs: rt.url_specs.clone(),
            lists: rt.lists.clone(),
        }
    }

    /// Recompiles the policies of the runtime in service against the new list, under the
    /// lock, so a reload and a swap never interleave.
    async fn swap_list(&self, spec: &UrlSpec, list: Arc<List>, entries: usize, skipped: usize) {
        let _one_at_a_time = self.replacing.lock().await;
        let current = self.load_full();
        if !current.url_specs.iter().any(|s| s.same_source(spec)) {
            // A reload removed or changed the list while it was being fetched.
            debug!(list = %spec.name, "list no longer configured; not swapped in");
            return;
        }
        // Recompiling is work for the blocking pool: the async threads serve DNS.
        let name = spec.name.clone();
        let cur = current.clone();
        let built =
            crate::sys::background("swap", move || cur.with_list(&name, list, entries, skipped))
                .await
                .unwrap_or_else(|| {
                    Err(vec![Diagnostic::file(
                        Path::new(&spec.url),
                        "list swap failed",
                    )])
                });
        drop(current);
        match built {
            Ok(rt) => {
                self.replace(rt).await;
                info!(list = %spec.name, url = %spec.url, entries, "list updated");
            }
            Err(diags) => {
                // The same configuration compiled before with a list of the same kind.
                for d in &diags {
                    error!("{d}");
                }
                error!(list = %spec.name, "the updated list could not be put into service");
            }
        }
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// `dnsgate_list_entries` for the lists of `rt`; lists `old` had and `rt` has not go to 0
/// (a recorder cannot delete a series).
fn publish_list_gauges(rt: &Runtime, old: Option<&Runtime>) {
    for l in &rt.list_info {
        ::metrics::gauge!(metrics::LIST_ENTRIES, "list" => l.name.clone()).set(l.entries as f64);
    }
    for l in old.map_or(&[][..], |o| &o.list_info) {
        if !rt.list_info.iter().any(|n| n.name == l.name) {
            ::metrics::gauge!(metrics::LIST_ENTRIES, "list" => l.name.clone()).set(0.0);
        }
    }
}
