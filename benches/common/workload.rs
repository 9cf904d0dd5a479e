//! Synthetic rules files and Alertmanager webhook bodies for the benchmarks.
//! Shared by `benches/engine.rs` (criterion, native) and `benches/wasm-engine`
//! (the same workloads timed natively and as wasm32-wasip2).
//!
//! Rule `i` of the *mixed* set has title mode `i % 3` (exact, prefix, regex) and
//! one label matcher of kind `i % 4` (`=`, `!=`, `=~`, `!~`). A *hit* alert is
//! built for one target rule: only that rule matches it. A *miss* alert matches
//! no rule, so every rule is evaluated (the worst case for a linear scan).

#![allow(dead_code)]

use std::fmt::Write;
use std::hint::black_box;

// The including program's own names for the core: `remediator::...` in benches/engine.rs,
// the same crate imported by benches/wasm-engine.
use super::{ingest, plan, Format, RuleRecord, RuleSet};

/// What one benchmark's rules exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Title mode `i % 3` and label kind `i % 4`, both conditions per rule.
    Mixed,
    TitleExact,
    TitlePrefix,
    TitleRegex,
    /// A title regex with no literal to index (case-insensitive): always evaluated.
    TitleRegexNoLiteral,
    LabelEq,
    LabelNe,
    LabelRe,
    LabelNre,
    /// A general `!~` regex (no literal fast path): always evaluated.
    LabelNreRegex,
}

impl Kind {
    pub const SINGLE: [Kind; 9] = [
        Kind::TitleExact,
        Kind::TitlePrefix,
        Kind::TitleRegex,
        Kind::TitleRegexNoLiteral,
        Kind::LabelEq,
        Kind::LabelNe,
        Kind::LabelRe,
        Kind::LabelNre,
        Kind::LabelNreRegex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Mixed => "mixed",
            Kind::TitleExact => "title_exact",
            Kind::TitlePrefix => "title_prefix",
            Kind::TitleRegex => "title_regex",
            Kind::TitleRegexNoLiteral => "title_regex_noliteral",
            Kind::LabelEq => "label_eq",
            Kind::LabelNe => "label_ne",
            Kind::LabelRe => "label_re",
            Kind::LabelNre => "label_nre",
            Kind::LabelNreRegex => "label_nre_regex",
        }
    }
}

fn title_mode(i: usize) -> usize {
    i % 3
}

/// The alertname that satisfies rule `i`'s title condition (and no other rule's).
fn title_for(i: usize) -> String {
    match title_mode(i) {
        0 => format!("Svc{i:04}ErrorRate"),
        1 => format!("Svc{i:04}LatencyP99High"),
        _ => format!("Svc{i:04}SaturationCritical"),
    }
}

fn title_condition(i: usize, mode: usize) -> String {
    match mode {
        0 => format!("title: Svc{i:04}ErrorRate"),
        1 => format!("title_prefix: Svc{i:04}Latency"),
        _ => format!("title_regex: 'Svc{i:04}Saturation(Warning|Critical)'"),
    }
}

/// Label matcher of kind `k` for rule `i`. Hit alerts satisfy all four kinds
/// (severity=critical, env=production, service=svc<target>-api, namespace=shop);
/// miss alerts (service=other-svc, env=production, namespace=shop) satisfy none
/// of the label-only variants below. A `!=` that fails for every miss alert is
/// necessarily the same matcher in every rule (`env!="production"`).
fn label_condition(i: usize, k: usize, miss_variant: bool) -> String {
    match (k, miss_variant) {
        (0, false) => r#"'severity="critical"'"#.to_string(),
        (0, true) => format!(r#"'service="svc{i:04}-api"'"#),
        (1, false) => r#"'env!="staging"'"#.to_string(),
        (1, true) => r#"'env!="production"'"#.to_string(),
        (2, _) => format!(r#"'service=~"svc{i:04}-(api|web)"'"#),
        (_, false) => r#"'namespace!~"kube-.*"'"#.to_string(),
        (_, true) => r#"'namespace!~"sh.*"'"#.to_string(),
    }
}

/// A remediator/v1 rules file with `n` rules of `kind`.
pub fn rules_yaml(kind: Kind, n: usize) -> String {
    let mut y = String::from("apiVersion: remediator/v1\nrules:\n");
    for i in 0..n {
        let (title, label) = match kind {
            Kind::Mixed => (
                Some(title_condition(i, title_mode(i))),
                Some(label_condition(i, i % 4, false)),
            ),
            Kind::TitleExact => (Some(title_condition(i, 0)), None),
            Kind::TitlePrefix => (Some(title_condition(i, 1)), None),
            Kind::TitleRegex => (Some(title_condition(i, 2)), None),
            Kind::TitleRegexNoLiteral => (
                Some(format!("title_regex: '(?i)svc{i:04}saturation'")),
                None,
            ),
            Kind::LabelEq => (None, Some(label_condition(i, 0, true))),
            Kind::LabelNe => (None, Some(label_condition(i, 1, true))),
            Kind::LabelRe => (None, Some(label_condition(i, 2, true))),
            Kind::LabelNre => (None, Some(label_condition(i, 3, true))),
            Kind::LabelNreRegex => (None, Some(format!(r#"'namespace!~"(sh|ns{i:04})op"'"#))),
        };
        let _ = writeln!(y, "  - name: r{i:04}\n    match:");
        if let Some(t) = title {
            let _ = writeln!(y, "      {t}");
        }
        if let Some(l) = label {
            let _ = writeln!(y, "      labels: [{l}]");
        }
        let _ = writeln!(y, "    actions: [{{flag: Flag{i:04}, state: off}}]");
    }
    y
}

/// One alert of a webhook group.
#[derive(Debug, Clone)]
pub struct Alert {
    pub alertname: String,
    pub service: String,
    pub summary: String,
    pub fingerprint: String,
}

/// `alerts` alerts, alert `j` matching exactly one rule of a mixed set of `rules`
/// rules; targets spread evenly over the file (rules are scanned in file order).
pub fn hits(rules: usize, alerts: usize) -> Vec<Alert> {
    (0..alerts)
        .map(|j| {
            let t = if alerts <= rules {
                (2 * j + 1) * rules / (2 * alerts)
            } else {
                j % rules
            };
            Alert {
                alertname: title_for(t),
                service: format!("svc{t:04}-api"),
                summary: format!("svc{t:04}-api is degraded on instance {j}"),
                fingerprint: format!("{:016x}", 0x5eed_0000_u64 + j as u64),
            }
        })
        .collect()
}

/// `alerts` alerts that no rule of any generated set matches.
pub fn misses(alerts: usize) -> Vec<Alert> {
    (0..alerts)
        .map(|j| Alert {
            alertname: format!("UnmatchedAlert{j:03}"),
            service: "other-svc".into(),
            summary: format!("nothing handles this one ({j})"),
            fingerprint: format!("{:016x}", 0xdead_0000_u64 + j as u64),
        })
        .collect()
}

/// An Alertmanager (version 4) webhook body carrying `alerts`, firing, with the
/// labels and annotations a real one has.
pub fn body(alerts: &[Alert], starts_at: &str) -> Vec<u8> {
    let mut b = String::from(
        r#"{"receiver":"remediator","status":"firing","version":"4","groupKey":"{}:{alertname=\"bench\"}","truncatedAlerts":0,"groupLabels":{"alertname":"bench"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","alerts":["#,
    );
    for (j, a) in alerts.iter().enumerate() {
        if j > 0 {
            b.push(',');
        }
        let _ = write!(
            b,
            r#"{{"status":"firing","labels":{{"alertname":"{name}","env":"production","instance":"10.0.{hi}.{lo}:9090","job":"node","namespace":"shop","service":"{svc}","severity":"critical"}},"annotations":{{"summary":"{summary}","description":"Generated by the remediator benchmarks."}},"startsAt":"{starts_at}","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"{fp}"}}"#,
            name = a.alertname,
            hi = j / 250,
            lo = j % 250,
            svc = a.service,
            summary = a.summary,
            fp = a.fingerprint,
        );
    }
    b.push_str("]}");
    b.into_bytes()
}

pub const STARTS_AT: &str = "2026-11-26T14:02:06.305Z";

/// The clock every planned decision sees.
pub const NOW_MS: i64 = 1_764_165_726_000;

/// Ingest, match and plan one webhook group: what the engine does before any
/// state is read or any action is sent. Returns the number of matched alerts.
pub fn pipeline(set: &RuleSet, body: &[u8]) -> usize {
    let ingested = ingest::ingest(Some(Format::Alertmanager), body).expect("ingests");
    let history = RuleRecord::default();
    let mut matched = 0;
    for p in &ingested.problems {
        if let Some(rule) = set.find(p) {
            black_box(plan::decide(rule, p.status, None, &history, NOW_MS, 0));
            matched += 1;
        }
    }
    matched
}
