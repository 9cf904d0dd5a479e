//! remediator's own rules format (`apiVersion: remediator/v1`): a superset of Keptn's.

use serde::Deserialize;

use super::duration;
use super::keptn::Scalar;
use super::matcher::Matcher;
use super::model::{Action, Percent, Policy, Rule, ScaleChange, TitleMatch, UnleashName};
use crate::notify::{self, Notifies, Notify, NotifyEvent};

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
    /// e.g. `20 per 1h`: the blast-radius budget across all rules, per Unleash
    /// project (scaling calls in a bucket of their own).
    #[serde(default)]
    pub max_changes: Option<String>,
    /// Notifications for rules that give no `notify` of their own.
    #[serde(default)]
    pub notify: Option<serde_json::Value>,
}

/// The most changes a budget may allow per window: its cell keeps one entry per
/// change in the window, and must stay a small key-value value.
pub const MAX_CHANGES_LIMIT: u32 = 1000;

/// `N per D` as a blast-radius budget; `field` names it in errors.
pub fn parse_max_changes(field: &str, v: &str) -> Result<(u32, std::time::Duration), String> {
    let (n, window) = duration::parse_rate(v).map_err(|e| format!("{field}: {e}"))?;
    if n > MAX_CHANGES_LIMIT {
        return Err(format!(
            "{field}: {v:?}: at most {MAX_CHANGES_LIMIT} changes per window"
        ));
    }
    if window.is_zero() {
        return Err(format!("{field}: {v:?}: the window must be longer than 0"));
    }
    Ok((n, window))
}

/// One `notify` entry, read from the YAML as a JSON value (the body is one anyway):
/// `channel` (a name of the `notify_<n>_name` variables), `on` (default `[act]`),
/// `method` (POST, PUT or PATCH), `path` (default: the channel's `notify_<n>_path`),
/// `headers` (literal values) and `body` (JSON; strings may hold `{{ field }}`).
/// By hand rather than derived: one deserializer instead of one per field type
/// (the wasm size budget).
fn own_notify(v: &serde_json::Value, at: &str) -> Result<Notify, String> {
    let Some(m) = v.as_object() else {
        return Err(format!(
            "{at}: must be a mapping (channel, on, method, path, headers, body)"
        ));
    };
    if let Some(k) = m.keys().find(|k| {
        !matches!(
            k.as_str(),
            "channel" | "on" | "method" | "path" | "headers" | "body"
        )
    }) {
        return Err(format!(
            "{at}: unknown field {k:?} (expected channel, on, method, path, headers, body)"
        ));
    }
    let text = |field: &str| -> Result<Option<&str>, String> {
        match m.get(field) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{at}.{field}: must be a string")),
        }
    };
    let channel = text("channel")?.ok_or_else(|| format!("{at}.channel: required"))?;
    let bad_name = channel.is_empty()
        || !channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if bad_name {
        return Err(format!(
            "{at}.channel: {channel:?} is not a channel name (letters, digits, '-', '_')"
        ));
    }
    let mut on = Vec::new();
    match m.get("on") {
        None => on.push(NotifyEvent::Act),
        Some(serde_json::Value::Array(list)) if !list.is_empty() => {
            for e in list {
                on.push(e.as_str().and_then(NotifyEvent::parse).ok_or_else(|| {
                    format!("{at}.on: {e} is not act, revert, circuit_open or budget_exhausted")
                })?);
            }
        }
        Some(_) => {
            return Err(format!(
                "{at}.on: must be a non-empty list of act, revert, circuit_open, budget_exhausted"
            ))
        }
    };
    let path = text("path")?;
    if let Some(e) = path.and_then(crate::config::path_error) {
        return Err(format!("{at}.path: {e}"));
    }
    let mut headers = Vec::new();
    match m.get("headers") {
        None => {}
        Some(serde_json::Value::Object(h)) => {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("{at}.headers.{k}: must be a string"))?;
                headers.push(notify::header(k, v).map_err(|e| format!("{at}.headers: {e}"))?);
            }
        }
        Some(_) => return Err(format!("{at}.headers: must be a mapping of strings")),
    }
    let body = m
        .get("body")
        .ok_or_else(|| format!("{at}.body: required"))?;
    Ok(Notify {
        channel: channel.to_string(),
        on,
        method: notify::method(text("method")?).map_err(|e| format!("{at}.method: {e}"))?,
        path: path.map(str::to_string),
        headers,
        body: notify::compile(body, &format!("{at}.body"))?,
    })
}

/// A `notify:` list (`at`: where it is, e.g. `rules[0] ("a")`).
fn own_notifies(list: &Option<serde_json::Value>, at: &str) -> Result<Notifies, String> {
    let mut out = Vec::new();
    match list {
        None => {}
        Some(serde_json::Value::Array(items)) => {
            for (i, n) in items.iter().enumerate() {
                out.push(own_notify(n, &format!("{at}.notify[{i}]"))?);
            }
        }
        Some(_) => return Err(format!("{at}.notify: must be a list")),
    }
    Ok(std::sync::Arc::new(out))
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
    /// e.g. `10m`: skip a new occurrence this soon after the rule last acted.
    #[serde(default)]
    pub cooldown: Option<String>,
    /// e.g. `3 per 1h`: circuit breaker.
    #[serde(default)]
    pub max_actions: Option<String>,
    /// e.g. `5m`: `actions` become an escalation ladder, one step per firing.
    #[serde(default)]
    pub escalate_after: Option<String>,
    /// Undo on resolve (default: on for flags, off for scaling).
    #[serde(default)]
    pub revert: Option<bool>,
    #[serde(default)]
    pub dry_run: bool,
    /// Read each flag back after changing it, and fail the action if Unleash does
    /// not show the change (default: the `unleash_verify` variable).
    #[serde(default)]
    pub verify: Option<bool>,
    pub actions: Vec<OwnAction>,
    /// Overrides `defaults.notify` (`[]`: none).
    #[serde(default)]
    pub notify: Option<serde_json::Value>,
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
    /// Instead of `state`: the percentage (0-100) of the flag's `flexibleRollout` strategy.
    #[serde(default)]
    pub rollout: Option<Scalar>,
    /// With `rollout`: which `flexibleRollout` strategy (id or title), when there are several.
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// Scaling: `+N`, `-N` or `=N`.
    #[serde(default)]
    pub scale: Option<Scalar>,
    /// Undo this action on resolve (overrides the rule's `revert`).
    #[serde(default)]
    pub revert: Option<bool>,
    /// Scaling only: what to apply on resolve instead of the inverse delta.
    #[serde(default)]
    pub on_resolve: Option<Scalar>,
}

/// The rules, and the file's blast-radius budget (`defaults.max_changes`).
pub type OwnRules = (Vec<Rule>, Option<(u32, std::time::Duration)>);

pub fn from_own(file: OwnFile) -> Result<OwnRules, String> {
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
    let max_changes = file
        .defaults
        .max_changes
        .as_deref()
        .map(|v| parse_max_changes("defaults.max_changes", v))
        .transpose()?;
    let default_notify = own_notifies(&file.defaults.notify, "defaults")?;
    let mut seen = std::collections::BTreeSet::new();
    let rules = file.rules
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
                let re = super::matcher::compile_bounded(&t, &t)
                    .map_err(|e| format!("{at}.match.title_regex: {e}"))?;
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
            let duration = |field: &str, v: &Option<String>| {
                v.as_deref()
                    .map(duration::parse)
                    .transpose()
                    .map_err(|e| format!("{at}.{field}: {e}"))
            };
            let policy = Policy {
                cooldown: duration("cooldown", &r.cooldown)?,
                max_actions: r
                    .max_actions
                    .as_deref()
                    .map(duration::parse_rate)
                    .transpose()
                    .map_err(|e| format!("{at}.max_actions: {e}"))?,
                escalate_after: duration("escalate_after", &r.escalate_after)?,
                revert: r.revert,
                dry_run: r.dry_run,
                verify: r.verify,
            };
            let notify = match &r.notify {
                Some(_) => own_notifies(&r.notify, &at)?,
                None => default_notify.clone(),
            };
            let rule = Rule {
                name: r.name,
                titles,
                labels,
                catch_all: r.default,
                actions,
                policy,
                notify,
            };
            for (j, a) in rule.actions.iter().enumerate() {
                if let Action::Scale { change: ScaleChange::Target(_), on_resolve: None, .. } = a {
                    if rule.reverts(a) {
                        return Err(format!(
                            "{at}.actions[{j}].revert: a scale to =N has no inverse; give on_resolve (e.g. \"=2\") or revert: false"
                        ));
                    }
                }
            }
            Ok(rule)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((rules, max_changes))
}

fn own_action(
    a: OwnAction,
    project: &Option<UnleashName>,
    environment: &Option<UnleashName>,
) -> Result<Action, String> {
    match (a.flag, a.scale) {
        (Some(flag), None) => {
            if a.on_resolve.is_some() {
                return Err("on_resolve: applies to scale actions only".into());
            }
            let name = |field: &str, v: Option<String>, fallback: &Option<UnleashName>| {
                v.as_deref()
                    .map(UnleashName::parse)
                    .transpose()
                    .map(|n| n.or(fallback.clone()))
                    .map_err(|e| format!("{field}: {e}"))
            };
            let flag = UnleashName::parse(&flag).map_err(|e| format!("flag: {e}"))?;
            let project = name("project", a.project, project)?;
            let environment = name("environment", a.environment, environment)?;
            match (a.state, a.rollout) {
                (Some(_), Some(_)) => Err(
                    "state/rollout: a flag action sets either its state or its rollout, not both"
                        .into(),
                ),
                (None, None) => Err(
                    "state: required with flag (on or off), or rollout: a percentage (0-100)"
                        .into(),
                ),
                (None, Some(rollout)) => {
                    let percent = match rollout {
                        Scalar::Int(n) => Percent::new(n),
                        Scalar::Str(s) => Percent::parse(&s),
                        Scalar::Bool(b) => {
                            Err(format!("{b} is not a rollout percentage (0 to 100)"))
                        }
                    }
                    .map_err(|e| format!("rollout: {e}"))?;
                    let strategy = match a.strategy {
                        Some(s) if s.trim().is_empty() => {
                            return Err(
                                "strategy: must not be empty (a strategy id or title)".into()
                            )
                        }
                        s => s.map(|s| s.trim().to_string()),
                    };
                    Ok(Action::Rollout {
                        flag,
                        percent,
                        strategy,
                        project,
                        environment,
                        revert: a.revert,
                    })
                }
                (Some(state), None) => {
                    if a.strategy.is_some() {
                        return Err("strategy: applies to rollout actions only".into());
                    }
                    let enabled = match state {
                        Scalar::Bool(b) => b,
                        Scalar::Str(s) if matches!(s.as_str(), "on" | "true") => true,
                        Scalar::Str(s) if matches!(s.as_str(), "off" | "false") => false,
                        other => return Err(format!("state: {other:?} must be on or off")),
                    };
                    Ok(Action::Flag {
                        flag,
                        enabled,
                        project,
                        environment,
                        revert: a.revert,
                    })
                }
            }
        }
        (None, Some(scale)) => {
            if a.state.is_some()
                || a.rollout.is_some()
                || a.strategy.is_some()
                || a.project.is_some()
                || a.environment.is_some()
            {
                return Err(
                    "scale: state/rollout/strategy/project/environment apply to flag actions only"
                        .into(),
                );
            }
            let change = |field: &str, v: Scalar| {
                let text = match v {
                    Scalar::Int(i) => format!("{i:+}"),
                    Scalar::Str(s) => s,
                    Scalar::Bool(_) => return Err(format!("{field}: must be +N, -N or =N")),
                };
                ScaleChange::parse(&text).map_err(|e| format!("{field}: {e}"))
            };
            Ok(Action::Scale {
                change: change("scale", scale)?,
                revert: a.revert,
                on_resolve: a.on_resolve.map(|v| change("on_resolve", v)).transpose()?,
            })
        }
        (Some(_), Some(_)) => {
            Err("flag/scale: an action is either a flag or a scale, not both".into())
        }
        (None, None) => {
            Err("flag/scale: an action needs `flag` (with `state` or `rollout`) or `scale`".into())
        }
    }
}
