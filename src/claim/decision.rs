//! The claim decision for one problem: read what is remembered of its occurrence,
//! decide with [`crate::plan`], and claim the occurrence (and, under a cooldown or
//! breaker, the rule's admission) before anything is sent. Nothing is sent here:
//! [`crate::actions`] carries out what was claimed.

use super::cell::{self, CellError, Change};
use super::{legacy, ActionState, Occurrence, Phase, RuleHistory, StoredAction, Taken};
use crate::actions::taken;
use crate::audit::{self, Event};
use crate::delivery::Delivery;
use crate::plan::{self, Decision};
use crate::platform::Platform;
use crate::problem::Problem;
use crate::report::{FirstHandled, ProblemOutcome, ProblemReport};
use crate::rules::Rule;

/// An occurrence record this delivery holds under its lease.
pub struct Claim {
    /// The record's key.
    pub key: String,
    pub rec: Occurrence,
    /// The ticket the record was claimed with (its writes go under it).
    pub ticket: i64,
}

/// What the decision came to for one problem.
pub enum Claimed<'r> {
    /// Nothing to do but answer so.
    Answer {
        outcome: ProblemOutcome,
        detail: String,
        event: Event,
    },
    /// The rule's policy holds it back.
    Skipped {
        rule: &'r Rule,
        why: String,
        circuit_open: bool,
    },
    /// A dry run of acting: the recorded actions still pending, and the rule's
    /// `steps` this firing would add.
    WouldAct {
        rule: &'r Rule,
        pending: Vec<Taken>,
        steps: Vec<usize>,
        why: String,
    },
    /// A dry run of resolving: the recorded actions.
    WouldRevert {
        rule: &'r Rule,
        actions: Vec<StoredAction>,
    },
    /// Claimed to act: the record lists the actions to send as pending.
    Act {
        rule: &'r Rule,
        claim: Claim,
        steps: Vec<usize>,
        why: String,
    },
    /// Claimed to undo what the record holds (no rule: none matches any more).
    Revert {
        rule: Option<&'r Rule>,
        claim: Claim,
    },
}

/// One look at the occurrence's record.
struct Look {
    key: String,
    seen: cell::Seen<Occurrence>,
    /// The record: the cell's, else one of the earlier version (at `legacy_key`).
    record: Option<Occurrence>,
    legacy_key: Option<String>,
    now: i64,
}

/// Decide what to do for `problem` (matched by `rule`, if any) and claim what it
/// needs. `report` learns when the occurrence was first handled, and the stored
/// rule when no rule matches any more.
pub fn claim<'r>(
    d: &mut Delivery,
    rule: Option<&'r Rule>,
    problem: &Problem,
    report: &mut ProblemReport,
) -> Result<Claimed<'r>, CellError> {
    let key = super::occurrence_key(&report.occurrence);
    loop {
        let look = look(d, &key, rule, problem, report)?;
        let claimed = match rule {
            None => unmatched(d, look, report)?,
            Some(rule) => matched(d, rule, problem, look, &report.occurrence)?,
        };
        // None: another delivery moved first (or held a lease this one waited out).
        if let Some(claimed) = claimed {
            return Ok(claimed);
        }
    }
}

fn look(
    d: &Delivery,
    key: &str,
    rule: Option<&Rule>,
    problem: &Problem,
    report: &mut ProblemReport,
) -> Result<Look, CellError> {
    let now = d.p.now_ms();
    let seen = cell::read::<Occurrence>(d.p, key)?;
    let mut legacy_key = None;
    let mut record = seen.value.clone();
    if record.is_none() && seen.lock.is_none() {
        if let Some(rule) = rule {
            if let Some((k, old)) = legacy::occurrence(d.p, &report.occurrence, rule, |a| {
                taken(a, rule, problem, d.cfg)
            }) {
                legacy_key = Some(k);
                record = Some(old);
            }
        }
    }
    if let Some(rec) = &record {
        report.first_handled = rec.first_handled_ms.map(|at| FirstHandled {
            at: audit::rfc3339(at),
            delivery: rec.first_audit,
        });
    }
    Ok(Look {
        key: key.to_string(),
        seen,
        record,
        legacy_key,
        now,
    })
}

/// A resolve no rule matches any more: undo what is stored, as stored.
fn unmatched<'r>(
    d: &mut Delivery,
    mut look: Look,
    report: &mut ProblemReport,
) -> Result<Option<Claimed<'r>>, CellError> {
    match look.record.take() {
        Some(rec) if rec.busy(look.now, d.skew_ms()) => Ok(wait_or_in_progress(d)),
        Some(rec) if !matches!(rec.phase, Phase::Resolved | Phase::Skipped) => {
            report.rule = Some(rec.rule.clone());
            let claim = claim_for(d, &look, rec, Phase::Reverting)?;
            Ok(claim.map(|claim| Claimed::Revert { rule: None, claim }))
        }
        _ => Ok(Some(answer(
            ProblemOutcome::NoMatchingRule,
            "no matching rule".into(),
            Event::NoMatchingRule,
        ))),
    }
}

/// A problem `rule` matches: what [`plan::decide`] says, claimed.
fn matched<'r>(
    d: &mut Delivery,
    rule: &'r Rule,
    problem: &Problem,
    mut look: Look,
    occurrence: &str,
) -> Result<Option<Claimed<'r>>, CellError> {
    let history = if needs_history(rule) {
        read_history(d.p, &rule.name)?
    } else {
        RuleHistory::default()
    };
    let dry_run = d.dry_run || rule.policy.dry_run;
    let decision = plan::decide(
        rule,
        problem.status,
        look.record.as_ref(),
        &history,
        look.now,
        d.skew_ms(),
    );
    Ok(match decision {
        Decision::InProgress => wait_or_in_progress(d),
        Decision::AlreadyHandled { why } => {
            if let Some(rec) = look.record.take() {
                refresh(d, &look, rec)?;
            }
            Some(answer(
                ProblemOutcome::AlreadyHandled,
                why,
                Event::AlreadyHandled,
            ))
        }
        Decision::Skip { why, circuit_open } => Some(Claimed::Skipped {
            rule,
            why,
            circuit_open,
        }),
        Decision::Act { steps, why } if dry_run => Some(Claimed::WouldAct {
            rule,
            pending: look
                .record
                .iter()
                .flat_map(|r| &r.actions)
                .filter(|a| a.state == ActionState::Pending)
                .map(|a| a.taken.clone())
                .collect(),
            steps,
            why,
        }),
        Decision::MarkResolved { why } if dry_run => {
            Some(answer(ProblemOutcome::Ignored, why, Event::Skipped))
        }
        Decision::Revert if dry_run => Some(Claimed::WouldRevert {
            rule,
            actions: look.record.map(|r| r.actions).unwrap_or_default(),
        }),
        Decision::MarkResolved { why } => mark_resolved(d, rule, &look, occurrence, why)?,
        Decision::Act { steps, why } => {
            claim_to_act(d, rule, problem, look, occurrence, steps, why)?
        }
        Decision::Revert => {
            let Some(rec) = look.record.take() else {
                unreachable!("plan only reverts a recorded occurrence")
            };
            let claim = claim_for(d, &look, rec, Phase::Reverting)?;
            claim.map(|claim| Claimed::Revert {
                rule: Some(rule),
                claim,
            })
        }
    })
}

fn answer<'r>(outcome: ProblemOutcome, detail: String, event: Event) -> Claimed<'r> {
    Claimed::Answer {
        outcome,
        detail,
        event,
    }
}

/// Wait a moment for another delivery's lease (`None`: look again), or answer
/// "in progress" once this delivery may wait no longer.
fn wait_or_in_progress<'r>(d: &Delivery) -> Option<Claimed<'r>> {
    if d.wait() {
        return None;
    }
    Some(answer(
        ProblemOutcome::InProgress,
        "another delivery is acting on this occurrence; retry later".into(),
        Event::InProgress,
    ))
}

/// A resolve with nothing to undo: remembered as resolved, so that a late repeat of
/// its firing does not act.
fn mark_resolved<'r>(
    d: &mut Delivery,
    rule: &Rule,
    look: &Look,
    occurrence: &str,
    why: String,
) -> Result<Option<Claimed<'r>>, CellError> {
    let ticket = d.ticket();
    let marker = Occurrence::new(
        occurrence,
        &rule.name,
        Phase::Resolved,
        look.now.saturating_add(super::RETENTION_MS),
    );
    if !cell::swap(d.p, &look.key, &look.seen, ticket, &marker)? {
        return Ok(None);
    }
    Ok(Some(answer(ProblemOutcome::Ignored, why, Event::Skipped)))
}

/// Claim the occurrence to act: its record with the new `steps` pending, under a
/// lease; then, under a cooldown or breaker, the rule's admission.
fn claim_to_act<'r>(
    d: &mut Delivery,
    rule: &'r Rule,
    problem: &Problem,
    mut look: Look,
    occurrence: &str,
    steps: Vec<usize>,
    why: String,
) -> Result<Option<Claimed<'r>>, CellError> {
    let now = look.now;
    let record = look.record.take();
    let new_occurrence = record
        .as_ref()
        .is_none_or(|r| r.phase == Phase::Skipped || !r.admitted);
    let before = record.clone();
    let mut rec = match record {
        Some(r) if r.phase != Phase::Skipped => r,
        _ => Occurrence::new(occurrence, &rule.name, Phase::Acting, 0),
    };
    for &i in &steps {
        let action = &rule.actions[i];
        rec.actions.push(StoredAction {
            step: i,
            taken: taken(action, rule, problem, d.cfg),
            state: ActionState::Pending,
            revert: rule.reverts(action),
            at_ms: now,
            prior: None,
        });
    }
    let Some(mut claim) = claim_for(d, &look, rec, Phase::Acting)? else {
        return Ok(None);
    };
    if needs_history(rule) {
        // Put the record back as it was if nothing may be sent now.
        let back = match before {
            Some(b) if b.phase != Phase::Skipped => b,
            _ => Occurrence::new(
                occurrence,
                &rule.name,
                Phase::Skipped,
                now.saturating_add(super::RETENTION_MS),
            ),
        };
        if let Some(skipped) = admission(d, rule, &mut claim, back, new_occurrence)? {
            return Ok(Some(skipped));
        }
    }
    Ok(Some(Claimed::Act {
        rule,
        claim,
        steps,
        why,
    }))
}

/// The rule's admission for a claimed occurrence ([`admit`]): admitted, the record
/// says so; refused, the record is put back as it was (`back`) and the refusal is
/// the answer.
fn admission<'r>(
    d: &mut Delivery,
    rule: &'r Rule,
    claim: &mut Claim,
    back: Occurrence,
    new_occurrence: bool,
) -> Result<Option<Claimed<'r>>, CellError> {
    match admit(d, rule, new_occurrence) {
        Ok(Ok(())) => {
            claim.rec.admitted = true;
            cell::write_own(d.p, &claim.key, claim.ticket, &claim.rec)?;
            Ok(None)
        }
        Ok(Err(Decision::Skip { why, circuit_open })) => {
            cell::write_own(d.p, &claim.key, claim.ticket, &back)?;
            Ok(Some(Claimed::Skipped {
                rule,
                why,
                circuit_open,
            }))
        }
        Ok(Err(_)) => unreachable!("the gate only skips"),
        Err(e) => {
            let _ = cell::write_own(d.p, &claim.key, claim.ticket, &back);
            Err(e)
        }
    }
}

/// Publish `rec` in `phase` under a fresh lease, and drop the earlier version's
/// record it replaces. `None`: another delivery won.
fn claim_for(
    d: &mut Delivery,
    look: &Look,
    mut rec: Occurrence,
    phase: Phase,
) -> Result<Option<Claim>, CellError> {
    let ticket = d.ticket();
    rec.phase = phase;
    rec.lease = Some(d.lease(ticket));
    rec.expires_ms = d.p.now_ms().saturating_add(super::RETENTION_MS);
    if !cell::swap(d.p, &look.key, &look.seen, ticket, &rec)? {
        return Ok(None);
    }
    if let Some(k) = &look.legacy_key {
        let _ = d.p.kv_delete(k);
    }
    Ok(Some(Claim {
        key: look.key.clone(),
        rec,
        ticket,
    }))
}

/// A still-firing occurrence keeps its record alive (at most one write a day).
fn refresh(d: &mut Delivery, look: &Look, mut rec: Occurrence) -> Result<(), CellError> {
    let now = look.now;
    if rec.expires_ms.saturating_sub(now) >= super::REFRESH_MS || rec.busy(now, d.skew_ms()) {
        return Ok(());
    }
    rec.expires_ms = now.saturating_add(super::RETENTION_MS);
    let ticket = d.ticket();
    // Losing the race is fine: whoever won wrote a fresher record.
    cell::swap(d.p, &look.key, &look.seen, ticket, &rec)?;
    Ok(())
}

fn needs_history(rule: &Rule) -> bool {
    rule.policy.cooldown.is_some() || rule.policy.max_actions.is_some()
}

fn read_history(p: &dyn Platform, rule: &str) -> Result<RuleHistory, CellError> {
    let seen = cell::read::<RuleHistory>(p, &super::rule_key(rule))?;
    Ok(match (seen.value, seen.lock) {
        (Some(h), _) => h,
        (None, None) => legacy::rule_history(p, rule).unwrap_or_default(),
        (None, Some(_)) => RuleHistory::default(),
    })
}

/// Count this action against the rule's cooldown and breaker, exactly: the check
/// and the count are one swap, so concurrent occurrences cannot both pass.
fn admit(
    d: &mut Delivery,
    rule: &Rule,
    new_occurrence: bool,
) -> Result<Result<(), Decision>, CellError> {
    let key = super::rule_key(&rule.name);
    let now = d.p.now_ms();
    let keep_ms = [
        rule.policy.cooldown,
        rule.policy.max_actions.map(|(_, w)| w),
    ]
    .into_iter()
    .flatten()
    .map(|w| w.as_millis().min(i64::MAX as u128) as i64)
    .max()
    .unwrap_or(0);
    let legacy = match cell::read::<RuleHistory>(d.p, &key)?.lock {
        None => legacy::rule_history(d.p, &rule.name),
        Some(_) => None,
    };
    let (answer, _) = d.update_cell(&key, |h: Option<&RuleHistory>| {
        let mut h = h.cloned().or_else(|| legacy.clone()).unwrap_or_default();
        if let Some(gate) = plan::policy_gate(rule, &h, now, new_occurrence) {
            return Change::Keep(Err(gate));
        }
        h.record(
            now,
            keep_ms,
            now.saturating_add(keep_ms)
                .saturating_add(super::RETENTION_MS),
        );
        Change::Write(h, Ok(()))
    })?;
    Ok(answer)
}
