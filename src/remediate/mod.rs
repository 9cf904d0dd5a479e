//! For one problem: find the rule, decide with what is remembered, claim, act or
//! undo, remember, and report. Decisions come from [`crate::plan`]; this module
//! only carries them out.

use std::time::Duration;

mod flags;
mod notify;

use crate::actions::scale::ScaleRequest;
use crate::actions::ActionError;
use crate::audit::{self, Event};
use crate::claim::cell::{self, CellError, Change};
use crate::claim::{
    self, legacy, ActionState, Bucket, Lease, Occurrence, Phase, RuleHistory, Setting,
    StoredAction, Taken,
};
use crate::config::{clip, Config};
use crate::notify::NotifyEvent;
use crate::plan::{self, Decision};
use crate::platform::Platform;
use crate::problem::Problem;
use crate::report::{
    ActionOutcome, ActionReport, ActionTarget, FirstHandled, ProblemOutcome, ProblemReport,
};
use crate::rules::{Action, Rule, ScaleChange, UnleashName};
use flags::Lever;

/// How long one delivery (all its alerts together) waits for concurrent ones
/// holding a lease, before answering "in progress" (503) so that the sender retries.
pub const WAIT_FOR_CLAIM: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// Where scale calls go.
pub fn scale_url(cfg: &Config) -> String {
    format!("{}{}", cfg.scale_url, cfg.scale_path)
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

/// Everything one delivery shares across its problems.
pub struct Delivery<'a> {
    pub p: &'a dyn Platform,
    pub cfg: &'a Config,
    pub rules: &'a crate::rules_source::Rules,
    pub dry_run: bool,
    /// This delivery's audit batch id, unique per delivery: cell tickets derive from it.
    pub id: i64,
    /// When outbound calls must stop (now + outbound_budget_ms at arrival).
    pub deadline_ms: i64,
    /// When waiting for other deliveries' leases stops (shared by all alerts).
    pub wait_until_ms: i64,
    pub audit: Vec<audit::Entry>,
    /// Cell updates made so far (tickets are `id * TICKETS_PER_DELIVERY + seq`).
    pub seq: i64,
    /// Flag settings this delivery has set and Unleash confirmed: (target key, value,
    /// the occurrence it was set for). The next alert of the same delivery that joins
    /// the holders of the same setting while that occurrence still holds it (so it was
    /// never restored in between) does not send it again: a group of 200 alerts of one
    /// failing service makes one change.
    pub flags_set: Vec<(String, Setting, String)>,
    /// Why the sender sent this delivery (Alertmanager 0.32+), for the audit.
    pub notification_reason: Option<String>,
}

/// Room for every cell update of one delivery (at most a few per alert).
pub const TICKETS_PER_DELIVERY: i64 = 4096;

/// The `seq`-th cell ticket of delivery `id`.
fn ticket(id: i64, seq: i64) -> i64 {
    id.saturating_mul(TICKETS_PER_DELIVERY)
        .saturating_add(seq % TICKETS_PER_DELIVERY)
}

impl Delivery<'_> {
    fn outbound(&self) -> Outbound<'_> {
        Outbound {
            p: self.p,
            cfg: self.cfg,
            deadline_ms: self.deadline_ms,
        }
    }

    /// The blast-radius budget in force: the rules file's, else the variable's.
    pub(super) fn budget(&self) -> Option<(u32, Duration)> {
        self.rules.max_changes().or(self.cfg.max_changes)
    }

    /// A ticket no one has used on any cell.
    fn ticket(&mut self) -> i64 {
        self.seq += 1;
        ticket(self.id, self.seq)
    }

    /// [`cell::update`] with this delivery's tickets.
    fn update_cell<T, R>(
        &mut self,
        key: &str,
        mut f: impl FnMut(Option<&T>) -> Change<T, R>,
    ) -> Result<(R, bool), CellError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let (p, id) = (self.p, self.id);
        let seq = &mut self.seq;
        cell::update(
            p,
            key,
            &mut || {
                *seq += 1;
                ticket(id, *seq)
            },
            &mut f,
        )
    }

    fn skew_ms(&self) -> i64 {
        self.cfg.max_clock_skew.as_millis().min(i64::MAX as u128) as i64
    }

    /// A lease covers the whole outbound budget from now, and the writes after it.
    fn lease(&self, ticket: i64) -> Lease {
        let budget = self.cfg.outbound_budget.as_millis().min(i64::MAX as u128) as i64;
        Lease {
            ticket,
            until_ms: self
                .p
                .now_ms()
                .saturating_add(budget)
                .saturating_add(claim::LEASE_MARGIN_MS),
        }
    }

    /// Wait a moment for another delivery's lease, if this delivery still may.
    fn wait(&self) -> bool {
        if self.p.now_ms() >= self.wait_until_ms {
            return false;
        }
        self.p.sleep(POLL);
        true
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
        let cfg = self.cfg;
        // Bookkeeping entries leave the links and summary to the decision that follows.
        let decision = !matches!(event, Event::Received | Event::Matched);
        self.audit.push(audit::Entry {
            delivery: self.id,
            at: audit::rfc3339(at_ms),
            at_ms,
            event,
            occurrence: clip(&report.occurrence, 300),
            title: clip(&report.title, 200),
            rule: report.rule.clone(),
            action,
            // Redact before clipping: a clipped secret could no longer be found.
            detail: detail.map(|d| clip(&cfg.redact(&d), 1000)),
            dry_run,
            notification_reason: self.notification_reason.clone(),
            status: Some(report.status),
            summary: report
                .summary
                .as_deref()
                .filter(|_| decision)
                .map(|s| clip(&cfg.redact(s), 300)),
            links: if decision {
                report.links.clone()
            } else {
                Default::default()
            },
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
        report.detail = Some(self.cfg.redact(&detail));
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
                    outcome: if matches!(event_ok, Event::RevertSkipped | Event::BudgetExhausted) {
                        ActionOutcome::Skipped
                    } else {
                        ActionOutcome::Done
                    },
                    detail: Some(detail),
                    error: None,
                    retryable: None,
                    verified: None,
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
                    verified: None,
                }
            }
        };
        report.actions.push(entry);
    }
}

/// What an action is, as it will be stored and undone: the configured project and
/// environment filled in, the scale request's value and labels resolved.
pub fn taken(action: &Action, rule: &Rule, problem: &Problem, cfg: &Config) -> Taken {
    let project = |p: &Option<UnleashName>| p.as_ref().unwrap_or(&cfg.unleash_project).to_string();
    let environment =
        |e: &Option<UnleashName>| e.as_ref().unwrap_or(&cfg.unleash_environment).to_string();
    match action {
        Action::Flag {
            flag,
            enabled,
            project: p,
            environment: e,
            ..
        } => Taken::Flag {
            flag: flag.to_string(),
            project: project(p),
            environment: environment(e),
            enabled: *enabled,
        },
        Action::Rollout {
            flag,
            percent,
            strategy,
            project: p,
            environment: e,
            ..
        } => Taken::Rollout {
            flag: flag.to_string(),
            project: project(p),
            environment: environment(e),
            strategy: strategy.clone(),
            percent: percent.get(),
        },
        Action::Scale {
            change, on_resolve, ..
        } => {
            let s = ScaleRequest::new(&rule.name, *change, problem, "");
            Taken::Scale {
                value: s.value,
                undo: on_resolve
                    .or_else(|| change.inverse())
                    .map(|u| u.to_string()),
                service: s.service,
                namespace: s.namespace,
            }
        }
    }
}

fn target_of(t: &Taken) -> ActionTarget {
    match t {
        Taken::Flag {
            flag,
            project,
            environment,
            enabled,
        } => ActionTarget::Flag {
            flag: flag.clone(),
            project: project.clone(),
            environment: environment.clone(),
            enabled: *enabled,
        },
        Taken::Rollout {
            flag,
            project,
            environment,
            strategy,
            percent,
        } => ActionTarget::Rollout {
            flag: flag.clone(),
            project: project.clone(),
            environment: environment.clone(),
            strategy: strategy.clone(),
            rollout: *percent,
        },
        Taken::Scale {
            value,
            service,
            namespace,
            ..
        } => ActionTarget::Scale {
            value: value.clone(),
            service: service.clone(),
            namespace: namespace.clone(),
        },
    }
}

/// What undoing `t` changes: the flag turned back (to `restored`, when known), or
/// the scale undo value.
fn undo_target_of(t: &Taken, restored: Option<Setting>) -> ActionTarget {
    match (target_of(t), t, restored) {
        (
            ActionTarget::Flag {
                flag,
                project,
                environment,
                enabled,
            },
            _,
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
            _,
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
        (
            ActionTarget::Scale {
                service, namespace, ..
            },
            Taken::Scale { undo, .. },
            _,
        ) => ActionTarget::Scale {
            value: undo.clone().unwrap_or_default(),
            service,
            namespace,
        },
        (target, _, _) => target,
    }
}

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

pub fn remediate(d: &mut Delivery, problem: &Problem) -> ProblemReport {
    let mut report = new_report(problem);
    d.note(&report, Event::Received, None, None, false);
    let rules = d.rules;
    let found = match rules.find(d.p, problem) {
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
    match decide_and_claim(d, rule, problem, report.clone()) {
        Ok(report) => report,
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

fn decide_and_claim(
    d: &mut Delivery,
    rule: Option<&Rule>,
    problem: &Problem,
    mut report: ProblemReport,
) -> Result<ProblemReport, CellError> {
    let key = claim::occurrence_key(&report.occurrence);
    loop {
        let now = d.p.now_ms();
        let seen = cell::read::<Occurrence>(d.p, &key)?;
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
        let Some(rule) = rule else {
            // A resolve no rule matches any more: undo what is stored, as stored.
            return match record {
                Some(rec) if rec.busy(now, d.skew_ms()) => {
                    if d.wait() {
                        continue;
                    }
                    Ok(in_progress(d, report))
                }
                Some(rec) if !matches!(rec.phase, Phase::Resolved | Phase::Skipped) => {
                    report.rule = Some(rec.rule.clone());
                    match claim_for(d, &key, &seen, rec, Phase::Reverting)? {
                        Some((rec, ticket)) => {
                            Ok(revert(d, problem, report, rec, &key, ticket, legacy_key))
                        }
                        None => continue,
                    }
                }
                _ => Ok(d.finish(
                    report,
                    ProblemOutcome::NoMatchingRule,
                    "no matching rule".into(),
                    Event::NoMatchingRule,
                )),
            };
        };
        let history = if needs_history(rule) {
            read_history(d.p, &rule.name)?
        } else {
            RuleHistory::default()
        };
        let dry_run = d.dry_run || rule.policy.dry_run;
        let decision = plan::decide(
            rule,
            problem.status,
            record.as_ref(),
            &history,
            now,
            d.skew_ms(),
        );
        match decision {
            Decision::InProgress => {
                if d.wait() {
                    continue;
                }
                return Ok(in_progress(d, report));
            }
            Decision::AlreadyHandled { why } => {
                if let Some(rec) = record {
                    refresh(d, &key, &seen, rec, now)?;
                }
                return Ok(d.finish(
                    report,
                    ProblemOutcome::AlreadyHandled,
                    why,
                    Event::AlreadyHandled,
                ));
            }
            Decision::Skip { why, circuit_open } => {
                return Ok(skipped(d, rule, problem, report, why, circuit_open))
            }
            Decision::Act { steps, why } if dry_run => {
                let pending = record
                    .iter()
                    .flat_map(|r| &r.actions)
                    .filter(|a| a.state == ActionState::Pending);
                let mut targets: Vec<Taken> = pending.map(|a| a.taken.clone()).collect();
                targets.extend(
                    steps
                        .iter()
                        .map(|&i| taken(&rule.actions[i], rule, problem, d.cfg)),
                );
                for t in targets {
                    let detail = describe(&t, None, d.cfg);
                    report.actions.push(dry_run_report(target_of(&t), detail));
                }
                let mut report = d.finish(
                    report,
                    ProblemOutcome::DryRun,
                    format!("dry run: {why}"),
                    Event::DryRun,
                );
                notify::run(d, rule, problem, &mut report, NotifyEvent::Act, true);
                return Ok(report);
            }
            Decision::MarkResolved { why } if dry_run => {
                return Ok(d.finish(report, ProblemOutcome::Ignored, why, Event::Skipped));
            }
            Decision::Revert if dry_run => {
                for a in record
                    .iter()
                    .flat_map(|r| &r.actions)
                    .filter(|a| undoable(a))
                {
                    let detail = match &a.taken {
                        Taken::Flag { enabled, .. } => format!(
                            "{} unless another occurrence still holds the flag, it was changed by hand, or it was already so",
                            describe(&a.taken, Some(Setting::Enabled(!enabled)), d.cfg)
                        ),
                        Taken::Rollout { flag, .. } => format!(
                            "would set the rollout of flag {flag:?} back to what it was before remediator acted, unless another occurrence still holds it or it was changed by hand"
                        ),
                        Taken::Scale { undo: Some(_), .. } => describe(&a.taken, None, d.cfg),
                        Taken::Scale { undo: None, .. } => continue,
                    };
                    let target = undo_target_of(&a.taken, None);
                    report.actions.push(dry_run_report(target, detail));
                }
                let mut report = d.finish(
                    report,
                    ProblemOutcome::DryRun,
                    "dry run: resolved".into(),
                    Event::DryRun,
                );
                notify::run(d, rule, problem, &mut report, NotifyEvent::Revert, true);
                return Ok(report);
            }
            Decision::MarkResolved { why } => {
                let ticket = d.ticket();
                let marker = Occurrence::new(
                    &report.occurrence,
                    &rule.name,
                    Phase::Resolved,
                    now.saturating_add(claim::RETENTION_MS),
                );
                if !cell::swap(d.p, &key, &seen, ticket, &marker)? {
                    continue;
                }
                return Ok(d.finish(report, ProblemOutcome::Ignored, why, Event::Skipped));
            }
            Decision::Act { steps, why } => {
                let new_occurrence = record
                    .as_ref()
                    .is_none_or(|r| r.phase == Phase::Skipped || !r.admitted);
                let before = record.clone();
                let mut rec = match record {
                    Some(r) if r.phase != Phase::Skipped => r,
                    _ => Occurrence::new(&report.occurrence, &rule.name, Phase::Acting, 0),
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
                let Some((mut rec, ticket)) = claim_for(d, &key, &seen, rec, Phase::Acting)? else {
                    continue;
                };
                if let Some(k) = &legacy_key {
                    let _ = d.p.kv_delete(k);
                }
                if needs_history(rule) {
                    // Put the record back as it was if nothing may be sent now.
                    let back = match before {
                        Some(b) if b.phase != Phase::Skipped => b,
                        _ => Occurrence::new(
                            &report.occurrence,
                            &rule.name,
                            Phase::Skipped,
                            now.saturating_add(claim::RETENTION_MS),
                        ),
                    };
                    match admit(d, rule, new_occurrence) {
                        Ok(Ok(())) => {
                            rec.admitted = true;
                            cell::write_own(d.p, &key, ticket, &rec)?;
                        }
                        Ok(Err(Decision::Skip { why, circuit_open })) => {
                            cell::write_own(d.p, &key, ticket, &back)?;
                            return Ok(skipped(d, rule, problem, report, why, circuit_open));
                        }
                        Ok(Err(_)) => unreachable!("the gate only skips"),
                        Err(e) => {
                            let _ = cell::write_own(d.p, &key, ticket, &back);
                            return Err(e);
                        }
                    }
                }
                let mut report = act(d, rule, problem, report, rec, &key, ticket, &steps, why);
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
                return Ok(report);
            }
            Decision::Revert => {
                let Some(rec) = record else {
                    unreachable!("plan only reverts a recorded occurrence")
                };
                let Some((rec, ticket)) = claim_for(d, &key, &seen, rec, Phase::Reverting)? else {
                    continue;
                };
                let mut report = revert(d, problem, report, rec, &key, ticket, legacy_key);
                notify::run(d, rule, problem, &mut report, NotifyEvent::Revert, false);
                return Ok(report);
            }
        }
    }
}

fn in_progress(d: &mut Delivery, report: ProblemReport) -> ProblemReport {
    d.finish(
        report,
        ProblemOutcome::InProgress,
        "another delivery is acting on this occurrence; retry later".into(),
        Event::InProgress,
    )
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

fn undoable(a: &StoredAction) -> bool {
    a.revert && matches!(a.state, ActionState::Applied | ActionState::Pending)
}

/// What would be sent for `t` (set to `to` instead, if given), for dry-run reports.
fn describe(t: &Taken, to: Option<Setting>, cfg: &Config) -> String {
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

/// Publish `rec` in `phase` under a fresh lease. `None`: another delivery won.
fn claim_for(
    d: &mut Delivery,
    key: &str,
    seen: &cell::Seen<Occurrence>,
    mut rec: Occurrence,
    phase: Phase,
) -> Result<Option<(Occurrence, i64)>, CellError> {
    let ticket = d.ticket();
    rec.phase = phase;
    rec.lease = Some(d.lease(ticket));
    rec.expires_ms = d.p.now_ms().saturating_add(claim::RETENTION_MS);
    Ok(cell::swap(d.p, key, seen, ticket, &rec)?.then_some((rec, ticket)))
}

/// A still-firing occurrence keeps its record alive (at most one write a day).
fn refresh(
    d: &mut Delivery,
    key: &str,
    seen: &cell::Seen<Occurrence>,
    mut rec: Occurrence,
    now: i64,
) -> Result<(), CellError> {
    if rec.expires_ms.saturating_sub(now) >= claim::REFRESH_MS || rec.busy(now, d.skew_ms()) {
        return Ok(());
    }
    rec.expires_ms = now.saturating_add(claim::RETENTION_MS);
    let ticket = d.ticket();
    // Losing the race is fine: whoever won wrote a fresher record.
    cell::swap(d.p, key, seen, ticket, &rec)?;
    Ok(())
}

fn needs_history(rule: &Rule) -> bool {
    rule.policy.cooldown.is_some() || rule.policy.max_actions.is_some()
}

fn read_history(p: &dyn Platform, rule: &str) -> Result<RuleHistory, CellError> {
    let seen = cell::read::<RuleHistory>(p, &claim::rule_key(rule))?;
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
    let key = claim::rule_key(&rule.name);
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
                .saturating_add(claim::RETENTION_MS),
        );
        Change::Write(h, Ok(()))
    })?;
    Ok(answer)
}

fn dry_run_report(target: ActionTarget, detail: String) -> ActionReport {
    ActionReport {
        target,
        outcome: ActionOutcome::DryRun,
        detail: Some(detail),
        error: None,
        retryable: None,
        verified: None,
    }
}

/// The idempotency key of one step of one occurrence: the same on every retry.
pub fn idempotency_key(occurrence: &str, rule: &str, step: usize, what: &str) -> String {
    let step = step.to_string();
    match what {
        "act" => crate::state::hash(&[occurrence, rule, &step]),
        _ => crate::state::hash(&[occurrence, rule, &step, what]),
    }
}

#[allow(clippy::too_many_arguments)]
fn act(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    mut report: ProblemReport,
    mut rec: Occurrence,
    key: &str,
    ticket: i64,
    steps: &[usize],
    why: String,
) -> ProblemReport {
    let mut failed = false;
    let mut exhausted: Option<String> = None;
    let mut write_error = None;
    let verify = rule.policy.verify.unwrap_or(d.cfg.unleash_verify);
    for i in 0..rec.actions.len() {
        if rec.actions[i].state != ActionState::Pending {
            continue;
        }
        let a = rec.actions[i].clone();
        let id = change_id(key, &a);
        let sent = match &a.taken {
            Taken::Flag { .. } | Taken::Rollout { .. } => {
                flags::hold_and_set(d, key, &a.taken, verify, id)
            }
            Taken::Scale { value, .. } => match admit_change(d, &Bucket::Scaling, id) {
                Admitted::Yes => {
                    Sent::Sent(send_scale(d, &rec, problem, a.step, value, "act"), None)
                }
                Admitted::Exhausted(why) => Sent::Exhausted(why),
                Admitted::Error(e) => Sent::Sent(Err(e), None),
            },
        };
        let (result, verified) = match sent {
            Sent::Sent(result, verified) => (result, verified),
            Sent::Exhausted(why) => {
                // Nothing sent, nothing recorded: the action stays pending, and the
                // next delivery of this occurrence sends it once the window allows.
                d.p.log(&format!("remediator: WARNING {why}"));
                d.action(
                    &mut report,
                    target_of(&a.taken),
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
        rec.actions[i].at_ms = d.p.now_ms();
        d.action(&mut report, target_of(&a.taken), result, Event::Acted);
        if let Some(entry) = report.actions.last_mut() {
            entry.verified = verified;
        }
        // Record each result at once: a crash after this cannot make it be sent again.
        if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
            write_error = Some(e);
        }
    }
    let now = d.p.now_ms();
    rec.lease = None;
    if failed || exhausted.is_some() {
        // What the budget held back is retried like a failure, without a 5xx.
        rec.phase = Phase::Failed;
    } else {
        rec.phase = Phase::Done;
        if !steps.is_empty() {
            rec.last_step_ms = Some(now);
        }
        rec.first_handled_ms.get_or_insert(now);
        rec.first_audit.get_or_insert(d.id);
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
    let mut detail = match &exhausted {
        Some(e) => format!("{e}; {why}"),
        None => why,
    };
    if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
        write_error = Some(e);
    }
    if let Some(e) = write_error {
        // What was sent is recorded as pending at worst: a retry resends it (flags
        // are idempotent; scale calls carry their idempotency key).
        detail = format!(
            "{detail}; WARNING: result not recorded ({e}); a retry resends what is pending"
        );
    }
    let any_failed = report
        .actions
        .iter()
        .any(|a| a.outcome == ActionOutcome::Failed);
    report.outcome = if any_failed {
        ProblemOutcome::Failed
    } else if exhausted.is_some() {
        ProblemOutcome::BudgetExhausted
    } else {
        ProblemOutcome::Acted
    };
    report.detail = Some(detail);
    report
}

/// What sending one action came to.
pub(super) enum Sent {
    /// Sent (or not needed), with its result and read-back.
    Sent(Result<String, ActionError>, Option<bool>),
    /// The blast-radius budget held it back: nothing was sent.
    Exhausted(String),
}

/// What the blast-radius budget said.
pub(super) enum Admitted {
    Yes,
    Exhausted(String),
    Error(ActionError),
}

/// The id a change is counted under: the same for every re-send of one step of one
/// occurrence (a retry, a takeover), so that re-sending it never counts twice.
fn change_id(okey: &str, a: &StoredAction) -> i64 {
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
pub(super) fn admit_change(d: &mut Delivery, bucket: &Bucket, id: i64) -> Admitted {
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

fn send_scale(
    d: &mut Delivery,
    rec: &Occurrence,
    problem: &Problem,
    step: usize,
    value: &str,
    what: &str,
) -> Result<String, ActionError> {
    let change = ScaleChange::parse(value).map_err(|e| ActionError {
        message: format!("stored action: {e}"),
        retryable: false,
    })?;
    let key = idempotency_key(&rec.occurrence, &rec.rule, step, what);
    let s = ScaleRequest::new(&rec.rule, change, problem, &key);
    // `+1` twice is +2: never retried here; the sender's retry and the record decide.
    d.outbound().once(|timeout| {
        let req = s.request(&scale_url(d.cfg), &d.cfg.scale_token)?;
        s.outcome(d.p.send(req, timeout), d.cfg)
    })
}

fn revert(
    d: &mut Delivery,
    problem: &Problem,
    mut report: ProblemReport,
    mut rec: Occurrence,
    key: &str,
    ticket: i64,
    legacy_key: Option<String>,
) -> ProblemReport {
    if let Some(k) = &legacy_key {
        let _ = d.p.kv_delete(k);
    }
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
    for i in todo.iter().copied() {
        let a = rec.actions[i].clone();
        let (target, result, event) = match &a.taken {
            Taken::Flag { .. } | Taken::Rollout { .. } => {
                let (result, event, restored) = flags::release_and_restore(d, key, lease, &a);
                (undo_target_of(&a.taken, restored), result, event)
            }
            Taken::Scale { undo: Some(u), .. } => {
                let result = send_scale(d, &rec, problem, a.step, u, "revert");
                (undo_target_of(&a.taken, None), result, Event::Reverted)
            }
            Taken::Scale { undo: None, .. } => (
                target_of(&a.taken),
                Ok("no inverse for =N and no on_resolve".into()),
                Event::RevertSkipped,
            ),
        };
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
        d.action(&mut report, target, result, event);
        if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
            write_error = Some(e);
        }
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
    if let Err(e) = cell::write_own(d.p, key, ticket, &rec) {
        write_error = Some(e);
    }
    if let Some(e) = write_error {
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
    report.detail = Some(detail);
    report
}
