//! The claim protocol: who may act on an occurrence, what it holds, and what it
//! must undo. Every record lives in a [`cell`] (exact on both of Spin's stores).
//!
//! - one occurrence cell per occurrence: its phase, a lease while a delivery acts,
//!   and the actions as taken (written *before* they are sent);
//! - one target cell per flag and environment while remediator holds it changed:
//!   its holders and its state from before the first change; the last holder to
//!   resolve restores it;
//! - one rule cell per rule with a cooldown or breaker: admitted actions, counted
//!   exactly under concurrency;
//! - one budget cell per Unleash project (and one for scaling) when a blast-radius
//!   budget is set: the changes admitted in its window, counted the same way.
//!
//! Every record expires; [`sweep`] removes expired ones a few at a time.
//!
//! [`decision`] is the claim decision itself: for one problem, what is remembered is
//! read, [`crate::plan`] decides, and the records it needs are claimed.

pub mod cell;
pub mod decision;
pub mod legacy;
mod records;
pub mod sweep;

pub use records::*;

use crate::state::hash;

pub fn occurrence_key(occurrence: &str) -> String {
    format!("o/{}", hash(&[occurrence]))
}

pub fn target_key(project: &str, flag: &str, environment: &str) -> String {
    format!("t/{}", hash(&[project, flag, environment]))
}

/// A rollout target: one strategy's percentage, by the name the rule gave it.
pub fn rollout_key(project: &str, flag: &str, environment: &str, strategy: Option<&str>) -> String {
    let strategy = strategy.unwrap_or("");
    format!(
        "t/{}",
        hash(&[project, flag, environment, "rollout", strategy])
    )
}

/// A blast-radius budget's bucket: one per Unleash project, one for scaling calls.
/// (The tags keep a project named "scaling" apart from the scaling bucket.)
pub fn budget_key(bucket: &Bucket) -> String {
    match bucket {
        Bucket::Project(p) => format!("b/{}", hash(&["project", p])),
        Bucket::Scaling => format!("b/{}", hash(&["scaling"])),
    }
}

pub fn rule_key(rule: &str) -> String {
    format!("r/{}", hash(&[rule]))
}

/// How long records outlive their last activity: longer than any alert stays
/// quiet between repeats, and than any late duplicate can arrive.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// A firing occurrence's record is refreshed when less than this is left.
pub const REFRESH_MS: i64 = 6 * 24 * 3600 * 1000;

/// Added to the outbound budget: a lease covers every call of a delivery plus
/// the writes that record them.
pub const LEASE_MARGIN_MS: i64 = 5_000;
