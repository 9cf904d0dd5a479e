//! Keptn problem events as Keptn 0.6 sent them, bare or in a CloudEvents envelope.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{typed, Format, IngestError, Ingested};
use crate::problem::{Problem, Source, Status};

#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
struct KeptnProblem {
    ProblemTitle: String,
    State: String,
    #[serde(default)]
    ProblemID: Option<IdValue>,
    #[serde(default)]
    PID: Option<IdValue>,
    #[serde(default)]
    ImpactedEntity: Option<String>,
    /// Dynatrace-style `"key:value, key2:value2"`.
    #[serde(default)]
    Tags: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Problem ids arrive as strings or numbers depending on the sender.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Str(String),
    Num(i64),
}

impl IdValue {
    fn text(&self) -> String {
        match self {
            IdValue::Str(s) => s.clone(),
            IdValue::Num(n) => n.to_string(),
        }
    }
}

const EVENT_TYPES: [&str; 2] = ["sh.keptn.event.problem.open", "sh.keptn.events.problem"];

pub fn keptn(value: Value) -> Result<Ingested, IngestError> {
    let data = if value.get("specversion").is_some() || value.get("type").is_some() {
        let ty = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !EVENT_TYPES.contains(&ty) {
            return Err(IngestError::Invalid(format!(
                "type: {ty:?} is not a Keptn problem event (expected {})",
                EVENT_TYPES.join(" or ")
            )));
        }
        match value.get("data") {
            Some(d) if d.is_object() => d.clone(),
            _ => {
                return Err(IngestError::Invalid(
                    "data: missing or not an object".into(),
                ))
            }
        }
    } else {
        value
    };
    let p: KeptnProblem = typed(data)?;
    let status = match p.State.to_ascii_uppercase().as_str() {
        "OPEN" => Status::Firing,
        "RESOLVED" | "CLOSED" => Status::Resolved,
        other => {
            return Err(IngestError::Invalid(format!(
                "State: {other:?} must be OPEN, RESOLVED or CLOSED"
            )))
        }
    };
    let id = p
        .PID
        .as_ref()
        .or(p.ProblemID.as_ref())
        .map(IdValue::text)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IngestError::Invalid("ProblemID: missing (and no PID)".into()))?;
    let mut labels = p.labels.unwrap_or_default();
    for tag in p.Tags.as_deref().unwrap_or("").split(',') {
        if let Some((k, v)) = tag.split_once(':') {
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    for (k, v) in [
        ("project", p.project),
        ("stage", p.stage),
        ("service", p.service),
        ("impacted_entity", p.ImpactedEntity),
    ] {
        if let Some(v) = v {
            labels.insert(k.to_string(), v);
        }
    }
    Ok(Ingested {
        format: Format::Keptn,
        problems: vec![Problem {
            source: Source::Keptn,
            status,
            title: p.ProblemTitle,
            summary: None,
            labels,
            annotations: BTreeMap::new(),
            starts_at: None,
            fingerprint: id,
            links: Default::default(),
        }],
        not_processed: 0,
        rejected: Vec::new(),
        notification_reason: None,
    })
}
