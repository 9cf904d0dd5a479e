//! Outbound calls within one delivery's time budget (kept below the sender's own
//! webhook timeout): one call, or an idempotent one retried with backoff.

use std::time::Duration;

use super::ActionError;
use crate::config::Config;
use crate::platform::Platform;

/// Outbound calls within one delivery's time budget (kept below the sender's own
/// webhook timeout), with bounded retries and backoff for idempotent calls.
pub struct Outbound<'a> {
    pub p: &'a dyn Platform,
    pub cfg: &'a Config,
    pub deadline_ms: i64,
}

const RETRY_BACKOFF_MS: [i64; 2] = [100, 400];

impl Outbound<'_> {
    fn remaining(&self) -> Option<Duration> {
        let left = self.deadline_ms - self.p.now_ms();
        (left > 0).then(|| Duration::from_millis(left as u64).min(self.cfg.outbound_timeout))
    }

    fn out_of_time() -> ActionError {
        ActionError {
            message: "the delivery's outbound time budget (outbound_budget_ms) is spent".into(),
            retryable: true,
        }
    }

    pub fn once<T>(
        &self,
        call: impl Fn(Duration) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        call(self.remaining().ok_or_else(Self::out_of_time)?)
    }

    pub fn idempotent<T>(
        &self,
        call: impl Fn(Duration) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        let mut result = self.once(&call);
        for backoff in RETRY_BACKOFF_MS {
            match &result {
                Err(e) if e.retryable => {}
                _ => break,
            }
            // Only wait if a retry would still have time to run.
            if self.deadline_ms - self.p.now_ms() <= backoff + 50 {
                break;
            }
            self.p.sleep(Duration::from_millis(backoff as u64));
            result = self.once(&call);
        }
        result
    }
}
