//! `remediator check RULES...`: the component's own rules parser, reported like
//! `promtool check rules`.

use std::path::Path;

use remediator::rules::{self, RuleSet, RulesFormat};

/// `FILE:LINE:COL: message` for errors that carry `line N, column M: ...` (YAML and
/// type errors), else `FILE: message` (errors naming the rule and field).
pub fn locate(file: &str, error: &str) -> String {
    let at = error.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(", column ")?;
        let (col, msg) = rest.split_once(": ")?;
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (ok(line) && ok(col)).then(|| format!("{file}:{line}:{col}: {msg}"))
    });
    at.unwrap_or_else(|| format!("{file}: {error}"))
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
    use super::locate;

    #[test]
    fn locates_line_and_column() {
        assert_eq!(
            locate(
                "r.yaml",
                "line 5, column 10: mapping values are not allowed in this context"
            ),
            "r.yaml:5:10: mapping values are not allowed in this context"
        );
        assert_eq!(
            locate("r.yaml", "rules[0] (\"a\"): actions must not be empty"),
            "r.yaml: rules[0] (\"a\"): actions must not be empty"
        );
        assert_eq!(
            locate("r.yaml", "line x, column 1: m"),
            "r.yaml: line x, column 1: m"
        );
    }
}
