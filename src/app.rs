//! The handler: request in, response out, over a [`Platform`].

use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::auth;
use crate::config::Config;
use crate::ingest::{self, Format, IngestError};
use crate::platform::Platform;
use crate::remediate::remediate;
use crate::report::Report;
use crate::rules::{self, RuleSet};

/// Largest webhook body accepted (Alertmanager groups are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    match (req.method(), path.as_str(), webhook) {
        (&Method::GET, "/healthz", _) => health(p),
        (&Method::POST, _, Some(format)) => match webhook_handler(p, &req, format) {
            Ok(report) => {
                let status = report.status();
                json_response(status, &report)
            }
            Err(e) => error(e.status(), &e.message()),
        },
        (_, "/healthz", _) => method_not_allowed("GET"),
        (_, _, Some(_)) => method_not_allowed("POST"),
        _ => error(
            404,
            &format!("no route {path}: webhooks go to POST /, /alertmanager, /grafana or /keptn"),
        ),
    }
}

/// Everything that can stop a webhook before any rule runs, with its status code.
#[derive(Debug)]
enum WebhookError {
    Config(String),
    Auth(auth::AuthError),
    TooLarge(usize),
    ContentType(String),
    Ingest(IngestError),
    Rules(String),
}

impl WebhookError {
    fn status(&self) -> u16 {
        match self {
            WebhookError::Config(_) | WebhookError::Rules(_) => 500,
            WebhookError::Auth(auth::AuthError::NotConfigured) => 500,
            WebhookError::Auth(_) => 401,
            WebhookError::TooLarge(_) => 413,
            WebhookError::ContentType(_) => 415,
            WebhookError::Ingest(IngestError::Malformed(_)) => 400,
            WebhookError::Ingest(IngestError::Invalid(_)) => 422,
        }
    }

    fn message(&self) -> String {
        match self {
            WebhookError::Config(m) => format!("configuration: {m}"),
            WebhookError::Auth(e) => e.to_string(),
            WebhookError::TooLarge(n) => {
                format!("body of {n} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
            }
            WebhookError::ContentType(t) => {
                format!("content type {t:?} is not supported: send application/json")
            }
            WebhookError::Ingest(e) => e.to_string(),
            WebhookError::Rules(m) => format!("rules: {m}"),
        }
    }
}

fn webhook_handler(
    p: &dyn Platform,
    req: &Request<Vec<u8>>,
    route: Option<Format>,
) -> Result<Report, WebhookError> {
    let cfg = Config::load(|n| p.variable(n)).map_err(WebhookError::Config)?;
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    auth::check(&cfg, authorization).map_err(WebhookError::Auth)?;
    if req.body().len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge(req.body().len()));
    }
    if let Some(ct) = req.headers().get(http::header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        // CloudEvents structured mode uses application/cloudevents+json.
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(WebhookError::ContentType(ct));
        }
    }
    let ingested = ingest::ingest(route, req.body()).map_err(WebhookError::Ingest)?;
    let (rules, source) = load_rules(p, &cfg).map_err(WebhookError::Rules)?;
    let dry_run = cfg.dry_run || query_flag(req.uri(), "dry_run");
    let problems = ingested
        .problems
        .iter()
        .map(|problem| {
            let r = remediate(p, &cfg, &rules, problem, dry_run);
            p.log(&format!(
                "remediator: {} {:?} rule={} outcome={:?}",
                r.occurrence,
                r.title,
                r.rule.as_deref().unwrap_or("-"),
                r.outcome
            ));
            r
        })
        .collect();
    Ok(Report {
        format: ingested.format,
        dry_run,
        rules_source: source,
        rules_format: rules.format,
        problems,
        not_processed: ingested.not_processed,
    })
}

fn load_rules(p: &dyn Platform, cfg: &Config) -> Result<(RuleSet, String), String> {
    let text = p
        .read_file(&cfg.rules_file)
        .map_err(|e| format!("cannot read {}: {e}", cfg.rules_file))?;
    let rules = rules::parse(&text).map_err(|e| format!("{}: {e}", cfg.rules_file))?;
    Ok((rules, cfg.rules_file.clone()))
}

fn query_flag(uri: &http::Uri, name: &str) -> bool {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, "true"))))
        .any(|(k, v)| k == name && matches!(v, "true" | "1" | "yes"))
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
    if cfg.webhook_token.is_empty() {
        warnings.push(if cfg.allow_unauthenticated {
            "webhooks are accepted WITHOUT authentication (allow_unauthenticated=true)"
        } else {
            "no webhook_token configured: every webhook is refused"
        });
    }
    if cfg.dry_run {
        warnings.push("dry_run=true: no action is sent");
    }
    match load_rules(p, &cfg) {
        Ok((rules, source)) => json_response(
            200,
            &json!({
                "status": "ok",
                "rules": {"source": source, "format": rules.format, "count": rules.rules.len()},
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

fn error(status: u16, message: &str) -> Response<Vec<u8>> {
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
