//! Webhook bodies in, [`Problem`]s out. Format from the route, or detected from the body.

pub mod alertmanager;
pub mod keptn;

use std::fmt::Write as _;

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
    T::deserialize(&value).map_err(|e| {
        let path = error_path::<T>(&value, &e);
        let path = match (at, path.as_str()) {
            ("", ".") => return e.to_string(),
            (at, ".") => at.to_string(),
            ("", p) => p.to_string(),
            (at, p) if p.starts_with('[') => format!("{at}{p}"),
            (at, p) => format!("{at}.{p}"),
        };
        format!("{path}: {e}")
    })
}

/// Where deserializing `value` as `T` fails, as `alerts[2].labels` (`.`: the value itself),
/// the path serde_path_to_error gave. Only on the error path (that crate tracks the path on
/// every read and cost ~30 KB of wasm): `value` is printed one node per line and parsed
/// again as `T`, and the failing line is looked up. A value or an opening bracket is on
/// its node's line; a struct's missing field is reported at its closing bracket, also its
/// node's; an enum's unknown variant in map form (`{"x": ..}`) at the key, which belongs
/// to the enum, the map. tests/ingest.rs `error_paths_*` pin the messages it gave.
fn error_path<T: DeserializeOwned>(value: &Value, error: &serde_json::Error) -> String {
    let Ok(text) = serde_json::to_string_pretty(value) else {
        return ".".into();
    };
    let e = match serde_json::from_str::<T>(&text) {
        Err(e) if e.line() > 0 => e,
        _ => return ".".into(),
    };
    let mut find = FindLine {
        line: e.line(),
        at: 0,
        path: String::new(),
        key: None,
        empty_map: false,
    };
    if !find.node(value, 0) {
        return ".".into();
    }
    if let Some((parent, key_end)) = find.key {
        // An enum's map with more than one key fails as a whole (`{}` is found itself).
        let multi = !find.empty_map
            && error
                .to_string()
                .starts_with("invalid value: map, expected map with a single key");
        if e.column() <= key_end || multi {
            find.path.truncate(parent);
        }
    }
    if find.path.is_empty() {
        ".".into()
    } else {
        find.path
    }
}

/// Walks a value in `to_string_pretty`'s line order, to the node on `line` (1-based).
struct FindLine {
    line: usize,
    /// Lines before the node being walked.
    at: usize,
    path: String,
    /// When the node found is a map's member: the path's length without its key, and the
    /// column where the key ends.
    key: Option<(usize, usize)>,
    /// The node found is `{}`.
    empty_map: bool,
}

impl FindLine {
    /// True, with `path` naming the node, when `line` belongs to `v` or a node inside it.
    fn node(&mut self, v: &Value, depth: usize) -> bool {
        self.at += 1;
        if self.at == self.line {
            self.empty_map = matches!(v, Value::Object(o) if o.is_empty());
            return true;
        }
        let len = self.path.len();
        match v {
            Value::Array(a) if !a.is_empty() => {
                for (i, c) in a.iter().enumerate() {
                    let _ = write!(self.path, "[{i}]");
                    self.key = None;
                    if self.node(c, depth + 1) {
                        return true;
                    }
                    self.path.truncate(len);
                }
            }
            Value::Object(o) if !o.is_empty() => {
                for (k, c) in o {
                    if len > 0 {
                        self.path.push('.');
                    }
                    self.path.push_str(k);
                    // Indented two spaces a level, then the key as a JSON string.
                    let quoted = serde_json::to_string(k).map_or(0, |q| q.len());
                    self.key = Some((len, 2 * (depth + 1) + quoted));
                    if self.node(c, depth + 1) {
                        return true;
                    }
                    self.path.truncate(len);
                }
            }
            _ => return false,
        }
        // The closing bracket.
        self.key = None;
        self.at += 1;
        self.at == self.line
    }
}
