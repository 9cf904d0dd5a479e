//! What remediator remembers, per occurrence, per flag it holds, and per rule.

use serde::{Deserialize, Serialize};

/// Who is acting on a record, and until when by the owner's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The cell ticket the owner won with.
    pub ticket: i64,
    pub until_ms: i64,
}

impl Lease {
    /// Whether another replica must still keep out: its clock may run up to
    /// `skew_ms` ahead of the owner's.
    pub fn is_fresh(&self, now_ms: i64, skew_ms: i64) -> bool {
        now_ms <= self.until_ms.saturating_add(skew_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A delivery holds the lease and is acting.
    Acting,
    Done,
    /// The last attempt failed; the next delivery retries what is not applied.
    Failed,
    /// A policy (cooldown, breaker, conflict) said no: decided afresh next time.
    Skipped,
    /// A delivery holds the lease and is undoing.
    Reverting,
    /// Resolved (also when the resolve came first: a late firing must not act).
    Resolved,
}

/// An action as it was taken, with what is needed to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Taken {
    Flag {
        flag: String,
        project: String,
        environment: String,
        enabled: bool,
    },
    /// A `flexibleRollout` strategy's percentage.
    Rollout {
        flag: String,
        project: String,
        environment: String,
        /// The strategy's id or title as the rule named it (`None`: the only one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strategy: Option<String>,
        percent: u8,
    },
    Scale {
        value: String,
        /// What resolve sends (`None`: nothing to undo).
        undo: Option<String>,
        service: Option<String>,
        namespace: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Written before sending: it may or may not have taken effect.
    Pending,
    Applied,
    /// Refused for good (404, conflict): never retried, nothing to undo.
    Refused,
    Undone,
    /// Resolve left it (revert off, no inverse, changed by hand).
    Kept,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAction {
    /// The rule's action index (ladder step) it came from.
    pub step: usize,
    pub taken: Taken,
    pub state: ActionState,
    /// Undo on resolve, as the rule said when it acted.
    pub revert: bool,
    pub at_ms: i64,
    /// Only in records carried over from the earlier version, which kept a flag's
    /// prior state per action rather than per target.
    // (bool: those records only knew on/off.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub occurrence: String,
    pub rule: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(default)]
    pub first_handled_ms: Option<i64>,
    #[serde(default)]
    pub first_audit: Option<i64>,
    /// When the last ladder step took effect.
    #[serde(default)]
    pub last_step_ms: Option<i64>,
    /// Ladder position: the next step to run.
    #[serde(default)]
    pub next_step: usize,
    #[serde(default)]
    pub actions: Vec<StoredAction>,
    /// Counted against the rule's cooldown/breaker at least once: a takeover of an
    /// attempt that died before that is still a new occurrence to the cooldown.
    #[serde(default)]
    pub admitted: bool,
    /// After this, the sweep may remove it.
    pub expires_ms: i64,
}

impl Occurrence {
    pub fn new(occurrence: &str, rule: &str, phase: Phase, expires_ms: i64) -> Occurrence {
        Occurrence {
            occurrence: occurrence.to_string(),
            rule: rule.to_string(),
            phase,
            lease: None,
            first_handled_ms: None,
            first_audit: None,
            last_step_ms: None,
            next_step: 0,
            actions: vec![],
            admitted: false,
            expires_ms,
        }
    }

    /// Someone is acting or undoing right now.
    pub fn busy(&self, now_ms: i64, skew_ms: i64) -> bool {
        matches!(self.phase, Phase::Acting | Phase::Reverting)
            && self.lease.is_some_and(|l| l.is_fresh(now_ms, skew_ms))
    }
}

/// What remediator sets on a flag in one environment: its on/off state, or a
/// rollout percentage. Untagged, so that the on/off records written before
/// rollouts existed (plain booleans) read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    Enabled(bool),
    Rollout(u8),
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Enabled(true) => f.write_str("on"),
            Setting::Enabled(false) => f.write_str("off"),
            Setting::Rollout(p) => write!(f, "at {p}%"),
        }
    }
}

/// One flag in one environment (its state, or one strategy's rollout) while
/// remediator holds it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Occurrence keys holding it; the last to leave restores `prior`.
    pub holders: Vec<String>,
    /// What remediator set it to.
    pub desired: Setting,
    /// What it was before remediator's first change.
    pub prior: Setting,
    /// Rollouts: the id of the strategy the first holder found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Settings remediator itself left the flag at before `desired` (a ladder step,
    /// a takeover) while Unleash has not confirmed `desired`: at restore they are
    /// remediator's doing, not a hand change. Cleared once a change to `desired` is
    /// answered 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Setting>,
    /// The last holder left: it is restoring (under this lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<Restoring>,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restoring {
    pub by: String,
    pub lease: Lease,
}

/// Per rule: recent actions, for cooldowns and the circuit breaker. Per budget
/// bucket (the same record shape, one instance of the cell code less in the
/// component): the changes admitted in the window, with `ids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHistory {
    /// Times of admitted actions, oldest first; kept for the rule's longest window.
    pub actions_ms: Vec<i64>,
    #[serde(default)]
    pub expires_ms: i64,
    /// Budgets only: the id of each admitted change (same order as `actions_ms`), so
    /// that re-sending one change (a retry, a takeover) never counts it twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
    /// When a `circuit_open` notification was last sent: once per breaker window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_notified_ms: Option<i64>,
    /// When a `budget_exhausted` notification was last sent: once per budget window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_notified_ms: Option<i64>,
}

impl RuleHistory {
    pub fn last_action_ms(&self) -> Option<i64> {
        self.actions_ms.last().copied()
    }

    pub fn actions_since(&self, since_ms: i64) -> usize {
        self.actions_ms.iter().filter(|&&t| t > since_ms).count()
    }

    /// Budgets: whether change `id` was admitted after `since_ms`.
    pub fn has(&self, id: i64, since_ms: i64) -> bool {
        self.actions_ms
            .iter()
            .zip(&self.ids)
            .any(|(&t, &i)| t > since_ms && i == id)
    }

    /// Budgets: admit change `id` now (moving it to now if it was admitted before),
    /// and forget what the window no longer sees.
    pub fn admit(&mut self, id: i64, now_ms: i64, since_ms: i64, expires_ms: i64) {
        let keep: Vec<(i64, i64)> = self
            .actions_ms
            .iter()
            .copied()
            .zip(self.ids.iter().copied())
            .filter(|&(t, i)| t > since_ms && i != id)
            .chain([(now_ms, id)])
            .collect();
        (self.actions_ms, self.ids) = keep.into_iter().unzip();
        self.expires_ms = expires_ms;
    }

    /// Record one admitted action and forget what no window can see any more.
    pub fn record(&mut self, now_ms: i64, keep_ms: i64, expires_ms: i64) {
        self.actions_ms.push(now_ms);
        let horizon = now_ms.saturating_sub(keep_ms);
        self.actions_ms.retain(|&t| t > horizon);
        self.expires_ms = expires_ms;
    }
}

/// What a blast-radius budget counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    Project(String),
    Scaling,
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bucket::Project(p) => write!(f, "project {p}"),
            Bucket::Scaling => f.write_str("scaling"),
        }
    }
}
