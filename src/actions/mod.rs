//! Acting: what an action is once resolved ([`taken`]) and how it is reported
//! ([`target`]); sending it ([`act`]) and undoing it ([`undo`]), within the
//! delivery's outbound budget ([`outbound`]) and the blast-radius budget
//! ([`budget`]); flag settings held and restored ([`flags`]), scale changes sent
//! ([`scaling`]), notifications sent ([`notify`]). The requests themselves are built
//! and their answers read, without I/O, in [`unleash`] and [`scale`].

pub mod act;
pub mod budget;
pub mod flags;
pub mod notify;
pub mod outbound;
pub mod scale;
pub mod scaling;
pub mod undo;
pub mod unleash;

use crate::claim::Taken;
use crate::config::Config;
use crate::platform::{OutboundRequest, OutboundResponse, SendError};
use crate::problem::Problem;
use crate::report::ActionTarget;
use crate::rules::{Action, Rule, UnleashName};

/// Why an action did not take effect, and whether the sender retrying could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    pub message: String,
    pub retryable: bool,
}

/// What an action is, as it will be stored and undone: the configured project and
/// environment filled in, the scale request's value and labels resolved.
pub fn taken(action: &Action, rule: &Rule, problem: &Problem, cfg: &Config) -> Taken {
    let project = |p: &Option<UnleashName>| p.as_ref().unwrap_or(&cfg.unleash_project).to_string();
    let environment =
        |e: &Option<UnleashName>| e.as_ref().unwrap_or(&cfg.unleash_environment).to_string();
    match action {
        Action::Flag {
            flag,
            enabled,
            project: p,
            environment: e,
            ..
        } => Taken::Flag {
            flag: flag.to_string(),
            project: project(p),
            environment: environment(e),
            enabled: *enabled,
        },
        Action::Rollout {
            flag,
            percent,
            strategy,
            project: p,
            environment: e,
            ..
        } => Taken::Rollout {
            flag: flag.to_string(),
            project: project(p),
            environment: environment(e),
            strategy: strategy.clone(),
            percent: percent.get(),
        },
        Action::Scale {
            change, on_resolve, ..
        } => {
            let s = scale::ScaleRequest::new(&rule.name, *change, problem, "");
            Taken::Scale {
                value: s.value,
                undo: on_resolve
                    .or_else(|| change.inverse())
                    .map(|u| u.to_string()),
                service: s.service,
                namespace: s.namespace,
            }
        }
    }
}

/// How an action taken is reported (and audited).
pub fn target(t: &Taken) -> ActionTarget {
    match t {
        Taken::Flag {
            flag,
            project,
            environment,
            enabled,
        } => ActionTarget::Flag {
            flag: flag.clone(),
            project: project.clone(),
            environment: environment.clone(),
            enabled: *enabled,
        },
        Taken::Rollout {
            flag,
            project,
            environment,
            strategy,
            percent,
        } => ActionTarget::Rollout {
            flag: flag.clone(),
            project: project.clone(),
            environment: environment.clone(),
            strategy: strategy.clone(),
            rollout: *percent,
        },
        Taken::Scale {
            value,
            service,
            namespace,
            ..
        } => ActionTarget::Scale {
            value: value.clone(),
            service: service.clone(),
            namespace: namespace.clone(),
        },
    }
}

/// Percent-encode one path segment (RFC 3986 unreserved characters pass).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How many characters of a peer's answer an error message quotes.
pub const EXCERPT_CHARS: usize = 200;

/// A short, single-line excerpt of a response body for error messages; prefers
/// a JSON `message`/`details` field (Unleash puts its explanation there). Secrets
/// are redacted before it is clipped, so one straddling the cut cannot leave a
/// prefix behind.
pub fn body_excerpt(resp: &OutboundResponse, cfg: &Config) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.pointer("/details/0/message"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(resp.body()).into_owned());
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    cfg.redact_and_clip(&one_line, EXCERPT_CHARS)
}

/// A request that could not be built is a configuration problem no retry fixes
/// (`Config::load` validates what goes into requests, so this should not happen).
pub fn built(
    peer: &str,
    variables: &str,
    request: http::Result<OutboundRequest>,
) -> Result<OutboundRequest, ActionError> {
    request.map_err(|e| ActionError {
        message: format!(
            "could not build the request to {peer} ({e}); check variables {variables}"
        ),
        retryable: false,
    })
}

/// The shared reading of a transport failure: always worth a retry.
pub fn transport_error(peer: &str, e: &SendError) -> ActionError {
    ActionError {
        message: format!("{peer} unreachable: {e}"),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_segment_keeps_paths_inert() {
        assert_eq!(encode_segment("EnablePromotion"), "EnablePromotion");
        assert_eq!(encode_segment("../../admin"), "..%2F..%2Fadmin");
        assert_eq!(encode_segment("a b?c#d"), "a%20b%3Fc%23d");
    }

    #[test]
    fn excerpt_prefers_json_message_and_truncates() {
        let cfg = crate::config::tests::config(&[]);
        let r = http::Response::builder()
            .status(404)
            .body(br#"{"name":"NotFoundError","message":"Could not find feature flag X"}"#.to_vec())
            .unwrap();
        assert_eq!(body_excerpt(&r, &cfg), "Could not find feature flag X");
        let r = http::Response::builder()
            .status(500)
            .body(vec![b'x'; 500])
            .unwrap();
        assert_eq!(body_excerpt(&r, &cfg).chars().count(), 201);
    }

    #[test]
    fn excerpt_never_leaves_a_prefix_of_a_token_echoed_across_the_cut() {
        let token = "unleash-SECRET-7f3a91";
        let cfg = crate::config::tests::config(&[("unleash_token", token)]);
        for before in EXCERPT_CHARS - token.len()..=EXCERPT_CHARS {
            let body = format!("{}{token} was refused", "x".repeat(before));
            let r = http::Response::builder()
                .status(400)
                .body(body.into_bytes())
                .unwrap();
            let excerpt = body_excerpt(&r, &cfg);
            assert!(!excerpt.contains(&token[..4]), "{before}: {excerpt}");
        }
    }
}
