//! The example server as a library: what `cargo run --example server` runs, and what the
//! end-to-end tests drive (with a manual clock and a shared fake WeChat) without copying it.
//!
//! - [`app`]: configuration, the four apps, the accounts hook, the routes of the HTTP contract.
//! - [`grpc`]: a small tonic service (`demo.WhoAmI`) that reads the user the layer attached.

pub mod app;
pub mod grpc;
