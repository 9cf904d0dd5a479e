//! Sending a rule's notifications after the remediation event happened. A
//! notification never changes what was done, the problem's outcome, or the status
//! code: its result is only reported (and audited).

use std::time::Duration;

use crate::actions::{body_excerpt, ActionError};
use crate::audit::Event;
use crate::claim::{self, cell::Change, RuleHistory};
use crate::delivery::Delivery;
use crate::notify::{self, Facts, NotifyEvent};
use crate::platform::{OutboundResponse, SendError};
use crate::problem::Problem;
use crate::report::{ActionOutcome, ActionReport, ActionTarget, NotifyOutcome, NotifyReport};
use crate::rules::Rule;

/// Run `rule`'s notifications for `event` and add their results to `report`.
pub fn run(
    d: &mut Delivery,
    rule: &Rule,
    problem: &Problem,
    report: &mut crate::report::ProblemReport,
    event: NotifyEvent,
    dry_run: bool,
) {
    let todo: Vec<&notify::Notify> = rule
        .notify
        .iter()
        .filter(|n| n.on.contains(&event))
        .collect();
    // A resolve with nothing to undo (revert off) is no news.
    if todo.is_empty() || (event == NotifyEvent::Revert && report.actions.is_empty()) {
        return;
    }
    let once_per_window = matches!(
        event,
        NotifyEvent::CircuitOpen | NotifyEvent::BudgetExhausted
    );
    if once_per_window && !dry_run && !first_in_window(d, rule, event) {
        return;
    }
    let outcome = serde_json::to_string(&report.outcome).unwrap_or_default();
    let outcome = outcome.trim_matches('"');
    let facts = Facts {
        event,
        rule: &rule.name,
        outcome,
        detail: report.detail.as_deref().unwrap_or(""),
        dry_run,
        delivery: d.id,
        actions: {
            let mut lines = Vec::new();
            for a in &report.actions {
                lines.push(summary(a));
            }
            lines
        },
        now_ms: d.p.now_ms(),
        problem,
    };
    let mut results = Vec::new();
    for n in todo {
        let body = notify::render(&n.body, &facts);
        results.push(send(d, n, event, &body, dry_run));
    }
    for r in results {
        let detail = format!(
            "notify {} on {}: {}",
            r.channel,
            r.event.as_str(),
            match (&r.outcome, r.status, &r.error) {
                (NotifyOutcome::DryRun, _, _) => format!("dry run, would send {}", r.request),
                (_, _, Some(e)) => format!("failed: {e}"),
                (_, Some(s), None) => format!("sent {} ({s})", r.request),
                (_, None, None) => format!("sent {}", r.request),
            }
        );
        let ev = if r.outcome == NotifyOutcome::Failed {
            Event::NotifyFailed
        } else {
            Event::Notified
        };
        d.note(report, ev, None, Some(detail), dry_run);
        report.notifications.push(r);
    }
}

/// A circuit stays open, and a budget stays exhausted, for many alerts: tell people
/// once per rule per breaker (or budget) window. The check and the mark are one swap
/// on the rule's history, exact across replicas.
fn first_in_window(d: &mut Delivery, rule: &Rule, event: NotifyEvent) -> bool {
    let now = d.p.now_ms();
    let budget = event == NotifyEvent::BudgetExhausted;
    let window = if budget {
        d.budget().map(|(_, w)| w)
    } else {
        rule.policy.max_actions.map(|(_, w)| w)
    };
    let window = window.map_or(0, |w| w.as_millis().min(i64::MAX as u128) as i64);
    let key = claim::rule_key(&rule.name);
    let answer = d.update_cell(&key, |h: Option<&RuleHistory>| {
        let mut h = h.cloned().unwrap_or_default();
        let last = if budget {
            &mut h.budget_notified_ms
        } else {
            &mut h.circuit_notified_ms
        };
        match *last {
            Some(t) if now.saturating_sub(t) < window => Change::Keep(false),
            _ => {
                *last = Some(now);
                h.expires_ms = h.expires_ms.max(
                    now.saturating_add(window)
                        .saturating_add(claim::RETENTION_MS),
                );
                Change::Write(h, true)
            }
        }
    });
    // The state store failing: better one message too many than none.
    answer.map_or(true, |(first, _)| first)
}

fn send(
    d: &Delivery,
    n: &notify::Notify,
    event: NotifyEvent,
    body: &serde_json::Value,
    dry_run: bool,
) -> NotifyReport {
    let mut report = NotifyReport {
        channel: n.channel.clone(),
        event,
        outcome: NotifyOutcome::Failed,
        request: format!(
            "{} {}",
            n.method,
            n.path.as_deref().unwrap_or("<secret path>")
        ),
        status: None,
        error: None,
    };
    let channel = match d.cfg.channel(&n.channel) {
        Some(c) if !c.origin.is_empty() => c,
        Some(c) => {
            report.error = Some(format!(
                "channel {:?} has no origin: set variable notify_{}_origin",
                c.name, c.slot
            ));
            return report;
        }
        None => {
            report.error = Some(format!(
                "no channel is named {:?}: set one of the variables notify_1_name..notify_{}_name",
                n.channel,
                crate::config::NOTIFY_CHANNELS
            ));
            return report;
        }
    };
    let (path, shown) = match &n.path {
        Some(p) => (p.as_str(), p.as_str()),
        None if !channel.path.is_empty() => (channel.path.expose(), "<secret path>"),
        None => {
            report.error = Some(format!(
                "no path: give the notify a path, or set variable notify_{}_path",
                channel.slot
            ));
            return report;
        }
    };
    report.request = format!("{} {}{shown}", n.method, channel.origin);
    if dry_run {
        report.outcome = NotifyOutcome::DryRun;
        return report;
    }
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(format!("could not encode the body: {e}"));
            return report;
        }
    };
    let url = format!("{}{path}", channel.origin);
    let last_status = std::cell::Cell::new(None);
    let result = d.outbound().idempotent(|timeout: Duration| {
        let mut req = http::Request::builder()
            .method(n.method)
            .uri(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "remediator");
        if !channel.authorization.is_empty() {
            req = req.header(http::header::AUTHORIZATION, channel.authorization.expose());
        }
        for (k, v) in &n.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(bytes.clone()).map_err(|e| ActionError {
            message: format!(
                "could not build the request (check variables notify_{}_origin/_path/_authorization): {e}",
                channel.slot
            ),
            retryable: false,
        })?;
        let resp = d.p.send(req, timeout);
        last_status.set(resp.as_ref().ok().map(|r| r.status().as_u16()));
        answer(resp, d)
    });
    report.status = last_status.get();
    match result {
        Ok(()) => report.outcome = NotifyOutcome::Sent,
        Err(e) => report.error = Some(d.cfg.redact(&e.message)),
    }
    report
}

/// A message sent twice is worse than one retried: only answers that say nothing
/// was done (refused connection, 429, 502-504) are retried, never a timeout.
fn answer(result: Result<OutboundResponse, SendError>, d: &Delivery) -> Result<(), ActionError> {
    let resp = result.map_err(|e| ActionError {
        retryable: matches!(e, SendError::Transport(_)),
        message: format!("unreachable: {e}"),
    })?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(ActionError {
        message: format!("answered {status}: {}", body_excerpt(&resp, d.cfg)),
        retryable: matches!(status, 429 | 502..=504),
    })
}

/// One line per action, as people say it: "turned EnablePromotion off in production".
pub fn summary(a: &ActionReport) -> String {
    let (verb, past, what) = match &a.target {
        ActionTarget::Flag {
            flag,
            environment,
            enabled,
            ..
        } => (
            "turn",
            "turned",
            format!(
                "{flag} {} in {environment}",
                if *enabled { "on" } else { "off" }
            ),
        ),
        ActionTarget::Rollout {
            flag,
            environment,
            rollout,
            ..
        } => (
            "set",
            "set",
            format!("the rollout of {flag} to {rollout}% in {environment}"),
        ),
        ActionTarget::Scale { value, service, .. } => (
            "scale",
            "scaled",
            format!(
                "{} by {value}",
                service.as_deref().unwrap_or("(no service label)")
            ),
        ),
    };
    let why = |t: &Option<String>| t.as_deref().map_or(String::new(), |t| format!(": {t}"));
    match a.outcome {
        ActionOutcome::Done => format!("{past} {what}"),
        ActionOutcome::DryRun => format!("would {verb} {what}"),
        ActionOutcome::Skipped => format!("did not {verb} {what}{}", why(&a.detail)),
        ActionOutcome::Failed => format!("failed to {verb} {what}{}", why(&a.error)),
    }
}
