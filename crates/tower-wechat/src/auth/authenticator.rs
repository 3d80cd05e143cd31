//! [`Authenticator`]: who a request's user is. It owns every decision of the middleware —
//! find and verify the token, admit a live session (and re-issue a token that nears its end),
//! refuse (and clear a dead cookie) — for the synchronous path and the slow one alike; the
//! service only carries the [`Outcome`] out. One clock read serves the synchronous path: the
//! clock's coarse one, since every edge it decides by is seconds from the next. A warm token
//! brings its session's record, kept beside it when it was last read from a store that stamps
//! its reads; while the store's stamp holds (no write of the session, and the store need not
//! hear of the read yet) and nothing is due, it is admitted without a store lookup.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};
use wechat_sessions::{
    ReadStamp, SessionError, SessionId, SessionManager, SessionRecord, SharedStore, StoreError,
};

use super::future::Reissue;
use super::source::{self, REISSUED_TOKEN_HEADER, SentBy, TokenSource};
use crate::cookie::SessionCookie;
use crate::rejection::AuthError;
use crate::token::{Known, TokenIssuer, VerifiedToken};
use crate::user::{Upstream, WeChatUser};
use wechat_oauth::clock::unix_secs;

/// What every request of one layer shares to authenticate.
pub(crate) struct Authenticator<St> {
    pub(crate) cache: SessionManager<St>,
    pub(crate) tokens: Arc<TokenIssuer>,
    pub(crate) upstream: Arc<dyn Upstream>,
    pub(crate) sources: Vec<TokenSource>,
    pub(crate) cookie: SessionCookie,
    /// The cookie's full name (`__Host-` prefix included), computed once.
    pub(crate) cookie_name: String,
}

/// A refused request: why, and what is known of the token that was sent.
pub(crate) struct Refusal {
    pub(crate) error: AuthError,
    /// The session the token named, when it verified.
    pub(crate) sid: Option<SessionId>,
    /// A `Set-Cookie` deleting a session cookie that can never become valid again.
    pub(crate) clear: Option<Reissue>,
}

/// What authentication decided for one request.
pub(crate) enum Outcome {
    /// A live session: its user, and a re-issued token for the response if this one nears its
    /// end.
    User(WeChatUser, Option<Reissue>),
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent and refused.
    Refused(Refusal),
}

/// A valid token whose session needs the store or WeChat before it can be admitted.
pub(crate) struct Pending {
    verified: VerifiedToken,
    sent_by: SentBy,
}

/// A stored session, as the middleware sees it.
enum Lookup {
    /// Ours, and nothing to ask WeChat first: admit it.
    Live(Arc<SessionRecord>),
    /// Ours, but a refresh or check is due.
    NeedsUpstream,
    /// Ended, unknown, another app's, or the store failed.
    Refused(SessionError),
}

/// The synchronous part's answer: decided, or to be finished by [`Authenticator::finish`].
pub(crate) enum Step {
    Done(Outcome),
    Slow(Pending),
}

impl<St: SharedStore> Authenticator<St> {
    /// Decides what it can without waiting: the token found (borrowed) and verified (a cache
    /// hit for a token seen before), the record read from the store's memory.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Step {
        let (token, sent_by) = match source::find(headers, &self.sources, &self.cookie_name) {
            Ok(Some(found)) => found,
            Ok(None) => return Step::Done(Outcome::Anonymous),
            Err((error, sent_by)) => {
                return Step::Done(self.refuse(error, None, Some(sent_by)));
            }
        };
        // Every edge this path decides by is seconds from the next: the cheap reading does.
        let now = self.cache.clock().now_coarse();
        let verified = match sent_by {
            SentBy::Cookies => self.verify_one_cookie(headers, now).map(Known::Token),
            _ => self.tokens.verify_keeping(token, now),
        };
        let verified = match verified {
            Ok(verified) => verified,
            // Several cookies and not exactly one verifies: which is ours cannot be told, so
            // none is cleared (clearing could delete the user's own).
            Err(error) => {
                let sent_by = (sent_by != SentBy::Cookies).then_some(sent_by);
                return Step::Done(self.refuse(error, None, sent_by));
            }
        };
        let store = self.cache.store();
        // The record kept beside the token (found only while nothing is due: no refresh,
        // check, end of the session or re-issue of the token), while the store says it is still
        // the stored one: nothing more to read, and the user is the token's slot.
        let verified = match verified {
            Known::Kept(kept) if store.still_current(&kept.kept().stamp, now) => {
                tracing::trace!(sid = %kept.kept().record.sid, outcome = "authenticated", reissued = false);
                let user = WeChatUser::kept(kept);
                return Step::Done(Outcome::User(user, None));
            }
            known => known.token(),
        };
        // Of several cookies, `token` is the first, not necessarily the one that verified.
        let keep = (sent_by != SentBy::Cookies).then_some(token);
        let sent_by = match sent_by {
            SentBy::Cookies => SentBy::Cookie,
            other => other,
        };
        let stamp = store.read_stamp(&verified.sid, now);
        let Some(found) = store.get_now(&verified.sid, now) else {
            // Not known without waiting.
            return Step::Slow(Pending { verified, sent_by });
        };
        match self.classify(found, now) {
            Lookup::Live(record) => {
                if let (Some(token), Some(stamp)) = (keep, stamp) {
                    self.keep(token, &verified, &record, stamp);
                }
                Step::Done(self.admit(record, verified, sent_by, now))
            }
            Lookup::NeedsUpstream => Step::Slow(Pending { verified, sent_by }),
            Lookup::Refused(error) => {
                Step::Done(self.refuse(error.into(), Some(verified.sid), Some(sent_by)))
            }
        }
    }

    /// Keeps a live `record` beside the `token` that named it, until the first instant anything
    /// is due for the pair: a refresh or check, the session's end, the token's re-issue.
    fn keep(
        &self,
        token: &[u8],
        verified: &VerifiedToken,
        record: &Arc<SessionRecord>,
        stamp: ReadStamp,
    ) {
        let until = self.cache.serve_until(record);
        let until = self
            .tokens
            .reissue_from(verified.expires_at, record.expires_at)
            .map_or(until, |from| until.min(from));
        self.tokens
            .keep(token, verified, record, stamp, until, &self.upstream);
    }

    /// Finishes what [`authenticate`](Self::authenticate) could not: waits for the store, and
    /// refreshes or checks with WeChat when the session needs it.
    pub(crate) async fn finish(&self, pending: Pending) -> Outcome {
        let Pending { verified, sent_by } = pending;
        let found = self.cache.store().get(&verified.sid).await;
        let session = match self.classify(found, self.cache.clock().now()) {
            Lookup::Live(record) => Ok(record),
            Lookup::NeedsUpstream => self.cache.session(&verified.sid).await,
            Lookup::Refused(error) => Err(error),
        };
        match session {
            Ok(record) => {
                let now = self.cache.clock().now();
                self.admit(record, verified, sent_by, now)
            }
            Err(error) => self.refuse(error.into(), Some(verified.sid), Some(sent_by)),
        }
    }

    /// What the store's answer means at `now`, the same on both paths. Whose session it is
    /// comes first: another app's session (a store or signing key shared between apps) is never
    /// admitted, nor refreshed with our credentials.
    fn classify(
        &self,
        found: Result<Option<Arc<SessionRecord>>, StoreError>,
        now: SystemTime,
    ) -> Lookup {
        match found {
            Ok(Some(record)) if self.cache.serves(&record) => {
                if self.cache.needs_upstream_at(&record, now) {
                    Lookup::NeedsUpstream
                } else {
                    Lookup::Live(record)
                }
            }
            Ok(_) => Lookup::Refused(SessionError::NotFound),
            Err(error) => Lookup::Refused(SessionError::Store(error)),
        }
    }

    /// Several session cookies were sent (one may have been tossed by a sibling domain): trust
    /// the one that verifies if exactly one does, else none.
    fn verify_one_cookie(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let mut verified = source::cookies(headers, &self.cookie_name)
            .filter_map(|token| self.tokens.verify_at(token.ok()?, now).ok());
        match (verified.next(), verified.next()) {
            (Some(one), None) => Ok(one),
            _ => {
                tracing::debug!(
                    outcome = "rejected",
                    "several session cookies, and not exactly one of them verifies"
                );
                Err(AuthError::InvalidToken)
            }
        }
    }

    /// The user for a live session, and a re-issued token if this one nears its end.
    fn admit(
        &self,
        record: Arc<SessionRecord>,
        verified: VerifiedToken,
        sent_by: SentBy,
        now: SystemTime,
    ) -> Outcome {
        let reissue = if self
            .tokens
            .should_reissue(verified.expires_at, record.expires_at, now)
        {
            self.reissue(&record, sent_by, now)
        } else {
            None
        };
        tracing::trace!(sid = %record.sid, outcome = "authenticated", reissued = reissue.is_some());
        Outcome::User(WeChatUser::new(record, Arc::clone(&self.upstream)), reissue)
    }

    fn reissue(&self, record: &SessionRecord, sent_by: SentBy, now: SystemTime) -> Option<Reissue> {
        let issued = match self.tokens.renew(record, now) {
            Ok(issued) => issued,
            Err(error) => {
                tracing::error!(%error, "could not re-issue a session token");
                return None;
            }
        };
        tracing::debug!(sid = %record.sid, outcome = "reissued", "session token re-issued");
        match sent_by {
            SentBy::Cookie | SentBy::Cookies => {
                let max_age = unix_secs(issued.expires_at).saturating_sub(unix_secs(now));
                Some(Reissue::new(
                    SET_COOKIE,
                    self.cookie.set(&issued.value, max_age)?,
                ))
            }
            SentBy::Header => Some(Reissue::new(
                REISSUED_TOKEN_HEADER,
                HeaderValue::try_from(issued.value).ok()?,
            )),
        }
    }

    /// A refusal, with a `Set-Cookie` that deletes the session cookie when it can never become
    /// valid again (malformed, oversized, forged, expired, ended, grant gone), so the browser
    /// stops sending it.
    fn refuse(&self, error: AuthError, sid: Option<SessionId>, sent_by: Option<SentBy>) -> Outcome {
        let dead = matches!(
            error,
            AuthError::MalformedCredentials
                | AuthError::InvalidToken
                | AuthError::TokenExpired
                | AuthError::SessionExpired
                | AuthError::ReauthRequired
        );
        let clear = (dead && sent_by == Some(SentBy::Cookie))
            .then(|| self.cookie.clear())
            .flatten()
            .map(|value| Reissue::new(SET_COOKIE, value));
        match sid {
            Some(sid) => {
                tracing::debug!(%sid, outcome = "rejected", reason = error.code(), "session refused");
            }
            None => tracing::debug!(
                outcome = "rejected",
                reason = error.code(),
                "request refused"
            ),
        }
        Outcome::Refused(Refusal { error, sid, clear })
    }
}
