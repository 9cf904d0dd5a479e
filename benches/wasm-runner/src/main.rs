//! `wasm-runner COMPONENT.wasm [ARGS...]`: run a wasm32-wasip2 command component
//! on wasmtime 48 with Cranelift's default settings (what the test host uses),
//! stdio and environment inherited (WASI p2 only). Reports the compile time on
//! stderr. Exit status: the guest's.
//!
//! `wasm-runner --precompile COMPONENT.wasm OUT.cwasm` compiles ahead of time;
//! running a `.cwasm` then skips compilation (so that callgrind counts only the
//! guest's run). Only load `.cwasm` files this program wrote.

use std::time::Instant;

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

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: wasm-runner COMPONENT.wasm [ARGS...]");
        std::process::exit(2);
    };
    let engine = Engine::default();
    if path == "--precompile" {
        let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: wasm-runner --precompile COMPONENT.wasm OUT.cwasm");
            std::process::exit(2);
        };
        let compiled = engine.precompile_component(&std::fs::read(input)?)?;
        std::fs::write(output, compiled)?;
        return Ok(());
    }
    let started = Instant::now();
    let component = if path.ends_with(".cwasm") {
        // SAFETY: written by `--precompile` with this same wasmtime and configuration.
        unsafe { Component::deserialize_file(&engine, path)? }
    } else {
        Component::from_file(&engine, path)?
    };
    eprintln!(
        "wasm-runner: compiled {path} in {} ms",
        started.elapsed().as_millis()
    );
    let mut linker = Linker::<Guest>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().inherit_env().args(&args);
    let guest = Guest {
        wasi: wasi.build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&engine, guest);
    let command = Command::instantiate(&mut store, &component, &linker)?;
    match command.wasi_cli_run().call_run(&mut store)? {
        Ok(()) => Ok(()),
        Err(()) => std::process::exit(1),
    }
}
