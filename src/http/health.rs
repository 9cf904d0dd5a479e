//! `GET /healthz`: 200 "ok" or "degraded" (with why), 503 "unhealthy" when the
//! configuration or the rules cannot be loaded. Unguarded; it shows no secret.

use http::Response;
use serde_json::json;

use super::{request, response, ApiError};
use crate::platform::Platform;
use crate::rules_source;

pub(super) fn get(p: &dyn Platform) -> Result<Response<Vec<u8>>, ApiError> {
    let cfg = request::config(p).map_err(|cause| ApiError::Unhealthy {
        cause: Box::new(cause),
        warnings: None,
    })?;
    let mut warnings = Vec::new();
    let a = &cfg.auth;
    if a.bearer.is_empty() && a.basic_user.is_empty() && a.hmac_secret.is_empty() {
        warnings.push(if cfg.allow_unauthenticated {
            "webhooks are accepted WITHOUT authentication (allow_unauthenticated=true)"
        } else {
            "no webhook authentication configured: every webhook is refused"
        });
    }
    if !a.hmac_secret.is_empty() && a.hmac_timestamp_header.is_empty() {
        warnings.push("HMAC signatures without a timestamp header: no replay protection");
    }
    if cfg.dry_run {
        warnings.push("dry_run=true: no action is sent");
    }
    match rules_source::effective(p, &cfg) {
        Ok(e) => Ok(response::ok(&json!({
            "status": if e.warning.is_some() { "degraded" } else { "ok" },
            "rules": {
                "source": e.source, "version": e.version, "fetched_at": e.fetched_at,
                "format": e.rules.format(), "count": e.rules.len(), "warning": e.warning,
            },
            "warnings": warnings,
        }))),
        Err(e) => Err(ApiError::Unhealthy {
            cause: Box::new(ApiError::Rules(e.to_string())),
            warnings: Some(warnings),
        }),
    }
}
