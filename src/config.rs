//! Configuration from Spin variables, parsed once per request at the border.

use std::time::Duration;

use crate::rules::UnleashName;

/// A credential. Its `Debug` never shows the value, so it cannot leak through
/// `{:?}` in logs or error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

/// How webhook senders prove who they are; any configured method suffices.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub bearer: Secret,
    pub basic_user: String,
    pub basic_password: Secret,
    pub hmac_secret: Secret,
    pub hmac_header: String,
    /// Empty: Grafana signs the body alone, with no replay protection.
    pub hmac_timestamp_header: String,
    pub hmac_window_s: i64,
}

/// spin.toml's default for `rules_origin`: a reserved, never-resolving name
/// (RFC 2606) that keeps the allow-list template non-empty while meaning "unset".
pub const RULES_ORIGIN_UNSET: &str = "http://rules.invalid";

#[derive(Debug, Clone)]
pub struct Config {
    pub unleash_url: String,
    pub unleash_token: Secret,
    pub unleash_project: UnleashName,
    pub unleash_environment: UnleashName,
    pub scale_url: String,
    pub scale_path: String,
    pub scale_token: Secret,
    pub auth: AuthConfig,
    pub allow_unauthenticated: bool,
    pub rules_file: String,
    /// Origin and path of rules served over HTTP; empty origin: bundled rules only.
    pub rules_origin: String,
    pub rules_path: String,
    pub rules_token: Secret,
    pub rules_ttl: Duration,
    pub dry_run: bool,
    pub outbound_timeout: Duration,
    /// All outbound calls of one delivery, retries included, end within this.
    pub outbound_budget: Duration,
    /// How far replicas' clocks may disagree: a lease is respected this much longer.
    pub max_clock_skew: Duration,
}

impl Config {
    /// Build from a variable lookup; every error names the variable.
    pub fn load(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| -> Result<String, String> {
            var(name).ok_or_else(|| format!("variable {name} is not provided"))
        };
        let flag = |name: &str| -> Result<bool, String> {
            match get(name)?.trim() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" | "" => Ok(false),
                other => Err(format!("variable {name}: {other:?} is not true or false")),
            }
        };
        let name = |v: &str| UnleashName::parse(&get(v)?).map_err(|e| format!("variable {v}: {e}"));
        let number =
            |v: &str, range: std::ops::RangeInclusive<u64>, unit: &str| -> Result<u64, String> {
                get(v)?
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        format!(
                            "variable {v}: must be a whole number of {unit}, {}..={}",
                            range.start(),
                            range.end()
                        )
                    })
            };
        let timeout_ms = number("outbound_timeout_ms", 1..=60_000, "milliseconds")?;
        let scale_path = get("scale_path")?;
        if !scale_path.starts_with('/') {
            return Err("variable scale_path: must start with /".into());
        }
        Ok(Config {
            unleash_url: origin("unleash_url", &get("unleash_url")?)?,
            unleash_token: Secret::new(get("unleash_token")?),
            unleash_project: name("unleash_project")?,
            unleash_environment: name("unleash_environment")?,
            scale_url: origin("scale_url", &get("scale_url")?)?,
            scale_path,
            scale_token: Secret::new(get("scale_token")?),
            auth: AuthConfig {
                bearer: Secret::new(get("webhook_token")?),
                basic_user: get("webhook_basic_user")?,
                basic_password: Secret::new(get("webhook_basic_password")?),
                hmac_secret: Secret::new(get("webhook_hmac_secret")?),
                hmac_header: header_name("webhook_hmac_header", &get("webhook_hmac_header")?)?,
                hmac_timestamp_header: header_name(
                    "webhook_hmac_timestamp_header",
                    &get("webhook_hmac_timestamp_header")?,
                )?,
                hmac_window_s: number("webhook_hmac_window_s", 1..=86_400, "seconds")? as i64,
            },
            allow_unauthenticated: flag("allow_unauthenticated")?,
            rules_file: get("rules_file")?,
            rules_origin: match get("rules_origin")?.trim() {
                "" | RULES_ORIGIN_UNSET => String::new(),
                o => origin("rules_origin", o)?,
            },
            rules_path: {
                let path = get("rules_path")?;
                if !path.starts_with('/') {
                    return Err("variable rules_path: must start with /".into());
                }
                path
            },
            rules_token: Secret::new(get("rules_token")?),
            rules_ttl: Duration::from_secs(number("rules_ttl_s", 1..=86_400, "seconds")?),
            dry_run: flag("dry_run")?,
            outbound_timeout: Duration::from_millis(timeout_ms),
            outbound_budget: Duration::from_millis(number(
                "outbound_budget_ms",
                1..=300_000,
                "milliseconds",
            )?),
            max_clock_skew: Duration::from_millis(number(
                "max_clock_skew_ms",
                0..=600_000,
                "milliseconds",
            )?),
        })
    }
}

impl Config {
    /// The rules URL, when rules are served over HTTP.
    pub fn rules_url(&self) -> Option<String> {
        (!self.rules_origin.is_empty()).then(|| format!("{}{}", self.rules_origin, self.rules_path))
    }

    /// Remove every configured secret from text that came from elsewhere (a peer
    /// may echo our request back in an error body).
    pub fn redact(&self, text: &str) -> String {
        [
            &self.unleash_token,
            &self.scale_token,
            &self.rules_token,
            &self.auth.bearer,
            &self.auth.basic_password,
            &self.auth.hmac_secret,
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.expose(), "<redacted>"))
    }
}

fn header_name(var: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!("variable {var}: {v:?} is not an HTTP header name"))
    }
}

/// `scheme://host[:port]`, the form `allowed_outbound_hosts` takes, without a trailing slash.
fn origin(var: &str, value: &str) -> Result<String, String> {
    let v = value.trim().trim_end_matches('/');
    let uri: http::Uri = v
        .parse()
        .map_err(|_| format!("variable {var}: {v:?} is not a URL"))?;
    match (uri.scheme_str(), uri.authority(), uri.path()) {
        (Some("http" | "https"), Some(_), "" | "/") if uri.query().is_none() => Ok(v.to_string()),
        _ => Err(format!(
            "variable {var}: {v:?} must be an origin like http://host:port (no path)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(over: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut all: std::collections::HashMap<String, String> = [
            ("unleash_url", "http://127.0.0.1:4242/"),
            ("unleash_token", "tok"),
            ("unleash_project", "default"),
            ("unleash_environment", "production"),
            ("scale_url", "http://127.0.0.1:9100"),
            ("scale_path", "/scale"),
            ("scale_token", ""),
            ("webhook_token", "hook"),
            ("webhook_basic_user", ""),
            ("webhook_basic_password", ""),
            ("webhook_hmac_secret", ""),
            ("webhook_hmac_header", "X-Grafana-Alerting-Signature"),
            ("webhook_hmac_timestamp_header", ""),
            ("webhook_hmac_window_s", "300"),
            ("allow_unauthenticated", "false"),
            ("rules_file", "/remediation.yaml"),
            ("rules_origin", "http://rules.invalid"),
            ("rules_path", "/remediation.yaml"),
            ("rules_token", ""),
            ("rules_ttl_s", "30"),
            ("dry_run", "false"),
            ("outbound_timeout_ms", "3000"),
            ("outbound_budget_ms", "8000"),
            ("max_clock_skew_ms", "5000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in over {
            all.insert(k.to_string(), v.to_string());
        }
        move |k| all.get(k).cloned()
    }

    #[test]
    fn loads_and_trims_origin() {
        let c = Config::load(vars(&[])).unwrap();
        assert_eq!(c.unleash_url, "http://127.0.0.1:4242");
        assert_eq!(c.outbound_timeout, Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_variable() {
        for (over, needle) in [
            (("unleash_url", "http://x/api"), "variable unleash_url"),
            (("unleash_url", "ftp://x"), "variable unleash_url"),
            (("dry_run", "maybe"), "variable dry_run"),
            (("outbound_timeout_ms", "0"), "variable outbound_timeout_ms"),
            (
                ("unleash_environment", "prod/../x"),
                "variable unleash_environment",
            ),
        ] {
            let err = Config::load(vars(&[over])).unwrap_err();
            assert!(err.contains(needle), "{over:?}: {err}");
        }
    }

    #[test]
    fn rules_origin_default_means_bundled_rules() {
        assert_eq!(Config::load(vars(&[])).unwrap().rules_url(), None);
        let c = Config::load(vars(&[("rules_origin", "https://git.example:8443/")])).unwrap();
        assert_eq!(
            c.rules_url().as_deref(),
            Some("https://git.example:8443/remediation.yaml")
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = Config::load(vars(&[("unleash_token", "s3cr3t-value")])).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }
}
