//! Spin application variables and component variable templates, resolved the
//! way Spin's `spin-expressions` crate does it:
//!
//! * application variables (`[variables]`) come from the first provider that
//!   has a value (`--variable k=v` on our CLI, then env `SPIN_VARIABLE_<NAME>`),
//!   else their `default`; a `required` variable with neither fails with a
//!   `provider` error when something needs it;
//! * component variables (`[component.X.variables]`) are templates over
//!   application variables, resolved on every `get`;
//! * names must be lower-snake keys, else `invalid-name`; a name the component
//!   does not declare is `undefined`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::{bail, Result};

/// Errors with the same split as `fermyon:spin/variables@2.0.0`'s `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarError {
    InvalidName(String),
    Undefined(String),
    Provider(String),
    Other(String),
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarError::InvalidName(m) => write!(f, "invalid variable name: {m}"),
            VarError::Undefined(m) => write!(f, "undefined variable: {m}"),
            VarError::Provider(m) => write!(f, "variables provider error: {m}"),
            VarError::Other(m) => write!(f, "variables error: {m}"),
        }
    }
}

/// One part of a `{{ expr }}` template (Spin's `Template`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Expr(String),
}

/// A parsed template such as `"{{ scheme }}://{{ host }}:8080"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(s: &str) -> Result<Self, VarError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{{") {
                let Some((expr, tail)) = after.split_once("}}") else {
                    return Err(VarError::Other(format!(
                        "invalid template {s:?}: unmatched '{{{{' in template"
                    )));
                };
                parts.push(Part::Expr(expr.trim().to_string()));
                rest = tail;
            } else if let Some(idx) = rest.find("{{") {
                parts.push(Part::Lit(rest[..idx].to_string()));
                rest = &rest[idx..];
            } else {
                parts.push(Part::Lit(rest.to_string()));
                rest = "";
            }
        }
        Ok(Template { parts })
    }

    /// The text with each `{{ expr }}` replaced by `value(expr)`.
    pub fn render(
        &self,
        value: impl Fn(&str) -> Result<String, VarError>,
    ) -> Result<String, VarError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Expr(e) => out.push_str(&value(e)?),
            }
        }
        Ok(out)
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e.as_str()),
            Part::Lit(_) => None,
        })
    }
}

/// Spin's variable-key rule: lower-case ASCII letters, digits and single
/// underscores; starts with a letter, ends with a letter or digit.
pub fn validate_key(key: &str) -> Result<(), VarError> {
    let reason = if key.is_empty() {
        Some("must not be empty".to_string())
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(format!(
            "invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ))
    } else if !key.as_bytes()[0].is_ascii_lowercase() {
        Some("must start with a lowercase ASCII letter".to_string())
    } else if !key.as_bytes()[key.len() - 1].is_ascii_alphanumeric() {
        Some("must end with a lowercase ASCII letter or digit".to_string())
    } else if key.contains("__") {
        Some("must not contain multiple consecutive underscores".to_string())
    } else {
        None
    };
    match reason {
        Some(r) => Err(VarError::InvalidName(format!("{key:?}: {r}"))),
        None => Ok(()),
    }
}

/// One `[variables]` entry.
#[derive(Debug, Clone)]
pub struct AppVariable {
    pub default: Option<String>,
    pub secret: bool,
}

/// Where values come from, in order (Spin: `--variable` first, then env).
#[derive(Debug, Clone, Default)]
pub struct Providers {
    /// `--variable name=value` given to the host.
    pub cli: HashMap<String, String>,
    /// Snapshot of `SPIN_VARIABLE_*` taken at startup (Spin reads the process
    /// environment, which does not change while it runs).
    pub env: HashMap<String, String>,
}

impl Providers {
    pub fn from_process_env(cli: HashMap<String, String>) -> Self {
        let env = std::env::vars()
            .filter(|(k, _)| k.starts_with("SPIN_VARIABLE_"))
            .collect();
        Providers { cli, env }
    }

    fn get(&self, key: &str) -> Option<String> {
        if let Some(v) = self.cli.get(key) {
            return Some(v.clone());
        }
        self.env
            .get(&format!("SPIN_VARIABLE_{}", key.to_ascii_uppercase()))
            .cloned()
    }
}

/// Application variables plus one component's templates.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub component_id: String,
    pub app: BTreeMap<String, AppVariable>,
    pub component: BTreeMap<String, Template>,
    pub providers: Providers,
}

impl Resolver {
    /// Validates names and that every template refers to a declared
    /// application variable (Spin rejects the app at load time otherwise).
    pub fn new(
        component_id: &str,
        app: BTreeMap<String, AppVariable>,
        component_raw: &BTreeMap<String, String>,
        providers: Providers,
    ) -> Result<Self> {
        for k in app.keys() {
            if let Err(e) = validate_key(k) {
                bail!("[variables]: {e}");
            }
        }
        for k in providers.cli.keys() {
            if !app.contains_key(k) {
                bail!("--variable {k}: no such application variable in [variables]");
            }
        }
        let mut component = BTreeMap::new();
        for (k, v) in component_raw {
            if let Err(e) = validate_key(k) {
                bail!("component variables: {e}");
            }
            let t =
                Template::parse(v).map_err(|e| anyhow::anyhow!("component variable {k}: {e}"))?;
            for var in t.vars() {
                if !app.contains_key(var) {
                    bail!("component variable {k}: template refers to unknown variable {var:?}");
                }
            }
            component.insert(k.clone(), t);
        }
        Ok(Resolver {
            component_id: component_id.to_string(),
            app,
            component,
            providers,
        })
    }

    /// An application variable's value (providers, then default).
    pub fn app_value(&self, key: &str) -> Result<String, VarError> {
        let Some(var) = self.app.get(key) else {
            return Err(VarError::InvalidName(key.to_string()));
        };
        if let Some(v) = self.providers.get(key) {
            return Ok(v);
        }
        var.default.clone().ok_or_else(|| {
            VarError::Provider(format!("no provider resolved required variable {key:?}"))
        })
    }

    /// An application variable's value from its default only (what Spin's
    /// loader uses to validate templates before any provider is consulted).
    pub fn default_value(&self, key: &str) -> Result<String, VarError> {
        self.app
            .get(key)
            .and_then(|v| v.default.clone())
            .ok_or_else(|| VarError::Provider(format!("no default for {key:?}")))
    }

    /// `fermyon:spin/variables@2.0.0#get` for this component.
    pub fn get(&self, name: &str) -> Result<String, VarError> {
        validate_key(name)?;
        let Some(t) = self.component.get(name) else {
            return Err(VarError::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.component_id
            )));
        };
        t.render(|k| self.app_value(k))
    }

    /// Every application variable resolved (Spin's `prepare`, used for
    /// `allowed_outbound_hosts`); fails if any required one has no value.
    pub fn prepare(&self) -> Result<HashMap<String, String>, VarError> {
        self.app
            .keys()
            .map(|k| self.app_value(k).map(|v| (k.clone(), v)))
            .collect()
    }

    /// A one-line, secret-free description of where each value comes from.
    pub fn describe(&self) -> Vec<String> {
        self.app
            .iter()
            .map(|(k, v)| {
                let (src, val) = if let Some(x) = self.providers.cli.get(k) {
                    ("--variable", Some(x.clone()))
                } else if let Some(x) = self
                    .providers
                    .env
                    .get(&format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()))
                {
                    ("env", Some(x.clone()))
                } else if let Some(d) = &v.default {
                    ("default", Some(d.clone()))
                } else {
                    ("MISSING (required)", None)
                };
                match (v.secret, val) {
                    (_, None) => format!("{k} = <{src}>"),
                    (true, Some(_)) => format!("{k} = <secret> ({src})"),
                    (false, Some(x)) => format!("{k} = {x:?} ({src})"),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(env: &[(&str, &str)]) -> Resolver {
        let mut app = BTreeMap::new();
        app.insert(
            "url".to_string(),
            AppVariable {
                default: Some("http://d".into()),
                secret: false,
            },
        );
        app.insert(
            "token".to_string(),
            AppVariable {
                default: None,
                secret: true,
            },
        );
        let mut comp = BTreeMap::new();
        comp.insert("url".to_string(), "{{ url }}/x".to_string());
        comp.insert("token".to_string(), "Bearer {{token}}".to_string());
        comp.insert("lit".to_string(), "plain".to_string());
        let providers = Providers {
            cli: HashMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Resolver::new("c", app, &comp, providers).unwrap()
    }

    #[test]
    fn templates_parse_like_spin() {
        let t = Template::parse("a-{{ x }}-b{{y}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Lit("a-".into()),
                Part::Expr("x".into()),
                Part::Lit("-b".into()),
                Part::Expr("y".into())
            ]
        );
        assert!(Template::parse("{{ x }} {{ y").is_err());
        assert!(Template::parse("plain").unwrap().is_literal());
    }

    #[test]
    fn defaults_env_required_and_errors() {
        let r = resolver(&[]);
        assert_eq!(r.get("url").unwrap(), "http://d/x");
        assert_eq!(r.get("lit").unwrap(), "plain");
        assert!(matches!(r.get("token"), Err(VarError::Provider(_))));
        assert!(matches!(r.get("nope"), Err(VarError::Undefined(_))));
        assert!(matches!(r.get("Bad-Name"), Err(VarError::InvalidName(_))));
        assert!(r.prepare().is_err());

        let r = resolver(&[
            ("SPIN_VARIABLE_URL", "http://e"),
            ("SPIN_VARIABLE_TOKEN", "t"),
        ]);
        assert_eq!(r.get("url").unwrap(), "http://e/x");
        assert_eq!(r.get("token").unwrap(), "Bearer t");
        assert!(r.prepare().is_ok());
        assert!(r.describe().iter().all(|l| !l.contains("\"t\"")));
    }

    #[test]
    fn unknown_template_variable_is_rejected() {
        let mut comp = BTreeMap::new();
        comp.insert("a".to_string(), "{{ missing }}".to_string());
        assert!(Resolver::new("c", BTreeMap::new(), &comp, Providers::default()).is_err());
    }
}
