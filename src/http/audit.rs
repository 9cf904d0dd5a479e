//! `GET /audit?rule=&flag=&outcome=&since=&until=&limit=`: the audit trail, newest
//! first, as JSON, or as the page (crate::audit_page) for browsers (`Accept:
//! text/html`). Guarded by the webhook credential: it shows what remediator did to
//! production. Empty parameters (a submitted form) mean "any".

use http::{Request, Response};
use serde_json::json;

use super::request::{self, percent_decode, query_param};
use super::{response, ApiError};
use crate::audit;
use crate::audit_page::{render, Query, DEFAULT_LIMIT};
use crate::platform::Platform;

pub(super) fn get(p: &dyn Platform, req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let cfg = request::authorized(p, req)?;
    let uri = req.uri();
    let text = |name: &str| {
        query_param(uri, name)
            .map(percent_decode)
            .filter(|v| !v.trim().is_empty())
    };
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        text(name)
            .map(|v| {
                audit::parse_time(v.trim()).ok_or(ApiError::BadQuery(format!(
                    "{name}: {v:?} is not RFC 3339 or Unix milliseconds"
                )))
            })
            .transpose()
    };
    let wants_html = req
        .headers()
        .get(http::header::ACCEPT)
        .is_some_and(|a| String::from_utf8_lossy(a.as_bytes()).contains("text/html"));
    let limit = match text("limit").map(|l| l.trim().parse::<usize>()) {
        None if wants_html => DEFAULT_LIMIT,
        None => 200,
        Some(Ok(l)) => l.clamp(1, 5000),
        Some(Err(_)) => {
            return Err(ApiError::BadQuery(
                "limit: not a whole number (1 to 5000)".into(),
            ))
        }
    };
    let mut q = Query {
        rule: text("rule"),
        flag: text("flag"),
        outcome: text("outcome"),
        since: text("since"),
        until: text("until"),
        limit: text("limit"),
        error: None,
    };
    let filter = match (time("since"), time("until")) {
        (Ok(since_ms), Ok(until_ms)) => audit::Filter {
            rule: q.rule.clone(),
            flag: q.flag.clone(),
            outcome: q.outcome.clone(),
            since_ms,
            until_ms,
            limit,
        },
        (Err(e), _) | (_, Err(e)) if wants_html => {
            // A person's typo: the page again, saying what is wrong, the form as typed.
            q.error = Some(e.to_string());
            let page = render(&[], p.now_ms(), &q, limit, &cfg.unleash_url);
            return Ok(response::page_for(&e, page));
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let entries = audit::read(p, &filter).map_err(|e| ApiError::StateRead(e.to_string()))?;
    if !wants_html {
        return Ok(response::ok(&json!({ "entries": entries })));
    }
    let page = render(&entries, p.now_ms(), &q, limit, &cfg.unleash_url);
    Ok(response::page(page))
}
