//! `run` and `precompile`: run a wasm32-wasip2 *command* component on the same
//! wasmtime and Cranelift settings the server uses, for benches/run's wasm-vs-native
//! comparison (benches/wasm-engine). WASI p2 only, stdio and environment inherited.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct Guest {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Compile ahead of time, so that a later `run` (and callgrind) counts only the guest.
pub fn precompile(input: &Path, output: &Path) -> Result<()> {
    let engine = Engine::default();
    let wasm = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    std::fs::write(output, engine.precompile_component(&wasm)?)
        .with_context(|| format!("writing {}", output.display()))
}

/// Run the component's `wasi:cli/run`; returns whether the guest reported success.
/// Prints the compile (or load) time on stderr.
pub fn run(path: &Path, guest_args: &[String]) -> Result<bool> {
    let engine = Engine::default();
    let started = Instant::now();
    let component = if path.extension().is_some_and(|e| e == "cwasm") {
        // SAFETY: only `.cwasm` files written by `precompile` above (same wasmtime, same
        // configuration) are given here; benches/run writes them itself.
        unsafe { Component::deserialize_file(&engine, path)? }
    } else {
        Component::from_file(&engine, path)?
    };
    eprintln!(
        "remediator-host run: compiled {} in {} ms",
        path.display(),
        started.elapsed().as_millis()
    );
    let mut linker = Linker::<Guest>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let mut wasi = WasiCtx::builder();
    let mut argv = vec![path.display().to_string()];
    argv.extend(guest_args.iter().cloned());
    wasi.inherit_stdio().inherit_env().args(&argv);
    let guest = Guest {
        wasi: wasi.build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&engine, guest);
    let command = Command::instantiate(&mut store, &component, &linker)?;
    Ok(command.wasi_cli_run().call_run(&mut store)?.is_ok())
}
