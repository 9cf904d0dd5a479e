//! Everything that can stop a request, and the one place in the HTTP layer that
//! chooses a status code for it ([`ApiError::status`]). A delivery that got as far as
//! the rules answers with its report instead, whose status is the Alertmanager
//! delivery contract and so the domain's rule (`Report::status`, in report.rs).

use http::Response;
use serde_json::json;

use super::response;
use super::webhook::MAX_BODY_BYTES;
use crate::auth::AuthError;
use crate::ingest::IngestError;

#[derive(Debug)]
pub enum ApiError {
    /// The shell could not even represent the request.
    BadRequest(String),
    Config(String),
    Auth(AuthError),
    /// `GET /metrics` without its `metrics_token`.
    MetricsAuth,
    /// The shell stops reading one byte past the limit, so no size is known.
    TooLarge,
    ContentType(String),
    Ingest(IngestError),
    Rules(String),
    /// The state store failed on a read route.
    StateRead(String),
    /// A query parameter that cannot be used; the message names it.
    BadQuery(String),
    NotFound(String),
    /// The methods the route takes.
    MethodNotAllowed(&'static str),
    /// `GET /healthz`: the component cannot serve (its body says why, and the
    /// configuration warnings once the configuration loads).
    Unhealthy {
        cause: Box<ApiError>,
        warnings: Option<Vec<&'static str>>,
    },
}

impl ApiError {
    /// 5xx only where a retry could help or the server is at fault (Alertmanager
    /// retries only 5xx); 4xx names what the sender must change.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Config(_) | ApiError::Rules(_) => 500,
            ApiError::Auth(AuthError::NotConfigured) => 500,
            ApiError::StateRead(_) | ApiError::Unhealthy { .. } => 503,
            ApiError::Auth(_) | ApiError::MetricsAuth => 401,
            ApiError::BadRequest(_) | ApiError::BadQuery(_) => 400,
            ApiError::Ingest(IngestError::Malformed(_)) => 400,
            ApiError::Ingest(IngestError::Invalid(_)) => 422,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::TooLarge => 413,
            ApiError::ContentType(_) => 415,
        }
    }

    /// The JSON answer: `{"error": message}` (and an `Allow` header on a 405).
    pub fn response(&self) -> Response<Vec<u8>> {
        let body = match self {
            ApiError::Unhealthy {
                cause,
                warnings: Some(w),
            } => json!({"status": "unhealthy", "error": cause.to_string(), "warnings": w}),
            ApiError::Unhealthy { cause, .. } => {
                json!({"status": "unhealthy", "error": cause.to_string()})
            }
            _ => json!({ "error": self.to_string() }),
        };
        let mut r = response::json(self.status(), &body);
        if let ApiError::MethodNotAllowed(allow) = self {
            if let Ok(v) = http::HeaderValue::from_str(allow) {
                r.headers_mut().insert(http::header::ALLOW, v);
            }
        }
        r
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m) | ApiError::BadQuery(m) => f.write_str(m),
            ApiError::Config(m) => write!(f, "configuration: {m}"),
            ApiError::Auth(e) => e.fmt(f),
            ApiError::MetricsAuth => f.write_str(
                "missing or wrong credential: send Authorization: Bearer <metrics_token>",
            ),
            ApiError::TooLarge => write!(f, "the body exceeds the {MAX_BODY_BYTES}-byte limit"),
            ApiError::ContentType(t) => {
                write!(
                    f,
                    "content type {t:?} is not supported: send application/json"
                )
            }
            ApiError::Ingest(e) => e.fmt(f),
            ApiError::Rules(m) => write!(f, "rules: {m}"),
            ApiError::StateRead(m) => write!(f, "state store unavailable: {m}"),
            ApiError::NotFound(path) => write!(
                f,
                "no route {path}: webhooks go to POST /, /alertmanager, /grafana or /keptn"
            ),
            ApiError::MethodNotAllowed(allow) => write!(f, "method not allowed: use {allow}"),
            ApiError::Unhealthy { cause, .. } => cause.fmt(f),
        }
    }
}
