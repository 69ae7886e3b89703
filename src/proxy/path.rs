//! Request path normalisation, as App Mesh configures Envoy (`normalize_path` and
//! `merge_slashes` on every listener): done once per request, before any route is matched,
//! and the result is what the upstream receives. Without it `GET /api/../etc/passwd` would
//! match an `/api` route and reach the app with its `..` intact.
//!
//! The rules are Envoy's (its Chromium-derived canonicaliser, `path_utility.cc`): `\` is `/`;
//! `%XX` escapes of unreserved characters are decoded, other escapes kept as written; bytes
//! a URL may not carry raw are percent-encoded; `.` and `..` segments (also written `%2E`)
//! are removed, `..` never climbing above the root; then runs of `/` become one. The query
//! string is never touched. A NUL, raw or escaped, makes the request a 400.

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};

/// Why a request path cannot be normalised (the request is answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Envoy refuses a path carrying NUL, raw or as `%00`: no canonical form exists.
    #[error("the request path contains a NUL character")]
    Nul,
    /// The normalised path could not be put back into the request (cannot happen for a path
    /// hyper accepted; kept as an error rather than a panic on input).
    #[error("the normalised request path {0:?} is not a valid URI path")]
    Unrepresentable(String),
}

/// Replaces the path of `uri` by its normalised form, keeping scheme, authority and query.
pub fn normalize_uri(uri: &mut Uri) -> Result<(), PathError> {
    let Some(pq) = uri.path_and_query() else {
        return Ok(());
    };
    // `OPTIONS *` has no path to normalise.
    if pq.path() == "*" {
        return Ok(());
    }
    let Cow::Owned(path) = normalize(pq.path())? else {
        return Ok(());
    };
    let new = match pq.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let new = PathAndQuery::try_from(new.as_str()).map_err(|_| PathError::Unrepresentable(new))?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(new);
    *uri = Uri::from_parts(parts).map_err(|e| PathError::Unrepresentable(e.to_string()))?;
    Ok(())
}

/// The normalised form of `path` (no query), borrowed when it is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let canonical = canonical_bytes(path.as_bytes())?;
    let mut out = String::with_capacity(canonical.len() + 1);
    let segments: Vec<&str> = canonical.split('/').collect();
    // The first piece is what precedes the first `/`: empty for a path that starts with one.
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => {
                if i == last {
                    kept.push("");
                }
            }
            ".." => {
                kept.pop();
                if i == last {
                    kept.push("");
                }
            }
            s => kept.push(s),
        }
    }
    if let Some(first) = segments.first().filter(|s| !s.is_empty()) {
        // A path without its leading `/` (absolute-form oddities): Envoy adds one.
        match *first {
            "." | ".." => {}
            s => kept.insert(0, s),
        }
    }
    // merge_slashes: empty segments vanish, except a trailing one (the trailing `/`).
    let n = kept.len();
    for (i, seg) in kept.iter().enumerate() {
        if seg.is_empty() && i + 1 != n {
            continue;
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when normalising would change nothing: the common case, checked without allocating.
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' || c == b'\\' || needs_escape(c) || (c == b'/' && prev == b'/') {
            return false;
        }
        // A segment that is `.` or `..`.
        if c == b'.' && prev == b'/' {
            let rest = &b[i..];
            let seg_end = rest.iter().position(|&x| x == b'/').unwrap_or(rest.len());
            if matches!(&rest[..seg_end], b"." | b"..") {
                return false;
            }
        }
        prev = c;
    }
    true
}

/// Bytes Envoy's canonicaliser percent-encodes when they appear raw in a path.
fn needs_escape(c: u8) -> bool {
    c <= 0x20
        || c >= 0x7f
        || matches!(
            c,
            b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#'
        )
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Backslashes to slashes, unreserved escapes decoded, unsafe bytes escaped; the result is
/// ASCII, so a `String`.
fn canonical_bytes(path: &[u8]) -> Result<String, PathError> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(path.len() + 8);
    let mut i = 0;
    while let Some(&c) = path.get(i) {
        match c {
            0 => return Err(PathError::Nul),
            b'\\' => out.push('/'),
            b'%' => {
                let decoded = match (path.get(i + 1), path.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h * 16 + l),
                    _ => None,
                };
                match decoded {
                    Some(0) => return Err(PathError::Nul),
                    Some(d) if unreserved(d) => {
                        out.push(char::from(d));
                        i += 3;
                        continue;
                    }
                    // Any other escape, valid or not, is kept exactly as written.
                    _ => out.push('%'),
                }
            }
            c if needs_escape(c) => {
                let _ = write!(out, "%{c:02X}");
            }
            c => out.push(char::from(c)),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn dot_segments_are_removed_and_never_climb_above_the_root() {
        assert_eq!(n("/api/../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/../../x"), "/x");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/a/%2e%2E/b"), "/b");
        assert_eq!(n("/a/.%2e/b"), "/b");
        assert_eq!(n("/a/..."), "/a/...");
        assert_eq!(n("/a/.b/..c"), "/a/.b/..c");
    }

    #[test]
    fn runs_of_slashes_merge_and_a_trailing_slash_stays() {
        assert_eq!(n("/a//b///c"), "/a/b/c");
        assert_eq!(n("//a/"), "/a/");
        assert_eq!(n("/a/b//"), "/a/b/");
        assert_eq!(n("//"), "/");
        assert_eq!(n("/a//../b"), "/a/b");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(n("/%41%62%7e"), "/Ab~");
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/a%2fb"), "/a%2fb");
        assert_eq!(n("/a%zz"), "/a%zz");
        assert_eq!(n("/a%2"), "/a%2");
        assert_eq!(n("/a%20b"), "/a%20b");
    }

    #[test]
    fn backslashes_become_slashes_and_unsafe_bytes_are_escaped() {
        assert_eq!(n("/a\\..\\b"), "/b");
        assert_eq!(n("/a b"), "/a%20b");
        assert_eq!(n("/a\"<>|"), "/a%22%3C%3E%7C");
        assert_eq!(n("a/b"), "/a/b");
    }

    #[test]
    fn a_nul_raw_or_escaped_is_refused() {
        assert_eq!(normalize("/xyz/.%00../abc"), Err(PathError::Nul));
        assert_eq!(normalize("/xyz/AAAAA%%0000/abc"), Err(PathError::Nul));
        assert_eq!(normalize("/a\0b"), Err(PathError::Nul));
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        for p in ["/", "/a/b", "/a.b/c..d/", "/x-y_z~"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn the_query_is_left_alone() {
        let mut uri: Uri = "/a//b/../c?x=/../&y=//".parse().unwrap();
        normalize_uri(&mut uri).unwrap();
        assert_eq!(uri.to_string(), "/a/c?x=/../&y=//");
        let mut uri: Uri = "http://svc:8080/a/./b".parse().unwrap();
        normalize_uri(&mut uri).unwrap();
        assert_eq!(uri.to_string(), "http://svc:8080/a/b");
    }
}
