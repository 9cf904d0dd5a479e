//! The audit trail: every decision, written in key-value as one batch per webhook
//! delivery (one write: no counter), newest-first on read, bounded by pruning the
//! oldest batches now and then.
//!
//! A batch's key is `audit/<ms>-<id>`: the time of the delivery's first entry (13
//! digits, zero-padded, so keys sort by time) and its delivery id (random, so
//! replicas never pick the same key). Deliveries in which no rule matched anything are
//! not audited unless `audit_unmatched` is on (see `worth_auditing`).

use serde::{Deserialize, Serialize};

use crate::platform::{KvError, Platform};
use crate::problem::{Links, Status};
use crate::report::ActionTarget;

/// Batches kept; older ones are deleted now and then (one delivery in [`PRUNE_EVERY`]).
pub const MAX_BATCHES: i64 = 2000;
/// One audited delivery in this many (by its random id) lists the keys and deletes the
/// batches beyond [`MAX_BATCHES`]: the others write exactly one key. The store holds
/// about `MAX_BATCHES + PRUNE_EVERY` batches; reads show the newest `MAX_BATCHES`.
pub const PRUNE_EVERY: i64 = 16;
const PREFIX: &str = "audit/";
/// Delivery ids are random below 2^43: cell tickets are `id * 4096 + seq` and must
/// stay below 2^56 (claim::cell::decode_lock), and ids stay exact as JSON numbers
/// (below 2^53).
const ID_BITS: u32 = 43;
/// Spin values are limited to 1 MB; keep batches well below.
const MAX_BATCH_BYTES: usize = 512 * 1024;

fn batch_key(at_ms: i64, id: i64) -> String {
    format!("{PREFIX}{:013}-{id:013}", at_ms.max(0))
}

/// Where a batch key sorts, oldest first: the previous version's `audit/<n>` (from a
/// shared counter, written before any of this version's) below every
/// `audit/<ms>-<id>`; `audit/head` (that counter) and anything else is no batch.
fn batch_order(key: &str) -> Option<(u8, i64, i64)> {
    let rest = key.strip_prefix(PREFIX)?;
    let digits = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    match rest.split_once('-') {
        Some((ms, id)) => Some((1, digits(ms)?, digits(id)?)),
        None => Some((0, digits(rest)?, 0)),
    }
}

/// Every batch key in the store, newest first.
fn batch_keys(p: &dyn Platform) -> Result<Vec<String>, KvError> {
    let mut keys: Vec<((u8, i64, i64), String)> = p
        .kv_keys()?
        .into_iter()
        .filter_map(|k| Some((batch_order(&k)?, k)))
        .collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    Ok(keys.into_iter().map(|(_, k)| k).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Received,
    NoMatchingRule,
    Matched,
    Skipped,
    CircuitOpen,
    /// A change held back by the blast-radius budget.
    BudgetExhausted,
    AlreadyHandled,
    InProgress,
    DryRun,
    Acted,
    Failed,
    Reverted,
    RevertSkipped,
    Error,
    /// A notification was sent (or, in a dry run, would have been).
    Notified,
    /// A notification failed; the remediation itself is unaffected.
    NotifyFailed,
    /// An event this build does not know (written by a newer version, e.g. during a
    /// rolling update): its batch still reads, and the page shows it generically.
    /// Stays last (serde's rule): new events go above it.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The delivery (audit batch) this entry belongs to.
    pub delivery: i64,
    pub at: String,
    pub at_ms: i64,
    pub event: Event,
    pub occurrence: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Why the sender sent the delivery (Alertmanager 0.32+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_reason: Option<String>,
    /// Firing or resolved (older entries have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The alert's `summary` annotation (decisions only; older entries have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The alert's `generatorURL` and Grafana links (decisions only).
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub links: Links,
}

impl Event {
    /// The name the JSON API uses (`acted`, `already_handled`, ...).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Entry {
    pub fn flag(&self) -> Option<&str> {
        match &self.action {
            Some(ActionTarget::Flag { flag, .. } | ActionTarget::Rollout { flag, .. }) => {
                Some(flag)
            }
            _ => None,
        }
    }
}

/// A new delivery id: random, so unique across replicas without a shared counter
/// (the claim protocol's tickets derive from it; see `ID_BITS`). Never 0.
pub fn next_delivery(p: &dyn Platform) -> i64 {
    let id = (p.random_u64() & ((1 << ID_BITS) - 1)) as i64;
    id.max(1)
}

/// Whether a delivery's entries belong in the audit: not when nothing but
/// `received` / `no_matching_rule` happened (unless `audit_unmatched`). A flood of
/// alerts no rule is for (Alertmanager routes may send everything) would otherwise
/// cost a durable write each and push the real decisions out of the bounded audit;
/// they are still counted in the metrics and logged.
pub fn worth_auditing(entries: &[Entry], audit_unmatched: bool) -> bool {
    audit_unmatched
        || entries
            .iter()
            .any(|e| !matches!(e.event, Event::Received | Event::NoMatchingRule))
}

/// A delivery's batch: its key and value (`None`: no entries). The webhook writes it
/// with the delivery's other end-of-delivery writes, then calls [`written`].
pub fn batch(delivery: i64, entries: &[Entry]) -> Result<Option<(String, Vec<u8>)>, KvError> {
    let Some(first_ms) = entries.iter().map(|e| e.at_ms).min() else {
        return Ok(None);
    };
    let mut bytes = serde_json::to_vec(entries).map_err(|e| KvError(e.to_string()))?;
    if bytes.len() > MAX_BATCH_BYTES {
        // A huge delivery: drop the bookkeeping, then keep entries that changed
        // something first, and of the rest what fits.
        let mut kept: Vec<&Entry> = entries
            .iter()
            .filter(|e| !matches!(e.event, Event::Received | Event::Matched))
            .collect();
        kept.sort_by_key(|e| (e.action.is_none(), e.at_ms));
        bytes = serde_json::to_vec(&kept).map_err(|e| KvError(e.to_string()))?;
        while bytes.len() > MAX_BATCH_BYTES && !kept.is_empty() {
            kept.truncate(kept.len() * 3 / 4);
            bytes = serde_json::to_vec(&kept).map_err(|e| KvError(e.to_string()))?;
        }
    }
    // Keyed by the delivery's start, as the earlier counter ordered batches.
    Ok(Some((batch_key(first_ms, delivery), bytes)))
}

/// A delivery's batch is written: now and then drop the oldest batches.
pub fn written(p: &dyn Platform, delivery: i64) {
    if delivery % PRUNE_EVERY == 0 {
        // The batch is written: a failed pruning is only late (another one follows).
        if let Err(e) = prune(p) {
            p.log(&format!("remediator: WARNING audit pruning failed: {e}"));
        }
    }
}

/// Delete every batch beyond the newest [`MAX_BATCHES`] (the previous version's first),
/// in one `delete-many`: one durable transaction under Spin, not one per batch.
pub fn prune(p: &dyn Platform) -> Result<usize, KvError> {
    let keys = batch_keys(p)?;
    let old = keys.get(MAX_BATCHES as usize..).unwrap_or_default();
    p.kv_delete_many(old)?;
    Ok(old.len())
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub rule: Option<String>,
    pub flag: Option<String>,
    /// An event name (`acted`, `reverted`, `circuit_open`, ...).
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: usize,
}

impl Filter {
    fn accepts(&self, e: &Entry) -> bool {
        self.rule
            .as_ref()
            .is_none_or(|r| e.rule.as_ref() == Some(r))
            && self
                .flag
                .as_ref()
                .is_none_or(|f| e.flag() == Some(f.as_str()))
            && self.outcome.as_ref().is_none_or(|o| e.event.name() == *o)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.until_ms.is_none_or(|t| e.at_ms <= t)
    }
}

/// Newest first.
pub fn read(p: &dyn Platform, filter: &Filter) -> Result<Vec<Entry>, KvError> {
    let mut out = Vec::new();
    for key in batch_keys(p)?.iter().take(MAX_BATCHES as usize) {
        let Some(bytes) = p.kv_get(key)? else {
            continue;
        };
        let Ok(batch) = serde_json::from_slice::<Vec<Entry>>(&bytes) else {
            continue;
        };
        if filter
            .until_ms
            .is_some_and(|u| batch.iter().all(|e| e.at_ms > u))
        {
            continue;
        }
        if filter
            .since_ms
            .is_some_and(|s| batch.iter().all(|e| e.at_ms < s))
        {
            break;
        }
        for e in batch.into_iter().rev().filter(|e| filter.accepts(e)) {
            out.push(e);
            if out.len() >= filter.limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// RFC 3339 UTC with milliseconds, from Unix milliseconds (civil-from-days).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parse RFC 3339 (`2026-11-26T14:02:06Z`, with optional fraction and offset) or
/// plain Unix milliseconds, for `?since=` / `?until=`. What people type into the audit
/// page's form is accepted too: without seconds or zone (`2026-11-26T14:02`, UTC).
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let full;
    let s = match s.len() {
        16 => {
            full = [s, ":00Z"].concat();
            &full
        }
        19 => {
            full = [s, "Z"].concat();
            &full
        }
        _ => s,
    };
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let f = &frac[..digits];
        millis = format!("{f:0<3}")[..3].parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 60 + om)
        }
    };
    // days-from-civil
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_order_by_time_then_id_after_the_previous_versions() {
        assert_eq!(
            batch_key(1_764_165_726_305, 42),
            "audit/1764165726305-0000000000042"
        );
        assert_eq!(batch_order("audit/head"), None);
        assert_eq!(batch_order("audit/"), None);
        assert_eq!(batch_order("audit/12x"), None);
        assert_eq!(batch_order("audit/1-x"), None);
        assert_eq!(batch_order("metrics/generation"), None);
        let mut keys = [
            batch_key(2_000, 1),
            "audit/9".to_string(),
            batch_key(1_000, 7),
            "audit/10".to_string(),
            batch_key(2_000, 3),
        ];
        keys.sort_by_key(|k| batch_order(k));
        assert_eq!(
            keys,
            [
                "audit/9",
                "audit/10",
                "audit/0000000001000-0000000000007",
                "audit/0000000002000-0000000000001",
                "audit/0000000002000-0000000000003"
            ]
        );
    }

    #[test]
    fn time_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_165_726_305), "2025-11-26T14:02:06.305Z");
        assert_eq!(
            parse_time("2025-11-26T14:02:06.305Z"),
            Some(1_764_165_726_305)
        );
        assert_eq!(
            parse_time("2025-11-26T15:02:06.305+01:00"),
            Some(1_764_165_726_305)
        );
        assert_eq!(
            parse_time("2024-02-29T00:00:00Z").map(rfc3339).as_deref(),
            Some("2024-02-29T00:00:00.000Z")
        );
        assert_eq!(parse_time("12345"), Some(12345));
        // As typed into the audit page: UTC, seconds optional.
        assert_eq!(parse_time("2025-11-26T14:02:06"), Some(1_764_165_726_000));
        assert_eq!(parse_time("2025-11-26 14:02"), Some(1_764_165_720_000));
        assert_eq!(parse_time("2025-11-26T14:0"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
