//! `allowed_outbound_hosts`, parsed and matched with the rules of Spin's
//! `outbound-networking-config` crate (re-implemented here, not copied):
//!
//! * an entry is `<scheme>://<host>[:<port>]`; `*` is allowed for the scheme,
//!   the host, the port, and as a `*.` host prefix; a port may be `a..b`
//!   (end exclusive); a missing port means the scheme's well-known port;
//!   an IP literal or CIDR (`10.0.0.0/8`) is a network;
//! * a path is an error, except a lone trailing `/`;
//! * templates (`{{ var }}`) are resolved from application variables; a
//!   template that resolves to `""`, `http://` or `https://` is skipped; any
//!   other resolution failure (missing required variable, value that does not
//!   parse) makes the whole list unusable, which denies every request
//!   (Spin logs the error and answers `HttpRequestDenied`).

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use crate::variables::{Template, VarError};

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemeCfg {
    Any,
    One(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCfg {
    Any,
    AnySubdomain(String),
    ToSelf,
    Domain(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortCfg {
    Any,
    Port(u16),
    Range(u16, u16),
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: SchemeCfg,
    host: HostCfg,
    port: PortCfg,
}

pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn net_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl HostCfg {
    fn parse(host: &str) -> Result<Self> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostCfg::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostCfg::ToSelf);
        }
        if host.starts_with('{') {
            bail!("host lists are not yet supported");
        }
        if let Some((ip, bits)) = parse_net(host) {
            return Ok(HostCfg::Net(ip, bits));
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.contains('/') {
            bail!("must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            if !valid_domain(domain) || parse_net(domain).is_some() {
                bail!("wildcard suffix must be a domain");
            }
            return Ok(HostCfg::AnySubdomain(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        if let Some((ip, bits)) = parse_net(host) {
            return Ok(HostCfg::Net(ip, bits));
        }
        if !valid_domain(host) {
            bail!("invalid host {host:?}");
        }
        Ok(HostCfg::Domain(host.to_ascii_lowercase()))
    }

    fn allows(&self, host: &str) -> bool {
        let ip = parse_net(host).filter(|(_, b)| *b == 32 || *b == 128);
        match (self, ip) {
            (HostCfg::Any, _) => true,
            (HostCfg::Net(n, b), Some((ip, _))) => net_contains(*n, *b, ip),
            (HostCfg::Net(..), None) => false,
            (HostCfg::Domain(d), None) => host.eq_ignore_ascii_case(d),
            (HostCfg::AnySubdomain(s), None) => host.to_ascii_lowercase().ends_with(s.as_str()),
            _ => false,
        }
    }
}

impl PortCfg {
    fn parse(port: &str, scheme: &str) -> Result<Self> {
        if port.is_empty() {
            return well_known_port(scheme).map(PortCfg::Port).with_context(|| {
                format!("no port was provided and the scheme {scheme:?} does not have a known default port number")
            });
        }
        if port == "*" {
            return Ok(PortCfg::Any);
        }
        if port.starts_with('{') {
            bail!("port lists are not yet supported");
        }
        if let Some((a, b)) = port.split_once("..") {
            let a = a
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            let b = b
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            return Ok(PortCfg::Range(a, b));
        }
        Ok(PortCfg::Port(port.parse().with_context(|| {
            format!("port {port:?} is not a number")
        })?))
    }

    fn allows(&self, port: Option<u16>, scheme: &str) -> bool {
        let Some(p) = port.or_else(|| well_known_port(scheme)) else {
            return matches!(self, PortCfg::Any);
        };
        match self {
            PortCfg::Any => true,
            PortCfg::Port(x) => *x == p,
            PortCfg::Range(a, b) => (*a..*b).contains(&p),
        }
    }
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<Self> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            if matches!(url, "*" | ":" | "" | "?") {
                bail!("{url:?} is not an allowed outbound host format: use <scheme>://<host>[:<port>] ('*://*:*' allows everything)");
            }
            bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')");
        };
        let (host, port) = match rest.rsplit_once(':') {
            None => (rest, ""),
            Some((h, "")) => (h, ""),
            Some((h, tail)) => {
                if HostCfg::parse(rest).is_ok() {
                    (rest, "")
                } else {
                    let port = match tail.split_once('/') {
                        Some((port, path)) => {
                            if !path.is_empty() {
                                bail!("{url:?} has a path but is not allowed to");
                            }
                            port
                        }
                        None => tail,
                    };
                    (h, port)
                }
            }
        };
        let port = PortCfg::parse(port, scheme)
            .with_context(|| format!("{url:?}: invalid allowed host port {port:?}"))?;
        let scheme = if scheme == "*" {
            SchemeCfg::Any
        } else if scheme.starts_with('{') {
            bail!("{url:?}: scheme lists are not supported");
        } else if scheme.is_empty() || scheme.chars().any(|c| !c.is_alphabetic()) {
            bail!("{url:?}: invalid scheme {scheme:?}: only alphabetic characters are allowed");
        } else {
            SchemeCfg::One(scheme.to_string())
        };
        let host = HostCfg::parse(host)
            .with_context(|| format!("{url:?}: invalid allowed host {host:?}"))?;
        Ok(AllowedHost {
            original: entry.to_string(),
            scheme,
            host,
            port,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = match &self.scheme {
            SchemeCfg::Any => true,
            SchemeCfg::One(s) => s == scheme,
        };
        scheme_ok && self.host.allows(host) && self.port.allows(port, scheme)
    }

    fn allows_relative(&self, schemes: &[&str]) -> bool {
        let scheme_ok = schemes.iter().any(|s| match &self.scheme {
            SchemeCfg::Any => true,
            SchemeCfg::One(x) => x == s,
        });
        scheme_ok && matches!(self.host, HostCfg::Any | HostCfg::ToSelf)
    }
}

/// One manifest entry before template resolution.
#[derive(Debug, Clone)]
enum Entry {
    Exact(AllowedHost),
    Template(String, Template),
}

/// A component's list as written in the manifest.
#[derive(Debug, Clone)]
pub struct AllowedHostsSpec {
    entries: Vec<Entry>,
}

/// The list after resolution, as used per request.
#[derive(Debug, Clone)]
pub enum Allowed {
    Hosts(Vec<AllowedHost>),
    /// Resolution failed: Spin denies every outbound request in this case.
    Broken(String),
}

fn parse_or_skip(resolved: &str) -> Result<Option<AllowedHost>> {
    if resolved.is_empty() || resolved == "http://" || resolved == "https://" {
        Ok(None)
    } else {
        AllowedHost::parse(resolved).map(Some)
    }
}

impl AllowedHostsSpec {
    /// Parse literal entries now (an invalid one is a load error in Spin);
    /// keep templates for later.
    pub fn parse(raw: &[String]) -> Result<Self> {
        if raw.len() == 1 && raw[0] == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead");
        }
        let mut entries = Vec::new();
        for r in raw {
            let t = Template::parse(r)
                .map_err(|e| anyhow::anyhow!("allowed_outbound_hosts {r:?}: {e}"))?;
            if t.is_literal() {
                entries.push(Entry::Exact(AllowedHost::parse(r)?));
            } else {
                entries.push(Entry::Template(r.clone(), t));
            }
        }
        Ok(AllowedHostsSpec { entries })
    }

    /// Spin's load-time check: templates whose variables all have defaults
    /// must produce valid entries.
    pub fn validate_with(&self, value: impl Fn(&str) -> Result<String, VarError>) -> Result<()> {
        for e in &self.entries {
            if let Entry::Template(raw, t) = e {
                let Ok(resolved) = t.render(&value) else {
                    continue;
                };
                parse_or_skip(&resolved).with_context(|| {
                    format!("`allowed_outbound_hosts` is malformed: using default variable value(s) with template {raw:?} results in invalid config {resolved:?}")
                })?;
            }
        }
        Ok(())
    }

    /// Resolve every template with the final variable values. `secret`
    /// tells which variables must never appear in messages.
    pub fn resolve(
        &self,
        value: impl Fn(&str) -> Result<String, VarError>,
        secret: impl Fn(&str) -> bool,
    ) -> Allowed {
        let mut out = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Exact(h) => out.push(h.clone()),
                Entry::Template(raw, t) => {
                    let is_secret = t.vars().any(&secret);
                    let resolved = match t.render(&value) {
                        Ok(r) => r,
                        Err(err) => {
                            return Allowed::Broken(format!(
                                "error resolving variables for allowed outbound host {raw:?}: {err}"
                            ))
                        }
                    };
                    match parse_or_skip(&resolved) {
                        Ok(Some(mut h)) => {
                            h.original = if is_secret {
                                raw.clone()
                            } else {
                                format!("{resolved} (from {raw})")
                            };
                            out.push(h)
                        }
                        Ok(None) => {}
                        Err(_) if is_secret => {
                            return Allowed::Broken(format!(
                                "error parsing allowed outbound hosts: template {raw:?} resolved to an invalid entry (value not shown: secret)"
                            ))
                        }
                        Err(err) => {
                            return Allowed::Broken(format!(
                                "error parsing allowed outbound hosts: template {raw:?} resolved to an invalid entry: {err:#}"
                            ))
                        }
                    }
                }
            }
        }
        Allowed::Hosts(out)
    }
}

impl Allowed {
    /// Is `scheme://host[:port]` allowed?
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        match self {
            Allowed::Hosts(h) => h.iter().any(|h| h.allows(scheme, host, port)),
            Allowed::Broken(_) => false,
        }
    }

    /// Is a relative ("self") request allowed?
    pub fn allows_relative(&self, schemes: &[&str]) -> bool {
        match self {
            Allowed::Hosts(h) => h.iter().any(|h| h.allows_relative(schemes)),
            Allowed::Broken(_) => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Allowed::Hosts(h) if h.is_empty() => "(none)".to_string(),
            Allowed::Hosts(h) => h
                .iter()
                .map(|h| h.original.clone())
                .collect::<Vec<_>>()
                .join(", "),
            Allowed::Broken(e) => format!("NONE: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Allowed {
        let raw: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHostsSpec::parse(&raw)
            .unwrap()
            .resolve(|_| Err(VarError::Other("no vars".into())), |_| false)
    }

    #[test]
    fn literal_entries() {
        let a = allowed(&["http://127.0.0.1:4242", "https://example.com"]);
        assert!(a.allows("http", "127.0.0.1", Some(4242)));
        assert!(!a.allows("http", "127.0.0.1", Some(4243)));
        assert!(!a.allows("https", "127.0.0.1", Some(4242)));
        assert!(a.allows("https", "example.com", None));
        assert!(a.allows("https", "EXAMPLE.com", Some(443)));
        assert!(!a.allows("https", "example.com", Some(8443)));
        assert!(!a.allows("http", "example.com", None));
        assert!(!a.allows("https", "sub.example.com", None));
    }

    #[test]
    fn wildcards_ranges_and_cidr() {
        let a = allowed(&["http://*:*"]);
        assert!(a.allows("http", "anything", Some(1)));
        assert!(!a.allows("https", "anything", Some(1)));
        let a = allowed(&["*://host:*"]);
        assert!(a.allows("https", "host", Some(9)));
        assert!(!a.allows("https", "other", Some(9)));
        let a = allowed(&["http://*.example.com:8000..8002", "http://10.0.0.0/8:80"]);
        assert!(a.allows("http", "a.example.com", Some(8001)));
        assert!(!a.allows("http", "a.example.com", Some(8002)));
        assert!(!a.allows("http", "example.com", Some(8001)));
        assert!(a.allows("http", "10.1.2.3", None));
        assert!(!a.allows("http", "11.1.2.3", None));
        let a = allowed(&["http://self"]);
        assert!(a.allows_relative(&["http"]));
        assert!(!a.allows("http", "127.0.0.1", None));
    }

    #[test]
    fn paths_and_bad_entries_are_errors() {
        assert!(AllowedHost::parse("http://127.0.0.1:4242/").is_ok());
        assert!(AllowedHost::parse("https://example.com/").is_ok());
        assert!(AllowedHost::parse("http://127.0.0.1:4242/api").is_err());
        assert!(AllowedHost::parse("https://example.com/api").is_err());
        assert!(AllowedHost::parse("example.com").is_err());
        assert!(AllowedHost::parse("*").is_err());
        assert!(AllowedHost::parse("foo://example.com").is_err());
        assert!(AllowedHost::parse("http://ex*ample.com").is_err());
    }

    #[test]
    fn templates() {
        let spec =
            AllowedHostsSpec::parse(&["{{ a }}".to_string(), "{{ b }}".to_string()]).unwrap();
        let vals = |k: &str| match k {
            "a" => Ok("http://127.0.0.1:4242".to_string()),
            "b" => Ok(String::new()),
            _ => Err(VarError::Other("x".into())),
        };
        let a = spec.resolve(vals, |_| false);
        assert!(a.allows("http", "127.0.0.1", Some(4242)));
        assert!(!a.allows("http", "127.0.0.1", Some(80)));

        // A value with a path breaks the whole list, as in Spin.
        let a = spec.resolve(
            |k: &str| match k {
                "a" => Ok("http://127.0.0.1:4242/health".to_string()),
                _ => Ok("http://127.0.0.1:9100".to_string()),
            },
            |_| false,
        );
        assert!(matches!(a, Allowed::Broken(_)));
        assert!(!a.allows("http", "127.0.0.1", Some(9100)));
        assert!(spec
            .validate_with(|_| Ok("http://h:1/p".to_string()))
            .is_err());
        // A missing value: the list is unusable, every request is denied.
        let a = spec.resolve(|_| Err(VarError::Provider("required".into())), |_| false);
        assert!(matches!(a, Allowed::Broken(_)));
    }
}
