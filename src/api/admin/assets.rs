//! The page's files, built into the binary from `web/` (no CDN, no build step): a private
//! subnet gets the same page as a laptop.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Only this origin's own files, no inline script or style, no framing, no plugins; the
/// page talks to nothing but this API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Served without a session: what the sign-in page itself needs.
    pub public: bool,
}

macro_rules! asset {
    ($name:literal, $type:expr, $public:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name)),
            public: $public,
        }
    };
}

pub const SIGNIN_PAGE: &Asset = &asset!("signin.html", "text/html; charset=utf-8", true);
pub const APP_PAGE: &Asset = &asset!("app.html", "text/html; charset=utf-8", false);

const JS: &str = "text/javascript; charset=utf-8";
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8", true),
    asset!("signin.js", JS, true),
    asset!("favicon.svg", "image/svg+xml", true),
    asset!("app.js", JS, false),
    asset!("api.js", JS, false),
    asset!("topology.js", JS, false),
    asset!("editor.js", JS, false),
    asset!("views.js", JS, false),
    asset!("admins.js", JS, false),
];

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

pub fn serve(asset: &'static Asset) -> Response {
    let mut response = (StatusCode::OK, asset.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    super::secure_headers(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_pages_load_is_served() {
        for page in [SIGNIN_PAGE, APP_PAGE] {
            let html = std::str::from_utf8(page.body).expect("utf-8 page");
            for src in html.split("/ui/").skip(1) {
                let name = src.split('"').next().unwrap_or_default();
                assert!(find(name).is_some(), "{} loads /ui/{name}", page.name);
            }
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            assert_eq!(
                a.content_type, JS,
                "{} must run as a script under the CSP",
                a.name
            );
        }
    }
}
