//! HTTP/1.1 message framing toward `http://` targets, against raw TCP upstreams on
//! loopback that read the request bytes and answer hand-written response bytes.
//!
//! These pin down what any HTTP/1.1 client codec behind `Proxy` must get right:
//! how a response body ends (Content-Length, chunked with extensions and trailers,
//! end of stream, HEAD/204/304), when a connection may carry the next request
//! (counted as accepted connections), interim 1xx responses, malformed or oversized
//! heads and truncated bodies, and how requests are framed on the wire (request
//! line, `Host`, hop-by-hop headers removed, `content-length` or chunked bodies).

mod common;

use std::{
    collections::VecDeque,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::{ChannelBody, request};
use gateway_layers_proxy::{Proxy, ProxyError, ProxyErrorKind, ProxyResponse};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tower::ServiceExt;

/// Every test ends within this, pass or fail.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request head larger than this is a broken client (the upstream gives up).
const MAX_REQUEST: usize = 1024 * 1024;

/// Runs a test body, failing it instead of hanging.
async fn within<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test timed out");
}

// ---------------------------------------------------------------------------------
// The raw upstream
// ---------------------------------------------------------------------------------

/// What the upstream writes for one request, and whether it closes afterwards.
struct Answer {
    bytes: Vec<u8>,
    close: bool,
}

/// Writes `bytes` and keeps the connection open for the next request.
fn reply(bytes: impl AsRef<[u8]>) -> Answer {
    Answer {
        bytes: bytes.as_ref().to_vec(),
        close: false,
    }
}

/// Writes `bytes`, then closes the connection (FIN).
fn reply_and_close(bytes: impl AsRef<[u8]>) -> Answer {
    Answer {
        bytes: bytes.as_ref().to_vec(),
        close: true,
    }
}

/// One request as the upstream read it off the wire.
#[derive(Debug, Clone)]
struct Received {
    /// Which accepted connection it came on (0 = the first).
    conn: usize,
    /// The head, request line to the empty line, exactly as sent.
    head: Vec<u8>,
    /// The body bytes as sent (still chunk-encoded if chunked).
    raw_body: Vec<u8>,
    /// The body decoded from its framing.
    body: Vec<u8>,
}

impl Received {
    fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).expect("request head is ASCII")
    }

    fn request_line(&self) -> &str {
        self.head_str().split("\r\n").next().unwrap()
    }

    /// `(lower-case name, value)` of each header line, in order.
    fn headers(&self) -> Vec<(String, String)> {
        header_lines(self.head_str())
    }

    /// The values of header `name`, in order.
    fn header(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// A loopback upstream that answers requests, in the order they arrive over all
/// its connections, with the given answers; with none left it closes the connection.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start(answers: impl IntoIterator<Item = Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.into_iter().collect::<VecDeque<_>>()));
        let task = tokio::spawn({
            let (accepted, received) = (accepted.clone(), received.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let conn = accepted.fetch_add(1, Ordering::SeqCst);
                    let (received, answers) = (received.clone(), answers.clone());
                    tokio::spawn(serve_connection(stream, conn, received, answers));
                }
            }
        });
        Self {
            addr,
            accepted,
            received,
            task,
        }
    }

    /// A proxy with this upstream as its only target.
    fn proxy(&self) -> Proxy {
        Proxy::new([format!("http://{}", self.addr)]).unwrap()
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests read so far, in arrival order.
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    conn: usize,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
) {
    let mut buf = Vec::new();
    while let Some((head, raw_body, body)) = read_request(&mut stream, &mut buf).await {
        received.lock().unwrap().push(Received {
            conn,
            head,
            raw_body,
            body,
        });
        let Some(answer) = answers.lock().unwrap().pop_front() else {
            break;
        };
        // The client may give up half way (an oversized head): not an upstream error.
        if stream.write_all(&answer.bytes).await.is_err() || answer.close {
            break;
        }
    }
    // A FIN, not a reset: everything sent was read, so nothing is left unread.
    let _ = stream.shutdown().await;
}

/// Reads one request (head, then its body by `content-length` or chunked) from
/// `stream`, leaving any bytes after it in `buf`. `None` at end of stream.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let head_len = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST || !read_more(stream, buf).await {
            return None;
        }
    };
    let head: Vec<u8> = buf.drain(..head_len).collect();
    let headers = header_lines(&String::from_utf8_lossy(&head));
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        loop {
            if let Some((len, body)) = decode_chunked(buf) {
                let raw = buf.drain(..len).collect();
                return Some((head, raw, body));
            }
            if !read_more(stream, buf).await {
                return None;
            }
        }
    }
    let len: usize = value("content-length").map_or(0, |v| v.parse().expect("content-length"));
    while buf.len() < len {
        if !read_more(stream, buf).await {
            return None;
        }
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some((head, body.clone(), body))
}

/// Appends what the socket has; false at end of stream or on an error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The header lines of a head (its first line skipped) as `(lower-case name, value)`.
fn header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line has a colon");
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

/// Decodes a whole chunked body at the start of `buf`: how many bytes it takes and
/// the data. `None` while incomplete; panics on bad framing (a codec bug).
fn decode_chunked(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..line_end]).expect("chunk size line");
        let size = line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size, 16).expect("hexadecimal chunk size");
        pos = line_end + 2;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let end = pos + find(&buf[pos..], b"\r\n")?;
                let last = end == pos;
                pos = end + 2;
                if last {
                    return Some((pos, data));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        data.extend_from_slice(&buf[pos..pos + size]);
        assert_eq!(
            &buf[pos + size..pos + size + 2],
            b"\r\n",
            "chunk ends in CRLF"
        );
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------------

async fn send<B>(proxy: &Proxy, request: Request<B>) -> ProxyResponse
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    proxy.clone().oneshot(request).await.unwrap()
}

async fn get(proxy: &Proxy, path: &str) -> ProxyResponse {
    send(proxy, request(path, "203.0.113.9:4000")).await
}

/// Reads a response body whole: its bytes and its trailers.
async fn read(response: ProxyResponse) -> (Bytes, Option<HeaderMap>) {
    let collected = response
        .into_body()
        .collect()
        .await
        .expect("the body ends without an error");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

/// Status and whole body of a GET of `path`.
async fn get_body(proxy: &Proxy, path: &str) -> (StatusCode, Bytes) {
    let response = get(proxy, path).await;
    let status = response.status();
    (status, read(response).await.0)
}

/// A GET of `/next`, which the upstream answers with [`OK_HELLO`], comes through whole.
async fn next_is_hello(proxy: &Proxy) {
    assert_eq!(
        get_body(proxy, "/next").await,
        (StatusCode::OK, Bytes::from("hello"))
    );
}

/// A proxy's own 502 answer (not one relayed from the upstream).
fn assert_bad_gateway(response: &ProxyResponse) {
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error = response
        .extensions()
        .get::<ProxyError>()
        .expect("the proxy's own rejection");
    assert_eq!(error.kind(), ProxyErrorKind::Connect);
}

const OK_HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

// ---------------------------------------------------------------------------------
// Response framing and connection reuse
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn content_length_bodies_reuse_one_connection() {
    within(async {
        let upstream = RawUpstream::start([
            reply("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-N: 1\r\n\r\nfirst"),
            reply("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-N: 2\r\n\r\nsecond"),
        ])
        .await;
        let proxy = upstream.proxy();
        for (n, expected) in [("1", "first"), ("2", "second")] {
            let response = get(&proxy, "/n").await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["x-n"], n);
            assert_eq!(read(response).await.0, expected);
        }
        assert_eq!(upstream.connections(), 1);
        let received = upstream.received();
        assert_eq!(received.len(), 2);
        assert!(received.iter().all(|r| r.conn == 0));
    })
    .await;
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_then_reuse() {
    within(async {
        let upstream = RawUpstream::start([
            reply(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
                 5;ext=1\r\nhello\r\n\
                 1;a=b;c=\"d\"\r\n,\r\n\
                 6\r\n world\r\n\
                 0\r\nX-Checksum: abc\r\n\r\n",
            ),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/chunked").await;
        assert_eq!(response.status(), StatusCode::OK);
        let (body, trailers) = read(response).await;
        assert_eq!(body, "hello, world");
        let trailers = trailers.expect("the trailers are passed on");
        assert_eq!(trailers["x-checksum"], "abc");

        next_is_hello(&proxy).await;
        assert_eq!(
            upstream.connections(),
            1,
            "the chunked response left it reusable"
        );
    })
    .await;
}

#[tokio::test]
async fn close_delimited_body_then_a_new_connection() {
    within(async {
        let upstream = RawUpstream::start([
            reply_and_close(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the end",
            ),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        assert_eq!(
            get_body(&proxy, "/eof").await,
            (StatusCode::OK, "all of it, until the end".into())
        );
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
        let conns: Vec<usize> = upstream.received().iter().map(|r| r.conn).collect();
        assert_eq!(conns, [0, 1]);
    })
    .await;
}

#[tokio::test]
async fn connection_close_response_is_not_reused() {
    within(async {
        // The upstream keeps the socket open: only the header says not to reuse it.
        let upstream = RawUpstream::start([
            reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"),
            reply(OK_HELLO),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/close").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            !response.headers().contains_key("connection"),
            "hop-by-hop, not passed on"
        );
        assert_eq!(read(response).await.0, "bye");
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
        let conns: Vec<usize> = upstream.received().iter().map(|r| r.conn).collect();
        assert_eq!(
            conns,
            [0, 1],
            "nothing more was sent on the first connection"
        );
    })
    .await;
}

#[tokio::test]
async fn http_1_0_response_without_keep_alive_is_not_reused() {
    within(async {
        // Open socket again: HTTP/1.0 without `Connection: keep-alive` means close.
        let upstream = RawUpstream::start([
            reply("HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!"),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        assert_eq!(
            get_body(&proxy, "/old").await,
            (StatusCode::OK, "old!".into())
        );
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
        let conns: Vec<usize> = upstream.received().iter().map(|r| r.conn).collect();
        assert_eq!(conns, [0, 1]);
    })
    .await;
}

#[tokio::test]
async fn head_response_has_no_body_and_the_connection_is_reused() {
    within(async {
        // `Content-Length: 10` describes the GET's body; none follows a HEAD answer.
        let upstream = RawUpstream::start([
            reply("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
            reply("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        ])
        .await;
        let proxy = upstream.proxy();
        let mut head = request("/doc", "203.0.113.9:4000");
        *head.method_mut() = Method::HEAD;
        let response = send(&proxy, head).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "10");
        assert_eq!(read(response).await.0, "");

        assert_eq!(
            get_body(&proxy, "/doc").await,
            (StatusCode::OK, "0123456789".into())
        );
        assert_eq!(upstream.connections(), 1);
        let received = upstream.received();
        assert!(received[0].request_line().starts_with("HEAD /doc "));
        assert!(received[1].request_line().starts_with("GET /doc "));
    })
    .await;
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body_and_reuse() {
    within(async {
        let upstream = RawUpstream::start([
            reply("HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n"),
            reply("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n"),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();

        let response = get(&proxy, "/gone").await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()["x-kind"], "204");
        assert_eq!(read(response).await.0, "");

        let response = get(&proxy, "/cached").await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()["etag"], "\"v1\"");
        assert_eq!(read(response).await.0, "");

        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    within(async {
        let upstream = RawUpstream::start([
            reply(
                "HTTP/1.1 100 Continue\r\n\r\n\
                 HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                 HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
            ),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/hints").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-final"], "yes");
        assert!(
            !response.headers().contains_key("link"),
            "the 103's headers are not the final response's"
        );
        assert_eq!(read(response).await.0, "final");
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Broken responses
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_response_head_is_a_502() {
    within(async {
        // 100 KiB in one header value: past the 64 KiB limit on a response head.
        let huge = "a".repeat(100 * 1024);
        let upstream = RawUpstream::start([
            reply(format!(
                "HTTP/1.1 200 OK\r\nX-Huge: {huge}\r\nContent-Length: 5\r\n\r\nhello"
            )),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        assert_bad_gateway(&get(&proxy, "/huge").await);
        // The proxy is fine afterwards, on a new connection.
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
    })
    .await;
}

#[tokio::test]
async fn garbage_response_is_a_502() {
    within(async {
        let upstream = RawUpstream::start([
            reply("HTTP/1.1 abc Not A Status\r\nContent-Length: 0\r\n\r\n"),
            reply("\x16\x03\x01 this is not HTTP at all\r\n\r\n"),
            reply("HTTP/1.1 200 OK\r\nContent Length: 5\r\n\r\nhello"),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        for path in ["/bad-status", "/not-http", "/bad-header"] {
            let response = get(&proxy, path).await;
            assert_bad_gateway(&response);
        }
        next_is_hello(&proxy).await;
        assert_eq!(
            upstream.connections(),
            4,
            "a broken connection is never reused"
        );
    })
    .await;
}

#[tokio::test]
async fn truncated_content_length_body_is_an_error() {
    within(async {
        let upstream = RawUpstream::start([
            reply_and_close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/cut").await;
        assert_eq!(response.status(), StatusCode::OK, "the head was complete");
        let mut body = response.into_body();
        let mut got = Vec::new();
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(e)) => break e,
                None => panic!("a body cut short ended as a success: {got:?}"),
            }
        };
        assert!(b"only part".starts_with(&got), "{got:?}");
        drop((error, body));
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
    })
    .await;
}

#[tokio::test]
async fn upstream_closing_without_an_answer_is_a_502() {
    within(async {
        // No answers: the upstream reads the request and closes.
        let upstream = RawUpstream::start([]).await;
        let proxy = upstream.proxy();
        assert_bad_gateway(&get(&proxy, "/nothing").await);
        assert_eq!(upstream.received().len(), 1, "the request was sent once");
        assert_eq!(upstream.connections(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Request framing
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn full_request_body_is_sent_with_content_length() {
    within(async {
        let upstream = RawUpstream::start([reply(OK_HELLO)]).await;
        let proxy = upstream.proxy();
        let post = Request::post("/upload")
            .header("host", "gateway.example")
            .body(Full::new(Bytes::from_static(b"payload\r\n0\r\n\r\n")))
            .unwrap();
        let response = send(&proxy, post).await;
        assert_eq!(read(response).await.0, "hello");
        let received = &upstream.received()[0];
        assert_eq!(received.request_line(), "POST /upload HTTP/1.1");
        assert_eq!(received.header("content-length"), ["14"]);
        assert!(received.header("transfer-encoding").is_empty());
        assert_eq!(received.raw_body, b"payload\r\n0\r\n\r\n");
    })
    .await;
}

#[tokio::test]
async fn streamed_request_body_is_sent_chunked() {
    within(async {
        let upstream = RawUpstream::start([reply(OK_HELLO), reply(OK_HELLO)]).await;
        let proxy = upstream.proxy();
        let (tx, rx) = mpsc::channel(4);
        let post = Request::post("/stream")
            .header("host", "gateway.example")
            .body(ChannelBody(rx))
            .unwrap();
        let chunks: [&[u8]; 4] = [b"first,", b"", b"0\r\n\r\n", &[0xff; 300]];
        let sender = tokio::spawn(async move {
            for chunk in chunks {
                tx.send(Bytes::from_static(chunk)).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let response = send(&proxy, post).await;
        assert_eq!(read(response).await.0, "hello");
        sender.await.unwrap();

        let received = &upstream.received()[0];
        assert_eq!(received.request_line(), "POST /stream HTTP/1.1");
        assert_eq!(received.header("transfer-encoding"), ["chunked"]);
        assert!(received.header("content-length").is_empty());
        assert_eq!(received.body, chunks.concat());
        assert!(
            received.raw_body.ends_with(b"0\r\n\r\n") && received.raw_body != received.body,
            "chunk-encoded on the wire"
        );
        // The chunked request ended cleanly: the connection carries the next one.
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn request_head_has_origin_form_host_and_no_hop_by_hop_headers() {
    within(async {
        let upstream = RawUpstream::start([reply(OK_HELLO), reply(OK_HELLO)]).await;
        let proxy = upstream.proxy();
        let mut get_request = request("/path?q=1", "203.0.113.9:4000");
        let headers = get_request.headers_mut();
        headers.insert("connection", "close, X-Foo".parse().unwrap());
        headers.insert("x-foo", "1".parse().unwrap());
        headers.insert("keep-alive", "5".parse().unwrap());
        headers.insert("x-kept", "yes".parse().unwrap());
        let response = send(&proxy, get_request).await;
        assert_eq!(read(response).await.0, "hello");

        let received = &upstream.received()[0];
        assert_eq!(received.request_line(), "GET /path?q=1 HTTP/1.1");
        assert_eq!(received.header("host"), ["gateway.example"]);
        assert_eq!(received.header("x-kept"), ["yes"]);
        assert!(
            received.header("x-foo").is_empty(),
            "{}",
            received.head_str()
        );
        assert!(
            received.header("keep-alive").is_empty(),
            "{}",
            received.head_str()
        );
        for value in received.header("connection") {
            let value = value.to_ascii_lowercase();
            assert!(
                !value.contains("close") && !value.contains("x-foo"),
                "the client's Connection header reached the upstream: {value}"
            );
        }
        assert!(received.header("content-length").is_empty());
        assert!(received.header("transfer-encoding").is_empty());
        assert!(received.raw_body.is_empty());
        // The client's `Connection: close` was about its own connection, not this one.
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Header values and conflicting framing
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn non_ascii_values_and_repeated_headers_pass_in_order() {
    within(async {
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        answer.extend_from_slice(b"Set-Cookie: a=1; Path=/\r\n");
        answer.extend_from_slice(b"X-Latin1: caf\xe9\r\n");
        answer.extend_from_slice("X-Utf8: café ✓\r\n".as_bytes());
        answer.extend_from_slice(b"Set-Cookie: b=2; HttpOnly\r\n");
        answer.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let upstream = RawUpstream::start([reply(answer)]).await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/headers").await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["x-latin1"].as_bytes(), b"caf\xe9");
        assert_eq!(headers["x-utf8"].as_bytes(), "café ✓".as_bytes());
        let cookies: Vec<&[u8]> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(cookies, [&b"a=1; Path=/"[..], &b"b=2; HttpOnly"[..]]);
        assert_eq!(read(response).await.0, "ok");
    })
    .await;
}

/// A response with both framings, the chunked one telling the truth.
const CHUNKED_AND_LENGTH: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\
    Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

#[tokio::test]
async fn chunked_wins_over_content_length() {
    within(async {
        let upstream = RawUpstream::start([reply(CHUNKED_AND_LENGTH)]).await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/both").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(read(response).await.0, "hello world");
    })
    .await;
}

#[tokio::test]
async fn chunked_and_content_length_drops_the_content_length() {
    within(async {
        let upstream = RawUpstream::start([reply(CHUNKED_AND_LENGTH)]).await;
        let proxy = upstream.proxy();
        let response = get(&proxy, "/both").await;
        // RFC 9112 6.3: an intermediary removes the received Content-Length before
        // forwarding; `3` passed downstream would cut the body (response splitting).
        assert!(
            !response.headers().contains_key("content-length"),
            "{:?}",
            response.headers()
        );
        assert_eq!(read(response).await.0, "hello world");
    })
    .await;
}

#[tokio::test]
async fn chunked_and_content_length_connection_is_not_reused() {
    within(async {
        let upstream =
            RawUpstream::start([reply(CHUNKED_AND_LENGTH), reply(OK_HELLO), reply(OK_HELLO)]).await;
        let proxy = upstream.proxy();
        assert_eq!(
            get_body(&proxy, "/both").await,
            (StatusCode::OK, "hello world".into())
        );
        // A possible smuggling attempt: the rest of this connection is not trusted.
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
    })
    .await;
}

/// A loopback server that runs `handle(stream, n)` for its `n`-th accepted connection
/// (from 0); returns its address and its accept count. Stops when the test's runtime
/// does.
async fn scripted_server<F, Fut>(handle: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(stream, n));
        }
    });
    (addr, accepted)
}

/// An upstream that answers before it has read the request body (a 413 for an
/// upload it will not take) gets its answer through, while the client's body is
/// still open; the connection is not pooled.
#[tokio::test]
async fn an_early_answer_to_an_unfinished_upload_is_passed_on() {
    within(async {
        let (addr, accepted) = scripted_server(|mut stream, n| async move {
            let mut buf = Vec::new();
            while find(&buf, b"\r\n\r\n").is_none() {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            let answer: &[u8] = if n == 0 {
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!"
            } else {
                OK_HELLO.as_bytes()
            };
            // Answer, then keep reading (and dropping) what arrives, as a
            // server draining an upload it rejected would.
            let _ = stream.write_all(answer).await;
            while read_more(&mut stream, &mut buf).await {
                buf.clear();
            }
        })
        .await;
        let proxy = Proxy::new([format!("http://{addr}")]).unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await.unwrap();
        let upload = Request::post("/upload")
            .header("host", "gateway.example")
            .body(ChannelBody(rx))
            .unwrap();
        let response = send(&proxy, upload).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(read(response).await.0, "too big!");
        // The body was never finished, so that connection cannot carry another
        // request: the next one opens a second.
        drop(tx);
        next_is_hello(&proxy).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

/// Bytes after a complete response that nobody asked for: the response stands, but
/// the connection is not trusted with the next request.
#[tokio::test]
async fn bytes_left_over_after_a_response_close_the_connection() {
    within(async {
        let upstream = RawUpstream::start([
            reply(format!(
                "{OK_HELLO}HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
            )),
            reply(OK_HELLO),
        ])
        .await;
        let proxy = upstream.proxy();
        assert_eq!(
            get_body(&proxy, "/first").await,
            (StatusCode::OK, Bytes::from("hello"))
        );
        // Not the smuggled `evil` answer: a fresh connection and the upstream's reply.
        next_is_hello(&proxy).await;
        assert_eq!(upstream.connections(), 2);
    })
    .await;
}

/// A request body shorter than the `Content-Length` it was sent with is an error on
/// the proxy's side (a 502), not a hang, and that connection is not reused.
#[tokio::test]
async fn a_request_body_shorter_than_its_length_is_a_502() {
    within(async {
        let (addr, accepted) = scripted_server(|mut stream, _| async move {
            // Reads whatever comes and answers each complete head of a GET.
            let mut buf = Vec::new();
            while read_more(&mut stream, &mut buf).await {
                if let Some(end) = find(&buf, b"\r\n\r\n")
                    && buf.starts_with(b"GET")
                {
                    buf.drain(..end + 4);
                    let _ = stream.write_all(OK_HELLO.as_bytes()).await;
                }
            }
        })
        .await;
        let proxy = Proxy::new([format!("http://{addr}")]).unwrap();
        let short = Request::post("/upload")
            .header("host", "gateway.example")
            .header("content-length", "10")
            .body(Full::new(Bytes::from_static(b"four")))
            .unwrap();
        assert_bad_gateway(&send(&proxy, short).await);
        next_is_hello(&proxy).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

/// The response-header timeout of a pooled connection: a connection that sat idle
/// past the timeout is reused without a false timeout, answers slower than nothing
/// but faster than the timeout come through, and one that never comes is a 504
/// (not before the timeout) after which the connection is not reused.
#[tokio::test]
async fn response_header_timeout_on_a_reused_connection() {
    within(async {
        let (addr, accepted) = scripted_server(|mut stream, _| async move {
            let mut buf = Vec::new();
            while let Some((head, _, _)) = read_request(&mut stream, &mut buf).await {
                let line = String::from_utf8_lossy(&head).into_owned();
                if line.starts_with("GET /hang ") {
                    // Never answers; holds the connection until the proxy drops it.
                    while read_more(&mut stream, &mut buf).await {}
                    return;
                }
                if line.starts_with("GET /slow ") {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                if stream.write_all(OK_HELLO.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
        .await;
        // Far above the slow answer (150 ms), so a loaded machine does not turn it
        // into a timeout.
        let timeout = Duration::from_secs(1);
        let proxy = Proxy::builder()
            .target(format!("http://{addr}"))
            .response_header_timeout(timeout)
            .build()
            .unwrap();
        assert_eq!(get_body(&proxy, "/fast").await.0, StatusCode::OK);
        // Idle for longer than the timeout: the connection's timer has fired.
        tokio::time::sleep(timeout + Duration::from_millis(200)).await;
        for _ in 0..3 {
            assert_eq!(
                get_body(&proxy, "/slow").await,
                (StatusCode::OK, Bytes::from("hello"))
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");

        let started = tokio::time::Instant::now();
        let response = get(&proxy, "/hang").await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(
            started.elapsed() >= timeout,
            "timed out before the deadline"
        );
        assert_eq!(
            response.extensions().get::<ProxyError>().unwrap().kind(),
            ProxyErrorKind::Timeout
        );
        // The timed-out connection was closed; the next request opens another.
        assert_eq!(get_body(&proxy, "/fast").await.0, StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}
