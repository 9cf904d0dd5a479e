//! `GET /livez`: 200 for as long as the component answers at all. It reads no
//! variable, no key and no file, so a broken configuration, rules source or store
//! never fails it: a liveness probe that failed on those would have Kubernetes
//! restart pods for what no restart fixes (and, with every replica restarting, drop
//! the alerts that `/healthz`'s readiness would only have steered away). Whether to
//! send alerts here is `/healthz`.

use http::Response;
use serde_json::json;

use super::{response, ApiError};

pub(super) fn get() -> Result<Response<Vec<u8>>, ApiError> {
    Ok(response::ok(&json!({"status": "alive"})))
}
