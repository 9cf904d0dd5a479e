//! `remediator check RULES...`: the component's own rules parser, reported like
//! `promtool check rules`.

use std::path::Path;

use remediator::rules::{self, RuleSet, RulesError, RulesFormat};

/// `FILE:LINE:COL: message` for YAML and type errors, `FILE:LINE: message` for errors
/// found after parsing (they name the rule and field too), else `FILE: message`.
pub fn locate(file: &str, error: &RulesError) -> String {
    let message = &error.message;
    match (error.line, error.column) {
        (Some(line), Some(col)) => format!("{file}:{line}:{col}: {message}"),
        (Some(line), None) => format!("{file}:{line}: {message}"),
        _ => format!("{file}: {message}"),
    }
}

/// The format's name as the component reports it (`keptn-0.6`, `keptn-0.8`, `remediator/v1`).
pub fn format_name(format: RulesFormat) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{format:?}"))
}

/// Read and parse one rules file; the error is already located (`FILE:LINE:COL: ...`).
pub fn load(path: &Path) -> Result<RuleSet, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    rules::parse(&text).map_err(|e| locate(&name, &e))
}

pub fn run(files: &[std::path::PathBuf]) -> u8 {
    let mut failed = false;
    for path in files {
        println!("Checking {}", path.display());
        match load(path) {
            Ok(set) => {
                // promtool's wording, "1 rules found" included: scripts grep for it.
                println!(
                    "  SUCCESS: {} rules found (format {})",
                    set.rules.len(),
                    format_name(set.format)
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("  FAILED:");
                eprintln!("{e}");
            }
        }
        println!();
    }
    u8::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column() {
        let error = |line, column, message: &str| RulesError {
            line,
            column,
            message: message.into(),
        };
        assert_eq!(
            locate(
                "r.yaml",
                &error(
                    Some(5),
                    Some(10),
                    "mapping values are not allowed in this context"
                )
            ),
            "r.yaml:5:10: mapping values are not allowed in this context"
        );
        assert_eq!(
            locate(
                "r.yaml",
                &error(Some(7), None, "rules[0] (\"a\"): actions must not be empty")
            ),
            "r.yaml:7: rules[0] (\"a\"): actions must not be empty"
        );
        assert_eq!(
            locate("r.yaml", &error(None, None, "unrecognized rules file")),
            "r.yaml: unrecognized rules file"
        );
    }
}
