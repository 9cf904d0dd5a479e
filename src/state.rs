//! Key hashing, plain reads and writes, and the records of the earlier version
//! (`occ/…`, `rule/…`), which src/claim/legacy.rs carries into the new cells. Keys
//! are short hashes so they stay far below Spin's 256-byte key limit.

use serde::{Deserialize, Serialize};

use crate::platform::{KvError, Platform};

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

/// Per rule: when it acted, for cooldowns and the circuit breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// Times of recent actions, oldest first, bounded.
    pub actions_ms: Vec<i64>,
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

pub fn write<T: Serialize>(p: &dyn Platform, key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError(e.to_string()))?;
    p.kv_set(key, &bytes)
}
