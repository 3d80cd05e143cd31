//! The outcomes a caller acts on: [`SessionError`] (using a session), [`LoginError`] (creating
//! one), [`CallError`] (calling WeChat with a user's or the app's token) and [`AppTokenError`]
//! (getting the app's token). Each variant maps to one HTTP
//! answer in the middleware; none carries a secret.

use std::time::Duration;

use wechat_oauth::ErrCode;

use wechat_session_store::StoreError;

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
    /// The code was submitted for an app this cache does not serve. (404)
    #[error("this app is not configured")]
    AppNotConfigured,
    /// WeChat's "snapshot mode" virtual user (an Official Account page opened as a preview):
    /// no session, the page should ask the user to open the real page. (403)
    #[error("this is a preview of the page: open it in WeChat to log in")]
    SnapshotUser,
    /// The application's [`LoginHook`](crate::LoginHook) refused the user; nothing was
    /// stored. (403 with the application's code)
    #[error("the application refused this login: {message}")]
    Refused {
        /// The application's machine code.
        code: String,
        /// The application's message.
        message: String,
    },
    /// The application's [`LoginHook`](crate::LoginHook) failed transiently; nothing was
    /// stored. (503)
    #[error("the application's accounts are unavailable; retry after {}s", retry_after.as_secs())]
    AccountsUnavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
}

impl From<crate::hook::HookError> for LoginError {
    fn from(error: crate::hook::HookError) -> Self {
        match error {
            crate::hook::HookError::Refused { code, message } => Self::Refused { code, message },
            crate::hook::HookError::Unavailable { retry_after } => {
                Self::AccountsUnavailable { retry_after }
            }
        }
    }
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
    /// The app access token the call needs could not be had.
    #[error(transparent)]
    AppToken(#[from] AppTokenError),
    /// WeChat says the Mini Program session key is no longer the user's (87009): the client
    /// must `wx.login` again. (401)
    #[error("the session key is no longer valid: call wx.login again and log in")]
    SessionKeyInvalid,
}

/// Why an app access token could not be had.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppTokenError {
    /// This cache does not serve that app. (404)
    #[error("this app is not configured")]
    AppNotConfigured,
    /// WeChat is busy or unreachable, or the fleet's refresh did not land in time. (503)
    #[error("WeChat is unavailable; retry after {}s", retry_after.as_secs())]
    Unavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
    /// WeChat refused the current token and a forced refresh was made too recently (WeChat
    /// allows a few a day). (503)
    #[error("the app token was refused and was force-refreshed recently; retry after {}s", retry_after.as_secs())]
    ForceLimited {
        /// When the next forced refresh is allowed.
        retry_after: Duration,
    },
    /// WeChat rejected the app's credentials. Logged at error level. (500)
    #[error("WeChat rejected this server's configuration (errcode {errcode})")]
    Misconfigured {
        /// WeChat's errcode.
        errcode: ErrCode,
    },
    /// The store failed (the fleet's forced-refresh marker could not be written). (503)
    #[error(transparent)]
    Store(#[from] StoreError),
}
