//! The audit log (SPEC §12): every write attempt through the API — refused ones too — as
//! one JSON line `{time, token, source_ip, action, object, before, after, result, prev}`,
//! written and flushed to disk before the change applies. `prev` is the SHA-256 of the
//! previous line, so a line removed or altered breaks the chain where it was.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

pub use crate::identity::sha256_hex as digest;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Ok,
    /// The token may not.
    Denied,
    /// Refused as a reload would refuse it.
    Invalid,
    /// Failed for another reason.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }
}

/// One attempt.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The token's name (`None`: no valid token).
    pub token: Option<&'a str>,
    /// Who sent it.
    pub source_ip: IpAddr,
    /// What was tried (`cache.flush`, `config.reload`, `policies.update`...).
    pub action: &'a str,
    /// The object (`policy:kids`), if one.
    pub object: Option<&'a str>,
    /// The object before and after, without secrets (their digests are written).
    pub before: Option<&'a Value>,
    /// After.
    pub after: Option<&'a Value>,
    /// How it ended.
    pub result: Outcome,
}

/// The log file and the digest of its last line.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: Option<std::fs::File>,
    prev: Option<String>,
}

impl Audit {
    /// The log at `path`, continuing the chain of the lines already there.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let prev = std::fs::read(path).ok().and_then(|text| {
            text.split(|&b| b == b'\n')
                .rfind(|l| !l.is_empty())
                .map(digest)
        });
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file: Some(file),
                prev,
            }),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `entry` at `time` and flushes it to disk; an error means the change must not
    /// apply.
    pub fn write(&self, entry: &Entry<'_>, time: jiff::Timestamp) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let object_digest = |v: Option<&Value>| {
            v.map(|v| digest(serde_json::to_string(v).unwrap_or_default().as_bytes()))
        };
        let line = json!({
            "time": time.to_string(),
            "token": entry.token,
            "source_ip": entry.source_ip.to_string(),
            "action": entry.action,
            "object": entry.object,
            "before": object_digest(entry.before),
            "after": object_digest(entry.after),
            "result": entry.result.as_str(),
            "prev": state.prev,
        });
        let text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
        let Some(file) = state.file.as_mut() else {
            return Err(std::io::Error::other("audit log closed"));
        };
        let mut bytes = text.clone().into_bytes();
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        file.sync_data()?;
        state.prev = Some(digest(text.as_bytes()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_chained_and_the_chain_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let t: jiff::Timestamp = "2026-11-29T22:00:00Z".parse().unwrap();
        let entry = |action| Entry {
            token: Some("ci"),
            source_ip: "127.0.0.1".parse().unwrap(),
            action,
            object: None,
            before: None,
            after: Some(&Value::Null),
            result: Outcome::Ok,
        };
        Audit::open(&path)
            .unwrap()
            .write(&entry("cache.flush"), t)
            .unwrap();
        Audit::open(&path)
            .unwrap()
            .write(&entry("config.reload"), t)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(first["prev"], Value::Null);
        assert_eq!(second["prev"], digest(lines[0].as_bytes()));
        assert_eq!(second["action"], "config.reload");
        assert_eq!(first["after"], digest(b"null"));
        assert_eq!(first["result"], "ok");
    }
}
