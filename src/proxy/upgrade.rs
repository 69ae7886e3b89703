//! HTTP/1.1 upgrades (WebSocket) through the proxy: the client's request keeps its upgrade
//! headers, and once the upstream answers 101 the two upgraded connections are spliced.

use http::{HeaderMap, HeaderValue, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::error::Body;

/// A downstream HTTP/1.1 upgrade (WebSocket): the headers that ask for it, and the
/// connection hyper hands over once the upstream agrees.
pub(super) struct Upgrade {
    connection: HeaderValue,
    upgrade: HeaderValue,
    downstream: hyper::upgrade::OnUpgrade,
}

pub(super) fn take_upgrade(parts: &mut http::request::Parts) -> Option<Upgrade> {
    let connection = parts.headers.get(http::header::CONNECTION)?;
    let asks = connection
        .to_str()
        .ok()?
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks || parts.version != http::Version::HTTP_11 {
        return None;
    }
    let upgrade = parts.headers.get(http::header::UPGRADE)?.clone();
    let connection = connection.clone();
    let downstream = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
    Some(Upgrade {
        connection,
        upgrade,
        downstream,
    })
}

impl Upgrade {
    pub(super) fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(http::header::CONNECTION, self.connection.clone());
        headers.insert(http::header::UPGRADE, self.upgrade.clone());
    }

    /// Answers the client's upgrade with the upstream's 101 and splices the two upgraded
    /// connections together until either side closes.
    pub(super) fn bridge(self, mut resp: Response<Incoming>) -> Response<Body> {
        let upstream = hyper::upgrade::on(&mut resp);
        let downstream = self.downstream;
        tokio::spawn(async move {
            match tokio::try_join!(downstream, upstream) {
                Ok((down, up)) => {
                    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        tracing::debug!(error = %e, "upgraded connection ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, super::forward::boxed(body))
    }
}
