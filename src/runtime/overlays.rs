//! What the admin API changed on top of the configuration files (SPEC §12 "overlays"):
//! `enabled` of file policies, and revoked or re-issued device tokens. Kept in
//! `<state_dir>/api/overlays.json`, written atomically (a temporary file renamed over the
//! old one), read by every load after the configuration files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;

/// A file policy's overlay.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverlay {
    /// Replaces the file's `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A device's overlay.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverlay {
    /// Its token and labels name nobody.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// A token issued through the API (its SHA-256), replacing the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doh_token_sha256: Option<String>,
}

/// Every overlay.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlays {
    /// By policy name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyOverlay>,
    /// By device id.
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceOverlay>,
}

impl Overlays {
    /// Where they are kept under the state directory `state`.
    pub fn path(state: &Path) -> PathBuf {
        state.join("api").join("overlays.json")
    }

    /// The overlays at `path` (none if there is no file).
    pub fn load(path: &Path) -> Result<Self, Diagnostic> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Diagnostic {
                path: path.to_path_buf(),
                line: e.line(),
                col: e.column(),
                message: format!("the API's overlays do not load: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Diagnostic::file(path, format!("cannot read: {e}"))),
        }
    }

    /// Writes them to `path` whole or not at all.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::sys::write_atomic(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_round_trip_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = Overlays::path(dir.path());
        assert_eq!(Overlays::load(&path).unwrap(), Overlays::default());
        let mut o = Overlays::default();
        o.policies.insert(
            "kids".into(),
            PolicyOverlay {
                enabled: Some(false),
            },
        );
        o.devices.insert(
            "phone".into(),
            DeviceOverlay {
                revoked: true,
                doh_token_sha256: None,
            },
        );
        o.save(&path).unwrap();
        assert_eq!(Overlays::load(&path).unwrap(), o);
        std::fs::write(&path, "{\"policies\": 3}").unwrap();
        let d = Overlays::load(&path).unwrap_err();
        assert_eq!(d.line, 1);
    }
}
