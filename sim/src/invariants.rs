//! The invariants, checked after every schedule on what was observed from the
//! outside only: Alertmanager's answers, Unleash's change log, the scaling
//! receiver's log, the key count. Nothing here reads remediator's own records, so
//! the checks hold whatever the state protocol looks like.

use std::collections::BTreeMap;

use crate::scenario::{
    rollout_desired, rollout_strategy, Kind, GUARDED_COOLDOWN_MS, GUARDED_MAX, GUARDED_RULE,
    GUARDED_WINDOW_MS, INITIAL_FLAGS, ROLLOUT_FLAGS,
};
use crate::sched::Observed;
use crate::world::{Who, EPOCH_MS, MAX_CLOCK_SKEW_MS, OUTBOUND_BUDGET_MS};

/// One lease as the brief defines it: the delivery budget, plus the worst clock
/// disagreement between two replicas, plus a margin.
pub const LEASE_BOUND_MS: i64 = OUTBOUND_BUDGET_MS + 2 * MAX_CLOCK_SKEW_MS + 30_000;
/// A stream that keeps being retried must get a 2xx within this much simulated time
/// after the later of its first failed attempt and the end of the fault window: one
/// lease, plus slack for Alertmanager's backoff (up to 16 s) and the claim wait.
pub const LIVENESS_BOUND_MS: i64 = LEASE_BOUND_MS + 30_000;

#[derive(Debug, Clone)]
pub struct Violation {
    pub family: &'static str,
    pub detail: String,
}

fn v(family: &'static str, detail: String) -> Violation {
    Violation { family, detail }
}

fn ms(t: i64) -> i64 {
    t - EPOCH_MS
}

/// (occurrence, flag) -> the end of the first 2xx firing delivery whose report says
/// `done` (its alert's flags turned, or rollouts set) holds that flag.
fn first_acks(
    o: &Observed,
    done: impl Fn(&crate::sched::AlertRec) -> &Vec<String>,
) -> BTreeMap<(usize, String), i64> {
    let mut acked: BTreeMap<(usize, String), i64> = BTreeMap::new();
    for d in &o.deliveries {
        for a in &d.alerts {
            if a.kind == Kind::Firing && matches!(d.status, Some(200..=299)) {
                for f in done(a) {
                    let e = acked.entry((a.occ, f.clone())).or_insert(i64::MAX);
                    *e = (*e).min(d.end.unwrap_or(i64::MAX));
                }
            }
        }
    }
    acked
}

/// The occurrences other than `occ` acknowledged (in `acked`) as holding `flag`
/// before `at` and still firing at `at`: (occurrence, acknowledged at, it).
fn still_firing<'a>(
    o: &'a Observed,
    acked: &BTreeMap<(usize, String), i64>,
    occ: usize,
    flag: &str,
    at: i64,
) -> Vec<(usize, i64, &'a crate::scenario::Occ)> {
    acked
        .iter()
        .map(|((other, f), &acked_at)| (*other, f, acked_at, &o.scenario.occs[*other]))
        .filter(|(other, f, acked_at, oo)| {
            *other != occ && *f == flag && *acked_at < at && oo.resolve_at > at
        })
        .map(|(other, _, acked_at, oo)| (other, acked_at, oo))
        .collect()
}

/// One change in a violation's history: "AT ms WHO FROM->TO".
fn change(at: i64, who: Who, from: impl std::fmt::Display, to: impl std::fmt::Display) -> String {
    let who = match who {
        Who::Remediator { task } => format!("d{task}"),
        Who::Human => "human".into(),
    };
    format!("{} ms {who} {from}->{to}", ms(at))
}

/// All invariants; returns the violations and the number of ambiguous duplicates (I1).
pub fn check_all(o: &Observed) -> (Vec<Violation>, usize) {
    let mut out = Vec::new();
    let (i1, ambiguous) = i1_scale_at_most_once(o);
    out.extend(i1);
    out.extend(i2_liveness(o));
    let (i3, ambiguous_i3) = i3_flags_restored_exactly(o);
    out.extend(i3);
    out.extend(i3_flag_in_effect_when_already_handled(o));
    let (i3r, ambiguous_i3r) = i3_rollouts_restored_exactly(o);
    out.extend(i3r);
    out.extend(i4_policies(o));
    out.extend(i5_no_panics(o));
    out.extend(i6_keys_bounded(o));
    out.extend(i7_budget(o));
    out.extend(o.harness.iter().map(|h| v("harness", h.clone())));
    (out, ambiguous + ambiguous_i3 + ambiguous_i3r)
}

/// I1: a scale delta takes effect at most once per (occurrence, status, value) (the
/// value names the ladder step: the scenario's steps have distinct values). The
/// receiver deduplicates by `Idempotency-Key` (header or body `idempotency_key`), so
/// a keyed retry is not a second effect. A repeat is *ambiguous*, not a violation,
/// when the delivery that made the earlier effect then crashed, saw the send fail
/// although it took effect (timeout after receiving), or had a key-value fault
/// injected after it: the record of the send may legitimately be missing.
pub fn i1_scale_at_most_once(o: &Observed) -> (Vec<Violation>, usize) {
    let mut groups: BTreeMap<(usize, String, String), Vec<usize>> = BTreeMap::new();
    for (i, s) in o.scale_log.iter().enumerate() {
        if s.applied {
            let occ = o.alert_of(s.task, s.alert).0;
            groups
                .entry((occ, s.field("status"), s.field("value")))
                .or_default()
                .push(i);
        }
    }
    let mut out = Vec::new();
    let mut ambiguous = 0;
    for ((occ, status, value), recs) in groups {
        if recs.len() < 2 {
            continue;
        }
        let unexplained: Vec<String> = recs[..recs.len() - 1]
            .iter()
            .filter(|&&i| {
                let s = &o.scale_log[i];
                let t = &o.tasks[s.task];
                let explained = s.error_after_apply
                    || t.crashed_at.is_some_and(|c| c >= s.at)
                    || t.kv_faults.iter().any(|&f| f >= s.at);
                !explained
            })
            .map(|&i| {
                let s = &o.scale_log[i];
                format!("d{} at {} ms", s.task, ms(s.at))
            })
            .collect();
        let all: Vec<String> = recs
            .iter()
            .map(|&i| {
                let s = &o.scale_log[i];
                format!("d{}@r{} {} ms", s.task, o.tasks[s.task].replica, ms(s.at))
            })
            .collect();
        if unexplained.is_empty() {
            ambiguous += recs.len() - 1;
        } else {
            out.push(v(
                "I1",
                format!(
                    "scale {value} ({status}) of occurrence {occ} took effect {} times: {}; not explained by a crash, timeout or store fault: {}",
                    recs.len(),
                    all.join(", "),
                    unexplained.join(", ")
                ),
            ));
        }
    }
    (out, ambiguous)
}

/// I2: liveness. Alertmanager keeps retrying (5xx, no answer, webhook timeout) and
/// repeating; every stream must get a 2xx within [`LIVENESS_BOUND_MS`] after the later
/// of its first failure and the end of the fault window (so: no "in progress"/503 for
/// longer than a lease after an owner crashed, no stuck claim). A valid alert is never
/// answered 4xx (Alertmanager drops it), and a 2xx answer to a firing occurrence
/// reports it handled or a permanent reason (acted, already handled, skipped by
/// cooldown, circuit open, no matching rule, ignored, or failed with every failed
/// action refused for good, such as a rollout held at another percentage), never a
/// failure that a retry could fix.
pub fn i2_liveness(o: &Observed) -> Vec<Violation> {
    let mut out = Vec::new();
    for s in &o.streams {
        if let Some(l) = &s.liveness_violation {
            out.push(v("I2", l.clone()));
        }
    }
    for d in &o.deliveries {
        if let Some(st @ 400..=499) = d.status {
            out.push(v(
                "I2",
                format!(
                    "valid {:?} alert of occurrence {} answered {st} ({}) by d{}: Alertmanager drops it",
                    d.kind, d.occ, d.outcome, d.task
                ),
            ));
        }
        for a in &d.alerts {
            if a.kind == Kind::Firing && matches!(d.status, Some(200..=299)) {
                let ok = [
                    "acted",
                    "already_handled",
                    "skipped",
                    "circuit_open",
                    "budget_exhausted",
                    "no_matching_rule",
                    "ignored",
                ];
                if !ok.contains(&a.outcome.as_str()) && !a.failed_for_good {
                    out.push(v(
                    "I2",
                    format!(
                        "firing occurrence {} answered {:?} with outcome {:?} by d{}: a 2xx must mean handled or a permanent reason",
                        a.occ, d.status, a.outcome, d.task
                    ),
                ));
                }
            }
        }
    }
    out
}

/// I3: flags. (a) At quiescence, a flag that remediator changed, that no human
/// touched, and all of whose occurrences had their (last) resolve answered 2xx, is in
/// its initial state. (b) remediator never restores a flag (changes it back to its
/// initial state) while another occurrence whose firing was answered 2xx with that
/// flag turned ("acted on it") has not resolved yet. (c) It never restores a flag a
/// human changed after remediator's change. (d) It never restores a flag it did not
/// change first — unless a human set it to what remediator wanted after an earlier
/// remediator delivery had recorded the prior state and then died or faulted before
/// its change: remediator cannot tell that hand change from its own (applied, reply
/// lost), so the case is counted as ambiguous, like I1's.
/// A hand change back to what remediator had set, after an uncertain event: a
/// restore that may have applied and is then resumed cannot tell it from its own.
fn e_to_desired_after_uncertain(
    h: &crate::world::FlagChange,
    init: bool,
    uncertain_before: &dyn Fn(i64) -> bool,
) -> bool {
    h.to != init && uncertain_before(h.at)
}

pub fn i3_flags_restored_exactly(o: &Observed) -> (Vec<Violation>, usize) {
    let mut out = Vec::new();
    let mut ambiguous = 0;
    let initial: BTreeMap<&str, bool> = INITIAL_FLAGS.iter().copied().collect();
    // (occurrence, flag) -> first 2xx firing answer that turned it.
    let acked = first_acks(o, |a| &a.flags_done);
    for (i, c) in o.flag_log.iter().enumerate() {
        let Who::Remediator { task } = c.who else {
            continue;
        };
        let init = initial.get(c.flag.as_str()).copied().unwrap_or(false);
        if c.from == c.to || c.to != init {
            continue;
        }
        let occ = o.alert_of(task, c.alert).0;
        // (b)
        for (other, at, oo) in still_firing(o, &acked, occ, &c.flag, c.at) {
            out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) restored {} to {} at {} ms while occurrence {other} ({} {}), acknowledged as having turned it at {} ms, still fires until {} ms",
                    c.flag, c.to, ms(c.at), oo.alert, oo.instance, ms(at), ms(oo.resolve_at)
                ),
            ));
        }
        // (c), (d)
        let earlier = &o.flag_log[..i];
        let last_remediator_set = earlier.iter().rposition(|e| {
            e.flag == c.flag
                && matches!(e.who, Who::Remediator { .. })
                && e.to != init
                && e.from != e.to
        });
        // A hand change that followed an event after which remediator could not know
        // whether its own change (or restore) had applied: a crash, a key-value fault,
        // or a flag change answered 5xx or timed out.
        let uncertain_before = |at: i64| {
            o.tasks.iter().any(|t| {
                t.crashed_at.is_some_and(|c| c < at)
                    || t.kv_faults.iter().any(|&f| f < at)
                    || t.uncertain.iter().any(|&u| u < at)
            })
        };
        // Or a hand change in the moment between remediator reading the flag and
        // setting it: remediator's change then finds it already so (Unleash answers
        // 200 either way) and cannot tell.
        let raced = |h: &crate::world::FlagChange| {
            earlier.iter().any(|e| {
                e.flag == c.flag
                    && e.at >= h.at
                    && e.from == h.to
                    && e.to == h.to
                    && matches!(e.who, Who::Remediator { task }
                        if o.deliveries.iter().any(|d| d.task == task && d.start <= h.at))
            })
        };
        let human_to_desired = earlier.iter().any(|e| {
            e.flag == c.flag
                && e.who == Who::Human
                && e.to != init
                && (uncertain_before(e.at) || raced(e))
        });
        match last_remediator_set {
            None if human_to_desired => ambiguous += 1,
            None => out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) restored {} to {} at {} ms, but remediator never changed it",
                    c.flag,
                    c.to,
                    ms(c.at)
                ),
            )),
            Some(j) => {
                if let Some(h) = earlier[j + 1..]
                    .iter()
                    .find(|e| e.flag == c.flag && e.who == Who::Human)
                {
                    if e_to_desired_after_uncertain(h, init, &uncertain_before) {
                        ambiguous += 1;
                        continue;
                    }
                    out.push(v(
                        "I3",
                        format!(
                            "d{task} (occurrence {occ}) restored {} to {} at {} ms over a hand change at {} ms",
                            c.flag,
                            c.to,
                            ms(c.at),
                            ms(h.at)
                        ),
                    ));
                }
            }
        }
    }
    out.extend(i3_flag_in_effect_when_acknowledged(o));
    // (a)
    if !o.aborted {
        for (flag, &init) in &initial {
            let changed = o.flag_log.iter().any(|c| {
                c.flag == *flag && matches!(c.who, Who::Remediator { .. }) && c.from != c.to
            });
            let by_hand = o
                .flag_log
                .iter()
                .any(|c| c.flag == *flag && c.who == Who::Human);
            if !changed || by_hand {
                continue;
            }
            let all_resolved = o.all_resolved(|oc| oc.flags.contains(flag));
            let now = o
                .final_flags
                .iter()
                .find(|(f, _)| f == flag)
                .map(|(_, on)| *on);
            if all_resolved && now != Some(init) {
                let history: Vec<String> = o
                    .flag_log
                    .iter()
                    .filter(|c| c.flag == *flag)
                    .map(|c| change(c.at, c.who, c.from, c.to))
                    .collect();
                out.push(v(
                    "I3",
                    format!(
                        "{flag} ends {now:?} after every occurrence resolved (2xx); it was {init} before remediator changed it. Changes: {}",
                        history.join(", ")
                    ),
                ));
            }
        }
    }
    (out, ambiguous)
}

/// The on/off value the scenario's rules set a flag to.
fn flag_desired(flag: &str) -> Option<bool> {
    match flag {
        "EnablePromotion" | "EnableRecommendations" | "NewCheckout" => Some(false),
        "EnableItemCache" => Some(true),
        _ => None,
    }
}

/// I3 (e): a firing alert answered 2xx as having turned a flag finds it turned: when
/// its delivery ends, Unleash shows the rule's value, unless during that delivery a
/// human changed the flag or another delivery released that same occurrence (its own
/// resolve). A delivery that sends a setting once for a group (storms coalesce) must
/// still have it in effect for every alert it reports as done.
fn i3_flag_in_effect_when_acknowledged(o: &Observed) -> Vec<Violation> {
    let initial: BTreeMap<&str, bool> = INITIAL_FLAGS.iter().copied().collect();
    let mut out = Vec::new();
    for d in &o.deliveries {
        let (Some(200..=299), Some(end)) = (d.status, d.end) else {
            continue;
        };
        for a in d.alerts.iter().filter(|a| a.kind == Kind::Firing) {
            for f in &a.flags_done {
                let Some(want) = flag_desired(f) else {
                    continue;
                };
                let log: Vec<&crate::world::FlagChange> = o
                    .flag_log
                    .iter()
                    .filter(|c| c.flag == *f && c.at <= end)
                    .collect();
                let now = log
                    .last()
                    .map(|c| c.to)
                    .or(initial.get(f.as_str()).copied());
                if now == Some(want) {
                    continue;
                }
                let excused = log.iter().any(|c| {
                    c.at >= d.start
                        && match c.who {
                            Who::Human => true,
                            Who::Remediator { task } => {
                                task != d.task
                                    && o.alert_of(task, c.alert) == (a.occ, Kind::Resolved)
                            }
                        }
                });
                if excused {
                    continue;
                }
                let history: Vec<String> = log
                    .iter()
                    .rev()
                    .take(4)
                    .map(|c| change(c.at, c.who, c.from, c.to))
                    .collect();
                out.push(v(
                    "I3",
                    format!(
                        "d{} answered firing occurrence {} 2xx at {} ms as having turned {f} {want}, but Unleash shows {now:?} (no hand change, no resolve of it since the delivery started at {} ms). Last changes: {}",
                        d.task,
                        a.occ,
                        ms(end),
                        ms(d.start),
                        history.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// I3 (f): a firing alert answered 2xx `already_handled` finds what its rule turns
/// turned: when its delivery ends, one of its occurrence's flags shows the rule's
/// value. (An occurrence recorded as done whose change was never sent would answer
/// every re-send this way while the flag stays as it was.) Excused: a hand change of
/// one of those flags, or a resolve of that occurrence, at or before the delivery's
/// end; an earlier refusal for good; and schedules whose rules change or dry-run.
fn i3_flag_in_effect_when_already_handled(o: &Observed) -> Vec<Violation> {
    let initial: BTreeMap<&str, bool> = INITIAL_FLAGS.iter().copied().collect();
    let mut out = Vec::new();
    if o.scenario.rules_later.is_some()
        || o.scenario.vars.iter().any(|(k, _)| k.contains("dry_run"))
    {
        return out;
    }
    let state_at = |f: &str, end: i64| {
        o.flag_log
            .iter()
            .rfind(|c| c.flag == f && c.at <= end)
            .map(|c| c.to)
            .or(initial.get(f).copied())
    };
    for d in &o.deliveries {
        let (Some(200..=299), Some(end)) = (d.status, d.end) else {
            continue;
        };
        for a in d
            .alerts
            .iter()
            .filter(|a| a.kind == Kind::Firing && a.outcome == "already_handled")
        {
            let flags: Vec<(&str, bool)> = o.scenario.occs[a.occ]
                .flags
                .iter()
                .filter_map(|f| flag_desired(f).map(|want| (*f, want)))
                .collect();
            if flags.is_empty()
                || flags
                    .iter()
                    .any(|(f, want)| state_at(f, end) == Some(*want))
            {
                continue;
            }
            let excused = o.flag_log.iter().any(|c| {
                c.at <= end
                    && flags.iter().any(|(f, _)| c.flag == *f)
                    && match c.who {
                        Who::Human => true,
                        Who::Remediator { task } => {
                            o.alert_of(task, c.alert) == (a.occ, Kind::Resolved)
                        }
                    }
            }) || o.deliveries.iter().any(|e| {
                e.start <= end
                    && e.alerts.iter().any(|b| {
                        b.occ == a.occ
                            && (b.failed_for_good
                                || (b.kind == Kind::Resolved && e.status.is_some()))
                    })
            });
            if excused {
                continue;
            }
            let shown: Vec<String> = flags
                .iter()
                .map(|(f, want)| format!("{f} {:?} (rule: {want})", state_at(f, end)))
                .collect();
            out.push(v(
                "I3",
                format!(
                    "d{} answered firing occurrence {} 2xx already_handled at {} ms, but Unleash shows {} (no hand change, no resolve or refusal of it before)",
                    d.task,
                    a.occ,
                    ms(end),
                    shown.join(", ")
                ),
            ));
        }
    }
    out
}

/// I3 for rollouts (reported as I3, "rollout …"). A remediator PATCH sent by a
/// firing delivery is a *set*, one sent by a resolve delivery a *restore*.
/// (a) At quiescence, a strategy percentage that remediator changed, that no human
/// touched, and all of whose occurrences had their (last) resolve answered 2xx, is
/// back at its exact starting percentage. (b) No restore while another occurrence,
/// acknowledged (2xx) as having set that rollout, still fires. (c) No restore over a
/// hand change seen at restore time: the restoring delivery's own last read of the
/// strategy must show what remediator last set. A hand change between that read and
/// the PATCH (Unleash has no conditional PATCH here), or a hand change *to* a
/// percentage a rule sets after an uncertain event or while a delivery was in flight
/// (remediator cannot tell it from its own), is counted as ambiguous. (d) A restore
/// sets the exact prior: the starting percentage, or one a human set before it. (e)
/// A set sets a percentage some rule asks for, and only the strategy the rules name
/// is ever changed.
pub fn i3_rollouts_restored_exactly(o: &Observed) -> (Vec<Violation>, usize) {
    let mut out = Vec::new();
    let mut ambiguous = 0;
    let initial = |flag: &str, id: &str| {
        o.scenario
            .strategies
            .iter()
            .find(|s| s.0 == flag && s.1 == id)
            .map(|s| s.3)
    };
    // (occurrence, flag) -> first 2xx firing answer that set its rollout.
    let acked = first_acks(o, |a| &a.rollouts_done);
    let uncertain_before = |at: i64| {
        o.tasks.iter().any(|t| {
            t.crashed_at.is_some_and(|c| c < at)
                || t.kv_faults.iter().any(|&f| f < at)
                || t.uncertain.iter().any(|&u| u < at)
        })
    };
    let in_flight = |at: i64| {
        o.deliveries
            .iter()
            .any(|d| d.start <= at && d.end.is_none_or(|e| e >= at))
    };
    for (i, c) in o.rollout_log.iter().enumerate() {
        let Who::Remediator { task } = c.who else {
            continue;
        };
        let (occ, kind) = o.alert_of(task, c.alert);
        let what = format!("rollout of {} (strategy {})", c.flag, c.strategy);
        // (e)
        if rollout_strategy(&c.flag) != Some(c.strategy.as_str()) {
            out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) set the {what} to {} at {} ms: no rule names that strategy",
                    c.to,
                    ms(c.at)
                ),
            ));
            continue;
        }
        let desired = rollout_desired(&c.flag);
        if kind == Kind::Firing {
            if !desired.contains(&c.to) {
                out.push(v(
                    "I3",
                    format!(
                        "d{task} (occurrence {occ}, firing) set the {what} to {} at {} ms: no rule asks for that (rules set {desired:?})",
                        c.to,
                        ms(c.at)
                    ),
                ));
            }
            continue;
        }
        let earlier: Vec<&crate::world::RolloutChange> = o.rollout_log[..i]
            .iter()
            .filter(|e| e.flag == c.flag && e.strategy == c.strategy)
            .collect();
        // (d)
        let init = initial(&c.flag, &c.strategy);
        let by_hand: Vec<u8> = earlier
            .iter()
            .filter(|e| e.who == Who::Human)
            .map(|e| e.to)
            .collect();
        if Some(c.to) != init && !by_hand.contains(&c.to) {
            out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) restored the {what} to {} at {} ms; before remediator set it, it was {init:?} (hand changes to {by_hand:?})",
                    c.to,
                    ms(c.at)
                ),
            ));
        }
        if c.from == c.to {
            continue; // A resumed restore that changes nothing.
        }
        // (b)
        for (other, at, oo) in still_firing(o, &acked, occ, &c.flag, c.at) {
            out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) restored the {what} to {} at {} ms while occurrence {other} ({} {}), acknowledged as having set it at {} ms, still fires until {} ms",
                    c.to, ms(c.at), oo.alert, oo.instance, ms(at), ms(oo.resolve_at)
                ),
            ));
        }
        // (c)
        let read = o.rollout_reads.iter().rfind(|r| {
            r.task == task && r.flag == c.flag && r.strategy == c.strategy && r.at <= c.at
        });
        let Some(read) = read else {
            out.push(v(
                "I3",
                format!(
                    "d{task} (occurrence {occ}) restored the {what} at {} ms without reading it first",
                    ms(c.at)
                ),
            ));
            continue;
        };
        if earlier
            .iter()
            .any(|e| e.who == Who::Human && e.at >= read.at)
        {
            ambiguous += 1; // Changed by hand after the read: remediator could not see it.
            continue;
        }
        let last_set = earlier.iter().rfind(|e| {
            matches!(e.who, Who::Remediator { task } if o.alert_of(task, e.alert).1 == Kind::Firing)
        });
        let set = last_set.map(|e| e.to);
        if read.rollout == set {
            continue;
        }
        let after = last_set.map_or(i64::MIN, |e| e.at);
        let indistinguishable = earlier.iter().any(|e| {
            e.who == Who::Human
                && e.at >= after
                && Some(e.to) == read.rollout
                && desired.contains(&e.to)
                && (uncertain_before(e.at) || in_flight(e.at))
        });
        if indistinguishable {
            ambiguous += 1;
            continue;
        }
        let history: Vec<String> = earlier
            .iter()
            .map(|e| change(e.at, e.who, e.from, e.to))
            .collect();
        out.push(v(
            "I3",
            format!(
                "d{task} (occurrence {occ}) restored the {what} to {} at {} ms although its read at {} ms showed {:?}, not {set:?} as remediator last set it. Changes: {}",
                c.to,
                ms(c.at),
                ms(read.at),
                read.rollout,
                history.join(", ")
            ),
        ));
    }
    // (a)
    if !o.aborted {
        for (flag, id, _, _) in ROLLOUT_FLAGS {
            let Some(init) = initial(flag, id) else {
                continue;
            };
            let log: Vec<&crate::world::RolloutChange> = o
                .rollout_log
                .iter()
                .filter(|c| c.flag == flag && c.strategy == id)
                .collect();
            let changed = log
                .iter()
                .any(|c| matches!(c.who, Who::Remediator { .. }) && c.from != c.to);
            let by_hand = log.iter().any(|c| c.who == Who::Human);
            if !changed || by_hand {
                continue;
            }
            let all_resolved = o.all_resolved(|oc| oc.rollouts.contains(&flag));
            let now = o
                .final_rollouts
                .iter()
                .find(|(f, s, _)| f == flag && s == id)
                .and_then(|r| r.2);
            if all_resolved && now != Some(init) {
                let history: Vec<String> = log
                    .iter()
                    .map(|c| change(c.at, c.who, c.from, c.to))
                    .collect();
                out.push(v(
                    "I3",
                    format!(
                        "rollout of {flag} (strategy {id}) ends at {now:?} after every occurrence resolved (2xx); it was {init} before remediator changed it. Changes: {}",
                        history.join(", ")
                    ),
                ));
            }
        }
    }
    (out, ambiguous)
}

/// I4: cooldown and `max_actions` of the guarded rule are never exceeded, counting
/// effective actions (scale requests that took effect, first per occurrence) in
/// global time, with a tolerance of the replicas' clock spread plus one delivery
/// budget and the claim wait (a decision made at one instant takes effect later).
pub fn i4_policies(o: &Observed) -> Vec<Violation> {
    let mut first: BTreeMap<usize, i64> = BTreeMap::new();
    for s in &o.scale_log {
        if s.applied && s.field("rule") == GUARDED_RULE && s.field("status") == "firing" {
            let occ = o.alert_of(s.task, s.alert).0;
            let e = first.entry(occ).or_insert(s.at);
            *e = (*e).min(s.at);
        }
    }
    let mut times: Vec<(i64, usize)> = first.into_iter().map(|(occ, t)| (t, occ)).collect();
    times.sort();
    let spread =
        o.scenario.skews.iter().max().unwrap_or(&0) - o.scenario.skews.iter().min().unwrap_or(&0);
    let tol = spread + OUTBOUND_BUDGET_MS + 7_000;
    let mut out = Vec::new();
    for w in times.windows(2) {
        if w[1].0 - w[0].0 < GUARDED_COOLDOWN_MS - tol {
            out.push(v(
                "I4",
                format!(
                    "cooldown of {GUARDED_RULE} ({} s) broken: occurrence {} acted at {} ms, occurrence {} at {} ms",
                    GUARDED_COOLDOWN_MS / 1000,
                    w[0].1,
                    ms(w[0].0),
                    w[1].1,
                    ms(w[1].0)
                ),
            ));
        }
    }
    for w in times.windows(GUARDED_MAX + 1) {
        if w[GUARDED_MAX].0 - w[0].0 < GUARDED_WINDOW_MS - tol {
            out.push(v(
                "I4",
                format!(
                    "max_actions of {GUARDED_RULE} ({GUARDED_MAX} per {} min) broken: actions at {:?} ms",
                    GUARDED_WINDOW_MS / 60_000,
                    w.iter().map(|x| ms(x.0)).collect::<Vec<_>>()
                ),
            ));
        }
    }
    out
}

/// I5: nothing panics, except the injected crashes; and no key-value call is fatal
/// for the store (Spin's SQLite `increment` on a value that is not 8 bytes).
pub fn i5_no_panics(o: &Observed) -> Vec<Violation> {
    let mut out: Vec<Violation> = o
        .deliveries
        .iter()
        .filter_map(|d| {
            d.panicked
                .as_ref()
                .map(|m| v("I5", format!("d{} panicked: {m}", d.task)))
        })
        .collect();
    if let Some(f) = &o.fatal {
        out.push(v("I5", format!("FATAL store failure: {f}")));
    }
    out
}

/// I6 (per schedule): the key count stays within one audit entry per delivery plus
/// a handful per occurrence and per rule. Growth over many simulated days is the
/// separate growth mode's question.
pub fn i6_keys_bounded(o: &Observed) -> Vec<Violation> {
    // Budget cells: a lock word and a value per bucket (two projects and scaling).
    let budget = if o.scenario.budget.is_some() { 6 } else { 0 };
    let bound = o.deliveries.len() + 1 + 6 * o.scenario.occs.len() + 4 * 4 + 8 + budget;
    if o.keys > bound {
        vec![v(
            "I6",
            format!(
                "{} keys after {} deliveries of {} occurrences (bound {bound})",
                o.keys,
                o.deliveries.len(),
                o.scenario.occs.len()
            ),
        )]
    } else {
        vec![]
    }
}

/// I7: the blast-radius budget. In every bucket (an Unleash project; scaling calls in
/// their own), the forward changes remediator sent while processing a *firing* alert
/// (restores come from resolves, and are never counted) number at most N in any window
/// of length D, less the tolerance I4 uses (clock spread between replicas, plus one
/// delivery's outbound budget between admitting a change and sending it, plus slack).
/// A change is what one occurrence's step sets (occurrence, flag, value; a scale call's
/// occurrence and value): a re-send of it (a retry, a takeover after a crash or a lost
/// reply, an ambiguous send included) is the same change, counted once at its first
/// sending, as remediator counts it once. Every request Unleash or the scaling receiver
/// saw counts, applied or not, whatever it changed.
pub fn i7_budget(o: &Observed) -> Vec<Violation> {
    let Some((max, window)) = o.scenario.budget else {
        return vec![];
    };
    // (bucket, change) -> first time it was seen.
    let mut first: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut see = |bucket: String, change: String, at: i64| {
        let e = first.entry((bucket, change)).or_insert(at);
        *e = (*e).min(at);
    };
    for f in &o.flag_log {
        if let Who::Remediator { task } = f.who {
            let (occ, kind) = o.alert_of(task, f.alert);
            if kind == Kind::Firing {
                see(
                    f.project.clone(),
                    format!("{occ} {} {}", f.flag, f.to),
                    f.at,
                );
            }
        }
    }
    for r in &o.rollout_log {
        if let Who::Remediator { task } = r.who {
            let (occ, kind) = o.alert_of(task, r.alert);
            if kind == Kind::Firing {
                let change = format!("{occ} {} {} {}", r.flag, r.strategy, r.to);
                see("default".into(), change, r.at);
            }
        }
    }
    for s in &o.scale_log {
        if s.field("status") == "firing" {
            let occ = o.alert_of(s.task, s.alert).0;
            see(
                "scaling".into(),
                format!("{occ} {}", s.field("value")),
                s.at,
            );
        }
    }
    let mut by_bucket: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for ((bucket, change), at) in first {
        by_bucket.entry(bucket).or_default().push((at, change));
    }
    let spread =
        o.scenario.skews.iter().max().unwrap_or(&0) - o.scenario.skews.iter().min().unwrap_or(&0);
    let tol = spread + OUTBOUND_BUDGET_MS + 7_000;
    let mut out = Vec::new();
    for (bucket, mut changes) in by_bucket {
        changes.sort();
        if let Some(w) = changes
            .windows(max + 1)
            .find(|w| w[max].0 - w[0].0 < window - tol)
        {
            out.push(v(
                "I7",
                format!(
                    "max_changes {max} per {} min broken in {bucket}: {} changes within {} ms: {}",
                    window / 60_000,
                    max + 1,
                    w[max].0 - w[0].0,
                    w.iter()
                        .map(|(t, c)| format!("[{c}] at {} ms", ms(*t)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    out
}
