//! remediator's own rules format (`apiVersion: remediator/v1`): a superset of Keptn's.

use serde::Deserialize;

use super::keptn::Scalar;
use super::matcher::Matcher;
use super::model::{Action, Rule, ScaleChange, TitleMatch, UnleashName};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnFile {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    pub rules: Vec<OwnRule>,
}

/// Per-file defaults; a rule's own fields override them, the Spin variables fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub when: Option<When>,
    /// Catch-all: used when no other rule matches.
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    pub actions: Vec<OwnAction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Exact title (alertname, summary annotation, or Keptn ProblemTitle).
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_prefix: Option<String>,
    #[serde(default)]
    pub title_regex: Option<String>,
    /// Alertmanager-syntax matchers, all of which must hold.
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnAction {
    /// Feature flag to set.
    #[serde(default)]
    pub flag: Option<String>,
    /// `on`/`off` (or `true`/`false`) for `flag`.
    #[serde(default)]
    pub state: Option<Scalar>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// Scaling: `+N`, `-N` or `=N`.
    #[serde(default)]
    pub scale: Option<Scalar>,
}

pub fn from_own(file: OwnFile) -> Result<Vec<Rule>, String> {
    if let Some(v) = &file.api_version {
        if v != "remediator/v1" {
            return Err(format!(
                "apiVersion: {v:?} is not supported (expected remediator/v1)"
            ));
        }
    }
    let names = |field: &str, v: &Option<String>| -> Result<Option<UnleashName>, String> {
        v.as_deref()
            .map(UnleashName::parse)
            .transpose()
            .map_err(|e| format!("{field}: {e}"))
    };
    let default_project = names("defaults.project", &file.defaults.project)?;
    let default_env = names("defaults.environment", &file.defaults.environment)?;
    let mut seen = std::collections::BTreeSet::new();
    file.rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("rules[{i}] ({:?})", r.name);
            if r.name.trim().is_empty() {
                return Err(format!("rules[{i}]: name must not be empty"));
            }
            if !seen.insert(r.name.clone()) {
                return Err(format!("{at}: name is used by an earlier rule"));
            }
            let when = r.when.unwrap_or_default();
            let mut titles = Vec::new();
            if let Some(t) = when.title {
                titles.push(TitleMatch::Exact(t));
            }
            if let Some(t) = when.title_prefix {
                titles.push(TitleMatch::Prefix(t));
            }
            if let Some(t) = when.title_regex {
                let re = regex_lite::Regex::new(&t)
                    .map_err(|e| format!("{at}.match.title_regex: invalid regex: {e}"))?;
                titles.push(TitleMatch::Regex(re));
            }
            let labels = when
                .labels
                .iter()
                .enumerate()
                .map(|(j, m)| Matcher::parse(m).map_err(|e| format!("{at}.match.labels[{j}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if titles.is_empty() && labels.is_empty() && !r.default {
                return Err(format!(
                    "{at}: no match conditions; give match.title/title_prefix/title_regex/labels, or default: true for a catch-all"
                ));
            }
            let project = names(&format!("{at}.project"), &r.project)?.or(default_project.clone());
            let environment =
                names(&format!("{at}.environment"), &r.environment)?.or(default_env.clone());
            if r.actions.is_empty() {
                return Err(format!("{at}: actions must not be empty"));
            }
            let actions = r
                .actions
                .into_iter()
                .enumerate()
                .map(|(j, a)| {
                    own_action(a, &project, &environment).map_err(|e| format!("{at}.actions[{j}].{e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Rule {
                name: r.name,
                titles,
                labels,
                catch_all: r.default,
                actions,
            })
        })
        .collect()
}

fn own_action(
    a: OwnAction,
    project: &Option<UnleashName>,
    environment: &Option<UnleashName>,
) -> Result<Action, String> {
    match (a.flag, a.scale) {
        (Some(flag), None) => {
            let state = a.state.ok_or("state: required with flag (on or off)")?;
            let enabled = match state {
                Scalar::Bool(b) => b,
                Scalar::Str(s) if matches!(s.as_str(), "on" | "true") => true,
                Scalar::Str(s) if matches!(s.as_str(), "off" | "false") => false,
                other => return Err(format!("state: {other:?} must be on or off")),
            };
            let name = |field: &str, v: Option<String>, fallback: &Option<UnleashName>| {
                v.as_deref()
                    .map(UnleashName::parse)
                    .transpose()
                    .map(|n| n.or(fallback.clone()))
                    .map_err(|e| format!("{field}: {e}"))
            };
            Ok(Action::Flag {
                flag: UnleashName::parse(&flag).map_err(|e| format!("flag: {e}"))?,
                enabled,
                project: name("project", a.project, project)?,
                environment: name("environment", a.environment, environment)?,
            })
        }
        (None, Some(scale)) => {
            if a.state.is_some() || a.project.is_some() || a.environment.is_some() {
                return Err("scale: state/project/environment apply to flag actions only".into());
            }
            let text = match scale {
                Scalar::Int(i) => format!("{i:+}"),
                Scalar::Str(s) => s,
                Scalar::Bool(_) => return Err("scale: must be +N, -N or =N".into()),
            };
            Ok(Action::Scale {
                change: ScaleChange::parse(&text).map_err(|e| format!("scale: {e}"))?,
            })
        }
        (Some(_), Some(_)) => {
            Err("flag/scale: an action is either a flag or a scale, not both".into())
        }
        (None, None) => Err("flag/scale: an action needs `flag` (with `state`) or `scale`".into()),
    }
}
