//! Servers for the load benchmark `benches/proxy/load.sh` (run that script; this
//! binary is one of its parts).
//!
//! ```text
//! cargo run --release -p proxy-load -- upstream 127.0.0.1:18080 [threads]
//! cargo run --release -p proxy-load -- gateway  127.0.0.1:18081 127.0.0.1:18080 [threads]
//! cargo run --release -p proxy-load -- bare     127.0.0.1:18082 127.0.0.1:18080 [threads]
//! cargo run --release -p proxy-load -- intask   127.0.0.1:18084 127.0.0.1:18080 [threads]
//! ```
//!
//! - `upstream`: answers every request with a 13-byte body.
//! - `gateway`: `gateway_layers_proxy::Proxy` (defaults: X-Forwarded-*, hop-by-hop
//!   stripping, timeouts) served by hyper's HTTP/1.1 server.
//! - `bare`: a naive hyper-util forwarding handler (rewrite the URI, `client.request`).
//! - `intask`: the same with hyper's connection API, each upstream connection driven
//!   by the request using it (no connection task; no headers, timeouts or balancing):
//!   the floor of the design `Proxy` uses for HTTP/1.1 targets.
//! - `inproc direct|bare|intask|gateway N`: all in one thread, for instruction counts
//!   (`valgrind --tool=callgrind`).
#![allow(missing_docs, clippy::print_stdout)]

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use gateway_layers_proxy::Proxy;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};

// Every server here (upstream, bare forwarders, `Proxy`) uses the same allocator, as
// the example gateway does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` with hyper's HTTP/1.1 server. Generic over the response body,
/// so no server here boxes its responses (the example gateway's axum does).
async fn serve<S, B>(addr: SocketAddr, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!("listening on {addr}");
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let service = AddPeer {
                inner: service,
                peer,
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Puts the peer address into the request extensions (as axum's ConnectInfo would).
#[derive(Clone)]
struct AddPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for AddPeer<S>
where
    S: hyper::service::Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
}

/// `inproc direct|bare|gateway N`: everything in one single-threaded process (for
/// instruction counting with callgrind): an upstream, the server under test and N
/// sequential keep-alive requests.
fn inproc(which: &str, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let upstream: SocketAddr = "127.0.0.1:28080".parse().unwrap();
        tokio::spawn(serve(
            upstream,
            hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"hello, world\n",
                ))))
            }),
        ));
        let front: SocketAddr = "127.0.0.1:28081".parse().unwrap();
        match which {
            "direct" => {}
            "gateway" => {
                let proxy = Proxy::new([format!("http://{upstream}")]).expect("proxy");
                tokio::spawn(serve(front, TowerToHyperService::new(proxy)));
            }
            "bare" => {
                tokio::spawn(bare(front, upstream));
            }
            "intask" => {
                tokio::spawn(intask::run(front, upstream));
            }
            other => panic!("unknown {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let target = if which == "direct" { upstream } else { front };
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri: Uri = format!("http://{target}/bench").parse().unwrap();
        for _ in 0..n {
            let response = client
                .request(Request::get(uri.clone()).body(Empty::new()).unwrap())
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap();
        }
        println!("{which}: {n} requests done");
    });
}

async fn bare(listen: SocketAddr, upstream: SocketAddr) {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    serve(
        listen,
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let client = client.clone();
            async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                *req.uri_mut() = format!("http://{upstream}{pq}")
                    .parse::<Uri>()
                    .expect("uri");
                Ok::<_, Infallible>(match client.request(req).await {
                    Ok(response) => response.map(Either::Left),
                    Err(_) => {
                        let mut r = Response::new(Either::Right(Empty::new()));
                        *r.status_mut() = StatusCode::BAD_GATEWAY;
                        r
                    }
                })
            }
        }),
    )
    .await;
}

/// Experiment: HTTP/1.1 upstream connections driven inside the request's own task
/// (no spawned connection task, no cross-task channels hops).
mod intask {
    use std::{
        future::poll_fn,
        net::SocketAddr,
        pin::Pin,
        sync::{Arc, Mutex},
        task::{Context, Poll},
    };

    use bytes::Bytes;
    use http::{Request, Response, StatusCode, Uri};
    use http_body::{Body, Frame};
    use http_body_util::{Either, Empty};
    use hyper::{
        body::Incoming,
        client::conn::http1::{Connection, SendRequest},
    };
    use hyper_util::rt::TokioIo;

    use super::{BoxError, serve};

    type Conn = (
        SendRequest<Incoming>,
        Connection<TokioIo<tokio::net::TcpStream>, Incoming>,
    );
    type Pool = Arc<Mutex<Vec<Conn>>>;

    struct ConnBody {
        inner: Incoming,
        conn: Option<Conn>,
        pool: Pool,
    }

    impl Body for ConnBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let this = &mut *self;
            if let Some((_, conn)) = this.conn.as_mut()
                && Pin::new(conn).poll(cx).is_ready()
            {
                this.conn = None;
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.release(cx);
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if this.inner.is_end_stream() {
                        this.release(cx);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                other => other.map_err(Into::into),
            }
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }
    }

    impl ConnBody {
        fn release(&mut self, cx: &mut Context<'_>) {
            if let Some((mut tx, mut conn)) = self.conn.take()
                && Pin::new(&mut conn).poll(cx).is_pending()
                && tx.poll_ready(cx).is_ready()
            {
                self.pool.lock().unwrap().push((tx, conn));
            }
        }
    }

    impl Drop for ConnBody {
        fn drop(&mut self) {
            if self.conn.is_some() && self.inner.is_end_stream() {
                self.release(&mut Context::from_waker(std::task::Waker::noop()));
            }
        }
    }

    pub(super) async fn run(listen: SocketAddr, upstream: SocketAddr) {
        let pool: Pool = Arc::default();
        serve(
            listen,
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let pool = pool.clone();
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    *req.uri_mut() = Uri::try_from(pq).expect("uri");
                    let pooled = pool.lock().unwrap().pop();
                    let (mut tx, mut conn) = match pooled {
                        Some(c) => c,
                        None => {
                            let stream = tokio::net::TcpStream::connect(upstream).await.unwrap();
                            stream.set_nodelay(true).unwrap();
                            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                                .await
                                .unwrap()
                        }
                    };
                    let mut fut = std::pin::pin!(tx.send_request(req));
                    let result = poll_fn(|cx| {
                        if Pin::new(&mut conn).poll(cx).is_ready() {
                            return Poll::Ready(None);
                        }
                        fut.as_mut().poll(cx).map(Some)
                    })
                    .await;
                    Ok::<_, std::convert::Infallible>(match result {
                        Some(Ok(response)) => response.map(|inner| {
                            Either::Left(ConnBody {
                                inner,
                                conn: Some((tx, conn)),
                                pool,
                            })
                        }),
                        _ => {
                            let mut r = Response::new(Either::Right(Empty::new()));
                            *r.status_mut() = StatusCode::BAD_GATEWAY;
                            r
                        }
                    })
                }
            }),
        )
        .await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("inproc") {
        let n = args.get(2).map_or(1000, |n| n.parse().expect("count"));
        return inproc(args.get(1).expect("direct|bare|gateway"), n);
    }
    let usage = "usage: proxy_load upstream LISTEN [threads] | gateway LISTEN UPSTREAM [threads] | bare LISTEN UPSTREAM [threads]";
    let mode = args.first().expect(usage).clone();
    let listen: SocketAddr = args.get(1).expect(usage).parse().expect("listen address");
    let (upstream, threads_arg): (Option<SocketAddr>, Option<&String>) = if mode == "upstream" {
        (None, args.get(2))
    } else {
        (
            Some(args.get(2).expect(usage).parse().expect("upstream address")),
            args.get(3),
        )
    };
    let threads: usize = threads_arg.map_or(1, |t| t.parse().expect("threads"));
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(async move {
        match (mode.as_str(), upstream) {
            ("upstream", _) => {
                serve(
                    listen,
                    hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello, world\n",
                        ))))
                    }),
                )
                .await;
            }
            ("gateway", Some(upstream)) => {
                let proxy = Proxy::new([format!("http://{upstream}")]).expect("proxy");
                serve(listen, TowerToHyperService::new(proxy)).await;
            }
            ("bare", Some(upstream)) => bare(listen, upstream).await,
            ("intask", Some(upstream)) => intask::run(listen, upstream).await,
            _ => panic!("{usage}"),
        }
    });
}
