//! The metrics this crate records through the [`metrics`](https://docs.rs/metrics) facade (no
//! exporter is chosen for you; without a recorder installed they cost a branch). Labels are
//! small closed sets and configured AppIDs: never an openid, a token, a code or a session id.
//! Install the recorder before building the cache: the local cache's counters are registered
//! when it is built.

/// Counter: login attempts. Labels: `appid` (a configured app), `flow` (`code`,
/// `mini_program`, `website`, `official_account`), `outcome` (`logged_in`, `retried` — a
/// repeat answered with its session —, `code_used`, `invalid_code`, `denied`, `unavailable`,
/// `misconfigured`, `store_unavailable`, `app_not_configured`, `snapshot_user`, `refused`,
/// `accounts_unavailable`).
pub const LOGINS: &str = "wechat_login_logins_total";
/// Counter: used codes submitted again and refused (another client, another flow, too late).
/// Label: `flow`.
pub const CODE_REPLAYS_REFUSED: &str = "wechat_login_code_replays_refused_total";
/// Counter: upstream maintenance of sessions. Labels: `call` (`refresh`, `check`), `outcome`
/// (`refreshed`, `checked`, `grant_gone`, `superseded`, `denied`, `misconfigured`,
/// `unavailable`), `class` (the errcode class: `none`, `retryable`, `refresh_and_retry`,
/// `reauthorize`, `misconfigured`, `denied`, `unknown`, `transport`).
pub const SESSION_MAINTENANCE: &str = "wechat_login_session_maintenance_total";
/// Counter: callers that joined a flight already under way instead of calling WeChat. Label:
/// `kind` (`session`, `login`, `app_token`).
pub const FLIGHTS_COALESCED: &str = "wechat_login_flights_coalesced_total";
/// Counter: app access token refreshes. Labels: `appid`, `outcome` (`fetched`, `adopted` — the
/// fleet's copy —, `forced`, `force_limited`, `failed`).
pub const APP_TOKEN_REFRESHES: &str = "wechat_login_app_token_refreshes_total";
/// Counter: the local cache in front of a shared store ([`CachedStore`](crate::CachedStore)).
/// Label: `result` (`hit`, `miss`, `invalidated`).
pub const LOCAL_CACHE: &str = "wechat_login_local_cache_total";

/// Gauge: sessions open. Not maintained by the cache (a shared store cannot count cheaply):
/// the application sets it, e.g. from [`MokaStore::session_count`](crate::MokaStore::session_count)
/// when it is scraped, as the example server does.
pub const SESSIONS_OPEN: &str = "wechat_login_sessions_open";

/// The label of an upstream error's class.
pub(crate) fn class_label(error: &wechat_oauth::Error) -> &'static str {
    use wechat_oauth::{Error, ErrorClass};
    if !matches!(error, Error::Api(_)) {
        return "transport";
    }
    match error.class() {
        ErrorClass::Retryable => "retryable",
        ErrorClass::RefreshAndRetry => "refresh_and_retry",
        ErrorClass::Reauthorize => "reauthorize",
        ErrorClass::DuplicateCode => "duplicate_code",
        ErrorClass::Misconfigured => "misconfigured",
        ErrorClass::Denied => "denied",
        _ => "unknown",
    }
}

/// Records one session maintenance outcome.
pub(crate) fn maintenance(call: &'static str, outcome: &'static str, class: &'static str) {
    metrics::counter!(SESSION_MAINTENANCE, "call" => call, "outcome" => outcome, "class" => class)
        .increment(1);
}
