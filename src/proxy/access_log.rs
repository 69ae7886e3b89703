//! Access logs as a spec's `logging.accessLog.file` says: a path (`/dev/stdout` works) and an
//! Envoy format string (`text`) or a JSON object of them (`json`). Lines are formatted on the
//! request's task and written by one writer thread, so a slow disk never blocks a request; if
//! the writer falls behind by `QUEUE` lines, further lines are dropped (a debug event each).
//! `CountedBody` and `LoggedBody` wrap bodies so a line carries the bytes sent and is written
//! when the response ends, fails or is dropped.

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::error::Body;
use crate::model::log_format::{self, FormatError, Operator, Piece};
use crate::model::spec::{FileAccessLog, LoggingFormat};

/// Lines that may wait for the writer.
const QUEUE: usize = 8192;
/// Envoy's default access log format, which App Mesh used when a spec gives none.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// What one finished request or TCP connection contributes to its log line.
pub struct Entry<'a> {
    pub start: SystemTime,
    /// From the first byte received to the last byte sent.
    pub duration_ms: u128,
    /// Body bytes from the client (HTTP), or every byte (TCP).
    pub bytes_received: u64,
    /// Body bytes to the client (HTTP), or every byte (TCP).
    pub bytes_sent: u64,
    /// The HTTP side; `None` for a TCP connection, whose HTTP operators print `-`.
    pub http: Option<HttpEntry<'a>>,
    pub upstream: Option<&'a str>,
    pub flags: &'a str,
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
}

pub struct HttpEntry<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub request: &'a HeaderMap,
    pub response: &'a HeaderMap,
}

/// Parses a format with the API's own parser; an operator it refused never gets here from
/// the store, and a hand-written config file with one is refused when it is loaded.
fn parse(format: &str) -> Result<Vec<Piece>, FormatError> {
    log_format::parse(format)
}

fn header<'h>(map: &'h HeaderMap, name: &str) -> Option<&'h str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

fn request_value<'e>(h: &HttpEntry<'e>, name: &str) -> Option<&'e str> {
    match name {
        ":method" => Some(h.method),
        ":path" => Some(h.path),
        ":scheme" => Some(h.scheme),
        ":authority" => header(h.request, "host"),
        n => header(h.request, n),
    }
}

fn render(pieces: &[Piece], e: &Entry, out: &mut String) {
    use std::fmt::Write as _;
    for p in pieces {
        let (op, limit) = match p {
            Piece::Literal(s) => {
                out.push_str(s);
                continue;
            }
            Piece::Operator(op, limit) => (op, *limit),
        };
        let from = out.len();
        let http = e.http.as_ref();
        match op {
            Operator::StartTime => {
                let t = time::OffsetDateTime::from(e.start);
                let _ = write!(
                    out,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                );
            }
            Operator::Protocol => out.push_str(http.map_or("-", |h| h.protocol)),
            Operator::ResponseCode => {
                let _ = write!(out, "{}", http.map_or(0, |h| h.status));
            }
            Operator::ResponseFlags => out.push_str(e.flags),
            Operator::BytesReceived => {
                let _ = write!(out, "{}", e.bytes_received);
            }
            Operator::BytesSent => {
                let _ = write!(out, "{}", e.bytes_sent);
            }
            Operator::Duration => {
                let _ = write!(out, "{}", e.duration_ms);
            }
            Operator::UpstreamHost => out.push_str(e.upstream.unwrap_or("-")),
            Operator::DownstreamRemoteAddress => address(out, e.downstream_remote, true),
            Operator::DownstreamRemoteAddressWithoutPort => {
                address(out, e.downstream_remote, false)
            }
            Operator::DownstreamLocalAddress => address(out, e.downstream_local, true),
            Operator::DownstreamLocalAddressWithoutPort => address(out, e.downstream_local, false),
            Operator::Request(names) => out.push_str(
                http.and_then(|h| names.iter().find_map(|n| request_value(h, n)))
                    .unwrap_or("-"),
            ),
            Operator::Response(names) => out.push_str(
                http.and_then(|h| names.iter().find_map(|n| header(h.response, n)))
                    .unwrap_or("-"),
            ),
        }
        if let Some(n) = limit {
            if let Some((cut, _)) = out[from..].char_indices().nth(n) {
                out.truncate(from + cut);
            }
        }
    }
}

fn address(out: &mut String, addr: Option<SocketAddr>, with_port: bool) {
    use std::fmt::Write as _;
    let _ = match (addr, with_port) {
        (None, _) => write!(out, "-"),
        (Some(a), true) => write!(out, "{a}"),
        (Some(a), false) => write!(out, "{}", a.ip()),
    };
}

enum Format {
    Text(Vec<Piece>),
    Json(Vec<(String, Vec<Piece>)>),
}

pub struct AccessLogger {
    pub spec: FileAccessLog,
    format: Format,
    tx: mpsc::Sender<String>,
}

impl AccessLogger {
    /// Opens the log file (appending) and starts its writer.
    pub fn open(spec: &FileAccessLog) -> std::io::Result<AccessLogger> {
        let bad = |e: FormatError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let format = match &spec.format {
            Some(LoggingFormat::Json(fields)) => Format::Json(
                fields
                    .iter()
                    .map(|f| Ok((f.key.clone(), parse(&f.value).map_err(bad)?)))
                    .collect::<std::io::Result<_>>()?,
            ),
            Some(LoggingFormat::Text(t)) => Format::Text(parse(t).map_err(bad)?),
            None => Format::Text(parse(DEFAULT_FORMAT).map_err(bad)?),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let path = spec.path.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::new(file);
                while let Some(line) = rx.blocking_recv() {
                    let mut ok = w.write_all(line.as_bytes()).is_ok();
                    while let Ok(more) = rx.try_recv() {
                        ok &= w.write_all(more.as_bytes()).is_ok();
                    }
                    if !ok || w.flush().is_err() {
                        tracing::warn!(path = %path, "cannot write the access log");
                    }
                }
            })?;
        Ok(AccessLogger {
            spec: spec.clone(),
            format,
            tx,
        })
    }

    pub fn log(&self, e: &Entry) {
        let mut line = String::with_capacity(256);
        match &self.format {
            Format::Text(pieces) => {
                render(pieces, e, &mut line);
                if !line.ends_with('\n') {
                    line.push('\n');
                }
            }
            Format::Json(fields) => {
                let mut obj = serde_json::Map::new();
                for (k, pieces) in fields {
                    let mut v = String::new();
                    render(pieces, e, &mut v);
                    obj.insert(k.clone(), serde_json::Value::String(v));
                }
                line = serde_json::Value::Object(obj).to_string();
                line.push('\n');
            }
        }
        if self.tx.try_send(line).is_err() {
            tracing::debug!("access log queue full; line dropped");
        }
    }
}

/// A request whose log line waits for the end of its response body, so `%DURATION%` ends
/// with the last byte and `%BYTES_SENT%` counts what was really sent.
pub struct Pending {
    pub logger: Arc<AccessLogger>,
    pub start: SystemTime,
    pub began: tokio::time::Instant,
    pub method: http::Method,
    pub path: String,
    pub scheme: &'static str,
    pub protocol: &'static str,
    pub request: HeaderMap,
    pub received: Arc<AtomicU64>,
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
}

/// The response side, known once the response headers are.
pub struct Answer {
    pub status: u16,
    pub response: HeaderMap,
    pub upstream: Option<String>,
    pub flags: &'static str,
}

impl Pending {
    fn write(&self, answer: &Answer, sent: u64) {
        self.logger.log(&Entry {
            start: self.start,
            duration_ms: self.began.elapsed().as_millis(),
            bytes_received: self.received.load(Ordering::Relaxed),
            bytes_sent: sent,
            http: Some(HttpEntry {
                method: self.method.as_str(),
                path: &self.path,
                scheme: self.scheme,
                protocol: self.protocol,
                status: answer.status,
                request: &self.request,
                response: &answer.response,
            }),
            upstream: answer.upstream.as_deref(),
            flags: answer.flags,
            downstream_remote: self.downstream_remote,
            downstream_local: self.downstream_local,
        });
    }
}

/// A request body that counts its data bytes into `count` as they are read.
pub struct CountedBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> CountedBody<B> {
        CountedBody { inner, count }
    }
}

impl<B> hyper::body::Body for CountedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                let n = u64::try_from(d.len()).unwrap_or(u64::MAX);
                self.count.fetch_add(n, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that writes its request's log line when it ends, fails or is dropped
/// (the client went away): whichever comes first, once.
pub struct LoggedBody {
    inner: Body,
    sent: u64,
    line: Option<(Pending, Answer)>,
}

impl LoggedBody {
    pub fn new(inner: Body, pending: Pending, answer: Answer) -> LoggedBody {
        LoggedBody {
            inner,
            sent: 0,
            line: Some((pending, answer)),
        }
    }

    fn finish(&mut self) {
        if let Some((pending, answer)) = self.line.take() {
            pending.write(&answer, self.sent);
        }
    }
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = super::error::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::error::BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.sent += u64::try_from(d.len()).unwrap_or(u64::MAX);
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(_) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(req: &'a HeaderMap, resp: &'a HeaderMap) -> Entry<'a> {
        Entry {
            start: SystemTime::UNIX_EPOCH,
            duration_ms: 3,
            bytes_received: 0,
            bytes_sent: 0,
            http: Some(HttpEntry {
                method: "GET",
                path: "/color1/tell",
                scheme: "http",
                protocol: "HTTP/1.1",
                status: 200,
                request: req,
                response: resp,
            }),
            upstream: Some("10.0.0.5:9080"),
            flags: "-",
            downstream_remote: Some("10.1.2.3:5555".parse().unwrap()),
            downstream_local: None,
        }
    }

    #[test]
    fn envoy_operators_render_from_the_request_and_response() {
        let mut req = HeaderMap::new();
        req.insert("x-request-id", "r-1".parse().unwrap());
        req.insert("host", "gw.example".parse().unwrap());
        let resp = HeaderMap::new();
        let mut out = String::new();
        render(
            &parse(DEFAULT_FORMAT).unwrap(),
            &entry(&req, &resp),
            &mut out,
        );
        assert_eq!(out, "[1970-01-01T00:00:00.000Z] \"GET /color1/tell HTTP/1.1\" 200 - 0 0 3 - \"-\" \"-\" \"r-1\" \"gw.example\" \"10.0.0.5:9080\"\n");
    }

    #[test]
    fn truncation_and_addresses_render_and_literals_survive() {
        let mut req = HeaderMap::new();
        req.insert("user-agent", "curl/8.5.0".parse().unwrap());
        let resp = HeaderMap::new();
        let mut out = String::new();
        let format = "a %REQ(USER-AGENT):4% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS% %RESPONSE_CODE%%% tail";
        render(&parse(format).unwrap(), &entry(&req, &resp), &mut out);
        assert_eq!(out, "a curl 10.1.2.3 - 200% tail");
    }

    #[test]
    fn a_tcp_entry_prints_dashes_for_http_operators() {
        let mut out = String::new();
        let h = HeaderMap::new();
        let e = Entry {
            http: None,
            bytes_received: 5,
            bytes_sent: 7,
            ..entry(&h, &h)
        };
        let format = "%PROTOCOL% %RESPONSE_CODE% %REQ(:PATH)% %BYTES_RECEIVED% %BYTES_SENT%";
        render(&parse(format).unwrap(), &e, &mut out);
        assert_eq!(out, "- 0 - 5 7");
    }

    #[test]
    fn an_unsupported_operator_is_refused_when_the_log_is_opened() {
        let spec = FileAccessLog {
            path: "/dev/null".into(),
            format: Some(LoggingFormat::Text("%UPSTREAM_WIRE_BYTES_SENT%".into())),
        };
        let err = AccessLogger::open(&spec).err().expect("refused");
        assert!(
            err.to_string().contains("UPSTREAM_WIRE_BYTES_SENT"),
            "{err}"
        );
    }
}
