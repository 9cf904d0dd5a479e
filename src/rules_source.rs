//! Where the effective rules come from: fetched over HTTP (cached in key-value
//! with a TTL and revalidated with ETag / Last-Modified), else the last set that
//! was fetched and valid, else the bundled file. Invalid rules are never used.
//!
//! A fetch is bounded in size ([`MAX_RULES_BYTES`]) and time ([`MAX_FETCH_TIME`]),
//! and only one delivery at a time fetches (a lease in key-value): a slow or huge
//! rules server costs one bounded request per TTL, not every webhook.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::rfc3339;
use crate::config::Config;
use crate::platform::{Platform, SendError};
use crate::rules::{self, RuleSet};
use crate::state;

const STATE_KEY: &str = "rules/source";
/// Set (to the start time, Unix ms) while one delivery fetches the rules URL.
const FETCHING_KEY: &str = "rules/fetching";

/// Largest rules file fetched; a larger response is a fetch error.
pub const MAX_RULES_BYTES: usize = 1024 * 1024;
/// The longest a rules fetch may take, whatever `outbound_timeout_ms` says: every
/// webhook that finds the cache stale waits for it.
pub const MAX_FETCH_TIME: Duration = Duration::from_secs(5);

fn fetch_timeout(cfg: &Config) -> Duration {
    cfg.outbound_timeout.min(MAX_FETCH_TIME)
}

/// How long a fetching marker holds off other fetches: twice the fetch deadline, by
/// which time the fetch has ended one way or another (a marker left by a delivery
/// that died mid-fetch blocks nothing for longer).
fn fetch_lease_ms(cfg: &Config) -> i64 {
    2 * fetch_timeout(cfg).as_millis() as i64
}

/// `url` as it may be shown (reports, warnings, `/healthz`, `/rules`): without
/// userinfo, query or fragment, which is where URLs carry tokens.
pub fn display_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// `text` (built from a fetch of `url`, possibly quoting a peer) without the URL's
/// userinfo, query or fragment, whole or in parts.
fn scrub(text: &str, url: &str) -> String {
    let mut t = text.replace(url, &display_url(url));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@').map(|(userinfo, _)| userinfo);
    let after_path = rest.find(['?', '#']).map(|i| &rest[i..]);
    let mut secrets: Vec<&str> = Vec::new();
    if let Some(tail) = after_path {
        secrets.push(tail);
        secrets.push(&tail[1..]);
        secrets.extend(tail[1..].split(['&', '#', ';']).flat_map(|kv| {
            let value = kv.split_once('=').map_or(kv, |(_, v)| v);
            [kv, value]
        }));
    }
    if let Some(userinfo) = userinfo {
        secrets.push(userinfo);
        secrets.extend(userinfo.split(':'));
    }
    // Longest first, so a whole query goes before its parts; parts shorter than 4
    // characters are left alone (they would garble the text and protect nothing).
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        t = t.replace(secret, "<redacted>");
    }
    t
}

/// Whether this delivery should fetch: no other delivery's marker is fresh, and
/// ours went in first. A key-value failure fetches anyway (the marker only saves
/// requests; without key-value nothing is cached either).
fn claim_fetch(p: &dyn Platform, cfg: &Config, now: i64) -> bool {
    let current = match p.kv_get(FETCHING_KEY) {
        Ok(current) => current,
        Err(e) => {
            p.log(&format!(
                "remediator: WARNING rules fetch marker unreadable: {e}"
            ));
            return true;
        }
    };
    let started = current
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    if started.is_some_and(|t| (now - t).abs() < fetch_lease_ms(cfg)) {
        return false;
    }
    match p.kv_compare_and_swap(FETCHING_KEY, current.as_deref(), now.to_string().as_bytes()) {
        Ok(won) => won,
        Err(e) => {
            p.log(&format!(
                "remediator: WARNING rules fetch marker not set: {e}"
            ));
            true
        }
    }
}

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
    /// What `remediator_rules_source` says: `bundled`, `url`, `last_known_good`, or
    /// `degraded` (a rules URL is set but nothing good was ever fetched from it).
    pub state: &'static str,
    /// When the rules URL last answered with valid rules (200 or 304), Unix ms.
    pub last_success_ms: Option<i64>,
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
    /// Last time the URL answered with valid rules (200 or 304).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_at_ms: Option<i64>,
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
        state: if warning.is_some() {
            "degraded"
        } else {
            "bundled"
        },
        warning,
        last_success_ms: None,
    })
}

fn from_cache(c: &Cached, source: String, warning: Option<String>) -> Result<Effective, String> {
    Ok(Effective {
        state: if warning.is_some() {
            "last_known_good"
        } else {
            "url"
        },
        last_success_ms: None,
        rules: rules::parse(&c.text)
            .map_err(|e| scrub(&format!("cached rules from {}: {e}", c.url), &c.url))?,
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
    let shown = display_url(&url);
    let mut busy = None;
    if !fresh && !claim_fetch(p, cfg, now) {
        busy = Some(format!(
            "rules URL {shown} is being fetched by another request"
        ));
    } else if !fresh {
        st.checked_at_ms = Some(now);
        match fetch(p, cfg, &url, st.last_good.as_ref()) {
            Ok(Fetched::NotModified) => {
                st.last_error = None;
                st.ok_at_ms = Some(now);
            }
            Ok(Fetched::New(c)) => {
                st.last_good = Some(c);
                st.last_error = None;
                st.ok_at_ms = Some(now);
            }
            Err(e) => st.last_error = Some(scrub(&cfg.redact(&e), &url)),
        }
        // Losing this write only costs an extra conditional request later.
        if let Err(e) = state::write(p, STATE_KEY, &st) {
            p.log(&format!("remediator: WARNING rules cache not written: {e}"));
        }
        if let Err(e) = p.kv_delete(FETCHING_KEY) {
            p.log(&format!(
                "remediator: WARNING rules fetch marker not removed (it expires): {e}"
            ));
        }
    }
    let warning = st.last_error.as_deref().map(|w| scrub(w, &url));
    // Records written before `ok_at_ms` existed: the last new fetch is a lower bound.
    let last_success_ms = st
        .ok_at_ms
        .or(st.last_good.as_ref().map(|c| c.fetched_at_ms));
    let effective = match &st.last_good {
        Some(c) if warning.is_none() => from_cache(c, format!("url {shown}"), None),
        Some(c) => from_cache(
            c,
            format!("last-known-good from {shown}"),
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
                warning
                    .or(busy)
                    .unwrap_or_else(|| "rules URL not fetched".into())
            )),
        ),
    };
    effective.map(|e| Effective {
        last_success_ms,
        ..e
    })
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
    let shown = display_url(url);
    let req = req
        .body(Vec::new())
        .map_err(|e| format!("rules URL {shown}: {e}"))?;
    let timeout = fetch_timeout(cfg);
    let resp = p
        .send_bounded(req, timeout, MAX_RULES_BYTES)
        .map_err(|e| match e {
            SendError::TooLarge(max) => {
                format!("rules from {shown} exceed the {max}-byte limit and were not used")
            }
            SendError::Timeout(m) => format!(
                "rules URL {shown} did not answer within {} ms: {m}",
                timeout.as_millis()
            ),
            e => format!("rules URL {shown} unreachable: {e}"),
        })?;
    let status = resp.status().as_u16();
    if status == 304 && cached.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !(200..300).contains(&status) {
        return Err(format!("rules URL {shown} answered {status}"));
    }
    let header = |name: http::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let text = String::from_utf8(resp.body().clone())
        .map_err(|_| format!("rules from {shown} are not UTF-8"))?;
    rules::parse(&text)
        .map_err(|e| format!("rules from {shown} are invalid and were not used: {e}"))?;
    Ok(Fetched::New(Cached {
        url: url.to_string(),
        etag: header(http::header::ETAG),
        last_modified: header(http::header::LAST_MODIFIED),
        text,
        fetched_at_ms: p.now_ms(),
    }))
}
