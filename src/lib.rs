//! `appliance`: a self-hosted replacement for AWS App Mesh. The control plane (store, API,
//! private CA), the proxies and the CLI, in one crate. DESIGN.md orders the modules; each may
//! use only the ones listed before it.
#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod cli;
pub mod compile;
pub mod files;
pub mod model;
pub mod proxy;
pub mod store;
pub mod sync;
