//! Remediation rules: parsing the three accepted formats into one model, and matching.

pub mod duration;
pub mod keptn;
pub mod matcher;
pub mod model;
pub mod own;

use serde::Deserialize;

pub use model::{Action, Policy, Rule, RuleSet, RulesFormat, ScaleChange, TitleMatch, UnleashName};

use crate::problem::Problem;

/// Peek at the top-level keys to pick the format; unknown keys are allowed here
/// because the chosen format's own parse rejects them with a location.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    remediations: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rules: Option<serde::de::IgnoredAny>,
}

/// Parse a rules file in any accepted format. Errors name the line (YAML and type
/// errors) or the rule and field (validation errors).
pub fn parse(text: &str) -> Result<RuleSet, String> {
    let probe: Probe = yaml(text)?;
    let (format, rules) = match probe {
        Probe {
            api_version: Some(v),
            ..
        } if v.starts_with("spec.keptn.sh/") => (RulesFormat::Keptn08, keptn::from_08(yaml(text)?)?),
        Probe {
            remediations: Some(_),
            rules: None,
            ..
        } => (RulesFormat::Keptn06, keptn::from_06(yaml(text)?)?),
        Probe { rules: Some(_), .. } => (RulesFormat::Own, own::from_own(yaml(text)?)?),
        _ => {
            return Err(
                "unrecognized rules file: expected `remediations:` (Keptn 0.6), `apiVersion: spec.keptn.sh/...` (Keptn 0.8) or `rules:` (remediator/v1)"
                    .into(),
            )
        }
    };
    if rules.is_empty() {
        return Err("the rules file defines no rules".into());
    }
    Ok(RuleSet { format, rules })
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    // No snippet: the message names line and column; the rules' text stays out of reports.
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| match e.location() {
        Some(loc) => {
            let at = format!("line {}, column {}", loc.line(), loc.column());
            let msg = e.to_string();
            let msg = msg.strip_suffix(&format!(" at {at}")).unwrap_or(&msg);
            format!("{at}: {msg}")
        }
        None => e.to_string(),
    })
}

impl Rule {
    /// Whether this rule's conditions hold for `problem` (catch-all-ness aside).
    pub fn matches(&self, problem: &Problem) -> bool {
        let title_ok = self.titles.is_empty()
            || problem
                .titles()
                .any(|t| self.titles.iter().any(|m| m.matches(t)));
        title_ok
            && self
                .labels
                .iter()
                .all(|m| m.matches(problem.label(&m.name)))
    }
}

impl RuleSet {
    /// The first matching rule in file order; a catch-all only when nothing else matches.
    pub fn find(&self, problem: &Problem) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| !r.catch_all && r.matches(problem))
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|r| r.catch_all && r.matches(problem))
            })
    }
}

impl Rule {
    /// A readable JSON view of the rule, for `GET /rules`.
    pub fn describe(&self) -> serde_json::Value {
        let titles: Vec<String> = self
            .titles
            .iter()
            .map(|t| match t {
                TitleMatch::Exact(s) => format!("= {s}"),
                TitleMatch::Prefix(s) => format!("prefix {s}"),
                TitleMatch::Regex(r) => format!("=~ {}", r.as_str()),
            })
            .collect();
        let actions: Vec<serde_json::Value> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Flag {
                    flag,
                    enabled,
                    project,
                    environment,
                    ..
                } => serde_json::json!({
                    "flag": flag, "state": if *enabled { "on" } else { "off" },
                    "project": project, "environment": environment, "revert": self.reverts(a),
                }),
                Action::Scale {
                    change, on_resolve, ..
                } => serde_json::json!({
                    "scale": change.to_string(), "on_resolve": on_resolve.map(|c| c.to_string()),
                    "revert": self.reverts(a),
                }),
            })
            .collect();
        let p = &self.policy;
        let dur = |d: Option<std::time::Duration>| d.map(|d| format!("{}s", d.as_secs()));
        serde_json::json!({
            "name": self.name,
            "catch_all": self.catch_all,
            "titles": titles,
            "labels": self.labels.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "actions": actions,
            "cooldown": dur(p.cooldown),
            "max_actions": p.max_actions.map(|(n, w)| format!("{n} per {}s", w.as_secs())),
            "escalate_after": dur(p.escalate_after),
            "dry_run": p.dry_run,
        })
    }
}
