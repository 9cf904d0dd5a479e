//! `--runtime-config-file`: the key-value part of Spin's runtime config TOML.
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [key_value_store.other]
//! type = "spin"            # SQLite
//! path = "kv/other.db"     # relative to this file's directory; no path: in memory
//! ```
//!
//! Other store types (Azure Cosmos, AWS DynamoDB) are rejected; other
//! sections (variables providers, sqlite_database, llm_compute, ...) are
//! reported as ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where one key-value store label lives.
#[derive(Debug, Clone, PartialEq)]
pub enum KvBackend {
    /// `type = "spin"`: a SQLite file, or in memory without `path`.
    Sqlite(Option<PathBuf>),
    /// `type = "redis"`: the server's URL.
    Redis(String),
}

#[derive(Debug, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: BTreeMap<String, KvBackend>,
    /// Top-level sections this host does not implement.
    pub ignored: Vec<String>,
}

pub fn load(path: &Path) -> Result<RuntimeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading runtime config file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).with_context(|| format!("runtime config file {}", path.display()))
}

pub fn parse(text: &str, base_dir: &Path) -> Result<RuntimeConfig> {
    let table: toml::Table = toml::from_str(text).context("not valid TOML")?;
    let mut rc = RuntimeConfig::default();
    for (section, value) in table {
        if section != "key_value_store" {
            rc.ignored.push(section);
            continue;
        }
        let Some(stores) = value.as_table() else {
            bail!("[key_value_store] must be a table of labels");
        };
        for (label, store) in stores {
            let Some(store) = store.as_table() else {
                bail!("[key_value_store.{label}] must be a table");
            };
            let field = |name: &str| -> Result<Option<String>> {
                match store.get(name) {
                    None => Ok(None),
                    Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                    Some(v) => bail!(
                        "[key_value_store.{label}] {name}: expected a string, found {}",
                        v.type_str()
                    ),
                }
            };
            let Some(kind) = field("type")? else {
                bail!("[key_value_store.{label}] has no `type`");
            };
            let backend = match kind.as_str() {
                "redis" => {
                    let Some(url) = field("url")? else {
                        bail!("[key_value_store.{label}] type \"redis\" needs `url`");
                    };
                    KvBackend::Redis(url)
                }
                // As Spin: a relative path is relative to the runtime config file.
                "spin" => KvBackend::Sqlite(field("path")?.map(|p| base_dir.join(p))),
                "azure_cosmos" | "aws_dynamo" => bail!(
                    "[key_value_store.{label}] type {kind:?} is not supported by this test \
                     host (only \"spin\" and \"redis\")"
                ),
                other => bail!(
                    "[key_value_store.{label}] the store type {other:?} is not known \
                     (Spin's are \"spin\", \"redis\", \"azure_cosmos\", \"aws_dynamo\")"
                ),
            };
            rc.key_value_stores.insert(label.clone(), backend);
        }
    }
    Ok(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_spin_and_errors() {
        let base = Path::new("/etc/app");
        let rc = parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             [key_value_store.a]\ntype = \"spin\"\npath = \"kv/a.db\"\n\
             [key_value_store.b]\ntype = \"spin\"\n\
             [variables_provider]\n",
            base,
        )
        .unwrap();
        assert_eq!(
            rc.key_value_stores["default"],
            KvBackend::Redis("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            rc.key_value_stores["a"],
            KvBackend::Sqlite(Some(PathBuf::from("/etc/app/kv/a.db")))
        );
        assert_eq!(rc.key_value_stores["b"], KvBackend::Sqlite(None));
        assert_eq!(rc.ignored, vec!["variables_provider".to_string()]);

        for (text, needle) in [
            (
                "[key_value_store.default]\ntype = \"redis\"\n",
                "needs `url`",
            ),
            ("[key_value_store.default]\nurl = \"x\"\n", "has no `type`"),
            (
                "[key_value_store.default]\ntype = \"aws_dynamo\"\n",
                "not supported",
            ),
            ("[key_value_store.default]\ntype = \"mongo\"\n", "not known"),
            ("[key_value_store.default]\ntype = 3\n", "expected a string"),
            ("key_value_store = 1\n", "table of labels"),
            ("[[[", "not valid TOML"),
        ] {
            let e = format!("{:#}", parse(text, base).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
