//! Carrying out a claimed occurrence's pending actions: each counted against the
//! blast-radius budget, sent, and its result recorded before anything more is sent
//! (the last with the delivery's closing writes); or, in a dry run, described.

use super::budget::{self, Admitted};
use super::flags::{self, Lever};
use super::scaling::{self, scale_url};
use super::{taken, target, ActionError};
use crate::audit::Event;
use crate::claim::cell;
use crate::claim::decision::Claim;
use crate::claim::{ActionState, Bucket, Occurrence, Phase, Setting, StoredAction, Taken};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::problem::Problem;
use crate::report::{ActionOutcome, ActionReport, ActionTarget, ProblemOutcome, ProblemReport};
use crate::rules::Rule;

/// Follows the warning when a result was not recorded: what was sent is recorded
/// as pending at worst, and a retry resends it (flags are idempotent; scale calls
/// carry their idempotency key).
const RESENDS: &str = "; a retry resends what is pending";

/// What sending one action came to.
pub enum Sent {
    /// Sent (or not needed), with its result and read-back.
    Sent(Result<String, ActionError>, Option<bool>),
    /// The blast-radius budget held it back: nothing was sent.
    Exhausted(String),
}

/// Send the claimed occurrence's pending actions (`steps`: the steps this delivery
/// added), record each result, and close the claim.
pub fn act(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
    claim: Claim,
    steps: &[usize],
    why: String,
) -> ProblemReport {
    let (key, mut rec, ticket) = (claim.key.as_str(), claim.rec, claim.ticket);
    let mut failed = false;
    let mut exhausted: Option<String> = None;
    let mut write_error = None;
    let verify = rule.policy.verify.unwrap_or(d.cfg.unleash_verify);
    // A result (applied, refused) not written yet.
    let mut unrecorded = false;
    for i in 0..rec.actions.len() {
        if rec.actions[i].state != ActionState::Pending {
            continue;
        }
        let a = rec.actions[i].clone();
        if unrecorded {
            // Record the results so far before anything more is sent: a crash after
            // this cannot make them be sent again. (The last result needs no write of
            // its own: a crash before the closing write leaves it pending either way.)
            if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
                write_error = Some(e);
            }
            unrecorded = false;
        }
        let (result, verified) = match send(d, key, &rec, problem, &a, verify) {
            Sent::Sent(result, verified) => (result, verified),
            Sent::Exhausted(why) => {
                // Nothing sent, nothing recorded: the action stays pending, and the
                // next delivery of this occurrence sends it once the window allows.
                d.p.log(&format!("remediator: WARNING {why}"));
                d.action(
                    &mut report,
                    target(&a.taken),
                    Ok(why.clone()),
                    Event::BudgetExhausted,
                );
                exhausted.get_or_insert(why);
                continue;
            }
        };
        match &result {
            Ok(_) => rec.actions[i].state = ActionState::Applied,
            Err(e) if !e.retryable => rec.actions[i].state = ActionState::Refused,
            Err(_) => failed = true,
        }
        unrecorded |= rec.actions[i].state != ActionState::Pending;
        rec.actions[i].at_ms = d.p.now_ms();
        d.action(&mut report, target(&a.taken), result, Event::Acted);
        if let Some(entry) = report.actions.last_mut() {
            entry.verified = verified;
        }
    }
    let now = d.p.now_ms();
    rec.lease = None;
    if failed || exhausted.is_some() {
        // What the budget held back is retried like a failure, without a 5xx.
        rec.phase = Phase::Failed;
    } else {
        done(&mut rec, rule, steps, now, d.id);
    }
    let mut detail = match &exhausted {
        Some(e) => format!("{e}; {why}"),
        None => why,
    };
    // Written with the delivery's other closing writes, in one transaction.
    if let Err(e) = d.close_own(key, ticket, &rec, RESENDS) {
        write_error = Some(e);
    }
    if let Some(e) = write_error {
        detail = format!("{detail}; WARNING: result not recorded ({e}){RESENDS}");
    }
    report.outcome = if any_failed(&report) {
        ProblemOutcome::Failed
    } else if exhausted.is_some() {
        ProblemOutcome::BudgetExhausted
    } else {
        ProblemOutcome::Acted
    };
    report.detail = Some(detail);
    report
}

/// Send one pending action of the occurrence `okey`, once the blast-radius budget
/// admits it.
fn send(
    d: &mut Delivery,
    okey: &str,
    rec: &Occurrence,
    problem: &Problem,
    a: &StoredAction,
    verify: bool,
) -> Sent {
    let id = budget::change_id(okey, a);
    match &a.taken {
        Taken::Flag { .. } | Taken::Rollout { .. } => {
            flags::hold_and_set(d, okey, &a.taken, verify, id)
        }
        Taken::Scale { value, .. } => match budget::admit(d, &Bucket::Scaling, id) {
            Admitted::Yes => Sent::Sent(scaling::send(d, rec, problem, a.step, value, "act"), None),
            Admitted::Exhausted(why) => Sent::Exhausted(why),
            Admitted::Error(e) => Sent::Sent(Err(e), None),
        },
    }
}

/// Every action went out: the occurrence is handled, and a ladder moves on.
fn done(rec: &mut Occurrence, rule: &Rule, steps: &[usize], now: i64, delivery: i64) {
    rec.phase = Phase::Done;
    if !steps.is_empty() {
        rec.last_step_ms = Some(now);
    }
    rec.first_handled_ms.get_or_insert(now);
    rec.first_audit.get_or_insert(delivery);
    if rule.policy.escalate_after.is_some() {
        // Past every step taken, also one a retry completed (a failure, or the
        // budget held it back): the next repeat runs the next step, not that one.
        let past = rec.actions.iter().map(|a| a.step + 1).max().unwrap_or(0);
        if past > rec.next_step {
            rec.next_step = past;
            rec.last_step_ms = Some(now);
        }
    }
}

/// Whether any action in the report failed.
pub(crate) fn any_failed(report: &ProblemReport) -> bool {
    report
        .actions
        .iter()
        .any(|a| a.outcome == ActionOutcome::Failed)
}

/// A dry run of acting: what would be sent for the occurrence's `pending` actions
/// and for `steps` of `rule`; nothing is sent or recorded.
pub fn dry_run(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
    pending: Vec<Taken>,
    steps: &[usize],
    why: String,
) -> ProblemReport {
    let mut targets = pending;
    targets.extend(
        steps
            .iter()
            .map(|&i| taken(&rule.actions[i], rule, problem, d.cfg)),
    );
    for t in targets {
        let detail = describe(&t, None, d.cfg);
        report.actions.push(dry_run_report(target(&t), detail));
    }
    d.finish(
        report,
        ProblemOutcome::DryRun,
        format!("dry run: {why}"),
        Event::DryRun,
    )
}

/// What would be sent for `t` (set to `to` instead, if given), for dry-run reports.
pub(crate) fn describe(t: &Taken, to: Option<Setting>, cfg: &Config) -> String {
    match t {
        Taken::Flag { .. } | Taken::Rollout { .. } => {
            match Lever::of(t).and_then(|l| to.map_or(Ok(l.clone()), |to| l.set_to(to))) {
                Ok(lever) => lever.describe(cfg),
                Err(e) => e.message,
            }
        }
        Taken::Scale { .. } => format!("would send POST {}", scale_url(cfg)),
    }
}

pub(crate) fn dry_run_report(target: ActionTarget, detail: String) -> ActionReport {
    ActionReport {
        target,
        outcome: ActionOutcome::DryRun,
        detail: Some(detail),
        error: None,
        retryable: None,
        verified: None,
    }
}
