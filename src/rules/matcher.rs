//! Alertmanager-syntax label matchers: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

use regex_lite::{Regex, RegexBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

/// A parsed, ready-to-run label matcher. Regexes are anchored as in Alertmanager.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Longest regex source accepted.
const MAX_PATTERN_LEN: usize = 1024;
/// Most memory a compiled regex may take. regex-lite matches in time proportional to
/// the program's size times the input's, and counted repetitions make a short source
/// compile big (`(x{300}){300}`); regex-lite's own default (10 MiB) let one fuzzed
/// 120-byte matcher take 20 ms to compile.
const MAX_COMPILED_BYTES: usize = 256 * 1024;

/// Compile a regex from rules, bounded in source length and compiled size; `pattern`
/// is what the user wrote (for the length check), `full` what is compiled.
pub fn compile_bounded(pattern: &str, full: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("regex longer than {MAX_PATTERN_LEN} characters"));
    }
    RegexBuilder::new(full)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))
}

impl Matcher {
    /// Parse one matcher. The value may be double-quoted (with `\"`, `\\`, `\n`
    /// escapes) or bare.
    pub fn parse(input: &str) -> Result<Matcher, String> {
        let s = input.trim();
        let name_len = s
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        if name_len == 0 {
            return Err(format!(
                "matcher {input:?}: expected a label name (letters, digits, _), e.g. severity=\"critical\""
            ));
        }
        let (name, rest) = s.split_at(name_len);
        let rest = rest.trim_start();
        let (op, rest) = [
            ("=~", Op::Regex),
            ("!~", Op::NotRegex),
            ("!=", Op::NotEqual),
            ("=", Op::Equal),
        ]
        .iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (*op, r)))
        .ok_or_else(|| {
            format!("matcher {input:?}: expected one of =, !=, =~, !~ after label {name:?}")
        })?;
        let value = unquote(rest.trim()).map_err(|e| format!("matcher {input:?}: {e}"))?;
        Matcher::new(name.to_string(), op, value).map_err(|e| format!("matcher {input:?}: {e}"))
    }

    /// A matcher from its parts (a regex value is compiled, anchored); what the
    /// rules cache decodes a stored matcher with.
    pub fn new(name: String, op: Op, value: String) -> Result<Matcher, String> {
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(compile_bounded(&value, &format!("^(?:{value})$"))?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// A missing label matches as the empty string, as in Alertmanager.
    pub fn matches(&self, label_value: Option<&str>) -> bool {
        let v = label_value.unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(re)) => re.is_match(v),
            (Op::NotRegex, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }
}

fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("unbalanced quote in value".into());
        }
        return Ok(s.to_string());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "unexpected text after the closing quote: {:?}",
                        chars.as_str()
                    ))
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Keep other escapes for the regex engine (e.g. `\d`).
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("value ends inside an escape".into()),
            },
            c => out.push(c),
        }
    }
    Err("missing closing quote".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_operator() {
        for (src, op, value) in [
            (r#"severity="critical""#, Op::Equal, "critical"),
            (r#"severity!="info""#, Op::NotEqual, "info"),
            (r#"service=~"carts.*""#, Op::Regex, "carts.*"),
            (r#"service!~"test-.*""#, Op::NotRegex, "test-.*"),
            ("env = prod", Op::Equal, "prod"),
        ] {
            let m = Matcher::parse(src).unwrap();
            assert_eq!((m.op, m.value.as_str()), (op, value), "{src}");
        }
    }

    #[test]
    fn regex_is_anchored_like_alertmanager() {
        let m = Matcher::parse(r#"service=~"carts""#).unwrap();
        assert!(m.matches(Some("carts")));
        assert!(!m.matches(Some("carts-db")));
        let m = Matcher::parse(r#"service=~"carts.*""#).unwrap();
        assert!(m.matches(Some("carts-db")));
        assert!(!m.matches(Some("my-carts")));
    }

    #[test]
    fn missing_label_is_empty_string() {
        assert!(Matcher::parse(r#"team="""#).unwrap().matches(None));
        assert!(Matcher::parse(r#"team!="ops""#).unwrap().matches(None));
        assert!(!Matcher::parse(r#"team="ops""#).unwrap().matches(None));
        assert!(Matcher::parse(r#"team!~"o.*""#).unwrap().matches(None));
    }

    #[test]
    fn escapes_in_quoted_values() {
        let m = Matcher::parse(r#"msg="say \"hi\"""#).unwrap();
        assert_eq!(m.value, r#"say "hi""#);
        let m = Matcher::parse(r#"n=~"\d+""#).unwrap();
        assert!(m.matches(Some("42")));
    }

    #[test]
    fn bad_matchers_name_the_problem() {
        for (src, needle) in [
            ("=\"x\"", "expected a label name"),
            ("severity", "expected one of"),
            ("severity=\"x", "missing closing quote"),
            ("severity==\"x", "unbalanced quote"),
            (r#"service=~"(""#, "invalid regex"),
            (r#"a="b" c"#, "after the closing quote"),
        ] {
            let err = Matcher::parse(src).unwrap_err();
            assert!(err.contains(needle), "{src}: {err}");
        }
    }

    #[test]
    fn pathological_regex_is_linear() {
        // Catastrophic for backtracking engines; regex-lite is linear-time.
        let m = Matcher::parse(r#"v=~"(a+)+b""#).unwrap();
        assert!(!m.matches(Some(&"a".repeat(5000))));
    }
}
