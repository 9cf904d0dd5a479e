//! `POST /`, `/alertmanager`, `/grafana`, `/keptn`: a webhook in, ingest → rules →
//! remediate → audit, the report out; every answer is counted in the metrics, except
//! a delivery no rule matched (`count_unmatched`).

use http::{Method, Request, Response};

use super::{request, response, ApiError};
use crate::audit;
use crate::auth;
use crate::claim;
use crate::config::Part;
use crate::deferred::Deferred;
use crate::delivery::{Delivery, WAIT_FOR_CLAIM};
use crate::ingest::{self, Format, Rejected};
use crate::metrics;
use crate::platform::Platform;
use crate::problem::Status;
use crate::remediate::remediate;
use crate::report::{log_safe, ProblemOutcome, ProblemReport, Report};
use crate::rules_source;

/// Largest webhook body accepted (Alertmanager groups are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Problems shown in full in a report; every alert is processed, the rest are
/// counted in `problems_not_shown` (their audit entries are kept).
pub const MAX_ALERTS: usize = 200;

/// A request to a webhook route (`format` pins the payload's format; `None`
/// detects it): the answer, after adding to the counters what it shows (derived
/// from the whole report, before it is shortened).
pub(super) fn handle(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
    format: Option<Format>,
) -> Response<Vec<u8>> {
    let route = req.uri().path();
    let answer = if req.method() == Method::POST {
        deliver(p, req, format, Mode::Act)
    } else {
        Err(ApiError::MethodNotAllowed("POST"))
    };
    let (response, deltas) = match answer {
        Ok(mut report) => {
            // The status covers every alert, shown or not.
            let status = report.status();
            let deltas = if report.uncounted && status == 200 {
                Vec::new()
            } else {
                metrics::tally(route, status, Some(&report))
            };
            report.shorten(MAX_ALERTS);
            (response::json(status, &report), deltas)
        }
        Err(e) => (e.response(), metrics::tally(route, e.status(), None)),
    };
    let errors = metrics::record(p, &deltas);
    if !errors.is_empty() {
        p.log(&format!(
            "remediator: WARNING metrics not recorded: {}",
            log_safe(&errors.join("; "))
        ));
    }
    response
}

/// A delivery that changed nothing and is owed nothing: every alert read, none left
/// out, no rule matched any (firing or resolved). Counting it would be its only
/// durable write (issue 13); it is logged, one line per alert, instead.
fn unmatched_only(problems: &[ProblemReport], rejected: &[Rejected], not_processed: u64) -> bool {
    !problems.is_empty()
        && rejected.is_empty()
        && not_processed == 0
        && problems
            .iter()
            .all(|p| p.outcome == ProblemOutcome::NoMatchingRule)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Act,
    /// Decide as the component would, from its effective rules and state; change nothing.
    Simulate,
}

/// Everything between the request and its report; an error stops it before any rule runs.
pub(super) fn deliver(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
    route: Option<Format>,
    mode: Mode,
) -> Result<Report, ApiError> {
    // Each variable is a host call: first only what every delivery needs, the rest
    // once it is known to be needed (each read once).
    let mut cfg = request::webhook_config(p)?;
    if req.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    // The configured bearer token, presented, passes auth::check whatever else is
    // configured; any other request is checked with every credential setting.
    let authorization = req.headers().get(http::header::AUTHORIZATION);
    if cfg.auth.bearer.is_empty()
        || !auth::bearer_allows(&cfg.auth.bearer, authorization.map(|v| v.as_bytes()))
    {
        cfg = request::more_config(p, &cfg, Part::Auth)?;
        auth::check(&cfg, &request::presented(p, &cfg, req)).map_err(ApiError::Auth)?;
    }
    if let Some(ct) = req.headers().get(http::header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        // CloudEvents structured mode uses application/cloudevents+json.
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(ApiError::ContentType(ct));
        }
    }
    let ingested = ingest::ingest(route, req.body()).map_err(ApiError::Ingest)?;
    if cfg.rules_url().is_some() {
        // Fetching rules takes the timeouts, the token and the redaction.
        cfg = request::more_config(p, &cfg, Part::All)?;
    }
    let effective = rules_source::effective(p, &cfg).map_err(|e| ApiError::Rules(e.to_string()))?;
    let rules = &effective.rules;
    let found: Vec<_> = ingested
        .problems
        .iter()
        .map(|problem| rules.find(p, problem))
        .collect();
    // Only a delivery in which no rule matches a firing alert, and that is not
    // audited, does without the rest: it acts, undoes and notifies nothing, redacts
    // only the constant "no matching rule", and has no audit batch worth writing
    // (so it builds none). Any other reads (and validates) every variable before any
    // rule runs, as every delivery used to.
    let needs_all = cfg.audit_unmatched
        || ingested
            .problems
            .iter()
            .zip(&found)
            .any(|(problem, found)| {
                problem.status == Status::Resolved || !matches!(found, Ok(None))
            });
    if needs_all && cfg.part() != Part::All {
        cfg = request::more_config(p, &cfg, Part::All)?;
    }
    let dry_run =
        cfg.dry_run || mode == Mode::Simulate || request::query_flag(req.uri(), "dry_run");
    let id = match mode {
        Mode::Act => audit::next_delivery(p),
        Mode::Simulate => 0,
    };
    let not_processed = ingested.not_processed;
    let now = p.now_ms();
    let writes = Deferred::new(p);
    let mut delivery = Delivery {
        p: &writes,
        writes: &writes,
        problem: 0,
        cfg: &cfg,
        rules,
        dry_run,
        id,
        // Now, unless every variable was read: then nothing is sent.
        deadline_ms: now.saturating_add(cfg.outbound_budget.as_millis() as i64),
        wait_until_ms: now.saturating_add(WAIT_FOR_CLAIM.as_millis() as i64),
        audit: Vec::new(),
        audited: needs_all,
        seq: 0,
        flags_set: Vec::new(),
        notification_reason: ingested.notification_reason.clone(),
    };
    let mut problems: Vec<_> = ingested
        .problems
        .iter()
        .zip(found)
        .enumerate()
        .map(|(i, (problem, found))| {
            if writes.holding() && p.now_ms() >= delivery.deadline_ms {
                // Past the outbound budget only key-value work is left, which the
                // leases' margin covers for one problem, not for all the rest.
                let _ = writes.flush();
            }
            delivery.problem = i;
            let r = remediate(&mut delivery, problem, found);
            p.log(&format!(
                "remediator: {} {:?} rule={} outcome={:?}",
                log_safe(&r.occurrence),
                r.title,
                log_safe(r.rule.as_deref().unwrap_or("-")),
                r.outcome
            ));
            r
        })
        .collect();
    if mode == Mode::Act {
        // A delivery no rule matched is only counted and logged (audit::worth_auditing).
        let mut audited = false;
        if audit::worth_auditing(&delivery.audit, cfg.audit_unmatched) {
            match audit::batch(id, &delivery.audit) {
                Ok(Some((key, value))) => {
                    writes.hold(key, value, None);
                    audited = true;
                }
                Ok(None) => {}
                Err(e) => p.log(&format!(
                    "remediator: WARNING audit batch {id} not written: {e}"
                )),
            }
        }
        // The claims' closing records, then the audit batch: one transaction.
        match writes.flush() {
            Ok(()) if audited => audit::written(p, id),
            Ok(()) => {}
            Err(e) if audited => p.log(&format!(
                "remediator: WARNING audit batch {id} not written: {e}"
            )),
            Err(_) => {}
        }
        // What the problems' results are stored as is at worst pending: said in each
        // one's detail, as when its closing write failed (same status).
        for (i, warning) in writes.failures() {
            if let Some(r) = problems.get_mut(i) {
                let detail = r.detail.take().unwrap_or_default();
                r.detail = Some(format!("{detail}; {warning}"));
            }
        }
        // Records are only made by deliveries that match or resolve, so those keep
        // the store bounded; a no-match delivery costs its one write and no listing
        // of every key (the sweep's listing and reads were most of its time once the
        // store held a few thousand records).
        if needs_all && id % claim::sweep::SWEEP_EVERY == 0 {
            if let Err(e) = claim::sweep::sweep(p, p.now_ms(), claim::sweep::start_for(id)) {
                p.log(&format!("remediator: WARNING expiry sweep failed: {e}"));
            }
        }
    }
    let uncounted = !cfg.count_unmatched
        && !cfg.audit_unmatched
        && unmatched_only(&problems, &ingested.rejected, not_processed);
    Ok(Report {
        uncounted,
        format: ingested.format,
        dry_run,
        rules_source: effective.source.clone(),
        rules_version: effective.version.clone(),
        rules_warning: effective.warning.clone(),
        rules_format: rules.format(),
        problems,
        not_processed,
        problems_not_shown: 0,
        rejected: ingested.rejected,
        notification_reason: ingested.notification_reason,
    })
}
