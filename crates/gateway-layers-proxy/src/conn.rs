//! The HTTP/1.1 client of plain `http://` targets: a small codec on `httparse` with a
//! per-target pool, where each connection is driven by the request that holds it
//! (its response future, then its response body) instead of a spawned task.
//!
//! hyper-util's pooled client runs every connection in a task of its own, so each
//! exchange hops between the server task and the connection task through channels
//! (request in, response head out, body frames out). hyper's connection API without
//! that task still passes the request and each body frame through channels and a
//! dispatcher. Here the request head is written straight into the connection's
//! buffer (one `write` for a request without a body), the response head is parsed
//! from the read buffer with its header values sliced out of it (no copy), and body
//! bytes are handed out as slices of the same buffer. The proxy process spends a
//! quarter fewer instructions per request than with hyper's connection API driven
//! the same way, though it does more (`X-Forwarded-*`, timeouts, balancing):
//! `benches/proxy/instructions.sh`.
//! HTTP/2, TLS and upgrade requests still go through hyper-util's client.
//!
//! Framing follows RFC 9112: a response to `HEAD`, a 1xx, 204 or 304 has no body;
//! otherwise `Transfer-Encoding` (chunked if it is the last coding, else read to the
//! end of the connection), then `Content-Length` (all values must agree), else the
//! body runs to the end of the connection. Interim 1xx responses are skipped. A
//! response head is at most [`MAX_HEAD`] bytes with at most [`MAX_HEADERS`] fields.
//! Request bodies are sent with `Content-Length` when the length is known, else
//! chunked; the request body keeps being written while the response is read (full
//! duplex), and a response that arrives first is taken as it is.
//!
//! A connection goes back to the pool only when the request was written whole, its
//! response body was read to the end, the response allows keep-alive and nothing
//! was left over; a body dropped early, an error or a timeout closes it. An idle
//! connection is not polled; one the upstream closed meanwhile is noticed when it is
//! taken again or by the proxy's reaper task, which also closes expired ones. A
//! request without a body whose reused connection turned out closed before any
//! byte of a response arrived is sent once more on a new connection (the upstream
//! saw no request it answered); any other failure is the retry layer's decision.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use gateway_layers_core::{
    BoxError,
    classify::{ConnectError, TimeoutError},
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version,
    header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING},
    request,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, combinators::UnsyncBoxBody};
use tokio::{
    io::AsyncWrite,
    net::TcpStream,
    time::{Instant, Sleep},
};

use crate::{
    forward::{Appended, ForwardedFor, lists_token},
    target::{TargetInfo, TargetState},
};

/// The request body type sent to upstreams (the client's body, boxed once).
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The largest response head (status line and fields) read from an upstream.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a response head (or trailer section).
pub(crate) const MAX_HEADERS: usize = 100;
/// Spare header-map entries in a parsed response (see `parse_head`).
const RESPONSE_HEADROOM: usize = 8;
/// The longest chunk-size line (with extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Read buffer growth per read.
const READ_CHUNK: usize = 8 * 1024;
/// Request body chunks up to this size are copied next to their framing (one write);
/// larger ones are written from their own buffer.
const COPY_LIMIT: usize = 8 * 1024;

/// A malformed or cut-short exchange with an upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// The connection ended before a complete response.
    #[error("upstream closed the connection before the response was complete")]
    Closed,
    /// The connection ended (or was reset) before any byte of a response arrived.
    #[error("upstream closed the connection without answering")]
    Stale,
    /// The response head is larger than [`MAX_HEAD`].
    #[error("upstream response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response could not be parsed.
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
    /// Reading or writing failed.
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    /// The request body failed or did not match its `Content-Length`.
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
}

impl From<httparse::Error> for H1Error {
    fn from(e: httparse::Error) -> Self {
        Self::Malformed(match e {
            httparse::Error::TooManyHeaders => "too many header fields",
            httparse::Error::Status => "invalid status line",
            httparse::Error::Version => "invalid HTTP version",
            _ => "invalid header field",
        })
    }
}

/// Pool limits, copied into every connection so it can check itself back in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
    pub(crate) connect_timeout: Duration,
    /// From writing the request until its response head arrives.
    pub(crate) response_headers: Duration,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No (more) body.
    Done,
    /// This many bytes left.
    Length(u64),
    /// Chunked transfer coding, at the given point.
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk with this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields or the final CRLF.
    Trailers,
}

/// A parsed final response head: the response without its body, how the body is
/// framed, and whether the connection may carry another request.
type Head = (Response<()>, Framing, bool);

/// The request body still being written.
struct Sending {
    body: UpstreamBody,
    /// `Length` (bytes left) or `Chunked`.
    framing: Framing,
    /// A large data chunk being written from its own buffer.
    data: Option<Bytes>,
}

/// One upstream connection with its buffers.
pub(crate) struct H1Conn {
    io: TcpStream,
    read: BytesMut,
    /// Bytes to write (request head, chunk framing, small body chunks).
    write: BytesMut,
    sending: Option<Sending>,
    /// Writing failed; a response may still be readable.
    send_error: Option<H1Error>,
    /// Some response bytes (an interim 1xx included) arrived for this request.
    answered: bool,
    idle_since: Instant,
    /// The response-header deadline of the request in flight.
    headers_by: Instant,
    /// One timer per connection, never later than `headers_by`. It is not moved for
    /// each request: when it fires before `headers_by` it is set to it and polled
    /// again, so back-to-back requests cost no timer-wheel work (a timer per request
    /// is registered and removed each time).
    timer: Pin<Box<Sleep>>,
    settings: PoolSettings,
}

impl fmt::Debug for H1Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H1Conn")
            .field("buffered", &self.read.len())
            .field("sending", &self.sending.is_some())
            .finish_non_exhaustive()
    }
}

impl H1Conn {
    /// Reads more into the read buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, H1Error>> {
        if self.read.capacity() - self.read.len() < 1024 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
            .map_err(H1Error::Io)
    }

    /// Writes what is pending and pulls the request body; ready once the request has
    /// been written whole (or writing failed: see `send_error`).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.poll_send_inner(cx) {
            Poll::Ready(Ok(())) => {
                self.sending = None;
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => {
                self.sending = None;
                self.write.clear();
                self.send_error = Some(e);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        loop {
            // Gather body frames while they are ready and the buffer is small, so a
            // head and a small body leave in one write.
            if let Some(sending) = self.sending.as_mut()
                && sending.data.is_none()
                && sending.framing != Framing::Done
                && self.write.len() < COPY_LIMIT
                && let Poll::Ready(frame) = Pin::new(&mut sending.body).poll_frame(cx)
            {
                next_frame(sending, &mut self.write, frame)?;
                continue;
            }
            if !self.write.is_empty() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write))
                    .map_err(H1Error::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(H1Error::Io(io::ErrorKind::WriteZero.into())));
                }
                self.write.advance(n);
                continue;
            }
            let Some(sending) = self.sending.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if let Some(data) = sending.data.as_mut() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, data)).map_err(H1Error::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(H1Error::Io(io::ErrorKind::WriteZero.into())));
                }
                data.advance(n);
                if data.is_empty() {
                    sending.data = None;
                    if matches!(sending.framing, Framing::Chunked(_)) {
                        self.write.extend_from_slice(b"\r\n");
                    }
                }
                continue;
            }
            if sending.framing == Framing::Done {
                return Poll::Ready(Ok(()));
            }
            // The body has nothing ready and everything before it is written.
            return Poll::Pending;
        }
    }

    /// Reads until a final response head has been parsed.
    fn poll_head(&mut self, cx: &mut Context<'_>, method: &Method) -> Poll<Result<Head, H1Error>> {
        loop {
            if !self.read.is_empty() {
                if let Some((response, framing, keep_alive)) = parse_head(&mut self.read, method)? {
                    return Poll::Ready(Ok((response, framing, keep_alive)));
                }
                if self.read.len() > MAX_HEAD {
                    return Poll::Ready(Err(H1Error::HeadTooLarge));
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                if self.answered || !self.read.is_empty() {
                    return Poll::Ready(Err(H1Error::Closed));
                }
                return Poll::Ready(Err(self.send_error.take().unwrap_or(H1Error::Stale)));
            }
            self.answered = true;
        }
    }

    /// Ready once `headers_by` has passed (see `timer`).
    fn poll_headers_by(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.timer.deadline() >= self.headers_by {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(self.headers_by);
        }
        Poll::Pending
    }

    /// Whether an idle connection can no longer be used: the upstream closed it (or
    /// sent something unasked). Polls once, without waiting.
    fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Ready: the end of the stream, an error, or bytes nobody asked for.
        self.poll_fill(&mut cx).is_ready()
    }

    /// Puts the connection back into `target`'s pool.
    pub(crate) fn release(self: Box<Self>, target: &TargetState) {
        target.idle.checkin(self);
    }
}

/// Handles one polled request body frame.
fn next_frame(
    sending: &mut Sending,
    write: &mut BytesMut,
    frame: Option<Result<Frame<Bytes>, BoxError>>,
) -> Result<(), H1Error> {
    match frame {
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) if data.is_empty() => Ok(()),
            Ok(data) => {
                let len = data.len() as u64;
                match &mut sending.framing {
                    Framing::Length(left) => {
                        if len > *left {
                            return Err(H1Error::RequestBody(
                                "longer than its content-length".into(),
                            ));
                        }
                        *left -= len;
                    }
                    _ => {
                        use std::fmt::Write;
                        let _ = write!(write, "{len:x}\r\n");
                    }
                }
                if data.len() <= COPY_LIMIT {
                    write.extend_from_slice(&data);
                    if matches!(sending.framing, Framing::Chunked(_)) {
                        write.extend_from_slice(b"\r\n");
                    }
                } else {
                    sending.data = Some(data);
                }
                Ok(())
            }
            Err(frame) => {
                // Trailers go out with a chunked body; a length-delimited one has no
                // place for them (said in a debug event, not silently).
                match (frame.into_trailers(), sending.framing) {
                    (Ok(trailers), Framing::Chunked(_)) => {
                        write.extend_from_slice(b"0\r\n");
                        put_fields(write, &trailers);
                        write.extend_from_slice(b"\r\n");
                        sending.framing = Framing::Done;
                    }
                    (Ok(trailers), _) => {
                        tracing::debug!(name: "proxy.request.trailers_dropped", fields = trailers.len(), "request trailers dropped: the body is sent with a Content-Length");
                    }
                    (Err(_), _) => {}
                }
                Ok(())
            }
        },
        Some(Err(e)) => Err(H1Error::RequestBody(e)),
        None => {
            match sending.framing {
                Framing::Length(0) | Framing::Done => {}
                Framing::Length(_) => {
                    return Err(H1Error::RequestBody(
                        "shorter than its content-length".into(),
                    ));
                }
                _ => write.extend_from_slice(b"0\r\n\r\n"),
            }
            sending.framing = Framing::Done;
            Ok(())
        }
    }
}

fn put_fields(write: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        put_field(write, name.as_str().as_bytes(), value.as_bytes());
    }
}

#[inline]
fn put_field(write: &mut BytesMut, name: &[u8], value: &[u8]) {
    write.extend_from_slice(name);
    write.extend_from_slice(b": ");
    write.extend_from_slice(value);
    write.extend_from_slice(b"\r\n");
}

/// Writes the request head (origin-form URI) and sets up the body.
fn start(
    conn: &mut H1Conn,
    parts: &request::Parts,
    appended: &Appended,
    body: UpstreamBody,
) -> Result<(), H1Error> {
    let write = &mut conn.write;
    write.clear();
    write.extend_from_slice(parts.method.as_str().as_bytes());
    write.extend_from_slice(b" ");
    write.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    write.extend_from_slice(b" HTTP/1.1\r\n");
    put_fields(write, &parts.headers);
    match &appended.x_forwarded_for {
        Some(ForwardedFor::Ip(ip)) => {
            write.extend_from_slice(b"x-forwarded-for: ");
            gateway_layers_core::headers::push_ip(write, *ip);
            write.extend_from_slice(b"\r\n");
        }
        Some(ForwardedFor::Value(value)) => put_field(write, b"x-forwarded-for", value.as_bytes()),
        None => {}
    }
    if let Some(proto) = appended.x_forwarded_proto {
        put_field(write, b"x-forwarded-proto", proto.as_bytes());
    }
    if let Some(value) = &appended.x_forwarded_host {
        put_field(write, b"x-forwarded-host", value.as_bytes());
    }
    let framing = match parts.headers.get(CONTENT_LENGTH) {
        Some(value) => Framing::Length(content_length(&parts.headers).ok_or_else(|| {
            H1Error::RequestBody(format!("invalid content-length {value:?}").into())
        })?),
        None if body.is_end_stream() => {
            if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                write.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Done
        }
        None => match body.size_hint().exact() {
            Some(len) => {
                write.extend_from_slice(b"content-length: ");
                write.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                write.extend_from_slice(b"\r\n");
                Framing::Length(len)
            }
            None => {
                write.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked(Chunk::Size)
            }
        },
    };
    write.extend_from_slice(b"\r\n");
    conn.send_error = None;
    conn.answered = false;
    conn.sending = Some(Sending {
        body,
        framing,
        data: None,
    });
    Ok(())
}

/// The value of every `Content-Length` field (comma lists included), if all agree.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        if !add_lengths(value.as_bytes(), &mut length) {
            return None;
        }
    }
    length
}

/// Adds the lengths in one `Content-Length` value (a comma list) to `length`; false
/// if one is not a number or differs from the others.
fn add_lengths(value: &[u8], length: &mut Option<u64>) -> bool {
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return false;
        }
        *length = Some(n);
    }
    true
}

/// Parses a final response head off the front of `read` (interim 1xx heads are
/// consumed and skipped). `None`: more bytes are needed.
fn parse_head(read: &mut BytesMut, method: &Method) -> Result<Option<Head>, H1Error> {
    loop {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            read,
            &mut fields,
        )? {
            httparse::Status::Complete(len) if len > MAX_HEAD => return Err(H1Error::HeadTooLarge),
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return Ok(None),
        };
        let code = parsed.code.unwrap_or(0);
        let version = parsed.version.unwrap_or(1);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(H1Error::Malformed("101 to a request that asked no upgrade"));
            }
            read.advance(len);
            continue;
        }
        let status =
            StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("invalid status code"))?;
        // Header values are kept as slices of the head (no copy): note their
        // positions, then split the head off the buffer.
        let base = read.as_ptr() as usize;
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = parsed.headers.len();
        for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            // Bounded by MAX_HEAD (checked before more is read) plus one read.
            *span = (
                name as u32,
                (name + field.name.len()) as u32,
                value as u32,
                (value + field.value.len()) as u32,
            );
        }
        let head = read.split_to(len).freeze();
        // Room for the fields layers add on the way back (rate-limit headers, a
        // request id, `Via`, transforms) without growing and rehashing the map.
        let mut headers = HeaderMap::with_capacity(count + RESPONSE_HEADROOM);
        // The framing fields, noted while the map is built (no lookups after).
        let (mut length, mut bad_length, mut has_length) = (None, false, false);
        let (mut coded, mut chunked_last) = (false, false);
        let (mut close, mut keep) = (false, false);
        for &(name_start, name_end, value_start, value_end) in &spans[..count] {
            let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
                .map_err(|_| H1Error::Malformed("invalid header name"))?;
            let bytes = &head[value_start as usize..value_end as usize];
            if name == CONTENT_LENGTH {
                has_length = true;
                bad_length |= !add_lengths(bytes, &mut length);
            } else if name == TRANSFER_ENCODING {
                coded = true;
                // The last coding of the last field is the one that frames.
                chunked_last = bytes
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name == CONNECTION {
                close |= lists_token(bytes, b"close");
                keep |= lists_token(bytes, b"keep-alive");
            }
            let value = HeaderValue::from_maybe_shared(
                head.slice(value_start as usize..value_end as usize),
            )
            .map_err(|_| H1Error::Malformed("invalid header value"))?;
            headers.append(name, value);
        }
        let mut keep_alive = if version == 1 { !close } else { keep };
        let framing = if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Done
        } else if coded {
            // Both framings: the transfer coding wins, the connection is not
            // trusted with another request, and the length is not passed on (RFC
            // 9112 section 6.3).
            if has_length {
                headers.remove(CONTENT_LENGTH);
                keep_alive = false;
            }
            if chunked_last {
                Framing::Chunked(Chunk::Size)
            } else {
                keep_alive = false;
                Framing::Eof
            }
        } else if has_length {
            match length {
                _ if bad_length => return Err(H1Error::Malformed("invalid content-length")),
                Some(0) => Framing::Done,
                Some(n) => Framing::Length(n),
                None => return Err(H1Error::Malformed("invalid content-length")),
            }
        } else {
            keep_alive = false;
            Framing::Eof
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = if version == 1 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        *response.headers_mut() = headers;
        return Ok(Some((response, framing, keep_alive)));
    }
}

/// [`parse_head`] for the fuzz targets (`crate::fuzzing`).
pub(crate) fn fuzz_parse_head(
    bytes: &[u8],
    head_request: bool,
) -> Result<Option<crate::fuzzing::ParsedHead>, String> {
    let mut read = BytesMut::from(bytes);
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    match parse_head(&mut read, &method) {
        Ok(Some((response, framing, keep_alive))) => {
            let framing = match framing {
                Framing::Done => "done".to_owned(),
                Framing::Length(n) => format!("length {n}"),
                Framing::Chunked(_) => "chunked".to_owned(),
                Framing::Eof => "eof".to_owned(),
            };
            Ok(Some(crate::fuzzing::ParsedHead {
                response,
                framing,
                keep_alive,
                used: bytes.len() - read.len(),
            }))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The response body of an in-place HTTP/1.1 exchange, read off its connection.
pub(crate) struct H1Body {
    conn: Option<Box<H1Conn>>,
    framing: Framing,
    keep_alive: bool,
}

impl fmt::Debug for H1Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H1Body")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl H1Body {
    /// The connection, once the body has ended and it can carry another request
    /// (the request was written whole, keep-alive, nothing left over); else `None`
    /// and the connection is closed.
    pub(crate) fn take_reusable(&mut self) -> Option<Box<H1Conn>> {
        let conn = self.conn.take()?;
        (self.framing == Framing::Done
            && self.keep_alive
            && conn.sending.is_none()
            && conn.send_error.is_none()
            && conn.read.is_empty())
        .then_some(conn)
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // Full duplex: keep writing the request body while the response streams.
        if conn.sending.is_some() {
            let _ = conn.poll_send(cx);
        }
        loop {
            match self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) => {
                    if conn.read.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::Closed)));
                    }
                    let take = (conn.read.len() as u64).min(left) as usize;
                    let data = conn.read.split_to(take).freeze();
                    self.framing = match left - take as u64 {
                        0 => Framing::Done,
                        left => Framing::Length(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Eof => {
                    if conn.read.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&conn.read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        conn.read.advance(used);
                        self.framing = Framing::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) => {
                        if conn.read.len() > MAX_CHUNK_LINE {
                            return Poll::Ready(Some(Err(H1Error::Malformed(
                                "chunk size line too long",
                            ))));
                        }
                        if ready!(conn.poll_fill(cx))? == 0 {
                            return Poll::Ready(Some(Err(H1Error::Closed)));
                        }
                    }
                    Err(_) => {
                        return Poll::Ready(Some(Err(H1Error::Malformed("invalid chunk size"))));
                    }
                },
                Framing::Chunked(Chunk::Data(left)) => {
                    if conn.read.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::Closed)));
                    }
                    let take = (conn.read.len() as u64).min(left) as usize;
                    let data = conn.read.split_to(take).freeze();
                    self.framing = Framing::Chunked(match left - take as u64 {
                        0 => Chunk::DataEnd,
                        left => Chunk::Data(left),
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if conn.read.len() < 2 {
                        if ready!(conn.poll_fill(cx))? == 0 {
                            return Poll::Ready(Some(Err(H1Error::Closed)));
                        }
                        continue;
                    }
                    if &conn.read[..2] != b"\r\n" {
                        return Poll::Ready(Some(Err(H1Error::Malformed(
                            "chunk not ended by CRLF",
                        ))));
                    }
                    conn.read.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers) => {
                    if conn.read.starts_with(b"\r\n") {
                        conn.read.advance(2);
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    if conn.read.len() >= 2 {
                        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        match httparse::parse_headers(&conn.read, &mut fields)? {
                            httparse::Status::Complete((used, fields)) => {
                                let mut trailers = HeaderMap::with_capacity(fields.len());
                                for field in fields.iter() {
                                    let name = HeaderName::from_bytes(field.name.as_bytes())
                                        .map_err(|_| H1Error::Malformed("invalid trailer name"))?;
                                    let value = HeaderValue::from_bytes(field.value)
                                        .map_err(|_| H1Error::Malformed("invalid trailer value"))?;
                                    trailers.append(name, value);
                                }
                                conn.read.advance(used);
                                self.framing = Framing::Done;
                                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                            }
                            httparse::Status::Partial if conn.read.len() > MAX_HEAD => {
                                return Poll::Ready(Some(Err(H1Error::HeadTooLarge)));
                            }
                            httparse::Status::Partial => {}
                        }
                    }
                    if ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::Closed)));
                    }
                }
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(self.poll_data(cx)) {
            Some(Err(e)) => {
                // The connection is unusable after a framing or I/O error.
                self.conn = None;
                self.framing = Framing::Done;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => Poll::Ready(other.map(|r| r.map_err(Into::into))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Idle connections of one target, newest last.
#[derive(Default)]
pub(crate) struct IdleConns {
    // Boxed: a connection travels through futures and bodies; it is allocated once,
    // when opened.
    conns: Mutex<VecDeque<Box<H1Conn>>>,
}

impl fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleConns")
            .field("idle", &self.len())
            .finish()
    }
}

impl IdleConns {
    /// Idle connections now.
    pub(crate) fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most recently used connection that has not been idle too long (older
    /// ones are closed).
    fn checkout(&self, idle_timeout: Duration) -> Option<Box<H1Conn>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = conns.pop_back()?;
        let now = Instant::now();
        if now.saturating_duration_since(newest.idle_since) < idle_timeout {
            // Those before it are older; close the expired ones outside the lock.
            let expired = conns
                .iter()
                .take_while(|c| now.saturating_duration_since(c.idle_since) >= idle_timeout)
                .count();
            let expired: Vec<Box<H1Conn>> = conns.drain(..expired).collect();
            drop(conns);
            drop(expired);
            Some(newest)
        } else {
            // The newest expired: all did.
            let all: Vec<Box<H1Conn>> = conns.drain(..).collect();
            drop(conns);
            drop((newest, all));
            None
        }
    }

    /// Closes the idle connections that expired or that the upstream closed (polling
    /// each once notices an end of stream); returns how many are left.
    pub(crate) fn reap(&self, idle_timeout: Duration) -> usize {
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let before = conns.len();
        let mut closed = Vec::new();
        let mut kept = VecDeque::with_capacity(before);
        for mut conn in conns.drain(..) {
            if now.saturating_duration_since(conn.idle_since) >= idle_timeout
                || conn.closed_while_idle()
            {
                closed.push(conn);
            } else {
                kept.push_back(conn);
            }
        }
        *conns = kept;
        let left = conns.len();
        drop(conns);
        drop(closed);
        left
    }

    fn checkin(&self, mut conn: Box<H1Conn>) {
        conn.idle_since = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.len() < conn.settings.max_idle {
            conns.push_back(conn);
        }
    }
}

/// Opens a connection to `target`, giving up at the connect timeout or at
/// `deadline` (the exchange's total timeout), whichever comes first.
async fn connect(
    target: &TargetInfo,
    settings: PoolSettings,
    deadline: Option<Instant>,
) -> Result<Box<H1Conn>, BoxError> {
    let connect_by = Instant::now() + settings.connect_timeout;
    let connect_by = deadline.map_or(connect_by, |d| d.min(connect_by));
    let stream = match tokio::time::timeout_at(
        connect_by,
        TcpStream::connect(&*target.connect_addr),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Box::new(ConnectError(Box::new(e)))),
        Err(_) => return Err(Box::new(TimeoutError)),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| ConnectError(Box::new(e)))?;
    Ok(Box::new(H1Conn {
        io: stream,
        read: BytesMut::with_capacity(READ_CHUNK),
        write: BytesMut::with_capacity(1024),
        sending: None,
        send_error: None,
        answered: false,
        idle_since: Instant::now(),
        headers_by: connect_by,
        // Not later than any request's deadline on this connection (each is set
        // after this one), so not moved for the first request.
        timer: Box::pin(tokio::time::sleep(settings.response_headers)),
        settings,
    }))
}

/// Sends a request (origin-form URI, `Host` set) to a target on a pooled or new
/// connection and reads until the response head arrives. A future of its own (not
/// an `async fn`), so it lives inside the proxy's response future without a box.
pub(crate) struct Exchange {
    target: Arc<TargetState>,
    parts: request::Parts,
    /// Taken when the request is written.
    body: Option<UpstreamBody>,
    /// Only a request without a body is sent again after a stale connection.
    bodiless: bool,
    appended: Appended,
    settings: PoolSettings,
    /// The total timeout's deadline, if one is set.
    deadline: Option<Instant>,
    step: Step,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Box<H1Conn>, BoxError>> + Send>>;

enum Step {
    /// Take an idle connection or open one.
    Checkout,
    /// Opening a connection (boxed: only new connections pay for it).
    Connecting(Connecting),
    /// The request is being written and the response head read.
    Exchanging {
        conn: Box<H1Conn>,
        reused: bool,
    },
    Done,
}

impl Exchange {
    pub(crate) fn new(
        target: Arc<TargetState>,
        request: Request<UpstreamBody>,
        appended: Appended,
        settings: PoolSettings,
        deadline: Option<Instant>,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Self {
            target,
            parts,
            bodiless: body.is_end_stream(),
            body: Some(body),
            appended,
            settings,
            deadline,
            step: Step::Checkout,
        }
    }

    fn begin(&mut self, mut conn: Box<H1Conn>, reused: bool) -> Result<(), BoxError> {
        let body = self.body.take().unwrap_or_else(|| {
            UnsyncBoxBody::new(http_body_util::Empty::new().map_err(Into::into))
        });
        start(&mut conn, &self.parts, &self.appended, body)
            .map_err(|e| ConnectError(Box::new(e)))?;
        // The response-header timeout runs from here (the request is being sent),
        // bounded by the total timeout.
        let headers_by = Instant::now() + self.settings.response_headers;
        conn.headers_by = self.deadline.map_or(headers_by, |d| d.min(headers_by));
        if conn.timer.deadline() > conn.headers_by {
            conn.timer.as_mut().reset(conn.headers_by);
        }
        self.step = Step::Exchanging { conn, reused };
        Ok(())
    }
}

impl Future for Exchange {
    type Output = Result<Response<H1Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Checkout => match this.target.idle.checkout(this.settings.idle_timeout) {
                    Some(mut conn) => {
                        if !conn.closed_while_idle() {
                            this.begin(conn, true)?;
                        }
                    }
                    None => {
                        let (target, settings) = (this.target.clone(), this.settings);
                        let deadline = this.deadline;
                        this.step = Step::Connecting(Box::pin(async move {
                            connect(&target.info, settings, deadline).await
                        }));
                    }
                },
                Step::Connecting(connecting) => {
                    let conn = ready!(connecting.as_mut().poll(cx))?;
                    this.begin(conn, false)?;
                }
                Step::Exchanging { conn, reused } => {
                    if conn.sending.is_some() {
                        let _ = conn.poll_send(cx);
                    }
                    // The client's body failed (or did not match its length): the
                    // request cannot be completed, so no answer is waited for. A
                    // failed write is different: the upstream may have answered early
                    // and closed, so its answer is still read.
                    let head = if matches!(conn.send_error, Some(H1Error::RequestBody(_))) {
                        Err(conn.send_error.take().expect("matched"))
                    } else {
                        match conn.poll_head(cx, &this.parts.method) {
                            Poll::Ready(head) => head,
                            Poll::Pending => {
                                if conn.poll_headers_by(cx).is_ready() {
                                    // The connection is dropped (closed) with the step.
                                    this.step = Step::Done;
                                    return Poll::Ready(Err(Box::new(TimeoutError)));
                                }
                                return Poll::Pending;
                            }
                        }
                    };
                    match head {
                        Ok((response, framing, keep_alive)) => {
                            let Step::Exchanging { conn, .. } =
                                std::mem::replace(&mut this.step, Step::Done)
                            else {
                                unreachable!("matched above")
                            };
                            let (head, ()) = response.into_parts();
                            let body = H1Body {
                                conn: Some(conn),
                                framing,
                                keep_alive,
                            };
                            return Poll::Ready(Ok(Response::from_parts(head, body)));
                        }
                        // A stale keep-alive connection: the upstream closed it
                        // before reading the request. Nothing was answered, and
                        // nothing of a body was used.
                        Err(H1Error::Stale | H1Error::Io(_))
                            if *reused && this.bodiless && !conn.answered =>
                        {
                            tracing::debug!(name: "proxy.conn.stale", upstream = this.target.label(), "pooled connection was closed; sending again on a new one");
                            this.step = Step::Checkout;
                        }
                        Err(e) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(Box::new(ConnectError(Box::new(e)))));
                        }
                    }
                }
                Step::Done => panic!("Exchange polled after completion"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    #[tokio::test]
    async fn reap_closes_connections_the_upstream_closed_and_keeps_live_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = TargetInfo::parse(&Target::new(format!("http://{addr}"))).unwrap();
        let settings = PoolSettings {
            // Far away: nothing here expires, so only a closed connection goes.
            idle_timeout: Duration::from_secs(3600),
            max_idle: 8,
            connect_timeout: Duration::from_secs(5),
            response_headers: Duration::from_secs(60),
        };
        let pool = IdleConns::default();
        let (first, second) = (
            connect(&target, settings, None).await.unwrap(),
            connect(&target, settings, None).await.unwrap(),
        );
        let (server_first, _) = listener.accept().await.unwrap();
        let (server_second, _) = listener.accept().await.unwrap();
        pool.checkin(first);
        pool.checkin(second);
        assert_eq!(pool.reap(settings.idle_timeout), 2, "both alive");
        drop(server_first);
        // The end of stream reaches the client side asynchronously: look a bounded
        // number of times.
        let mut left = 2;
        for _ in 0..200 {
            left = pool.reap(settings.idle_timeout);
            if left == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 1, "the closed one is gone, the live one stays");
        drop(server_second);
    }

    #[tokio::test]
    async fn checkout_skips_expired_connections_and_checkin_is_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = TargetInfo::parse(&Target::new(format!("http://{addr}"))).unwrap();
        let settings = PoolSettings {
            idle_timeout: Duration::from_secs(3600),
            max_idle: 2,
            connect_timeout: Duration::from_secs(5),
            response_headers: Duration::from_secs(60),
        };
        let pool = IdleConns::default();
        let mut server_sides = Vec::new();
        for _ in 0..3 {
            let conn = connect(&target, settings, None).await.unwrap();
            server_sides.push(listener.accept().await.unwrap());
            pool.checkin(conn);
        }
        assert_eq!(pool.len(), 2, "max_idle bounds the pool");
        assert!(pool.checkout(settings.idle_timeout).is_some());
        assert_eq!(pool.len(), 1);
        // With a zero idle timeout everything idle has expired.
        assert!(pool.checkout(Duration::ZERO).is_none());
        assert_eq!(pool.len(), 0, "expired connections are closed, not kept");
    }

    fn head(bytes: &[u8], method: &Method) -> Result<Option<Head>, H1Error> {
        parse_head(&mut BytesMut::from(bytes), method)
    }

    #[test]
    fn framing_of_response_heads() {
        let get = Method::GET;
        let (r, f, ka) = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", &get)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.status(), f, ka),
            (StatusCode::OK, Framing::Length(5), true)
        );
        let (_, f, ka) = head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!((f, ka), (Framing::Chunked(Chunk::Size), true));
        let (r, f, ka) = head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (f, ka),
            (Framing::Chunked(Chunk::Size), false),
            "both: chunked, then close"
        );
        assert!(r.headers().get("content-length").is_none(), "not passed on");
        let (_, f, ka) = head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", &get)
            .unwrap()
            .unwrap();
        assert_eq!((f, ka), (Framing::Eof, false));
        let (_, f, ka) = head(b"HTTP/1.1 200 OK\r\n\r\n", &get).unwrap().unwrap();
        assert_eq!((f, ka), (Framing::Eof, false));
        let (_, f, ka) = head(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", &get)
            .unwrap()
            .unwrap();
        assert_eq!((f, ka), (Framing::Length(2), false));
        let (_, f, ka) = head(
            b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 2\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!((f, ka), (Framing::Length(2), true));
        let (_, f, ka) = head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!((f, ka), (Framing::Length(2), false));
        let (_, f, _) = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f, Framing::Done);
        let (r, f, ka) = head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n", &get).unwrap().unwrap();
        assert_eq!(
            (r.status(), f, ka),
            (StatusCode::NOT_MODIFIED, Framing::Done, true)
        );
        assert!(
            r.headers().get("link").is_none(),
            "interim fields are not merged"
        );
        let (_, f, _) = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\ncontent-length: 4\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f, Framing::Length(4));
    }

    #[test]
    fn malformed_heads_are_errors() {
        let get = Method::GET;
        assert!(
            head(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n",
                &get
            )
            .is_err()
        );
        assert!(head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", &get).is_err());
        assert!(
            head(
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
                &get
            )
            .is_err()
        );
        assert!(head(b"garbage\r\n\r\n", &get).is_err());
        assert!(
            head(b"HTTP/1.1 999 Nope\r\n\r\n", &get).is_ok(),
            "three digits are a status"
        );
        assert!(head(b"HTTP/1.1 20 OK\r\n\r\n", &get).is_err());
        assert!(head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &get).is_err());
        assert!(
            head(b"HTTP/1.1 200 OK\r\ncontent-", &get)
                .unwrap()
                .is_none(),
            "partial"
        );
    }

    #[test]
    fn header_values_are_slices_of_the_head_in_order() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nX-Thing: caf\xc3\xa9\r\nset-cookie: b=2\r\ncontent-length: 0\r\n\r\nrest"[..],
        );
        let (r, f, _) = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(f, Framing::Done);
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.headers()["x-thing"].as_bytes(), "café".as_bytes());
        assert_eq!(&buf[..], b"rest", "only the head is consumed");
    }
}
