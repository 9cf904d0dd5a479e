//! Holding a flag setting (on/off, or one strategy's rollout) while occurrences
//! need it changed: the first holder stores what it was, the last one to resolve
//! restores it, once, and never over a change made by hand since.

use super::act::Sent;
use super::budget::{self, Admitted};
use crate::actions::unleash::{Rollout, Toggle};
use crate::actions::ActionError;
use crate::audit::Event;
use crate::claim::cell::{self, CellError, Change};
use crate::claim::{self, Bucket, Lease, Restoring, Setting, StoredAction, Taken, Target};
use crate::config::{Config, Secret};
use crate::delivery::Delivery;
use crate::rules::{Percent, UnleashName};

/// One setting of one flag in one environment, as a stored action names it.
#[derive(Debug, Clone)]
pub(crate) enum Lever {
    Toggle(Toggle),
    Rollout(Rollout),
}

fn name(s: &str) -> Result<UnleashName, ActionError> {
    UnleashName::parse(s).map_err(|e| ActionError {
        message: format!("stored action: {e}"),
        retryable: false,
    })
}

fn percent(p: u8) -> Result<Percent, ActionError> {
    Percent::new(i64::from(p)).map_err(|e| ActionError {
        message: format!("stored action: {e}"),
        retryable: false,
    })
}

impl Lever {
    /// The lever of a flag or rollout action, set to what the action sets.
    pub(crate) fn of(t: &Taken) -> Result<Lever, ActionError> {
        match t {
            Taken::Flag {
                flag,
                project,
                environment,
                enabled,
            } => Ok(Lever::Toggle(Toggle {
                project: name(project)?,
                flag: name(flag)?,
                environment: name(environment)?,
                enabled: *enabled,
            })),
            Taken::Rollout {
                flag,
                project,
                environment,
                strategy,
                percent: p,
            } => Ok(Lever::Rollout(Rollout {
                project: name(project)?,
                flag: name(flag)?,
                environment: name(environment)?,
                strategy: strategy.clone(),
                percent: percent(*p)?,
            })),
            Taken::Scale { .. } => Err(ActionError {
                message: "stored action: a scale action holds no flag".into(),
                retryable: false,
            }),
        }
    }

    fn key(&self) -> String {
        match self {
            Lever::Toggle(t) => {
                claim::target_key(t.project.as_str(), t.flag.as_str(), t.environment.as_str())
            }
            Lever::Rollout(r) => claim::rollout_key(
                r.project.as_str(),
                r.flag.as_str(),
                r.environment.as_str(),
                r.strategy.as_deref(),
            ),
        }
    }

    fn desired(&self) -> Setting {
        match self {
            Lever::Toggle(t) => Setting::Enabled(t.enabled),
            Lever::Rollout(r) => Setting::Rollout(r.percent.get()),
        }
    }

    fn flag(&self) -> &str {
        match self {
            Lever::Toggle(t) => t.flag.as_str(),
            Lever::Rollout(r) => r.flag.as_str(),
        }
    }

    fn project(&self) -> &str {
        match self {
            Lever::Toggle(t) => t.project.as_str(),
            Lever::Rollout(r) => r.project.as_str(),
        }
    }

    fn environment(&self) -> &str {
        match self {
            Lever::Toggle(t) => t.environment.as_str(),
            Lever::Rollout(r) => r.environment.as_str(),
        }
    }

    /// The same lever, set to `to` (a record of the other kind is refused).
    pub(crate) fn set_to(&self, to: Setting) -> Result<Lever, ActionError> {
        match (self, to) {
            (Lever::Toggle(t), Setting::Enabled(enabled)) => Ok(Lever::Toggle(Toggle {
                enabled,
                ..t.clone()
            })),
            (Lever::Rollout(r), Setting::Rollout(p)) => Ok(Lever::Rollout(Rollout {
                percent: percent(p)?,
                ..r.clone()
            })),
            _ => Err(ActionError {
                message: format!(
                    "flag {:?}: its stored record is of another kind than this action",
                    self.flag()
                ),
                retryable: false,
            }),
        }
    }

    /// What Unleash shows now, and (rollouts) the id of the strategy. `by_id`: the
    /// strategy found before; `Ok(None)`: it has been removed since.
    fn read(
        &self,
        d: &Delivery,
        by_id: Option<&str>,
    ) -> Result<Option<(Setting, Option<String>)>, ActionError> {
        let (base, token) = (&d.cfg.unleash_url, &d.cfg.unleash_token);
        d.outbound().idempotent(|timeout| match self {
            Lever::Toggle(t) => {
                let req = t.read_request(base, token)?;
                t.read_outcome(d.p.send(req, timeout), d.cfg)
                    .map(|on| Some((Setting::Enabled(on), None)))
            }
            Lever::Rollout(r) => {
                let req = r.read_request(base, token)?;
                Ok(r.read_outcome(d.p.send(req, timeout), by_id, d.cfg)?
                    .map(|s| (Setting::Rollout(s.percent.get()), Some(s.strategy_id))))
            }
        })
    }

    /// Send the change (idempotent: retried within the delivery's budget).
    fn send(&self, d: &Delivery, strategy_id: Option<&str>) -> Result<String, ActionError> {
        let (base, token) = (&d.cfg.unleash_url, &d.cfg.unleash_token);
        d.outbound().idempotent(|timeout| match self {
            Lever::Toggle(t) => {
                let req = t.request(base, token)?;
                t.outcome(d.p.send(req, timeout), d.cfg)
            }
            Lever::Rollout(r) => {
                let id = strategy_id.ok_or_else(|| ActionError {
                    message: format!(
                        "flag {:?}: its record names no strategy to set the rollout of",
                        self.flag()
                    ),
                    retryable: false,
                })?;
                let req = r.request(id, base, token)?;
                r.outcome(id, d.p.send(req, timeout), d.cfg)
            }
        })
    }

    /// What would be sent, for dry-run reports (no credentials).
    pub(crate) fn describe(&self, cfg: &Config) -> String {
        let none = Secret::default();
        let req = match self {
            Lever::Toggle(t) => t.request(&cfg.unleash_url, &none),
            Lever::Rollout(r) => {
                let id = r
                    .strategy
                    .clone()
                    .unwrap_or_else(|| "{its flexibleRollout strategy}".into());
                r.request(&id, &cfg.unleash_url, &none)
            }
        };
        match (req, self) {
            (Ok(req), Lever::Toggle(_)) => format!("would send {} {}", req.method(), req.uri()),
            (Ok(req), Lever::Rollout(r)) => format!(
                "would send {} {} (rollout {})",
                req.method(),
                req.uri(),
                r.percent
            ),
            (Err(e), _) => format!("would fail: {}", e.message),
        }
    }
}

/// Become a holder of the flag setting (storing what it was when first held), then
/// set it; with `verify`, read it back. The second value says what the read-back
/// found (`None`: not asked for, or nothing was sent).
///
/// The change is admitted against the project's blast-radius budget before it is
/// sent; one that joins a setting this delivery already sent sends nothing and is not
/// counted. Admission comes before holding (an occurrence the budget holds back does
/// not hold the flag), unless this delivery set the same setting for another alert:
/// then holding first tells whether anything needs sending at all.
pub(crate) fn hold_and_set(
    d: &mut Delivery,
    okey: &str,
    t: &Taken,
    verify: bool,
    change_id: i64,
) -> Sent {
    let lever = match Lever::of(t) {
        Ok(l) => l,
        Err(e) => return Sent::Sent(Err(e), None),
    };
    let (key, desired) = (lever.key(), lever.desired());
    let bucket = Bucket::Project(lever.project().to_string());
    let coalescing = d
        .flags_set
        .iter()
        .any(|(k, v, by)| *k == key && *v == desired && by != okey);
    let admit = |d: &mut Delivery| match budget::admit(d, &bucket, change_id) {
        Admitted::Yes => None,
        Admitted::Exhausted(why) => Some(Sent::Exhausted(why)),
        Admitted::Error(e) => Some(Sent::Sent(Err(e), None)),
    };
    if !coalescing {
        if let Some(refused) = admit(d) {
            return refused;
        }
    }
    match hold(d, okey, &lever) {
        Err(e) => Sent::Sent(Err(e), None),
        Ok(held) => {
            let already = d.flags_set.iter().any(|(k, v, by)| {
                *k == key && *v == desired && by != okey && held.holders.contains(by)
            });
            if !already && coalescing {
                // The other alert's occurrence let go meanwhile: this is a change.
                // (Held back now, this occurrence holds the flag without having
                // changed it, as after a failed send; rare: a restore in between.)
                if let Some(refused) = admit(d) {
                    return refused;
                }
            }
            if already {
                let detail = format!(
                    "flag {:?} in environment {:?} held {} (set by this delivery for another alert; not sent again)",
                    lever.flag(),
                    lever.environment(),
                    lever.desired()
                );
                return Sent::Sent(Ok(detail), None);
            }
            let result = set_and_verify(d, &lever, held.strategy.as_deref(), verify);
            if result.0.is_ok() && held.unconfirmed {
                if let Err(e) = confirmed(d, &key, desired) {
                    // Only costs precision: an earlier setting stays "remediator's own".
                    d.p.log(&format!(
                        "remediator: WARNING flag {:?}: confirmation not recorded ({e})",
                        lever.flag()
                    ));
                }
            }
            if result.0.is_ok() {
                d.flags_set.push((key, desired, okey.to_string()));
            }
            Sent::Sent(result.0, result.1)
        }
    }
}

/// Unleash answered 2xx to setting `desired`: the earlier settings are no longer
/// remediator's (one more write, only after a ladder step or a takeover).
fn confirmed(d: &mut Delivery, tkey: &str, desired: Setting) -> Result<(), CellError> {
    d.update_cell(tkey, |t: Option<&Target>| match t {
        Some(t) if !t.earlier.is_empty() && t.desired == desired && t.restoring.is_none() => {
            let mut n = t.clone();
            n.earlier.clear();
            Change::Write(n, ())
        }
        _ => Change::Keep(()),
    })
    .map(|_| ())
}

/// What [`hold`] left in the target.
struct Held {
    /// Rollouts: the strategy's id.
    strategy: Option<String>,
    holders: Vec<String>,
    /// It lists earlier settings (`Target::earlier`) that a 2xx will confirm away.
    unconfirmed: bool,
}

/// Become a holder of the lever's setting.
fn hold(d: &mut Delivery, okey: &str, lever: &Lever) -> Result<Held, ActionError> {
    let (flag, environment, desired) = (lever.flag(), lever.environment(), lever.desired());
    let tkey = lever.key();
    let state_error = |e: CellError| ActionError {
        message: format!("flag {flag:?}: {e}"),
        retryable: matches!(e, CellError::Kv(_)),
    };
    let mut prior_read: Option<(Setting, Option<String>)> = None;
    loop {
        let now = d.p.now_ms();
        let seen = cell::read::<Target>(d.p, &tkey).map_err(state_error)?;
        let held = seen
            .value
            .as_ref()
            .filter(|t| !t.holders.is_empty() || t.restoring.is_some());
        let (new, found) = match held {
            Some(tg) => {
                if let Some(r) = &tg.restoring {
                    if r.by != okey && r.lease.is_fresh(now, d.skew_ms()) {
                        if d.wait() {
                            continue;
                        }
                        return Err(ActionError {
                            message: format!(
                                "flag {flag:?} is being restored by another occurrence; retry later"
                            ),
                            retryable: true,
                        });
                    }
                }
                let others = tg.holders.iter().filter(|h| *h != okey).count();
                // The same occurrence may move its own setting (a ladder: 50% → 10% → 0%).
                if others > 0 && tg.desired != desired {
                    return Err(ActionError {
                        message: format!(
                            "flag {flag:?} in environment {environment:?} is held {} by {others} other occurrence(s); not setting it {desired}",
                            tg.desired
                        ),
                        retryable: false,
                    });
                }
                let mine = tg.holders.iter().any(|h| h == okey);
                if mine && tg.restoring.is_none() && tg.desired == desired {
                    let held = Held {
                        strategy: tg.strategy.clone(),
                        holders: tg.holders.clone(),
                        unconfirmed: !tg.earlier.is_empty(),
                    };
                    (None, held)
                } else {
                    let mut n = tg.clone();
                    if !mine {
                        n.holders.push(okey.to_string());
                    }
                    if tg.desired != desired && !n.earlier.contains(&tg.desired) {
                        n.earlier.push(tg.desired);
                    }
                    n.desired = desired;
                    n.restoring = None;
                    n.expires_ms = now.saturating_add(claim::RETENTION_MS);
                    let held = Held {
                        strategy: n.strategy.clone(),
                        holders: n.holders.clone(),
                        unconfirmed: !n.earlier.is_empty(),
                    };
                    (Some(n), held)
                }
            }
            None => {
                let (prior, strategy) = match &prior_read {
                    Some(p) => p.clone(),
                    None => {
                        let read = lever.read(d, None)?.ok_or_else(|| ActionError {
                            message: format!("flag {flag:?}: Unleash sent no current setting"),
                            retryable: true,
                        })?;
                        prior_read.insert(read).clone()
                    }
                };
                let target = Target {
                    holders: vec![okey.to_string()],
                    desired,
                    prior,
                    strategy: strategy.clone(),
                    earlier: vec![],
                    restoring: None,
                    expires_ms: now.saturating_add(claim::RETENTION_MS),
                };
                let held = Held {
                    strategy,
                    holders: vec![okey.to_string()],
                    unconfirmed: false,
                };
                (Some(target), held)
            }
        };
        if let Some(new) = new {
            let ticket = d.ticket();
            if !cell::swap(d.p, &tkey, &seen, ticket, &new)
                .map_err(|e| state_error(CellError::Kv(e)))?
            {
                continue;
            }
        }
        return Ok(found);
    }
}

/// Held, with the prior setting stored: now the change itself.
fn set_and_verify(
    d: &Delivery,
    lever: &Lever,
    strategy: Option<&str>,
    verify: bool,
) -> (Result<String, ActionError>, Option<bool>) {
    let detail = match lever.send(d, strategy) {
        Ok(detail) => detail,
        Err(e) => return (Err(e), None),
    };
    if !verify {
        return (Ok(detail), None);
    }
    let desired = lever.desired();
    let shown = match lever.read(d, strategy) {
        Ok(Some((now, _))) if now == desired => {
            return (Ok(format!("{detail}; read back: verified")), Some(true))
        }
        Ok(Some((now, _))) => format!("{now}"),
        Ok(None) => "without that strategy".into(),
        Err(e) => {
            let message = format!("{detail}, but the read-back failed: {}", e.message);
            return (Err(ActionError { message, ..e }), Some(false));
        }
    };
    let message = format!(
        "read back: Unleash shows flag {:?} in environment {:?} {shown} after remediator set it {desired}",
        lever.flag(),
        lever.environment()
    );
    // Retryable: the retry sets it again and reads again; the hold stays, so resolve undoes it.
    (
        Err(ActionError {
            message,
            retryable: true,
        }),
        Some(false),
    )
}

/// Leave the flag setting; the last holder to leave restores its prior state.
/// The third value is what it was restored to, when remediator knows.
pub(crate) fn release_and_restore(
    d: &mut Delivery,
    okey: &str,
    lease: Lease,
    a: &StoredAction,
) -> (Result<String, ActionError>, Event, Option<Setting>) {
    let lever = match Lever::of(&a.taken) {
        Ok(l) => l,
        Err(e) => return (Err(e), Event::Failed, None),
    };
    let flag = lever.flag();
    let tkey = lever.key();
    let state_error = |e: CellError| ActionError {
        message: format!("flag {flag:?}: {e}"),
        retryable: matches!(e, CellError::Kv(_)),
    };
    let target = loop {
        let seen = match cell::read::<Target>(d.p, &tkey) {
            Ok(s) => s,
            Err(e) => return (Err(state_error(e)), Event::Failed, None),
        };
        let Some(tg) = seen.value.clone() else {
            if let (Some(prior), Taken::Flag { enabled, .. }) = (a.prior, &a.taken) {
                // Carried over from the earlier version: it kept the prior per action.
                break Target {
                    holders: vec![],
                    desired: Setting::Enabled(*enabled),
                    prior: Setting::Enabled(prior),
                    strategy: None,
                    earlier: vec![],
                    restoring: None,
                    expires_ms: 0,
                };
            }
            return (
                Ok(format!(
                    "flag {flag:?} is not held by this occurrence; nothing to undo"
                )),
                Event::RevertSkipped,
                None,
            );
        };
        if tg.restoring.as_ref().is_some_and(|r| r.by == okey) {
            break tg; // Resuming our own restore.
        }
        if !tg.holders.iter().any(|h| h == okey) {
            return (
                Ok(format!(
                    "flag {flag:?} is no longer held by this occurrence; nothing to undo"
                )),
                Event::RevertSkipped,
                None,
            );
        }
        let mut n = tg.clone();
        n.holders.retain(|h| h != okey);
        let last = n.holders.is_empty();
        if last {
            n.restoring = Some(Restoring {
                by: okey.to_string(),
                lease,
            });
        }
        let ticket = d.ticket();
        match cell::swap(d.p, &tkey, &seen, ticket, &n) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return (Err(state_error(CellError::Kv(e))), Event::Failed, None),
        }
        if !last {
            return (
                Ok(format!(
                    "flag {flag:?} stays {}: {} other occurrence(s) still hold it",
                    n.desired,
                    n.holders.len()
                )),
                Event::RevertSkipped,
                None,
            );
        }
        break n;
    };
    let (result, event) = restore(d, &target, &lever);
    // Whatever the restore did, this delivery no longer knows the flag's setting.
    d.flags_set.retain(|(k, _, _)| *k != tkey);
    if result.is_ok() {
        // Done restoring: the target is free again (unless someone took it over).
        let freed = d.update_cell(&tkey, |t: Option<&Target>| match t {
            Some(t) if t.restoring.as_ref().is_some_and(|r| r.by == okey) => {
                let mut n = t.clone();
                n.restoring = None;
                n.holders.clear();
                Change::Write(n, ())
            }
            _ => Change::Keep(()),
        });
        if let (Err(e), Ok(detail)) = (freed, &result) {
            // The flag is restored: retrying would restore it again, over whatever
            // happened since. The target stays "restoring" until its lease runs out;
            // the next holder then takes it over.
            return (
                Ok(format!("{detail}; WARNING: flag record not freed ({e})")),
                event,
                Some(target.prior),
            );
        }
    }
    (result, event, Some(target.prior))
}

fn restore(
    d: &mut Delivery,
    target: &Target,
    lever: &Lever,
) -> (Result<String, ActionError>, Event) {
    let flag = lever.flag();
    if target.prior == target.desired && target.earlier.is_empty() {
        return (
            Ok(format!(
                "flag {flag:?} was already {} before remediator acted; nothing to undo",
                target.desired
            )),
            Event::RevertSkipped,
        );
    }
    match lever.read(d, target.strategy.as_deref()) {
        Err(e) => (Err(e), Event::Failed),
        Ok(None) => (
            Ok(format!(
                "flag {flag:?}: the strategy remediator set ({}) has been removed since; nothing to restore",
                target.strategy.as_deref().unwrap_or("?")
            )),
            Event::RevertSkipped,
        ),
        Ok(Some((now, _))) if now != target.desired && !target.earlier.contains(&now) => (
            Ok(format!(
                "flag {flag:?} was changed by hand since remediator set it {} (it is {now} now); leaving it",
                target.desired,
            )),
            Event::RevertSkipped,
        ),
        Ok(Some(_)) => {
            let result = lever
                .set_to(target.prior)
                .and_then(|undo| undo.send(d, target.strategy.as_deref()));
            (result, Event::Reverted)
        }
    }
}
