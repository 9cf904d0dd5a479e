//! What one delivery's problems share: its platform, configuration and rules, its
//! tickets and leases (the claim protocol's), its outbound deadline, and its audit
//! batch. The claim decision ([`crate::claim::decision`]), the actions
//! ([`crate::actions`]) and the per-problem pipeline ([`crate::remediate`]) all work
//! through it.

use std::time::Duration;

use crate::actions::outbound::Outbound;
use crate::actions::ActionError;
use crate::audit::{self, Event};
use crate::claim::cell::{self, CellError, Change};
use crate::claim::{self, Lease, Setting};
use crate::config::{clip, Config};
use crate::deferred::Deferred;
use crate::platform::{KvError, Platform};
use crate::report::{ActionOutcome, ActionReport, ActionTarget, ProblemOutcome, ProblemReport};

/// How long one delivery (all its alerts together) waits for concurrent ones
/// holding a lease, before answering "in progress" (503) so that the sender retries.
pub const WAIT_FOR_CLAIM: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// Everything one delivery shares across its problems.
pub struct Delivery<'a> {
    /// The platform, through [`Delivery::writes`]: reads see what it holds back.
    pub p: &'a dyn Platform,
    /// Writes held back to the end of the delivery (the claims' final records, the
    /// audit batch): one durable transaction for all of them.
    pub writes: &'a Deferred<'a>,
    /// The index in the delivery of the problem being handled (whose results the
    /// held records are).
    pub problem: usize,
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
    /// False when the audit batch cannot be worth writing (no rule matches a firing
    /// alert and `audit_unmatched` is off: `audit::worth_auditing`), so none is built.
    pub audited: bool,
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
    pub(crate) fn outbound(&self) -> Outbound<'_> {
        Outbound {
            p: self.p,
            cfg: self.cfg,
            deadline_ms: self.deadline_ms,
        }
    }

    /// The blast-radius budget in force: the rules file's, else the variable's.
    pub(crate) fn budget(&self) -> Option<(u32, Duration)> {
        self.rules.max_changes().or(self.cfg.max_changes)
    }

    /// A ticket no one has used on any cell.
    pub(crate) fn ticket(&mut self) -> i64 {
        self.seq += 1;
        ticket(self.id, self.seq)
    }

    /// [`cell::update`] with this delivery's tickets.
    pub(crate) fn update_cell<T, R>(
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

    pub(crate) fn skew_ms(&self) -> i64 {
        self.cfg.max_clock_skew.as_millis().min(i64::MAX as u128) as i64
    }

    /// A lease covers the whole outbound budget from now, and the writes after it.
    pub(crate) fn lease(&self, ticket: i64) -> Lease {
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

    /// Wait a moment for another delivery's lease, if this delivery still may. What
    /// is held back is written first: a lease must cover the time until its record is
    /// written, and a lease (outbound budget + margin) covers the sends, not the waits.
    pub(crate) fn wait(&self) -> bool {
        if self.p.now_ms() >= self.wait_until_ms {
            return false;
        }
        if self.writes.holding() {
            // A failure is told to the problems it held results of, at the end.
            let _ = self.writes.flush();
        }
        self.p.sleep(POLL);
        true
    }

    /// The owner of `ticket` closes its claim on cell `key` with `value`, written at
    /// the end of the delivery (see [`crate::deferred`]). `note` follows the warning
    /// the current problem's detail gets if that write fails.
    pub(crate) fn close_own<T: serde::Serialize>(
        &self,
        key: &str,
        ticket: i64,
        value: &T,
        note: &'static str,
    ) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(value).map_err(|e| KvError(e.to_string()))?;
        self.writes.hold(
            cell::value_key(key, ticket),
            bytes,
            Some((self.problem, note)),
        );
        Ok(())
    }

    pub(crate) fn note(
        &mut self,
        report: &ProblemReport,
        event: Event,
        action: Option<ActionTarget>,
        detail: Option<String>,
        dry_run: bool,
    ) {
        if !self.audited {
            return;
        }
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

    pub(crate) fn finish(
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

    pub(crate) fn action(
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
