//! The runtime side: wasmtime engine, linker with WASI p2 + wasi:http + the
//! Spin interfaces the component uses, and the HTTP server that creates one
//! fresh instance per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::allowed_hosts::Allowed;
use crate::kv::{CasState, KvStore, SwapError};
use crate::variables::{Resolver, VarError};

mod bindings {
    // The Spin-specific imports, generated from the project's vendored WIT
    // (wit/deps at the project root), so host and world check share one contract.
    wasmtime::component::bindgen!({
        inline: "
            package remediator:test-host;
            world spin-imports {
                import fermyon:spin/variables@2.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
                import wasi:keyvalue/batch@0.2.0-draft2;
            }
        ",
        path: ["../../wit/deps/spin@2.0.0", "../../wit/deps/keyvalue-2024-10-17"],
        world: "spin-imports",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::BucketHandle,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use bindings::fermyon::spin::variables as spin_vars;
use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open `wasi:keyvalue/store.bucket`.
pub struct BucketHandle {
    label: String,
}

/// A `wasi:keyvalue/atomics.cas`: the key and the backend's state for it (the
/// value seen when it was created or last read, or Redis's own connection).
pub struct CasHandle {
    label: String,
    key: String,
    state: CasState,
}

/// Everything shared by all requests.
pub struct Shared {
    pub pre: ProxyPre<GuestState>,
    pub resolver: Arc<Resolver>,
    pub allowed: Arc<Allowed>,
    pub kv: KvStore,
    pub kv_labels: Vec<String>,
    pub files_root: PathBuf,
    pub environment: Vec<(String, String)>,
    pub self_origin: String,
    /// `--random-seed`: each request's randomness comes from this seed and the
    /// request's number (benchmarks only; see `RandomSeed`). `None`: the OS's.
    pub random: Option<RandomSeed>,
}

/// Per-request randomness that repeats from run to run: request number `n` of a
/// process started with seed `s` draws the same bytes in every run. For benchmarks
/// that compare two processes request by request (remediator's delivery ids, and so
/// which deliveries run the expiry sweep, are random); never what Spin does.
pub struct RandomSeed {
    seed: u64,
    next: AtomicU64,
}

impl RandomSeed {
    pub fn new(seed: u64) -> RandomSeed {
        RandomSeed {
            seed,
            next: AtomicU64::new(0),
        }
    }

    fn apply(&self, wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
        use rand::SeedableRng;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Distinct streams per request and per interface.
        let base = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        wasi.secure_random(rand::rngs::StdRng::seed_from_u64(base));
        wasi.insecure_random(rand::rngs::StdRng::seed_from_u64(base ^ 1));
        wasi.insecure_random_seed(u128::from(base) << 64 | u128::from(n));
    }
}

/// Per-request store data.
pub struct GuestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    resolver: Arc<Resolver>,
    kv: KvStore,
    kv_labels: Vec<String>,
    /// What this request's log line reports (its key-value writes among them).
    stats: Arc<RequestStats>,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP: enforce `allowed_outbound_hosts`, then send with
/// wasmtime-wasi-http's default client (which honours the request-options
/// connect / first-byte / between-bytes timeouts).
struct OutboundHooks {
    allowed: Arc<Allowed>,
    self_origin: String,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let relative = host.is_empty() || host == "self.alt";
        let allowed = if relative {
            self.allowed.allows_relative(&["http", "https"])
        } else {
            self.allowed.allows(&scheme, &host, uri.port_u16())
        };
        if !allowed {
            let shown = if relative {
                "self".to_string()
            } else {
                format!(
                    "{scheme}://{}",
                    uri.authority().map(|a| a.as_str()).unwrap_or("")
                )
            };
            let why = match &*self.allowed {
                Allowed::Broken(e) => format!(" ({e})"),
                Allowed::Hosts(_) => String::new(),
            };
            eprintln!("remediator-host: outbound request to {shown} denied: not in allowed_outbound_hosts{why}");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if relative {
            // Spin sends "self" requests to its own listener.
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            match format!("http://{}{pq}", self.self_origin).parse() {
                Ok(u) => *request.uri_mut() = u,
                Err(_) => {
                    return Box::new(async {
                        Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid)
                    })
                }
            }
        }
        _ = fut;
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

// ---- fermyon:spin/variables@2.0.0 ----

impl spin_vars::Host for GuestState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin_vars::Error>> {
        Ok(self.resolver.get(&name).map_err(|e| match e {
            VarError::InvalidName(m) => spin_vars::Error::InvalidName(m),
            VarError::Undefined(m) => spin_vars::Error::Undefined(m),
            VarError::Provider(m) => spin_vars::Error::Provider(m),
            VarError::Other(m) => spin_vars::Error::Other(m),
        }))
    }
}

// ---- wasi:keyvalue/store@0.2.0-draft2 ----

fn kv_err(e: String) -> store::Error {
    store::Error::Other(e)
}

impl GuestState {
    fn wrote(&self) {
        self.stats.kv_writes.fetch_add(1, Ordering::Relaxed);
    }

    fn label(&self, b: &Resource<BucketHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(b)?.label.clone())
    }
}

impl store::Host for GuestState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<BucketHandle>, store::Error>> {
        if !self.kv_labels.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        if let Err(e) = self.kv.check_open() {
            return Ok(Err(kv_err(e)));
        }
        Ok(Ok(self.table.push(BucketHandle { label: identifier })?))
    }
}

impl store::HostBucket for GuestState {
    fn get(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let l = self.label(&b)?;
        Ok(self.kv.get(&l, &key).map_err(kv_err))
    }

    fn set(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let l = self.label(&b)?;
        self.wrote();
        Ok(self.kv.set(&l, &key, &value).map_err(kv_err))
    }

    fn delete(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let l = self.label(&b)?;
        self.wrote();
        Ok(self.kv.delete(&l, &key).map_err(kv_err))
    }

    fn exists(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let l = self.label(&b)?;
        Ok(self.kv.exists(&l, &key).map_err(kv_err))
    }

    fn list_keys(
        &mut self,
        b: Resource<BucketHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        if cursor.is_some() {
            return Ok(Err(store::Error::Other(
                "list_keys: cursor not supported".to_string(),
            )));
        }
        let l = self.label(&b)?;
        Ok(self
            .kv
            .keys(&l)
            .map(|keys| store::KeyResponse { keys, cursor: None })
            .map_err(kv_err))
    }

    fn drop(&mut self, b: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

// ---- wasi:keyvalue/atomics@0.2.0-draft2 ----

impl atomics::HostCas for GuestState {
    fn new(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let label = self.label(&b)?;
        let state = match self.kv.cas_new(&label, &key) {
            Ok(s) => s,
            Err(e) => return Ok(Err(kv_err(e))),
        };
        Ok(Ok(self.table.push(CasHandle { label, key, state })?))
    }

    fn current(
        &mut self,
        c: Resource<CasHandle>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        // As Spin: re-read, and compare against what the guest saw last
        // (Redis: WATCH the key on the handle's connection, then GET).
        let kv = self.kv.clone();
        let h = self.table.get_mut(&c)?;
        Ok(kv
            .cas_current(&h.label, &h.key, &mut h.state)
            .map_err(kv_err))
    }

    fn drop(&mut self, c: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl atomics::Host for GuestState {
    fn increment(
        &mut self,
        b: Resource<BucketHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let l = self.label(&b)?;
        self.wrote();
        Ok(self.kv.increment(&l, &key, delta).map_err(kv_err))
    }

    fn swap(
        &mut self,
        c: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let h = self.table.delete(c)?;
        self.wrote();
        match self.kv.cas_swap(&h.label, &h.key, h.state, &value) {
            Ok(()) => Ok(Ok(())),
            Err(SwapError::CasFailed) => {
                // A fresh handle at the latest value, for retries: as Spin,
                // a new handle on which `current` has been called.
                let fresh = self.kv.cas_new(&h.label, &h.key).and_then(|mut state| {
                    self.kv
                        .cas_current(&h.label, &h.key, &mut state)
                        .map(|_| state)
                });
                let state = match fresh {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(kv_err(e)))),
                };
                let fresh = self.table.push(CasHandle {
                    label: h.label,
                    key: h.key,
                    state,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(SwapError::Other(e)) => Ok(Err(atomics::CasError::StoreError(kv_err(e)))),
        }
    }
}

// ---- wasi:keyvalue/batch@0.2.0-draft2 ----

// As Spin's host (crates/factor-key-value): an empty list never reaches the
// store, so it is no write; anything else is one call, one transaction.
impl batch::Host for GuestState {
    fn get_many(
        &mut self,
        b: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let l = self.label(&b)?;
        if keys.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(self.kv.get_many(&l, &keys).map_err(kv_err))
    }

    fn set_many(
        &mut self,
        b: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let l = self.label(&b)?;
        if key_values.is_empty() {
            return Ok(Ok(()));
        }
        self.wrote();
        Ok(self.kv.set_many(&l, &key_values).map_err(kv_err))
    }

    fn delete_many(
        &mut self,
        b: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let l = self.label(&b)?;
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        self.wrote();
        Ok(self.kv.delete_many(&l, &keys).map_err(kv_err))
    }
}

// ---- engine, linker, server ----

/// wasmtime 48 has its own error type; convert it for `anyhow` contexts.
pub fn ah<T>(r: wasmtime::Result<T>) -> Result<T> {
    r.map_err(anyhow::Error::from)
}

pub fn engine() -> Result<Engine> {
    engine_with(false)
}

/// `pooling`: instances come from wasmtime's pooling allocator (memories and tables
/// reserved up front and reused), as Spin configures its engine, instead of being
/// allocated on demand per request.
pub fn engine_with(pooling: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // For profiling the guest by hand: the JIT code's symbols in /tmp/perf-<pid>.map.
    if std::env::var_os("REMEDIATOR_HOST_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        // Room for concurrent requests; a remediator instance needs one memory and table.
        pool.total_component_instances(256)
            .total_memories(256)
            .total_tables(256)
            .max_memory_size(256 << 20);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    ah(Engine::new(&config))
}

pub fn load_component(engine: &Engine, wasm: &Path) -> Result<Component> {
    ah(Component::from_file(engine, wasm))
        .with_context(|| format!("loading component {}", wasm.display()))
}

pub fn linker(engine: &Engine) -> Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::SpinImports::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |s| s)?;
    Ok(linker)
}

pub fn pre_instantiate(engine: &Engine, component: &Component) -> Result<ProxyPre<GuestState>> {
    let linker = linker(engine)?;
    let pre = ah(linker.instantiate_pre(component))
        .context("linking the component against the test host's imports")?;
    ah(ProxyPre::new(pre)).context("the component does not export wasi:http/incoming-handler@0.2.0")
}

impl Shared {
    fn new_state(&self, stats: Arc<RequestStats>) -> Result<GuestState> {
        let mut wasi = WasiCtx::builder();
        // Guest stdout and stderr both go to the host's stderr.
        wasi.stdout(tokio::io::stderr()).stderr(tokio::io::stderr());
        wasi.envs(&self.environment);
        wasi.preopened_dir(&self.files_root, "/", FsPerms::ReadOnly)?;
        if let Some(r) = &self.random {
            r.apply(&mut wasi);
        }
        Ok(GuestState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                allowed: self.allowed.clone(),
                self_origin: self.self_origin.clone(),
            },
            resolver: self.resolver.clone(),
            kv: self.kv.clone(),
            kv_labels: self.kv_labels.clone(),
            stats,
        })
    }

    async fn handle(
        self: Arc<Self>,
        mut req: hyper::Request<hyper::body::Incoming>,
        client: SocketAddr,
        stats: Arc<RequestStats>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        add_spin_headers(&mut req, client);
        let t0 = Instant::now();
        let mut store = Store::new(self.pre.engine(), self.new_state(stats.clone())?);
        stats.store_us.store(micros(t0), Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let pre = self.pre.clone();
        let t = stats.clone();
        // The task owns the store, so a streaming body keeps its instance
        // alive until the body is finished; the instance is then dropped.
        let task = tokio::task::spawn(async move {
            let t1 = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            t.instantiate_us.store(micros(t1), Ordering::Relaxed);
            t.ready_us.store(micros(t0), Ordering::Relaxed);
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        let answered = rx.await;
        // The guest call up to its response head (a body may still stream after it).
        let ready = stats.ready_us.load(Ordering::Relaxed);
        if ready > 0 {
            stats
                .handle_us
                .store(micros(t0).saturating_sub(ready), Ordering::Relaxed);
        }
        match answered {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => anyhow::bail!("guest returned an error response: {code:?}"),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("guest never called response-outparam::set"),
                    Ok(Err(e)) => e.into(),
                    Err(e) => e.into(),
                };
                Err(e.context("guest failed before sending a response"))
            }
        }
    }
}

/// One request's log line: `kv_writes` its key-value write transactions (set, delete,
/// increment, swap, and a whole non-empty set-many / delete-many: each is its own
/// durable commit under Spin; benches/writes.py reads them), and where its time went,
/// in microseconds: `store_us` the Store with its WASI / HTTP / key-value state,
/// `instantiate_us` only `instantiate_async` (a fresh instance of the pre-linked
/// component: memories, tables, data segments, core module start functions),
/// `handle_us` the guest call up to its response head (benches/coldstart.py).
#[derive(Default)]
struct RequestStats {
    kv_writes: AtomicU64,
    store_us: AtomicU64,
    instantiate_us: AtomicU64,
    handle_us: AtomicU64,
    /// From the start of `handle` to the instance being ready (0: never ready).
    ready_us: AtomicU64,
}

fn micros(since: Instant) -> u64 {
    // At least 1, so that 0 can mean "not reached".
    (since.elapsed().as_micros() as u64).max(1)
}

/// The `spin-*` request headers Spin's HTTP trigger adds for the catch-all
/// route `/...` (and it drops `connection`).
fn add_spin_headers(req: &mut hyper::Request<hyper::body::Incoming>, client: SocketAddr) {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let path = req.uri().path().to_string();
    let h = req.headers_mut();
    h.remove("connection");
    for (k, v) in [
        ("spin-path-info", path),
        ("spin-full-url", format!("http://{host}{pq}")),
        ("spin-matched-route", "/...".to_string()),
        ("spin-base-path", "/".to_string()),
        ("spin-raw-component-route", "/...".to_string()),
        ("spin-component-route", String::new()),
        ("spin-client-addr", client.to_string()),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

fn plain(status: u16, msg: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(msg.to_string()))
        .map_err(|e: Infallible| match e {})
        .boxed_unsync();
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

/// Accept connections forever; one task per connection, one instance per request.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) -> Result<()> {
    loop {
        let (stream, client) = listener.accept().await?;
        // Without TCP_NODELAY a response written in two parts (head, then body) waits
        // for the client's delayed ACK, ~40 ms, on every keep-alive request.
        stream.set_nodelay(true)?;
        let shared = shared.clone();
        tokio::task::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let start = Instant::now();
                        let method = req.method().clone();
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        let stats = Arc::new(RequestStats::default());
                        let handled = shared.handle(req, client, stats.clone()).await;
                        let resp = match handled {
                            Ok(r) => r,
                            Err(e) => {
                                eprintln!("remediator-host: {method} {path}: {e:#}");
                                plain(500, "Internal Server Error\n")
                            }
                        };
                        // The component answers after its last write, so the count is
                        // final here (benches/writes.py reads it per delivery). The
                        // microsecond fields are 0 for a part never reached.
                        eprintln!(
                            "remediator-host: {method} {path} -> {} in {} ms, kv_writes={} \
                             store_us={} instantiate_us={} handle_us={}",
                            resp.status().as_u16(),
                            start.elapsed().as_millis(),
                            stats.kv_writes.load(Ordering::Relaxed),
                            stats.store_us.load(Ordering::Relaxed),
                            stats.instantiate_us.load(Ordering::Relaxed),
                            stats.handle_us.load(Ordering::Relaxed),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service)
                .await
            {
                eprintln!("remediator-host: connection from {client}: {e}");
            }
        });
    }
}
