//! Writes held back to the end of a delivery (issue 13): under Spin every key-value
//! write is a durable transaction, so the records a delivery closes its claims with
//! and its audit batch go out together, in one [`Platform::kv_set_many`].
//!
//! Only writes that nothing outside this delivery waits on are held back: the final
//! record of a claim this delivery holds under its lease (others see the lease either
//! way until it is written), the audit batch, and the deletes of cell values that
//! were replaced (nobody reads them; [`Platform::kv_delete_unread`]), which go out
//! in one `kv_delete_many` after. Everything the claim protocol decides on (lock
//! words, swaps, targets, budgets) is written at once.
//!
//! Reads through [`Deferred`] see what it holds (an overlay), so a later alert of the
//! same delivery reads the record as this delivery left it, and never waits on its
//! own lease. A direct write to a held key supersedes what was held. A crash before
//! the flush (or in it: `kv_set_many` is not assumed atomic) leaves a held record as
//! last written, pending what was sent, under a lease that runs out: a retry resends
//! what is pending, as after a crash before the final write.

use std::cell::RefCell;
use std::time::Duration;

use crate::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};

/// One held write.
struct Held {
    key: String,
    value: Vec<u8>,
    /// Whose result it records (the problem's index in the delivery) and what to tell
    /// it if the write fails; `None`: no problem's (the audit batch).
    owner: Option<(usize, &'static str)>,
}

/// A platform that holds back some writes (see the module's documentation).
pub struct Deferred<'a> {
    pub inner: &'a dyn Platform,
    held: RefCell<Vec<Held>>,
    /// Keys nothing reads any more, to delete after the held writes.
    deletes: RefCell<Vec<String>>,
    /// Held writes that failed to flush: (problem index, what to add to its detail).
    failed: RefCell<Vec<(usize, String)>>,
}

impl<'a> Deferred<'a> {
    pub fn new(inner: &'a dyn Platform) -> Self {
        Deferred {
            inner,
            held: RefCell::new(Vec::new()),
            deletes: RefCell::new(Vec::new()),
            failed: RefCell::new(Vec::new()),
        }
    }

    /// Hold `value` for `key` until the next flush. `owner`: the problem it records a
    /// result of, and the note its detail gets (after "WARNING: result not recorded
    /// (<error>)") if the flush fails.
    pub fn hold(&self, key: String, value: Vec<u8>, owner: Option<(usize, &'static str)>) {
        let mut held = self.held.borrow_mut();
        held.retain(|h| h.key != key);
        held.push(Held { key, value, owner });
    }

    /// Whether anything is held.
    pub fn holding(&self) -> bool {
        !self.held.borrow().is_empty() || !self.deletes.borrow().is_empty()
    }

    /// Write everything held, in one `kv_set_many`, in the order held, then delete
    /// what nothing reads in one `kv_delete_many` (a failure leaves those to the
    /// sweep). Returns the error of the writes, if any; the problems whose results
    /// they held learn of it through [`Deferred::failures`].
    pub fn flush(&self) -> Result<(), KvError> {
        let result = self.flush_sets();
        let deletes = std::mem::take(&mut *self.deletes.borrow_mut());
        if !deletes.is_empty() {
            let _ = self.inner.kv_delete_many(&deletes);
        }
        result
    }

    fn flush_sets(&self) -> Result<(), KvError> {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        if held.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, Vec<u8>)> = held
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let result = self.inner.kv_set_many(&entries);
        if let Err(e) = &result {
            // Not atomic: any of them may have been written, or none.
            let mut failed = self.failed.borrow_mut();
            for (i, note) in held.iter().filter_map(|h| h.owner) {
                failed.push((i, format!("WARNING: result not recorded ({e}){note}")));
            }
        }
        result
    }

    /// The problems whose held results failed to flush, with what their detail gets.
    pub fn failures(&self) -> Vec<(usize, String)> {
        std::mem::take(&mut *self.failed.borrow_mut())
    }

    /// A direct write to `key` supersedes what is held for it.
    fn drop_held(&self, key: &str) {
        self.held.borrow_mut().retain(|h| h.key != key);
        self.deletes.borrow_mut().retain(|k| k != key);
    }

    fn delete_held(&self, key: &str) -> bool {
        self.deletes.borrow().iter().any(|k| k == key)
    }

    /// An atomic operation on a held key works on what is held: write it first.
    fn write_through(&self, key: &str) -> Result<(), KvError> {
        if self.delete_held(key) {
            self.drop_held(key);
            self.inner.kv_delete(key)?;
        }
        let pos = self.held.borrow().iter().position(|h| h.key == key);
        if let Some(pos) = pos {
            let h = self.held.borrow_mut().remove(pos);
            self.inner.kv_set(&h.key, &h.value)?;
        }
        Ok(())
    }
}

impl Platform for Deferred<'_> {
    fn send(&self, req: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendError> {
        self.inner.send(req, timeout)
    }
    fn send_bounded(
        &self,
        req: OutboundRequest,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<OutboundResponse, SendError> {
        self.inner.send_bounded(req, timeout, max_body_bytes)
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.inner.variable(name)
    }
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.inner.read_file(path)
    }
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(h) = self.held.borrow().iter().find(|h| h.key == key) {
            return Ok(Some(h.value.clone()));
        }
        if self.delete_held(key) {
            return Ok(None);
        }
        self.inner.kv_get(key)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.drop_held(key);
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.drop_held(key);
        self.inner.kv_delete(key)
    }
    fn kv_set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        for (k, _) in entries {
            self.drop_held(k);
        }
        self.inner.kv_set_many(entries)
    }
    fn kv_delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        for k in keys {
            self.drop_held(k);
        }
        self.inner.kv_delete_many(keys)
    }
    fn kv_delete_unread(&self, key: &str) -> Result<(), KvError> {
        self.drop_held(key);
        self.deletes.borrow_mut().push(key.to_string());
        Ok(())
    }
    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys = self.inner.kv_keys()?;
        keys.retain(|k| !self.delete_held(k));
        for h in self.held.borrow().iter() {
            if !keys.contains(&h.key) {
                keys.push(h.key.clone());
            }
        }
        Ok(keys)
    }
    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        self.write_through(key)?;
        self.inner.kv_compare_and_swap(key, expected, new)
    }
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.write_through(key)?;
        self.inner.kv_increment(key, delta)
    }
    fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration)
    }
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn log(&self, line: &str) {
        self.inner.log(line)
    }
}
