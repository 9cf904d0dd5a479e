//! Deciding what to do for one problem, given the rule and what is remembered.
//! Pure: state and time are passed in, decisions come out.

use crate::claim::{Occurrence, Phase, RuleHistory};
use crate::problem::Status;
use crate::rules::Rule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim the occurrence, (re)send what is pending, and run these new steps
    /// (indices into the rule's actions).
    Act { steps: Vec<usize>, why: String },
    /// Claim the occurrence and undo what it did, as stored.
    Revert,
    /// A resolve for an occurrence that never acted: remember it, so that a late
    /// firing (the other Alertmanager of a pair, a delayed retry) does not act.
    MarkResolved { why: String },
    /// Nothing to do, and that is the right answer.
    AlreadyHandled { why: String },
    /// Another delivery holds a fresh lease on this occurrence.
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
pub fn policy_gate(
    rule: &Rule,
    history: &RuleHistory,
    now_ms: i64,
    new_occurrence: bool,
) -> Option<Decision> {
    if let (true, Some(cooldown), Some(last)) = (
        new_occurrence,
        rule.policy.cooldown,
        history.last_action_ms(),
    ) {
        let cooldown_ms = cooldown.as_millis().min(i64::MAX as u128) as i64;
        if now_ms.saturating_sub(last) < cooldown_ms {
            return Some(Decision::Skip {
                why: format!(
                    "cooldown: rule {:?} acted {} ago; cooldown is {}",
                    rule.name,
                    secs(now_ms.saturating_sub(last)),
                    secs(cooldown_ms)
                ),
                circuit_open: false,
            });
        }
    }
    if let Some((max, window)) = rule.policy.max_actions {
        let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
        let recent = history.actions_since(now_ms.saturating_sub(window_ms));
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
    record: Option<&Occurrence>,
    history: &RuleHistory,
    now_ms: i64,
    skew_ms: i64,
) -> Decision {
    if record.is_some_and(|r| r.busy(now_ms, skew_ms)) {
        return Decision::InProgress;
    }
    match status {
        Status::Firing => decide_firing(rule, record, history, now_ms),
        Status::Resolved => decide_resolved(record),
    }
}

/// What a new occurrence runs first.
fn first_steps(rule: &Rule) -> (Vec<usize>, String) {
    if rule.policy.escalate_after.is_some() {
        (vec![0], "first firing: ladder step 1".into())
    } else {
        ((0..rule.actions.len()).collect(), "first firing".into())
    }
}

fn decide_firing(
    rule: &Rule,
    record: Option<&Occurrence>,
    history: &RuleHistory,
    now_ms: i64,
) -> Decision {
    let rec = match record {
        None => None,
        Some(r) if r.phase == Phase::Skipped => None,
        Some(r) => Some(r),
    };
    let Some(rec) = rec else {
        if let Some(gate) = policy_gate(rule, history, now_ms, true) {
            return gate;
        }
        let (steps, why) = first_steps(rule);
        return Decision::Act { steps, why };
    };
    if rec.rule != rule.name {
        return Decision::AlreadyHandled {
            why: format!(
                "already handled under rule {:?} (the rules changed since); not acting again",
                rec.rule
            ),
        };
    }
    match rec.phase {
        // A lease that ran out: its owner died before recording the result.
        Phase::Acting | Phase::Failed => {
            if let Some(gate) = policy_gate(rule, history, now_ms, !rec.admitted) {
                return gate;
            }
            let why = if rec.phase == Phase::Failed {
                "retrying what failed last time"
            } else {
                "taking over an attempt abandoned before its result was recorded"
            };
            Decision::Act {
                steps: vec![],
                why: why.into(),
            }
        }
        Phase::Done => match rule.policy.escalate_after {
            Some(after) if rec.next_step < rule.actions.len() => {
                let since = now_ms.saturating_sub(rec.last_step_ms.unwrap_or(now_ms));
                let after_ms = after.as_millis().min(i64::MAX as u128) as i64;
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
                    steps: vec![rec.next_step],
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
        Phase::Skipped => unreachable!("treated as new above"),
        Phase::Reverting | Phase::Resolved => Decision::AlreadyHandled {
            why: "occurrence already resolved".into(),
        },
    }
}

fn decide_resolved(record: Option<&Occurrence>) -> Decision {
    match record.map(|r| r.phase) {
        None | Some(Phase::Skipped) => Decision::MarkResolved {
            why: "resolved: no action was taken for this occurrence, nothing to undo".into(),
        },
        Some(Phase::Resolved) => Decision::AlreadyHandled {
            why: "resolve already handled".into(),
        },
        Some(_) => Decision::Revert,
    }
}
