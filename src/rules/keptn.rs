//! The two Keptn formats: 0.6's `remediation.yaml` and 0.8's `kind: Remediation`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{Action, Policy, Rule, ScaleChange, TitleMatch, UnleashName};

/// A scalar as YAML may type it: `+1` is an integer and `off` a string in YAML 1.2,
/// so accept whatever the parser chose and interpret it per action.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => format!("{i:+}"),
            Scalar::Bool(true) => "on".into(),
            Scalar::Bool(false) => "off".into(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keptn06File {
    pub remediations: Vec<Keptn06Remediation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keptn06Remediation {
    pub name: String,
    pub actions: Vec<Keptn06Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keptn06Action {
    pub action: String,
    pub value: Scalar,
}

pub fn from_06(file: Keptn06File) -> Result<Vec<Rule>, String> {
    file.remediations
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("remediations[{i}] ({:?})", r.name);
            if r.name.trim().is_empty() {
                return Err(format!("{at}: name must not be empty"));
            }
            let actions = r
                .actions
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    keptn_action(&a.action, &a.value.text())
                        .map_err(|e| format!("{at}.actions[{j}]: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if actions.is_empty() {
                return Err(format!("{at}: actions must not be empty"));
            }
            Ok(Rule {
                titles: vec![TitleMatch::Prefix(r.name.clone())],
                name: r.name,
                labels: vec![],
                catch_all: false,
                actions,
                policy: Policy::default(),
                notify: Default::default(),
            })
        })
        .collect()
}

/// Keptn's action vocabulary: `scaling` with a delta, `featuretoggle` (0.6) or
/// `toggle-feature` (0.8 unleash-service) with `Flag:on|off`.
fn keptn_action(action: &str, value: &str) -> Result<Action, String> {
    match action {
        "scaling" => Ok(Action::Scale {
            change: ScaleChange::parse(value).map_err(|e| format!("value: {e}"))?,
            revert: None,
            on_resolve: None,
        }),
        "featuretoggle" | "toggle-feature" => {
            let (flag, state) = value
                .split_once(':')
                .ok_or_else(|| format!("value: {value:?} must be FlagName:on or FlagName:off"))?;
            flag_action(flag.trim(), state.trim())
        }
        other => Err(format!(
            "action: unknown action {other:?} (expected scaling or featuretoggle)"
        )),
    }
}

fn flag_action(flag: &str, state: &str) -> Result<Action, String> {
    let enabled = match state.to_ascii_lowercase().as_str() {
        "on" | "true" | "enabled" => true,
        "off" | "false" | "disabled" => false,
        _ => return Err(format!("value: flag state {state:?} must be on or off")),
    };
    Ok(Action::Flag {
        flag: UnleashName::parse(flag).map_err(|e| format!("value: {e}"))?,
        enabled,
        project: None,
        environment: None,
        revert: None,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Keptn08File {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    pub spec: Keptn08Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keptn08Spec {
    pub remediations: Vec<Keptn08Remediation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Keptn08Remediation {
    pub problem_type: String,
    pub actions_on_open: Vec<Keptn08Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keptn08Action {
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub description: Option<String>,
    pub value: Keptn08Value,
}

/// 0.8's unleash-service took `value: {EnablePromotion: "off"}`; scaling took `"1"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Keptn08Value {
    Map(BTreeMap<String, Scalar>),
    Scalar(Scalar),
}

pub fn from_08(file: Keptn08File) -> Result<Vec<Rule>, String> {
    if !file.api_version.starts_with("spec.keptn.sh/") {
        return Err(format!(
            "apiVersion: {:?} is not a Keptn remediation version (spec.keptn.sh/0.1.x)",
            file.api_version
        ));
    }
    if file.kind != "Remediation" {
        return Err(format!("kind: {:?} must be Remediation", file.kind));
    }
    file.spec
        .remediations
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("spec.remediations[{i}] ({:?})", r.problem_type);
            let mut actions = Vec::new();
            for (j, a) in r.actions_on_open.iter().enumerate() {
                let ctx = |e: String| format!("{at}.actionsOnOpen[{j}]: {e}");
                match &a.value {
                    Keptn08Value::Scalar(s) => {
                        actions.push(keptn_action(&a.action, &s.text()).map_err(ctx)?)
                    }
                    Keptn08Value::Map(m) if a.action != "scaling" => {
                        for (flag, state) in m {
                            actions.push(
                                keptn_action(&a.action, &format!("{flag}:{}", state.text()))
                                    .map_err(ctx)?,
                            );
                        }
                    }
                    Keptn08Value::Map(_) => {
                        return Err(ctx("value: scaling takes a number such as \"1\"".into()))
                    }
                }
            }
            if actions.is_empty() {
                return Err(format!("{at}: actionsOnOpen must not be empty"));
            }
            // Keptn 0.8 used `default` as the fallback problem type.
            let catch_all = matches!(r.problem_type.as_str(), "default" | "*");
            Ok(Rule {
                titles: if catch_all {
                    vec![]
                } else {
                    vec![TitleMatch::Exact(r.problem_type.clone())]
                },
                name: r.problem_type,
                labels: vec![],
                catch_all,
                actions,
                policy: Policy::default(),
                notify: Default::default(),
            })
        })
        .collect()
}
