//! Large bodies stream both ways with flat memory (own test binary, so the process'
//! peak memory belongs to this test alone).

mod common;

use bytes::Bytes;
use common::{ChannelBody, FNV_OFFSET, Generator, fnv1a_update};
use gateway_layers_proxy::Proxy;
use gateway_layers_test_support::{MockUpstream, Reply, fnv1a};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;
use tower::ServiceExt;

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 1024; // 64 MiB each way

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_with_flat_memory() {
    let upstream = MockUpstream::builder()
        .handler(|req, _| {
            Reply::status(200)
                .header("x-received-len", &req.body_len.to_string())
                .header("x-received-hash", &req.body_hash.to_string())
                .streamed(Bytes::from(vec![b'r'; CHUNK]), CHUNKS)
        })
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();

    // Warm up (pools, allocator) before reading the baseline.
    let warm = proxy
        .clone()
        .oneshot(common::request("/warm", "127.0.0.1:1"))
        .await
        .unwrap();
    warm.into_body().collect().await.unwrap();
    let baseline = peak_rss_kib();

    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut expected_hash = FNV_OFFSET;
    for _ in 0..CHUNKS {
        expected_hash = fnv1a_update(expected_hash, &chunk);
    }
    let request = Request::post("/upload")
        .body(Generator {
            chunk,
            remaining: CHUNKS,
        })
        .unwrap();
    let response = proxy.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-received-len"],
        (CHUNK * CHUNKS).to_string()
    );
    assert_eq!(
        response.headers()["x-received-hash"],
        expected_hash.to_string()
    );

    let mut body = response.into_body();
    let mut len = 0usize;
    let mut hash = FNV_OFFSET;
    let mut largest_frame = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        largest_frame = largest_frame.max(data.len());
        len += data.len();
        hash = fnv1a_update(hash, &data);
    }
    assert_eq!(len, CHUNK * CHUNKS);
    let mut expected = FNV_OFFSET;
    let reply_chunk = vec![b'r'; CHUNK];
    for _ in 0..CHUNKS {
        expected = fnv1a_update(expected, &reply_chunk);
    }
    assert_eq!(hash, expected);
    assert!(
        largest_frame <= 1024 * 1024,
        "frames are streamed, not joined"
    );
    assert_eq!(upstream.last().unwrap().body_len, (CHUNK * CHUNKS) as u64);
    assert_eq!(fnv1a(b""), FNV_OFFSET);

    if let (Some(before), Some(after)) = (baseline, peak_rss_kib()) {
        let grown_mib = (after.saturating_sub(before)) / 1024;
        eprintln!("peak RSS grew by {grown_mib} MiB streaming 64 MiB each way");
        assert!(
            grown_mib < 40,
            "peak memory grew by {grown_mib} MiB while streaming 64 MiB each way"
        );
    }
}

/// Full duplex: each chunk sent must come back through the proxy before the next one
/// is produced. A proxy that buffered either body whole would hang here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_stream_concurrently() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let echo = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(Response::new(req.into_body()))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), echo)
                    .await;
            });
        }
    });
    for http2 in [false, true] {
        let target = if http2 {
            gateway_layers_proxy::Target::new(format!("http://{addr}")).http2()
        } else {
            gateway_layers_proxy::Target::new(format!("http://{addr}"))
        };
        let proxy = Proxy::new([target]).unwrap();
        let (tx, rx) = mpsc::channel(1);
        let request = Request::post("/duplex").body(ChannelBody(rx)).unwrap();
        tx.send(Bytes::from_static(b"ping-0")).await.unwrap();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(10), proxy.oneshot(request))
                .await
                .expect("response head while the request body is still open")
                .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        for round in 0..8 {
            let expected = format!("ping-{round}");
            let mut got = Vec::new();
            while got.len() < expected.len() {
                let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
                    .await
                    .expect("echo of the chunk just sent")
                    .unwrap()
                    .unwrap();
                got.extend_from_slice(&frame.into_data().unwrap());
            }
            assert_eq!(got, expected.as_bytes(), "http2={http2}");
            tx.send(Bytes::from(format!("ping-{}", round + 1)))
                .await
                .unwrap();
        }
        drop(tx);
    }
}
