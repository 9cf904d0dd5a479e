//! Undoing what an occurrence did, once it resolves. `Undo::of` is the one place
//! that says how a stored action is undone and what the undo changes; [`revert`]
//! carries it out and [`dry_run`] describes it.

use super::act::{any_failed, describe, dry_run_report};
use super::{flags, scaling, target, ActionError};
use crate::audit::Event;
use crate::claim::decision::Claim;
use crate::claim::{
    self, cell, ActionState, Lease, Occurrence, Phase, Setting, StoredAction, Taken,
};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::problem::Problem;
use crate::report::{ActionTarget, ProblemOutcome, ProblemReport};

/// Whether a stored action is still to be undone: revert is on for it, and it was
/// (or may have been) applied.
pub fn undoable(a: &StoredAction) -> bool {
    a.revert && matches!(a.state, ActionState::Applied | ActionState::Pending)
}

/// How one stored action is undone.
enum Undo<'a> {
    /// A flag setting (on/off, or a rollout): leave it; its last holder restores it
    /// to what it was before remediator acted.
    Restore(&'a Taken),
    /// A scale change: send its undo (`on_resolve`, else the change's inverse).
    Scale(&'a Taken, &'a str),
    /// A scale change nothing undoes (`=N` without `on_resolve`): kept.
    Keep(&'a Taken),
}

impl<'a> Undo<'a> {
    fn of(t: &'a Taken) -> Self {
        match t {
            Taken::Flag { .. } | Taken::Rollout { .. } => Undo::Restore(t),
            Taken::Scale { undo: Some(u), .. } => Undo::Scale(t, u),
            Taken::Scale { undo: None, .. } => Undo::Keep(t),
        }
    }

    /// What the undo changes: the flag turned back (a rollout to `restored`, when
    /// known), the scale undo value; what was done, when it is kept.
    fn target(&self, restored: Option<Setting>) -> ActionTarget {
        match self {
            Undo::Restore(t) => match (target(t), restored) {
                (
                    ActionTarget::Flag {
                        flag,
                        project,
                        environment,
                        enabled,
                    },
                    _,
                ) => ActionTarget::Flag {
                    flag,
                    project,
                    environment,
                    enabled: !enabled,
                },
                (
                    ActionTarget::Rollout {
                        flag,
                        project,
                        environment,
                        strategy,
                        rollout,
                    },
                    restored,
                ) => ActionTarget::Rollout {
                    flag,
                    project,
                    environment,
                    strategy,
                    rollout: match restored {
                        Some(Setting::Rollout(p)) => p,
                        _ => rollout,
                    },
                },
                (other, _) => other,
            },
            Undo::Scale(t, undo) => match target(t) {
                ActionTarget::Scale {
                    service, namespace, ..
                } => ActionTarget::Scale {
                    value: undo.to_string(),
                    service,
                    namespace,
                },
                other => other,
            },
            Undo::Keep(t) => target(t),
        }
    }

    /// What a dry run says would be sent; `None`: nothing would.
    fn describe(&self, cfg: &Config) -> Option<String> {
        Some(match self {
            Undo::Restore(t @ Taken::Flag { enabled, .. }) => format!(
                "{} unless another occurrence still holds the flag, it was changed by hand, or it was already so",
                describe(t, Some(Setting::Enabled(!enabled)), cfg)
            ),
            Undo::Restore(Taken::Rollout { flag, .. }) => format!(
                "would set the rollout of flag {flag:?} back to what it was before remediator acted, unless another occurrence still holds it or it was changed by hand"
            ),
            Undo::Restore(t) | Undo::Scale(t, _) => describe(t, None, cfg),
            Undo::Keep(_) => return None,
        })
    }

    /// Carry it out for `a`, an action of the occurrence `okey` (claimed under
    /// `lease`): what it changed, its result, and the audit event.
    fn run(
        &self,
        d: &mut Delivery,
        okey: &str,
        lease: Lease,
        rec: &Occurrence,
        problem: &Problem,
        a: &StoredAction,
    ) -> (ActionTarget, Result<String, ActionError>, Event) {
        match self {
            Undo::Restore(_) => {
                let (result, event, restored) = flags::release_and_restore(d, okey, lease, a);
                (self.target(restored), result, event)
            }
            Undo::Scale(_, u) => {
                let result = scaling::send(d, rec, problem, a.step, u, "revert");
                (self.target(None), result, Event::Reverted)
            }
            Undo::Keep(_) => (
                self.target(None),
                Ok("no inverse for =N and no on_resolve".into()),
                Event::RevertSkipped,
            ),
        }
    }
}

/// Undo the claimed occurrence's actions, newest first, record each result, and
/// close the claim.
pub fn revert(
    d: &mut Delivery,
    problem: &Problem,
    mut report: ProblemReport,
    claim: Claim,
) -> ProblemReport {
    let (key, mut rec, ticket) = (claim.key.as_str(), claim.rec, claim.ticket);
    let lease = rec.lease.unwrap_or(Lease {
        ticket,
        until_ms: d.deadline_ms,
    });
    let mut failed = false;
    let mut undone = 0;
    let todo: Vec<usize> = (0..rec.actions.len())
        .rev()
        .filter(|&i| undoable(&rec.actions[i]))
        .collect();
    let mut write_error = None;
    // A result (undone, kept) not written yet.
    let mut unrecorded = false;
    for i in todo.iter().copied() {
        let a = rec.actions[i].clone();
        let undo = Undo::of(&a.taken);
        if unrecorded && !matches!(undo, Undo::Keep(_)) {
            // Record the results so far before anything more is sent; the last one
            // needs no write of its own (a crash before the closing write leaves it
            // to undo again either way, and undoing is idempotent).
            if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
                write_error = Some(e);
            }
            unrecorded = false;
        }
        let (target, result, event) = undo.run(d, key, lease, &rec, problem, &a);
        match &result {
            Ok(_) => {
                rec.actions[i].state = if event == Event::Reverted {
                    ActionState::Undone
                } else {
                    ActionState::Kept
                };
                if event == Event::Reverted {
                    undone += 1;
                }
            }
            Err(e) if e.retryable => failed = true,
            Err(_) => rec.actions[i].state = ActionState::Kept,
        }
        unrecorded |= !undoable(&rec.actions[i]);
        d.action(&mut report, target, result, event);
    }
    rec.lease = None;
    // A retryable failure keeps the occurrence open, so the sender's retry undoes the rest.
    rec.phase = if failed {
        Phase::Reverting
    } else {
        Phase::Resolved
    };
    rec.expires_ms = d.p.now_ms().saturating_add(claim::RETENTION_MS);
    let mut detail = if todo.is_empty() {
        "resolved: nothing to undo (revert is off for what was done)".to_string()
    } else {
        format!("resolved: undid {undone} of {} actions", todo.len())
    };
    // Written with the delivery's other closing writes, in one transaction.
    if let Err(e) = d.close_own(key, ticket, &rec, "") {
        write_error = Some(e);
    }
    if let Some(e) = write_error {
        detail = format!("{detail}; WARNING: result not recorded ({e})");
    }
    report.outcome = if any_failed(&report) {
        ProblemOutcome::Failed
    } else if undone > 0 {
        ProblemOutcome::Reverted
    } else {
        ProblemOutcome::Ignored
    };
    report.detail = Some(detail);
    report
}

/// A dry run of resolving: what would be undone of `actions` (the occurrence's, as
/// stored); nothing is sent or recorded.
pub fn dry_run(
    d: &mut Delivery,
    mut report: ProblemReport,
    actions: &[StoredAction],
) -> ProblemReport {
    for a in actions.iter().filter(|a| undoable(a)) {
        let undo = Undo::of(&a.taken);
        if let Some(detail) = undo.describe(d.cfg) {
            report
                .actions
                .push(dry_run_report(undo.target(None), detail));
        }
    }
    d.finish(
        report,
        ProblemOutcome::DryRun,
        "dry run: resolved".into(),
        Event::DryRun,
    )
}
