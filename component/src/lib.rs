//! remediator's Spin component: the shell in [`spin`] (incoming request, outbound
//! HTTP, variables, key-value, clock) over the core crate, where every decision lives.
//! Built for wasm32-wasip2 only; natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod spin;
