//! Records written by earlier versions (`occ/…`, `rule/…`), read once and carried
//! into the new cells.

use crate::platform::Platform;
use crate::rules::{Action, Rule};
use crate::state::{self, OccurrenceRecord, Phase as OldPhase, RuleRecord};

use super::{ActionState, Occurrence, Phase, RuleHistory, StoredAction, Taken, RETENTION_MS};

/// The earlier version's record of this occurrence under `rule`, as a new one.
/// Its actions are resolved against the current rule (all the old record kept was
/// an index) and carry their stored prior flag state.
pub fn occurrence(
    p: &dyn Platform,
    occurrence: &str,
    rule: &Rule,
    resolve: impl Fn(&Action) -> Taken,
) -> Option<(String, Occurrence)> {
    let key = state::occurrence_key(occurrence, &rule.name);
    let old = state::read::<OccurrenceRecord>(p, &key).ok()?.value?;
    let phase = match old.phase {
        OldPhase::Claimed | OldPhase::Failed => Phase::Failed,
        OldPhase::Done => Phase::Done,
        OldPhase::Reverting => Phase::Reverting,
        OldPhase::Resolved => Phase::Resolved,
    };
    let mut rec = Occurrence::new(occurrence, &rule.name, phase, old.since_ms + RETENTION_MS);
    rec.first_handled_ms = old.first_handled_ms;
    rec.first_audit = old.first_audit;
    rec.last_step_ms = old.last_step_ms;
    rec.next_step = old.next_step;
    for a in &old.applied {
        let Some(action) = rule.actions.get(a.index) else {
            continue;
        };
        rec.actions.push(StoredAction {
            step: a.index,
            taken: resolve(action),
            state: if a.reverted {
                ActionState::Undone
            } else {
                ActionState::Applied
            },
            revert: rule.reverts(action),
            at_ms: a.at_ms,
            prior: a.previous_enabled,
        });
    }
    Some((key, rec))
}

pub fn rule_history(p: &dyn Platform, rule: &str) -> Option<RuleHistory> {
    let old = state::read::<RuleRecord>(p, &state::rule_key(rule))
        .ok()?
        .value?;
    Some(RuleHistory {
        actions_ms: old.actions_ms,
        expires_ms: 0,
        ids: vec![],
        circuit_notified_ms: None,
        budget_notified_ms: None,
    })
}
