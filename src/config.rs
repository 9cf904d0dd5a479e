//! Configuration from Spin variables, parsed per request at the border: all of it
//! ([`Config::load`]), or only what a webhook needs first ([`Config::load_webhook`]).

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

impl AuthConfig {
    /// Basic needs both halves; [`Config::load`] refuses one without the other.
    pub fn basic_configured(&self) -> bool {
        !self.basic_user.is_empty() && !self.basic_password.is_empty()
    }
}

/// spin.toml's default for `rules_origin`: a reserved, never-resolving name
/// (RFC 2606) that keeps the allow-list template non-empty while meaning "unset".
pub const RULES_ORIGIN_UNSET: &str = "http://rules.invalid";

/// How many notify channels there are (`notify_1_*` … `notify_3_*`): Spin's
/// `allowed_outbound_hosts` takes one template per origin, so the number is fixed.
pub const NOTIFY_CHANNELS: usize = 3;

/// One notify channel: where a rule's `notify: [{channel: <name>}]` goes.
#[derive(Debug, Clone)]
pub struct Channel {
    /// 1-based, as in its variables' names (`notify_<n>_origin`).
    pub slot: usize,
    pub name: String,
    /// Empty: not configured (the `http://notify-<n>.invalid` default).
    pub origin: String,
    /// Sent as `Authorization` as it is (e.g. `Bearer glsa_…`); empty: none.
    pub authorization: Secret,
    /// The path used when a rule gives none: for webhooks that carry their secret
    /// in the path (Slack). Never shown.
    pub path: Secret,
}

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
    /// Read each flag back after changing it (a rule's `verify` overrides it).
    pub unleash_verify: bool,
    /// Audit deliveries in which no rule matched anything too (default: only logged).
    pub audit_unmatched: bool,
    /// Count deliveries in which no rule matched anything in the metrics too (default:
    /// only logged, no durable write; `audit_unmatched` counts them as well).
    pub count_unmatched: bool,
    /// Bearer credential for `GET /metrics`; empty: open, as Prometheus targets usually are.
    pub metrics_token: Secret,
    /// The blast-radius budget (`N per D`) when the rules file gives none.
    pub max_changes: Option<(u32, Duration)>,
    /// Notify channels, configured or not, in slot order.
    pub channels: Vec<Channel>,
    /// Which variables were read.
    part: Part,
}

/// How much of the configuration a [`Config`] holds; each part includes the ones
/// before it. Each variable is a host call, on every request (issue 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// What every delivery needs: `webhook_token`, where the rules are, `dry_run`,
    /// `audit_unmatched`, `count_unmatched` ([`Config::load_webhook`]).
    Delivery,
    /// And every other webhook credential setting: Basic, HMAC,
    /// `allow_unauthenticated` ([`Config::load_webhook_auth`]).
    Auth,
    /// Everything ([`Config::load`]).
    All,
}

impl Config {
    /// Build from a variable lookup; every error names the variable. Values are
    /// trimmed (a Kubernetes Secret file ends in a newline), and everything that
    /// goes into an outbound request is validated here, so that building one
    /// cannot fail later.
    pub fn load(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        Config::load_dyn(&var, Part::All, None)
    }

    /// What every webhook needs before it knows whether any rule matches ([`Part::Delivery`]),
    /// validated as [`Config::load`] does (same messages). Every other field is left
    /// at its default: such a value may only check a bearer token and serve a delivery
    /// that acts on nothing.
    pub fn load_webhook(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        Config::load_dyn(&var, Part::Delivery, None)
    }

    /// [`Config::load_webhook`] and every webhook credential setting ([`Part::Auth`]):
    /// enough for `auth::check`.
    pub fn load_webhook_auth(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        Config::load_dyn(&var, Part::Auth, None)
    }

    /// This configuration and the rest of `part`: only the variables not read yet are
    /// read and checked (the others were, so the first bad variable of the whole load
    /// is still the one reported).
    pub fn load_more(
        &self,
        part: Part,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        Config::load_dyn(&var, part.max(self.part), Some(self))
    }

    /// Which variables were read and validated.
    pub fn part(&self) -> Part {
        self.part
    }

    /// One copy of the loader, not one per caller's closure (it is large). Reads the
    /// variables of `part` that `prev` has not, in the order of their checks in a
    /// whole load.
    fn load_dyn(
        var: &dyn Fn(&str) -> Option<String>,
        part: Part,
        prev: Option<&Config>,
    ) -> Result<Config, String> {
        let (all, auth) = (part == Part::All, part >= Part::Auth);
        // What `prev` read is taken from it.
        let had = |p: Part| prev.filter(|c| c.part >= p);
        let (had_delivery, had_auth) = (had(Part::Delivery), had(Part::Auth));
        let get = |name: &str| -> Result<String, String> {
            var(name)
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("variable {name} is not provided"))
        };
        // A credential sent (or expected) in an HTTP header.
        let token = |name: &str| -> Result<Secret, String> {
            let v = get(name)?;
            header_value(name, &v)?;
            Ok(Secret::new(v))
        };
        let flag = |name: &str| -> Result<bool, String> {
            match get(name)?.as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" | "" => Ok(false),
                other => Err(format!("variable {name}: {other:?} is not true or false")),
            }
        };
        let name = |v: &str| UnleashName::parse(&get(v)?).map_err(|e| format!("variable {v}: {e}"));
        let number =
            |v: &str, range: std::ops::RangeInclusive<u64>, unit: &str| -> Result<u64, String> {
                get(v)?
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
        // A variable only `all` reads: else its default, unread.
        let rest = |read: &dyn Fn() -> Result<String, String>| -> Result<String, String> {
            if all {
                read()
            } else {
                Ok(String::new())
            }
        };
        let timeout_ms = if all {
            number("outbound_timeout_ms", 1..=60_000, "milliseconds")?
        } else {
            0
        };
        let scale_url = rest(&|| origin("scale_url", &get("scale_url")?))?;
        let scale_path = rest(&|| uri_path("scale_path", &scale_url, &get("scale_path")?))?;
        // A variable only `auth` reads: else its default, unread.
        let auth_part = |read: &dyn Fn() -> Result<String, String>| -> Result<String, String> {
            if auth {
                read()
            } else {
                Ok(String::new())
            }
        };
        let (basic_user, basic_password) = match had_auth {
            Some(c) => (c.auth.basic_user.clone(), c.auth.basic_password.clone()),
            None => {
                let user = auth_part(&|| get("webhook_basic_user"))?;
                let password = Secret::new(auth_part(&|| get("webhook_basic_password"))?);
                match (user.is_empty(), password.is_empty()) {
                    (false, true) => {
                        return Err("variable webhook_basic_password: is empty, but webhook_basic_user is set (Basic authentication needs both)".into())
                    }
                    (true, false) => {
                        return Err("variable webhook_basic_user: is empty, but webhook_basic_password is set (Basic authentication needs both)".into())
                    }
                    _ => {}
                }
                (user, password)
            }
        };
        let (rules_origin, rules_path) = match had_delivery {
            Some(c) => (c.rules_origin.clone(), c.rules_path.clone()),
            None => {
                let rules_origin = match get("rules_origin")?.as_str() {
                    "" | RULES_ORIGIN_UNSET => String::new(),
                    o => origin("rules_origin", o)?,
                };
                let rules_path = uri_path(
                    "rules_path",
                    if rules_origin.is_empty() {
                        RULES_ORIGIN_UNSET
                    } else {
                        &rules_origin
                    },
                    &get("rules_path")?,
                )?;
                (rules_origin, rules_path)
            }
        };
        // The notify channels; a loop here, not a function, keeps the closures inline.
        let mut channels: Vec<Channel> = Vec::new();
        for n in (1..=NOTIFY_CHANNELS).filter(|_| all) {
            let var = |what: &str| format!("notify_{n}_{what}");
            let name = get(&var("name"))?;
            let origin = match get(&var("origin"))?.as_str() {
                o if o.is_empty() || o.ends_with(".invalid") => String::new(),
                o => origin(&var("origin"), o)?,
            };
            let taken = !origin.is_empty()
                && channels
                    .iter()
                    .any(|c| c.name == name && !c.origin.is_empty());
            let bad = name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if bad || taken {
                return Err(format!(
                    "variable {}: {name:?} {}",
                    var("name"),
                    if bad {
                        "is not a channel name (letters, digits, '-', '_')"
                    } else {
                        "is the name of another configured channel"
                    }
                ));
            }
            let path = get(&var("path"))?;
            if !path.is_empty() && path_error(&path).is_some() {
                // The value is a secret: never echoed.
                return Err(format!(
                    "variable {}: must be a URI path starting with / (letters, digits, -._~!$&'()*+,;=:@/? and %XX)",
                    var("path")
                ));
            }
            channels.push(Channel {
                slot: n,
                name,
                origin,
                authorization: token(&var("authorization"))?,
                path: Secret::new(path),
            });
        }
        let unleash_url = rest(&|| origin("unleash_url", &get("unleash_url")?))?;
        let unleash_token = match all {
            true => unleash_token(token("unleash_token")?),
            false => Secret::default(),
        };
        let (unleash_project, unleash_environment) = match all {
            true => (name("unleash_project")?, name("unleash_environment")?),
            // Never used unread (see load_webhook); a valid name all the same.
            false => (UnleashName::parse("unread")?, UnleashName::parse("unread")?),
        };
        Ok(Config {
            unleash_url,
            unleash_token,
            unleash_project,
            unleash_environment,
            scale_url,
            scale_path,
            scale_token: Secret::new(rest(&|| token("scale_token").map(|t| t.0))?),
            auth: match had_auth {
                Some(c) => c.auth.clone(),
                None => AuthConfig {
                    bearer: match had_delivery {
                        Some(c) => c.auth.bearer.clone(),
                        None => token("webhook_token")?,
                    },
                    basic_user,
                    basic_password,
                    hmac_secret: Secret::new(auth_part(&|| get("webhook_hmac_secret"))?),
                    hmac_header: auth_part(&|| {
                        header_name("webhook_hmac_header", &get("webhook_hmac_header")?)
                    })?,
                    hmac_timestamp_header: auth_part(&|| {
                        header_name(
                            "webhook_hmac_timestamp_header",
                            &get("webhook_hmac_timestamp_header")?,
                        )
                    })?,
                    hmac_window_s: match auth {
                        true => number("webhook_hmac_window_s", 1..=86_400, "seconds")? as i64,
                        false => 0,
                    },
                },
            },
            allow_unauthenticated: match had_auth {
                Some(c) => c.allow_unauthenticated,
                None => auth && flag("allow_unauthenticated")?,
            },
            rules_file: match had_delivery {
                Some(c) => c.rules_file.clone(),
                None => get("rules_file")?,
            },
            rules_origin,
            rules_path,
            rules_token: Secret::new(rest(&|| token("rules_token").map(|t| t.0))?),
            rules_ttl: Duration::from_secs(match all {
                true => number("rules_ttl_s", 1..=86_400, "seconds")?,
                false => 0,
            }),
            dry_run: match had_delivery {
                Some(c) => c.dry_run,
                None => flag("dry_run")?,
            },
            outbound_timeout: Duration::from_millis(timeout_ms),
            outbound_budget: Duration::from_millis(match all {
                true => number("outbound_budget_ms", 1..=300_000, "milliseconds")?,
                false => 0,
            }),
            max_clock_skew: Duration::from_millis(match all {
                true => number("max_clock_skew_ms", 0..=600_000, "milliseconds")?,
                false => 0,
            }),
            unleash_verify: all && flag("unleash_verify")?,
            audit_unmatched: match had_delivery {
                Some(c) => c.audit_unmatched,
                None => flag("audit_unmatched")?,
            },
            count_unmatched: match had_delivery {
                Some(c) => c.count_unmatched,
                None => flag("count_unmatched")?,
            },
            // Only compared, never sent: any value will do.
            metrics_token: Secret::new(rest(&|| get("metrics_token"))?),
            max_changes: match rest(&|| get("max_changes"))?.as_str() {
                "" => None,
                v => Some(crate::rules::own::parse_max_changes(
                    "variable max_changes",
                    v,
                )?),
            },
            channels,
            part,
        })
    }

    /// The configured channel of this name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Unleash takes every token shape (admin, service account, `user:…` personal
/// access tokens) raw in `Authorization`; a value pasted with its `Bearer ` prefix
/// is sent without it, which every Unleash version accepts.
fn unleash_token(t: Secret) -> Secret {
    let v = t.expose();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => Secret::new(v[7..].trim().to_string()),
        _ => t,
    }
}

impl Config {
    /// The rules URL, when rules are served over HTTP.
    pub fn rules_url(&self) -> Option<String> {
        (!self.rules_origin.is_empty()).then(|| format!("{}{}", self.rules_origin, self.rules_path))
    }

    /// Remove every configured secret from text that came from elsewhere (a peer
    /// may echo our request back in an error body): each secret as configured, the
    /// Basic credential as it travels (`base64(user:password)`), and so the
    /// `Bearer <token>` and `Basic <credential>` forms of headers.
    pub fn redact(&self, text: &str) -> String {
        let mut patterns: Vec<String> = [
            &self.unleash_token,
            &self.scale_token,
            &self.rules_token,
            &self.auth.bearer,
            &self.auth.basic_password,
            &self.auth.hmac_secret,
            &self.metrics_token,
        ]
        .into_iter()
        .chain(self.channels.iter().map(|c| &c.authorization))
        .filter(|s| !s.is_empty())
        .map(|s| s.expose().to_string())
        .collect();
        for c in &self.channels {
            // The credential without its scheme (`Bearer x` → `x`), and a secret path
            // (a short one such as `/` is no secret, and would garble every text).
            if let Some((_, cred)) = c.authorization.expose().split_once(' ') {
                if cred.trim().len() >= 4 {
                    patterns.push(cred.trim().to_string());
                }
            }
            if c.path.expose().len() >= 8 {
                patterns.push(c.path.expose().to_string());
            }
        }
        if !self.auth.basic_password.is_empty() {
            use base64::Engine;
            let pair = format!(
                "{}:{}",
                self.auth.basic_user,
                self.auth.basic_password.expose()
            );
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                patterns.push(engine.encode(&pair));
            }
        }
        // Longest first: a secret that contains another is removed whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns
            .iter()
            .fold(text.to_string(), |t, p| t.replace(p.as_str(), "<redacted>"))
    }

    /// [`Config::redact`], then at most `max_chars` characters (cut on a character
    /// boundary, '…' appended when cut). In this order, a secret that straddles the
    /// cut is removed whole rather than leaving a prefix that no longer matches.
    pub fn redact_and_clip(&self, text: &str, max_chars: usize) -> String {
        clip(&self.redact(text), max_chars)
    }
}

/// At most `max_chars` characters of `s`, '…' appended when cut.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A credential must fit in an HTTP header as it is: visible ASCII, spaces and tabs
/// inside, nothing else. The value itself is never part of the error.
fn header_value(var: &str, v: &str) -> Result<(), String> {
    match v
        .chars()
        .position(|c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        None => Ok(()),
        Some(at) => Err(format!(
            "variable {var}: character {} is a control or non-ASCII character, which cannot go in an HTTP header",
            at + 1
        )),
    }
}

/// A path (with an optional query; no fragment) exactly as it is to be sent: RFC 3986
/// characters and well-formed percent-escapes only; nothing is encoded for the user.
fn uri_path(var: &str, origin: &str, v: &str) -> Result<String, String> {
    if let Some(e) = path_error(v) {
        return Err(format!("variable {var}: {e}"));
    }
    format!("{origin}{v}")
        .parse::<http::Uri>()
        .map_err(|e| format!("variable {var}: {v:?} does not form a URL: {e}"))?;
    Ok(v.to_string())
}

/// Why `v` is not a path (with an optional query) to send as it is: RFC 3986
/// characters and well-formed percent-escapes only.
pub fn path_error(v: &str) -> Option<String> {
    if !v.starts_with('/') {
        return Some("must start with /".into());
    }
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ok = match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Some(format!("{v:?} has a '%' not followed by two hex digits"));
                }
                i += 2;
                true
            }
            // '?' starts the query, whose characters are the path's and '?'.
            _ => b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b),
        };
        if !ok {
            let c = v[i..].chars().next().unwrap_or('?');
            return Some(format!(
                "{v:?} contains {c:?}, which is not allowed in a URL path (percent-encode it)"
            ));
        }
        i += 1;
    }
    if format!("http://x.invalid{v}").parse::<http::Uri>().is_err() {
        return Some(format!("{v:?} does not form a URL"));
    }
    None
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
pub(crate) mod tests {
    use super::*;

    /// A valid configuration, with some variables overridden.
    pub(crate) fn config(over: &[(&str, &str)]) -> Config {
        Config::load(vars(over)).unwrap()
    }

    fn vars(over: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut all = crate::testing::variables(&[
            ("unleash_url", "http://127.0.0.1:4242/"),
            ("unleash_token", "tok"),
            ("webhook_token", "hook"),
        ]);
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
            (("audit_unmatched", "maybe"), "variable audit_unmatched"),
            (("count_unmatched", "maybe"), "variable count_unmatched"),
            (("outbound_timeout_ms", "0"), "variable outbound_timeout_ms"),
            (("max_changes", "20/h"), "variable max_changes"),
            (("max_changes", "0 per 1h"), "variable max_changes"),
            (("max_changes", "20 per soon"), "variable max_changes"),
            (("max_changes", "5000 per 1h"), "variable max_changes"),
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
    fn load_webhook_reads_only_what_every_delivery_needs_with_the_same_errors() {
        let read = std::cell::RefCell::new(Vec::new());
        let all = vars(&[("unleash_url", "not a url")]);
        let c = Config::load_webhook(|n| {
            read.borrow_mut().push(n.to_string());
            all(n)
        })
        .unwrap();
        assert_eq!(c.part(), Part::Delivery);
        assert_eq!(config(&[]).part(), Part::All);
        assert_eq!(c.auth.bearer.expose(), "hook");
        assert_eq!(c.rules_file, "/remediation.yaml");
        assert_eq!(
            read.take(),
            [
                "rules_origin",
                "rules_path",
                "webhook_token",
                "rules_file",
                "dry_run",
                "audit_unmatched",
                "count_unmatched"
            ]
        );
        let c = Config::load_webhook_auth(vars(&[("webhook_hmac_secret", "s")])).unwrap();
        assert_eq!(c.part(), Part::Auth);
        assert_eq!(
            (c.auth.hmac_header.as_str(), c.auth.hmac_window_s),
            ("x-grafana-alerting-signature", 300)
        );
        for (over, part) in [
            (("dry_run", "maybe"), Part::Delivery),
            (("audit_unmatched", "maybe"), Part::Delivery),
            (("count_unmatched", "maybe"), Part::Delivery),
            (("rules_origin", "http://x/rules"), Part::Delivery),
            (("rules_path", "rules.yaml"), Part::Delivery),
            (("webhook_token", "a\nb"), Part::Delivery),
            (("webhook_hmac_header", "X Sig"), Part::Auth),
            (("webhook_hmac_window_s", "0"), Part::Auth),
            (("allow_unauthenticated", "maybe"), Part::Auth),
            (("webhook_basic_user", "am"), Part::Auth),
            (("outbound_budget_ms", "0"), Part::All),
        ] {
            let whole = Config::load(vars(&[over])).unwrap_err();
            for (p, load) in [
                (Part::Delivery, Config::load_webhook(vars(&[over]))),
                (Part::Auth, Config::load_webhook_auth(vars(&[over]))),
            ] {
                match load {
                    Err(e) => assert!(p >= part && e == whole, "{over:?} {p:?}: {e}"),
                    Ok(_) => assert!(p < part, "{over:?} {p:?}"),
                }
            }
        }
    }

    #[test]
    fn load_more_reads_only_what_was_not_read_and_equals_a_whole_load() {
        let over = [
            ("webhook_basic_user", "am"),
            ("webhook_basic_password", "pw"),
            ("dry_run", "yes"),
            ("scale_token", "s"),
        ];
        let read = std::cell::RefCell::new(Vec::<String>::new());
        let all = vars(&over);
        let var = |n: &str| {
            read.borrow_mut().push(n.to_string());
            all(n)
        };
        let whole = Config::load(var).unwrap();
        let every = read.take();
        for start in [Part::Delivery, Part::Auth] {
            let first = Config::load_dyn(&var, start, None).unwrap();
            let more = first.load_more(Part::Auth, var).unwrap();
            let more = more.load_more(Part::All, var).unwrap();
            let (mut read, mut every) = (read.take(), every.clone());
            read.sort();
            every.sort();
            assert_eq!(read, every, "{start:?}: each variable once");
            assert_eq!(more.part(), Part::All);
            assert_eq!(format!("{more:?}"), format!("{whole:?}"));
            assert_eq!(more.auth.basic_password.expose(), "pw");
            assert_eq!(more.scale_token.expose(), "s");
        }
        // The first bad variable of a whole load is the one reported.
        let bad = vars(&[("unleash_url", "x"), ("outbound_timeout_ms", "0")]);
        let first = Config::load_webhook(&bad).unwrap();
        assert_eq!(
            first.load_more(Part::All, &bad).unwrap_err(),
            Config::load(&bad).unwrap_err()
        );
    }

    #[test]
    fn audit_unmatched_is_off_unless_turned_on() {
        assert!(!Config::load(vars(&[])).unwrap().audit_unmatched);
        let c = Config::load(vars(&[("audit_unmatched", "true")])).unwrap();
        assert!(c.audit_unmatched);
    }

    #[test]
    fn max_changes_is_optional_and_parsed() {
        assert_eq!(Config::load(vars(&[])).unwrap().max_changes, None);
        let c = Config::load(vars(&[("max_changes", " 20 per 1h\n")])).unwrap();
        assert_eq!(c.max_changes, Some((20, Duration::from_secs(3600))));
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

    #[test]
    fn values_are_trimmed_so_secret_files_with_a_trailing_newline_work() {
        let c = config(&[
            ("unleash_token", "tok\n"),
            ("scale_token", " scale\r\n"),
            ("webhook_token", "hook\n"),
            ("rules_token", "\trules\n"),
            ("webhook_hmac_secret", "hmac\n"),
            ("scale_path", "/scale\n"),
            ("rules_path", " /r.yaml\n"),
            ("unleash_project", "default\n"),
        ]);
        assert_eq!(c.unleash_token.expose(), "tok");
        assert_eq!(c.scale_token.expose(), "scale");
        assert_eq!(c.auth.bearer.expose(), "hook");
        assert_eq!(c.rules_token.expose(), "rules");
        assert_eq!(c.auth.hmac_secret.expose(), "hmac");
        assert_eq!(c.scale_path, "/scale");
        assert_eq!(c.rules_path, "/r.yaml");
        assert_eq!(c.unleash_project.as_str(), "default");
    }

    #[test]
    fn tokens_that_cannot_be_header_values_are_errors_naming_the_variable() {
        for var in [
            "unleash_token",
            "scale_token",
            "rules_token",
            "webhook_token",
        ] {
            for bad in [
                "tok\nen-SECRET",
                "tok\u{0}SECRET",
                "tök-SECRET",
                "a\u{7f}SECRET",
            ] {
                let err = Config::load(vars(&[(var, bad)])).unwrap_err();
                assert!(
                    err.contains(&format!("variable {var}")),
                    "{var}={bad:?}: {err}"
                );
                assert!(!err.contains("SECRET"), "the value is not echoed: {err}");
            }
        }
        // Spaces and tabs inside are allowed in a header value.
        assert_eq!(
            config(&[("scale_token", "a b\tc")]).scale_token.expose(),
            "a b\tc"
        );
    }

    #[test]
    fn paths_that_are_not_uri_paths_are_errors_naming_the_variable() {
        for var in ["scale_path", "rules_path"] {
            for bad in [
                "/scale hook",
                "/a\nb",
                "/a#frag",
                "/a%zz",
                "/a%2",
                "/größe",
                "/a\"b",
                "/a{b}",
                "/a\\b",
                "scale",
            ] {
                let err = Config::load(vars(&[(var, bad)])).unwrap_err();
                assert!(
                    err.starts_with(&format!("variable {var}")),
                    "{var}={bad:?}: {err}"
                );
            }
            for good in [
                "/",
                "/v1/scale",
                "/a%20b",
                "/hooks/scale?team=a&x=1",
                "/~u/a:b@c",
            ] {
                let c = config(&[(var, good)]);
                assert_eq!(
                    if var == "scale_path" {
                        &c.scale_path
                    } else {
                        &c.rules_path
                    },
                    good
                );
            }
        }
    }

    #[test]
    fn basic_credentials_need_both_halves_and_the_error_names_the_missing_one() {
        let err = Config::load(vars(&[("webhook_basic_user", "am")])).unwrap_err();
        assert!(err.starts_with("variable webhook_basic_password"), "{err}");
        let err = Config::load(vars(&[("webhook_basic_password", "pw")])).unwrap_err();
        assert!(err.starts_with("variable webhook_basic_user"), "{err}");
        let c = config(&[
            ("webhook_basic_user", "am"),
            ("webhook_basic_password", "pw"),
        ]);
        assert!(c.auth.basic_configured());
        assert!(!config(&[]).auth.basic_configured());
    }

    #[test]
    fn redact_and_clip_never_leaves_a_prefix_of_a_token_straddling_the_cut() {
        let token = "s3cr3t-Token-Value-0042";
        let c = config(&[("unleash_token", token)]);
        for before in 200 - token.len()..=200 {
            for filler in ["x", "é"] {
                let text = format!("{}{token} and more", filler.repeat(before));
                let out = c.redact_and_clip(&text, 200);
                assert!(out.chars().count() <= 201, "{out}");
                for n in 4..=token.len() {
                    assert!(!out.contains(&token[..n]), "{before}: {out}");
                }
            }
        }
        assert_eq!(c.redact_and_clip("short", 200), "short");
        assert_eq!(c.redact_and_clip("ééé", 2), "éé…");
    }

    #[test]
    fn redact_removes_basic_credentials_as_sent_and_bearer_forms() {
        let c = config(&[
            ("webhook_basic_user", "alertmanager"),
            ("webhook_basic_password", "basic-SECRET-pw"),
            ("scale_token", "scale-SECRET"),
        ]);
        // base64("alertmanager:basic-SECRET-pw")
        let b64 = "YWxlcnRtYW5hZ2VyOmJhc2ljLVNFQ1JFVC1wdw==";
        let echoed = format!(
            "headers: {{authorization: \"Basic {b64}\", x: \"Basic {}\", y: \"Bearer scale-SECRET\", z: \"bearer hook\"}}",
            b64.trim_end_matches('=')
        );
        let out = c.redact(&echoed);
        for leaked in [
            b64.trim_end_matches('='),
            "YWxlcnRtYW5h",
            "scale-SECRET",
            "hook",
        ] {
            assert!(!out.contains(leaked), "{leaked}: {out}");
        }
        assert!(
            out.contains("Basic <redacted>") && out.contains("Bearer <redacted>"),
            "{out}"
        );
    }

    #[test]
    fn notify_channels_default_to_unconfigured_and_errors_name_the_variable() {
        let c = config(&[]);
        let names: Vec<_> = c.channels.iter().map(|ch| ch.name.as_str()).collect();
        assert_eq!(names, ["slack", "grafana", "alertmanager"]);
        assert!(c.channels.iter().all(|ch| ch.origin.is_empty()));
        let c = config(&[
            ("notify_2_origin", "https://grafana.example:3000/"),
            ("notify_2_authorization", "Bearer glsa_SECRET_0042"),
            ("notify_1_path", "/services/T0/B0/SLACK-SECRET"),
        ]);
        let g = c.channel("grafana").unwrap();
        assert_eq!(
            (g.slot, g.origin.as_str()),
            (2, "https://grafana.example:3000")
        );
        // Both secrets, and the token without its scheme, are redacted.
        let out =
            c.redact("x Bearer glsa_SECRET_0042 glsa_SECRET_0042 /services/T0/B0/SLACK-SECRET");
        assert!(!out.contains("SECRET"), "{out}");
        for (over, needle) in [
            (
                ("notify_1_origin", "http://hooks/x"),
                "variable notify_1_origin",
            ),
            (("notify_3_name", "a b"), "variable notify_3_name"),
            (
                ("notify_2_authorization", "Bearer a\nSECRET"),
                "variable notify_2_authorization",
            ),
            (("notify_1_path", "/a b SECRET"), "variable notify_1_path"),
        ] {
            let err = Config::load(vars(&[over])).unwrap_err();
            assert!(err.starts_with(needle), "{over:?}: {err}");
            assert!(!err.contains("SECRET"), "a secret is not echoed: {err}");
        }
        // Two configured channels may not share a name; unconfigured ones may.
        let err = Config::load(vars(&[
            ("notify_1_origin", "http://a.test"),
            ("notify_2_origin", "http://b.test"),
            ("notify_2_name", "slack"),
        ]))
        .unwrap_err();
        assert!(err.starts_with("variable notify_2_name"), "{err}");
        assert!(Config::load(vars(&[("notify_2_name", "slack")])).is_ok());
    }
}
