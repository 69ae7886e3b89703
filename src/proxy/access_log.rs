//! Access logs as a spec's `logging.accessLog.file` says: a path (`/dev/stdout` works) and an
//! Envoy format string (`text`) or a JSON object of them (`json`). Lines are formatted on the
//! request's task and written by one writer task, so a slow disk never blocks a request; if
//! the writer falls behind by `QUEUE` lines, further lines are dropped and counted.

use std::io::Write;
use std::time::SystemTime;

use http::HeaderMap;
use tokio::sync::mpsc;

use crate::model::spec::{FileAccessLog, LoggingFormat};

/// Lines that may wait for the writer.
const QUEUE: usize = 8192;
/// Envoy's default access log format, which App Mesh used when a spec gives none.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// What one finished request contributes to its log line.
pub struct Entry<'a> {
    pub start: SystemTime,
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub duration_ms: u128,
    pub upstream: Option<&'a str>,
    pub flags: &'a str,
    pub request: &'a HeaderMap,
    pub response: &'a HeaderMap,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    StartTime,
    Method,
    Path,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    Authority,
    /// `%REQ(A?B)%`: header A, else header B.
    Request(Vec<String>),
    Response(Vec<String>),
    /// An operator this proxy does not produce: logged as `-`, as Envoy does for absent values.
    Unknown,
}

/// Parses an Envoy format string into pieces.
fn parse(format: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        if start > 0 {
            out.push(Piece::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push(Piece::Literal(rest[start..].to_owned()));
            rest = "";
            break;
        };
        out.push(operator(&after[..end]));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest.to_owned()));
    }
    out
}

fn operator(op: &str) -> Piece {
    let headers = |inner: &str| {
        inner
            .split('?')
            .map(|h| h.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    // `%REQ(X):10%` truncates; the length is accepted and ignored.
    let op = op
        .split_once("):")
        .map(|(a, _)| format!("{a})"))
        .unwrap_or_else(|| op.to_owned());
    match op.as_str() {
        "START_TIME" => Piece::StartTime,
        "PROTOCOL" => Piece::Protocol,
        "RESPONSE_CODE" => Piece::ResponseCode,
        "RESPONSE_FLAGS" => Piece::ResponseFlags,
        "BYTES_RECEIVED" => Piece::BytesReceived,
        "BYTES_SENT" => Piece::BytesSent,
        "DURATION" => Piece::Duration,
        "UPSTREAM_HOST" => Piece::UpstreamHost,
        _ => match op.strip_prefix("REQ(").and_then(|s| s.strip_suffix(')')) {
            Some(inner) => match inner.to_ascii_uppercase().as_str() {
                ":METHOD" => Piece::Method,
                ":PATH" | "X-ENVOY-ORIGINAL-PATH?:PATH" => Piece::Path,
                ":AUTHORITY" => Piece::Authority,
                _ => Piece::Request(headers(inner)),
            },
            None => match op.strip_prefix("RESP(").and_then(|s| s.strip_suffix(')')) {
                Some(inner) => Piece::Response(headers(inner)),
                None => Piece::Unknown,
            },
        },
    }
}

fn header<'h>(map: &'h HeaderMap, names: &[String]) -> Option<&'h str> {
    names
        .iter()
        .find_map(|n| map.get(n.as_str()).and_then(|v| v.to_str().ok()))
}

fn render(pieces: &[Piece], e: &Entry, out: &mut String) {
    use std::fmt::Write as _;
    for p in pieces {
        match p {
            Piece::Literal(s) => out.push_str(s),
            Piece::StartTime => {
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
            Piece::Method => out.push_str(e.method),
            Piece::Path => out.push_str(e.path),
            Piece::Protocol => out.push_str(e.protocol),
            Piece::ResponseCode => {
                let _ = write!(out, "{}", e.status);
            }
            Piece::ResponseFlags => out.push_str(e.flags),
            Piece::BytesReceived => {
                out.push_str(header(e.request, &["content-length".into()]).unwrap_or("0"))
            }
            Piece::BytesSent => {
                out.push_str(header(e.response, &["content-length".into()]).unwrap_or("0"))
            }
            Piece::Duration => {
                let _ = write!(out, "{}", e.duration_ms);
            }
            Piece::UpstreamHost => out.push_str(e.upstream.unwrap_or("-")),
            Piece::Authority => out.push_str(header(e.request, &["host".into()]).unwrap_or("-")),
            Piece::Request(names) => out.push_str(header(e.request, names).unwrap_or("-")),
            Piece::Response(names) => out.push_str(header(e.response, names).unwrap_or("-")),
            Piece::Unknown => out.push('-'),
        }
    }
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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)?;
        let format = match &spec.format {
            Some(LoggingFormat::Json(fields)) => Format::Json(
                fields
                    .iter()
                    .map(|f| (f.key.clone(), parse(&f.value)))
                    .collect(),
            ),
            Some(LoggingFormat::Text(t)) => Format::Text(parse(t)),
            None => Format::Text(parse(DEFAULT_FORMAT)),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(req: &'a HeaderMap, resp: &'a HeaderMap) -> Entry<'a> {
        Entry {
            start: SystemTime::UNIX_EPOCH,
            method: "GET",
            path: "/color1/tell",
            protocol: "HTTP/1.1",
            status: 200,
            duration_ms: 3,
            upstream: Some("10.0.0.5:9080"),
            flags: "-",
            request: req,
            response: resp,
        }
    }

    #[test]
    fn envoy_operators_render_from_the_request_and_response() {
        let mut req = HeaderMap::new();
        req.insert("x-request-id", "r-1".parse().unwrap());
        req.insert("host", "gw.example".parse().unwrap());
        let resp = HeaderMap::new();
        let mut out = String::new();
        render(&parse(DEFAULT_FORMAT), &entry(&req, &resp), &mut out);
        assert_eq!(out, "[1970-01-01T00:00:00.000Z] \"GET /color1/tell HTTP/1.1\" 200 - 0 0 3 - \"-\" \"-\" \"r-1\" \"gw.example\" \"10.0.0.5:9080\"\n");
    }

    #[test]
    fn unknown_operators_are_dashes_and_literals_survive() {
        let h = HeaderMap::new();
        let mut out = String::new();
        render(
            &parse("a %NOPE% b %RESPONSE_CODE%% tail"),
            &entry(&h, &h),
            &mut out,
        );
        assert_eq!(out, "a - b 200% tail");
    }
}
