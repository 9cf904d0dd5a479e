//! Compare a built component's imports/exports with the world in `wit/`.
//!
//! Interface-level: each side is a sorted list of fully-qualified interface
//! names (`wasi:http/types@0.2.0`). The world is elaborated by wit-parser, so
//! interfaces pulled in through `use` count as imports, and semver-compatible
//! imports are merged to the highest version, exactly as wit-component does
//! when it builds a component against the world.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;
use wit_parser::{Resolve, WorldItem, WorldKey};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Surface {
    pub imports: BTreeSet<String>,
    pub exports: BTreeSet<String>,
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentInstance(_) => "",
        ComponentItem::ComponentFunc(_) => " (func)",
        ComponentItem::CoreFunc(_) => " (core func)",
        ComponentItem::Module(_) => " (module)",
        ComponentItem::Component(_) => " (component)",
        ComponentItem::Type(_) => " (type)",
        ComponentItem::Resource(_) => " (resource)",
    }
}

/// What the compiled component actually imports and exports.
pub fn component_surface(engine: &Engine, wasm: &Path) -> Result<Surface> {
    let component = crate::host::ah(Component::from_file(engine, wasm))
        .with_context(|| format!("loading component {}", wasm.display()))?;
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, item)| format!("{name}{}", kind(&item.ty)))
        .collect();
    let exports = ty
        .exports(engine)
        .map(|(name, item)| format!("{name}{}", kind(&item.ty)))
        .collect();
    Ok(Surface { imports, exports })
}

/// What the world `world` (default: the only world of the root package)
/// in the WIT directory `dir` declares, elaborated.
pub fn world_surface(dir: &Path, world: Option<&str>) -> Result<Surface> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(dir)
        .with_context(|| format!("parsing WIT in {}", dir.display()))?;
    let world_id = resolve.select_world(&[pkg], world)?;
    resolve.merge_world_imports_based_on_semver(world_id)?;
    let w = &resolve.worlds[world_id];
    let name = |key: &WorldKey, item: &WorldItem| -> Option<String> {
        match item {
            WorldItem::Interface { .. } => Some(resolve.name_world_key(key)),
            WorldItem::Function(f) => Some(format!("{} (func)", f.name)),
            // Types used at world level are not instances of their own.
            WorldItem::Type { .. } => None,
        }
    };
    Ok(Surface {
        imports: w.imports.iter().filter_map(|(k, i)| name(k, i)).collect(),
        exports: w.exports.iter().filter_map(|(k, i)| name(k, i)).collect(),
    })
}

fn print_list(title: &str, items: &BTreeSet<String>) {
    println!("{title} ({}):", items.len());
    for i in items {
        println!("  {i}");
    }
}

pub fn print_surface(s: &Surface) {
    print_list("imports", &s.imports);
    print_list("exports", &s.exports);
}

/// Print both sides and the differences; error if they differ.
pub fn check(engine: &Engine, wasm: &Path, wit: &Path, world: Option<&str>) -> Result<()> {
    let actual = component_surface(engine, wasm)?;
    let declared = world_surface(wit, world)?;
    println!("== component {}", wasm.display());
    print_surface(&actual);
    println!("== world in {}", wit.display());
    print_surface(&declared);
    let mut diffs = Vec::new();
    for (what, a, d) in [
        ("imports", &actual.imports, &declared.imports),
        ("exports", &actual.exports, &declared.exports),
    ] {
        for x in a.difference(d) {
            diffs.push(format!("{what}: component has {x}, the world does not"));
        }
        for x in d.difference(a) {
            diffs.push(format!(
                "{what}: the world declares {x}, the component does not"
            ));
        }
    }
    if diffs.is_empty() {
        println!("OK: the component matches the world");
        Ok(())
    } else {
        for d in &diffs {
            println!("MISMATCH {d}");
        }
        bail!(
            "{} difference(s) between the component and wit/",
            diffs.len()
        )
    }
}
