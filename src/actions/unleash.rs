//! Unleash admin API (v5+; tested on 7.4 and 8.2):
//! - on/off: `POST /api/admin/projects/{p}/features/{f}/environments/{e}/on|off`;
//! - rollout: `PATCH …/environments/{e}/strategies/{id}`, a JSON patch of the
//!   `flexibleRollout` strategy's `rollout` parameter (nothing else of it changes);
//! - reading either: `GET /api/admin/projects/{p}/features/{f}` (strategies per
//!   environment: Unleash 8 dropped the top-level ones).

use super::{body_excerpt, built, encode_segment, transport_error, ActionError};
use crate::config::{Config, Secret};
use crate::platform::{OutboundRequest, OutboundResponse, SendError};
use crate::rules::{Percent, UnleashName};

/// A request to the admin API of `flag` in `project`: `suffix` follows
/// `/api/admin/projects/{p}/features/{f}`. The raw token is what every Unleash version
/// accepts (7.x also takes "Bearer").
fn admin_request(
    method: http::Method,
    (project, flag): (&UnleashName, &UnleashName),
    suffix: &str,
    base_url: &str,
    token: &Secret,
    json: Option<serde_json::Value>,
) -> Result<OutboundRequest, ActionError> {
    let uri = format!(
        "{base_url}/api/admin/projects/{}/features/{}{suffix}",
        encode_segment(project.as_str()),
        encode_segment(flag.as_str()),
    );
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, token.expose())
        .header(http::header::ACCEPT, "application/json");
    let body = match json {
        Some(json) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            json.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    built("Unleash", "unleash_url and unleash_token", req.body(body))
}

/// `GET` one flag, as both kinds of change read it.
fn feature_request(
    project: &UnleashName,
    flag: &UnleashName,
    base_url: &str,
    token: &Secret,
) -> Result<OutboundRequest, ActionError> {
    admin_request(
        http::Method::GET,
        (project, flag),
        "",
        base_url,
        token,
        None,
    )
}

/// `flag "F" in project "P", environment "E"`: how messages name a flag setting.
fn flag_in(project: &UnleashName, flag: &UnleashName, environment: &UnleashName) -> String {
    format!(
        "flag {:?} in project {:?}, environment {:?}",
        flag.as_str(),
        project.as_str(),
        environment.as_str()
    )
}

/// The flag's entry for `environment`, from a successful `GET` of the flag.
fn environment_of(
    resp: &OutboundResponse,
    project: &UnleashName,
    flag: &UnleashName,
    environment: &UnleashName,
) -> Result<serde_json::Value, ActionError> {
    let mut v: serde_json::Value =
        serde_json::from_slice(resp.body()).map_err(|e| ActionError {
            message: format!("Unleash sent an unreadable flag {:?}: {e}", flag.as_str()),
            retryable: true,
        })?;
    let envs = v.get_mut("environments").and_then(|e| e.as_array_mut());
    envs.and_then(|envs| {
        let at = envs
            .iter()
            .position(|e| e.get("name").and_then(|n| n.as_str()) == Some(environment.as_str()))?;
        Some(envs.swap_remove(at))
    })
    .ok_or_else(|| ActionError {
        message: format!(
            "Unleash has no environment {:?} on flag {:?} in project {:?}",
            environment.as_str(),
            flag.as_str(),
            project.as_str()
        ),
        retryable: false,
    })
}

/// Why Unleash refused a change or a read. A missing flag or environment, or an
/// environment that requires change requests, cannot be fixed by retrying; auth
/// and server errors can (a token rotated, a permission granted, a server restarted).
fn failure(resp: &OutboundResponse, what: &str, environment: &str, cfg: &Config) -> ActionError {
    let status = resp.status().as_u16();
    let (message, retryable) = match status {
        404 => (
            format!("Unleash has no {what} (404: {})", body_excerpt(resp, cfg)),
            false,
        ),
        403 if needs_change_request(resp) => (
            format!(
                "environment {environment:?} requires change requests: Unleash refused the direct change to {what} (403); remediator does not open change requests"
            ),
            false,
        ),
        401 => (
            "Unleash refused the configured token (401); check variable unleash_token".into(),
            true,
        ),
        403 => (
            format!(
                "Unleash refused the configured token for {what} (403: {}); check variable unleash_token and its permissions",
                body_excerpt(resp, cfg)
            ),
            true,
        ),
        408 | 429 | 500..=599 => (
            format!(
                "Unleash answered {status} for {what}: {}",
                body_excerpt(resp, cfg)
            ),
            true,
        ),
        _ => (
            format!(
                "Unleash rejected {what} ({status}: {})",
                body_excerpt(resp, cfg)
            ),
            false,
        ),
    };
    ActionError { message, retryable }
}

/// Unleash Enterprise answers a direct change to an environment with change
/// requests as a `PermissionError` for `SKIP_CHANGE_REQUEST`.
fn needs_change_request(resp: &OutboundResponse) -> bool {
    let named = |v: &serde_json::Value| {
        v.get("permissions")
            .and_then(|p| p.as_array())
            .is_some_and(|p| p.iter().any(|p| p.as_str() == Some("SKIP_CHANGE_REQUEST")))
    };
    match serde_json::from_slice::<serde_json::Value>(resp.body()) {
        Ok(v) => named(&v) || v.to_string().contains("SKIP_CHANGE_REQUEST"),
        Err(_) => String::from_utf8_lossy(resp.body()).contains("SKIP_CHANGE_REQUEST"),
    }
}

/// One flag change, fully resolved (defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toggle {
    pub project: UnleashName,
    pub flag: UnleashName,
    pub environment: UnleashName,
    pub enabled: bool,
}

impl Toggle {
    /// `GET` the flag, to learn its current `enabled` value in our environment.
    pub fn read_request(
        &self,
        base_url: &str,
        token: &Secret,
    ) -> Result<OutboundRequest, ActionError> {
        feature_request(&self.project, &self.flag, base_url, token)
    }

    /// The flag's `enabled` value in this toggle's environment. `cfg` redacts
    /// what Unleash echoes back.
    pub fn read_outcome(
        &self,
        result: Result<OutboundResponse, SendError>,
        cfg: &Config,
    ) -> Result<bool, ActionError> {
        let resp = result.map_err(|e| transport_error("Unleash", &e))?;
        if !resp.status().is_success() {
            return Err(self.failure(&resp, cfg));
        }
        let env = environment_of(&resp, &self.project, &self.flag, &self.environment)?;
        env.get("enabled")
            .and_then(|b| b.as_bool())
            .ok_or_else(|| ActionError {
                message: format!(
                    "Unleash sent flag {:?} without an enabled state in environment {:?}",
                    self.flag.as_str(),
                    self.environment.as_str()
                ),
                retryable: false,
            })
    }

    pub fn request(&self, base_url: &str, token: &Secret) -> Result<OutboundRequest, ActionError> {
        let suffix = format!(
            "/environments/{}/{}",
            encode_segment(self.environment.as_str()),
            if self.enabled { "on" } else { "off" }
        );
        let target = (&self.project, &self.flag);
        admin_request(http::Method::POST, target, &suffix, base_url, token, None)
    }

    /// Interpret Unleash's answer. A missing flag or environment cannot be fixed
    /// by retrying; auth and server errors can (a token rotated, a server restarted).
    /// `cfg` redacts what Unleash echoes back.
    pub fn outcome(
        &self,
        result: Result<OutboundResponse, SendError>,
        cfg: &Config,
    ) -> Result<String, ActionError> {
        let resp = result.map_err(|e| transport_error("Unleash", &e))?;
        if resp.status().is_success() {
            return Ok(format!(
                "turned {} {}",
                if self.enabled { "on" } else { "off" },
                flag_in(&self.project, &self.flag, &self.environment)
            ));
        }
        Err(self.failure(&resp, cfg))
    }

    fn failure(&self, resp: &OutboundResponse, cfg: &Config) -> ActionError {
        let what = flag_in(&self.project, &self.flag, &self.environment);
        failure(resp, &what, self.environment.as_str(), cfg)
    }
}

/// One rollout change: a `flexibleRollout` strategy's percentage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub project: UnleashName,
    pub flag: UnleashName,
    pub environment: UnleashName,
    /// The rule's name for the strategy (id or title); `None`: the only one.
    pub strategy: Option<String>,
    pub percent: Percent,
}

/// A `flexibleRollout` strategy as read: its id and percentage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutState {
    pub strategy_id: String,
    pub percent: Percent,
}

/// Which `flexibleRollout` strategy of an environment a rollout is about.
#[derive(Debug, Clone, Copy)]
pub enum StrategyChoice<'a> {
    /// The environment's only one.
    Only,
    /// The rule's `strategy`: an id or a title.
    IdOrTitle(&'a str),
    /// The one found before (restore, read-back): `Ok(None)` if it is gone.
    Id(&'a str),
}

/// Pick the strategy from one environment of a flag as Unleash's admin API shows
/// it (`strategies` per environment), and read its percentage. Errors are
/// permanent and name `what` (the flag, project and environment) and the choices.
/// Shared with `remediator lint`.
pub fn select_rollout(
    env: &serde_json::Value,
    choice: StrategyChoice,
    what: &str,
) -> Result<Option<RolloutState>, String> {
    let field =
        |s: &serde_json::Value, k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let rollouts: Vec<&serde_json::Value> = env
        .get("strategies")
        .and_then(|s| s.as_array())
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let rollouts: Vec<&serde_json::Value> = rollouts
        .into_iter()
        .filter(|s| s.get("name").and_then(|n| n.as_str()) == Some("flexibleRollout"))
        .collect();
    let chosen: Vec<&serde_json::Value> = rollouts
        .iter()
        .copied()
        .filter(|s| match choice {
            StrategyChoice::Only => true,
            StrategyChoice::Id(id) => field(s, "id").as_deref() == Some(id),
            StrategyChoice::IdOrTitle(sel) => {
                field(s, "id").as_deref() == Some(sel) || field(s, "title").as_deref() == Some(sel)
            }
        })
        .collect();
    let known = || {
        let names: Vec<String> = rollouts
            .iter()
            .map(|s| {
                let id = field(s, "id").unwrap_or_default();
                match field(s, "title").filter(|t| !t.is_empty()) {
                    Some(t) => format!("{id} ({t:?})"),
                    None => id,
                }
            })
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let s = match (chosen.as_slice(), choice) {
        ([], StrategyChoice::Id(_)) => return Ok(None),
        ([one], _) => *one,
        ([], StrategyChoice::Only) => {
            return Err(format!(
                "{what} has no flexibleRollout strategy to set a rollout on"
            ))
        }
        ([], StrategyChoice::IdOrTitle(sel)) => {
            return Err(format!(
                "{what} has no flexibleRollout strategy with id or title {sel:?} (it has: {})",
                known()
            ))
        }
        (many, StrategyChoice::IdOrTitle(sel)) => {
            return Err(format!(
                "{what} has {} flexibleRollout strategies titled {sel:?}; name one by id in the action's strategy field",
                many.len()
            ))
        }
        (many, _) => {
            return Err(format!(
                "{what} has {} flexibleRollout strategies ({}); name one in the action's strategy field",
                many.len(),
                known()
            ))
        }
    };
    let strategy_id = field(s, "id").ok_or_else(|| {
        format!("Unleash sent a flexibleRollout strategy without an id on {what}")
    })?;
    let percent = match s.pointer("/parameters/rollout") {
        Some(serde_json::Value::String(t)) => Percent::parse(t),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not a rollout percentage (0 to 100)"))
            .and_then(Percent::new),
        _ => Err("it has no rollout parameter".into()),
    }
    .map_err(|e| format!("strategy {strategy_id} of {what}: unreadable rollout: {e}"))?;
    Ok(Some(RolloutState {
        strategy_id,
        percent,
    }))
}

impl Rollout {
    pub fn read_request(
        &self,
        base_url: &str,
        token: &Secret,
    ) -> Result<OutboundRequest, ActionError> {
        feature_request(&self.project, &self.flag, base_url, token)
    }

    fn what(&self) -> String {
        flag_in(&self.project, &self.flag, &self.environment)
    }

    /// The strategy this change is about, and its percentage. `by_id`: the id found
    /// earlier (restore and read-back look for that strategy, whatever its title now);
    /// otherwise the rule's selector picks it. `Ok(None)`: `by_id` is gone.
    pub fn read_outcome(
        &self,
        result: Result<OutboundResponse, SendError>,
        by_id: Option<&str>,
        cfg: &Config,
    ) -> Result<Option<RolloutState>, ActionError> {
        let resp = result.map_err(|e| transport_error("Unleash", &e))?;
        if !resp.status().is_success() {
            return Err(failure(&resp, &self.what(), self.environment.as_str(), cfg));
        }
        let env = environment_of(&resp, &self.project, &self.flag, &self.environment)?;
        let by_id = by_id.map(StrategyChoice::Id);
        let choice = by_id.unwrap_or(match &self.strategy {
            Some(s) => StrategyChoice::IdOrTitle(s),
            None => StrategyChoice::Only,
        });
        select_rollout(&env, choice, &self.what()).map_err(|message| ActionError {
            message,
            retryable: false,
        })
    }

    /// `PATCH` only the percentage, so that nothing else of the strategy (its
    /// constraints, segments, stickiness) is overwritten with what was read earlier.
    pub fn request(
        &self,
        strategy_id: &str,
        base_url: &str,
        token: &Secret,
    ) -> Result<OutboundRequest, ActionError> {
        let suffix = format!(
            "/environments/{}/strategies/{}",
            encode_segment(self.environment.as_str()),
            encode_segment(strategy_id),
        );
        // Unleash keeps strategy parameters as strings.
        let patch = serde_json::json!([
            {"op": "replace", "path": "/parameters/rollout", "value": self.percent.get().to_string()}
        ]);
        let target = (&self.project, &self.flag);
        admin_request(
            http::Method::PATCH,
            target,
            &suffix,
            base_url,
            token,
            Some(patch),
        )
    }

    pub fn outcome(
        &self,
        strategy_id: &str,
        result: Result<OutboundResponse, SendError>,
        cfg: &Config,
    ) -> Result<String, ActionError> {
        let resp = result.map_err(|e| transport_error("Unleash", &e))?;
        if resp.status().is_success() {
            return Ok(format!(
                "set the rollout of {} (strategy {strategy_id}) to {}",
                self.what(),
                self.percent
            ));
        }
        let what = format!("strategy {strategy_id} of {}", self.what());
        Err(failure(&resp, &what, self.environment.as_str(), cfg))
    }
}
