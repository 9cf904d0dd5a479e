//! `GET /metrics`: the counters and rules gauges in Prometheus's text format (counting
//! and rendering live in crate::metrics). Guarded by `metrics_token` when set.

use http::{Request, Response};

use super::{request, response, ApiError};
use crate::auth;
use crate::metrics::{self, Gauges};
use crate::platform::Platform;
use crate::rules_source;

pub(super) fn get(p: &dyn Platform, req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let cfg = request::config(p)?;
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !auth::bearer_allows(&cfg.metrics_token, presented) {
        return Err(ApiError::MetricsAuth);
    }
    let counters = metrics::read(p).map_err(|e| ApiError::StateRead(e.to_string()))?;
    // Rules that cannot be loaded show as absent gauges; the counters still answer.
    let gauges = match rules_source::effective(p, &cfg) {
        Ok(e) => Gauges {
            rules_state: Some(e.state),
            rules_last_success_ms: e.last_success_ms,
        },
        Err(_) => Gauges {
            rules_state: None,
            rules_last_success_ms: None,
        },
    };
    Ok(response::prometheus(metrics::render(&counters, &gauges)))
}
