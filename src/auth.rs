//! Webhook authentication: a bearer credential, compared in constant time.

use subtle::ConstantTimeEq;

use crate::config::Config;

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credential configured and unauthenticated use not allowed (server misconfiguration).
    NotConfigured,
    Missing,
    Wrong,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::NotConfigured => "no webhook credential is configured: set variable webhook_token (or allow_unauthenticated=true to accept anyone)",
            AuthError::Missing => "missing credential: send Authorization: Bearer <webhook_token>",
            AuthError::Wrong => "wrong credential",
        })
    }
}

pub fn check(cfg: &Config, authorization: Option<&[u8]>) -> Result<(), AuthError> {
    if cfg.webhook_token.is_empty() {
        return if cfg.allow_unauthenticated {
            Ok(())
        } else {
            Err(AuthError::NotConfigured)
        };
    }
    let header = authorization.ok_or(AuthError::Missing)?;
    let presented = header
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &header[7..])
        .ok_or(AuthError::Missing)?;
    if bool::from(presented.ct_eq(cfg.webhook_token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}
