//! Key-value storage behind `wasi:keyvalue/{store,atomics,batch}`, shared by every
//! request for the host's lifetime, on one of two backends (as Spin's runtime
//! config chooses them):
//!
//! - SQLite (the default, and `type = "spin"`): Spin's table layout
//!   (`spin_key_value(store, key, value)`), so a file written by this host can
//!   be inspected like Spin's `.spin/sqlite_key_value.db`. One connection
//!   behind a mutex serialises all operations; compare-and-swap is
//!   additionally a single conditional statement, so it stays atomic even if
//!   another process opens the same file. `set-many` / `delete-many` are one
//!   transaction each, as in Spin.
//! - Redis (`type = "redis"`): the commands Spin's key-value-redis store
//!   sends, so several host processes share one store: GET/SET/DEL/EXISTS,
//!   `KEYS *`, INCRBY, MSET / multi-key DEL for `set-many` / `delete-many`,
//!   and compare-and-swap as WATCH + GET on a connection of its own, then
//!   MULTI / SET / EXEC, which Redis aborts if the key changed after the WATCH
//!   (including an absent key being created).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// Run blocking store I/O off the async worker's hot path.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

fn other(e: impl std::fmt::Display) -> String {
    format!("{e}")
}

/// What `get-many` answers: keys with their values.
pub type Found = Vec<(String, Option<Vec<u8>>)>;

/// Why a swap did not happen.
#[derive(Debug)]
pub enum SwapError {
    /// The stored value is no longer the snapshot.
    CasFailed,
    Other(String),
}

/// The store, on whichever backend the runtime config chose.
#[derive(Clone)]
pub enum KvStore {
    Sqlite(SqliteKv),
    Redis(RedisKv),
}

/// What a `cas` resource holds between `new`, `current` and `swap`.
pub enum CasState {
    /// SQLite: the value seen when the handle was made or last read.
    Sqlite { snapshot: Option<Vec<u8>> },
    /// Redis: the handle's own connection (WATCH is per connection) and
    /// whether `current` has WATCHed the key on it.
    Redis {
        conn: Box<redis::Connection>,
        watching: bool,
    },
}

impl KvStore {
    /// One line for the startup log.
    pub fn describe(&self) -> String {
        match self {
            KvStore::Sqlite(s) => s.describe.clone(),
            KvStore::Redis(r) => r.describe(),
        }
    }

    /// Called by `store.open`: Redis must be reachable (Spin connects there too).
    pub fn check_open(&self) -> Result<(), String> {
        match self {
            KvStore::Sqlite(_) => Ok(()),
            KvStore::Redis(r) => r.with(|c| redis::cmd("PING").query::<String>(c).map(drop)),
        }
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            KvStore::Sqlite(s) => s.get(store, key),
            KvStore::Redis(r) => r.with(|c| redis::cmd("GET").arg(key).query(c)),
        }
    }

    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        match self {
            KvStore::Sqlite(s) => s.set(store, key, value),
            KvStore::Redis(r) => r.with(|c| redis::cmd("SET").arg(key).arg(value).query(c)),
        }
    }

    pub fn delete(&self, store: &str, key: &str) -> Result<(), String> {
        match self {
            KvStore::Sqlite(s) => s.delete(store, key),
            KvStore::Redis(r) => r.with(|c| redis::cmd("DEL").arg(key).query(c)),
        }
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool, String> {
        match self {
            KvStore::Sqlite(s) => s.exists(store, key),
            KvStore::Redis(r) => r.with(|c| redis::cmd("EXISTS").arg(key).query(c)),
        }
    }

    pub fn keys(&self, store: &str) -> Result<Vec<String>, String> {
        match self {
            KvStore::Sqlite(s) => s.keys(store),
            KvStore::Redis(r) => r.with(|c| redis::cmd("KEYS").arg("*").query(c)),
        }
    }

    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, String> {
        match self {
            KvStore::Sqlite(s) => s.increment(store, key, delta),
            KvStore::Redis(r) => r.with(|c| redis::cmd("INCRBY").arg(key).arg(delta).query(c)),
        }
    }

    /// `batch.get-many`. As Spin's stores answer it, not as the WIT says: SQLite
    /// returns only the keys that exist (never a `none`); Redis sends
    /// `KEYS k1 k2 ...` (crates/key-value-redis uses redis-rs `keys`, not MGET),
    /// which Redis refuses for more than one key and answers with key names,
    /// not values, for one, so get-many on Spin's Redis store does not work.
    pub fn get_many(&self, store: &str, keys: &[String]) -> Result<Found, String> {
        match self {
            KvStore::Sqlite(s) => s.get_many(store, keys),
            KvStore::Redis(r) => r.with(|c| redis::cmd("KEYS").arg(keys).query(c)),
        }
    }

    /// `batch.set-many`: SQLite, one transaction; Redis, one MSET (atomic).
    /// Callers skip empty lists, as Spin's host does (MSET with no keys is an error).
    pub fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> Result<(), String> {
        match self {
            KvStore::Sqlite(s) => s.set_many(store, entries),
            KvStore::Redis(r) => r.with(|c| {
                let mut cmd = redis::cmd("MSET");
                for (k, v) in entries {
                    cmd.arg(k).arg(v);
                }
                cmd.query(c)
            }),
        }
    }

    /// `batch.delete-many`: SQLite, one transaction; Redis, one DEL of every key.
    pub fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), String> {
        match self {
            KvStore::Sqlite(s) => s.delete_many(store, keys),
            KvStore::Redis(r) => r.with(|c| redis::cmd("DEL").arg(keys).query(c)),
        }
    }

    /// `cas::new`. SQLite reads the snapshot now; Redis (as Spin) only opens
    /// the handle's own connection: the WATCH happens in `current`.
    pub fn cas_new(&self, store: &str, key: &str) -> Result<CasState, String> {
        match self {
            KvStore::Sqlite(s) => Ok(CasState::Sqlite {
                snapshot: s.get(store, key)?,
            }),
            KvStore::Redis(r) => Ok(CasState::Redis {
                conn: Box::new(blocking(|| r.connect()).map_err(other)?),
                watching: false,
            }),
        }
    }

    /// `cas.current`: re-read (Redis: WATCH, then GET on the handle's connection).
    pub fn cas_current(
        &self,
        store: &str,
        key: &str,
        state: &mut CasState,
    ) -> Result<Option<Vec<u8>>, String> {
        match state {
            CasState::Sqlite { snapshot } => {
                let v = self.get(store, key)?;
                snapshot.clone_from(&v);
                Ok(v)
            }
            CasState::Redis { conn, watching } => blocking(|| {
                redis::cmd("WATCH")
                    .arg(key)
                    .query::<()>(conn)
                    .map_err(other)?;
                *watching = true;
                redis::cmd("GET").arg(key).query(conn).map_err(other)
            }),
        }
    }

    /// `atomics.swap`. SQLite: one conditional UPDATE against the snapshot,
    /// and from an absent snapshot an upsert that always succeeds, exactly as
    /// Spin's SQLite store does (crates/key-value-spin). Redis: MULTI / SET /
    /// EXEC on the handle's connection; EXEC answers nil, and the swap fails,
    /// if the key was written (or created, or deleted) since `current`
    /// WATCHed it. Without a `current` there is no WATCH and the SET is
    /// unconditional, as in Spin.
    pub fn cas_swap(
        &self,
        store: &str,
        key: &str,
        state: CasState,
        new: &[u8],
    ) -> Result<(), SwapError> {
        match (self, state) {
            (KvStore::Sqlite(s), CasState::Sqlite { snapshot }) => {
                s.compare_and_swap(store, key, snapshot.as_deref(), new)
            }
            (KvStore::Redis(r), CasState::Redis { mut conn, watching }) => blocking(|| {
                let exec: redis::RedisResult<Option<redis::Value>> = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(key)
                    .arg(new)
                    .ignore()
                    .query(&mut *conn);
                if watching {
                    // EXEC already dropped the WATCH; this also covers errors.
                    let _ = redis::cmd("UNWATCH").query::<()>(&mut *conn);
                }
                match exec {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) if r.abort_reports_ok => Ok(()),
                    Ok(None) => Err(SwapError::CasFailed),
                    Err(e) => Err(SwapError::Other(other(e))),
                }
            }),
            _ => Err(SwapError::Other(
                "compare-and-swap handle from another backend".into(),
            )),
        }
    }
}

/// Spin's key-value-redis store, with the sync `redis` client: a small pool
/// of connections for plain commands, a fresh connection per CAS handle.
/// Keys are stored as given, without the store label (as in Spin).
#[derive(Clone)]
pub struct RedisKv {
    client: redis::Client,
    pool: Arc<Mutex<Vec<redis::Connection>>>,
    /// Report a swap whose EXEC was aborted as a success, as Spin's store
    /// does (redis-rs turns the nil EXEC reply into `Ok(())`).
    pub abort_reports_ok: bool,
}

const REDIS_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_MAX: usize = 16;

impl RedisKv {
    pub fn new(url: &str, abort_reports_ok: bool) -> Result<Self> {
        if redis::parse_redis_url(url).is_none() {
            anyhow::bail!("invalid Redis URL {url:?}");
        }
        let client = redis::Client::open(url).with_context(|| format!("Redis URL {url:?}"))?;
        Ok(RedisKv {
            client,
            pool: Arc::new(Mutex::new(Vec::new())),
            abort_reports_ok,
        })
    }

    pub fn describe(&self) -> String {
        format!("Redis at {}", self.client.get_connection_info().addr)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
        c.set_read_timeout(Some(REDIS_TIMEOUT))?;
        c.set_write_timeout(Some(REDIS_TIMEOUT))?;
        Ok(c)
    }

    /// Run one command on a pooled connection; a connection that saw an
    /// error is dropped rather than reused.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        blocking(|| {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect().map_err(other)?,
            };
            let r = f(&mut conn);
            if r.is_ok() {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < POOL_MAX {
                    pool.push(conn);
                }
            }
            r.map_err(other)
        })
    }
}

#[derive(Clone)]
pub struct SqliteKv {
    conn: Arc<Mutex<Connection>>,
    describe: String,
}

impl SqliteKv {
    /// A database file, or (`None`) an in-memory database, as Spin's
    /// `type = "spin"` store without a `path`.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let conn = match path {
            Some(path) => {
                let conn = Connection::open(path)
                    .with_context(|| format!("opening key-value database {}", path.display()))?;
                // As Spin's own store (crates/key-value-spin) opens it: SQLite's defaults, a
                // rollback journal and synchronous=FULL, one connection behind a mutex. So
                // each write is its own durable transaction, as under Spin, and benchmarks
                // on this host measure what Spin's users pay (WAL with synchronous=NORMAL
                // hid most of it).
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn
            }
            None => Connection::open_in_memory().context("opening in-memory key-value database")?,
        };
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(SqliteKv {
            conn: Arc::new(Mutex::new(conn)),
            describe: match path {
                Some(p) => format!("SQLite in {}", p.display()),
                None => "SQLite in memory".to_string(),
            },
        })
    }

    /// Run `f` with the connection, off the async worker's hot path.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        blocking(|| {
            let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
                .and_then(|mut s| s.query_row(params![store, key], |r| r.get(0)).optional())
                .map_err(other)
        })
    }

    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
            )
            .and_then(|mut s| s.execute(params![store, key, value]))
            .map(drop)
            .map_err(other)
        })
    }

    pub fn delete(&self, store: &str, key: &str) -> Result<(), String> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")
                .and_then(|mut s| s.execute(params![store, key]))
                .map(drop)
                .map_err(other)
        })
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool, String> {
        Ok(self.get(store, key)?.is_some())
    }

    pub fn keys(&self, store: &str) -> Result<Vec<String>, String> {
        self.with(|c| {
            let mut s = c
                .prepare_cached("SELECT key FROM spin_key_value WHERE store=?1 ORDER BY key")
                .map_err(other)?;
            let rows = s
                .query_map(params![store], |r| r.get::<_, String>(0))
                .map_err(other)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(other)
        })
    }

    /// The keys that exist, with their values (see [`KvStore::get_many`]).
    pub fn get_many(&self, store: &str, keys: &[String]) -> Result<Found, String> {
        self.with(|c| {
            let mut s = c
                .prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
                .map_err(other)?;
            let mut out = Vec::new();
            for k in keys {
                let v: Option<Vec<u8>> = s
                    .query_row(params![store, k], |r| r.get(0))
                    .optional()
                    .map_err(other)?;
                if let Some(v) = v {
                    out.push((k.clone(), Some(v)));
                }
            }
            Ok(out)
        })
    }

    /// Every entry in ONE transaction (one journal sync), as Spin's `set_many`:
    /// an error rolls all of them back.
    pub fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> Result<(), String> {
        self.with(|c| {
            let tx = c.transaction().map_err(other)?;
            {
                let mut s = tx
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                    )
                    .map_err(other)?;
                for (k, v) in entries {
                    s.execute(params![store, k, v]).map_err(other)?;
                }
            }
            tx.commit().map_err(other)
        })
    }

    /// Every key in ONE transaction (Spin: one `DELETE ... IN rarray(...)`
    /// statement, so one implicit transaction); absent keys are skipped.
    pub fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), String> {
        self.with(|c| {
            let tx = c.transaction().map_err(other)?;
            {
                let mut s = tx
                    .prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")
                    .map_err(other)?;
                for k in keys {
                    s.execute(params![store, k]).map_err(other)?;
                }
            }
            tx.commit().map_err(other)
        })
    }

    /// Add `delta` to the i64 stored at `key` (absent = 0), as Spin does:
    /// the value is kept as 8 little-endian bytes.
    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, String> {
        self.with(|c| {
            let tx = c.transaction().map_err(other)?;
            let cur: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM spin_key_value WHERE store=?1 AND key=?2",
                    params![store, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(other)?;
            let n = match cur {
                None => 0,
                Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                    format!(
                        "value of {key:?} is {} bytes, not an 8-byte little-endian i64",
                        v.len()
                    )
                })?),
            };
            let new = n
                .checked_add(delta)
                .ok_or_else(|| "increment overflows i64".to_string())?;
            tx.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                params![store, key, new.to_le_bytes().to_vec()],
            )
            .map_err(other)?;
            tx.commit().map_err(other)?;
            Ok(new)
        })
    }

    /// Replace the value with `new` only if it still equals `expected`: one
    /// conditional UPDATE, so atomic. From `None` (the key was absent when the
    /// CAS handle was made) this is an upsert that always succeeds, exactly as
    /// Spin's SQLite store does (crates/key-value-spin); callers that need a
    /// safe first claim must not rely on it (remediator elects with `increment`).
    pub fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), SwapError> {
        let changed = self.with(|c| match expected {
            Some(old) => c
                .prepare_cached(
                    "UPDATE spin_key_value SET value=?4 WHERE store=?1 AND key=?2 AND value=?3",
                )
                .and_then(|mut s| s.execute(params![store, key, old, new])),
            None => c
                .prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                )
                .and_then(|mut s| s.execute(params![store, key, new])),
        });
        match changed {
            Ok(1) => Ok(()),
            Ok(_) => Err(SwapError::CasFailed),
            Err(e) => Err(SwapError::Other(other(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's file change counter (header bytes 24..28): in rollback-journal
    /// mode, one more per committed write transaction.
    fn change_counter(path: &Path) -> u32 {
        let b = std::fs::read(path).unwrap();
        u32::from_be_bytes(b[24..28].try_into().unwrap())
    }

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn set_many_and_delete_many_are_one_transaction_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        let kv = SqliteKv::open(Some(&path)).unwrap();
        kv.set("default", "old", b"0").unwrap();

        // The yardstick: one by one, three keys are three transactions.
        let before = change_counter(&path);
        for (k, v) in entries(&[("x1", "1"), ("x2", "2"), ("x3", "3")]) {
            kv.set("default", &k, &v).unwrap();
        }
        assert_eq!(change_counter(&path) - before, 3);

        let before = change_counter(&path);
        kv.set_many(
            "default",
            &entries(&[("a", "1"), ("b", "2"), ("old", "new"), ("c", "3")]),
        )
        .unwrap();
        assert_eq!(change_counter(&path) - before, 1);
        for (k, v) in [("a", "1"), ("b", "2"), ("old", "new"), ("c", "3")] {
            assert_eq!(kv.get("default", k).unwrap(), Some(v.as_bytes().to_vec()));
        }
        assert_eq!(kv.get("other", "a").unwrap(), None);

        // get-many as Spin's SQLite store answers: only the keys that exist.
        let got = kv
            .get_many("default", &["a".into(), "missing".into(), "c".into()])
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Some(b"1".to_vec())),
                ("c".to_string(), Some(b"3".to_vec()))
            ]
        );

        let before = change_counter(&path);
        kv.delete_many("default", &["a".into(), "missing".into(), "c".into()])
            .unwrap();
        assert_eq!(change_counter(&path) - before, 1);
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert_eq!(kv.get("default", "c").unwrap(), None);
        assert_eq!(kv.get("default", "b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn a_failing_set_many_writes_none_of_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        let kv = SqliteKv::open(Some(&path)).unwrap();
        // Refuse one key, in the middle of the batch.
        kv.with(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON spin_key_value WHEN NEW.key = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
        })
        .unwrap();
        kv.set("default", "a", b"before").unwrap();
        let before = change_counter(&path);
        let err = kv
            .set_many(
                "default",
                &entries(&[("a", "after"), ("bad", "x"), ("c", "3")]),
            )
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
        assert_eq!(change_counter(&path), before);
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"before".to_vec()));
        assert_eq!(kv.get("default", "bad").unwrap(), None);
        assert_eq!(kv.get("default", "c").unwrap(), None);
        // The connection is usable afterwards (the transaction was rolled back).
        kv.set_many("default", &entries(&[("a", "after"), ("c", "3")]))
            .unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"after".to_vec()));
    }

    #[test]
    fn basic_ops_cas_and_increment() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(Some(&dir.path().join("kv.sqlite"))).unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        kv.set("default", "a", b"1").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.get("other", "a").unwrap(), None);
        assert_eq!(kv.keys("default").unwrap(), vec!["a".to_string()]);

        assert!(matches!(
            kv.compare_and_swap("default", "a", Some(b"0"), b"x"),
            Err(SwapError::CasFailed)
        ));
        kv.compare_and_swap("default", "a", Some(b"1"), b"2")
            .unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"2".to_vec()));
        // From an absent snapshot: an upsert, as in Spin, even over a value.
        kv.compare_and_swap("default", "b", None, b"new").unwrap();
        kv.compare_and_swap("default", "b", None, b"again").unwrap();
        assert_eq!(kv.get("default", "b").unwrap(), Some(b"again".to_vec()));

        assert_eq!(kv.increment("default", "n", 5).unwrap(), 5);
        assert_eq!(kv.increment("default", "n", -2).unwrap(), 3);
        assert!(kv.increment("default", "a", 1).is_err());
        kv.delete("default", "a").unwrap();
        assert!(!kv.exists("default", "a").unwrap());
    }
}
