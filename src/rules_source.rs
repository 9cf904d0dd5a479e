//! Where the effective rules come from: fetched over HTTP (cached in key-value
//! with a TTL and revalidated with ETag / Last-Modified), else the last set that
//! was fetched and valid, else the bundled file. Invalid rules are never used.

use serde::{Deserialize, Serialize};

use crate::audit::rfc3339;
use crate::config::Config;
use crate::platform::{Platform, SendError};
use crate::rules::{self, RuleSet};
use crate::state;

const STATE_KEY: &str = "rules/source";

/// The effective rules and where they came from.
#[derive(Debug)]
pub struct Effective {
    pub rules: RuleSet,
    pub text: String,
    /// e.g. `url http://…/remediation.yaml`, `last-known-good from …`, `bundled /remediation.yaml`.
    pub source: String,
    /// ETag when the server gave one, else a content hash.
    pub version: String,
    pub fetched_at: Option<String>,
    /// Why the preferred source was not used (fetch or validation error).
    pub warning: Option<String>,
}

/// A fetched rules file that parsed and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cached {
    pub url: String,
    pub text: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub last_good: Option<Cached>,
    /// Last time the URL was asked (whatever the answer): one request per TTL.
    pub checked_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

fn content_version(text: &str) -> String {
    format!("fnv128:{}", &state::hash(&[text])[..16])
}

fn bundled(p: &dyn Platform, cfg: &Config, warning: Option<String>) -> Result<Effective, String> {
    let text = p
        .read_file(&cfg.rules_file)
        .map_err(|e| format!("cannot read {}: {e}", cfg.rules_file))?;
    let rules = rules::parse(&text).map_err(|e| format!("{}: {e}", cfg.rules_file))?;
    Ok(Effective {
        rules,
        version: content_version(&text),
        text,
        source: format!("bundled {}", cfg.rules_file),
        fetched_at: None,
        warning,
    })
}

fn from_cache(c: &Cached, source: String, warning: Option<String>) -> Result<Effective, String> {
    Ok(Effective {
        rules: rules::parse(&c.text).map_err(|e| format!("cached rules from {}: {e}", c.url))?,
        version: c.etag.clone().unwrap_or_else(|| content_version(&c.text)),
        text: c.text.clone(),
        source,
        fetched_at: Some(rfc3339(c.fetched_at_ms)),
        warning,
    })
}

/// The rules to use now. Errors only when no usable source exists at all.
pub fn effective(p: &dyn Platform, cfg: &Config) -> Result<Effective, String> {
    let Some(url) = cfg.rules_url() else {
        return bundled(p, cfg, None);
    };
    let now = p.now_ms();
    let stored = state::read::<SourceState>(p, STATE_KEY).map_err(|e| e.to_string());
    let mut st = stored
        .as_ref()
        .ok()
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    // What was fetched from another URL (rules_origin/rules_path changed) is neither
    // fresh nor last-known-good for this one.
    if st.last_good.as_ref().is_some_and(|c| c.url != url) {
        st = SourceState::default();
    }
    let fresh = st
        .checked_at_ms
        .is_some_and(|t| now - t < cfg.rules_ttl.as_millis() as i64);
    if !fresh {
        st.checked_at_ms = Some(now);
        match fetch(p, cfg, &url, st.last_good.as_ref()) {
            Ok(Fetched::NotModified) => st.last_error = None,
            Ok(Fetched::New(c)) => {
                st.last_good = Some(c);
                st.last_error = None;
            }
            Err(e) => st.last_error = Some(cfg.redact(&e)),
        }
        // Losing this write only costs an extra conditional request later.
        if let Err(e) = state::write(p, STATE_KEY, &st) {
            p.log(&format!("remediator: WARNING rules cache not written: {e}"));
        }
    }
    let warning = st.last_error.clone();
    match &st.last_good {
        Some(c) if warning.is_none() => from_cache(c, format!("url {url}"), None),
        Some(c) => from_cache(
            c,
            format!("last-known-good from {url}"),
            warning.map(|w| {
                format!(
                    "{w}; using the last good rules fetched at {}",
                    rfc3339(c.fetched_at_ms)
                )
            }),
        ),
        None => bundled(
            p,
            cfg,
            Some(format!(
                "{}; no good rules were ever fetched, using the bundled file",
                warning.unwrap_or_else(|| "rules URL not fetched".into())
            )),
        ),
    }
}

enum Fetched {
    NotModified,
    New(Cached),
}

fn fetch(
    p: &dyn Platform,
    cfg: &Config,
    url: &str,
    cached: Option<&Cached>,
) -> Result<Fetched, String> {
    let mut req = http::Request::get(url).header(
        http::header::ACCEPT,
        "application/yaml, text/yaml, text/plain, */*",
    );
    if !cfg.rules_token.is_empty() {
        req = req.header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", cfg.rules_token.expose()),
        );
    }
    if let Some(c) = cached.filter(|c| c.url == url) {
        if let Some(etag) = &c.etag {
            req = req.header(http::header::IF_NONE_MATCH, etag.as_str());
        } else if let Some(lm) = &c.last_modified {
            req = req.header(http::header::IF_MODIFIED_SINCE, lm.as_str());
        }
    }
    let req = req
        .body(Vec::new())
        .map_err(|e| format!("rules URL {url}: {e}"))?;
    let resp = p
        .send(req, cfg.outbound_timeout)
        .map_err(|e: SendError| format!("rules URL {url} unreachable: {e}"))?;
    let status = resp.status().as_u16();
    if status == 304 && cached.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !(200..300).contains(&status) {
        return Err(format!("rules URL {url} answered {status}"));
    }
    let header = |name: http::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let text = String::from_utf8(resp.body().clone())
        .map_err(|_| format!("rules from {url} are not UTF-8"))?;
    rules::parse(&text)
        .map_err(|e| format!("rules from {url} are invalid and were not used: {e}"))?;
    Ok(Fetched::New(Cached {
        url: url.to_string(),
        etag: header(http::header::ETAG),
        last_modified: header(http::header::LAST_MODIFIED),
        text,
        fetched_at_ms: p.now_ms(),
    }))
}
