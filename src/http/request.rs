//! What the routes read from a request: configuration, credentials, query parameters.

use http::Request;

use super::ApiError;
use crate::auth;
use crate::config::{Config, Part};
use crate::platform::Platform;

pub(super) fn config(p: &dyn Platform) -> Result<Config, ApiError> {
    Config::load(|n| p.variable(n)).map_err(ApiError::Config)
}

/// What every webhook needs first ([`Config::load_webhook`]).
pub(super) fn webhook_config(p: &dyn Platform) -> Result<Config, ApiError> {
    Config::load_webhook(|n| p.variable(n)).map_err(ApiError::Config)
}

/// `cfg` and the rest of `part`, reading only the variables `cfg` has not.
pub(super) fn more_config(p: &dyn Platform, cfg: &Config, part: Part) -> Result<Config, ApiError> {
    cfg.load_more(part, |n| p.variable(n))
        .map_err(ApiError::Config)
}

/// Configuration for a request to a guarded route, once its credential checks out.
pub(super) fn authorized(p: &dyn Platform, req: &Request<Vec<u8>>) -> Result<Config, ApiError> {
    let cfg = config(p)?;
    auth::check(&cfg, &presented(p, &cfg, req)).map_err(ApiError::Auth)?;
    Ok(cfg)
}

pub(super) fn presented<'a>(
    p: &dyn Platform,
    cfg: &Config,
    req: &'a Request<Vec<u8>>,
) -> auth::Presented<'a> {
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

/// A query parameter as given (still percent-encoded); a bare `name` reads "true".
pub(super) fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "true")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) fn query_flag(uri: &http::Uri, name: &str) -> bool {
    matches!(query_param(uri, name), Some("true" | "1" | "yes"))
}

pub(super) fn percent_decode(s: &str) -> String {
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
