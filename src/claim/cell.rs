//! A compare-and-swap cell that is exact on both of Spin's key-value stores.
//!
//! Spin's stores break compare-and-swap in two places: SQLite turns a swap from
//! "absent" into an upsert that always succeeds, and Redis reports a swap whose
//! transaction was aborted as a success. So a cell never swaps from absent and never
//! trusts a swap's answer:
//!
//! - its *lock word* `<key>` holds a number: the ticket of the value's writer. It is
//!   created by `increment(key, 0)` (atomic from absent in both stores) and only ever
//!   changes by a swap from a present value to a fresh, unique ticket, confirmed by
//!   reading it back;
//! - its *value* for ticket `t` lives at `<key>/<t>`, a key no one else writes. It is
//!   written before the swap that publishes it, so a published ticket always has its
//!   value, and a writer that lost (or was fenced out) only ever touched its own key.
//!
//! The lock word keeps the store's own integer encoding (8-byte little-endian in
//! SQLite, decimal in Redis): Spin's SQLite `increment` panics on anything else.

use serde::{de::DeserializeOwned, Serialize};

use crate::platform::{KvError, Platform};

/// The lock word as read: its exact bytes (for the swap) and the ticket they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub raw: Vec<u8>,
    pub ticket: i64,
}

/// A cell as read: the lock word (absent: never written) and the published value.
#[derive(Debug, Clone)]
pub struct Seen<T> {
    pub lock: Option<Lock>,
    pub value: Option<T>,
}

impl<T> Seen<T> {
    pub fn ticket(&self) -> Option<i64> {
        self.lock.as_ref().map(|l| l.ticket).filter(|&t| t != 0)
    }
}

/// Why a cell could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellError {
    Kv(KvError),
    /// The stored value does not decode: permanent until someone repairs it.
    Unreadable(String),
}

impl From<KvError> for CellError {
    fn from(e: KvError) -> Self {
        CellError::Kv(e)
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellError::Kv(e) => write!(f, "{e}"),
            CellError::Unreadable(m) => write!(f, "unreadable record: {m}"),
        }
    }
}

pub fn value_key(key: &str, ticket: i64) -> String {
    format!("{key}/{ticket}")
}

/// Decode a lock word in either store's encoding. Tickets stay far below 2^56, so
/// an 8-byte little-endian ticket always has a zero top byte and never reads as
/// ASCII digits.
pub fn decode_lock(raw: &[u8]) -> Option<i64> {
    let decimal = !raw.is_empty()
        && raw.len() <= 20
        && raw
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && *b == b'-' && raw.len() > 1));
    if decimal {
        return std::str::from_utf8(raw).ok()?.parse().ok();
    }
    let bytes: [u8; 8] = raw.try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

/// `ticket` in the encoding of `like` (bytes the store itself wrote).
pub fn encode_like(like: &[u8], ticket: i64) -> Vec<u8> {
    if like.len() == 8 && decode_lock(like).is_some() && !like.iter().all(u8::is_ascii_digit) {
        ticket.to_le_bytes().to_vec()
    } else {
        ticket.to_string().into_bytes()
    }
}

fn read_lock(p: &dyn Platform, key: &str) -> Result<Option<Lock>, CellError> {
    match p.kv_get(key)? {
        None => Ok(None),
        Some(raw) => match decode_lock(&raw) {
            Some(ticket) => Ok(Some(Lock { raw, ticket })),
            None => Err(CellError::Unreadable(format!(
                "lock word {key} is not a number"
            ))),
        },
    }
}

/// Read the cell. A lock word whose value is missing means a newer writer moved
/// it on (and swept the old value): read again.
pub fn read<T: DeserializeOwned>(p: &dyn Platform, key: &str) -> Result<Seen<T>, CellError> {
    for _ in 0..8 {
        let lock = read_lock(p, key)?;
        let Some(ticket) = lock.as_ref().map(|l| l.ticket).filter(|&t| t != 0) else {
            return Ok(Seen { lock, value: None });
        };
        let Some(bytes) = p.kv_get(&value_key(key, ticket))? else {
            if read_lock(p, key)? == lock {
                // Published but gone: only a sweep deletes values; treat as empty.
                return Ok(Seen { lock, value: None });
            }
            continue;
        };
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| CellError::Unreadable(format!("{key} (ticket {ticket}): {e}")))?;
        return Ok(Seen {
            lock,
            value: Some(value),
        });
    }
    Err(CellError::Kv(KvError(format!(
        "{key}: changed under every read"
    ))))
}

/// Publish `new` under `ticket` if the cell still holds what `seen` saw. Returns
/// whether this caller won. `ticket` must never have been used on this cell.
pub fn swap<T: Serialize>(
    p: &dyn Platform,
    key: &str,
    seen: &Seen<T>,
    ticket: i64,
    new: &T,
) -> Result<bool, KvError> {
    let lock = match &seen.lock {
        Some(l) => l.clone(),
        None => {
            // Create the lock word as 0 (atomic from absent); if someone else
            // created or moved it meanwhile, our `seen` is stale.
            p.kv_increment(key, 0)?;
            match p.kv_get(key)? {
                Some(raw) if decode_lock(&raw) == Some(0) => Lock { raw, ticket: 0 },
                _ => return Ok(false),
            }
        }
    };
    let vkey = value_key(key, ticket);
    let bytes = serde_json::to_vec(new).map_err(|e| KvError(e.to_string()))?;
    p.kv_set(&vkey, &bytes)?;
    let next = encode_like(&lock.raw, ticket);
    let won = p.kv_compare_and_swap(key, Some(&lock.raw), &next)?
        && p.kv_get(key)?.as_deref() == Some(next.as_slice());
    // Nobody reads the old value (or a lost one) any more: deleted with the
    // delivery's other such deletes; a failure or a crash leaves it to the sweep.
    if won {
        if lock.ticket != 0 {
            let _ = p.kv_delete_unread(&value_key(key, lock.ticket));
        }
    } else {
        let _ = p.kv_delete_unread(&vkey);
    }
    Ok(won)
}

/// The owner of `ticket` (who won [`swap`] with it) updates its own value. If it
/// was fenced out meanwhile, the write lands where nobody reads.
pub fn write_own<T: Serialize>(
    p: &dyn Platform,
    key: &str,
    ticket: i64,
    value: &T,
) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError(e.to_string()))?;
    p.kv_set(&value_key(key, ticket), &bytes)
}

/// Whether `ticket` still owns the cell (nobody took it over).
pub fn still_owner(p: &dyn Platform, key: &str, ticket: i64) -> Result<bool, CellError> {
    Ok(read_lock(p, key)?.map(|l| l.ticket) == Some(ticket))
}

/// What an [`update`] step decided.
pub enum Change<T, R> {
    Write(T, R),
    Keep(R),
}

/// Read-modify-write with retries on contention: `f` sees the current value and
/// says what to publish. Returns its answer and whether it was written.
///
/// (`dyn` callbacks: one copy of this loop per record type in the component, not one
/// per caller.)
pub fn update<T, R>(
    p: &dyn Platform,
    key: &str,
    next_ticket: &mut dyn FnMut() -> i64,
    f: &mut dyn FnMut(Option<&T>) -> Change<T, R>,
) -> Result<(R, bool), CellError>
where
    T: Serialize + DeserializeOwned,
{
    for _ in 0..32 {
        let seen = read::<T>(p, key)?;
        match f(seen.value.as_ref()) {
            Change::Keep(r) => return Ok((r, false)),
            Change::Write(new, r) => {
                if swap(p, key, &seen, next_ticket(), &new)? {
                    return Ok((r, true));
                }
            }
        }
    }
    Err(CellError::Kv(KvError(format!(
        "{key}: too much contention"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_words_decode_in_both_encodings() {
        assert_eq!(decode_lock(&0i64.to_le_bytes()), Some(0));
        assert_eq!(
            decode_lock(&(123_456_789i64 << 12).to_le_bytes()),
            Some(123_456_789 << 12)
        );
        assert_eq!(decode_lock(b"0"), Some(0));
        assert_eq!(decode_lock(b"12345678"), Some(12_345_678));
        assert_eq!(decode_lock(b"{\"x\":1}"), None);
        assert_eq!(
            encode_like(&0i64.to_le_bytes(), 7),
            7i64.to_le_bytes().to_vec()
        );
        assert_eq!(encode_like(b"0", 7), b"7".to_vec());
        assert_eq!(encode_like(b"12345678", 9), b"9".to_vec());
    }
}
