//! Metric names (SPEC §6), their descriptions, and the Prometheus endpoint.
//!
//! Labels come only from enums and configuration (protocol, action, rcode, policy name,
//! upstream, list name) — never from a query name or a client address, which would make
//! one series per domain (blocky PR #2114).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::label::{Protocol, QueryAction, Rcode};

/// Queries received, by protocol (udp, tcp) and action (allow, block, override,
/// safesearch, ytrestricted, refused, error).
pub const QUERIES_TOTAL: &str = "dnsgate_queries_total";
/// Responses sent, by rcode.
pub const RESPONSES_TOTAL: &str = "dnsgate_responses_total";
/// Decisive policy matches, by policy name.
pub const POLICY_MATCHES_TOTAL: &str = "dnsgate_policy_matches_total";
/// Time from query to response.
pub const QUERY_DURATION_SECONDS: &str = "dnsgate_query_duration_seconds";
/// Answers served from the cache.
pub const CACHE_HITS_TOTAL: &str = "dnsgate_cache_hits_total";
/// Lookups the cache could not answer fresh.
pub const CACHE_MISSES_TOTAL: &str = "dnsgate_cache_misses_total";
/// Failed upstream attempts, by upstream.
pub const UPSTREAM_ERRORS_TOTAL: &str = "dnsgate_upstream_errors_total";
/// Entries per list.
pub const LIST_ENTRIES: &str = "dnsgate_list_entries";
/// Seconds since a URL list's source last confirmed the copy in service (by a 200 or a
/// 304), by list. Published every 10 s.
pub const LIST_AGE_SECONDS: &str = "dnsgate_list_age_seconds";
/// URL list fetches, by list and result (updated, not_modified, failed).
pub const LIST_FETCHES_TOTAL: &str = "dnsgate_list_fetches_total";
/// Failed URL list fetches, by list (the alerting view of `result="failed"` above).
pub const LIST_FETCH_FAILURES_TOTAL: &str = "dnsgate_list_fetch_failures_total";
/// Configuration reloads, by result (success, failure).
pub const CONFIG_RELOADS_TOTAL: &str = "dnsgate_config_reloads_total";
/// Answers served stale (RFC 8767).
pub const STALE_ANSWERS_TOTAL: &str = "dnsgate_stale_answers_total";
/// Queries sent to upstreams and authoritative servers, by protocol.
pub const OUTGOING_QUERIES_TOTAL: &str = "dnsgate_outgoing_queries_total";
/// DNSSEC validation results.
pub const DNSSEC_RESULTS_TOTAL: &str = "dnsgate_dnssec_results_total";
/// Cached answers refreshed in the background before they expired.
pub const PREFETCHES_TOTAL: &str = "dnsgate_prefetches_total";
/// UDP queries past a rate limit, by what they got (slip: an empty truncated answer;
/// drop: nothing) and who sent them (client, outsider).
pub const RATE_LIMITED_TOTAL: &str = "dnsgate_rate_limited_total";
/// Query-log lines not written because their kind is sampled (refused outsiders).
pub const QUERYLOG_SAMPLED_OUT_TOTAL: &str = "dnsgate_querylog_sampled_out_total";
/// Query-log lines lost: the writer fell behind, or a write failed (a full disk).
pub const QUERYLOG_DROPPED_TOTAL: &str = "dnsgate_querylog_dropped_total";

/// Requests to external-evaluation endpoints, by policy and result (allow, block,
/// override, continue; timeout, http_error, bad_reply, network_error, overloaded).
pub const EXTERNAL_REQUESTS_TOTAL: &str = "dnsgate_external_requests_total";
/// How long requests to external-evaluation endpoints took, by policy.
pub const EXTERNAL_REQUEST_DURATION_SECONDS: &str = "dnsgate_external_request_duration_seconds";

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        QUERIES_TOTAL,
        "DNS queries received, by protocol and action"
    );
    describe_counter!(RESPONSES_TOTAL, "DNS responses sent, by rcode");
    describe_counter!(POLICY_MATCHES_TOTAL, "Decisive policy matches, by policy");
    describe_histogram!(
        QUERY_DURATION_SECONDS,
        Unit::Seconds,
        "Time from query to response"
    );
    describe_counter!(CACHE_HITS_TOTAL, "Answers served from the cache");
    describe_counter!(
        CACHE_MISSES_TOTAL,
        "Lookups the cache could not answer fresh"
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Failed upstream attempts, by upstream"
    );
    describe_gauge!(LIST_ENTRIES, "Entries per list");
    describe_gauge!(
        LIST_AGE_SECONDS,
        Unit::Seconds,
        "Seconds since a URL list's source last confirmed the copy in service"
    );
    describe_counter!(
        LIST_FETCHES_TOTAL,
        "URL list fetches, by list and result (updated, not_modified, failed)"
    );
    describe_counter!(
        LIST_FETCH_FAILURES_TOTAL,
        "Failed URL list fetches, by list"
    );
    describe_counter!(CONFIG_RELOADS_TOTAL, "Configuration reloads, by result");
    describe_counter!(STALE_ANSWERS_TOTAL, "Answers served stale (RFC 8767)");
    describe_counter!(
        OUTGOING_QUERIES_TOTAL,
        "Queries sent to upstreams or authoritative servers, by protocol"
    );
    describe_counter!(
        DNSSEC_RESULTS_TOTAL,
        "DNSSEC validation results: secure, insecure, bogus, indeterminate"
    );
    describe_counter!(
        PREFETCHES_TOTAL,
        "Cached answers refreshed in the background in the last 10% of their TTL"
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "UDP queries past a rate limit, by action (slip, drop) and source (client, outsider)"
    );
    describe_counter!(
        QUERYLOG_SAMPLED_OUT_TOTAL,
        "Query-log lines of refused outsiders left out by sampling"
    );
    describe_counter!(
        EXTERNAL_REQUESTS_TOTAL,
        "Requests to external-evaluation endpoints, by policy and result"
    );
    describe_histogram!(
        EXTERNAL_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "How long requests to external-evaluation endpoints took, by policy"
    );
    describe_counter!(
        QUERYLOG_DROPPED_TOTAL,
        "Query-log lines lost: the writer fell behind or a write failed"
    );
}

/// Creates the label-less and fixed-label series at 0, so a scrape sees them before the
/// first event (an alert on `increase(dnsgate_config_reloads_total{result="failure"}[5m])`
/// must see the first failure).
pub fn register_zeroes() {
    for name in [
        CACHE_HITS_TOTAL,
        CACHE_MISSES_TOTAL,
        STALE_ANSWERS_TOTAL,
        PREFETCHES_TOTAL,
    ] {
        metrics::counter!(name).increment(0);
    }
    for result in ["success", "failure"] {
        metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => result).increment(0);
    }
    for protocol in ["udp", "tcp"] {
        metrics::counter!(OUTGOING_QUERIES_TOTAL, "protocol" => protocol).increment(0);
    }
}

/// The outcome of one URL list fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    /// A new body was taken into service.
    Updated,
    /// The source answered 304: the copy in service is current.
    NotModified,
    /// No usable answer; the copy in service stays.
    Failed,
}

impl FetchResult {
    const ALL: [Self; 3] = [Self::Updated, Self::NotModified, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::NotModified => "not_modified",
            Self::Failed => "failed",
        }
    }
}

/// Counts a URL list fetch.
pub fn count_fetch(list: &str, result: FetchResult) {
    metrics::counter!(LIST_FETCHES_TOTAL, "list" => list.to_owned(), "result" => result.label())
        .increment(1);
    if result == FetchResult::Failed {
        metrics::counter!(LIST_FETCH_FAILURES_TOTAL, "list" => list.to_owned()).increment(1);
    }
}

/// Creates a URL list's fetch counters at 0, so an alert sees its first failure.
pub fn register_list_series(list: &str) {
    for result in FetchResult::ALL {
        metrics::counter!(LIST_FETCHES_TOTAL, "list" => list.to_owned(), "result" => result.label())
            .increment(0);
    }
    metrics::counter!(LIST_FETCH_FAILURES_TOTAL, "list" => list.to_owned()).increment(0);
}

/// Installs the global Prometheus recorder. Call once per process, before serving.
pub fn install_recorder() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(QUERY_DURATION_SECONDS.to_owned()), &BUCKETS)
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full(EXTERNAL_REQUEST_DURATION_SECONDS.to_owned()),
            &BUCKETS,
        )
        .ok()?;
    match builder.install_recorder() {
        Ok(h) => {
            describe();
            Some(h)
        }
        Err(e) => {
            warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Serves `GET /metrics` on an already bound listener until the process ends.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    if let Ok(addr) = listener.local_addr() {
        info!("serving metrics on http://{addr}/metrics");
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "metrics listener stopped");
    }
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The per-query series, registered once: a `counter!` with labels hashes its key and
/// searches the registry on every call, which the UDP fast path cannot afford.
#[derive(Debug)]
pub struct Hot {
    queries: [[metrics::Counter; QueryAction::ALL.len()]; Protocol::ALL.len()],
    responses: [metrics::Counter; Rcode::ALL.len()],
    duration: metrics::Histogram,
    cache_hits: metrics::Counter,
    /// [slip, drop] x [client, outsider].
    limited: [[metrics::Counter; 2]; 2],
    sampled_out: metrics::Counter,
}

impl Hot {
    /// Registers the series with the installed recorder (none installed: no-ops).
    pub fn new() -> Self {
        Self {
            queries: Protocol::ALL.map(|protocol| {
                QueryAction::ALL.map(|action| {
                    metrics::counter!(QUERIES_TOTAL, "protocol" => protocol.as_str(), "action" => action.as_str())
                })
            }),
            responses: Rcode::ALL.map(|rcode| metrics::counter!(RESPONSES_TOTAL, "rcode" => rcode.as_str())),
            duration: metrics::histogram!(QUERY_DURATION_SECONDS),
            cache_hits: metrics::counter!(CACHE_HITS_TOTAL),
            limited: ["slip", "drop"].map(|action| {
                ["client", "outsider"].map(|source| {
                    let c = metrics::counter!(RATE_LIMITED_TOTAL, "action" => action, "source" => source);
                    c.increment(0);
                    c
                })
            }),
            sampled_out: metrics::counter!(QUERYLOG_SAMPLED_OUT_TOTAL),
        }
    }

    /// Counts one query answered.
    #[inline]
    pub fn answered(
        &self,
        protocol: Protocol,
        action: QueryAction,
        rcode: Rcode,
        elapsed: std::time::Duration,
    ) {
        self.queries[protocol as usize][action as usize].increment(1);
        self.responses[rcode as usize].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }

    /// Counts a cache hit.
    pub fn cache_hit(&self) {
        self.cache_hits.increment(1);
    }

    /// Counts a query past a rate limit: slipped (true) or dropped, from an outsider
    /// (true) or a client.
    pub fn rate_limited(&self, slipped: bool, outsider: bool) {
        self.limited[usize::from(!slipped)][usize::from(outsider)].increment(1);
    }

    /// Counts a query-log line left out by sampling.
    pub fn sampled_out(&self) {
        self.sampled_out.increment(1);
    }
}

impl Default for Hot {
    fn default() -> Self {
        Self::new()
    }
}
