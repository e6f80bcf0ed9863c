//! One HTTP(S) download of a list: a conditional GET (RFC 9110 §13.1: `If-None-Match`
//! from the last good copy's ETag, `If-Modified-Since` from its Last-Modified) whose body
//! is read chunk by chunk and abandoned as soon as it passes the size limit, so a server
//! that sends gigabytes costs at most `max_size` bytes of memory.

use std::time::Duration;

use reqwest::header::{
    ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{StatusCode, redirect};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Error;

/// Time to establish a connection (TCP and TLS).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading the response.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest whole download: 64 MiB in two minutes is ~4.5 Mbit/s.
pub(super) const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed before giving up.
pub(super) const MAX_REDIRECTS: usize = 5;

/// What the source said about the copy, for the next conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The `ETag` header, as sent.
    pub etag: Option<String>,
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Self {
        let text = |name| {
            h.get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
        }
    }

    /// Whether there is anything to send in a conditional request.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A successful exchange.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the copy we hold is current. Carries the validators to keep (a 304 may send a
    /// new ETag; otherwise the old ones).
    NotModified(Validators),
    /// 200 with a body within the limit.
    Body {
        /// The bytes.
        body: Vec<u8>,
        /// Its validators.
        validators: Validators,
    },
}

/// The HTTP client for lists: a User-Agent naming dnsgate, bounded connect, read and total
/// times, a few redirects, and no idle connections (a list is fetched once a day; keeping
/// none also lets one client serve the helper runtimes of `check` and reloads).
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// Builds the client. Certificates are verified against the system's CA store; on a
    /// system with none, `https://` lists fail (and say so) while `http://` ones work.
    pub fn new() -> Result<Self, Error> {
        // reqwest is built without a default provider: use ring, as hickory does. Another
        // part of the process may have installed it first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("dnsgate/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .timeout(TOTAL_TIMEOUT)
                .redirect(redirect::Policy::custom(|attempt| {
                    // A list asked for over https never continues in clear text.
                    let downgrade = attempt.url().scheme() == "http"
                        && attempt.previous().iter().any(|u| u.scheme() == "https");
                    if downgrade {
                        attempt.error("refused a redirect from https to http")
                    } else if attempt.previous().len() > MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }))
                .pool_max_idle_per_host(0)
        };
        let client = match builder().build() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %chain(&e), "no usable CA certificates: https:// lists will fail (install the system's CA bundle)");
                builder()
                    .tls_certs_only(Vec::new())
                    .build()
                    .map_err(|e| Error::Client(chain(&e)))?
            }
        };
        Ok(Self { client })
    }

    /// GETs `url`, conditionally when `have` holds validators, keeping at most `max_size`
    /// bytes of body.
    pub async fn fetch(
        &self,
        url: &str,
        have: Option<&Validators>,
        max_size: u64,
    ) -> Result<Fetched, Error> {
        let mut req = self.client.get(url);
        if let Some(v) = have {
            // A validator that is not a valid header value (it came from our own cache
            // file) is left out: the GET is then unconditional, which is only slower.
            if let Some(h) = v
                .etag
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                req = req.header(IF_NONE_MATCH, h);
            }
            if let Some(h) = v
                .last_modified
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                req = req.header(IF_MODIFIED_SINCE, h);
            }
        }
        let mut resp = req.send().await.map_err(|e| Error::Http(chain(&e)))?;
        let status = resp.status();
        let mut validators = Validators::from_headers(resp.headers());
        if status == StatusCode::NOT_MODIFIED && have.is_some_and(|v| !v.is_empty()) {
            if let Some(old) = have {
                validators.etag = validators.etag.or_else(|| old.etag.clone());
                validators.last_modified = validators
                    .last_modified
                    .or_else(|| old.last_modified.clone());
            }
            return Ok(Fetched::NotModified(validators));
        }
        // Only a 200 carries the list: a 204, 205 or 206 (or any other) is no new copy.
        if status != StatusCode::OK {
            return Err(Error::Status(status.as_u16()));
        }
        let limit = max_size;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(Error::TooLarge { limit });
        }
        let capacity = resp.content_length().unwrap_or(0).min(limit);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Http(chain(&e)))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body { body, validators })
    }
}

/// An error and its causes on one line: reqwest's own message ("error sending request")
/// says little; the cause ("Connection refused") is what an operator needs.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}
