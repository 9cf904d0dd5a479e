//! The subset of Spin's application manifest (v2) this test host understands.
//! Anything it does not support is rejected with a message naming it, rather
//! than silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::variables::AppVariable;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<RawTrigger>>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
struct RawApplication {
    name: String,
    #[serde(default)]
    trigger: Option<BTreeMap<String, toml::Value>>,
    // description, version, authors, targets...: informational only.
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default)]
    id: Option<String>,
    route: toml::Value,
    component: toml::Value,
    #[serde(default)]
    executor: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFile {
    Pattern(String),
    Placement { source: String, destination: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    build: Option<toml::Value>,
    #[serde(default)]
    tool: Option<toml::Value>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    dependencies: Option<toml::Value>,
}

/// A file to mount: host source, guest destination (absolute).
#[derive(Debug, Clone)]
pub struct FileMount {
    pub source: PathBuf,
    pub destination: String,
}

/// What the host needs from the manifest, for the one routed component.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub component_id: String,
    /// Absolute path of the component's Wasm file.
    pub wasm: PathBuf,
    pub variables: BTreeMap<String, AppVariable>,
    pub component_variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub files: Vec<FileMount>,
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
}

pub fn load(path: &Path) -> Result<App> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    parse(&text, &dir).with_context(|| format!("manifest {}", path.display()))
}

pub fn parse(text: &str, dir: &Path) -> Result<App> {
    let raw: RawManifest = toml::from_str(text)?;
    if raw.spin_manifest_version.as_integer() != Some(2) {
        bail!("only spin_manifest_version = 2 is supported by this test host");
    }
    if let Some(t) = &raw.application.trigger {
        if let Some(http) = t.get("http") {
            let base = http.get("base").and_then(|b| b.as_str()).unwrap_or("/");
            if base != "/" {
                bail!("[application.trigger.http] base = {base:?}: only \"/\" is supported by this test host");
            }
        }
    }

    let mut variables = BTreeMap::new();
    for (name, v) in raw.variables {
        let _ = v.description;
        if v.required == v.default.is_some() {
            bail!("variable {name:?}: must be `required` OR have a `default`");
        }
        variables.insert(
            name,
            AppVariable {
                default: v.default,
                secret: v.secret,
            },
        );
    }

    if let Some(kind) = raw.trigger.keys().find(|k| k.as_str() != "http") {
        bail!("[[trigger.{kind}]]: only HTTP triggers are supported by this test host");
    }
    let triggers = raw.trigger.get("http").map(Vec::as_slice).unwrap_or(&[]);
    let [trigger] = triggers else {
        bail!(
            "this test host serves exactly one [[trigger.http]] (route \"/...\"); the manifest has {}",
            triggers.len()
        );
    };
    let _ = &trigger.id;
    if trigger.executor.is_some() {
        bail!("[[trigger.http]] executor: not supported by this test host (only the default wasi-http executor)");
    }
    match trigger.route.as_str() {
        Some("/...") => {}
        Some(other) => bail!(
            "[[trigger.http]] route = {other:?}: this test host only supports the catch-all route \"/...\""
        ),
        None => bail!("[[trigger.http]] route: private endpoints ({{ private = true }}) are not supported by this test host"),
    }
    let Some(component_id) = trigger.component.as_str() else {
        bail!("[[trigger.http]] component: inline component tables are not supported; name a [component.X]");
    };
    let Some(c) = raw.component.get(component_id) else {
        bail!("[[trigger.http]] component = {component_id:?}: no [component.{component_id}]");
    };

    let Some(source) = c.source.as_str() else {
        bail!("[component.{component_id}] source: only a local file path is supported by this test host (not url/registry sources)");
    };
    for (what, set) in [
        ("sqlite_databases", !c.sqlite_databases.is_empty()),
        ("ai_models", !c.ai_models.is_empty()),
        (
            "allowed_http_hosts (deprecated; use allowed_outbound_hosts)",
            !c.allowed_http_hosts.is_empty(),
        ),
        ("exclude_files", !c.exclude_files.is_empty()),
        (
            "dependencies",
            c.dependencies.is_some() || c.dependencies_inherit_configuration.is_some(),
        ),
    ] {
        if set {
            bail!("[component.{component_id}] {what}: not supported by this test host");
        }
    }
    let _ = (&c.description, &c.build, &c.tool);

    for label in &c.key_value_stores {
        if label != "default" {
            bail!("[component.{component_id}] key_value_stores: unknown key_value_stores label {label:?} (Spin needs a runtime config for labels other than \"default\"; this test host has none)");
        }
    }

    let mut files = Vec::new();
    for f in &c.files {
        match f {
            RawFile::Placement {
                source,
                destination,
            } => {
                if !destination.starts_with('/') {
                    bail!("[component.{component_id}] files: destination {destination:?} must be an absolute path");
                }
                files.push(FileMount {
                    source: dir.join(source),
                    destination: destination.clone(),
                });
            }
            RawFile::Pattern(p) => {
                if p.contains(['*', '?', '[']) {
                    bail!("[component.{component_id}] files: glob pattern {p:?} is not supported by this test host; list paths or use {{ source, destination }}");
                }
                if Path::new(p).is_absolute() || p.split('/').any(|s| s == "..") {
                    bail!("[component.{component_id}] files: {p:?} must be relative to the manifest directory");
                }
                files.push(FileMount {
                    source: dir.join(p),
                    destination: format!("/{}", p.trim_start_matches("./")),
                });
            }
        }
    }

    Ok(App {
        name: raw.application.name,
        component_id: component_id.to_string(),
        wasm: dir.join(source),
        variables,
        component_variables: c.variables.clone(),
        environment: c.environment.clone(),
        files,
        allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
        key_value_stores: c.key_value_stores.clone(),
    })
}

/// Copy the component's `files` into `root`, laid out by destination.
pub fn stage_files(files: &[FileMount], root: &Path) -> Result<()> {
    for f in files {
        let rel = f.destination.trim_start_matches('/');
        let target = root.join(rel);
        let meta = std::fs::metadata(&f.source)
            .with_context(|| format!("files: source {}", f.source.display()))?;
        if meta.is_dir() {
            copy_dir(&f.source, &target)?;
        } else {
            if let Some(p) = target.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::copy(&f.source, &target).with_context(|| {
                format!("copying {} to {}", f.source.display(), target.display())
            })?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
a = { default = "x" }
b = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
files = ["data/f.txt", { source = "r.yaml", destination = "/r.yaml" }]
allowed_outbound_hosts = ["{{ a }}"]
key_value_stores = ["default"]
[component.c.variables]
a = "{{ a }}"
"#;

    #[test]
    fn parses_the_supported_subset() {
        let app = parse(BASE, Path::new("/m")).unwrap();
        assert_eq!(app.component_id, "c");
        assert_eq!(app.wasm, PathBuf::from("/m/c.wasm"));
        assert_eq!(app.files[0].destination, "/data/f.txt");
        assert_eq!(app.files[1].destination, "/r.yaml");
        assert!(app.variables["b"].secret);
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for (from, to) in [
            ("route = \"/...\"", "route = \"/api/...\""),
            ("[\"default\"]", "[\"other\"]"),
            (
                "b = { required = true, secret = true }",
                "b = { required = true, default = \"\" }",
            ),
            ("\"data/f.txt\"", "\"data/*.txt\""),
            ("[[trigger.http]]", "[[trigger.redis]]"),
        ] {
            let m = BASE.replace(from, to);
            assert!(
                parse(&m, Path::new("/m")).is_err(),
                "{to} should be rejected"
            );
        }
    }
}
