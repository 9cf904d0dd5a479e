//! The world as the core sees it: what the Spin shell (or a test double) provides.
//!
//! Everything here is plain data; no Spin types cross this boundary.

use std::time::Duration;

/// An outbound HTTP request, fully built by the core.
pub type OutboundRequest = http::Request<Vec<u8>>;
/// The response to an outbound request.
pub type OutboundResponse = http::Response<Vec<u8>>;

/// Why an outbound request produced no response at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The host refused the destination (Spin: not in `allowed_outbound_hosts`).
    Denied(String),
    /// Connect or response timeout.
    Timeout(String),
    /// Connection refused, DNS failure, reset, and similar transport failures.
    Transport(String),
    /// The response body was longer than the limit given to [`Platform::send_bounded`].
    TooLarge(usize),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Denied(m) => write!(f, "outbound request denied by the host: {m}"),
            SendError::Timeout(m) => write!(f, "timed out: {m}"),
            SendError::Transport(m) => write!(f, "transport error: {m}"),
            SendError::TooLarge(max) => write!(f, "response body exceeds {max} bytes"),
        }
    }
}

/// A key-value store failure (store missing, access denied, backend down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

/// What the host says about a file without reading it (WASI `stat-at` and
/// `metadata-hash-at`): enough to notice a new file or a write, not what was written.
/// The rules source decides when it may stand in for the content
/// (`rules_source`, docs/rules-cache.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// The host's hash of the file's identity (wasmtime: device and inode).
    pub identity: [u64; 2],
    pub size: u64,
    /// Last data modification, ns since the Unix epoch (user space can set it).
    pub modified_ns: Option<i128>,
    /// WASI's "status change" time, ns since the Unix epoch: wasmtime reports the
    /// birth time, POSIX hosts may report ctime; user space can set neither.
    pub changed_ns: Option<i128>,
}

/// What the shell provides to the core.
pub trait Platform {
    /// Send one request; `timeout` bounds connect and each wait for data.
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError>;
    /// Like [`Platform::send`], but a response body longer than `max_body_bytes` is an
    /// error ([`SendError::TooLarge`]), and `timeout` also bounds the whole exchange.
    /// Shells that stream (Spin) stop reading at the limit and at the deadline; this
    /// default, for test doubles, checks the size after the fact.
    fn send_bounded(
        &self,
        req: OutboundRequest,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<OutboundResponse, SendError> {
        let resp = self.send(req, timeout)?;
        if resp.body().len() > max_body_bytes {
            return Err(SendError::TooLarge(max_body_bytes));
        }
        Ok(resp)
    }
    /// A Spin variable; `None` when undefined.
    fn variable(&self, name: &str) -> Option<String>;
    /// Read a bundled file (Spin `files`).
    fn read_file(&self, path: &str) -> std::io::Result<String>;
    /// The stamp of a bundled file, `None` when the host cannot tell (then the file
    /// is read and hashed every time). This default, for doubles, cannot tell.
    fn file_stamp(&self, path: &str) -> Option<FileStamp> {
        let _ = path;
        None
    }
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn kv_delete(&self, key: &str) -> Result<(), KvError>;
    /// Set several keys in one durable transaction where the store allows it (Spin:
    /// `wasi:keyvalue/batch` `set-many`, one SQLite transaction). Callers must not rely
    /// on atomicity: a crash may leave any prefix written (the simulation models that).
    /// This default, for doubles that have no batch, sets them one by one.
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        for (k, v) in entries {
            self.kv_set(k, v)?;
        }
        Ok(())
    }
    /// Delete several keys in one transaction where the store allows it (`delete-many`);
    /// the same caveats as [`Platform::kv_set_many`].
    fn kv_delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        for k in keys {
            self.kv_delete(k)?;
        }
        Ok(())
    }
    /// Delete a key nothing reads any more (a cell's replaced value): a platform may
    /// hold it back and delete it with others later (a delivery does: see
    /// `crate::deferred`); if that never happens, the expiry sweep removes it. This
    /// default deletes it now.
    fn kv_delete_unread(&self, key: &str) -> Result<(), KvError> {
        self.kv_delete(key)
    }
    /// Every key in the store (for the expiry sweep).
    fn kv_keys(&self) -> Result<Vec<String>, KvError>;
    /// Atomically replace `key`'s value with `new` if it currently equals `expected`
    /// (`None` = absent). Returns whether this caller won.
    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError>;
    /// Atomically add `delta` to the counter at `key` (absent = 0); returns the new value.
    /// `delta` 0 reads the counter.
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Wait (used while another delivery holds a claim).
    fn sleep(&self, duration: Duration);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// 64 random bits (Spin: the host's `wasi:random`; test doubles and the simulation:
    /// seeded, so that runs replay). Makes delivery ids unique across replicas without
    /// a shared counter (a counter is a durable write per delivery).
    fn random_u64(&self) -> u64;
    /// A line for the operator's log (stderr under Spin). Never pass secrets.
    fn log(&self, line: &str);
}
