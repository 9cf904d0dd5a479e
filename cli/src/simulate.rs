//! `remediator simulate`: the component's real handler over an in-memory platform,
//! asked for a dry run, so the plan printed is exactly the component's decision.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remediator::platform::{KvError, OutboundRequest, OutboundResponse, Platform, SendError};
use serde_json::Value;

use crate::style::Style;
use crate::{Output, Route};

#[derive(clap::Args)]
pub struct Args {
    /// Rules file (Keptn 0.6, Keptn 0.8 or remediator/v1).
    #[arg(long, value_name = "RULES")]
    rules: PathBuf,
    /// Webhook body (Alertmanager, Grafana or Keptn JSON); `-` reads standard input.
    #[arg(long, value_name = "P.json")]
    payload: PathBuf,
    /// What remediator remembers: a JSON object of key-value records (this version's
    /// cells `o/<hash>` = ticket and `o/<hash>/<ticket>` = record, or the earlier `occ/<hash>`,
    /// `rule/<hash>`) to start from. Default: nothing remembered.
    #[arg(long, value_name = "S.json")]
    state: Option<PathBuf>,
    /// The route the payload is POSTed to; default `/` (format detected from the body).
    #[arg(long, value_enum)]
    route: Option<Route>,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Set a component variable (repeatable), e.g. --var unleash_url=https://unleash.example
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Simulated time, RFC 3339 or Unix milliseconds (default: now); matters for cooldowns,
    /// circuit breakers, ladders and claims in --state.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<i64>,
}

/// The component's manifest: its `[variables]` defaults are the simulation's.
const SPIN_TOML: &str = include_str!("../../spin.toml");

/// Variables `--var` may not set: the rules come from `--rules`, never over HTTP.
const RULES_VARIABLES: [&str; 5] = [
    "rules_file",
    "rules_origin",
    "rules_path",
    "rules_token",
    "rules_ttl_s",
];

/// `name = { default = "value", ... }` lines of spin.toml's `[variables]` table
/// (a variable without a default gets "").
fn spin_defaults() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_variables = false;
    for line in SPIN_TOML.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_variables = t == "[variables]";
            continue;
        }
        if !in_variables || t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = t.split_once('=') else {
            continue;
        };
        let value = rest
            .split_once("default")
            .and_then(|(_, d)| d.trim_start().strip_prefix('='))
            .and_then(|d| d.trim_start().strip_prefix('"'))
            .and_then(|d| d.split_once('"'))
            .map_or("", |(v, _)| v);
        out.push((name.trim().to_string(), value.to_string()));
    }
    out
}

/// spin.toml's defaults, with `allow_unauthenticated=true` (the simulated request
/// carries no credential), `rules_file` set to the --rules path and no rules URL.
fn variables(rules: &Path, overrides: &[(String, String)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = spin_defaults().into_iter().collect();
    vars.insert("allow_unauthenticated".into(), "true".into());
    vars.insert("rules_file".into(), rules.display().to_string());
    vars.insert("rules_origin".into(), String::new());
    vars.extend(overrides.iter().cloned());
    vars
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if RULES_VARIABLES.contains(&name) {
        return Err(format!(
            "{name}: simulate reads the rules from --rules, never from a variable"
        ));
    }
    let known = spin_defaults();
    if !known.iter().any(|(n, _)| n == name) {
        let names: Vec<&str> = known
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !RULES_VARIABLES.contains(n))
            .collect();
        return Err(format!(
            "unknown variable {name:?}; one of: {}",
            names.join(", ")
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

fn parse_at(s: &str) -> Result<i64, String> {
    remediator::audit::parse_time(s)
        .ok_or_else(|| format!("{s:?} is not RFC 3339 (2026-11-26T14:02:06Z) or Unix milliseconds"))
}

/// The platform the simulated component runs on: variables and key-value in
/// memory, the rules file from disk, a clock that never really waits, and no network.
struct Sim {
    vars: HashMap<String, String>,
    rules_path: PathBuf,
    kv: RefCell<BTreeMap<String, Vec<u8>>>,
    now: Cell<i64>,
    attempted_sends: RefCell<Vec<String>>,
    logs: RefCell<Vec<String>>,
}

impl Platform for Sim {
    /// Never reached: the request asks for a dry run. If the component tries anyway,
    /// nothing is sent, the attempt is recorded, and `simulate` fails loudly.
    fn send(
        &self,
        req: OutboundRequest,
        _timeout: Duration,
    ) -> Result<OutboundResponse, SendError> {
        let what = format!("{} {}", req.method(), req.uri());
        self.attempted_sends.borrow_mut().push(what.clone());
        Err(SendError::Denied(format!(
            "remediator simulate never sends ({what})"
        )))
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        if self.vars.get("rules_file").map(String::as_str) == Some(path) {
            std::fs::read_to_string(&self.rules_path)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a bundled file",
            ))
        }
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv.borrow_mut().remove(key);
        Ok(())
    }

    fn kv_keys(&self) -> Result<Vec<String>, KvError> {
        Ok(self.kv.borrow().keys().cloned().collect())
    }

    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        let mut kv = self.kv.borrow_mut();
        if kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        kv.insert(key.into(), new.to_vec());
        Ok(true)
    }

    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut kv = self.kv.borrow_mut();
        let current = match kv.get(key) {
            None => 0,
            Some(v) => String::from_utf8_lossy(v)
                .trim()
                .parse::<i64>()
                .map_err(|_| KvError(format!("counter {key} is not a number")))?,
        };
        kv.insert(key.into(), (current + delta).to_string().into_bytes());
        Ok(current + delta)
    }

    /// Simulated time passes instead of real time.
    fn sleep(&self, duration: Duration) {
        self.now.set(self.now.get() + duration.as_millis() as i64);
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    /// A simulation writes nothing, so it never needs a delivery id.
    fn random_u64(&self) -> u64 {
        0
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}

/// The state file: `{"occ/<hash>": {...}, "rule/<hash>": {...}}`, each value the
/// JSON record remediator stores under that key.
fn load_state(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "{name}: must be a JSON object of key -> record, e.g. {{\"occ/<hash>\": {{...}}}}"
        ));
    };
    map.into_iter()
        .map(|(k, v)| {
            serde_json::to_vec(&v)
                .map(|bytes| (k, bytes))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect()
}

fn read_payload(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("standard input: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn run(args: &Args) -> u8 {
    match simulate(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("remediator simulate: {e}");
            2
        }
    }
}

fn simulate(args: &Args) -> Result<u8, String> {
    let body = read_payload(&args.payload)?;
    let kv = match &args.state {
        Some(path) => load_state(path)?,
        None => BTreeMap::new(),
    };
    if !args.rules.is_file() {
        return Err(format!("{}: no such file", args.rules.display()));
    }
    let sim = Sim {
        vars: variables(&args.rules, &args.vars),
        rules_path: args.rules.clone(),
        kv: RefCell::new(kv),
        now: Cell::new(args.at.unwrap_or_else(now_ms)),
        attempted_sends: RefCell::new(Vec::new()),
        logs: RefCell::new(Vec::new()),
    };
    let path = match args.route {
        None => "/",
        Some(Route::Alertmanager) => "/alertmanager",
        Some(Route::Grafana) => "/grafana",
        Some(Route::Keptn) => "/keptn",
    };
    let req = http::Request::post(format!("{path}?dry_run=true"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = remediator::app::handle(&sim, req);

    let attempted = sim.attempted_sends.borrow();
    if !attempted.is_empty() {
        eprintln!(
            "remediator simulate: BUG: the component tried to send during a dry run (nothing was sent):"
        );
        for a in attempted.iter() {
            eprintln!("  {a}");
        }
        return Ok(1);
    }

    let status = resp.status().as_u16();
    let raw = String::from_utf8_lossy(resp.body()).into_owned();
    let json: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    match args.output {
        Output::Json => print!("{raw}"),
        Output::Human => {
            if json.get("problems").is_some() {
                print!("{}", render(&json, Style::for_stdout()));
            }
        }
    }
    if status >= 400 {
        eprintln!(
            "remediator simulate: the component would answer {status}: {}",
            error_message(&json, &raw)
        );
        return Ok(1);
    }
    Ok(0)
}

/// The error a 4xx/5xx answer carries: its `error`, else (a 503 report) the problems
/// that made it one.
fn error_message(json: &Value, raw: &str) -> String {
    if let Some(e) = json.get("error").and_then(Value::as_str) {
        return e.to_string();
    }
    let why: Vec<String> = json
        .get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| {
            matches!(
                p.get("outcome").and_then(Value::as_str),
                Some("in_progress" | "error" | "failed")
            )
        })
        .map(|p| {
            format!(
                "{}: {}",
                text(p, "title"),
                p.get("detail").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    if why.is_empty() {
        raw.trim().to_string()
    } else {
        why.join("; ")
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One block per problem: title and status, rule, outcome, and what each action would send.
pub fn render(report: &Value, s: Style) -> String {
    let mut out = String::new();
    let problems = report
        .get("problems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    out.push_str(&s.dim(&format!(
        "rules:   {} ({})\npayload: {}, {} problem{}, dry run\n",
        text(report, "rules_source"),
        text(report, "rules_format"),
        text(report, "format"),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )));
    if let Some(w) = report.get("rules_warning").and_then(Value::as_str) {
        out.push_str(&format!("{} {w}\n", s.yellow("rules warning:")));
    }
    for p in &problems {
        out.push('\n');
        out.push_str(&format!(
            "{} [{}]\n",
            s.bold(text(p, "title")),
            text(p, "status")
        ));
        out.push_str(&format!("  occurrence: {}\n", s.dim(text(p, "occurrence"))));
        let rule = match p.get("rule").and_then(Value::as_str) {
            Some(r) => r.to_string(),
            None => "no matching rule".to_string(),
        };
        out.push_str(&format!("  rule:       {rule}\n"));
        if let Some(r) = p.get("rule").and_then(Value::as_str) {
            // Where the component remembers this occurrence (see --state).
            let _ = r;
            let key = remediator::claim::occurrence_key(text(p, "occurrence"));
            out.push_str(&format!("  state key:  {}\n", s.dim(&key)));
        }
        let outcome = text(p, "outcome");
        let painted = match outcome {
            "dry_run" | "acted" | "reverted" => s.green(outcome),
            "failed" | "error" | "circuit_open" | "in_progress" => s.red(outcome),
            _ => s.yellow(outcome),
        };
        let detail = text(p, "detail");
        let detail = detail.strip_prefix("dry run: ").unwrap_or(detail);
        if detail.is_empty() || detail.replace(' ', "_") == outcome {
            out.push_str(&format!("  outcome:    {painted}\n"));
        } else {
            out.push_str(&format!("  outcome:    {painted} ({detail})\n"));
        }
        if let Some(first) = p.get("first_handled") {
            let delivery = first
                .get("delivery")
                .and_then(Value::as_i64)
                .map(|d| format!(" (audit delivery {d})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  first:      handled at {}{delivery}\n",
                text(first, "at")
            ));
        }
        for a in p
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push_str(&format!("  action:     {}\n", describe_action(a)));
            if let Some(d) = a.get("detail").and_then(Value::as_str) {
                out.push_str(&format!("              {}\n", s.cyan(d)));
            }
            if let Some(e) = a.get("error").and_then(Value::as_str) {
                out.push_str(&format!("              {}\n", s.red(e)));
            }
        }
    }
    let rejected = report
        .get("rejected")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !rejected.is_empty() {
        out.push_str(&format!(
            "\n{} alert(s) rejected (a retry cannot fix them):\n",
            rejected.len()
        ));
        for r in &rejected {
            out.push_str(&format!("  {}\n", s.red(text(r, "reason"))));
        }
    }
    if let Some(n) = report.get("not_processed").and_then(Value::as_u64) {
        if n > 0 {
            out.push_str(&format!("\n{n} alert(s) not processed\n"));
        }
    }
    out
}

fn describe_action(a: &Value) -> String {
    match text(a, "action") {
        "featuretoggle" => format!(
            "turn {} flag {} (project {}, environment {})",
            if a.get("enabled").and_then(Value::as_bool) == Some(true) {
                "on"
            } else {
                "off"
            },
            text(a, "flag"),
            text(a, "project"),
            text(a, "environment")
        ),
        "rollout" => format!(
            "set the rollout of flag {} to {}% (project {}, environment {}, {})",
            text(a, "flag"),
            a.get("rollout").and_then(Value::as_u64).unwrap_or_default(),
            text(a, "project"),
            text(a, "environment"),
            match a.get("strategy").and_then(Value::as_str) {
                Some(st) => format!("strategy {st}"),
                None => "its flexibleRollout strategy".to_string(),
            }
        ),
        "scaling" => {
            let service = a
                .get("service")
                .and_then(Value::as_str)
                .map_or("no service label".to_string(), |s| format!("service {s}"));
            let namespace = a
                .get("namespace")
                .and_then(Value::as_str)
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default();
            format!("scale {} ({service}{namespace})", text(a, "value"))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_toml_defaults_make_a_valid_configuration() {
        let defaults = spin_defaults();
        let get = |n: &str| {
            defaults
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("unleash_url").as_deref(), Some("http://127.0.0.1:4242"));
        assert_eq!(get("unleash_token").as_deref(), Some(""));
        let vars = variables(Path::new("r.yaml"), &[]);
        let cfg = remediator::config::Config::load(|n| vars.get(n).cloned())
            .expect("spin.toml's defaults load");
        assert!(cfg.allow_unauthenticated);
        assert_eq!(cfg.rules_file, "r.yaml");
        assert!(cfg.rules_url().is_none());
    }

    #[test]
    fn var_overrides_are_checked() {
        assert!(parse_var("unleash_url=https://u.example").is_ok());
        assert!(parse_var("unleash_ur=x")
            .unwrap_err()
            .contains("unknown variable"));
        assert!(parse_var("rules_origin=http://x")
            .unwrap_err()
            .contains("--rules"));
        assert!(parse_var("novalue").is_err());
    }
}
