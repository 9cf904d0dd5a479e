//! Test support (feature `testing`, never in the component): the configuration the
//! native tests and the simulation start from is spin.toml's own, so a new variable is
//! declared once, in spin.toml.

use std::collections::BTreeMap;

/// Every variable of spin.toml's `[variables]` with its default.
pub fn spin_defaults() -> BTreeMap<String, String> {
    let manifest: toml::Table = include_str!("../spin.toml")
        .parse()
        .expect("spin.toml is valid TOML");
    let variables = manifest["variables"]
        .as_table()
        .expect("spin.toml has a [variables] table");
    variables
        .iter()
        .map(|(name, v)| {
            let default = v
                .get("default")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("spin.toml: variable {name} has no string default"));
            (name.clone(), default.to_string())
        })
        .collect()
}

/// spin.toml's defaults with `overrides` applied; an override of a variable spin.toml
/// does not declare is a mistake in the test, and panics.
pub fn variables(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = spin_defaults();
    for (name, value) in overrides {
        assert!(
            vars.contains_key(*name),
            "{name} is not a variable of spin.toml"
        );
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}
