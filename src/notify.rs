//! `notify`: an outbound HTTP notification after remediator acts, reverts or finds a
//! rule's circuit open. A rule names a channel (an origin configured by Spin
//! variables), a plain path and a JSON body whose strings may hold `{{ field }}`
//! placeholders. Templates are compiled when the rules load, so a typo is a rules
//! error; values are inserted into a `serde_json::Value` and never reach the URL.
//! Pure: building and reading requests only; sending is in `actions::notify`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::problem::Problem;

/// When a notify runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The rule acted on a firing problem (also when an action failed).
    Act,
    /// A resolved problem's actions were undone.
    Revert,
    /// The rule's circuit breaker refused to act (once per breaker window).
    CircuitOpen,
    /// The blast-radius budget refused to act.
    BudgetExhausted,
}

impl NotifyEvent {
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        [
            NotifyEvent::Act,
            NotifyEvent::Revert,
            NotifyEvent::CircuitOpen,
            NotifyEvent::BudgetExhausted,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Act => "act",
            NotifyEvent::Revert => "revert",
            NotifyEvent::CircuitOpen => "circuit_open",
            NotifyEvent::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// A rule's notifications, shared (rules without their own share `defaults.notify`).
pub type Notifies = std::sync::Arc<Vec<Notify>>;

/// One compiled `notify` entry of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub channel: String,
    pub on: Vec<NotifyEvent>,
    pub method: &'static str,
    /// `None`: the channel's (secret) path variable.
    pub path: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Template,
}

/// A JSON value whose strings may hold placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Lit(Value),
    /// A string that is exactly one placeholder: its value keeps its JSON type.
    One(Expr),
    /// Text and placeholders, rendered as one string.
    Text(Vec<Part>),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    field: Field,
    filter: Option<Filter>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Event,
    Rule,
    Outcome,
    Detail,
    DryRun,
    Delivery,
    Actions,
    /// RFC 3339, now plus this many milliseconds.
    Now(i64),
    NowMs,
    Title,
    Status,
    Source,
    Summary,
    Occurrence,
    Fingerprint,
    StartsAt,
    Labels,
    Label(String),
    Annotations,
    Annotation(String),
    Links,
    Link(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Filter {
    /// Alertmanager silence matchers, one exact match per pair.
    Matchers,
    /// `["name:value", …]`, Grafana annotation tags.
    Tags,
    /// As text, with Slack's control characters escaped (`<!channel>` cannot ping).
    Slack,
}

/// What a template can name, for error messages.
pub const FIELDS: &str = "event, rule, outcome, detail, dry_run, delivery, actions, now, now + <duration>, now_ms, \
problem.title, problem.status, problem.source, problem.summary, problem.occurrence, problem.fingerprint, \
problem.starts_at, problem.labels, problem.labels.<name>, problem.annotations, problem.annotations.<name>, \
problem.links, problem.links.ruleUID/dashboardURL/panelURL; filters: | matchers, | tags, | slack";

impl Expr {
    /// A placeholder's inside (`problem.title | slack`): also how the rules cache
    /// reads back [`Expr::source`].
    pub fn parse(inner: &str) -> Result<Expr, String> {
        let (left, filter) = match inner.split_once('|') {
            Some((l, f)) => (
                l.trim(),
                Some(match f.trim() {
                    "matchers" => Filter::Matchers,
                    "tags" => Filter::Tags,
                    "slack" => Filter::Slack,
                    other => {
                        return Err(format!(
                            "unknown filter {other:?} (filters: matchers, tags, slack)"
                        ))
                    }
                }),
            ),
            None => (inner.trim(), None),
        };
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        };
        let field = match left {
            "event" => Field::Event,
            "rule" => Field::Rule,
            "outcome" => Field::Outcome,
            "detail" => Field::Detail,
            "dry_run" => Field::DryRun,
            "delivery" => Field::Delivery,
            "actions" => Field::Actions,
            "now" => Field::Now(0),
            "now_ms" => Field::NowMs,
            "problem.title" => Field::Title,
            "problem.status" => Field::Status,
            "problem.source" => Field::Source,
            "problem.summary" => Field::Summary,
            "problem.occurrence" => Field::Occurrence,
            "problem.fingerprint" => Field::Fingerprint,
            "problem.starts_at" => Field::StartsAt,
            "problem.labels" => Field::Labels,
            "problem.annotations" => Field::Annotations,
            "problem.links" => Field::Links,
            "problem.links.ruleUID" => Field::Link("ruleUID"),
            "problem.links.dashboardURL" => Field::Link("dashboardURL"),
            "problem.links.panelURL" => Field::Link("panelURL"),
            l => {
                if let Some(d) = l
                    .strip_prefix("now")
                    .and_then(|r| r.trim().strip_prefix('+'))
                {
                    let d = crate::rules::duration::parse(d.trim())
                        .map_err(|e| format!("in {{{{ {l} }}}}: {e}"))?;
                    Field::Now(d.as_millis().min(i64::MAX as u128) as i64)
                } else if let Some(n) = l.strip_prefix("problem.labels.").filter(|n| name_ok(n)) {
                    Field::Label(n.to_string())
                } else if let Some(n) = l
                    .strip_prefix("problem.annotations.")
                    .filter(|n| name_ok(n))
                {
                    Field::Annotation(n.to_string())
                } else {
                    return Err(format!("unknown field {l:?} (fields: {FIELDS})"));
                }
            }
        };
        if matches!(filter, Some(Filter::Matchers | Filter::Tags))
            && !matches!(field, Field::Labels | Field::Annotations)
        {
            return Err(format!(
                "{left:?}: the filters matchers and tags apply to problem.labels and problem.annotations only"
            ));
        }
        Ok(Expr { field, filter })
    }
}

impl Expr {
    /// The placeholder's text, which [`Expr::parse`] reads back to an equal
    /// expression: how the rules cache (rules::compiled) stores it.
    pub fn source(&self) -> String {
        let field = match &self.field {
            Field::Event => "event".to_string(),
            Field::Rule => "rule".into(),
            Field::Outcome => "outcome".into(),
            Field::Detail => "detail".into(),
            Field::DryRun => "dry_run".into(),
            Field::Delivery => "delivery".into(),
            Field::Actions => "actions".into(),
            Field::Now(0) => "now".into(),
            Field::Now(ms) => format!("now + {ms}ms"),
            Field::NowMs => "now_ms".into(),
            Field::Title => "problem.title".into(),
            Field::Status => "problem.status".into(),
            Field::Source => "problem.source".into(),
            Field::Summary => "problem.summary".into(),
            Field::Occurrence => "problem.occurrence".into(),
            Field::Fingerprint => "problem.fingerprint".into(),
            Field::StartsAt => "problem.starts_at".into(),
            Field::Labels => "problem.labels".into(),
            Field::Label(n) => format!("problem.labels.{n}"),
            Field::Annotations => "problem.annotations".into(),
            Field::Annotation(n) => format!("problem.annotations.{n}"),
            Field::Links => "problem.links".into(),
            Field::Link(l) => format!("problem.links.{l}"),
        };
        match self.filter {
            None => field,
            Some(Filter::Matchers) => field + " | matchers",
            Some(Filter::Tags) => field + " | tags",
            Some(Filter::Slack) => field + " | slack",
        }
    }
}

/// Compile a body; `at` names where it is (e.g. `rules[0] ("a").notify[0].body`).
pub fn compile(v: &Value, at: &str) -> Result<Template, String> {
    Ok(match v {
        Value::String(s) => compile_str(s).map_err(|e| format!("{at}: {e}"))?,
        // Loops rather than iterator chains here and below: fewer generic copies in the wasm.
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, t) in items.iter().enumerate() {
                out.push(compile(t, &format!("{at}[{i}]"))?);
            }
            Template::Array(out)
        }
        Value::Object(map) => {
            let mut out = Vec::with_capacity(map.len());
            for (k, t) in map {
                out.push((k.clone(), compile(t, &format!("{at}.{k}"))?));
            }
            Template::Object(out)
        }
        other => Template::Lit(other.clone()),
    })
}

fn compile_str(s: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        if i > 0 {
            parts.push(Part::Lit(rest[..i].to_string()));
        }
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| format!("{{{{ without a closing }}}} in {s:?}"))?;
        parts.push(Part::Expr(Expr::parse(&after[..j])?));
        rest = &after[j + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(match parts.as_slice() {
        [] => Template::Lit(Value::String(String::new())),
        [Part::Lit(t)] => Template::Lit(Value::String(t.clone())),
        [Part::Expr(e)] => Template::One(e.clone()),
        _ => Template::Text(parts),
    })
}

/// What a template is rendered over.
pub struct Facts<'a> {
    pub event: NotifyEvent,
    pub rule: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
    pub dry_run: bool,
    pub delivery: i64,
    /// One line per action, e.g. "turned EnablePromotion off in production".
    pub actions: Vec<String>,
    pub now_ms: i64,
    pub problem: &'a Problem,
}

impl Facts<'_> {
    fn value(&self, e: &Expr) -> Value {
        let v = self.field(e);
        if e.filter == Some(Filter::Slack) {
            let mut t = String::new();
            text(&v, &mut t);
            return Value::String(
                t.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
            );
        }
        v
    }

    fn field(&self, e: &Expr) -> Value {
        let p = self.problem;
        let s = |t: &str| Value::String(t.to_string());
        let opt = |t: Option<&String>| s(t.map_or("", String::as_str));
        let map = |m: &BTreeMap<String, String>| {
            let mut object = Map::new();
            let mut list = Vec::new();
            for (k, v) in m {
                match e.filter {
                    None | Some(Filter::Slack) => {
                        object.insert(k.clone(), s(v));
                    }
                    Some(Filter::Tags) => list.push(s(&format!("{k}:{v}"))),
                    Some(Filter::Matchers) => list.push(
                        serde_json::json!({"name": k, "value": v, "isRegex": false, "isEqual": true}),
                    ),
                }
            }
            match e.filter {
                None | Some(Filter::Slack) => Value::Object(object),
                _ => Value::Array(list),
            }
        };
        match &e.field {
            Field::Event => s(self.event.as_str()),
            Field::Rule => s(self.rule),
            Field::Outcome => s(self.outcome),
            Field::Detail => s(self.detail),
            Field::DryRun => Value::Bool(self.dry_run),
            Field::Delivery => Value::from(self.delivery),
            Field::Actions => {
                let mut list = Vec::new();
                for a in &self.actions {
                    list.push(s(a));
                }
                Value::Array(list)
            }
            Field::Now(plus) => s(&crate::audit::rfc3339(self.now_ms.saturating_add(*plus))),
            Field::NowMs => Value::from(self.now_ms),
            Field::Title => s(&p.title),
            Field::Status => s(match p.status {
                crate::problem::Status::Firing => "firing",
                crate::problem::Status::Resolved => "resolved",
            }),
            Field::Source => s(p.source.as_str()),
            Field::Summary => opt(p.summary.as_ref()),
            Field::Occurrence => s(&p.occurrence()),
            Field::Fingerprint => s(&p.fingerprint),
            Field::StartsAt => opt(p.starts_at.as_ref()),
            Field::Labels => map(&p.labels),
            Field::Label(n) => opt(p.labels.get(n)),
            Field::Annotations => map(&p.annotations),
            Field::Annotation(n) => opt(p.annotations.get(n)),
            Field::Links => {
                let mut m = Map::new();
                for (k, v) in [
                    ("ruleUID", &p.links.rule_uid),
                    ("dashboardURL", &p.links.dashboard_url),
                    ("panelURL", &p.links.panel_url),
                ] {
                    if let Some(v) = v {
                        m.insert(k.to_string(), s(v));
                    }
                }
                Value::Object(m)
            }
            Field::Link(which) => opt(match *which {
                "ruleUID" => p.links.rule_uid.as_ref(),
                "dashboardURL" => p.links.dashboard_url.as_ref(),
                _ => p.links.panel_url.as_ref(),
            }),
        }
    }
}

/// A value as it reads inside a longer string.
fn text(v: &Value, out: &mut String) {
    match v {
        Value::String(t) => out.push_str(t),
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                text(item, out);
            }
        }
        Value::Object(m) => {
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                text(item, out);
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn render(t: &Template, facts: &Facts) -> Value {
    match t {
        Template::Lit(v) => v.clone(),
        Template::One(e) => facts.value(e),
        Template::Text(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Lit(l) => out.push_str(l),
                    Part::Expr(e) => text(&facts.value(e), &mut out),
                }
            }
            Value::String(out)
        }
        Template::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(render(i, facts));
            }
            Value::Array(out)
        }
        Template::Object(fields) => {
            let mut out = Map::new();
            for (k, v) in fields {
                out.insert(k.clone(), render(v, facts));
            }
            Value::Object(out)
        }
    }
}

/// Methods a notify may use (each carries the JSON body).
pub fn method(m: Option<&str>) -> Result<&'static str, String> {
    match m.map(str::to_ascii_uppercase).as_deref() {
        None | Some("POST") => Ok("POST"),
        Some("PUT") => Ok("PUT"),
        Some("PATCH") => Ok("PATCH"),
        Some(other) => Err(format!("{other:?} is not POST, PUT or PATCH")),
    }
}

/// Headers a rule may not set: the transport's own, and the credential, which
/// belongs in the channel's secret variable rather than in a rules file.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "authorization",
    "content-type",
];

pub fn header(name: &str, value: &str) -> Result<(String, String), String> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty()
        || !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
    {
        return Err(format!("{name:?} is not an HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(format!(
            "{name:?} cannot be set by a rule (authorization comes from the channel's notify_N_authorization variable)"
        ));
    }
    if !value
        .chars()
        .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        return Err(format!(
            "{name}: the value has a control or non-ASCII character"
        ));
    }
    Ok((lower, value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Links, Source, Status};

    fn problem() -> Problem {
        Problem {
            source: Source::Grafana,
            status: Status::Firing,
            title: "High <!channel> & co".into(),
            summary: None,
            labels: [("service", "carts"), ("team", "a&b")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: None,
            fingerprint: "fp".into(),
            links: Links {
                panel_url: Some("https://grafana.test/d/x?viewPanel=2".into()),
                ..Links::default()
            },
        }
    }

    fn render_one(template: &str, p: &Problem) -> Value {
        let t = compile(&serde_json::json!({ "v": template }), "body").unwrap();
        let facts = Facts {
            event: NotifyEvent::CircuitOpen,
            rule: "r",
            outcome: "circuit_open",
            detail: "",
            dry_run: false,
            delivery: 7,
            actions: vec![
                "turned F off in production".into(),
                "scaled carts by +1".into(),
            ],
            now_ms: 1_764_165_726_000,
            problem: p,
        };
        render(&t, &facts)["v"].clone()
    }

    #[test]
    fn fields_filters_and_time() {
        let p = problem();
        for (template, expected) in [
            (
                "{{ now + 2h }}",
                serde_json::json!("2025-11-26T16:02:06.000Z"),
            ),
            ("{{now}}", serde_json::json!("2025-11-26T14:02:06.000Z")),
            ("{{ now_ms }}", serde_json::json!(1_764_165_726_000i64)),
            ("{{ delivery }}", serde_json::json!(7)),
            (
                "{{ problem.labels | tags }}",
                serde_json::json!(["service:carts", "team:a&b"]),
            ),
            (
                "{{ problem.title | slack }}",
                serde_json::json!("High &lt;!channel&gt; &amp; co"),
            ),
            (
                "{{ actions }}",
                serde_json::json!(["turned F off in production", "scaled carts by +1"]),
            ),
            (
                "a: {{ actions }}",
                serde_json::json!("a: turned F off in production; scaled carts by +1"),
            ),
            (
                "{{ problem.links.panelURL }}",
                serde_json::json!("https://grafana.test/d/x?viewPanel=2"),
            ),
            (
                "{{ problem.links }}",
                serde_json::json!({"panelURL": "https://grafana.test/d/x?viewPanel=2"}),
            ),
            (
                "{{ problem.source }}/{{ problem.status }}/{{ event }}",
                serde_json::json!("grafana/firing/circuit_open"),
            ),
            ("}} {not} {{ rule }}", serde_json::json!("}} {not} r")),
        ] {
            assert_eq!(render_one(template, &p), expected, "{template}");
        }
    }
}
