//! Unleash admin API (v5+): `POST /api/admin/projects/{p}/features/{f}/environments/{e}/on|off`.

use super::{body_excerpt, built, encode_segment, transport_error, ActionError};
use crate::config::{Config, Secret};
use crate::platform::{OutboundRequest, OutboundResponse, SendError};
use crate::rules::UnleashName;

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
        let uri = format!(
            "{base_url}/api/admin/projects/{}/features/{}",
            encode_segment(self.project.as_str()),
            encode_segment(self.flag.as_str()),
        );
        built(
            "Unleash",
            "unleash_url and unleash_token",
            http::Request::get(uri)
                .header(http::header::AUTHORIZATION, token.expose())
                .header(http::header::ACCEPT, "application/json")
                .body(Vec::new()),
        )
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
        let v: serde_json::Value =
            serde_json::from_slice(resp.body()).map_err(|e| ActionError {
                message: format!(
                    "Unleash sent an unreadable flag {:?}: {e}",
                    self.flag.as_str()
                ),
                retryable: true,
            })?;
        v.get("environments")
            .and_then(|envs| envs.as_array())
            .and_then(|envs| {
                envs.iter().find(|e| {
                    e.get("name").and_then(|n| n.as_str()) == Some(self.environment.as_str())
                })
            })
            .and_then(|e| e.get("enabled").and_then(|b| b.as_bool()))
            .ok_or_else(|| ActionError {
                message: format!(
                    "Unleash has no environment {:?} on flag {:?} in project {:?}",
                    self.environment.as_str(),
                    self.flag.as_str(),
                    self.project.as_str()
                ),
                retryable: false,
            })
    }

    pub fn request(&self, base_url: &str, token: &Secret) -> Result<OutboundRequest, ActionError> {
        let uri = format!(
            "{base_url}/api/admin/projects/{}/features/{}/environments/{}/{}",
            encode_segment(self.project.as_str()),
            encode_segment(self.flag.as_str()),
            encode_segment(self.environment.as_str()),
            if self.enabled { "on" } else { "off" }
        );
        built(
            "Unleash",
            "unleash_url and unleash_token",
            http::Request::post(uri)
                // Raw token: what every Unleash version accepts (7.x also takes "Bearer").
                .header(http::header::AUTHORIZATION, token.expose())
                .header(http::header::ACCEPT, "application/json")
                .body(Vec::new()),
        )
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
                "turned {} flag {:?} in project {:?}, environment {:?}",
                if self.enabled { "on" } else { "off" },
                self.flag.as_str(),
                self.project.as_str(),
                self.environment.as_str()
            ));
        }
        Err(self.failure(&resp, cfg))
    }

    fn failure(&self, resp: &OutboundResponse, cfg: &Config) -> ActionError {
        let status = resp.status().as_u16();
        let what = format!(
            "flag {:?} in project {:?}, environment {:?}",
            self.flag.as_str(),
            self.project.as_str(),
            self.environment.as_str()
        );
        let (message, retryable) = match status {
            404 => (
                format!("Unleash has no {what} (404: {})", body_excerpt(resp, cfg)),
                false,
            ),
            401 | 403 => (
                format!(
                    "Unleash refused the configured token ({status}); check variable unleash_token"
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
}
