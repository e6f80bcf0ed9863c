//! The last good copy of each URL list, kept on disk so a restart while the source is down
//! still has the list.
//!
//! Per list two files in the cache directory, named after the list and a hash of its URL
//! (a changed URL is a different copy): `NAME-HASH.list`, the body as fetched, and
//! `NAME-HASH.json`, what we know about it (URL, ETag, Last-Modified, when it was fetched
//! and last confirmed, its size and checksum). Each is written to a temporary file, synced
//! and renamed over the old one, so a crash leaves the old file or the new, never half of
//! one. A body whose metadata does not match it (a crash between the two renames) is still
//! a whole list: it is used without validators, so the next GET is unconditional.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fetch::Validators;

/// The directory under the state directory that holds list copies.
const SUBDIR: &str = "lists";
/// Where dnsgate keeps state when nothing else says: what `StateDirectory=dnsgate` makes.
const DEFAULT_STATE_DIR: &str = "/var/lib/dnsgate";

/// The list cache directory: `STATE_DIR/lists`, where the state directory is the
/// configuration's `[server] state_dir`, else systemd's `$STATE_DIRECTORY` (set by
/// `StateDirectory=`; the first entry if it names several), else `/var/lib/dnsgate`.
pub fn cache_dir(configured: Option<&Path>) -> PathBuf {
    state_dir(configured).join(SUBDIR)
}

/// The state directory: the configuration's `[server] state_dir`, else systemd's
/// `$STATE_DIRECTORY` (its first entry), else `/var/lib/dnsgate`.
pub fn state_dir(configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(dir) => dir.to_path_buf(),
        None => std::env::var_os("STATE_DIRECTORY")
            .and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    }
}

/// What the `.json` file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    /// The URL the body came from.
    pub url: String,
    /// The validators the source sent with it.
    #[serde(flatten)]
    pub validators: Validators,
    /// When the body was downloaded (Unix seconds).
    pub fetched: u64,
    /// When the source last confirmed it current, by a 200 or a 304 (Unix seconds).
    pub confirmed: u64,
    /// Body length in bytes.
    pub size: u64,
    /// FNV-1a 64 of the body, hex.
    pub checksum: String,
}

/// A copy read back from disk.
#[derive(Debug)]
pub(super) struct Copy {
    /// The body.
    pub body: Vec<u8>,
    /// Validators for the next conditional GET (empty when the metadata did not match).
    pub validators: Validators,
    /// When the source last confirmed it current.
    pub confirmed: SystemTime,
}

/// FNV-1a, 64 bits: stable across Rust releases and platforms, unlike `DefaultHasher`, so
/// a file name computed today finds the file written by an older build.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The two file paths of a list's copy, without extension.
pub(super) fn stem(dir: &Path, name: &str, url: &str) -> PathBuf {
    dir.join(format!("{name}-{:016x}", fnv1a64(url.as_bytes())))
}

/// Unix seconds of a time (0 before 1970).
pub(super) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Saves a freshly downloaded body and its metadata.
pub(super) fn save(
    dir: &Path,
    name: &str,
    url: &str,
    body: &[u8],
    validators: &Validators,
    now: SystemTime,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stem = stem(dir, name, url);
    crate::sys::write_atomic(&stem.with_extension("list"), body)?;
    let meta = Meta {
        url: url.to_owned(),
        validators: validators.clone(),
        fetched: unix(now),
        confirmed: unix(now),
        size: body.len() as u64,
        checksum: format!("{:016x}", fnv1a64(body)),
    };
    write_meta(&stem, &meta)
}

fn write_meta(stem: &Path, meta: &Meta) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    crate::sys::write_atomic(&stem.with_extension("json"), &json)
}

fn read_meta(stem: &Path) -> Option<Meta> {
    let text = std::fs::read(stem.with_extension("json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Records a 304: the copy on disk was confirmed current at `now` (and the source may have
/// sent new validators). The body is not rewritten, and nothing is recorded unless the copy
/// on disk is the one in service (`checksum`): a body that failed to save must not inherit
/// the validators of a newer one.
pub(super) fn confirm(
    dir: &Path,
    name: &str,
    url: &str,
    checksum: Option<u64>,
    validators: &Validators,
    now: SystemTime,
) -> std::io::Result<()> {
    let stem = stem(dir, name, url);
    let Some(mut meta) = read_meta(&stem).filter(|m| m.url == url) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no metadata for the copy on disk",
        ));
    };
    if checksum.is_none_or(|c| meta.checksum != format!("{c:016x}")) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the copy on disk is not the one in service",
        ));
    }
    meta.validators = validators.clone();
    meta.confirmed = unix(now);
    write_meta(&stem, &meta)
}

/// Reads the copy of `url` saved for list `name`, if there is one.
pub(super) fn load(dir: &Path, name: &str, url: &str) -> std::io::Result<Option<Copy>> {
    let stem = stem(dir, name, url);
    let body_path = stem.with_extension("list");
    let body = match std::fs::read(&body_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = read_meta(&stem);
    if meta.as_ref().is_some_and(|m| m.url != url) {
        // Another URL with the same hash: not our copy.
        return Ok(None);
    }
    let matches = meta.as_ref().is_some_and(|m| {
        m.size == body.len() as u64 && m.checksum == format!("{:016x}", fnv1a64(&body))
    });
    Ok(Some(match meta {
        Some(m) if matches => Copy {
            body,
            validators: m.validators,
            confirmed: from_unix(m.confirmed),
        },
        _ => Copy {
            body,
            validators: Validators::default(),
            confirmed: std::fs::metadata(&body_path)
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH),
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_saved_copy_reads_back_with_its_validators_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("lists");
        let v = Validators {
            etag: Some("\"abc\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        };
        let t = from_unix(1_700_000_000);
        assert!(load(&d, "ads", "http://x/a").unwrap().is_none());
        save(&d, "ads", "http://x/a", b"ads.test\n", &v, t).unwrap();
        let c = load(&d, "ads", "http://x/a").unwrap().unwrap();
        assert_eq!(c.body, b"ads.test\n");
        assert_eq!(c.validators, v);
        assert_eq!(c.confirmed, t);
        // Another URL for the same list is another copy.
        assert!(load(&d, "ads", "http://x/b").unwrap().is_none());
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("ads-")), "{names:?}");

        // A 304 moves the confirmation time and keeps the body.
        let later = from_unix(1_700_086_400);
        let v2 = Validators {
            etag: Some("\"abc2\"".into()),
            last_modified: None,
        };
        // Not for a body other than the one saved: the validators belong to that one.
        let other = Some(fnv1a64(b"pt.test\n"));
        assert!(confirm(&d, "ads", "http://x/a", other, &v2, later).is_err());
        assert_eq!(
            load(&d, "ads", "http://x/a").unwrap().unwrap().confirmed,
            from_unix(1_700_000_000)
        );
        let same = Some(fnv1a64(b"ads.test\n"));
        confirm(&d, "ads", "http://x/a", same, &v2, later).unwrap();
        let c = load(&d, "ads", "http://x/a").unwrap().unwrap();
        assert_eq!(
            (c.body.as_slice(), &c.validators, c.confirmed),
            (&b"ads.test\n"[..], &v2, later)
        );
        let meta = read_meta(&stem(&d, "ads", "http://x/a")).unwrap();
        assert_eq!(
            (meta.fetched, meta.confirmed),
            (1_700_000_000, 1_700_086_400)
        );
    }

    #[test]
    fn a_body_that_does_not_match_its_metadata_is_used_without_validators() {
        let dir = tempfile::tempdir().unwrap();
        let v = Validators {
            etag: Some("\"1\"".into()),
            last_modified: None,
        };
        save(
            dir.path(),
            "l",
            "http://x/",
            b"one.test\n",
            &v,
            SystemTime::now(),
        )
        .unwrap();
        // As if a crash came between the body's rename and the metadata's.
        std::fs::write(
            stem(dir.path(), "l", "http://x/").with_extension("list"),
            b"two.test\n",
        )
        .unwrap();
        let c = load(dir.path(), "l", "http://x/").unwrap().unwrap();
        assert_eq!(c.body, b"two.test\n");
        assert!(c.validators.is_empty());
    }

    #[test]
    fn the_cache_dir_follows_the_setting_then_systemd() {
        assert_eq!(
            cache_dir(Some(Path::new("/srv/dnsgate"))),
            PathBuf::from("/srv/dnsgate/lists")
        );
        // $STATE_DIRECTORY is read only when no setting is given; not set in tests run by
        // cargo, so the default applies (unless the environment sets it).
        if std::env::var_os("STATE_DIRECTORY").is_none() {
            assert_eq!(cache_dir(None), PathBuf::from("/var/lib/dnsgate/lists"));
        }
    }

    #[test]
    fn file_names_are_stable() {
        // FNV-1a 64 test vectors: a change here would orphan every saved copy.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
