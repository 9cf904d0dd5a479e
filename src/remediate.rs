//! For one problem: find the rule, decide the actions, carry them out, report.

use crate::actions::scale::ScaleRequest;
use crate::actions::unleash::Toggle;
use crate::actions::ActionError;
use crate::config::Config;
use crate::platform::Platform;
use crate::problem::{Problem, Status};
use crate::report::{ActionOutcome, ActionReport, ActionTarget, ProblemOutcome, ProblemReport};
use crate::rules::{Action, Rule, RuleSet};

/// One action, resolved against the configuration and the problem: exactly what
/// would be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Toggle(Toggle),
    Scale(ScaleRequest),
}

impl Step {
    pub fn resolve(action: &Action, rule: &Rule, problem: &Problem, cfg: &Config) -> Step {
        match action {
            Action::Flag {
                flag,
                enabled,
                project,
                environment,
            } => Step::Toggle(Toggle {
                project: project
                    .clone()
                    .unwrap_or_else(|| cfg.unleash_project.clone()),
                flag: flag.clone(),
                environment: environment
                    .clone()
                    .unwrap_or_else(|| cfg.unleash_environment.clone()),
                enabled: *enabled,
            }),
            Action::Scale { change } => {
                Step::Scale(ScaleRequest::new(&rule.name, *change, problem))
            }
        }
    }

    pub fn target(&self) -> ActionTarget {
        match self {
            Step::Toggle(t) => ActionTarget::Flag {
                flag: t.flag.to_string(),
                project: t.project.to_string(),
                environment: t.environment.to_string(),
                enabled: t.enabled,
            },
            Step::Scale(s) => ActionTarget::Scale {
                value: s.value.clone(),
                service: s.service.clone(),
                namespace: s.namespace.clone(),
            },
        }
    }

    /// Send it and read the answer.
    pub fn execute(&self, p: &dyn Platform, cfg: &Config) -> Result<String, ActionError> {
        match self {
            Step::Toggle(t) => {
                let req = t.request(&cfg.unleash_url, &cfg.unleash_token);
                t.outcome(p.send(req, cfg.outbound_timeout))
            }
            Step::Scale(s) => {
                let url = format!("{}{}", cfg.scale_url, cfg.scale_path);
                let req = s.request(&url, &cfg.scale_token);
                s.outcome(p.send(req, cfg.outbound_timeout))
            }
        }
    }

    /// What would be sent, for dry-run reports (no credentials).
    pub fn describe(&self, cfg: &Config) -> String {
        let req = match self {
            Step::Toggle(t) => t.request(&cfg.unleash_url, &crate::config::Secret::default()),
            Step::Scale(s) => s.request(
                &format!("{}{}", cfg.scale_url, cfg.scale_path),
                &crate::config::Secret::default(),
            ),
        };
        format!("would send {} {}", req.method(), req.uri())
    }
}

pub fn remediate(
    p: &dyn Platform,
    cfg: &Config,
    rules: &RuleSet,
    problem: &Problem,
    dry_run: bool,
) -> ProblemReport {
    let mut report = ProblemReport {
        title: problem.title.clone(),
        status: problem.status,
        source: problem.source,
        occurrence: problem.occurrence(),
        rule: None,
        outcome: ProblemOutcome::NoMatchingRule,
        detail: None,
        actions: vec![],
    };
    let Some(rule) = rules.find(problem) else {
        report.detail = Some("no matching rule".into());
        return report;
    };
    report.rule = Some(rule.name.clone());
    if problem.status == Status::Resolved {
        report.outcome = ProblemOutcome::Ignored;
        report.detail = Some("resolved: nothing to undo".into());
        return report;
    }
    let steps: Vec<Step> = rule
        .actions
        .iter()
        .map(|a| Step::resolve(a, rule, problem, cfg))
        .collect();
    for step in steps {
        let action = if dry_run {
            ActionReport {
                target: step.target(),
                outcome: ActionOutcome::DryRun,
                detail: Some(step.describe(cfg)),
                error: None,
                retryable: None,
            }
        } else {
            match step.execute(p, cfg) {
                Ok(detail) => ActionReport {
                    target: step.target(),
                    outcome: ActionOutcome::Done,
                    detail: Some(cfg.redact(&detail)),
                    error: None,
                    retryable: None,
                },
                Err(e) => ActionReport {
                    target: step.target(),
                    outcome: ActionOutcome::Failed,
                    detail: None,
                    error: Some(cfg.redact(&e.message)),
                    retryable: Some(e.retryable),
                },
            }
        };
        report.actions.push(action);
    }
    report.outcome = if dry_run {
        ProblemOutcome::DryRun
    } else if report
        .actions
        .iter()
        .any(|a| a.outcome == ActionOutcome::Failed)
    {
        ProblemOutcome::Failed
    } else {
        ProblemOutcome::Acted
    };
    report
}
