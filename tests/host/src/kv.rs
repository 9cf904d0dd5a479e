//! Key-value storage on one SQLite file, shared by every request for the
//! host's lifetime. Same table layout as Spin's default store
//! (`spin_key_value(store, key, value)`), so a file written by this host can
//! be inspected like Spin's `.spin/sqlite_key_value.db`.
//!
//! One connection behind a mutex serialises all operations; compare-and-swap
//! is additionally a single conditional statement, so it stays atomic even if
//! another process opens the same file.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Clone)]
pub struct KvStore {
    conn: Arc<Mutex<Connection>>,
}

/// Why a swap did not happen.
#[derive(Debug)]
pub enum SwapError {
    /// The stored value is no longer the snapshot.
    CasFailed,
    Other(String),
}

fn other(e: impl std::fmt::Display) -> String {
    format!("{e}")
}

impl KvStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("opening key-value database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(KvStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection, off the async worker's hot path.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let run = || {
            let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(run)
        } else {
            run()
        }
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

    #[test]
    fn basic_ops_cas_and_increment() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(&dir.path().join("kv.sqlite")).unwrap();
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
