//! The metrics the layer records through the [`metrics`](https://docs.rs/metrics) facade (no
//! exporter is chosen for you). The cache, the client and the Redis store record their own:
//! see `wechat_token_cache::metrics`, `wechat_oauth::metrics`, `wechat_redis_store::metrics`.

/// Counter: requests the layer refused or handed on without a user because their credentials
/// were refused or missing. Label: `code` ([`AuthError::static_code`](crate::AuthError::static_code):
/// `missing_token`, `invalid_token`, `token_expired`, `session_expired`, `reauth_required`,
/// `upstream_unavailable`, `store_unavailable`, ...).
pub const REJECTIONS: &str = "wechat_login_rejections_total";
