//! The blast-radius budget: each forward change is counted against its bucket (an
//! Unleash project, or scaling) before it is sent, exactly across replicas.

use super::ActionError;
use crate::claim::cell::{CellError, Change};
use crate::claim::{self, Bucket, RuleHistory, StoredAction};
use crate::delivery::Delivery;
use crate::plan::Decision;

/// What the blast-radius budget said.
pub enum Admitted {
    Yes,
    Exhausted(String),
    Error(ActionError),
}

/// The id a change is counted under: the same for every re-send of one step of one
/// occurrence (a retry, a takeover), so that re-sending it never counts twice.
pub(crate) fn change_id(okey: &str, a: &StoredAction) -> i64 {
    // The step names the action within its occurrence (a ladder's steps differ).
    let h = crate::state::hash(&[okey, &a.step.to_string()]);
    i64::from_str_radix(&h[..15], 16).unwrap_or(0)
}

/// `1h`, `10m`, `1h30m`, `45s`, `500ms`: how a window reads in messages.
pub fn window_text(ms: i64) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= per {
            out.push_str(&format!("{}{unit}", rest / per));
            rest %= per;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Count one forward change against its bucket's blast-radius budget, exactly: the
/// check and the count are one swap on the bucket's cell, as for the circuit
/// breaker, made before the change is sent. No budget configured: no key-value call
/// at all. A re-send of the same change (a retry, a takeover after a crash) counts
/// once; its entry moves to the re-send's time, so that a change admitted long ago by
/// a delivery that died before sending is not sent later under that old count.
pub fn admit(d: &mut Delivery, bucket: &Bucket, id: i64) -> Admitted {
    let Some((max, window)) = d.budget() else {
        return Admitted::Yes;
    };
    let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
    let now = d.p.now_ms();
    let since = now.saturating_sub(window_ms);
    let key = claim::budget_key(bucket);
    let answer = d.update_cell(&key, |b: Option<&RuleHistory>| {
        let mut b = b.cloned().unwrap_or_default();
        // A re-send of a change admitted within the window is not counted again, but
        // its time moves to now: counted from admission to send, never longer.
        let resend = b.has(id, since);
        let recent = b.actions_since(since);
        if recent >= max as usize && !resend {
            let w = window_text(window_ms);
            // (The breaker's answer type: one copy of the cell code for both.)
            return Change::Keep(Err(Decision::Skip {
                why: format!(
                    "blast-radius budget exhausted: {recent} changes in {bucket} in the last {w} (max_changes: {max} per {w}); nothing more is changed there until the window frees up"
                ),
                circuit_open: false,
            }));
        }
        let expires = now
            .saturating_add(window_ms)
            .saturating_add(claim::RETENTION_MS);
        b.admit(id, now, since, expires);
        Change::Write(b, Ok(()))
    });
    match answer {
        Ok((Ok(()), _)) => Admitted::Yes,
        Ok((Err(Decision::Skip { why, .. }), _)) => Admitted::Exhausted(why),
        Ok((Err(_), _)) => unreachable!("the budget only says no with a reason"),
        Err(e) => Admitted::Error(ActionError {
            message: format!("blast-radius budget of {bucket}: {e}"),
            retryable: matches!(e, CellError::Kv(_)),
        }),
    }
}
