//! Deciding what to do for one problem, given the rule and what is remembered.
//! Pure: state and time are passed in, decisions come out.

use crate::problem::Status;
use crate::rules::Rule;
use crate::state::{Applied, OccurrenceRecord, Phase, RuleRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run these actions (indices into the rule's actions).
    Act { indices: Vec<usize>, why: String },
    /// Undo these applied actions.
    Revert { applied: Vec<Applied> },
    /// Nothing to do, and that is the right answer.
    AlreadyHandled { why: String },
    /// Nothing to do for this problem at all (e.g. a resolve for something never acted on).
    Ignore { why: String },
    /// Another delivery holds a fresh claim on this occurrence.
    InProgress,
    /// A policy said no.
    Skip { why: String, circuit_open: bool },
}

fn secs(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 120 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Cooldown (new occurrences only) and circuit breaker (every action).
fn policy_gate(
    rule: &Rule,
    history: &RuleRecord,
    now_ms: i64,
    new_occurrence: bool,
) -> Option<Decision> {
    if let (true, Some(cooldown), Some(last)) = (
        new_occurrence,
        rule.policy.cooldown,
        history.last_action_ms(),
    ) {
        let cooldown_ms = cooldown.as_millis() as i64;
        if now_ms - last < cooldown_ms {
            return Some(Decision::Skip {
                why: format!(
                    "cooldown: rule {:?} acted {} ago; cooldown is {}",
                    rule.name,
                    secs(now_ms - last),
                    secs(cooldown_ms)
                ),
                circuit_open: false,
            });
        }
    }
    if let Some((max, window)) = rule.policy.max_actions {
        let window_ms = window.as_millis() as i64;
        let recent = history.actions_since(now_ms - window_ms);
        if recent >= max as usize {
            return Some(Decision::Skip {
                why: format!(
                    "CIRCUIT OPEN: rule {:?} already acted {recent} times in the last {} (max_actions: {max} per {}); not acting until the window passes",
                    rule.name,
                    secs(window_ms),
                    secs(window_ms)
                ),
                circuit_open: true,
            });
        }
    }
    None
}

pub fn decide(
    rule: &Rule,
    status: Status,
    record: Option<&OccurrenceRecord>,
    history: &RuleRecord,
    now_ms: i64,
) -> Decision {
    match status {
        Status::Firing => decide_firing(rule, record, history, now_ms),
        Status::Resolved => decide_resolved(rule, record, now_ms),
    }
}

fn decide_firing(
    rule: &Rule,
    record: Option<&OccurrenceRecord>,
    history: &RuleRecord,
    now_ms: i64,
) -> Decision {
    let ladder = rule.policy.escalate_after;
    let Some(rec) = record else {
        if let Some(gate) = policy_gate(rule, history, now_ms, true) {
            return gate;
        }
        let indices = if ladder.is_some() {
            vec![0]
        } else {
            (0..rule.actions.len()).collect()
        };
        let why = if ladder.is_some() {
            "first firing: ladder step 1".into()
        } else {
            "first firing".into()
        };
        return Decision::Act { indices, why };
    };
    if rec.claim_is_fresh(now_ms) {
        return Decision::InProgress;
    }
    let remaining = |rec: &OccurrenceRecord| -> Vec<usize> {
        match ladder {
            Some(_) => vec![rec.next_step.min(rule.actions.len().saturating_sub(1))],
            None => (0..rule.actions.len())
                .filter(|i| !rec.is_applied(*i))
                .collect(),
        }
    };
    match rec.phase {
        // A stale claim: the instance that held it died before recording the result.
        Phase::Claimed | Phase::Failed => {
            if let Some(gate) = policy_gate(rule, history, now_ms, false) {
                return gate;
            }
            let why = if rec.phase == Phase::Failed {
                "retrying what failed last time".to_string()
            } else {
                "taking over a claim abandoned before its result was recorded".to_string()
            };
            Decision::Act {
                indices: remaining(rec),
                why,
            }
        }
        Phase::Done => match ladder {
            Some(after) if rec.next_step < rule.actions.len() => {
                let since = now_ms - rec.last_step_ms.unwrap_or(rec.since_ms);
                let after_ms = after.as_millis() as i64;
                if since < after_ms {
                    return Decision::AlreadyHandled {
                        why: format!(
                            "ladder step {} done {} ago; step {} runs if still firing after {}",
                            rec.next_step,
                            secs(since),
                            rec.next_step + 1,
                            secs(after_ms)
                        ),
                    };
                }
                if let Some(gate) = policy_gate(rule, history, now_ms, false) {
                    return gate;
                }
                Decision::Act {
                    indices: vec![rec.next_step],
                    why: format!(
                        "still firing {} after step {}: escalating to step {}",
                        secs(since),
                        rec.next_step,
                        rec.next_step + 1
                    ),
                }
            }
            Some(_) => Decision::AlreadyHandled {
                why: format!("ladder exhausted: all {} steps done", rule.actions.len()),
            },
            None => Decision::AlreadyHandled {
                why: "already handled".into(),
            },
        },
        Phase::Reverting | Phase::Resolved => Decision::AlreadyHandled {
            why: "occurrence already resolved".into(),
        },
    }
}

fn decide_resolved(rule: &Rule, record: Option<&OccurrenceRecord>, now_ms: i64) -> Decision {
    let Some(rec) = record else {
        return Decision::Ignore {
            why: "resolved: no action was taken for this occurrence, nothing to undo".into(),
        };
    };
    if rec.claim_is_fresh(now_ms) {
        return Decision::InProgress;
    }
    if rec.phase == Phase::Resolved {
        return Decision::AlreadyHandled {
            why: "resolve already handled".into(),
        };
    }
    let applied: Vec<Applied> = rec
        .applied
        .iter()
        .filter(|a| !a.reverted)
        .filter(|a| {
            rule.actions
                .get(a.index)
                .is_some_and(|act| rule.reverts(act))
        })
        .cloned()
        .collect();
    Decision::Revert { applied }
}
