//! The JSON report every webhook answers with, and its mapping to a status code.

use serde::{Deserialize, Serialize};

use crate::ingest::{Format, Rejected};
use crate::problem::{Source, Status};
use crate::rules::RulesFormat;

#[derive(Debug, Serialize)]
pub struct Report {
    pub format: Format,
    pub dry_run: bool,
    pub rules_source: String,
    pub rules_version: String,
    /// Set when the preferred rules source could not be used (see `GET /healthz`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_warning: Option<String>,
    pub rules_format: RulesFormat,
    pub problems: Vec<ProblemReport>,
    /// Alerts the sender truncated (`truncatedAlerts`).
    pub not_processed: u64,
    /// Processed (and audited) but left out of this report to keep it small.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_not_shown: u64,
    /// Alerts of the group that could not be processed, each with the field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// Why the sender sent it (Alertmanager 0.32+), as it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_reason: Option<String>,
    /// Left out of the metrics: a delivery in which no rule matched any alert, unless
    /// `count_unmatched` or `audit_unmatched` (it changed nothing; see `uncounted`).
    #[serde(skip)]
    pub uncounted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct ProblemReport {
    pub title: String,
    pub status: Status,
    pub source: Source,
    pub occurrence: String,
    pub rule: Option<String>,
    pub outcome: ProblemOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For repeats: when (and in which audited delivery) this occurrence was first handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_handled: Option<FirstHandled>,
    /// The sender's links for the alert (generatorURL, ruleUID, dashboardURL, panelURL).
    #[serde(skip_serializing_if = "crate::problem::Links::is_empty")]
    pub links: crate::problem::Links,
    /// The alert's `summary` annotation: the audit page's reason for a decision.
    #[serde(skip)]
    pub summary: Option<String>,
    pub actions: Vec<ActionReport>,
    /// The rule's notifications for this event; they never change `outcome` or the
    /// status code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotifyReport>,
}

/// One notification sent (or not) for a problem.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyReport {
    pub channel: String,
    pub event: crate::notify::NotifyEvent,
    pub outcome: NotifyOutcome,
    /// The method and URL, with a channel's secret path shown as `<secret path>`.
    pub request: String,
    /// The receiver's answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOutcome {
    Sent,
    Failed,
    DryRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstHandled {
    pub at: String,
    /// The `delivery` id of its entries in `GET /audit`.
    pub delivery: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemOutcome {
    /// Every action was carried out.
    Acted,
    NoMatchingRule,
    /// At least one action failed.
    Failed,
    /// Deliberately not acted on (the reason is in `detail`).
    Ignored,
    /// Decided, not sent.
    DryRun,
    /// A repeat or duplicate of an occurrence already acted on.
    AlreadyHandled,
    /// A policy (cooldown) said not now.
    Skipped,
    /// The rule's circuit breaker is open: it acted too often.
    CircuitOpen,
    /// The blast-radius budget (`max_changes`) held back at least one change;
    /// nothing more is changed in that project until its window frees up.
    BudgetExhausted,
    /// Another delivery is acting on this occurrence right now.
    InProgress,
    /// Resolved, and what remediator changed has been undone.
    Reverted,
    /// The state store failed; nothing was done.
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    #[serde(flatten)]
    pub target: ActionTarget,
    pub outcome: ActionOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// With read-back on: whether Unleash showed the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum ActionTarget {
    #[serde(rename = "featuretoggle")]
    Flag {
        flag: String,
        project: String,
        environment: String,
        enabled: bool,
    },
    /// A `flexibleRollout` strategy's percentage.
    #[serde(rename = "rollout")]
    Rollout {
        flag: String,
        project: String,
        environment: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strategy: Option<String>,
        rollout: u8,
    },
    #[serde(rename = "scaling")]
    Scale {
        value: String,
        service: Option<String>,
        namespace: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    Done,
    Failed,
    Skipped,
    DryRun,
}

/// Text from a webhook (fingerprints, labels, titles) made safe for one log line:
/// control characters are escaped (`\n`, `\r`, `\t`, `\\`, else `\u{..}`), so that an
/// alert cannot forge or split log lines.
pub fn log_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // C0, DEL, C1, and the Unicode line and paragraph separators.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

impl Report {
    /// Keep the first `max` problems; count the rest.
    pub fn shorten(&mut self, max: usize) {
        if self.problems.len() > max {
            self.problems_not_shown += (self.problems.len() - max) as u64;
            self.problems.truncate(max);
        }
    }

    /// Alertmanager's delivery contract: 5xx only when a retry could succeed.
    /// `rejected` alerts never change it: a retry would send them the same way, and
    /// Alertmanager drops a whole group on any 4xx. (A group with no valid alert is
    /// refused as 422 before a report exists.)
    pub fn status(&self) -> u16 {
        let retry_helps = self
            .problems
            .iter()
            .flat_map(|p| &p.actions)
            .any(|a| a.outcome == ActionOutcome::Failed && a.retryable == Some(true));
        let unavailable = self.problems.iter().any(|p| {
            matches!(
                p.outcome,
                ProblemOutcome::InProgress | ProblemOutcome::Error
            )
        });
        if retry_helps {
            502
        } else if unavailable {
            503
        } else {
            200
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn log_safe_escapes_line_breaks_and_control_characters() {
        assert_eq!(log_safe("fp1/2026"), "fp1/2026");
        assert_eq!(
            log_safe("fp\nremediator: forged\r\t\u{1b}[31m\u{7f}\u{85}\u{2028}"),
            "fp\\nremediator: forged\\r\\t\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}"
        );
        // The escape character itself is escaped, so an escape cannot be faked.
        assert_eq!(log_safe("a\\nb"), "a\\\\nb");
        assert_eq!(log_safe("Grüße ✓"), "Grüße ✓");
    }
}
