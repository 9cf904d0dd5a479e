//! Alertmanager webhook (version "4") and Grafana's Alertmanager-shaped variant.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{typed, typed_at, Format, IngestError, Ingested, Rejected, MAX_REJECTED};
use crate::config::clip;
use crate::problem::{fingerprint_labels, Links, Problem, Source, Status};

/// Other fields (Alertmanager 0.34's `routeLabels`, Grafana's `orgId`, `state`, `values`,
/// ...) are accepted and ignored. `A` is how an alert is read: [`Alert`] on the fast
/// path ([`fast`]), else [`Value`], each then read on its own so that one that cannot
/// be read is rejected alone, not with its group.
#[derive(Debug, Deserialize)]
struct Webhook<A> {
    version: String,
    alerts: Vec<A>,
    #[serde(default, rename = "truncatedAlerts")]
    truncated_alerts: u64,
    /// Alertmanager 0.32+: why this notification was sent ("repeat interval elapsed", ...).
    #[serde(default)]
    notification_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    // Grafana's links.
    #[serde(default, rename = "ruleUID")]
    rule_uid: Option<String>,
    #[serde(default, rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL")]
    panel_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlertStatus {
    Firing,
    Resolved,
}

pub fn alertmanager(value: Value) -> Result<Ingested, IngestError> {
    let hook: Webhook<Value> = typed(value)?;
    checked(Format::Alertmanager, hook, read_alert)
}

pub fn grafana(value: Value) -> Result<Ingested, IngestError> {
    let hook: Webhook<Value> = typed(value)?;
    checked(Format::Grafana, hook, read_alert)
}

/// The common case read straight from the body into types, without the generic
/// [`Value`] tree the error path needs to name a field: `None` when anything in it
/// fails to read (a bad alert, a duplicate key, a wrong type), and the caller takes
/// the general path, which then finds and names what is wrong. When it reads, every
/// alert read too, so both paths give the same [`Ingested`] (tests/ingest.rs checks
/// this over every sample).
pub fn fast(format: Format, body: &[u8]) -> Option<Result<Ingested, IngestError>> {
    let hook: Webhook<Alert> = serde_json::from_slice(body).ok()?;
    Some(checked(format, hook, |_, a| Ok(a)))
}

fn read_alert(i: usize, value: Value) -> Result<Alert, String> {
    typed_at(&format!("alerts[{i}]"), value)
}

/// The version this format sends, then the group.
fn checked<A>(
    format: Format,
    hook: Webhook<A>,
    read: impl Fn(usize, A) -> Result<Alert, String>,
) -> Result<Ingested, IngestError> {
    let v = hook.version.as_str();
    let (source, supported, sends) = match format {
        // Grafana's unified alerting sends version "1"; accept the Alertmanager shape too.
        Format::Grafana => (Source::Grafana, v == "1" || v == "4", "Grafana sends \"1\""),
        _ => (Source::Alertmanager, v == "4", "Alertmanager sends \"4\""),
    };
    if !supported {
        return Err(IngestError::Invalid(format!(
            "version: {v:?} is not supported ({sends})"
        )));
    }
    build(format, source, hook, read)
}

/// How many rejections a refusal of a whole group spells out.
const REFUSAL_NAMES: usize = 10;

fn build<A>(
    format: Format,
    source: Source,
    hook: Webhook<A>,
    read: impl Fn(usize, A) -> Result<Alert, String>,
) -> Result<Ingested, IngestError> {
    let mut problems = Vec::new();
    let mut rejected = Vec::new();
    let mut unreported: u64 = 0;
    for (index, alert) in hook.alerts.into_iter().enumerate() {
        let p = read(index, alert).and_then(|a| problem(source, index, a));
        match p.map_err(clip_reason) {
            Ok(p) => problems.push(p),
            Err(reason) if rejected.len() < MAX_REJECTED => {
                rejected.push(Rejected { index, reason })
            }
            Err(_) => unreported += 1,
        }
    }
    if problems.is_empty() && !rejected.is_empty() {
        // Nothing to act on: the delivery as a whole is refused (422), as before.
        return Err(IngestError::Invalid(refusal(&rejected, unreported)));
    }
    Ok(Ingested {
        format,
        problems,
        not_processed: hook.truncated_alerts.saturating_add(unreported),
        rejected,
        notification_reason: hook
            .notification_reason
            .filter(|r| !r.is_empty())
            .map(|r| clip(&r, 100)),
    })
}

/// One alert of a group, or why it is rejected (naming the field at fault).
fn problem(source: Source, i: usize, a: Alert) -> Result<Problem, String> {
    let title = match a.labels.get("alertname") {
        None => return Err(format!("alerts[{i}].labels.alertname: missing")),
        Some(n) if n.is_empty() => return Err(format!("alerts[{i}].labels.alertname: empty")),
        Some(n) => n.clone(),
    };
    let fingerprint = a
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint_labels(&a.labels));
    Ok(Problem {
        source,
        status: match a.status {
            AlertStatus::Firing => Status::Firing,
            AlertStatus::Resolved => Status::Resolved,
        },
        title,
        summary: a.annotations.get("summary").cloned(),
        labels: a.labels,
        annotations: a.annotations,
        starts_at: a.starts_at,
        fingerprint,
        links: Links {
            generator_url: a
                .generator_url
                .filter(|s| !s.is_empty())
                .map(|s| clip(&s, 2000)),
            rule_uid: a.rule_uid.filter(|s| !s.is_empty()).map(|s| clip(&s, 100)),
            dashboard_url: a
                .dashboard_url
                .filter(|s| !s.is_empty())
                .map(|s| clip(&s, 2000)),
            panel_url: a
                .panel_url
                .filter(|s| !s.is_empty())
                .map(|s| clip(&s, 2000)),
        },
    })
}

/// Reasons quote the offending value: a huge one is cut (the body may be 1 MiB).
const MAX_REASON_CHARS: usize = 200;

fn clip_reason(reason: String) -> String {
    clip(&reason, MAX_REASON_CHARS)
}

fn refusal(rejected: &[Rejected], unreported: u64) -> String {
    let more = (rejected.len().saturating_sub(REFUSAL_NAMES) as u64).saturating_add(unreported);
    let named: Vec<&str> = rejected
        .iter()
        .take(REFUSAL_NAMES)
        .map(|r| r.reason.as_str())
        .collect();
    match (named.as_slice(), more) {
        ([one], 0) => one.to_string(),
        (named, 0) => format!("no alert could be processed: {}", named.join("; ")),
        (named, more) => format!(
            "no alert could be processed: {}; and {more} more",
            named.join("; ")
        ),
    }
}
