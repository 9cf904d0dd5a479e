//! Test support (feature `testing`, never in the component): the configuration the
//! native tests, the simulation and `remediator simulate` start from is spin.toml's own,
//! so a new variable is declared once, in spin.toml; and [`MemoryPlatform`], the one
//! in-memory platform of the native tests and of `remediator simulate`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::platform::{FileStamp, KvError, OutboundRequest, OutboundResponse, Platform, SendError};

/// Every variable of spin.toml's `[variables]` with its default.
pub fn spin_defaults() -> BTreeMap<String, String> {
    let manifest: toml::Table = include_str!("../spin.toml")
        .parse()
        .expect("spin.toml is valid TOML");
    let variables = manifest["variables"]
        .as_table()
        .expect("spin.toml has a [variables] table");
    variables
        .iter()
        .map(|(name, v)| {
            let default = v
                .get("default")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("spin.toml: variable {name} has no string default"));
            (name.clone(), default.to_string())
        })
        .collect()
}

/// spin.toml's defaults with `overrides` applied; an override of a variable spin.toml
/// does not declare is a mistake in the test, and panics.
pub fn variables(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = spin_defaults();
    for (name, value) in overrides {
        assert!(
            vars.contains_key(*name),
            "{name} is not a variable of spin.toml"
        );
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}

/// An outbound request as a [`MemoryPlatform`] recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// When it was sent, on the platform's clock (`now`).
    pub at_ms: i64,
}

impl Sent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How a [`MemoryPlatform`] answers an outbound request.
pub type Responder = Box<dyn Fn(&Sent) -> Result<OutboundResponse, SendError>>;

/// The in-memory platform of the native tests and of `remediator simulate`: variables,
/// files and key-value in memory, every outbound request recorded and answered by a
/// [`Responder`], and a clock that moves only when the code waits (or a test advances
/// it). Key-value behaves like one store shared by every replica, with two injectable
/// races: another writer winning the next compare-and-swap (reported as lost, or, as
/// Spin's Redis store does for an aborted transaction, as won), and writes another
/// delivery makes while this one waits.
pub struct MemoryPlatform {
    pub vars: RefCell<BTreeMap<String, String>>,
    pub files: RefCell<BTreeMap<String, String>>,
    pub kv: RefCell<BTreeMap<String, Vec<u8>>>,
    pub sent: RefCell<Vec<Sent>>,
    pub logs: RefCell<Vec<String>>,
    pub now: Cell<i64>,
    /// A concurrent delivery wins the next compare-and-swap: it writes this value
    /// first, so ours fails.
    pub race_next_swap: RefCell<Option<Vec<u8>>>,
    /// Like `race_next_swap`, but the swap reports success anyway: what Spin's Redis
    /// store does when the transaction was aborted.
    pub race_next_swap_silently: RefCell<Option<Vec<u8>>>,
    /// Key-value writes a concurrent delivery makes while this one waits (applied at
    /// the first `sleep`).
    pub during_first_wait: RefCell<Vec<(String, Vec<u8>)>>,
    /// Key-value writes made (set, delete, compare-and-swap, increment, and a whole
    /// non-empty set-many / delete-many): each one a durable transaction under Spin.
    pub kv_writes: Cell<u64>,
    /// Each write, in order: `set KEY`, `delete KEY`, `swap KEY` (compare-and-swap),
    /// `increment KEY`, `set_many KEY KEY …`, `delete_many KEY KEY …`.
    pub kv_log: RefCell<Vec<String>>,
    /// The last "random" value drawn; the next is one more (a test sets it to choose).
    pub random: Cell<u64>,
    /// Reads of keys starting with one of these fail (an unreadable store).
    pub kv_get_fails: RefCell<Vec<String>>,
    /// Sets of keys starting with one of these fail, nothing written (a `set_many`
    /// with any such key writes none of them).
    pub kv_set_fails: RefCell<Vec<String>>,
    /// Whether [`Platform::file_stamp`] answers (off: a host that cannot stat, the
    /// default). On, files are stamped as a filesystem does: see [`FileMeta`].
    pub stat_files: Cell<bool>,
    pub file_meta: RefCell<BTreeMap<String, FileMeta>>,
    /// [`Platform::read_file`] calls.
    pub file_reads: Cell<u64>,
    /// Every variable read, in order (each is a host call under Spin).
    pub vars_read: RefCell<Vec<String>>,
    responder: RefCell<Responder>,
}

/// A file's metadata as a filesystem keeps it, for [`MemoryPlatform::file_stamp`]:
/// a file first seen is new (a new identity, both times now); one whose text changed
/// since it was last stamped was written in place (same identity and birth time,
/// modified now). [`MemoryPlatform::replace_file`] and
/// [`MemoryPlatform::set_file_modified`] model a rename over it and `utimes`.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub text: String,
    pub stamp: FileStamp,
}

impl MemoryPlatform {
    /// `vars` as given (start from [`variables`]), no files, nothing stored, the clock
    /// at `now_ms`, every outbound request answered by `responder`.
    pub fn new(vars: BTreeMap<String, String>, now_ms: i64, responder: Responder) -> Self {
        MemoryPlatform {
            vars: RefCell::new(vars),
            files: RefCell::new(BTreeMap::new()),
            kv: RefCell::new(BTreeMap::new()),
            sent: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            now: Cell::new(now_ms),
            race_next_swap: RefCell::new(None),
            race_next_swap_silently: RefCell::new(None),
            during_first_wait: RefCell::new(Vec::new()),
            kv_writes: Cell::new(0),
            kv_log: RefCell::new(Vec::new()),
            random: Cell::new(0),
            kv_get_fails: RefCell::new(Vec::new()),
            kv_set_fails: RefCell::new(Vec::new()),
            stat_files: Cell::new(false),
            file_meta: RefCell::new(BTreeMap::new()),
            file_reads: Cell::new(0),
            vars_read: RefCell::new(Vec::new()),
            responder: RefCell::new(responder),
        }
    }

    /// Answer outbound requests with `responder` from now on.
    pub fn answer_with(&self, responder: Responder) {
        *self.responder.borrow_mut() = responder;
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.borrow().clone()
    }

    pub fn advance(&self, ms: i64) {
        self.now.set(self.now.get() + ms);
    }

    /// An injected failure of `what` (read, write) for `key`, if `prefixes` name it.
    fn injected(prefixes: &RefCell<Vec<String>>, key: &str, what: &str) -> Result<(), KvError> {
        match prefixes.borrow().iter().any(|p| key.starts_with(p)) {
            true => Err(KvError(format!("{key}: injected {what} failure"))),
            false => Ok(()),
        }
    }

    fn set_fails(&self, key: &str) -> Result<(), KvError> {
        Self::injected(&self.kv_set_fails, key, "write")
    }

    /// `path`'s metadata brought up to date with its text (see [`FileMeta`]).
    fn sync_file_meta(&self, path: &str) -> Option<FileStamp> {
        let text = self.files.borrow().get(path)?.clone();
        let now = i128::from(self.now.get()) * 1_000_000;
        let mut meta = self.file_meta.borrow_mut();
        let n = meta.len() as u64;
        let m = meta.entry(path.to_string()).or_insert_with(|| FileMeta {
            text: text.clone(),
            stamp: FileStamp {
                identity: [n + 1, 0x1d],
                size: text.len() as u64,
                modified_ns: Some(now),
                changed_ns: Some(now),
            },
        });
        if m.text != text {
            m.stamp.size = text.len() as u64;
            m.stamp.modified_ns = Some(now);
            m.text = text;
        }
        Some(m.stamp)
    }

    /// `path` replaced by a new file holding `text` (written elsewhere, renamed over
    /// it; or a new deployment's copy): a new birth time, and an identity that may be
    /// the old one (file systems reuse inode numbers).
    pub fn replace_file(&self, path: &str, text: &str) {
        self.files.borrow_mut().insert(path.into(), text.into());
        self.file_meta.borrow_mut().remove(path);
        self.sync_file_meta(path);
    }

    /// `utimes`: `path`'s modification time set to `ns` (after any pending write).
    pub fn set_file_modified(&self, path: &str, ns: i128) {
        self.sync_file_meta(path);
        if let Some(m) = self.file_meta.borrow_mut().get_mut(path) {
            m.stamp.modified_ns = Some(ns);
        }
    }

    fn wrote(&self, op: &str, key: &str) {
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv_log.borrow_mut().push(format!("{op} {key}"));
    }
}

impl Platform for MemoryPlatform {
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError> {
        let sent = Sent {
            method: req.method().to_string(),
            url: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.to_string(), v)
                })
                .collect(),
            body: req.body().clone(),
            timeout,
            at_ms: self.now.get(),
        };
        self.sent.borrow_mut().push(sent.clone());
        (self.responder.borrow())(&sent)
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.vars_read.borrow_mut().push(name.to_string());
        self.vars.borrow().get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.file_reads.set(self.file_reads.get() + 1);
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }

    fn file_stamp(&self, path: &str) -> Option<FileStamp> {
        if !self.stat_files.get() {
            return None;
        }
        self.sync_file_meta(path)
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::injected(&self.kv_get_fails, key, "read")?;
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.set_fails(key)?;
        self.wrote("set", key);
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.wrote("delete", key);
        self.kv.borrow_mut().remove(key);
        Ok(())
    }

    /// One write transaction, as Spin's `set-many` is: logged `set_many K1 K2 …`.
    /// An empty batch is no call (as in Spin's host).
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if entries.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        for k in &keys {
            self.set_fails(k)?;
        }
        self.wrote("set_many", &keys.join(" "));
        let mut kv = self.kv.borrow_mut();
        for (k, v) in entries {
            kv.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// One write transaction, as Spin's `delete-many` is: logged `delete_many K1 K2 …`.
    fn kv_delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.wrote("delete_many", &keys.join(" "));
        let mut kv = self.kv.borrow_mut();
        for k in keys {
            kv.remove(k);
        }
        Ok(())
    }

    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        Ok(self.kv.borrow().keys().cloned().collect())
    }

    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        self.wrote("swap", key);
        let mut kv = self.kv.borrow_mut();
        if let Some(winner) = self.race_next_swap.borrow_mut().take() {
            kv.insert(key.into(), winner);
            return Ok(false);
        }
        if let Some(winner) = self.race_next_swap_silently.borrow_mut().take() {
            kv.insert(key.into(), winner);
            return Ok(true);
        }
        if kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        kv.insert(key.into(), new.to_vec());
        Ok(true)
    }

    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.wrote("increment", key);
        let mut kv = self.kv.borrow_mut();
        let current = match kv.get(key) {
            None => 0,
            Some(v) => String::from_utf8_lossy(v)
                .trim()
                .parse::<i64>()
                .map_err(|_| KvError(format!("counter {key} is not a number")))?,
        };
        kv.insert(key.into(), (current + delta).to_string().into_bytes());
        Ok(current + delta)
    }

    /// Time passes only when the code under test waits.
    fn sleep(&self, duration: Duration) {
        self.now.set(self.now.get() + duration.as_millis() as i64);
        for (k, v) in self.during_first_wait.borrow_mut().drain(..) {
            self.kv.borrow_mut().insert(k, v);
        }
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    /// 1, 2, 3, ...: delivery ids as the earlier shared counter gave them, so that
    /// batches written in the same (still) millisecond keep their order.
    fn random_u64(&self) -> u64 {
        self.random.set(self.random.get().wrapping_add(1));
        self.random.get()
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}
