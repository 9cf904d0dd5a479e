//! For one problem: find the rule, let the claim decide and claim
//! ([`crate::claim::decision`]), act or undo ([`crate::actions`]), and report, within
//! the [`Delivery`] its problems share.

use std::borrow::Cow;

use crate::actions::{act, notify, undo};
use crate::audit::Event;
use crate::claim::cell::CellError;
use crate::claim::decision::{self, Claimed};
use crate::delivery::Delivery;
use crate::notify::NotifyEvent;
use crate::problem::Problem;
use crate::report::{ActionOutcome, ProblemOutcome, ProblemReport};
use crate::rules::Rule;

fn new_report(problem: &Problem) -> ProblemReport {
    ProblemReport {
        title: problem.title.clone(),
        status: problem.status,
        source: problem.source,
        occurrence: problem.occurrence(),
        rule: None,
        outcome: ProblemOutcome::NoMatchingRule,
        detail: None,
        first_handled: None,
        links: problem.links.clone(),
        summary: problem.summary.clone(),
        actions: vec![],
        notifications: vec![],
    }
}

/// `found`: the problem's rule, as `Rules::find` answered (looked up before the
/// delivery starts, which then knows whether it needs the whole configuration).
pub fn remediate(
    d: &mut Delivery,
    problem: &Problem,
    found: Result<Option<Cow<'_, Rule>>, String>,
) -> ProblemReport {
    let mut report = new_report(problem);
    d.note(&report, Event::Received, None, None, false);
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            return d.finish(
                report,
                ProblemOutcome::Error,
                format!("rules unavailable, nothing done: {e}"),
                Event::Error,
            )
        }
    };
    let rule = found.as_deref();
    if let Some(rule) = rule {
        report.rule = Some(rule.name.clone());
        d.note(&report, Event::Matched, None, None, false);
    } else if problem.status != crate::problem::Status::Resolved {
        return d.finish(
            report,
            ProblemOutcome::NoMatchingRule,
            "no matching rule".into(),
            Event::NoMatchingRule,
        );
    }
    let mut claimed = report.clone();
    match decision::claim(d, rule, problem, &mut claimed) {
        Ok(next) => carry_out(d, problem, claimed, next),
        Err(CellError::Unreadable(e)) => d.finish(
            report,
            ProblemOutcome::Failed,
            format!("state record unreadable, nothing done (a retry cannot help): {e}"),
            Event::Error,
        ),
        Err(CellError::Kv(e)) => d.finish(
            report,
            ProblemOutcome::Error,
            format!("state unavailable, nothing done: {e}"),
            Event::Error,
        ),
    }
}

/// Act, undo or answer as the claim decided, then tell the rule's notify channels.
fn carry_out(
    d: &mut Delivery,
    problem: &Problem,
    report: ProblemReport,
    next: Claimed,
) -> ProblemReport {
    match next {
        Claimed::Answer {
            outcome,
            detail,
            event,
        } => d.finish(report, outcome, detail, event),
        Claimed::Skipped {
            rule,
            why,
            circuit_open,
        } => skipped(d, rule, problem, report, why, circuit_open),
        Claimed::WouldAct {
            rule,
            pending,
            steps,
            why,
        } => {
            let mut report = act::dry_run(d, rule, problem, report, pending, &steps, why);
            notify::run(d, rule, problem, &mut report, NotifyEvent::Act, true);
            report
        }
        Claimed::WouldRevert { rule, actions } => {
            let mut report = undo::dry_run(d, report, &actions);
            notify::run(d, rule, problem, &mut report, NotifyEvent::Revert, true);
            report
        }
        Claimed::Act {
            rule,
            claim,
            steps,
            why,
        } => {
            let mut report = act::act(d, rule, problem, report, claim, &steps, why);
            // Held back by the budget: say so (once per budget window), and say
            // what was done if part of it was.
            let exhausted = report.outcome == ProblemOutcome::BudgetExhausted;
            let some_done = report
                .actions
                .iter()
                .any(|a| a.outcome == ActionOutcome::Done);
            if !exhausted || some_done {
                notify::run(d, rule, problem, &mut report, NotifyEvent::Act, false);
            }
            if exhausted {
                let event = NotifyEvent::BudgetExhausted;
                notify::run(d, rule, problem, &mut report, event, false);
            }
            report
        }
        Claimed::Revert { rule, claim } => {
            let mut report = undo::revert(d, problem, report, claim);
            // (No rule matches any more: no rule to tell.)
            if let Some(rule) = rule {
                notify::run(d, rule, problem, &mut report, NotifyEvent::Revert, false);
            }
            report
        }
    }
}

fn skipped(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    report: ProblemReport,
    why: String,
    circuit_open: bool,
) -> ProblemReport {
    let (outcome, event) = if circuit_open {
        d.p.log(&format!("remediator: WARNING {why}"));
        (ProblemOutcome::CircuitOpen, Event::CircuitOpen)
    } else {
        (ProblemOutcome::Skipped, Event::Skipped)
    };
    let mut report = d.finish(report, outcome, why, event);
    if circuit_open {
        let dry_run = d.dry_run || rule.policy.dry_run;
        notify::run(
            d,
            rule,
            problem,
            &mut report,
            NotifyEvent::CircuitOpen,
            dry_run,
        );
    }
    report
}
