//! The one shape every webhook format is normalized into.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a problem came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
    Grafana,
    Keptn,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Keptn => "keptn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One problem (an alert, or a Keptn problem event), as the rules see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub source: Source,
    pub status: Status,
    /// `alertname` for alerts, `ProblemTitle` for Keptn.
    pub title: String,
    /// Alerts' `summary` annotation: Keptn's prometheus-service used it as the
    /// problem title, so rules may match it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    pub fingerprint: String,
    /// Grafana's links for the alert, kept for what remediator reports and sends.
    #[serde(skip_serializing_if = "Links::is_empty")]
    pub links: Links,
}

/// What the sender links an alert to: the alert rule's `generatorURL` (Alertmanager
/// and Grafana) and Grafana's rule, dashboard and panel (each absent when empty or not
/// sent). Kept in the audit too, so the audit page can link them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generator_url: Option<String>,
    #[serde(rename = "ruleUID", default, skip_serializing_if = "Option::is_none")]
    pub rule_uid: Option<String>,
    #[serde(
        rename = "dashboardURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    #[serde(rename = "panelURL", default, skip_serializing_if = "Option::is_none")]
    pub panel_url: Option<String>,
}

impl Links {
    pub fn is_empty(&self) -> bool {
        self.generator_url.is_none()
            && self.rule_uid.is_none()
            && self.dashboard_url.is_none()
            && self.panel_url.is_none()
    }
}

impl Problem {
    /// Identifies one occurrence: the same alert firing again later is a new one.
    pub fn occurrence(&self) -> String {
        match self.source {
            Source::Keptn => format!("keptn/{}", self.fingerprint),
            s => format!(
                "{}/{}/{}",
                s.as_str(),
                self.fingerprint,
                self.starts_at.as_deref().unwrap_or("-")
            ),
        }
    }

    /// The strings a rule's title may match: the title, then the summary.
    pub fn titles(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.title.as_str()).chain(self.summary.as_deref())
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A stable fingerprint for payloads that carry none (FNV-1a over sorted labels).
pub fn fingerprint_labels(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x100000001b3);
        }
    }
    format!("{hash:016x}")
}
