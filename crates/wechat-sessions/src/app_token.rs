//! The app access token (`client_credential`, from `/cgi-bin/stable_token`): one per app for
//! the fleet. The Mini Program calls made with it are in `mini_program.rs`.
//!
//! One token per app for the whole fleet. An instance uses its own copy while it is fresh;
//! otherwise one flight per app (single flight in process) takes the fleet-wide lease
//! `apptoken:<appid>`, adopts the copy another instance shared through the store
//! ([`SessionStore::put_secret`]) if that one is fresh, and only else asks WeChat — so one
//! upstream call per expiry serves every instance. Normal mode (`force_refresh: false`) is
//! always tried first: after another party forced a refresh it answers the new token. Only when
//! WeChat refused a token (40001/40014/42001) and normal mode still answers that token is a
//! forced refresh made, at most once per [`SessionConfig::forced_refresh_interval`](crate::SessionConfig::forced_refresh_interval) for the whole
//! fleet (WeChat allows a few a day).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wechat_oauth::{AppAccessToken, AppId, AppTokenGrant, ErrCode, ErrorClass};

use crate::env::Env;
use crate::error::{AppTokenError, CallError};
use crate::flight::Flights;
use wechat_oauth::clock::unix_millis;
use wechat_session_store::SharedStore;

/// A fresh token is never fetched again sooner than this after it was fetched, even if WeChat
/// handed it out close to its expiry (normal mode may answer an old token for a while).
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// An app token as held: the token, when it expires, and when to fetch again.
#[derive(Clone)]
pub(crate) struct HeldToken {
    token: AppAccessToken,
    expires_at: SystemTime,
    refresh_at: SystemTime,
}

impl HeldToken {
    fn new(grant: AppTokenGrant, now: SystemTime, window: Duration) -> Self {
        let refresh_at = grant
            .expires_at
            .checked_sub(window)
            .unwrap_or(now)
            .max(now + MIN_REFETCH)
            .min(grant.expires_at);
        Self {
            token: grant.access_token,
            expires_at: grant.expires_at,
            refresh_at,
        }
    }

    /// Fresh: no need to fetch again.
    fn fresh(&self, now: SystemTime) -> bool {
        now < self.refresh_at
    }

    /// Still accepted by WeChat, as far as we know.
    fn valid(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }

    /// Usable by a caller that found `refused` wanting.
    fn usable(&self, refused: Option<&AppAccessToken>, now: SystemTime) -> bool {
        self.fresh(now) && Some(&self.token) != refused
    }

    /// `<expires at, Unix ms>:<refresh at, Unix ms>:<token>`.
    fn encode(&self) -> Vec<u8> {
        format!(
            "{}:{}:{}",
            unix_millis(self.expires_at),
            unix_millis(self.refresh_at),
            self.token.secret()
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ':');
        let expires_at = parts.next()?.parse().ok()?;
        let refresh_at = parts.next()?.parse().ok()?;
        let token = parts.next().filter(|t| !t.is_empty())?;
        Some(Self {
            token: AppAccessToken::new(token),
            expires_at: UNIX_EPOCH + Duration::from_millis(expires_at),
            refresh_at: UNIX_EPOCH + Duration::from_millis(refresh_at),
        })
    }
}

/// Decodes a shared app token and, if it decodes, checks that encoding is stable (for the fuzz
/// targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_shared_token(bytes: &[u8]) {
    if let Some(held) = HeldToken::decode(bytes) {
        let once = held.encode();
        let again = HeldToken::decode(&once)
            .expect("an encoded token decodes")
            .encode();
        assert_eq!(once, again, "a shared app token re-encodes unchanged");
    }
}

/// Counts an app token refresh outcome.
fn app_token_metric(appid: &AppId, outcome: &'static str) {
    metrics::counter!(
        crate::metrics::APP_TOKEN_REFRESHES,
        "appid" => appid.as_str().to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// The store's name of an app's token.
fn token_key(appid: &AppId) -> String {
    format!("apptoken:{appid}")
}

/// The per-cache state of app tokens.
pub(crate) struct AppTokens {
    held: Mutex<HashMap<AppId, HeldToken>>,
    flights: Arc<Flights<AppId, Result<HeldToken, AppTokenError>>>,
    /// When this instance last forced a refresh, per app (the store keeps the fleet's).
    last_forced: Mutex<HashMap<AppId, SystemTime>>,
}

impl AppTokens {
    pub(crate) fn new() -> Self {
        Self {
            held: Mutex::default(),
            flights: Arc::new(Flights::named("app_token")),
            last_forced: Mutex::default(),
        }
    }

    fn held(&self, appid: &AppId) -> Option<HeldToken> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(appid)
            .cloned()
    }

    fn hold(&self, appid: &AppId, token: &HeldToken) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(appid.clone(), token.clone());
    }
}

/// The app token part at work: the tokens held, with the shared [`Env`].
pub(crate) struct AppTokenCalls<'a, S> {
    pub(crate) tokens: &'a Arc<AppTokens>,
    pub(crate) env: &'a Arc<Env<S>>,
}

impl<S: SharedStore> AppTokenCalls<'_, S> {
    /// See [`SessionManager::app_token`](crate::SessionManager::app_token).
    pub(crate) async fn app_token(&self, appid: &AppId) -> Result<AppAccessToken, AppTokenError> {
        let now = self.env.clock.now();
        let held = self.tokens.held(appid);
        if let Some(held) = &held
            && held.fresh(now)
        {
            return Ok(held.token.clone());
        }
        match self.renew(appid, None).await {
            Ok(token) => Ok(token),
            Err(AppTokenError::Unavailable { .. })
                if held.as_ref().is_some_and(|h| h.valid(self.env.clock.now())) =>
            {
                tracing::debug!(appid = %appid, "app token refresh failed; serving the copy until it expires");
                Ok(held.map(|h| h.token).expect("checked above"))
            }
            Err(error) => Err(error),
        }
    }

    /// See [`SessionManager::with_app_token`](crate::SessionManager::with_app_token).
    pub(crate) async fn with_app_token<T, F, Fut>(
        &self,
        appid: &AppId,
        call: F,
    ) -> Result<T, CallError>
    where
        F: Fn(AppAccessToken) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        let first = self.app_token(appid).await?;
        match call(first.clone()).await {
            Err(error) if error.class() == ErrorClass::RefreshAndRetry => {
                tracing::info!(appid = %appid, errcode = ?error.errcode(), "WeChat refused the app token; renewing once");
                let second = self.renew(appid, Some(first)).await?;
                Ok(call(second).await?)
            }
            other => Ok(other?),
        }
    }

    /// A token other than `refused` (when given), fresh, in one flight per app.
    async fn renew(
        &self,
        appid: &AppId,
        refused: Option<AppAccessToken>,
    ) -> Result<AppAccessToken, AppTokenError> {
        if self.env.client_for(appid).is_none() {
            return Err(AppTokenError::AppNotConfigured);
        }
        // A caller that found a token wanting may join a flight that started before it did and
        // brings back that token: then it flies once more, with its own reason.
        for _ in 0..2 {
            let (tokens, env) = (Arc::clone(self.tokens), Arc::clone(self.env));
            let (key, refusing) = (appid.clone(), refused.clone());
            let result = self
                .tokens
                .flights
                .run(appid.clone(), move || async move {
                    let calls = AppTokenCalls {
                        tokens: &tokens,
                        env: &env,
                    };
                    calls.fly(&key, refusing.as_ref()).await
                })
                .await
                .unwrap_or(Err(AppTokenError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }))?;
            if Some(&result.token) != refused.as_ref() {
                return Ok(result.token);
            }
        }
        Err(AppTokenError::Unavailable {
            retry_after: Duration::from_secs(1),
        })
    }

    /// One flight, under the fleet-wide lease: the holder adopts the shared copy or asks
    /// WeChat; the others wait for the shared copy, or the lease.
    async fn fly(
        &self,
        appid: &AppId,
        refused: Option<&AppAccessToken>,
    ) -> Result<HeldToken, AppTokenError> {
        if let Some(held) = self.tokens.held(appid)
            && held.usable(refused, self.env.clock.now())
        {
            return Ok(held);
        }
        self.env
            .under_lease(
                &token_key(appid),
                Box::pin(self.fly_app_token_holding(appid, refused)),
                move || async move {
                    let shared = self.shared_app_token(appid).await?;
                    shared.usable(refused, self.env.clock.now()).then(|| {
                        self.tokens.hold(appid, &shared);
                        Ok(shared)
                    })
                },
                || {
                    Err(AppTokenError::Unavailable {
                        retry_after: Duration::from_secs(1),
                    })
                },
                // Without the store the fleet cannot agree; normal mode is safe to ask.
                |error| async move {
                    tracing::warn!(%error, "no app token lease; asking WeChat without it");
                    self.fetch_app_token(appid, refused).await
                },
            )
            .await
    }

    async fn fly_app_token_holding(
        &self,
        appid: &AppId,
        refused: Option<&AppAccessToken>,
    ) -> Result<HeldToken, AppTokenError> {
        if let Some(shared) = self.shared_app_token(appid).await
            && shared.usable(refused, self.env.clock.now())
        {
            app_token_metric(appid, "adopted");
            tracing::debug!(appid = %appid, outcome = "adopted", "another instance fetched the app token");
            self.tokens.hold(appid, &shared);
            return Ok(shared);
        }
        self.fetch_app_token(appid, refused).await
    }

    /// The fleet's copy, if the store shares one that opens.
    async fn shared_app_token(&self, appid: &AppId) -> Option<HeldToken> {
        match self.env.store.get_secret(&token_key(appid)).await {
            Ok(Some(bytes)) => HeldToken::decode(&bytes),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "the shared app token could not be read");
                None
            }
        }
    }

    /// Asks WeChat: normal mode first; forced only if that answers the refused token and the
    /// fleet has not forced one within the interval.
    async fn fetch_app_token(
        &self,
        appid: &AppId,
        refused: Option<&AppAccessToken>,
    ) -> Result<HeldToken, AppTokenError> {
        let client = self
            .env
            .client_for(appid)
            .ok_or(AppTokenError::AppNotConfigured)?;
        let window = self.env.config.app_token_refresh_window;
        let failed = |error| {
            app_token_metric(appid, "failed");
            app_token_error(error)
        };
        let grant = client.stable_token(false).await.map_err(failed)?;
        let mut held = HeldToken::new(grant, self.env.clock.now(), window);
        if Some(&held.token) == refused {
            if let Err(limited) = self.may_force(appid).await {
                app_token_metric(appid, "force_limited");
                return Err(limited);
            }
            tracing::warn!(appid = %appid, outcome = "forced_refresh", "WeChat refused its own current app token; forcing a new one");
            let grant = client.stable_token(true).await.map_err(failed)?;
            held = HeldToken::new(grant, self.env.clock.now(), window);
            app_token_metric(appid, "forced");
        } else {
            app_token_metric(appid, "fetched");
        }
        self.tokens.hold(appid, &held);
        let ttl = held
            .expires_at
            .duration_since(self.env.clock.now())
            .unwrap_or_default();
        if !ttl.is_zero()
            && let Err(error) = self
                .env
                .store
                .put_secret(&token_key(appid), held.encode(), ttl)
                .await
        {
            tracing::warn!(%error, "the app token was not shared; other instances fetch their own");
        }
        tracing::info!(appid = %appid, outcome = "app_token_fetched", "new app access token");
        Ok(held)
    }

    /// Whether a forced refresh may be made now: not within the interval of the last one made
    /// by this instance, nor by any instance sharing the store.
    async fn may_force(&self, appid: &AppId) -> Result<(), AppTokenError> {
        let interval = self.env.config.forced_refresh_interval;
        let now = self.env.clock.now();
        {
            let mut last = self
                .tokens
                .last_forced
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(at) = last.get(appid)
                && let Ok(since) = now.duration_since(*at)
                && since < interval
            {
                return Err(AppTokenError::ForceLimited {
                    retry_after: interval - since,
                });
            }
            last.insert(appid.clone(), now);
        }
        let marker = format!("apptoken-forced:{appid}");
        match self
            .env
            .store
            .put_value_if_absent(&marker, unix_millis(now).to_string().into_bytes(), interval)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(AppTokenError::ForceLimited {
                retry_after: interval,
            }),
            Err(error) => Err(AppTokenError::Store(error)),
        }
    }
}

/// What a failed `stable_token` call means for callers.
fn app_token_error(error: wechat_oauth::Error) -> AppTokenError {
    match error.class() {
        ErrorClass::Misconfigured => {
            tracing::error!(%error, "WeChat rejected this app's credentials for its access token");
            AppTokenError::Misconfigured {
                errcode: error.errcode().unwrap_or(ErrCode(0)),
            }
        }
        _ => {
            tracing::warn!(%error, "the app access token could not be fetched");
            AppTokenError::Unavailable {
                retry_after: error.retry_after().unwrap_or(Duration::from_secs(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tokens_round_trip_and_refresh_before_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let grant = AppTokenGrant::new(
            AppAccessToken::new("tok:with:colons"),
            now + Duration::from_secs(7200),
        );
        let held = HeldToken::new(grant, now, Duration::from_secs(300));
        assert_eq!(held.refresh_at, now + Duration::from_secs(6900));
        let back = HeldToken::decode(&held.encode()).unwrap();
        assert_eq!(back.token.secret(), "tok:with:colons");
        assert_eq!(back.expires_at, held.expires_at);
        assert_eq!(back.refresh_at, held.refresh_at);
        assert!(HeldToken::decode(b"1:2:").is_none());
        assert!(HeldToken::decode(b"x:2:t").is_none());
        // A token handed out close to its expiry is kept a little, never past its expiry.
        let late = AppTokenGrant::new(AppAccessToken::new("t"), now + Duration::from_secs(10));
        let held = HeldToken::new(late, now, Duration::from_secs(300));
        assert_eq!(held.refresh_at, now + Duration::from_secs(10));
        let soon = AppTokenGrant::new(AppAccessToken::new("t"), now + Duration::from_secs(100));
        let held = HeldToken::new(soon, now, Duration::from_secs(300));
        assert_eq!(held.refresh_at, now + MIN_REFETCH);
    }
}
