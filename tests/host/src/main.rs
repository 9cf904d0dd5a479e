//! remediator-host: a TEST HOST for the remediator Spin component.
//!
//! THIS IS NOT SPIN. It serves one Spin HTTP component (a `wasi:http`
//! `incoming-handler@0.2.0` export) from a spin.toml (manifest v2) the way
//! `spin up` would, so end-to-end tests can run it on machines where the Spin
//! CLI cannot be installed. It implements only what remediator uses:
//! WASI p2, wasi:http (with `allowed_outbound_hosts` enforced),
//! `fermyon:spin/variables@2.0.0` and `wasi:keyvalue/{store,atomics}@0.2.0-draft2`
//! on SQLite, or on Redis via a Spin runtime config file. Where it differs from Spin is listed in tests/host/README.md.

mod allowed_hosts;
mod host;
mod kv;
mod manifest;
mod run;
mod runtime_config;
mod variables;
mod witcheck;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

const HELP: &str = "\
remediator-host: a TEST HOST for remediator's Spin component. This is NOT Spin.
It serves the component the way `spin up` would, for end-to-end tests only.
Differences from Spin: tests/host/README.md.

USAGE:
  remediator-host serve [--manifest spin.toml] [--listen 127.0.0.1:3000]
                        [--kv-path FILE.sqlite | --runtime-config-file FILE.toml]
                        [--redis-cas strict|spin] [--wasm PATH] [--variable NAME=VALUE]...
                        [--pooling on|off] [--random-seed N]
  remediator-host imports --wasm PATH
  remediator-host wit-check --wasm PATH --wit DIR [--world NAME]
  remediator-host run COMPONENT.wasm|.cwasm [ARGS...]
  remediator-host precompile COMPONENT.wasm OUT.cwasm

serve      Serve the manifest's single HTTP component: one fresh instance per
           request. Application variables come from --variable, then env
           SPIN_VARIABLE_<NAME>, then their default. Key-value store \"default\"
           lives in SQLite at --kv-path (default: a temporary file removed on
           exit), or where --runtime-config-file's [key_value_store.default]
           says (Spin's format: type = \"redis\" with url, or type = \"spin\"
           with path). --redis-cas spin reports a Redis compare-and-swap that
           lost the race as a success, as Spin's Redis store does (default:
           strict, it fails). --wasm overrides the component's `source`. Prints
           `listening on http://ADDR` on stdout once ready (--listen with port 0
           picks a free port); logs one line per request to stderr, with the
           request's key-value writes (kv_writes=N) and microseconds spent
           creating the Store, instantiating and in the guest (store_us=,
           instantiate_us=, handle_us=). --pooling on
           takes instances from wasmtime's pooling allocator, as Spin does
           (default off: allocated per request). --random-seed N (benchmarks
           only) makes request number k draw the same random bytes in every
           run (delivery ids, and so which deliveries sweep), so that two
           processes can be compared request by request.
imports    Print the component's imports and exports.
wit-check  Compare the component's imports/exports with the world in DIR
           (default: the only world there); exit 1 on any difference.
run        Run a wasm32-wasip2 command component (WASI p2 only, stdio and
           environment inherited) on the same wasmtime; exit 1 if it fails.
           For benches/run's wasm-vs-native comparison.
precompile Compile a command component ahead of time for `run` (a .cwasm that
           only this build of the host may load).
";

struct Args {
    cmd: String,
    opts: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut it = std::env::args().skip(1);
        let Some(cmd) = it.next() else {
            bail!("no command given\n\n{HELP}");
        };
        let mut opts: HashMap<String, Vec<String>> = HashMap::new();
        while let Some(a) = it.next() {
            if a == "-h" || a == "--help" {
                opts.entry("help".into()).or_default();
                continue;
            }
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}\n\n{HELP}");
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .with_context(|| format!("--{name} needs a value"))?;
                    (name.to_string(), v)
                }
            };
            opts.entry(name).or_default().push(value);
        }
        Ok(Args { cmd, opts })
    }

    fn check_known(&self, known: &[&str]) -> Result<()> {
        for k in self.opts.keys() {
            if k != "help" && !known.contains(&k.as_str()) {
                bail!("unknown option --{k} for `{}`\n\n{HELP}", self.cmd);
            }
        }
        Ok(())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.opts
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.one(name)
            .with_context(|| format!("`{}` needs --{name}", self.cmd))
    }
}

fn main() {
    let result = (|| -> Result<()> {
        // Positional commands, before the option parser (the guest's arguments are its own).
        let raw: Vec<String> = std::env::args().skip(1).collect();
        match raw.first().map(String::as_str) {
            Some("run") if raw.len() >= 2 => {
                if !run::run(&PathBuf::from(&raw[1]), &raw[2..])? {
                    std::process::exit(1);
                }
                return Ok(());
            }
            Some("precompile") if raw.len() == 3 => {
                return run::precompile(&PathBuf::from(&raw[1]), &PathBuf::from(&raw[2]));
            }
            Some("run" | "precompile") => bail!("wrong arguments\n\n{HELP}"),
            _ => {}
        }
        let args = Args::parse()?;
        if matches!(args.cmd.as_str(), "-h" | "--help" | "help") || args.opts.contains_key("help") {
            print!("{HELP}");
            return Ok(());
        }
        match args.cmd.as_str() {
            "serve" => serve(&args),
            "imports" => {
                args.check_known(&["wasm"])?;
                let engine = host::engine()?;
                let s =
                    witcheck::component_surface(&engine, &PathBuf::from(args.required("wasm")?))?;
                witcheck::print_surface(&s);
                Ok(())
            }
            "wit-check" => {
                args.check_known(&["wasm", "wit", "world"])?;
                let engine = host::engine()?;
                witcheck::check(
                    &engine,
                    &PathBuf::from(args.required("wasm")?),
                    &PathBuf::from(args.required("wit")?),
                    args.one("world"),
                )
            }
            other => bail!("unknown command {other:?}\n\n{HELP}"),
        }
    })();
    if let Err(e) = result {
        eprintln!("remediator-host: error: {e:#}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> Result<()> {
    args.check_known(&[
        "manifest",
        "listen",
        "kv-path",
        "runtime-config-file",
        "redis-cas",
        "wasm",
        "variable",
        "pooling",
        "random-seed",
    ])?;
    let random = match args.one("random-seed") {
        Some(s) => Some(host::RandomSeed::new(s.parse().with_context(|| {
            format!("--random-seed {s:?}: expected a whole number")
        })?)),
        None => None,
    };
    let pooling = match args.one("pooling").unwrap_or("off") {
        "on" => true,
        "off" => false,
        other => bail!("--pooling {other:?}: expected on or off"),
    };
    let runtime_config = match args.one("runtime-config-file") {
        Some(p) => runtime_config::load(&PathBuf::from(p))?,
        None => runtime_config::RuntimeConfig::default(),
    };
    let redis_cas_spin = match args.one("redis-cas").unwrap_or("strict") {
        "strict" => false,
        "spin" => true,
        other => bail!("--redis-cas {other:?}: expected strict or spin"),
    };
    let manifest_path = PathBuf::from(args.one("manifest").unwrap_or("spin.toml"));
    let listen = args.one("listen").unwrap_or("127.0.0.1:3000").to_string();
    let mut app = manifest::load(&manifest_path)?;
    if let Some(w) = args.one("wasm") {
        app.wasm = PathBuf::from(w);
    }

    let mut cli_vars = HashMap::new();
    for kv in args.opts.get("variable").into_iter().flatten() {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--variable {kv:?}: expected NAME=VALUE");
        };
        cli_vars.insert(k.to_string(), v.to_string());
    }
    let providers = variables::Providers::from_process_env(cli_vars);
    let resolver = variables::Resolver::new(
        &app.component_id,
        app.variables.clone(),
        &app.component_variables,
        providers,
    )?;

    let spec = allowed_hosts::AllowedHostsSpec::parse(&app.allowed_outbound_hosts)
        .context("`allowed_outbound_hosts` is malformed")?;
    spec.validate_with(|k| resolver.default_value(k))?;
    // Spin resolves *all* application variables before it resolves
    // allowed_outbound_hosts; if any required one has no value, every
    // outbound request is denied.
    let allowed = match resolver.prepare() {
        Ok(_) => spec.resolve(
            |k| resolver.app_value(k),
            |k| app.variables.get(k).is_some_and(|v| v.secret),
        ),
        Err(e) => allowed_hosts::Allowed::Broken(format!(
            "error resolving variables when checking requests against allowed outbound hosts: {e}"
        )),
    };

    // Temporary state lives until the host exits.
    let temp = tempfile::Builder::new()
        .prefix("remediator-host-")
        .tempdir()?;
    let files_root = temp.path().join("files");
    std::fs::create_dir_all(&files_root)?;
    manifest::stage_files(&app.files, &files_root)?;
    // The store behind the label "default" (the only label the manifest may
    // use here): the runtime config's, else SQLite at --kv-path or in temp.
    let kv = match runtime_config.key_value_stores.get("default") {
        Some(_) if args.one("kv-path").is_some() => bail!(
            "--kv-path and the runtime config's [key_value_store.default] both configure \
             the default store; give one"
        ),
        Some(runtime_config::KvBackend::Redis(url)) => {
            kv::KvStore::Redis(kv::RedisKv::new(url, redis_cas_spin)?)
        }
        Some(runtime_config::KvBackend::Sqlite(path)) => {
            if let Some(dir) = path.as_ref().and_then(|p| p.parent()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            kv::KvStore::Sqlite(kv::SqliteKv::open(path.as_deref())?)
        }
        None => {
            let kv_path = match args.one("kv-path") {
                Some(p) => PathBuf::from(p),
                None => temp.path().join("kv.sqlite"),
            };
            kv::KvStore::Sqlite(kv::SqliteKv::open(Some(&kv_path))?)
        }
    };

    eprintln!(
        "remediator-host: TEST HOST, not Spin. app {:?}, component {:?}",
        app.name, app.component_id
    );
    eprintln!("remediator-host: wasm {}", app.wasm.display());
    for line in resolver.describe() {
        eprintln!("remediator-host: variable {line}");
    }
    eprintln!(
        "remediator-host: allowed_outbound_hosts: {}",
        allowed.describe()
    );
    eprintln!(
        "remediator-host: key_value_stores {:?} in {}{}",
        app.key_value_stores,
        kv.describe(),
        match (&kv, redis_cas_spin) {
            (kv::KvStore::Redis(_), true) => " (--redis-cas spin: a lost swap reports success)",
            _ => "",
        }
    );
    for label in runtime_config.key_value_stores.keys() {
        if label != "default" {
            eprintln!(
                "remediator-host: runtime config: key_value_store.{label} unused (this host \
                 serves only the label \"default\")"
            );
        }
    }
    for section in &runtime_config.ignored {
        eprintln!("remediator-host: runtime config: [{section}] ignored by this test host");
    }
    for f in &app.files {
        eprintln!(
            "remediator-host: file {} -> {} (read-only)",
            f.source.display(),
            f.destination
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let engine = host::engine_with(pooling)?;
        let started = std::time::Instant::now();
        let component = host::load_component(&engine, &app.wasm)?;
        let pre = host::pre_instantiate(&engine, &component)?;
        eprintln!(
            "remediator-host: compiled component in {} ms",
            started.elapsed().as_millis()
        );
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(host::Shared {
            pre,
            resolver: Arc::new(resolver),
            allowed: Arc::new(allowed),
            kv,
            kv_labels: app.key_value_stores.clone(),
            files_root,
            environment: app.environment.clone().into_iter().collect(),
            self_origin: addr.to_string(),
            random,
        });
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        eprintln!("remediator-host: listening on http://{addr}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = host::serve(shared, listener) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(temp);
    result?;
    eprintln!("remediator-host: stopped");
    Ok(())
}
