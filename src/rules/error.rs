//! Why a rules file was refused, and where: promtool-style `FILE:LINE` for every
//! error, including those found after the YAML parsed (a bad matcher, duration,
//! channel, regex or notify template).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A rules error. YAML and type errors carry a line and column; validation errors
/// carry the line of the node their path names (`rules[1] ("a").match.labels[0]`);
/// an error about the file as a whole carries neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based; YAML and type errors only.
    pub column: Option<usize>,
    /// The error without its position, e.g. `rules[1] ("a").cooldown: ...`.
    pub message: String,
}

impl RulesError {
    /// An error found after parsing, located at the node its message's path names
    /// (the deepest one of that path the file has). Only on the error path: it
    /// parses `text` once more.
    pub(crate) fn after_parsing(text: &str, message: String) -> RulesError {
        let line = line_of(text, &error_path(&message));
        RulesError {
            line,
            column: None,
            message,
        }
    }
}

/// The same text as the YAML errors: `line 5, column 10: ...`, `line 14: ...`.
impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RulesError {}

/// An error about the file as a whole (no line).
impl From<String> for RulesError {
    fn from(message: String) -> RulesError {
        RulesError {
            line: None,
            column: None,
            message,
        }
    }
}

/// One step of a path into the YAML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The path a validation error starts with, as the rules parsers write it:
/// `rules[1] ("a").match.labels[0]: ...` (a rule's name in parentheses is skipped),
/// then any field the detail names first (`actions[0]: value: ...`). Empty when the
/// message does not start with a path followed by `: `.
pub(crate) fn error_path(message: &str) -> Vec<Seg<'_>> {
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut path = Vec::new();
    let mut rest = message;
    loop {
        let end = rest.find(|c| !is_key(c)).unwrap_or(rest.len());
        if end == 0 {
            return Vec::new();
        }
        path.push(Seg::Key(&rest[..end]));
        rest = &rest[end..];
        while let Some(r) = rest.strip_prefix('[') {
            let Some((n, r)) = r.split_once(']') else {
                return Vec::new();
            };
            let Ok(n) = n.parse() else {
                return Vec::new();
            };
            path.push(Seg::Index(n));
            rest = r;
        }
        // ` ("name")`: the name is Debug-quoted, so `\"` and `\\` are escaped.
        if let Some(r) = rest.strip_prefix(" (\"") {
            let mut chars = r.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(r) = close.and_then(|i| r[i + 1..].strip_prefix(')')) else {
                return Vec::new();
            };
            rest = r;
        }
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix(": ") {
            // The path ends; the detail may name a field of that node first.
            let end = r.find(|c| !is_key(c)).unwrap_or(r.len());
            if end == 0 || !r[end..].starts_with(": ") {
                return path;
            }
            rest = r;
        } else {
            return Vec::new();
        }
    }
}

/// The line of the deepest node along `path` in `text` (a valid YAML document): the
/// key's line for a mapping entry, the node's own for a sequence item. serde_norway
/// gives any error raised while deserializing a node that node's position, so a
/// seeker that walks the path and fails where it stops finds it, without a YAML
/// library of our own.
pub(crate) fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let err = Seek(path)
        .deserialize(serde_norway::Deserializer::from_str(text))
        .err()?;
    Some(err.location()?.line())
}

/// Walks `path`; always fails, at the node where it stops.
struct Seek<'p>(&'p [Seg<'p>]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

const HERE: &str = "here";

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HERE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let [Seg::Key(want), rest @ ..] = self.0 {
            let last = rest.is_empty();
            while let Some(found) = map.next_key_seed(KeyIs { want, last })? {
                if found {
                    return map.next_value_seed(Seek(rest));
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let [Seg::Index(want), rest @ ..] = self.0 {
            for _ in 0..*want {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::custom(HERE));
                }
            }
            seq.next_element_seed(Seek(rest))?;
        }
        Err(de::Error::custom(HERE))
    }
    // Any other node: the default methods fail, at this node.
}

/// Whether a mapping key is the one wanted; fails at the key when it is the last
/// step, so an entry is located at its key's line (`body:`, not the line after).
struct KeyIs<'p> {
    want: &'p str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HERE)
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match key == self.want {
            true if self.last => Err(E::custom(HERE)),
            found => Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_the_messages_the_parsers_write() {
        use Seg::{Index as I, Key as K};
        for (message, path) in [
            (
                r#"rules[1] ("bad-matcher").match.labels[1]: matcher "x": missing"#,
                vec![K("rules"), I(1), K("match"), K("labels"), I(1)],
            ),
            (
                r#"rules[0] ("a\").b: \\"): name is used by an earlier rule"#,
                vec![K("rules"), I(0)],
            ),
            (
                r#"remediations[0] ("x").actions[2]: value: flag state "y" must be on or off"#,
                vec![K("remediations"), I(0), K("actions"), I(2), K("value")],
            ),
            (
                "spec.remediations[3] (\"p\").actionsOnOpen[0]: action: unknown action \"a\"",
                vec![
                    K("spec"),
                    K("remediations"),
                    I(3),
                    K("actionsOnOpen"),
                    I(0),
                    K("action"),
                ],
            ),
            (
                "defaults.notify[0].body.X-Title: unknown field",
                vec![K("defaults"), K("notify"), I(0), K("body"), K("X-Title")],
            ),
            ("apiVersion: \"v2\" is not supported", vec![K("apiVersion")]),
            ("unrecognized rules file: expected `rules:`", vec![]),
            ("the rules file defines no rules", vec![]),
            ("rules[x]: y", vec![]),
            ("rules[0] (\"unclosed: y", vec![]),
            ("", vec![]),
        ] {
            assert_eq!(error_path(message), path, "{message}");
        }
    }

    #[test]
    fn the_deepest_node_on_the_path_is_found() {
        let text = "a: 1\nrules:\n  - name: x\n    labels:\n      - 'p'\n      - q\n  -\n    name: y\n    body:\n      t: z\n    flow: {k: [1, 2,\n      3]}\n";
        use Seg::{Index as I, Key as K};
        for (path, line) in [
            (vec![K("a")], Some(1)),
            (vec![K("rules")], Some(2)),
            (vec![K("rules"), I(0)], Some(3)),
            (vec![K("rules"), I(0), K("labels"), I(1)], Some(6)),
            // Past the end of a list or a missing key: the node that is there.
            (vec![K("rules"), I(0), K("labels"), I(5)], Some(5)),
            (vec![K("rules"), I(0), K("nothing")], Some(3)),
            (vec![K("rules"), I(1)], Some(8)),
            (vec![K("rules"), I(1), K("body")], Some(9)),
            (vec![K("rules"), I(1), K("body"), K("t")], Some(10)),
            (vec![K("rules"), I(1), K("flow"), K("k"), I(2)], Some(12)),
            // A scalar has no children: itself.
            (vec![K("rules"), I(1), K("name"), K("deeper")], Some(8)),
            (vec![], None),
        ] {
            assert_eq!(line_of(text, &path), line, "{path:?}");
        }
    }
}
