//! Sending a scale change to the scaling webhook: once, never retried here (`+1`
//! twice is +2), with an idempotency key per step and another for its undo.

use super::scale::ScaleRequest;
use super::ActionError;
use crate::claim::Occurrence;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::problem::Problem;
use crate::rules::ScaleChange;

/// Where scale calls go.
pub fn scale_url(cfg: &Config) -> String {
    format!("{}{}", cfg.scale_url, cfg.scale_path)
}

/// The idempotency key of one step of one occurrence: the same on every retry.
pub fn idempotency_key(occurrence: &str, rule: &str, step: usize, what: &str) -> String {
    let step = step.to_string();
    match what {
        "act" => crate::state::hash(&[occurrence, rule, &step]),
        _ => crate::state::hash(&[occurrence, rule, &step, what]),
    }
}

/// Send `value` (step `step`'s change, or its undo) for the occurrence `rec`; `what`
/// ("act", "revert") keeps the two idempotency keys apart.
pub(crate) fn send(
    d: &mut Delivery,
    rec: &Occurrence,
    problem: &Problem,
    step: usize,
    value: &str,
    what: &str,
) -> Result<String, ActionError> {
    let change = ScaleChange::parse(value).map_err(|e| ActionError {
        message: format!("stored action: {e}"),
        retryable: false,
    })?;
    let key = idempotency_key(&rec.occurrence, &rec.rule, step, what);
    let s = ScaleRequest::new(&rec.rule, change, problem, &key);
    // `+1` twice is +2: never retried here; the sender's retry and the record decide.
    d.outbound().once(|timeout| {
        let req = s.request(&scale_url(d.cfg), &d.cfg.scale_token)?;
        s.outcome(d.p.send(req, timeout), d.cfg)
    })
}
