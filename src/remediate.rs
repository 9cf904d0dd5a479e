//! For one problem: find the rule, decide with what is remembered, claim, act or
//! undo, remember, and report. Decisions come from [`crate::plan`]; this module
//! only carries them out.

use std::time::Duration;

use crate::actions::scale::ScaleRequest;
use crate::actions::unleash::Toggle;
use crate::actions::ActionError;
use crate::audit::{self, Event};
use crate::config::{Config, Secret};
use crate::plan::{self, Decision};
use crate::platform::{KvError, Platform};
use crate::problem::Problem;
use crate::report::{
    ActionOutcome, ActionReport, ActionTarget, FirstHandled, ProblemOutcome, ProblemReport,
};
use crate::rules::{Action, Rule, RuleSet};
use crate::state::{self, Applied, OccurrenceRecord, Phase, RuleRecord};

/// How long a delivery waits for a concurrent one holding the claim, before
/// answering "in progress" (503) so that the sender retries.
const WAIT_FOR_CLAIM: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// One action, resolved against the configuration and the problem: exactly what
/// would be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Toggle(Toggle),
    Scale(ScaleRequest),
}

impl Step {
    pub fn resolve(
        action: &Action,
        rule: &Rule,
        problem: &Problem,
        cfg: &Config,
        index: usize,
    ) -> Step {
        match action {
            Action::Flag {
                flag,
                enabled,
                project,
                environment,
                ..
            } => Step::Toggle(Toggle {
                project: project
                    .clone()
                    .unwrap_or_else(|| cfg.unleash_project.clone()),
                flag: flag.clone(),
                environment: environment
                    .clone()
                    .unwrap_or_else(|| cfg.unleash_environment.clone()),
                enabled: *enabled,
            }),
            Action::Scale { change, .. } => Step::Scale(ScaleRequest::new(
                &rule.name,
                *change,
                problem,
                &state::hash(&[&problem.occurrence(), &rule.name, &index.to_string()]),
            )),
        }
    }

    pub fn target(&self) -> ActionTarget {
        match self {
            Step::Toggle(t) => ActionTarget::Flag {
                flag: t.flag.to_string(),
                project: t.project.to_string(),
                environment: t.environment.to_string(),
                enabled: t.enabled,
            },
            Step::Scale(s) => ActionTarget::Scale {
                value: s.value.clone(),
                service: s.service.clone(),
                namespace: s.namespace.clone(),
            },
        }
    }

    fn scale_url(cfg: &Config) -> String {
        format!("{}{}", cfg.scale_url, cfg.scale_path)
    }

    /// Send it and read the answer. A flag's current value is read first, so that
    /// a revert restores what was really there.
    fn execute(&self, out: &Outbound) -> Result<(String, Option<bool>), ActionError> {
        let cfg = out.cfg;
        match self {
            Step::Toggle(t) => {
                // Both calls are idempotent in Unleash: safe to retry.
                let previous = out.idempotent(|timeout| {
                    let req = t.read_request(&cfg.unleash_url, &cfg.unleash_token)?;
                    t.read_outcome(out.p.send(req, timeout), cfg)
                })?;
                let detail = out.idempotent(|timeout| {
                    let req = t.request(&cfg.unleash_url, &cfg.unleash_token)?;
                    t.outcome(out.p.send(req, timeout), cfg)
                })?;
                Ok((detail, Some(previous)))
            }
            // `+1` twice is +2: never retried here; the sender's retry and the
            // occurrence record decide.
            Step::Scale(s) => out.once(|timeout| {
                let req = s.request(&Self::scale_url(cfg), &cfg.scale_token)?;
                s.outcome(out.p.send(req, timeout), cfg).map(|d| (d, None))
            }),
        }
    }

    /// What would be sent, for dry-run reports (no credentials).
    pub fn describe(&self, cfg: &Config) -> String {
        let none = Secret::default();
        let req = match self {
            Step::Toggle(t) => t.request(&cfg.unleash_url, &none),
            Step::Scale(s) => s.request(&Self::scale_url(cfg), &none),
        };
        match req {
            Ok(req) => format!("would send {} {}", req.method(), req.uri()),
            Err(e) => format!("would fail: {}", e.message),
        }
    }
}

/// Outbound calls within one delivery's time budget (kept below the sender's own
/// webhook timeout), with bounded retries and backoff for idempotent calls.
pub struct Outbound<'a> {
    pub p: &'a dyn Platform,
    pub cfg: &'a Config,
    pub deadline_ms: i64,
}

const RETRY_BACKOFF_MS: [i64; 2] = [100, 400];

impl Outbound<'_> {
    fn remaining(&self) -> Option<Duration> {
        let left = self.deadline_ms - self.p.now_ms();
        (left > 0).then(|| Duration::from_millis(left as u64).min(self.cfg.outbound_timeout))
    }

    fn out_of_time() -> ActionError {
        ActionError {
            message: "the delivery's outbound time budget (outbound_budget_ms) is spent".into(),
            retryable: true,
        }
    }

    pub fn once<T>(
        &self,
        call: impl Fn(Duration) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        call(self.remaining().ok_or_else(Self::out_of_time)?)
    }

    pub fn idempotent<T>(
        &self,
        call: impl Fn(Duration) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        let mut result = self.once(&call);
        for backoff in RETRY_BACKOFF_MS {
            match &result {
                Err(e) if e.retryable => {}
                _ => break,
            }
            // Only wait if a retry would still have time to run.
            if self.deadline_ms - self.p.now_ms() <= backoff + 50 {
                break;
            }
            self.p.sleep(Duration::from_millis(backoff as u64));
            result = self.once(&call);
        }
        result
    }
}

/// Audit entries stay small whatever the input (Spin values are limited to 1 MB).
fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Everything one delivery shares across its problems.
pub struct Delivery<'a> {
    pub p: &'a dyn Platform,
    pub cfg: &'a Config,
    pub rules: &'a RuleSet,
    pub dry_run: bool,
    /// This delivery's audit batch id.
    pub id: i64,
    /// When outbound calls must stop (now + outbound_budget_ms at arrival).
    pub deadline_ms: i64,
    pub audit: Vec<audit::Entry>,
}

impl Delivery<'_> {
    fn outbound(&self) -> Outbound<'_> {
        Outbound {
            p: self.p,
            cfg: self.cfg,
            deadline_ms: self.deadline_ms,
        }
    }

    fn note(
        &mut self,
        report: &ProblemReport,
        event: Event,
        action: Option<ActionTarget>,
        detail: Option<String>,
        dry_run: bool,
    ) {
        let at_ms = self.p.now_ms();
        self.audit.push(audit::Entry {
            delivery: self.id,
            at: audit::rfc3339(at_ms),
            at_ms,
            event,
            occurrence: clip(&report.occurrence, 300),
            title: clip(&report.title, 200),
            rule: report.rule.clone(),
            action,
            detail: detail.map(|d| clip(&self.cfg.redact(&d), 1000)),
            dry_run,
        });
    }

    fn finish(
        &mut self,
        mut report: ProblemReport,
        outcome: ProblemOutcome,
        detail: String,
        event: Event,
    ) -> ProblemReport {
        report.outcome = outcome;
        self.note(
            &report,
            event,
            None,
            Some(detail.clone()),
            report.outcome == ProblemOutcome::DryRun,
        );
        report.detail = Some(detail);
        report
    }

    fn action(
        &mut self,
        report: &mut ProblemReport,
        target: ActionTarget,
        result: Result<String, ActionError>,
        event_ok: Event,
    ) {
        let entry = match result {
            Ok(detail) => {
                let detail = self.cfg.redact(&detail);
                self.note(
                    report,
                    event_ok,
                    Some(target.clone()),
                    Some(detail.clone()),
                    false,
                );
                ActionReport {
                    target,
                    outcome: if event_ok == Event::RevertSkipped {
                        ActionOutcome::Skipped
                    } else {
                        ActionOutcome::Done
                    },
                    detail: Some(detail),
                    error: None,
                    retryable: None,
                }
            }
            Err(e) => {
                let message = self.cfg.redact(&e.message);
                self.note(
                    report,
                    Event::Failed,
                    Some(target.clone()),
                    Some(message.clone()),
                    false,
                );
                ActionReport {
                    target,
                    outcome: ActionOutcome::Failed,
                    detail: None,
                    error: Some(message),
                    retryable: Some(e.retryable),
                }
            }
        };
        report.actions.push(entry);
    }
}

pub fn remediate(d: &mut Delivery, problem: &Problem) -> ProblemReport {
    let mut report = ProblemReport {
        title: problem.title.clone(),
        status: problem.status,
        source: problem.source,
        occurrence: problem.occurrence(),
        rule: None,
        outcome: ProblemOutcome::NoMatchingRule,
        detail: None,
        first_handled: None,
        actions: vec![],
    };
    d.note(&report, Event::Received, None, None, false);
    let rules = d.rules;
    let Some(rule) = rules.find(problem) else {
        return d.finish(
            report,
            ProblemOutcome::NoMatchingRule,
            "no matching rule".into(),
            Event::NoMatchingRule,
        );
    };
    report.rule = Some(rule.name.clone());
    d.note(&report, Event::Matched, None, None, false);
    match decide_and_claim(d, rule, problem, report.clone()) {
        Ok(report) => report,
        Err(e) => d.finish(
            report,
            ProblemOutcome::Error,
            format!("state unavailable, nothing done: {e}"),
            Event::Error,
        ),
    }
}

fn decide_and_claim(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
) -> Result<ProblemReport, KvError> {
    let dry_run = d.dry_run || rule.policy.dry_run;
    let key = state::occurrence_key(&report.occurrence, &rule.name);
    let started = d.p.now_ms();
    // This delivery's ticket in the creation election (taken at most once).
    let mut ticket: Option<i64> = None;
    loop {
        let now = d.p.now_ms();
        let waited = now - started;
        let seen = state::read::<OccurrenceRecord>(d.p, &key)?;
        let history = state::read::<RuleRecord>(d.p, &state::rule_key(&rule.name))?
            .value
            .unwrap_or_default();
        let decision = plan::decide(rule, problem.status, seen.value.as_ref(), &history, now);
        if let Some(rec) = &seen.value {
            report.first_handled = rec.first_handled_ms.map(|at| FirstHandled {
                at: audit::rfc3339(at),
                delivery: rec.first_audit,
            });
        }
        match decision {
            Decision::InProgress if now - started < WAIT_FOR_CLAIM.as_millis() as i64 => {
                d.p.sleep(POLL);
                continue;
            }
            Decision::InProgress => {
                return Ok(d.finish(
                    report,
                    ProblemOutcome::InProgress,
                    "another delivery is acting on this occurrence; retry later".into(),
                    Event::InProgress,
                ))
            }
            Decision::Ignore { why } => {
                return Ok(d.finish(report, ProblemOutcome::Ignored, why, Event::Skipped))
            }
            Decision::AlreadyHandled { why } => {
                return Ok(d.finish(
                    report,
                    ProblemOutcome::AlreadyHandled,
                    why,
                    Event::AlreadyHandled,
                ))
            }
            Decision::Skip { why, circuit_open } => {
                let (outcome, event) = if circuit_open {
                    d.p.log(&format!("remediator: WARNING {why}"));
                    (ProblemOutcome::CircuitOpen, Event::CircuitOpen)
                } else {
                    (ProblemOutcome::Skipped, Event::Skipped)
                };
                return Ok(d.finish(report, outcome, why, event));
            }
            Decision::Act { indices, why } if dry_run => {
                for i in indices {
                    let step = Step::resolve(&rule.actions[i], rule, problem, d.cfg, i);
                    report
                        .actions
                        .push(dry_run_report(step.target(), step.describe(d.cfg)));
                }
                return Ok(d.finish(
                    report,
                    ProblemOutcome::DryRun,
                    format!("dry run: {why}"),
                    Event::DryRun,
                ));
            }
            Decision::Revert { applied } if dry_run => {
                for a in &applied {
                    let action = &rule.actions[a.index];
                    let step = Step::resolve(action, rule, problem, d.cfg, a.index);
                    let undo = match (action, step) {
                        (_, Step::Toggle(set)) => Some((
                            Step::Toggle(Toggle {
                                enabled: !set.enabled,
                                ..set
                            }),
                            " unless the flag was changed by hand or was already so",
                        )),
                        (
                            Action::Scale {
                                change, on_resolve, ..
                            },
                            Step::Scale(_),
                        ) => on_resolve.or_else(|| change.inverse()).map(|back| {
                            (
                                Step::Scale(ScaleRequest::new(
                                    &rule.name,
                                    back,
                                    problem,
                                    &state::hash(&[
                                        &problem.occurrence(),
                                        &rule.name,
                                        &a.index.to_string(),
                                        "revert",
                                    ]),
                                )),
                                "",
                            )
                        }),
                        _ => None,
                    };
                    if let Some((step, caveat)) = undo {
                        let detail = format!("{}{caveat}", step.describe(d.cfg));
                        report.actions.push(dry_run_report(step.target(), detail));
                    }
                }
                return Ok(d.finish(
                    report,
                    ProblemOutcome::DryRun,
                    "dry run: resolved".into(),
                    Event::DryRun,
                ));
            }
            Decision::Act { indices, why } if seen.value.is_none() => {
                // A new occurrence. Spin's SQLite store turns a compare-and-swap from
                // "absent" into an upsert that always succeeds, so the record's creator
                // is elected with an atomic increment instead: ticket 1 creates it.
                let n = match ticket {
                    Some(n) => n,
                    None => *ticket.insert(d.p.kv_increment(&state::claim_key(&key), 1)?),
                };
                let wait_over = waited >= WAIT_FOR_CLAIM.as_millis() as i64;
                let elected = n == 1 || (wait_over && n % state::TAKEOVER_EVERY == 1);
                if !elected {
                    if wait_over {
                        return Ok(d.finish(
                            report,
                            ProblemOutcome::InProgress,
                            "another delivery is creating this occurrence's record; retry later"
                                .into(),
                            Event::InProgress,
                        ));
                    }
                    d.p.sleep(POLL);
                    continue; // The creator writes the record within moments.
                }
                let mut rec = OccurrenceRecord::new(&report.occurrence, &rule.name, now);
                rec.claimed_by = Some(d.id);
                state::write(d.p, &key, &rec)?;
                return Ok(act(d, rule, problem, report, rec, &key, &indices, why));
            }
            Decision::Act { indices, why } => {
                // The record exists: compare-and-swap on a present value, then
                // read it back (see `state::claim`).
                let mut rec = seen.value.clone().expect("guarded above");
                rec.phase = Phase::Claimed;
                rec.since_ms = now;
                rec.claimed_by = Some(d.id);
                if !state::claim(d.p, &key, &seen, &rec)? {
                    continue; // Lost the race: see what the winner is doing.
                }
                return Ok(act(d, rule, problem, report, rec, &key, &indices, why));
            }
            Decision::Revert { applied } => {
                let Some(mut rec) = seen.value.clone() else {
                    unreachable!("plan only reverts a recorded occurrence")
                };
                let previous_phase = rec.phase;
                rec.phase = Phase::Reverting;
                rec.since_ms = now;
                rec.claimed_by = Some(d.id);
                if !state::claim(d.p, &key, &seen, &rec)? {
                    continue;
                }
                return Ok(revert(
                    d,
                    rule,
                    problem,
                    report,
                    rec,
                    &key,
                    &applied,
                    previous_phase,
                ));
            }
        }
    }
}

fn dry_run_report(target: ActionTarget, detail: String) -> ActionReport {
    ActionReport {
        target,
        outcome: ActionOutcome::DryRun,
        detail: Some(detail),
        error: None,
        retryable: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn act(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
    mut rec: OccurrenceRecord,
    key: &str,
    indices: &[usize],
    why: String,
) -> ProblemReport {
    let mut failed = false;
    let mut done = false;
    for &i in indices {
        let step = Step::resolve(&rule.actions[i], rule, problem, d.cfg, i);
        let result = step.execute(&d.outbound());
        if let Ok((_, previous_enabled)) = &result {
            rec.applied.push(Applied {
                index: i,
                at_ms: d.p.now_ms(),
                previous_enabled: *previous_enabled,
                reverted: false,
            });
            done = true;
        } else {
            failed = true;
        }
        d.action(
            &mut report,
            step.target(),
            result.map(|(detail, _)| detail),
            Event::Acted,
        );
    }
    let now = d.p.now_ms();
    rec.since_ms = now;
    if failed {
        rec.phase = Phase::Failed;
    } else {
        rec.phase = Phase::Done;
        rec.last_step_ms = Some(now);
        rec.first_handled_ms.get_or_insert(now);
        rec.first_audit.get_or_insert(d.id);
        if rule.policy.escalate_after.is_some() {
            rec.next_step = indices.last().map_or(rec.next_step, |i| i + 1);
        }
    }
    let mut detail = why;
    if let Err(e) = state::write(d.p, key, &rec) {
        // The action happened; only its record is missing. After the claim lease a
        // repeat may act again: say so rather than hide it.
        detail = format!("{detail}; WARNING: result not recorded ({e}), a repeat may act again");
    }
    if done {
        if let Err(e) = state::record_rule_action(d.p, &rule.name, now) {
            detail = format!("{detail}; WARNING: cooldown/breaker history not updated ({e})");
        }
    }
    let outcome = if failed {
        ProblemOutcome::Failed
    } else {
        ProblemOutcome::Acted
    };
    report.outcome = outcome;
    report.detail = Some(detail);
    report
}

#[allow(clippy::too_many_arguments)]
fn revert(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
    mut rec: OccurrenceRecord,
    key: &str,
    applied: &[Applied],
    previous_phase: Phase,
) -> ProblemReport {
    let mut failed = false;
    let mut undone = 0;
    for a in applied.iter().rev() {
        let action = &rule.actions[a.index];
        let revert_key = state::hash(&[
            &problem.occurrence(),
            &rule.name,
            &a.index.to_string(),
            "revert",
        ]);
        let step = Step::resolve(action, rule, problem, d.cfg, a.index);
        let (target, result, event) = match (action, step) {
            (Action::Flag { .. }, Step::Toggle(set)) => {
                let undo = Toggle {
                    enabled: !set.enabled,
                    ..set.clone()
                };
                let (result, event) = undo_flag(d, &set, &undo, a.previous_enabled);
                (Step::Toggle(undo).target(), result, event)
            }
            (
                Action::Scale {
                    change, on_resolve, ..
                },
                Step::Scale(_),
            ) => match on_resolve.or_else(|| change.inverse()) {
                Some(back) => {
                    let s = ScaleRequest::new(&rule.name, back, problem, &revert_key);
                    let result = d.outbound().once(|timeout| {
                        let req = s.request(&Step::scale_url(d.cfg), &d.cfg.scale_token)?;
                        s.outcome(d.p.send(req, timeout), d.cfg)
                    });
                    (Step::Scale(s).target(), result, Event::Reverted)
                }
                None => {
                    let s = ScaleRequest::new(&rule.name, *change, problem, &revert_key);
                    (
                        Step::Scale(s).target(),
                        Ok("no inverse for =N and no on_resolve".into()),
                        Event::RevertSkipped,
                    )
                }
            },
            _ => unreachable!("a step resolves to its action's kind"),
        };
        match &result {
            Ok(_) => {
                if let Some(rec_a) = rec.applied.iter_mut().find(|x| x.index == a.index) {
                    rec_a.reverted = true;
                }
                if event == Event::Reverted {
                    undone += 1;
                }
            }
            Err(e) => failed |= e.retryable,
        }
        d.action(&mut report, target, result, event);
    }
    rec.since_ms = d.p.now_ms();
    // A retryable failure keeps the occurrence open, so the sender's retry undoes the rest.
    rec.phase = if failed {
        previous_phase
    } else {
        Phase::Resolved
    };
    let mut detail = if applied.is_empty() {
        "resolved: nothing to undo (revert is off for what was done)".to_string()
    } else {
        format!("resolved: undid {undone} of {} actions", applied.len())
    };
    if let Err(e) = state::write(d.p, key, &rec) {
        detail = format!("{detail}; WARNING: result not recorded ({e})");
    }
    report.outcome = if report
        .actions
        .iter()
        .any(|a| a.outcome == ActionOutcome::Failed)
    {
        ProblemOutcome::Failed
    } else if undone > 0 {
        ProblemOutcome::Reverted
    } else {
        ProblemOutcome::Ignored
    };
    d.note(&report, Event::Matched, None, Some(detail.clone()), false);
    report.detail = Some(detail);
    report
}

/// Restore a flag to what it was before remediator acted, unless that is already
/// so, or someone has changed it since (never fight a human).
fn undo_flag(
    d: &Delivery,
    set: &Toggle,
    undo: &Toggle,
    previous: Option<bool>,
) -> (Result<String, ActionError>, Event) {
    let word = |b: bool| if b { "on" } else { "off" };
    if previous == Some(set.enabled) {
        return (
            Ok(format!(
                "flag {:?} was already {} before remediator acted; nothing to undo",
                set.flag.as_str(),
                word(set.enabled)
            )),
            Event::RevertSkipped,
        );
    }
    let out = d.outbound();
    let current = out.idempotent(|timeout| {
        let read = set.read_request(&d.cfg.unleash_url, &d.cfg.unleash_token)?;
        set.read_outcome(d.p.send(read, timeout), d.cfg)
    });
    match current {
        Err(e) => (Err(e), Event::Failed),
        Ok(now) if now != set.enabled => (
            Ok(format!(
                "flag {:?} was changed by hand since remediator turned it {} (it is {} now); leaving it",
                set.flag.as_str(),
                word(set.enabled),
                word(now)
            )),
            Event::RevertSkipped,
        ),
        Ok(_) => {
            let result = out.idempotent(|timeout| {
                let req = undo.request(&d.cfg.unleash_url, &d.cfg.unleash_token)?;
                undo.outcome(d.p.send(req, timeout), d.cfg)
            });
            (result, Event::Reverted)
        }
    }
}
