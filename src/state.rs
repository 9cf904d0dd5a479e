//! What remediator remembers between deliveries, in Spin key-value: one record per
//! (occurrence, rule), one per rule (cooldown, circuit breaker). Keys are short
//! hashes so they stay far below Spin's 256-byte key limit whatever the input.

use serde::{Deserialize, Serialize};

use crate::platform::{KvError, Platform};

/// How long a claim protects an action in progress. A claim older than this is
/// taken to belong to an instance that died between claim and record, and the
/// next delivery takes it over.
pub const CLAIM_LEASE_MS: i64 = 30_000;

/// FNV-1a, 128-bit: stable across hosts and versions, no dependency.
pub fn hash(parts: &[&str]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    format!("{h:032x}")
}

pub fn occurrence_key(occurrence: &str, rule: &str) -> String {
    format!("occ/{}", hash(&[occurrence, rule]))
}

/// The counter that elects who creates an occurrence's record (see `remediate`).
pub fn claim_key(occurrence_key: &str) -> String {
    format!("claim/{}", occurrence_key.trim_start_matches("occ/"))
}

/// If the elected creator died between winning and writing the record, a later
/// delivery whose ticket is 1 modulo this (and who has waited out the claim wait)
/// creates it instead. Tickets are unique, so at most one such delivery per value.
pub const TAKEOVER_EVERY: i64 = 64;

pub fn rule_key(rule: &str) -> String {
    format!("rule/{}", hash(&[rule]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A delivery is acting now (see [`CLAIM_LEASE_MS`]).
    Claimed,
    Done,
    /// The last attempt failed; the next delivery retries what is not applied.
    Failed,
    Reverting,
    Resolved,
}

/// One action that took effect, with what is needed to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Index into the rule's actions.
    pub index: usize,
    pub at_ms: i64,
    /// Flags: the `enabled` value read from Unleash just before acting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_enabled: Option<bool>,
    #[serde(default)]
    pub reverted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceRecord {
    pub occurrence: String,
    pub rule: String,
    pub phase: Phase,
    /// When the current phase began (the claim's start, for the lease).
    pub since_ms: i64,
    #[serde(default)]
    pub first_handled_ms: Option<i64>,
    /// Audit batch that recorded the first handling.
    #[serde(default)]
    pub first_audit: Option<i64>,
    /// When the last step took effect (ladders escalate from here).
    #[serde(default)]
    pub last_step_ms: Option<i64>,
    /// Ladder position: the next step to run.
    #[serde(default)]
    pub next_step: usize,
    #[serde(default)]
    pub applied: Vec<Applied>,
    /// The delivery (audit id, unique per delivery) holding the latest claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<i64>,
}

impl OccurrenceRecord {
    pub fn new(occurrence: &str, rule: &str, now_ms: i64) -> OccurrenceRecord {
        OccurrenceRecord {
            occurrence: occurrence.to_string(),
            rule: rule.to_string(),
            phase: Phase::Claimed,
            since_ms: now_ms,
            first_handled_ms: None,
            first_audit: None,
            last_step_ms: None,
            next_step: 0,
            applied: vec![],
            claimed_by: None,
        }
    }

    pub fn is_applied(&self, index: usize) -> bool {
        self.applied.iter().any(|a| a.index == index)
    }

    pub fn claim_is_fresh(&self, now_ms: i64) -> bool {
        matches!(self.phase, Phase::Claimed | Phase::Reverting)
            && now_ms - self.since_ms < CLAIM_LEASE_MS
    }
}

/// Per rule: when it acted, for cooldowns and the circuit breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// Times of recent actions, oldest first, bounded.
    pub actions_ms: Vec<i64>,
}

/// Enough history for any breaker a rule may reasonably set.
const MAX_RULE_HISTORY: usize = 1000;

impl RuleRecord {
    pub fn last_action_ms(&self) -> Option<i64> {
        self.actions_ms.last().copied()
    }

    pub fn actions_since(&self, since_ms: i64) -> usize {
        self.actions_ms.iter().filter(|&&t| t > since_ms).count()
    }

    pub fn record(&mut self, now_ms: i64) {
        self.actions_ms.push(now_ms);
        let excess = self.actions_ms.len().saturating_sub(MAX_RULE_HISTORY);
        self.actions_ms.drain(..excess);
    }
}

/// A record as read, with the exact bytes for a later compare-and-swap.
pub struct Versioned<T> {
    pub value: Option<T>,
    pub raw: Option<Vec<u8>>,
}

pub fn read<T: for<'de> Deserialize<'de>>(
    p: &dyn Platform,
    key: &str,
) -> Result<Versioned<T>, KvError> {
    let raw = p.kv_get(key)?;
    let value = match &raw {
        Some(bytes) => Some(
            serde_json::from_slice(bytes)
                .map_err(|e| KvError(format!("record {key} is unreadable: {e}")))?,
        ),
        None => None,
    };
    Ok(Versioned { value, raw })
}

/// Replace the record only if nobody changed it since `read`. Returns whether we won.
pub fn swap<T: Serialize>(
    p: &dyn Platform,
    key: &str,
    seen: &Versioned<T>,
    new: &T,
) -> Result<bool, KvError> {
    let bytes = serde_json::to_vec(new).map_err(|e| KvError(e.to_string()))?;
    p.kv_compare_and_swap(key, seen.raw.as_deref(), &bytes)
}

/// Move an occurrence record from `seen` to `new` (whose `claimed_by` names this
/// delivery), and confirm by reading it back: Spin's Redis store reports a
/// compare-and-swap whose transaction was aborted (the key changed) as a success,
/// so only the value actually stored says who won.
pub fn claim(
    p: &dyn Platform,
    key: &str,
    seen: &Versioned<OccurrenceRecord>,
    new: &OccurrenceRecord,
) -> Result<bool, KvError> {
    if !swap(p, key, seen, new)? {
        return Ok(false);
    }
    let stored = read::<OccurrenceRecord>(p, key)?;
    Ok(stored.value.as_ref() == Some(new))
}

pub fn write<T: Serialize>(p: &dyn Platform, key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError(e.to_string()))?;
    p.kv_set(key, &bytes)
}

/// Count one action for `rule`; retried on contention so concurrent rules never lose a count.
pub fn record_rule_action(p: &dyn Platform, rule: &str, now_ms: i64) -> Result<(), KvError> {
    let key = rule_key(rule);
    for _ in 0..16 {
        let seen = read::<RuleRecord>(p, &key)?;
        let mut rec = seen.value.clone().unwrap_or_default();
        rec.record(now_ms);
        // Read back: neither a swap from "absent" (an upsert in Spin's SQLite store)
        // nor a swap in Spin's Redis store (aborted reported as done) proves a win.
        if swap(p, &key, &seen, &rec)? && read::<RuleRecord>(p, &key)?.value.as_ref() == Some(&rec)
        {
            return Ok(());
        }
    }
    Err(KvError(format!(
        "could not update {key}: too much contention"
    )))
}
