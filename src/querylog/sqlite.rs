//! The SQLite query store (`[querylog] store = "sqlite"`, the default with `[api]`): one
//! table in `<state_dir>/querylog.sqlite`, in WAL mode so the API reads while the writer
//! writes. Two connections: the writer thread's and the API's (read-only).
//!
//! Times are nanoseconds since the Unix epoch, so they sort and compare as integers and
//! give back the log's RFC 3339 text exactly. Names are also kept with their labels
//! reversed (`www.example.com` as `com.example.www.`), so "this domain and everything
//! below it" is one range of an index.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params};

use super::Entry;
use super::store::{Backend, Error, Filter, Row};

/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    client TEXT NOT NULL,
    device TEXT,
    user TEXT,
    name TEXT NOT NULL,
    rname TEXT NOT NULL,
    type TEXT,
    action TEXT NOT NULL,
    policy TEXT,
    phase TEXT,
    cname TEXT,
    rcode TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    cached INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_time ON queries(time);
CREATE INDEX IF NOT EXISTS queries_client ON queries(client, time);
CREATE INDEX IF NOT EXISTS queries_device ON queries(device, time) WHERE device IS NOT NULL;
CREATE INDEX IF NOT EXISTS queries_user ON queries(user, time) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS queries_name ON queries(rname, time);
CREATE INDEX IF NOT EXISTS queries_action ON queries(action, time);
";

const INSERT: &str = "INSERT INTO queries
    (time, client, device, user, name, rname, type, action, policy, phase, cname, rcode, latency_ms, cached)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const COLUMNS: &str = "time, client, device, user, name, type, action, policy, phase, cname, rcode, latency_ms, cached";

/// The SQLite store.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::database(what, e)
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`, readable by its owner only (it
    /// holds who asked for what).
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::database("cannot create the state directory", e))?;
        }
        let writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db("cannot open the query store"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::database("cannot restrict the query store's mode", e))?;
        }
        // WAL: readers never block the writer nor it them; NORMAL: a commit does not wait
        // for the disk (a power cut may lose the last batches of a log, not corrupt it).
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db("cannot set WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "the query store is not in WAL mode: searches may wait for writes");
        }
        // The writer's page cache (up to 64 MiB) holds the pages rows are added to: the end
        // of the time index, and in the name index the last page of each name asked lately
        // (10,000 names hold about 40 MiB); a page that has left it must be read again for
        // the next row of its name: with 16 MiB a row cost three times as much at 1.2M rows
        // as at the start (a test with Python's sqlite3). A WAL of up to 16,384 pages
        // (64 MiB) between checkpoints lets a page that many batches change be copied into
        // the database once, not each time (the same test: a quarter less time per row).
        writer
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
                 PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;
                 PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(db("cannot set up the query store"))?;
        let found: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db("cannot read the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        writer
            .execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(db("cannot create the query store's schema"))?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db("cannot open the query store for reading"))?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(db("cannot set up the query store's reader"))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `name` with its labels reversed, each followed by a dot: `www.example.com` ->
/// `com.example.www.`; the root (empty) stays empty. A dot escaped in a label (`\.`) is
/// part of it.
pub fn reversed(name: &str) -> String {
    let mut labels = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, b) in name.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'.' => {
                labels.push(&name[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < name.len() {
        labels.push(&name[start..]);
    }
    let mut out = String::with_capacity(name.len() + 1);
    for l in labels.iter().rev() {
        out.push_str(l);
        out.push('.');
    }
    out
}

fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl Backend for Sqlite {
    fn insert(&self, rows: &[Entry]) -> Result<(), Error> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction().map_err(db("cannot begin a batch"))?;
        {
            let mut stmt = tx.prepare_cached(INSERT).map_err(db("cannot prepare"))?;
            for e in rows {
                stmt.execute(params![
                    nanos(e.time),
                    e.client.to_string(),
                    e.device,
                    e.user,
                    e.name,
                    reversed(&e.name),
                    e.qtype.map(|t| t.to_string()),
                    e.action.as_str(),
                    e.policy,
                    e.phase.map(crate::label::Phase::as_str),
                    e.cname,
                    e.rcode.as_str(),
                    e.latency.as_secs_f64() * 1000.0,
                    e.cached,
                ])
                .map_err(db("cannot insert a row"))?;
            }
        }
        tx.commit().map_err(db("cannot commit a batch"))
    }

    fn expire(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        let conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        conn.prepare_cached(
            "DELETE FROM queries WHERE id IN
                (SELECT id FROM queries WHERE time < ?1 ORDER BY time LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![nanos(before), limit as i64]))
        .map_err(db("cannot delete old rows"))
    }

    fn search(&self, f: &Filter) -> Result<Vec<Row>, Error> {
        let mut conds: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut text = |cond: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                conds.push(cond);
                args.push(Value::Text(v.clone()));
            }
        };
        text("client = ?", &f.client.map(|c| c.to_string()));
        text("device = ?", &f.device);
        text("user = ?", &f.user);
        text("action = ?", &f.action.map(|a| a.as_str().to_owned()));
        if let Some(name) = &f.name {
            // The name and everything below it: rname starts with the reversed name,
            // whose last character is the dot; '/' is the byte after '.'.
            let low = reversed(name);
            let mut high = low.clone();
            high.pop();
            high.push('/');
            conds.push("rname >= ? AND rname < ?");
            args.push(Value::Text(low));
            args.push(Value::Text(high));
        }
        if let Some(t) = f.since {
            conds.push("time >= ?");
            args.push(Value::Integer(nanos(t)));
        }
        if let Some(t) = f.until {
            conds.push("time < ?");
            args.push(Value::Integer(nanos(t)));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM queries");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY time DESC, id DESC LIMIT ?");
        args.push(Value::Integer(f.limit.min(super::store::MAX_LIMIT) as i64));
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(db("cannot prepare a search"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let ns: i64 = r.get(0)?;
                Ok(Row {
                    time: Timestamp::from_nanosecond(i128::from(ns))
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    client: r.get(1)?,
                    device: r.get(2)?,
                    user: r.get(3)?,
                    name: r.get(4)?,
                    qtype: r.get(5)?,
                    action: r.get(6)?,
                    policy: r.get(7)?,
                    phase: r.get(8)?,
                    cname: r.get(9)?,
                    rcode: r.get(10)?,
                    latency_ms: r.get(11)?,
                    cached: r.get(12)?,
                })
            })
            .map_err(db("cannot search"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db("cannot read a row"))
    }
}
