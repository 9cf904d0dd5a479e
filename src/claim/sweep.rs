//! Removing expired records, a few per sweep, so that the store stays bounded by
//! live occurrences plus the retention window (Spin's key-value has no TTL).

use serde_json::Value;

use crate::platform::{KvError, Platform};

use super::cell::{self, decode_lock};

/// Cells the sweep looks at per run; each costs a read or two.
pub const PER_SWEEP: usize = 64;
/// One delivery in this many sweeps.
pub const SWEEP_EVERY: i64 = 16;

fn is_cell_prefix(key: &str) -> bool {
    ["o/", "t/", "r/"].iter().any(|p| key.starts_with(p))
}

fn expired(v: &Value, now_ms: i64) -> bool {
    let expires = v.get("expires_ms").and_then(Value::as_i64).unwrap_or(0);
    let busy = v.get("lease").is_some_and(|l| !l.is_null())
        || v.get("restoring").is_some_and(|l| !l.is_null())
        || v.get("holders")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty());
    expires < now_ms && !busy
}

/// Where a delivery's sweep starts: spread over the key space, whatever its size
/// (a start that moved in steps would fall into step with the store's growth and
/// look at the same keys again and again).
pub fn start_for(delivery: i64) -> usize {
    let h = crate::state::hash(&[&delivery.to_string()]);
    usize::from_str_radix(&h[..12], 16).unwrap_or(0)
}

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub looked_at: usize,
    pub removed: usize,
}

/// Look at up to [`PER_SWEEP`] keys from `start` (rotated by the caller) and
/// remove expired cells, orphaned values (written by a writer that lost or was
/// fenced out, kept until they expire) and the earlier version's records.
pub fn sweep(p: &dyn Platform, now_ms: i64, start: usize) -> Result<Swept, KvError> {
    let keys = p.kv_keys()?;
    let mut out = Swept::default();
    if keys.is_empty() {
        return Ok(out);
    }
    let n = keys.len();
    for i in 0..n.min(PER_SWEEP) {
        let key = &keys[(start + i) % n];
        out.looked_at += 1;
        let remove = if key.starts_with("claim/") {
            // The earlier version's creation counters: nothing reads them now.
            true
        } else if key.starts_with("occ/") || key.starts_with("rule/") {
            legacy_expired(p, key, now_ms)?
        } else if crate::rules_source::is_cache_record(key) {
            let stale = crate::rules_source::stale_cache_record(p, key, now_ms)?;
            if stale {
                p.kv_delete(key)?;
            }
            stale
        } else if is_cell_prefix(key) {
            match key.matches('/').count() {
                1 => sweep_cell(p, key, now_ms)?,
                2 => orphan(p, key, now_ms)?,
                _ => false,
            }
        } else {
            false
        };
        if remove {
            out.removed += 1;
        }
    }
    Ok(out)
}

fn legacy_expired(p: &dyn Platform, key: &str, now_ms: i64) -> Result<bool, KvError> {
    let Some(bytes) = p.kv_get(key)? else {
        return Ok(false);
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let last = v
        .get("since_ms")
        .and_then(Value::as_i64)
        .or_else(|| {
            v.get("actions_ms")
                .and_then(Value::as_array)
                .and_then(|a| a.last())
                .and_then(Value::as_i64)
        })
        .unwrap_or(0);
    if last.saturating_add(super::RETENTION_MS) < now_ms {
        p.kv_delete(key)?;
        return Ok(true);
    }
    Ok(false)
}

fn sweep_cell(p: &dyn Platform, key: &str, now_ms: i64) -> Result<bool, KvError> {
    let seen = match cell::read::<Value>(p, key) {
        Ok(s) => s,
        Err(cell::CellError::Kv(e)) => return Err(e),
        Err(cell::CellError::Unreadable(_)) => return Ok(false),
    };
    let Some(ticket) = seen.ticket() else {
        return Ok(false);
    };
    match &seen.value {
        Some(v) if expired(v, now_ms) => {}
        _ => return Ok(false),
    }
    // Value first: a reader that still finds the lock word reads "empty".
    p.kv_delete(&cell::value_key(key, ticket))?;
    p.kv_delete(key)?;
    Ok(true)
}

fn orphan(p: &dyn Platform, key: &str, now_ms: i64) -> Result<bool, KvError> {
    let Some((cell_key, t)) = key.rsplit_once('/') else {
        return Ok(false);
    };
    let Ok(ticket) = t.parse::<i64>() else {
        return Ok(false);
    };
    let published = match p.kv_get(cell_key)? {
        Some(raw) => decode_lock(&raw) == Some(ticket),
        None => false,
    };
    if published {
        return Ok(false);
    }
    let Some(bytes) = p.kv_get(key)? else {
        return Ok(false);
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let expires = v.get("expires_ms").and_then(Value::as_i64).unwrap_or(0);
    if expires < now_ms {
        p.kv_delete(key)?;
        return Ok(true);
    }
    Ok(false)
}
