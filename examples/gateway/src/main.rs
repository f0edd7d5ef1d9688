//! The example gateway.
//!
//! ```text
//! cargo run -p example-gateway                       # embedded demo document
//! cargo run -p example-gateway -- --config my.yaml   # your document
//! ```
//!
//! `TOKIO_WORKER_THREADS=1` runs everything on one current-thread runtime; otherwise a
//! multi-thread runtime is used.
//!
//! The embedded document starts the demo users / orders services on loopback and
//! listens on `127.0.0.1:8080` (a free port if taken); `/metrics` and `/admin` are on
//! the admin listener (`127.0.0.1:9090`). It prints the addresses, a demo token and
//! curl commands. A bad document prints the file, the place in it and what was
//! expected, and exits with status 2.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use example_demo_services::bff::{DEMO_SECRET, mint_token};
use example_gateway::{
    DEFAULT_CONFIG, DemoTargets, DemoUrls, Gateway, GatewayConfig, serve, serve_service,
};

// A gateway allocates per request (headers, bodies, futures); glibc's malloc took about
// 12% of its CPU under load (benches/e2e/run.sh PROFILE=perf), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn bind(wanted: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => Ok(listener),
        Err(error) => {
            tracing::warn!(%error, %wanted, "address taken, using a free port");
            tokio::net::TcpListener::bind((wanted.ip(), 0)).await
        }
    }
}

fn main() -> ExitCode {
    // One thread: a current-thread runtime (no cross-thread wake-ups); otherwise tokio's
    // multi-thread runtime with TOKIO_WORKER_THREADS workers (default: one per core).
    let threads = std::env::var("TOKIO_WORKER_THREADS").ok();
    let runtime = if threads.as_deref() == Some("1") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let mut args = std::env::args().skip(1);
    let mut file: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => file = args.next().map(PathBuf::from),
            other => {
                eprintln!("unknown argument {other:?}; usage: example-gateway [--config FILE]");
                return ExitCode::from(2);
            }
        }
    }
    let demo = match DemoUrls::start().await {
        Ok(urls) => DemoTargets::new(urls),
        Err(error) => {
            eprintln!("cannot start the demo services: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = match &file {
        Some(path) => GatewayConfig::from_file(path, &demo),
        None => GatewayConfig::parse("gateway.yaml (embedded)", DEFAULT_CONFIG, &demo),
    };
    let name = file.as_ref().map_or_else(
        || "gateway.yaml (embedded)".to_owned(),
        |p| p.display().to_string(),
    );
    let gateway = match config.and_then(|c| Gateway::from_config(c, &name)) {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let (listener, admin) = match (bind(gateway.listen).await, bind(gateway.admin_listen).await) {
        (Ok(l), Ok(a)) => (l, a),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("cannot listen: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(addr), Ok(admin_addr)) = (listener.local_addr(), admin.local_addr()) else {
        return ExitCode::FAILURE;
    };
    let base = format!("http://{addr}");
    let token = mint_token(DEMO_SECRET, "1", "premium", Duration::from_secs(86_400));
    let free = mint_token(DEMO_SECRET, "2", "free", Duration::from_secs(86_400));
    let banner = format!(
        "gateway listening on {base}\n\
         admin: http://{admin_addr}/metrics  http://{admin_addr}/admin\n\n\
         demo tokens (valid 24 h):\n  premium user 1: {token}\n  free user 2:    {free}\n\n\
         try:\n  \
         curl -i {base}/api/users/1\n  \
         curl -i {base}/api/orders                       # 401: no token\n  \
         curl -s {base}/api/orders -H 'authorization: Bearer {token}'\n  \
         for i in $(seq 8); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/orders -H 'authorization: Bearer {free}'; done; echo   # 429 after 5\n  \
         for i in $(seq 5); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/status/500; done; echo   # breaker opens: 503\n  \
         curl -s http://{admin_addr}/metrics | grep gateway_\n"
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{banner}");
    }
    let admin_task = tokio::spawn(serve(admin, gateway.admin));
    let result = serve_service(listener, gateway.service).await;
    admin_task.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server error: {error}");
            ExitCode::FAILURE
        }
    }
}
