//! How answers are written. Success statuses are fixed here (200), an error's come
//! from [`ApiError::status`](super::ApiError::status), and a webhook report's from
//! `Report::status`; all JSON goes through [`json`].

use http::{Response, StatusCode};

use super::ApiError;

pub(super) fn json(status: u16, body: &impl serde::Serialize) -> Response<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .unwrap_or_default()
}

pub(super) fn ok(body: &impl serde::Serialize) -> Response<Vec<u8>> {
    json(200, body)
}

/// Prometheus's text exposition format.
pub(super) fn prometheus(text: String) -> Response<Vec<u8>> {
    Response::builder()
        .status(200)
        .header(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(text.into_bytes())
        .unwrap_or_default()
}

/// The audit page.
pub(super) fn page(page: String) -> Response<Vec<u8>> {
    html(200, page)
}

/// The audit page again for a person's mistake, saying what is wrong.
pub(super) fn page_for(e: &ApiError, page: String) -> Response<Vec<u8>> {
    html(e.status(), page)
}

/// Locked down: nothing but the page's inline styles loads or runs.
fn html(status: u16, page: String) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            http::header::CONTENT_SECURITY_POLICY,
            crate::audit_page::CSP,
        )
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(http::header::REFERRER_POLICY, "no-referrer")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(page.into_bytes())
        .unwrap_or_default()
}
