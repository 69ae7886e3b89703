//! The seven App Mesh resource types in App Mesh's JSON shapes, their names and ARNs, the
//! service model they are validated against, and the API error type. Knows nothing of
//! storage, HTTP or proxies.

pub mod consistency;
mod error;
mod identity;
mod kind;
pub mod log_format;
pub mod matching;
mod rules;
pub mod service_model;
pub mod spec;
mod validate;

pub use error::ApiError;
pub use identity::{Identity, IdentityError, ProxyKind};
pub use kind::{ResourceId, ResourceKind, ResourceName};
pub use rules::MAX_TOTAL_WEIGHT;
pub use spec::Spec;
pub use validate::{validate_body, validate_param};
