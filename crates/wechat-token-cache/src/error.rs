//! The outcomes a caller acts on: [`SessionError`] (using a session), [`LoginError`] (creating
//! one) and [`CallError`] (calling WeChat with a user's token). Each variant maps to one HTTP
//! answer in the middleware; none carries a secret.

use std::time::Duration;

use wechat_oauth::ErrCode;

use crate::store::StoreError;

/// Why a session cannot be served.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No such session: logged out, ended, evicted, or never existed. (401)
    #[error("no such session")]
    NotFound,
    /// WeChat said the grant is gone (42002, 40030, 40003, 50001); the record was deleted and
    /// the user must authorize again. (401)
    #[error("WeChat authorization ended (errcode {errcode}): the user must log in again")]
    Reauthorize {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// WeChat refuses this user (e.g. 50002 restricted); the record is kept. (403)
    #[error("WeChat denied this user (errcode {errcode})")]
    Denied {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// WeChat could not confirm the session just now and no still-valid token or grace period
    /// covers it; the record is kept. (503 with Retry-After)
    #[error("WeChat is unavailable; retry after {}s", retry_after.as_secs())]
    Unavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
    /// WeChat rejected our own configuration (AppID, AppSecret). Logged at error level. (500)
    #[error("WeChat rejected this server's configuration (errcode {errcode})")]
    Misconfigured {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// The session store failed. (503)
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a login did not produce a session.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// WeChat rejected the code: wrong, expired, already used without a remembered result, or
    /// another app's. The user must start the WeChat login again. (401)
    #[error("WeChat rejected the login code (errcode {errcode})")]
    InvalidCode {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// WeChat refuses this user (e.g. 40226 high-risk, 50002 restricted). (403)
    #[error("WeChat denied this user (errcode {errcode})")]
    Denied {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// WeChat is busy or unreachable. Not remembered: the client may try again. (503)
    #[error("WeChat is unavailable; retry after {}s", retry_after.as_secs())]
    Unavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
    /// WeChat rejected our own configuration. Logged at error level. (500)
    #[error("WeChat rejected this server's configuration (errcode {errcode})")]
    Misconfigured {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// The session store failed. (503)
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a call to WeChat on a user's behalf failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The session could not be used.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The session's grant does not allow this call (a `snsapi_base` grant, a snapshot user, a
    /// Mini Program session without an access token).
    #[error("this session's WeChat grant does not allow the call")]
    NotPermitted,
    /// WeChat answered the call with an error (after a refresh-and-retry where that applies).
    #[error(transparent)]
    Upstream(#[from] wechat_oauth::Error),
}
