//! Unleash admin API (v5+): `POST /api/admin/projects/{p}/features/{f}/environments/{e}/on|off`.

use super::{body_excerpt, encode_segment, transport_error, ActionError};
use crate::config::Secret;
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
    pub fn request(&self, base_url: &str, token: &Secret) -> OutboundRequest {
        let uri = format!(
            "{base_url}/api/admin/projects/{}/features/{}/environments/{}/{}",
            encode_segment(self.project.as_str()),
            encode_segment(self.flag.as_str()),
            encode_segment(self.environment.as_str()),
            if self.enabled { "on" } else { "off" }
        );
        http::Request::post(uri)
            // Raw token: what every Unleash version accepts (7.x also takes "Bearer").
            .header(http::header::AUTHORIZATION, token.expose())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .expect("validated names and origin always form a valid request")
    }

    /// Interpret Unleash's answer. A missing flag or environment cannot be fixed
    /// by retrying; auth and server errors can (a token rotated, a server restarted).
    pub fn outcome(
        &self,
        result: Result<OutboundResponse, SendError>,
    ) -> Result<String, ActionError> {
        let resp = result.map_err(|e| transport_error("Unleash", &e))?;
        let status = resp.status().as_u16();
        let what = format!(
            "flag {:?} in project {:?}, environment {:?}",
            self.flag.as_str(),
            self.project.as_str(),
            self.environment.as_str()
        );
        match status {
            200..=299 => Ok(format!(
                "turned {} {what}",
                if self.enabled { "on" } else { "off" }
            )),
            404 => Err(ActionError {
                message: format!("Unleash has no {what} (404: {})", body_excerpt(&resp)),
                retryable: false,
            }),
            401 | 403 => Err(ActionError {
                message: format!(
                    "Unleash refused the configured token ({status}); check variable unleash_token"
                ),
                retryable: true,
            }),
            408 | 429 | 500..=599 => Err(ActionError {
                message: format!(
                    "Unleash answered {status} for {what}: {}",
                    body_excerpt(&resp)
                ),
                retryable: true,
            }),
            _ => Err(ActionError {
                message: format!(
                    "Unleash rejected {what} ({status}: {})",
                    body_excerpt(&resp)
                ),
                retryable: false,
            }),
        }
    }
}
