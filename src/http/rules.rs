//! `GET /rules`: the effective rules, their source, version and fetch time, and the
//! blast-radius budget in force. Guarded by the webhook credential.

use http::{Request, Response};
use serde_json::json;

use super::{request, response, ApiError};
use crate::platform::Platform;
use crate::rules_source;

pub(super) fn get(p: &dyn Platform, req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let cfg = request::authorized(p, req)?;
    let e = rules_source::effective(p, &cfg).map_err(|e| ApiError::Rules(e.to_string()))?;
    let all = e.rules.all(p).map_err(ApiError::Rules)?;
    let text = e.rules.text(p).map_err(ApiError::Rules)?;
    Ok(response::ok(&json!({
        "source": e.source, "version": e.version, "fetched_at": e.fetched_at,
        "warning": e.warning, "format": e.rules.format(),
        // The blast-radius budget in force: the file's wins over the variable's.
        "max_changes": e.rules.max_changes().map(|b| (b, "rules file"))
            .or(cfg.max_changes.map(|b| (b, "variable max_changes")))
            .map(|((n, w), from)| format!(
                "{n} per {} ({from})",
                crate::actions::budget::window_text(w.as_millis().min(i64::MAX as u128) as i64)
            )),
        "rules": all.rules.iter().map(|r| r.describe()).collect::<Vec<_>>(),
        "text": text,
    })))
}
