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
    if let Some(f @ (Format::Alertmanager | Format::Grafana)) = route {
        if let Some(ingested) = alertmanager::fast(f, body) {
            return ingested;
        }
    }
    general(route, body)
}

/// Every body through a generic [`Value`] first, so that an error can name its field.
pub fn general(route: Option<Format>, body: &[u8]) -> Result<Ingested, IngestError> {
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
    let e = match T::deserialize(&value) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    let path = error_path::<T>(value, &e);
    let path = match (at, path.as_str()) {
        ("", "") => return Err(e),
        (at, "") => at.to_string(),
        ("", p) => p.to_string(),
        (at, p) if p.starts_with('[') => format!("{at}{p}"),
        (at, p) => format!("{at}.{p}"),
    };
    Err(format!("{path}: {e}"))
}

/// Where deserializing `root` as `T` fails with `message`: the path serde_path_to_error
/// gave (`alerts[2].labels`; empty: the value itself). Found only on the error path, with
/// the same deserializer (serde_path_to_error tracks the path on every read, and a second
/// deserializer costs as much wasm): a value's children are read in order, so the first
/// failing child is the one whose prefix of the children first fails with `message`; it
/// is the culprit unless the failure is the node's own (a missing field, an enum's key),
/// then the node is (a missing field is taken as the node's own when the node lacks that
/// field: true of these flat types). tests/ingest.rs `error_paths_*` pin the messages.
fn error_path<T: DeserializeOwned>(mut root: Value, message: &str) -> String {
    let fails = |v: &Value| matches!(T::deserialize(v), Err(e) if e.to_string() == message);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'));
    let mut steps: Vec<usize> = Vec::new();
    loop {
        let node = node_mut(&mut root, &steps);
        let n = match node {
            Value::Array(a) => a.len(),
            Value::Object(o) if missing.is_some_and(|f| !o.contains_key(f)) => break,
            Value::Object(o) => o.len(),
            _ => break,
        };
        let with = |root: &Value, f: &dyn Fn(&mut Value)| {
            let mut v = root.clone();
            f(node_mut(&mut v, &steps));
            fails(&v)
        };
        // The shortest prefix of the children that fails (all of them do).
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if with(&root, &|node| keep(node, mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo == 0 {
            break; // fails without children: the node's own failure
        }
        let k = lo - 1;
        // A map member whose value does not matter: the failure is its key's, the node's.
        let other = |v: &mut Value| {
            *v = if v.is_null() {
                Value::Bool(false)
            } else {
                Value::Null
            }
        };
        if node_mut(&mut root, &steps).is_object()
            && with(&root, &|node| {
                keep(node, k + 1);
                if let Some(v) = child_mut(node, k) {
                    other(v);
                }
            })
        {
            break;
        }
        // Later children (and later members of the ancestors) are never read: drop them.
        keep(node_mut(&mut root, &steps), k + 1);
        steps.push(k);
    }
    let mut path = String::new();
    let mut node = &root;
    for &i in &steps {
        match node {
            Value::Array(a) => {
                let _ = write!(path, "[{i}]");
                node = &a[i];
            }
            Value::Object(o) => {
                let (key, v) = o.iter().nth(i).expect("a child");
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                node = v;
            }
            _ => break,
        }
    }
    path
}

/// The node at `steps` (child indices, in reading order) below `v`.
fn node_mut<'a>(mut v: &'a mut Value, steps: &[usize]) -> &'a mut Value {
    for &i in steps {
        v = child_mut(v, i).expect("a child");
    }
    v
}

fn child_mut(v: &mut Value, i: usize) -> Option<&mut Value> {
    match v {
        Value::Array(a) => a.get_mut(i),
        Value::Object(o) => o.values_mut().nth(i),
        _ => None,
    }
}

/// Keeps the first `n` children.
fn keep(v: &mut Value, n: usize) {
    match v {
        Value::Array(a) => a.truncate(n),
        Value::Object(o) => {
            let later: Vec<String> = o.keys().skip(n).cloned().collect();
            for k in later {
                o.remove(&k);
            }
        }
        _ => {}
    }
}
