//! The handler: request in, response out, over a [`Platform`].

use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::audit;
use crate::auth;
use crate::claim;
use crate::config::Config;
use crate::ingest::{self, Format, IngestError};
use crate::metrics;
use crate::platform::Platform;
use crate::remediate::{remediate, Delivery, WAIT_FOR_CLAIM};
use crate::report::Report;
use crate::rules_source;

/// Largest webhook body accepted (Alertmanager groups are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Problems shown in full in a report; every alert is processed, the rest are
/// counted in `problems_not_shown` (their audit entries are kept).
pub const MAX_ALERTS: usize = 200;

const WEBHOOK_ROUTES: [(&str, Option<Format>); 4] = [
    ("/", None),
    ("/alertmanager", Some(Format::Alertmanager)),
    ("/grafana", Some(Format::Grafana)),
    ("/keptn", Some(Format::Keptn)),
];

pub fn handle(p: &dyn Platform, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = req.uri().path().to_string();
    let webhook = WEBHOOK_ROUTES
        .iter()
        .find(|(r, _)| *r == path)
        .map(|(_, f)| *f);
    if let Some(format) = webhook {
        let (response, deltas) = webhook_route(p, &req, &path, format);
        let errors = metrics::record(p, &deltas);
        if !errors.is_empty() {
            p.log(&format!(
                "remediator: WARNING metrics not recorded: {}",
                crate::report::log_safe(&errors.join("; "))
            ));
        }
        return response;
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => health(p),
        (&Method::GET, "/audit") => crate::audit_page::handler(p, &req),
        (&Method::GET, "/rules") => rules_handler(p, &req),
        (&Method::GET, "/metrics") => metrics_handler(p, &req),
        (&Method::POST, "/simulate") => match webhook_handler(p, &req, None, Mode::Simulate) {
            Ok(report) => json_response(200, &report),
            Err(e) => error(e.status(), &e.message()),
        },
        (_, "/healthz" | "/audit" | "/rules" | "/metrics") => method_not_allowed("GET"),
        (_, "/simulate") => method_not_allowed("POST"),
        _ => error(
            404,
            &format!("no route {path}: webhooks go to POST /, /alertmanager, /grafana or /keptn"),
        ),
    }
}

/// A request to a webhook route: the response, and what it adds to the counters
/// (derived from the whole report, before it is shortened).
fn webhook_route(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
    route: &str,
    format: Option<Format>,
) -> (Response<Vec<u8>>, metrics::Deltas) {
    if req.method() != Method::POST {
        return (method_not_allowed("POST"), metrics::tally(route, 405, None));
    }
    match webhook_handler(p, req, format, Mode::Act) {
        Ok(mut report) => {
            // The status covers every alert, shown or not.
            let status = report.status();
            let deltas = metrics::tally(route, status, Some(&report));
            report.shorten(MAX_ALERTS);
            (json_response(status, &report), deltas)
        }
        Err(e) => (
            error(e.status(), &e.message()),
            metrics::tally(route, e.status(), None),
        ),
    }
}

/// `GET /metrics`: Prometheus's text format. Guarded by `metrics_token` when set.
fn metrics_handler(p: &dyn Platform, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let cfg = match Config::load(|n| p.variable(n)) {
        Ok(c) => c,
        Err(e) => return error(500, &format!("configuration: {e}")),
    };
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !auth::bearer_allows(&cfg.metrics_token, presented) {
        return error(
            401,
            "missing or wrong credential: send Authorization: Bearer <metrics_token>",
        );
    }
    let counters = match metrics::read(p) {
        Ok(c) => c,
        Err(e) => return error(503, &format!("state store unavailable: {e}")),
    };
    let gauges = match rules_source::effective(p, &cfg) {
        Ok(e) => metrics::Gauges {
            rules_state: Some(e.state),
            rules_last_success_ms: e.last_success_ms,
        },
        Err(_) => metrics::Gauges {
            rules_state: None,
            rules_last_success_ms: None,
        },
    };
    Response::builder()
        .status(200)
        .header(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(metrics::render(&counters, &gauges).into_bytes())
        .unwrap_or_default()
}

/// Everything that can stop a webhook before any rule runs, with its status code.
#[derive(Debug)]
enum WebhookError {
    Config(String),
    Auth(auth::AuthError),
    /// The shell stops reading one byte past the limit, so no size is known.
    TooLarge,
    ContentType(String),
    Ingest(IngestError),
    Rules(String),
    State(String),
}

impl WebhookError {
    fn status(&self) -> u16 {
        match self {
            WebhookError::Config(_) | WebhookError::Rules(_) => 500,
            WebhookError::State(_) => 503,
            WebhookError::Auth(auth::AuthError::NotConfigured) => 500,
            WebhookError::Auth(_) => 401,
            WebhookError::TooLarge => 413,
            WebhookError::ContentType(_) => 415,
            WebhookError::Ingest(IngestError::Malformed(_)) => 400,
            WebhookError::Ingest(IngestError::Invalid(_)) => 422,
        }
    }

    fn message(&self) -> String {
        match self {
            WebhookError::Config(m) => format!("configuration: {m}"),
            WebhookError::Auth(e) => e.to_string(),
            WebhookError::TooLarge => {
                format!("the body exceeds the {MAX_BODY_BYTES}-byte limit")
            }
            WebhookError::ContentType(t) => {
                format!("content type {t:?} is not supported: send application/json")
            }
            WebhookError::Ingest(e) => e.to_string(),
            WebhookError::Rules(m) => format!("rules: {m}"),
            WebhookError::State(m) => format!("state store unavailable, nothing done: {m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Act,
    /// Decide as the component would, from its effective rules and state; change nothing.
    Simulate,
}

fn webhook_handler(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
    route: Option<Format>,
    mode: Mode,
) -> Result<Report, WebhookError> {
    let cfg = Config::load(|n| p.variable(n)).map_err(WebhookError::Config)?;
    if req.body().len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge);
    }
    auth::check(&cfg, &presented(p, &cfg, req)).map_err(WebhookError::Auth)?;
    if let Some(ct) = req.headers().get(http::header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        // CloudEvents structured mode uses application/cloudevents+json.
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(WebhookError::ContentType(ct));
        }
    }
    let ingested = ingest::ingest(route, req.body()).map_err(WebhookError::Ingest)?;
    let effective = rules_source::effective(p, &cfg).map_err(WebhookError::Rules)?;
    let rules = &effective.rules;
    let dry_run = cfg.dry_run || mode == Mode::Simulate || query_flag(req.uri(), "dry_run");
    let id = match mode {
        Mode::Act => audit::next_delivery(p).map_err(|e| WebhookError::State(e.to_string()))?,
        Mode::Simulate => 0,
    };
    let not_processed = ingested.not_processed;
    let now = p.now_ms();
    let mut delivery = Delivery {
        p,
        cfg: &cfg,
        rules,
        dry_run,
        id,
        deadline_ms: now.saturating_add(cfg.outbound_budget.as_millis() as i64),
        wait_until_ms: now.saturating_add(WAIT_FOR_CLAIM.as_millis() as i64),
        audit: Vec::new(),
        seq: 0,
        flags_set: Vec::new(),
        notification_reason: ingested.notification_reason.clone(),
    };
    let problems = ingested
        .problems
        .iter()
        .map(|problem| {
            let r = remediate(&mut delivery, problem);
            p.log(&format!(
                "remediator: {} {:?} rule={} outcome={:?}",
                crate::report::log_safe(&r.occurrence),
                r.title,
                crate::report::log_safe(r.rule.as_deref().unwrap_or("-")),
                r.outcome
            ));
            r
        })
        .collect();
    if mode == Mode::Act {
        if let Err(e) = audit::append(p, id, &delivery.audit) {
            p.log(&format!(
                "remediator: WARNING audit batch {id} not written: {e}"
            ));
        }
        if id % claim::sweep::SWEEP_EVERY == 0 {
            if let Err(e) = claim::sweep::sweep(p, p.now_ms(), claim::sweep::start_for(id)) {
                p.log(&format!("remediator: WARNING expiry sweep failed: {e}"));
            }
        }
    }
    Ok(Report {
        format: ingested.format,
        dry_run,
        rules_source: effective.source.clone(),
        rules_version: effective.version.clone(),
        rules_warning: effective.warning.clone(),
        rules_format: rules.format,
        problems,
        not_processed,
        problems_not_shown: 0,
        rejected: ingested.rejected,
        notification_reason: ingested.notification_reason,
    })
}

fn presented<'a>(p: &dyn Platform, cfg: &Config, req: &'a Request<Vec<u8>>) -> auth::Presented<'a> {
    let header = |name: &str| {
        (!name.is_empty())
            .then(|| req.headers().get(name).map(|v| v.as_bytes()))
            .flatten()
    };
    auth::Presented {
        authorization: header("authorization"),
        signature: header(&cfg.auth.hmac_header),
        timestamp: header(&cfg.auth.hmac_timestamp_header),
        body: req.body(),
        now_ms: p.now_ms(),
    }
}

pub(crate) fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "true")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_flag(uri: &http::Uri, name: &str) -> bool {
    matches!(query_param(uri, name), Some("true" | "1" | "yes"))
}

/// Configuration for a request to a guarded read route, or the error response
/// (500 for a broken configuration, 401 for a bad credential).
pub(crate) fn authorized(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
) -> Result<Config, Box<Response<Vec<u8>>>> {
    let cfg = Config::load(|n| p.variable(n))
        .map_err(|e| Box::new(error(500, &format!("configuration: {e}"))))?;
    auth::check(&cfg, &presented(p, &cfg, req)).map_err(|e| {
        let status = if e == auth::AuthError::NotConfigured {
            500
        } else {
            401
        };
        Box::new(error(status, &e.to_string()))
    })?;
    Ok(cfg)
}

/// `GET /rules`: the effective rules, their source, version and fetch time.
fn rules_handler(p: &dyn Platform, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let cfg = match authorized(p, req) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    match rules_source::effective(p, &cfg) {
        Ok(e) => json_response(
            200,
            &json!({
                "source": e.source, "version": e.version, "fetched_at": e.fetched_at,
                "warning": e.warning, "format": e.rules.format,
                // The blast-radius budget in force: the file's wins over the variable's.
                "max_changes": e.rules.max_changes.map(|b| (b, "rules file"))
                    .or(cfg.max_changes.map(|b| (b, "variable max_changes")))
                    .map(|((n, w), from)| format!(
                        "{n} per {} ({from})",
                        crate::remediate::window_text(w.as_millis().min(i64::MAX as u128) as i64)
                    )),
                "rules": e.rules.rules.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                "text": e.text,
            }),
        ),
        Err(e) => error(500, &format!("rules: {e}")),
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn health(p: &dyn Platform) -> Response<Vec<u8>> {
    let cfg = match Config::load(|n| p.variable(n)) {
        Ok(c) => c,
        Err(e) => {
            return json_response(
                503,
                &json!({"status": "unhealthy", "error": format!("configuration: {e}")}),
            )
        }
    };
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
        Ok(e) => json_response(
            200,
            &json!({
                "status": if e.warning.is_some() { "degraded" } else { "ok" },
                "rules": {
                    "source": e.source, "version": e.version, "fetched_at": e.fetched_at,
                    "format": e.rules.format, "count": e.rules.rules.len(), "warning": e.warning,
                },
                "warnings": warnings,
            }),
        ),
        Err(e) => json_response(
            503,
            &json!({"status": "unhealthy", "error": format!("rules: {e}"), "warnings": warnings}),
        ),
    }
}

pub fn json_response(status: u16, body: &impl serde::Serialize) -> Response<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .unwrap_or_default()
}

pub(crate) fn error(status: u16, message: &str) -> Response<Vec<u8>> {
    json_response(status, &json!({ "error": message }))
}

fn method_not_allowed(allow: &str) -> Response<Vec<u8>> {
    let mut r = error(405, &format!("method not allowed: use {allow}"));
    if let Ok(v) = http::HeaderValue::from_str(allow) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
    r
}

/// For the shell when the incoming request cannot even be represented.
pub fn bad_request(message: &str) -> Response<Vec<u8>> {
    error(400, message)
}
