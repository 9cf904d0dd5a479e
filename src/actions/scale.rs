//! The scaling webhook: the user's own endpoint, told what to scale and by how much.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{body_excerpt, built, transport_error, ActionError};
use crate::config::{Config, Secret};
use crate::platform::{OutboundRequest, OutboundResponse, SendError};
use crate::problem::{Problem, Status};
use crate::rules::ScaleChange;

/// The JSON body POSTed to the scaling webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleRequest {
    pub rule: String,
    /// As written: `+1`, `-2`, `=3`.
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    pub service: Option<String>,
    pub namespace: Option<String>,
    pub deployment: Option<String>,
    pub status: Status,
    pub occurrence: String,
    pub labels: BTreeMap<String, String>,
    /// The same for every delivery of one step (also sent as `Idempotency-Key`), so
    /// that the webhook can recognise a repeat.
    pub idempotency_key: String,
}

impl ScaleRequest {
    pub fn new(
        rule: &str,
        change: ScaleChange,
        problem: &Problem,
        idempotency_key: &str,
    ) -> ScaleRequest {
        let label = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| problem.label(n))
                .map(str::to_string)
        };
        let service = label(&["service", "deployment", "job"]);
        ScaleRequest {
            rule: rule.to_string(),
            value: change.to_string(),
            delta: match change {
                ScaleChange::Delta(d) => Some(d),
                ScaleChange::Target(_) => None,
            },
            target: match change {
                ScaleChange::Target(t) => Some(t),
                ScaleChange::Delta(_) => None,
            },
            deployment: label(&["deployment"]).or_else(|| service.clone()),
            service,
            namespace: label(&["namespace", "stage"]),
            status: problem.status,
            occurrence: problem.occurrence(),
            labels: problem.labels.clone(),
            idempotency_key: idempotency_key.to_string(),
        }
    }

    pub fn request(&self, url: &str, token: &Secret) -> Result<OutboundRequest, ActionError> {
        let body = serde_json::to_vec(self).map_err(|e| ActionError {
            message: format!("could not encode the scaling request: {e}"),
            retryable: false,
        })?;
        let mut req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "remediator")
            .header("idempotency-key", self.idempotency_key.as_str());
        if !token.is_empty() {
            req = req.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            );
        }
        built(
            "the scaling webhook",
            "scale_url, scale_path and scale_token",
            req.body(body),
        )
    }

    /// `cfg` redacts what the webhook echoes back.
    pub fn outcome(
        &self,
        result: Result<OutboundResponse, SendError>,
        cfg: &Config,
    ) -> Result<String, ActionError> {
        let resp = result.map_err(|e| transport_error("scaling webhook", &e))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(format!(
                "scaling webhook accepted {} for {}",
                self.value,
                self.service.as_deref().unwrap_or("(no service label)")
            )),
            408 | 429 | 500..=599 => Err(ActionError {
                message: format!(
                    "scaling webhook answered {status}: {}",
                    body_excerpt(&resp, cfg)
                ),
                retryable: true,
            }),
            _ => Err(ActionError {
                message: format!(
                    "scaling webhook rejected the request ({status}: {})",
                    body_excerpt(&resp, cfg)
                ),
                retryable: false,
            }),
        }
    }
}
