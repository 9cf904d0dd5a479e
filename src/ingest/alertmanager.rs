//! Alertmanager webhook (version "4") and Grafana's Alertmanager-shaped variant.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{typed, Format, IngestError, Ingested};
use crate::problem::{fingerprint_labels, Problem, Source, Status};

/// Unknown fields (`notification_reason`, `routeLabels`, Grafana's `orgId`, `values`, ...)
/// are accepted and ignored.
#[derive(Debug, Deserialize)]
struct Webhook {
    version: String,
    alerts: Vec<Alert>,
    #[serde(default, rename = "truncatedAlerts")]
    truncated_alerts: u64,
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
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlertStatus {
    Firing,
    Resolved,
}

pub fn alertmanager(value: Value) -> Result<Ingested, IngestError> {
    let hook: Webhook = typed(value)?;
    if hook.version != "4" {
        return Err(IngestError::Invalid(format!(
            "version: {:?} is not supported (Alertmanager sends \"4\")",
            hook.version
        )));
    }
    build(Format::Alertmanager, Source::Alertmanager, hook)
}

pub fn grafana(value: Value) -> Result<Ingested, IngestError> {
    let hook: Webhook = typed(value)?;
    // Grafana's unified alerting sends version "1"; accept the Alertmanager shape too.
    if hook.version != "1" && hook.version != "4" {
        return Err(IngestError::Invalid(format!(
            "version: {:?} is not supported (Grafana sends \"1\")",
            hook.version
        )));
    }
    build(Format::Grafana, Source::Grafana, hook)
}

fn build(format: Format, source: Source, hook: Webhook) -> Result<Ingested, IngestError> {
    let problems = hook
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let title = a
                .labels
                .get("alertname")
                .filter(|n| !n.is_empty())
                .cloned()
                .ok_or_else(|| {
                    IngestError::Invalid(format!("alerts[{i}].labels.alertname: missing or empty"))
                })?;
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
            })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    Ok(Ingested {
        format,
        problems,
        not_processed: hook.truncated_alerts,
    })
}
