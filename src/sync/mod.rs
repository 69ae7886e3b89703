//! The config push: QUIC (quinn) between `appliance control` and its proxies, as
//! DESIGN.md's wire contract says. Frames in `frame` (the only file that knows bincode),
//! join tokens in `token`, TLS in `tls`; the control side in `server` and `registry`, the
//! proxy side in `client` and `cache`. Knows nothing of HTTP routing.

pub mod cache;
pub mod client;
pub mod frame;
mod issue;
pub mod registry;
pub mod server;
pub mod tls;
pub mod token;

pub use cache::{Credentials, StateDir};
pub use registry::{ProxyStatus, Registry};
pub use token::JoinToken;

/// Where the control plane listens for proxies by default (UDP).
pub const DEFAULT_SYNC_LISTEN: &str = "0.0.0.0:7443";
