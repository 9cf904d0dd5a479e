//! Reading a rules file: format detection (a guess, else a probe of the top-level
//! keys), the nesting check, and the YAML parse into the canonical model.

use serde::Deserialize;

use super::error::{RulesError, Seg};
use super::model::{RuleSet, RulesFormat};
use super::{keptn, own};

/// Peek at the top-level keys to pick the format; unknown keys are allowed here
/// because the chosen format's own parse rejects them with a location.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    remediations: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rules: Option<serde::de::IgnoredAny>,
}

/// Parse a rules file in any accepted format. Errors name the line: with the column
/// for YAML and type errors, with the rule and field for validation errors.
///
/// Every request parses the rules (a Spin instance lives for one request), so a valid
/// file is parsed once, in the format its top-level keys suggest. The typed formats
/// deny unknown fields, so that parse succeeding means the probe would have chosen
/// the same format; anything else takes the probing path for its exact error.
pub fn parse(text: &str) -> Result<RuleSet, RulesError> {
    check_flow_depth(text)?;
    if let Some(format) = guess_format(text) {
        if let Ok(set) = parse_as(format, text) {
            return Ok(set);
        }
    }
    probe_and_parse(text)
}

/// The reference parse: a first pass reads the top-level keys to choose the format.
/// `parse` must always agree with it (a test and the rules fuzz target check so).
#[doc(hidden)]
pub fn parse_probed(text: &str) -> Result<RuleSet, RulesError> {
    check_flow_depth(text)?;
    probe_and_parse(text)
}

/// `parse_probed` once the nesting has been checked.
fn probe_and_parse(text: &str) -> Result<RuleSet, RulesError> {
    let probe: Probe = yaml(text)?;
    let format = match probe {
        Probe {
            api_version: Some(v),
            ..
        } if v.starts_with("spec.keptn.sh/") => RulesFormat::Keptn08,
        Probe {
            remediations: Some(_),
            rules: None,
            ..
        } => RulesFormat::Keptn06,
        Probe { rules: Some(_), .. } => RulesFormat::Own,
        _ => {
            return Err(
                "unrecognized rules file: expected `remediations:` (Keptn 0.6), `apiVersion: spec.keptn.sh/...` (Keptn 0.8) or `rules:` (remediator/v1)"
                    .to_string()
                    .into(),
            )
        }
    };
    parse_as(format, text)
}

fn parse_as(format: RulesFormat, text: &str) -> Result<RuleSet, RulesError> {
    let invalid = |e| RulesError::after_parsing(text, e);
    let (rules, max_changes) = match format {
        RulesFormat::Keptn08 => (keptn::from_08(yaml(text)?).map_err(invalid)?, None),
        RulesFormat::Keptn06 => (keptn::from_06(yaml(text)?).map_err(invalid)?, None),
        RulesFormat::Own => own::from_own(yaml(text)?).map_err(invalid)?,
    };
    if rules.is_empty() {
        let list: &[Seg] = match format {
            RulesFormat::Keptn08 => &[Seg::Key("spec"), Seg::Key("remediations")],
            RulesFormat::Keptn06 => &[Seg::Key("remediations")],
            RulesFormat::Own => &[Seg::Key("rules")],
        };
        return Err(RulesError {
            line: super::error::line_of(text, list),
            column: None,
            message: "the rules file defines no rules".into(),
        });
    }
    let mut set = RuleSet::new(format, rules);
    set.max_changes = max_changes;
    Ok(set)
}

/// Deepest nesting of flow collections (`[`, `{`) accepted; the deserializer's own
/// recursion limit is 128 anyway.
const MAX_FLOW_DEPTH: usize = 128;

/// Refuse deeply nested flow collections before libyaml sees them: its scanner's cost
/// grows with the number of open flow levels per token, so `rules: [[[[...` of 64 KB
/// took 18 s (found by the rules fuzz target). A linear scan: quoted scalars and
/// comments are skipped; outside flow context a bracket counts only where a value can
/// start, since a block plain scalar may contain one (`title: a[b`).
fn check_flow_depth(text: &str) -> Result<(), RulesError> {
    let (mut depth, mut line) = (0usize, 1usize);
    // `prev`: the last significant character (can a value start here?); `raw`: the last
    // character (a comment needs a space or a line start before its `#`).
    let (mut prev, mut raw) = ('\n', '\n');
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        // Where a flow collection or a quoted scalar can start: after an indicator and a
        // space (`- [`, `key: [`), or right after another flow indicator.
        let value_start = matches!(raw, ' ' | '\t' | '\n')
            && matches!(prev, '\n' | '-' | ':' | ',' | '?' | '[' | '{')
            || matches!(raw, '[' | '{' | ',') && depth > 0;
        match c {
            '\n' => {
                line += 1;
                prev = '\n';
            }
            ' ' | '\t' | '\r' => {}
            '#' if matches!(raw, ' ' | '\t' | '\n') => {
                // A comment runs to the end of the line.
                if chars.by_ref().any(|c| c == '\n') {
                    line += 1;
                }
                (prev, raw) = ('\n', '\n');
                continue;
            }
            '"' | '\'' if value_start => {
                let mut escaped = false;
                for q in chars.by_ref() {
                    line += usize::from(q == '\n');
                    if c == '"' && !escaped && q == '\\' {
                        escaped = true;
                    } else if q == c && !escaped {
                        break;
                    } else {
                        escaped = false;
                    }
                }
                prev = c;
            }
            '[' | '{' if depth > 0 || value_start => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(RulesError {
                        line: Some(line),
                        column: None,
                        message: format!(
                            "flow collections ([ ], {{ }}) nested deeper than {MAX_FLOW_DEPTH}"
                        ),
                    });
                }
                prev = c;
            }
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                prev = c;
            }
            ':' | '-' | ',' | '?' => prev = c,
            // Part of a plain scalar (a bracket or quote there is just a character).
            _ => {
                (prev, raw) = ('x', 'x');
                continue;
            }
        }
        raw = c;
    }
    Ok(())
}

/// A guess from the block-style top-level keys (lines starting with a letter). Only a
/// guess: `parse` keeps it only if the typed parse then succeeds.
fn guess_format(text: &str) -> Option<RulesFormat> {
    let (mut rules, mut remediations) = (false, false);
    for line in text.lines() {
        if !line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        match line.split_once(':') {
            Some(("rules", _)) => rules = true,
            Some(("remediations", _)) => remediations = true,
            Some(("apiVersion", v)) if v.contains("spec.keptn.sh/") => {
                return Some(RulesFormat::Keptn08)
            }
            _ => {}
        }
    }
    if rules {
        Some(RulesFormat::Own)
    } else if remediations {
        Some(RulesFormat::Keptn06)
    } else {
        None
    }
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, RulesError> {
    serde_norway::from_str(text).map_err(|e| {
        let message = e.to_string();
        let Some(loc) = e.location() else {
            return message.into();
        };
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        RulesError {
            line: Some(loc.line()),
            column: Some(loc.column()),
            message: message.strip_suffix(&suffix).unwrap_or(&message).into(),
        }
    })
}
