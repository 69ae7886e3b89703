//! Envoy access-log format strings (`logging.accessLog.file.format`, text or each JSON value):
//! parsed here once, by the API at write time and by the proxy when it opens the log, so an
//! operator the proxies cannot produce is refused by name instead of printed as `-`.
//!
//! Supported command operators (Envoy's meaning; `:N` after any of them truncates to N
//! characters): `START_TIME`, `PROTOCOL`, `RESPONSE_CODE`, `RESPONSE_FLAGS`,
//! `BYTES_RECEIVED`, `BYTES_SENT`, `DURATION`, `UPSTREAM_HOST`,
//! `DOWNSTREAM_REMOTE_ADDRESS`, `DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT`,
//! `DOWNSTREAM_LOCAL_ADDRESS`, `DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT`,
//! `REQ(H1?H2)` and `RESP(H1?H2)` (a header, or the first of two that is set; in `REQ` the
//! names `:method`, `:path`, `:authority` and `:scheme` are the request's). `%%` is a `%`.

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    /// An operator, and the `:N` truncation after it.
    Operator(Operator, Option<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    StartTime,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    /// Lower-cased header names, the first one set wins; `:method` and the like included.
    Request(Vec<String>),
    Response(Vec<String>),
}

/// Why a format string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the command operator %{0}% is not supported by the appliance")]
    Unsupported(String),
    #[error("%{op}%: {reason}")]
    Malformed { op: String, reason: String },
    #[error("a % at offset {0} opens a command operator that is never closed")]
    Unclosed(usize),
}

/// The pseudo-headers `REQ(...)` can name.
const REQUEST_PSEUDO: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

/// Parses an Envoy format string.
pub fn parse(format: &str) -> Result<Vec<Piece>, FormatError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = format;
    let mut offset = 0;
    while let Some(start) = rest.find('%') {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        // START_TIME's argument is a strftime format full of `%`: refused as a whole.
        if let Some(arg) = after.strip_prefix("START_TIME(") {
            let close = arg
                .find(")%")
                .ok_or(FormatError::Unclosed(offset + start))?;
            return Err(FormatError::Unsupported(format!(
                "START_TIME({})",
                &arg[..close]
            )));
        }
        let Some(end) = after.find('%') else {
            return Err(FormatError::Unclosed(offset + start));
        };
        let op = &after[..end];
        if op.is_empty() {
            literal.push('%');
        } else {
            if !literal.is_empty() {
                out.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            out.push(operator(op)?);
        }
        offset += start + end + 2;
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Literal(literal));
    }
    Ok(out)
}

fn operator(text: &str) -> Result<Piece, FormatError> {
    let malformed = |reason: &str| FormatError::Malformed {
        op: text.to_owned(),
        reason: reason.to_owned(),
    };
    // `NAME(args):N` or `NAME:N`: the truncation follows the closing parenthesis.
    let (body, limit) = match text.rfind(':') {
        Some(i) if text[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < text.len() => {
            let head = &text[..i];
            // A `:` inside the parentheses (`REQ(:PATH)`) is not a truncation.
            if head.contains('(') && !head.ends_with(')') {
                (text, None)
            } else {
                let n = text[i + 1..]
                    .parse::<usize>()
                    .map_err(|_| malformed("the length is too large"))?;
                (head, Some(n))
            }
        }
        _ => (text, None),
    };
    let (name, args) = match body.find('(') {
        Some(i) => {
            let Some(inner) = body[i + 1..].strip_suffix(')') else {
                return Err(malformed("an argument list must end with )"));
            };
            (&body[..i], Some(inner))
        }
        None => (body, None),
    };
    let plain = |op: Operator| match args {
        None => Ok(Piece::Operator(op, limit)),
        Some(_) => Err(FormatError::Unsupported(text.to_owned())),
    };
    match name {
        "START_TIME" => plain(Operator::StartTime),
        "PROTOCOL" => plain(Operator::Protocol),
        "RESPONSE_CODE" => plain(Operator::ResponseCode),
        "RESPONSE_FLAGS" => plain(Operator::ResponseFlags),
        "BYTES_RECEIVED" => plain(Operator::BytesReceived),
        "BYTES_SENT" => plain(Operator::BytesSent),
        "DURATION" => plain(Operator::Duration),
        "UPSTREAM_HOST" => plain(Operator::UpstreamHost),
        "DOWNSTREAM_REMOTE_ADDRESS" => plain(Operator::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            plain(Operator::DownstreamRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => plain(Operator::DownstreamLocalAddress),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            plain(Operator::DownstreamLocalAddressWithoutPort)
        }
        "REQ" | "RESP" => {
            let inner = args.ok_or_else(|| malformed("needs a header name: REQ(name)"))?;
            let names: Vec<String> = inner.split('?').map(str::to_ascii_lowercase).collect();
            if names.len() > 2 {
                return Err(malformed("at most one alternative header (A?B)"));
            }
            for n in &names {
                let pseudo_ok = name == "REQ" && REQUEST_PSEUDO.contains(&n.as_str());
                if !pseudo_ok {
                    super::matching::header_name(n).map_err(|e| malformed(&e.to_string()))?;
                }
            }
            let op = if name == "REQ" {
                Operator::Request(names)
            } else {
                Operator::Response(names)
            };
            Ok(Piece::Operator(op, limit))
        }
        _ => Err(FormatError::Unsupported(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_operators_parse_with_truncation_and_alternatives() {
        let p = parse("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(USER-AGENT):5% %DURATION%").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Operator(
                    Operator::Request(vec!["x-envoy-original-path".into(), ":path".into()]),
                    None
                ),
                Piece::Literal(" ".into()),
                Piece::Operator(Operator::Request(vec!["user-agent".into()]), Some(5)),
                Piece::Literal(" ".into()),
                Piece::Operator(Operator::Duration, None),
            ]
        );
    }

    #[test]
    fn unsupported_operators_are_refused_by_name() {
        assert_eq!(
            parse("%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
            Err(FormatError::Unsupported(
                "UPSTREAM_TRANSPORT_FAILURE_REASON".into()
            ))
        );
        assert!(matches!(
            parse("%START_TIME(%s)% x"),
            Err(FormatError::Unsupported(op)) if op == "START_TIME(%s)"
        ));
        assert!(parse("%FILTER_STATE(x)%").is_err());
        assert!(parse("%RESP(:status)%").is_err());
        assert!(matches!(parse("50%"), Err(FormatError::Unclosed(2))));
    }

    #[test]
    fn a_doubled_percent_is_a_literal_percent() {
        assert_eq!(
            parse("100%% %RESPONSE_CODE%").unwrap(),
            vec![
                Piece::Literal("100% ".into()),
                Piece::Operator(Operator::ResponseCode, None)
            ]
        );
    }
}
