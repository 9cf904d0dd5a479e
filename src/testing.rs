//! Test support (feature `testing`, never in the component): the configuration the
//! native tests, the simulation and `remediator simulate` start from is spin.toml's own,
//! so a new variable is declared once, in spin.toml; and [`MemoryPlatform`], the one
//! in-memory platform of the native tests and of `remediator simulate`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};

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
    /// Key-value writes made (set, delete, compare-and-swap, increment): each one a
    /// durable transaction under Spin.
    pub kv_writes: Cell<u64>,
    /// Each write, in order: `set KEY`, `delete KEY`, `swap KEY` (compare-and-swap),
    /// `increment KEY`.
    pub kv_log: RefCell<Vec<String>>,
    /// The last "random" value drawn; the next is one more (a test sets it to choose).
    pub random: Cell<u64>,
    /// Reads of keys starting with one of these fail (an unreadable store).
    pub kv_get_fails: RefCell<Vec<String>>,
    /// Every variable read, in order (each is a host call under Spin).
    pub vars_read: RefCell<Vec<String>>,
    responder: RefCell<Responder>,
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
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if self
            .kv_get_fails
            .borrow()
            .iter()
            .any(|p| key.starts_with(p))
        {
            return Err(KvError(format!("{key}: injected read failure")));
        }
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.wrote("set", key);
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.wrote("delete", key);
        self.kv.borrow_mut().remove(key);
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
