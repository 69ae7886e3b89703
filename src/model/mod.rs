//! The seven App Mesh resource types in App Mesh's JSON shapes, their names and ARNs, the
//! service model they are validated against, and the API error type. Knows nothing of
//! storage, HTTP or proxies.

mod error;
mod kind;
pub mod service_model;

pub use error::ApiError;
pub use kind::{ResourceId, ResourceKind, ResourceName};
