//! Device sessions over time (SPEC §12): when each device was last seen is kept in
//! `api/last_seen.json` across restarts (saved each minute), and with `[identity]
//! revoke_inactive_after` a device not seen for that long is revoked — checked at start
//! and then hourly, audited as dnsgate's own change (`"token": null`, `"source_ip":
//! "0.0.0.0"`); with `dry_run = true` it is only logged.
//!
//! A device never seen counts from when dnsgate first knew it (`known_since`), so a device
//! added yesterday is not revoked today for having never asked.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use super::App;
use crate::runtime::Runtime;

/// How often the times are saved.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// How often inactive devices are looked for.
const CHECK_EVERY: u64 = 3600;

/// What is kept, by device id.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Saved {
    #[serde(default)]
    devices: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Seen {
    /// Unix seconds of its last query, if any.
    last_seen: Option<u64>,
    /// Unix seconds of when dnsgate first knew the device.
    known_since: u64,
}

impl Seen {
    /// Since when the device has been quiet.
    fn quiet_since(self) -> u64 {
        self.last_seen.unwrap_or(self.known_since)
    }
}

fn load(path: &Path) -> Saved {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            warn!(path = %path.display(), error = %e, "last-seen times do not load; starting afresh");
            Saved::default()
        }),
        Err(_) => Saved::default(),
    }
}

/// Merges the directory's times into `saved` (devices new to it known from `now`; the
/// later of two times kept) and the saved times into the directory.
fn merge(rt: &Runtime, saved: &mut Saved, now: u64) {
    for (id, identity) in rt.directory.devices() {
        let seen = saved.devices.entry(id.to_owned()).or_insert(Seen {
            last_seen: None,
            known_since: now,
        });
        if let Some(kept) = seen.last_seen {
            identity.last_seen.at_least(kept);
        }
        seen.last_seen = identity.last_seen.get().max(seen.last_seen);
    }
}

/// The times kept, given to the directory in service (before the API answers, so the
/// first answer already shows them).
pub(super) fn restore(app: &App) -> Saved {
    let rt = app.shared.live.load_full();
    let Some(settings) = rt.settings.api.as_ref() else {
        return Saved::default();
    };
    let mut saved = load(&settings.last_seen);
    let now = u64::try_from(app.shared.clock.wall().as_second()).unwrap_or(0);
    merge(&rt, &mut saved, now);
    saved
}

/// Keeps last-seen times and revokes inactive devices, for as long as the API serves.
pub(super) async fn run(app: Arc<App>, mut saved: Saved) {
    let Some(settings) = app.shared.live.load().settings.api.clone() else {
        return;
    };
    let mut next_check = 0;
    loop {
        let rt = app.shared.live.load_full();
        let now = u64::try_from(app.shared.clock.wall().as_second()).unwrap_or(0);
        let before = saved.clone();
        merge(&rt, &mut saved, now);
        if saved != before || next_check == 0 {
            let bytes = serde_json::to_vec_pretty(&saved).unwrap_or_default();
            if let Err(e) = crate::sys::write_atomic(&settings.last_seen, &bytes) {
                warn!(path = %settings.last_seen.display(), error = %e, "cannot save last-seen times");
            }
        }
        if now >= next_check {
            next_check = now + CHECK_EVERY;
            if let Some(after) = settings.revoke_inactive_after {
                revoke_inactive(&app, &rt, &saved, now, after, settings.dry_run).await;
            }
        }
        tokio::time::sleep(SAVE_EVERY).await;
    }
}

/// Revokes (or, dry, logs) each device quiet for `after`.
async fn revoke_inactive(
    app: &App,
    rt: &Runtime,
    saved: &Saved,
    now: u64,
    after: Duration,
    dry_run: bool,
) {
    let limit = now.saturating_sub(after.as_secs());
    for (id, seen) in &saved.devices {
        let revoked = rt.overlays.devices.get(id).is_some_and(|d| d.revoked);
        if revoked || seen.quiet_since() >= limit || rt.directory.identity_for_device(id).is_none()
        {
            continue;
        }
        let quiet_days = (now - seen.quiet_since()) / 86_400;
        if dry_run {
            info!(device = %id, quiet_days, "revoke_inactive_after: would revoke (dry_run)");
            continue;
        }
        if let Err(e) = revoke(app, id).await {
            warn!(device = %id, error = %e.message, "revoke_inactive_after: cannot revoke");
        } else {
            info!(device = %id, quiet_days, "revoke_inactive_after: revoked");
        }
    }
}

async fn revoke(app: &App, id: &str) -> Result<(), super::ApiError> {
    use crate::runtime::overlays::Overlays;
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let Some(path) = rt.settings.api.as_ref().map(|a| a.overlays.clone()) else {
        return Ok(());
    };
    let mut overlays =
        Overlays::load(&path).map_err(|d| super::ApiError::unavailable(d.message))?;
    let d = overlays.devices.entry(id.to_owned()).or_default();
    d.revoked = true;
    d.doh_token_sha256 = None;
    let object = format!("device:{id}");
    super::commit(
        app,
        None,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ("devices.revoke_inactive", Some(&object)),
        (
            Some(&json!({"id": id, "revoked": false})),
            Some(&json!({"id": id, "revoked": true})),
        ),
        vec![(
            path,
            Some(serde_json::to_vec_pretty(&overlays).unwrap_or_default()),
        )],
    )
    .await
}
