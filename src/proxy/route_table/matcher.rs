//! A request's conditions, as App Mesh's Envoy matched them: path, prefix or regex, headers,
//! query parameters, method, scheme, hostname and port. Built once (regexes compiled then);
//! matching allocates nothing.

use http::{HeaderMap, Method};
use regex::Regex;

use crate::compile::ConfigError;
use crate::model::matching;
use crate::model::spec::{HeaderMatchMethod, HttpPathMatch, HttpQueryParameter, HttpRouteHeader};

/// What matching looks at in a request. The path is already normalised (`path.rs`).
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The host without a port.
    pub host: &'a str,
    /// The port the request's authority names, if it names one.
    pub port: Option<u16>,
    /// `:scheme`: the request's own (HTTP/2, absolute-form), else `https` over TLS.
    pub scheme: &'a str,
    pub headers: &'a HeaderMap,
}

enum ValueMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    /// `start` inclusive, `end` exclusive.
    Range(i64, i64),
}

impl ValueMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => v == e,
            ValueMatch::Prefix(p) => v.starts_with(p.as_str()),
            ValueMatch::Suffix(s) => v.ends_with(s.as_str()),
            ValueMatch::Regex(r) => r.is_match(v),
            ValueMatch::Range(start, end) => {
                v.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
        }
    }
}

/// A whole-value regex (Envoy's safe_regex), with the API's own check: what the API stored
/// compiles here.
fn full_regex(field: &str, pattern: &str) -> Result<Regex, ConfigError> {
    matching::full_regex(pattern).map_err(|e| ConfigError::Invalid(format!("{field}: {e}")))
}

struct HeaderMatcher {
    name: http::HeaderName,
    invert: bool,
    value: Option<ValueMatch>,
}

impl HeaderMatcher {
    fn new(h: &HttpRouteHeader) -> Result<HeaderMatcher, ConfigError> {
        let invalid = |e: String| ConfigError::Invalid(format!("header match: {e}"));
        let lower = matching::header_name(&h.name).map_err(|e| invalid(e.to_string()))?;
        let name = http::HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| invalid(format!("{:?} is not a valid header name", h.name)))?;
        let value = match &h.r#match {
            None => None,
            Some(HeaderMatchMethod::Exact(v)) => Some(ValueMatch::Exact(v.clone())),
            Some(HeaderMatchMethod::Prefix(v)) => Some(ValueMatch::Prefix(v.clone())),
            Some(HeaderMatchMethod::Suffix(v)) => Some(ValueMatch::Suffix(v.clone())),
            Some(HeaderMatchMethod::Regex(v)) => {
                Some(ValueMatch::Regex(full_regex("header regex", v)?))
            }
            Some(HeaderMatchMethod::Range(r)) => Some(ValueMatch::Range(r.start, r.end)),
        };
        Ok(HeaderMatcher {
            name,
            invert: h.invert.unwrap_or(false),
            value,
        })
    }

    /// Envoy's rule: a header sent several times is matched as its values joined with `,`;
    /// `invert` flips the result only when the header is present, except for a presence
    /// match (no `match`), where an absent header inverted is a match.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return self.value.is_none() && self.invert;
        };
        let hit = match &self.value {
            None => true,
            Some(m) => match values.next() {
                None => m.matches(&String::from_utf8_lossy(first.as_bytes())),
                Some(second) => {
                    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
                    for v in std::iter::once(second).chain(values) {
                        joined.push(',');
                        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                    m.matches(&joined)
                }
            },
        };
        hit != self.invert
    }
}

/// The request-side conditions shared by routes and gateway routes.
pub(super) struct Matcher {
    pub(super) prefix: Option<String>,
    exact: Option<String>,
    regex: Option<Regex>,
    method: Option<Method>,
    headers: Vec<HeaderMatcher>,
    query: Vec<(String, Option<String>)>,
    pub(super) host_exact: Option<String>,
    pub(super) host_suffix: Option<String>,
    /// `match.port` (router routes; a gateway route's is settled by the listener it is on).
    pub(super) port: Option<u16>,
    /// `match.scheme` (router HTTP routes).
    pub(super) scheme: Option<&'static str>,
}

impl Matcher {
    pub(super) fn new(
        prefix: Option<&String>,
        path: Option<&HttpPathMatch>,
        method: Option<&str>,
        headers: Option<&Vec<HttpRouteHeader>>,
        query: Option<&Vec<HttpQueryParameter>>,
    ) -> Result<Matcher, ConfigError> {
        Ok(Matcher {
            prefix: prefix.cloned(),
            exact: path.and_then(|p| p.exact.clone()),
            regex: path
                .and_then(|p| p.regex.as_deref())
                .map(|r| full_regex("path regex", r))
                .transpose()?,
            method: method
                .map(|m| Method::from_bytes(m.as_bytes()))
                .transpose()
                .map_err(|_| ConfigError::Invalid("bad method".into()))?,
            headers: headers
                .into_iter()
                .flatten()
                .map(HeaderMatcher::new)
                .collect::<Result<_, _>>()?,
            query: query
                .into_iter()
                .flatten()
                .map(|q| {
                    (
                        q.name.clone(),
                        q.r#match.as_ref().and_then(|m| m.exact.clone()),
                    )
                })
                .collect(),
            host_exact: None,
            host_suffix: None,
            port: None,
            scheme: None,
        })
    }

    pub(super) fn matches(&self, req: &RequestView) -> bool {
        if let Some(p) = &self.prefix {
            if !req.path.starts_with(p.as_str()) {
                return false;
            }
        }
        if self.exact.as_deref().is_some_and(|e| e != req.path) {
            return false;
        }
        if self.regex.as_ref().is_some_and(|r| !r.is_match(req.path)) {
            return false;
        }
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        if self
            .host_exact
            .as_deref()
            .is_some_and(|h| !h.eq_ignore_ascii_case(req.host))
        {
            return false;
        }
        if let Some(s) = &self.host_suffix {
            let host = req.host.as_bytes();
            if host.len() < s.len()
                || !host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            {
                return false;
            }
        }
        if self
            .scheme
            .is_some_and(|s| !s.eq_ignore_ascii_case(req.scheme))
        {
            return false;
        }
        // A request whose authority names no port is taken to mean the route's: the app
        // calls `http://service/` and the router listens on 8080.
        if let (Some(want), Some(have)) = (self.port, req.port) {
            if want != have {
                return false;
            }
        }
        if !self.headers.iter().all(|h| h.matches(req.headers)) {
            return false;
        }
        self.query.iter().all(|(name, want)| {
            query_value(req.query, name).is_some_and(|v| want.as_deref().is_none_or(|w| v == w))
        })
    }
}

/// Envoy's query parameter lookup: split on `&`, the key before the first `=`, compared as
/// written (no percent-decoding), and only the first occurrence of a key counts. A key with
/// no `=` has the empty value.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_honour_every_method_and_invert() {
        let mk = |m: HeaderMatchMethod, invert: bool| {
            HeaderMatcher::new(&HttpRouteHeader {
                name: "X-Tier".into(),
                invert: Some(invert),
                r#match: Some(m),
            })
            .unwrap()
        };
        let mut h = HeaderMap::new();
        h.insert("x-tier", "gold-42".parse().unwrap());
        assert!(mk(HeaderMatchMethod::Exact("gold-42".into()), false).matches(&h));
        assert!(mk(HeaderMatchMethod::Prefix("gold".into()), false).matches(&h));
        assert!(mk(HeaderMatchMethod::Suffix("-42".into()), false).matches(&h));
        assert!(mk(HeaderMatchMethod::Regex("gold-[0-9]+".into()), false).matches(&h));
        assert!(
            !mk(HeaderMatchMethod::Regex("gold".into()), false).matches(&h),
            "regexes match the whole value"
        );
        assert!(mk(HeaderMatchMethod::Exact("silver".into()), true).matches(&h));
        h.insert("x-tier", "7".parse().unwrap());
        assert!(mk(
            HeaderMatchMethod::Range(crate::model::spec::MatchRange { start: 5, end: 8 }),
            false
        )
        .matches(&h));
        assert!(!mk(
            HeaderMatchMethod::Range(crate::model::spec::MatchRange { start: 8, end: 9 }),
            false
        )
        .matches(&h));
    }

    fn header(m: Option<HeaderMatchMethod>, invert: bool) -> HeaderMatcher {
        HeaderMatcher::new(&HttpRouteHeader {
            name: "x-tier".into(),
            invert: Some(invert),
            r#match: m,
        })
        .unwrap()
    }

    #[test]
    fn an_inverted_value_match_on_a_missing_header_does_not_match() {
        let none = HeaderMap::new();
        assert!(!header(Some(HeaderMatchMethod::Exact("gold".into())), true).matches(&none));
        assert!(!header(Some(HeaderMatchMethod::Prefix("g".into())), true).matches(&none));
        assert!(!header(Some(HeaderMatchMethod::Regex(".*".into())), true).matches(&none));
    }

    #[test]
    fn an_inverted_presence_match_matches_a_missing_header() {
        let none = HeaderMap::new();
        assert!(header(None, true).matches(&none));
        assert!(!header(None, false).matches(&none));
        let mut h = HeaderMap::new();
        h.insert("x-tier", "".parse().unwrap());
        assert!(!header(None, true).matches(&h));
    }

    #[test]
    fn a_repeated_header_is_matched_on_its_values_joined_with_commas() {
        let mut h = HeaderMap::new();
        h.append("x-tier", "a".parse().unwrap());
        h.append("x-tier", "b".parse().unwrap());
        assert!(!header(Some(HeaderMatchMethod::Exact("a".into())), false).matches(&h));
        assert!(header(Some(HeaderMatchMethod::Exact("a,b".into())), false).matches(&h));
        assert!(header(Some(HeaderMatchMethod::Prefix("a".into())), false).matches(&h));
    }

    #[test]
    fn query_parameters_use_the_first_raw_value_of_a_key() {
        assert_eq!(query_value(Some("v=1&v=2"), "v"), Some("1"));
        assert_eq!(query_value(Some("a%20b=1"), "a b"), None);
        assert_eq!(query_value(Some("a%20b=1"), "a%20b"), Some("1"));
        assert_eq!(query_value(Some("x=%32"), "x"), Some("%32"));
        assert_eq!(query_value(Some("flag&y=1"), "flag"), Some(""));
        assert_eq!(query_value(None, "flag"), None);
    }
}
