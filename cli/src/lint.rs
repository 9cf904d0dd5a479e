//! `remediator lint`: the rules (read by the component's own parser) against a live
//! Unleash: every flag and environment they name must exist; plus static warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use remediator::actions::unleash::{select_rollout, StrategyChoice};
use remediator::rules::Action;
use serde_json::Value;

use crate::analyze;
use crate::check;
use crate::style::Style;

#[derive(clap::Args)]
pub struct Args {
    /// Rules file (Keptn 0.6, Keptn 0.8 or remediator/v1).
    #[arg(long, value_name = "RULES")]
    rules: PathBuf,
    /// Unleash base URL, e.g. https://unleash.example or http://127.0.0.1:4242.
    #[arg(long, value_name = "URL")]
    unleash_url: String,
    /// Name of the environment variable holding an Unleash admin token (the token
    /// itself never goes on the command line, and is never printed).
    #[arg(long, value_name = "VAR")]
    token_env: String,
    /// Project for flags whose rule names none (the component's `unleash_project`).
    #[arg(long, value_name = "P", default_value = "default")]
    project: String,
    /// Environment for flags whose rule names none (the component's `unleash_environment`).
    #[arg(long, value_name = "E", default_value = "production")]
    environment: String,
    /// Seconds to wait for each Unleash request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

/// Why linting could not happen at all (exit 3).
struct Unreachable(String);

struct Unleash {
    agent: ureq::Agent,
    base: String,
    token: String,
    /// Where the token came from (`$VAR`), for messages; never the token.
    token_source: String,
}

/// One flag as the project listing shows it.
struct FlagInfo {
    /// `None` when the listing does not carry environments (then asked per flag).
    environments: Option<Vec<String>>,
}

impl Unleash {
    fn new(base: &str, token: String, token_source: String, timeout: Duration) -> Unleash {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent("remediator-lint")
            .build()
            .into();
        Unleash {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token,
            token_source,
        }
    }

    /// GET a path; `Ok(None)` for 404. Refusals and transport failures are `Unreachable`.
    fn get(&self, path: &str) -> Result<Option<Value>, Unreachable> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &self.token)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| {
                Unreachable(format!(
                    "cannot reach Unleash at {}: {}",
                    self.base,
                    self.redact(&e.to_string())
                ))
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|e| {
                Unreachable(format!(
                    "Unleash at {} sent an unreadable answer to GET {path}: {}",
                    self.base,
                    self.redact(&e.to_string())
                ))
            })?;
        match status {
            200..=299 => serde_json::from_str(&body).map(Some).map_err(|e| {
                Unreachable(format!(
                    "Unleash at {} answered GET {path} with something that is not JSON ({e}); is this the Unleash URL?",
                    self.base
                ))
            }),
            404 => Ok(None),
            401 | 403 => Err(Unreachable(format!(
                "Unleash at {} refused the token in {} ({status} for GET {path}); it needs an admin token (or a service account's) with access to the projects",
                self.base, self.token_source
            ))),
            _ => Err(Unreachable(format!(
                "Unleash at {} answered {status} for GET {path}: {}",
                self.base,
                excerpt(&self.redact(&body))
            ))),
        }
    }

    fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.token, "<redacted>")
        }
    }

    /// The ids of the projects the token can see (`GET /api/admin/projects`).
    fn projects(&self) -> Result<BTreeSet<String>, Unreachable> {
        let path = "/api/admin/projects";
        let projects = self
            .get(path)?
            .as_ref()
            .and_then(|v| v.get("projects"))
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            });
        projects.ok_or_else(|| {
            Unreachable(format!(
                "Unleash at {} answered GET {path} without a `projects` list; is this the Unleash URL (Unleash 5 or later)?",
                self.base
            ))
        })
    }

    /// The project's flags by name (Unleash answers an unknown project with an empty list).
    fn project_flags(
        &self,
        project: &str,
    ) -> Result<Option<BTreeMap<String, FlagInfo>>, Unreachable> {
        let path = format!(
            "/api/admin/projects/{}/features",
            remediator::actions::encode_segment(project)
        );
        let Some(v) = self.get(&path)? else {
            return Ok(None);
        };
        let features = v.get("features").and_then(Value::as_array).ok_or_else(|| {
            Unreachable(format!(
                "Unleash at {} answered GET {path} without a `features` list; is this Unleash 5 or later?",
                self.base
            ))
        })?;
        Ok(Some(
            features
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?.to_string();
                    Some((
                        name,
                        FlagInfo {
                            environments: environment_names(f),
                        },
                    ))
                })
                .collect(),
        ))
    }

    /// One flag (`GET /api/admin/projects/{p}/features/{f}`); `None`: unknown.
    fn flag(&self, project: &str, flag: &str) -> Result<Option<Value>, Unreachable> {
        let path = format!(
            "/api/admin/projects/{}/features/{}",
            remediator::actions::encode_segment(project),
            remediator::actions::encode_segment(flag)
        );
        self.get(&path)
    }

    /// Environments of one flag.
    fn flag_environments(&self, project: &str, flag: &str) -> Result<Vec<String>, Unreachable> {
        Ok(self
            .flag(project, flag)?
            .as_ref()
            .and_then(environment_names)
            .unwrap_or_default())
    }
}

fn environment_names(flag: &Value) -> Option<Vec<String>> {
    flag.get("environments")
        .and_then(Value::as_array)
        .map(|envs| {
            envs.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
}

fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A flag the rules reference, where (project, environment) the component would use.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FlagRef {
    project: String,
    flag: String,
    environment: String,
}

pub fn run(args: &Args) -> u8 {
    let fail = |msg: String, code: u8| {
        eprintln!("remediator lint: {msg}");
        code
    };
    if !(args.unleash_url.starts_with("http://") || args.unleash_url.starts_with("https://")) {
        return fail(
            format!(
                "--unleash-url {:?} must start with http:// or https://",
                args.unleash_url
            ),
            2,
        );
    }
    let token = std::env::var(&args.token_env).unwrap_or_default();
    let token = token.trim().to_string();
    if token.is_empty() {
        let var = &args.token_env;
        let msg = format!(
            "environment variable {var} is not set or empty (it must hold an Unleash admin token)"
        );
        return fail(msg, 2);
    }
    let set = match check::load(&args.rules) {
        Ok(set) => set,
        Err(e) => {
            println!("{}: {e}", Style::for_stdout().red("error"));
            return 1;
        }
    };
    let s = Style::for_stdout();
    let file = args.rules.display().to_string();
    println!(
        "Linting {file} ({} rules, format {}) against {}",
        set.rules.len(),
        check::format_name(set.format),
        args.unleash_url.trim_end_matches('/')
    );

    let warnings: Vec<String> = analyze::rule_warnings(&set)
        .into_iter()
        .map(|(rule, w)| format!("rule {rule:?}: {w}"))
        .collect();

    // Every flag reference, with the component's defaults filled from the flags.
    let mut refs: BTreeMap<FlagRef, Vec<String>> = BTreeMap::new();
    // Rollout actions, by the strategy they name (`None`: the only one).
    let mut rollouts: BTreeMap<(FlagRef, Option<String>), Vec<String>> = BTreeMap::new();
    for rule in &set.rules {
        for a in &rule.actions {
            let (flag, project, environment, strategy) = match a {
                Action::Flag {
                    flag,
                    project,
                    environment,
                    ..
                } => (flag, project, environment, None),
                Action::Rollout {
                    flag,
                    project,
                    environment,
                    strategy,
                    ..
                } => (flag, project, environment, Some(strategy)),
                Action::Scale { .. } => continue,
            };
            {
                let r = FlagRef {
                    project: project
                        .as_ref()
                        .map_or(args.project.clone(), |p| p.to_string()),
                    flag: flag.to_string(),
                    environment: environment
                        .as_ref()
                        .map_or(args.environment.clone(), |e| e.to_string()),
                };
                if let Some(strategy) = strategy {
                    let rules = rollouts.entry((r.clone(), strategy.clone())).or_default();
                    if !rules.contains(&rule.name) {
                        rules.push(rule.name.clone());
                    }
                }
                let rules = refs.entry(r).or_default();
                if !rules.contains(&rule.name) {
                    rules.push(rule.name.clone());
                }
            }
        }
    }

    let unleash = Unleash::new(
        &args.unleash_url,
        token,
        format!("${}", args.token_env),
        Duration::from_secs(args.timeout.max(1)),
    );
    // Listing the projects checks the URL and the token even when no rule names a flag.
    let known_projects = match unleash.projects() {
        Ok(p) => p,
        Err(Unreachable(msg)) => {
            for w in &warnings {
                println!("{}: {w}", s.yellow("warning"));
            }
            return fail(msg, 3);
        }
    };
    let projects: BTreeSet<&str> = refs.keys().map(|r| r.project.as_str()).collect();
    let mut listings = BTreeMap::new();
    for p in projects.iter().filter(|p| known_projects.contains(**p)) {
        match unleash.project_flags(p) {
            Ok(l) => {
                listings.insert(*p, l);
            }
            Err(Unreachable(msg)) => return fail(msg, 3),
        }
    }

    let mut errors = Vec::new();
    let mut env_cache: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut bad: BTreeSet<FlagRef> = BTreeSet::new();
    for (r, rules) in &refs {
        let who = rules
            .iter()
            .map(|n| format!("rule {n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let Some(flags) = listings.get(r.project.as_str()).and_then(Option::as_ref) else {
            let hint = did_you_mean(&r.project, known_projects.iter().map(String::as_str));
            bad.insert(r.clone());
            errors.push(format!(
                "{who}: project {:?} (for flag {:?}) does not exist in Unleash{hint}",
                r.project, r.flag
            ));
            continue;
        };
        let Some(info) = flags.get(&r.flag) else {
            let hint = did_you_mean(&r.flag, flags.keys().map(String::as_str));
            bad.insert(r.clone());
            errors.push(format!(
                "{who}: flag {:?} is unknown in project {:?}{hint}",
                r.flag, r.project
            ));
            continue;
        };
        let envs = match &info.environments {
            Some(envs) => envs.clone(),
            None => {
                let key = (r.project.clone(), r.flag.clone());
                if !env_cache.contains_key(&key) {
                    match unleash.flag_environments(&r.project, &r.flag) {
                        Ok(envs) => {
                            env_cache.insert(key.clone(), envs);
                        }
                        Err(Unreachable(msg)) => return fail(msg, 3),
                    }
                }
                env_cache[&key].clone()
            }
        };
        if !envs.contains(&r.environment) {
            let hint = did_you_mean(&r.environment, envs.iter().map(String::as_str));
            bad.insert(r.clone());
            errors.push(format!(
                "{who}: flag {:?} in project {:?} has no environment {:?} (it has: {}){hint}",
                r.flag,
                r.project,
                r.environment,
                if envs.is_empty() {
                    "none".to_string()
                } else {
                    envs.join(", ")
                }
            ));
        }
    }

    // A rollout needs its flexibleRollout strategy (checked where flag and environment exist).
    for ((r, strategy), rules) in &rollouts {
        if bad.contains(r) {
            continue;
        }
        let who = rules
            .iter()
            .map(|n| format!("rule {n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let flag = match unleash.flag(&r.project, &r.flag) {
            Ok(Some(f)) => f,
            Ok(None) => continue, // reported above
            Err(Unreachable(msg)) => return fail(msg, 3),
        };
        let env = flag
            .get("environments")
            .and_then(Value::as_array)
            .and_then(|envs| {
                envs.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(r.environment.as_str()))
            });
        let Some(env) = env else { continue };
        let what = format!(
            "flag {:?} in project {:?}, environment {:?}",
            r.flag, r.project, r.environment
        );
        let choice = match strategy {
            Some(sel) => StrategyChoice::IdOrTitle(sel),
            None => StrategyChoice::Only,
        };
        if let Err(e) = select_rollout(env, choice, &what) {
            errors.push(format!("{who}: {e}"));
        }
    }

    for e in &errors {
        println!("{}: {e}", s.red("error"));
    }
    for w in &warnings {
        println!("{}: {w}", s.yellow("warning"));
    }
    let flags: BTreeSet<(&str, &str)> = refs
        .keys()
        .map(|r| (r.project.as_str(), r.flag.as_str()))
        .collect();
    let checked = if refs.is_empty() {
        "no flags referenced".to_string()
    } else {
        format!(
            "{} flag{} checked in project{} {}",
            flags.len(),
            plural(flags.len()),
            plural(projects.len()),
            projects.iter().copied().collect::<Vec<_>>().join(", ")
        )
    };
    println!(
        "{checked}: {} error{}, {} warning{}",
        errors.len(),
        plural(errors.len()),
        warnings.len(),
        plural(warnings.len())
    );
    u8::from(!errors.is_empty())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// "; did you mean X?" when a known name is close to `name`, else nothing.
fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    analyze::suggest(name, known)
        .map(|k| format!("; did you mean {k:?}?"))
        .unwrap_or_default()
}
