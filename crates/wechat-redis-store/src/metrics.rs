//! The metrics this crate records through the [`metrics`](https://docs.rs/metrics) facade.

/// Counter: store operations. Labels: `backend` (`redis`), `op` (`get`, `insert`,
/// `compare_and_set`, `delete`, `delete_user`, `try_lease`, `renew_lease`, `release_lease`,
/// `put_value_if_absent`, `get_value`, `put_secret`, `get_secret`), `outcome` (`ok`,
/// `unavailable`, `corrupt`, `refused` — an insert of an existing id).
pub const STORE_OPERATIONS: &str = "wechat_login_store_operations_total";
/// Histogram: seconds per store operation. Labels: `backend`, `op`.
pub const STORE_DURATION: &str = "wechat_login_store_operation_duration_seconds";
