//! The metrics this crate records through the [`metrics`](https://docs.rs/metrics) facade (no
//! exporter is chosen for you; without a recorder installed they cost a branch). No label
//! carries an openid, a token or any other unbounded or secret value.

/// Counter: calls to WeChat, one per attempt. Labels: `endpoint` (`access_token`,
/// `refresh_token`, `auth`, `userinfo`, `jscode2session`, `stable_token`, `stable_token_forced`,
/// `getuserphonenumber`, `checksession`, `resetusersessionkey`) and `outcome` (`ok`,
/// `api_error`, `transport_error`, `http_status`, `decode_error`).
pub const UPSTREAM_REQUESTS: &str = "wechat_upstream_requests_total";
/// Histogram: seconds per call to WeChat. Label: `endpoint`.
pub const UPSTREAM_DURATION: &str = "wechat_upstream_request_duration_seconds";
