//! The parts of a route match that must compile before a proxy can use them: header (and
//! gRPC metadata) names and regexes. The API checks them at write time and the proxy builds
//! its route table with the same functions, so a spec the API stored is one every proxy
//! accepts: they cannot disagree.

use regex::Regex;

/// Why a match value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// `:authority`, `:path`, ...: HTTP/2 pseudo-headers are not headers a route can name;
    /// the host, method, path and scheme have their own match fields.
    #[error(
        "{0:?} is a pseudo-header; match the host, method, path or scheme with their own fields"
    )]
    PseudoHeader(String),
    /// A header name is an RFC 9110 token: letters, digits and ``!#$%&'*+-.^_`|~``.
    #[error("{name:?} is not a valid header name ({reason})")]
    HeaderName { name: String, reason: String },
    #[error("{pattern:?} is not a valid regex: {reason}")]
    Regex { pattern: String, reason: String },
}

/// The lower-cased form of a header name a route matches on.
pub fn header_name(name: &str) -> Result<String, MatchError> {
    if name.starts_with(':') {
        return Err(MatchError::PseudoHeader(name.to_owned()));
    }
    let bad = |reason: String| MatchError::HeaderName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Some(c) = name.chars().find(|c| !is_token_char(*c)) {
        return Err(bad(format!("{c:?} may not appear in one")));
    }
    Ok(name.to_ascii_lowercase())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A regex that must match the whole value, as Envoy's `safe_regex` does. The pattern must be
/// valid on its own, not only once anchored: `a)|(b` is refused though `^(?:a)|(b)$` parses.
pub fn full_regex(pattern: &str) -> Result<Regex, MatchError> {
    let bad = |e: regex::Error| MatchError::Regex {
        pattern: pattern.to_owned(),
        reason: one_line(&e.to_string()),
    };
    Regex::new(pattern).map_err(bad)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(bad)
}

/// The regex crate's errors draw a caret under the pattern over several lines; an API
/// message is one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .unwrap_or("invalid")
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_lower_cased_tokens() {
        assert_eq!(header_name("X-Canary").unwrap(), "x-canary");
        assert!(matches!(
            header_name(":authority"),
            Err(MatchError::PseudoHeader(_))
        ));
        assert!(matches!(
            header_name("x canary"),
            Err(MatchError::HeaderName { .. })
        ));
        assert!(matches!(
            header_name("x:y"),
            Err(MatchError::HeaderName { .. })
        ));
    }

    #[test]
    fn regexes_must_be_valid_alone_and_match_whole_values() {
        let e = full_regex("([a-z").unwrap_err();
        assert!(e.to_string().contains("([a-z"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(full_regex("a)|(b").is_err());
        let r = full_regex("gold|silver").unwrap();
        assert!(r.is_match("silver") && !r.is_match("golden"));
    }
}
