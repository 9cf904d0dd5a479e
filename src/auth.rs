//! Webhook authentication: Bearer (Alertmanager `http_config.authorization`), Basic
//! (`http_config.basic_auth`), and Grafana's HMAC-SHA256 body signature with an
//! optional timestamp and replay window. Every comparison is constant-time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Config;

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No method configured and unauthenticated use not allowed (server misconfiguration).
    NotConfigured,
    Missing,
    Wrong,
    /// HMAC timestamp missing, unreadable, or outside the replay window.
    Stale(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::NotConfigured => f.write_str(
                "no webhook authentication is configured: set webhook_token, webhook_basic_user/webhook_basic_password or webhook_hmac_secret (or allow_unauthenticated=true to accept anyone)",
            ),
            AuthError::Missing => f.write_str(
                "missing credential: send Authorization: Bearer/Basic, or a signature header",
            ),
            AuthError::Wrong => f.write_str("wrong credential or signature"),
            AuthError::Stale(why) => write!(f, "signature timestamp rejected: {why}"),
        }
    }
}

/// What the request presents; header lookups are case-insensitive upstream.
pub struct Presented<'a> {
    pub authorization: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub now_ms: i64,
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

fn scheme<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let n = name.len();
    (header.len() > n && header[..n].eq_ignore_ascii_case(name.as_bytes()) && header[n] == b' ')
        .then(|| header[n + 1..].trim_ascii())
}

/// Lowercase hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &[u8], message: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in message {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A route guarded by its own optional bearer credential (`/metrics`): an empty
/// `token` lets everyone in; else `Authorization: Bearer <token>`, compared in
/// constant time.
pub fn bearer_allows(token: &crate::config::Secret, authorization: Option<&[u8]>) -> bool {
    token.is_empty()
        || authorization
            .and_then(|h| scheme(h, "Bearer"))
            .is_some_and(|t| eq(t, token.expose().as_bytes()))
}

/// Accept the request when any configured method accepts it.
pub fn check(cfg: &Config, req: &Presented) -> Result<(), AuthError> {
    let a = &cfg.auth;
    let bearer = !a.bearer.is_empty();
    // Both halves, never a user with an empty password.
    let basic = a.basic_configured();
    let hmac = !a.hmac_secret.is_empty();
    if !(bearer || basic || hmac) {
        return if cfg.allow_unauthenticated {
            Ok(())
        } else {
            Err(AuthError::NotConfigured)
        };
    }
    let mut presented_something = false;
    if let Some(header) = req.authorization {
        presented_something = true;
        if let (true, Some(token)) = (bearer, scheme(header, "Bearer")) {
            if eq(token, a.bearer.expose().as_bytes()) {
                return Ok(());
            }
        }
        if let (true, Some(encoded)) = (basic, scheme(header, "Basic")) {
            let expected = format!("{}:{}", a.basic_user, a.basic_password.expose());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            if eq(&decoded, expected.as_bytes()) {
                return Ok(());
            }
        }
    }
    if let (true, Some(signature)) = (hmac, req.signature) {
        let secret = a.hmac_secret.expose().as_bytes();
        let expected = if a.hmac_timestamp_header.is_empty() {
            hmac_hex(secret, &[req.body])
        } else {
            let ts = req.timestamp.ok_or_else(|| {
                AuthError::Stale(format!("header {} is missing", a.hmac_timestamp_header))
            })?;
            let secs: i64 = std::str::from_utf8(ts)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| AuthError::Stale("not Unix seconds".into()))?;
            // Any i64 can arrive: no arithmetic here may overflow.
            let age = (req.now_ms / 1000).abs_diff(secs);
            if age > a.hmac_window_s.unsigned_abs() {
                return Err(AuthError::Stale(format!(
                    "{age}s from now, outside the {}s replay window",
                    a.hmac_window_s
                )));
            }
            hmac_hex(secret, &[ts, b":", req.body])
        };
        if eq(signature.trim_ascii(), expected.as_bytes()) {
            return Ok(());
        }
        return Err(AuthError::Wrong);
    }
    Err(if presented_something {
        AuthError::Wrong
    } else {
        AuthError::Missing
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::config, Secret};

    fn basic(cfg: &Config, header: &str) -> Result<(), AuthError> {
        check(
            cfg,
            &Presented {
                authorization: Some(header.as_bytes()),
                signature: None,
                timestamp: None,
                body: b"{}",
                now_ms: 1_764_165_726_000,
            },
        )
    }

    #[test]
    fn basic_with_an_empty_password_accepts_nobody_even_when_built_by_hand() {
        let mut cfg = config(&[
            ("webhook_token", ""),
            ("webhook_basic_user", "am"),
            ("webhook_basic_password", "pw"),
        ]);
        // base64("am:pw")
        assert_eq!(basic(&cfg, "Basic YW06cHc="), Ok(()));
        // Config::load refuses this; a Config made another way must not open up.
        cfg.auth.basic_password = Secret::default();
        // base64("am:")
        assert_eq!(basic(&cfg, "Basic YW06"), Err(AuthError::NotConfigured));
    }
}
