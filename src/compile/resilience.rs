//! App Mesh's circuit breaking (`connectionPool`, `outlierDetection`) in the proxy's terms.

use super::{ConnectionPoolConfig, OutlierConfig};
use crate::model::spec::{
    OutlierDetection, VirtualGatewayConnectionPool, VirtualNodeConnectionPool,
};

/// App Mesh's `maxPendingRequests` when an `http` pool sets none.
pub const DEFAULT_MAX_PENDING_REQUESTS: u32 = 2_147_483_647;

/// Envoy's `max_ejection_time` default: however often an endpoint has been ejected, it is
/// tried again after at most this long.
pub const MAX_EJECTION_MS: u64 = 300_000;

pub(super) fn node_pool(pool: &VirtualNodeConnectionPool) -> ConnectionPoolConfig {
    match pool {
        VirtualNodeConnectionPool::Http(h) => http(h.max_connections, h.max_pending_requests),
        VirtualNodeConnectionPool::Http2(h) => immediate(h.max_requests),
        VirtualNodeConnectionPool::Grpc(g) => immediate(g.max_requests),
        VirtualNodeConnectionPool::Tcp(t) => immediate(t.max_connections),
    }
}

pub(super) fn gateway_pool(pool: &VirtualGatewayConnectionPool) -> ConnectionPoolConfig {
    match pool {
        VirtualGatewayConnectionPool::Http(h) => http(h.max_connections, h.max_pending_requests),
        VirtualGatewayConnectionPool::Http2(h) => immediate(h.max_requests),
        VirtualGatewayConnectionPool::Grpc(g) => immediate(g.max_requests),
    }
}

/// The tighter of two pools, limit by limit: a cluster two gateway listeners reach honours
/// both.
pub(super) fn tightest(
    a: Option<ConnectionPoolConfig>,
    b: ConnectionPoolConfig,
) -> ConnectionPoolConfig {
    match a {
        None => b,
        Some(a) => ConnectionPoolConfig {
            max_in_flight: a.max_in_flight.min(b.max_in_flight),
            max_pending: a.max_pending.min(b.max_pending),
        },
    }
}

pub(super) fn outlier(o: &OutlierDetection) -> OutlierConfig {
    let ms = |d: &crate::model::spec::Duration| {
        d.to_std()
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    OutlierConfig {
        max_server_errors: o.max_server_errors.max(1),
        interval_ms: ms(&o.interval),
        base_ejection_ms: ms(&o.base_ejection_duration),
        max_ejection_percent: o.max_ejection_percent.min(100),
    }
}

fn http(max_connections: u32, max_pending: Option<u32>) -> ConnectionPoolConfig {
    ConnectionPoolConfig {
        max_in_flight: max_connections,
        max_pending: max_pending.unwrap_or(DEFAULT_MAX_PENDING_REQUESTS),
    }
}

/// HTTP/2, gRPC and TCP pools have no pending queue in App Mesh: overflow is immediate.
fn immediate(max: u32) -> ConnectionPoolConfig {
    ConnectionPoolConfig {
        max_in_flight: max,
        max_pending: 0,
    }
}
