//! Webhook bodies in, [`Problem`]s out. Format from the route, or detected from the body.

pub mod alertmanager;
pub mod keptn;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Alertmanager,
    Grafana,
    Keptn,
}

/// Rejected alerts reported one by one; those beyond count in `not_processed`.
pub const MAX_REJECTED: usize = 100;

#[derive(Debug)]
pub struct Ingested {
    pub format: Format,
    pub problems: Vec<Problem>,
    /// Alerts the sender left out (`truncatedAlerts`) or we refused to process.
    pub not_processed: u64,
    /// Alerts of a well-formed group that could not be turned into a [`Problem`].
    pub rejected: Vec<Rejected>,
    /// Why Alertmanager (0.32+) sent this notification, e.g. "repeat interval elapsed".
    pub notification_reason: Option<String>,
}

/// One alert of a group that could not be turned into a [`Problem`]. Permanent: the
/// sender would send it the same way again, so a retry cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its position in the payload's `alerts`.
    pub index: usize,
    /// Names the field: `alerts[3].labels.alertname: missing`.
    pub reason: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum IngestError {
    /// Not JSON at all (400).
    Malformed(String),
    /// JSON of the wrong shape (422); the message names the field.
    Invalid(String),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Malformed(m) | IngestError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Parse a webhook body. `route` pins the format; `None` detects it.
pub fn ingest(route: Option<Format>, body: &[u8]) -> Result<Ingested, IngestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::Malformed(format!("body is not valid JSON: {e}")))?;
    let format = match route {
        Some(f) => f,
        None => detect(&value)?,
    };
    match format {
        Format::Alertmanager => alertmanager::alertmanager(value),
        Format::Grafana => alertmanager::grafana(value),
        Format::Keptn => keptn::keptn(value),
    }
}

fn detect(v: &Value) -> Result<Format, IngestError> {
    let has = |k: &str| v.get(k).is_some();
    let keptn_type = v
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("sh.keptn."));
    if !v.is_object() {
        Err(IngestError::Invalid("body must be a JSON object".into()))
    } else if has("alerts") && has("orgId") {
        Ok(Format::Grafana)
    } else if has("alerts") {
        Ok(Format::Alertmanager)
    } else if has("ProblemTitle") || keptn_type {
        Ok(Format::Keptn)
    } else {
        Err(IngestError::Invalid(
            "unrecognized payload: expected an Alertmanager webhook (alerts, version \"4\"), a Grafana webhook (alerts, orgId) or a Keptn problem (ProblemTitle, or a sh.keptn.* CloudEvent)".into(),
        ))
    }
}

/// Deserialize with the failing field's path in the message (`alerts[2].labels`).
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, IngestError> {
    typed_at("", value).map_err(IngestError::Invalid)
}

/// [`typed`] for a value found at `at` (`alerts[2]`): the message names its full path.
pub(crate) fn typed_at<T: DeserializeOwned>(at: &str, value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (at, path.as_str()) {
            ("", ".") => return e.inner().to_string(),
            (at, ".") => at.to_string(),
            ("", p) => p.to_string(),
            (at, p) if p.starts_with('[') => format!("{at}{p}"),
            (at, p) => format!("{at}.{p}"),
        };
        format!("{path}: {}", e.inner())
    })
}
