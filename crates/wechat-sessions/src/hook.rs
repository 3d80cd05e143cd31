//! The login hook: where the application maps a WeChat identity to its own user, once per new
//! login, after WeChat accepted the code and before the session exists.
//!
//! In the style of axum-login's `AuthnBackend`: the application implements one async method.
//! What it returns becomes the session's [`UserId`] (exposed to handlers, and the key of
//! logout-all); it can refuse the login with its own code (answered 403), or fail transiently
//! (answered 503, nothing stored: the client starts a new WeChat login).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use wechat_oauth::{AppId, OpenId, Scopes, UnionId};

use crate::flow::LoginFlow;
use wechat_session_store::UserId;

/// A login WeChat has just accepted, as the hook sees it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct NewLogin<'a> {
    /// The app the user logged in to.
    pub appid: &'a AppId,
    /// How the code came in (mobile app or website front end, Mini Program, website or
    /// Official Account callback).
    pub flow: LoginFlow,
    /// The user within that app.
    pub openid: &'a OpenId,
    /// The user across the apps bound to the same Open Platform account, when WeChat sent it.
    pub unionid: Option<&'a UnionId>,
    /// The granted scopes (empty for a Mini Program).
    pub scopes: &'a Scopes,
    /// WeChat's "snapshot mode" virtual user (only reaches a hook when snapshot sessions are
    /// allowed): its ids are not the real user's.
    pub snapshot_user: bool,
}

/// Why a hook did not give a user id.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The application refuses this user (banned, not invited...). Answered 403 with `code` as
    /// the machine code and `message` as the message: both are shown to the client, so they
    /// must not hold anything secret.
    #[error("the application refused this login: {message}")]
    Refused {
        /// A stable machine code of the application's choosing, e.g. `account_suspended`.
        code: String,
        /// A human-readable message.
        message: String,
    },
    /// The application's accounts cannot be reached just now (its database is down). Answered
    /// 503; nothing is stored.
    #[error("the application's accounts are unavailable")]
    Unavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
}

impl fmt::Debug for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { code, message } => f
                .debug_struct("Refused")
                .field("code", code)
                .field("message", message)
                .finish(),
            Self::Unavailable { retry_after } => f
                .debug_struct("Unavailable")
                .field("retry_after", retry_after)
                .finish(),
        }
    }
}

impl HookError {
    /// A refusal with the application's `code` and `message`.
    pub fn refused(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Refused {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Maps a WeChat login to the application's user. Called once per new login (a retried
/// submit of the same code that gets the same session does not call it again).
///
/// The user id it returns must name one person for good: the same id for that person on every
/// instance and after every restart, and never an id another person had. Sessions in a shared
/// store outlive the process and are seen by the whole fleet, and the id is what logout-all
/// ends and the per-user session cap counts: an id reused for a second person (a counter kept
/// in one process's memory, say) gives them the first person's sessions. Use the key of a
/// database every instance shares, or a random id stored with the account.
///
/// ```
/// use wechat_sessions::{HookError, LoginHook, NewLogin, UserId};
///
/// struct Accounts; // the application's database handle
///
/// impl LoginHook for Accounts {
///     async fn user_id(&self, login: NewLogin<'_>) -> Result<UserId, HookError> {
///         // Look the person up by unionid (the same in every app), else by app + openid,
///         // creating an account on first sight.
///         let key = match login.unionid {
///             Some(unionid) => format!("u:{unionid}"),
///             None => format!("o:{}:{}", login.appid, login.openid),
///         };
///         if key.contains("banned") {
///             return Err(HookError::refused("account_suspended", "this account is suspended"));
///         }
///         Ok(UserId::new(format!("account-for-{key}")).expect("short and not empty"))
///     }
/// }
/// ```
pub trait LoginHook: Send + Sync + 'static {
    /// The application's user id for this login, or why there is none. Write it as an
    /// `async fn`; its future must be `Send`.
    fn user_id(
        &self,
        login: NewLogin<'_>,
    ) -> impl Future<Output = Result<UserId, HookError>> + Send;
}

/// [`LoginHook`] behind a pointer: the cache keeps `Arc<dyn DynLoginHook>`, and every hook is
/// one (its future boxed).
pub(crate) trait DynLoginHook: Send + Sync + 'static {
    fn user_id<'a>(&'a self, login: NewLogin<'a>) -> BoxFuture<'a, Result<UserId, HookError>>;
}

impl<H: LoginHook> DynLoginHook for H {
    fn user_id<'a>(&'a self, login: NewLogin<'a>) -> BoxFuture<'a, Result<UserId, HookError>> {
        Box::pin(LoginHook::user_id(self, login))
    }
}
