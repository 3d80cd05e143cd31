//! Scan-to-log-in with an Official Account ([`ScanLogin`]): a browser starts a login and shows
//! a temporary parametric QR code (or, in keyword mode, a short code to send to the account);
//! WeChat pushes the scan (or the message) to the account's server URL; the browser that
//! started it, and only it, then gets the session, once.
//!
//! Nothing is kept per process, so the push may reach any instance of a fleet and the browser's
//! polls any other:
//!
//! - A **scene** (the QR code's `scene_str`) is `s` + base64url(expiry ‖ 8 random bytes ‖ a
//!   12-byte HMAC of both under a key derived from the key ring): every instance checks it, and
//!   a push for a forged or expired scene is ignored without writing anything.
//! - The **binding cookie** of the browser that started is an HMAC of the scene: seeing the QR
//!   code (which shows the scene) gives no one the cookie.
//! - The shared store's values, each written once: `scan:<scene>` (the openid the first push
//!   reported; WeChat's retries find it there and change nothing), `scan-used:<scene>` (the
//!   session was handed out), `scan-code:<code>` (keyword mode: the scene a code stands for).
//!
//! The QR code is made with the account's app access token, fetched once for the fleet
//! (`with_app_token`), never per code; the unionid is looked up with it when the session is
//! opened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wechat_oauth::{AppId, OpenId, PushError, PushQuery, PushVerifier};
use wechat_sessions::{LoginClient, LoginFlow, SharedStore};

use super::config::ScanLogin;
use super::{LoginEndpoints, LoginSuccess, safe_return_to};
use crate::apps::AppKind;
use crate::limits::LoginLimiter;
use crate::pages::escape_html;
use crate::rejection::AuthError;
use crate::state::StateError;

/// The name of the scan flow's binding cookie (HttpOnly, for the code's lifetime).
pub const SCAN_BINDING_COOKIE: &str = "wechat_login_scan";

/// Keyword codes: 8 digits.
const KEYWORD_DIGITS: u32 = 8;

/// How long after a code's end its scan may still be collected by the browser.
const USE_GRACE: Duration = Duration::from_secs(60);

/// How long a plain push's query is remembered with the body it came with.
const PLAIN_QUERY_TTL: Duration = Duration::from_secs(600);

/// The scan flow's state: the push verifier, the scene key and the settings.
pub(crate) struct Scan {
    verifier: PushVerifier,
    appid: AppId,
    key: [u8; 32],
    code_ttl: Duration,
    sandbox_base: Option<String>,
    /// The limits on starting codes.
    starts: std::sync::Arc<LoginLimiter>,
}

impl Scan {
    /// The flow of the Official Account `appid`, its scenes signed with `key`, its starts
    /// counted on `clock`.
    pub(crate) fn new(
        config: ScanLogin,
        appid: AppId,
        key: [u8; 32],
        clock: wechat_sessions::SharedClock,
    ) -> Result<Self, String> {
        let mut verifier = PushVerifier::new(appid.clone(), config.token);
        match &config.aes_key {
            Some((aes_key, mode)) => {
                verifier = verifier
                    .encoding_aes_key(aes_key, *mode)
                    .map_err(|e| e.to_string())?;
            }
            None if !config.allow_plain => {
                return Err(
                    "scan login needs the Official Account's EncodingAESKey (safe mode): \
                    set ScanLogin::encoding_aes_key, or allow_plain_pushes knowingly"
                        .to_owned(),
                );
            }
            None => {}
        }
        Ok(Self {
            verifier,
            appid,
            key,
            code_ttl: config
                .code_ttl
                .clamp(Duration::from_secs(60), Duration::from_secs(2_592_000)),
            sandbox_base: config.sandbox_base,
            starts: std::sync::Arc::new(LoginLimiter::new(config.start_limits, clock)),
        })
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// A new scene, valid until `expires`.
    fn new_scene(&self, expires: SystemTime) -> String {
        let secs = expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut bytes = [0u8; 24];
        bytes[..4].copy_from_slice(&u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes());
        bytes[4..12].copy_from_slice(&rand::random::<[u8; 8]>());
        let tag = self.mac(b"scene", &bytes[..12]);
        bytes[12..].copy_from_slice(&tag[..12]);
        format!("s{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// When `scene` expires, if it is one of ours.
    fn expiry(&self, scene: &str) -> Option<SystemTime> {
        let text = scene.strip_prefix('s').filter(|t| t.len() == 32)?;
        let mut bytes = [0u8; 24];
        (URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()? == 24).then_some(())?;
        let tag = self.mac(b"scene", &bytes[..12]);
        same_tag(&tag[..12], &bytes[12..]).then_some(())?;
        let secs = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        Some(UNIX_EPOCH + Duration::from_secs(u64::from(secs)))
    }

    /// The binding cookie's value of the browser that started `scene`.
    fn binding_of(&self, scene: &str) -> String {
        URL_SAFE_NO_PAD.encode(&self.mac(b"binding", scene.as_bytes())[..16])
    }
}

/// Constant-time equality of two tags.
fn same_tag(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A scan login started: what the page shows and where it asks for the outcome. Its `Debug`
/// never shows the binding cookie.
#[derive(Clone)]
#[non_exhaustive]
pub struct ScanStart {
    /// The QR code's ticket, in QR mode.
    pub ticket: Option<String>,
    /// The QR code's image (`showqrcode?ticket=`), in QR mode.
    pub qr_image_url: Option<String>,
    /// The code to send to the Official Account as a message, in keyword mode.
    pub keyword: Option<String>,
    /// Seconds until the code stops working.
    pub expires_in: u64,
    /// Where the browser asks for the outcome (a path on this site, with its query).
    pub status_url: String,
    /// The `Set-Cookie` value of the binding cookie the outcome is for.
    pub binding_cookie: Option<HeaderValue>,
}

impl std::fmt::Debug for ScanStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanStart")
            .field("ticket", &self.ticket)
            .field("keyword", &self.keyword)
            .field("expires_in", &self.expires_in)
            .field("status_url", &self.status_url)
            .field(
                "binding_cookie",
                &self.binding_cookie.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct StartBody<'a> {
    qr_image_url: Option<&'a str>,
    keyword: Option<&'a str>,
    expires_in: u64,
    status_url: &'a str,
}

impl ScanStart {
    /// `{"qr_image_url","keyword","expires_in","status_url"}` (one of the first two is `null`).
    pub fn to_json(&self) -> Bytes {
        let body = StartBody {
            qr_image_url: self.qr_image_url.as_deref(),
            keyword: self.keyword.as_deref(),
            expires_in: self.expires_in,
            status_url: &self.status_url,
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// A browser's poll of a scan login (see [`LoginEndpoints::scan_status`]). Its `Debug` never
/// shows the binding.
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct ScanPoll<'a> {
    /// The status URL's `scene`.
    pub scene: &'a str,
    /// The scan binding cookie's value ([`LoginEndpoints::scan_binding`]).
    pub binding: Option<&'a str>,
    /// The status URL's `return_to`.
    pub return_to: Option<&'a str>,
    /// Where the login comes from, recorded in its session.
    pub from: Option<&'a LoginClient>,
    /// Who is asking, for the login limits.
    pub client: Option<&'a str>,
}

impl std::fmt::Debug for ScanPoll<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPoll")
            .field("scene", &self.scene)
            .field("binding", &self.binding.map(|_| "[redacted]"))
            .field("return_to", &self.return_to)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<'a> ScanPoll<'a> {
    /// A poll of `scene` by the browser holding `binding`.
    pub fn new(scene: &'a str, binding: Option<&'a str>) -> Self {
        Self {
            scene,
            binding,
            ..Self::default()
        }
    }

    /// Where to come back to after login.
    pub fn return_to(mut self, return_to: Option<&'a str>) -> Self {
        self.return_to = return_to;
        self
    }

    /// Where the login comes from.
    pub fn from(mut self, from: Option<&'a LoginClient>) -> Self {
        self.from = from;
        self
    }

    /// Who is asking, for the login limits.
    pub fn client(mut self, client: Option<&'a str>) -> Self {
        self.client = client;
        self
    }
}

/// What a browser polling a scan learns.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ScanStatus {
    /// Not scanned yet.
    Pending,
    /// The code ran out, or its scan already gave its session: start again.
    Expired,
    /// Scanned: the session, for this browser, this once.
    LoggedIn(LoginSuccess),
}

/// Why a push was not taken (WeChat's server URL gets the status: 403, 400, or 503). WeChat
/// retries only a push that got no answer within 5 s, so a scan refused for a store outage
/// is lost: the page stays pending until the code ends, and the user scans again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanPushError {
    /// Not WeChat's push for this account (signature, time, mode, body, app).
    #[error(transparent)]
    Refused(#[from] PushError),
    /// The shared store did not answer.
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// Scan login is not configured here.
    #[error("scan login is not enabled")]
    Disabled,
}

impl ScanPushError {
    /// The HTTP status to answer WeChat with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Refused(PushError::BadSignature | PushError::Stale) => {
                http::StatusCode::FORBIDDEN
            }
            Self::Refused(PushError::TooLarge) => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::Refused(_) => http::StatusCode::BAD_REQUEST,
            Self::StoreUnavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::Disabled => http::StatusCode::NOT_FOUND,
        }
    }
}

fn remaining(expires: SystemTime, now: SystemTime) -> Duration {
    expires.duration_since(now).unwrap_or_default()
}

impl<St: SharedStore> LoginEndpoints<St> {
    fn scan(&self) -> Result<&Scan, AuthError> {
        self.inner.scan.as_ref().ok_or(AuthError::ScanLoginDisabled)
    }

    fn store_error(error: impl std::fmt::Display) -> AuthError {
        tracing::error!(%error, "scan login: the session store is unavailable");
        AuthError::StoreUnavailable
    }

    /// Starts a scan login for `client` (its key, as for the login limits): a QR code made with
    /// the account's app access token (or, with `keyword`, a code to send to the account), the
    /// status URL (coming back to `return_to`, a path on this site) and the binding cookie of
    /// this browser. Each start counts against the client's and everyone's
    /// [`start_limits`](crate::ScanLogin::start_limits): over them, 429 `too_many_attempts`.
    pub async fn scan_start(
        &self,
        keyword: bool,
        return_to: Option<&str>,
        client: Option<&str>,
    ) -> Result<ScanStart, AuthError> {
        let scan = self.scan()?;
        let web = self.inner.web.as_ref().ok_or(AuthError::WebLoginDisabled)?;
        let admission = scan.starts.admit(client).map_err(|wait| {
            tracing::warn!(
                outcome = "scan_start_limited",
                "too many scan logins started; refused"
            );
            AuthError::TooManyAttempts(wait)
        })?;
        let started = self.make_code(scan, web, keyword, return_to).await;
        // A code made keeps its place for the window; one that could not be made gives it back.
        match &started {
            Ok(_) => admission.failed(),
            Err(_) => admission.succeeded(),
        }
        started
    }

    /// The code of a new scan login, with its status URL and binding cookie.
    async fn make_code(
        &self,
        scan: &Scan,
        web: &super::WebFlow,
        keyword: bool,
        return_to: Option<&str>,
    ) -> Result<ScanStart, AuthError> {
        let now = self.inner.cache.clock().now();
        let expires = now + scan.code_ttl;
        let scene = scan.new_scene(expires);
        // The status URL's query: pairs until the end (a form serializer is not `Send`).
        let mut pairs = vec![("scene", scene.clone())];
        let (mut qr_image_url, mut code, mut qr_ticket) = (None, None, None);
        if keyword {
            let store = self.inner.cache.store();
            for _ in 0..4 {
                let candidate = format!(
                    "{:0width$}",
                    rand::random::<u32>() % 10u32.pow(KEYWORD_DIGITS),
                    width = KEYWORD_DIGITS as usize
                );
                let taken = store
                    .put_value_if_absent(
                        &format!("scan-code:{candidate}"),
                        scene.clone().into_bytes(),
                        scan.code_ttl + Duration::from_secs(60),
                    )
                    .await
                    .map_err(Self::store_error)?;
                if taken.is_none() {
                    code = Some(candidate);
                    break;
                }
            }
            let code = code.clone().ok_or(AuthError::StoreUnavailable)?;
            pairs.push(("kw", code));
        } else {
            let client = self
                .inner
                .cache
                .client_for(&scan.appid)
                .ok_or(AuthError::AppNotConfigured)?;
            let ticket = self
                .inner
                .cache
                .with_app_token(&scan.appid, |token| {
                    let (client, scene) = (client.clone(), scene.clone());
                    async move { client.create_qr_scene(&token, &scene, scan.code_ttl).await }
                })
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "scan login: the QR code could not be made");
                    AuthError::from(error)
                })?;
            qr_image_url = Some(client.qr_image_url(&ticket.ticket));
            pairs.push(("qr", ticket.ticket.clone()));
            qr_ticket = Some(ticket.ticket);
        }
        if let Some(path) = return_to
            .and_then(safe_return_to)
            .filter(|p| *p != web.after_login)
        {
            pairs.push(("return_to", path.to_owned()));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let binding_cookie = self
            .scan_binding_cookie()
            .set(&scan.binding_of(&scene), scan.code_ttl.as_secs());
        Ok(ScanStart {
            ticket: qr_ticket,
            qr_image_url,
            keyword: code,
            expires_in: scan.code_ttl.as_secs(),
            status_url: format!("{}?{query}", self.inner.paths.scan_status),
            binding_cookie,
        })
    }

    /// The scan flow's binding cookie.
    fn scan_binding_cookie(&self) -> crate::cookie::SessionCookie {
        self.flow_cookie(SCAN_BINDING_COOKIE)
    }

    /// The scan binding cookie's value in a request, if exactly one was sent.
    pub fn scan_binding<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        self.scan_binding_cookie().value_in(headers)
    }

    /// The `Set-Cookie` value that clears the scan binding cookie.
    pub fn clear_scan_binding(&self) -> Option<HeaderValue> {
        self.scan_binding_cookie().clear()
    }

    /// WeChat's server URL handshake: the `echostr` to answer.
    pub fn scan_echo<'q>(&self, query: &PushQuery<'q>) -> Result<&'q str, ScanPushError> {
        let scan = self.inner.scan.as_ref().ok_or(ScanPushError::Disabled)?;
        Ok(scan.verifier.echo(query, self.inner.cache.clock().now())?)
    }

    /// A push from WeChat to the account's server URL: checked and opened; a scan of one of
    /// our codes (or a keyword message naming one) marks it scanned by the pushing user, once.
    /// A push for a forged, expired or already scanned code changes nothing; so does any other
    /// event or message. `Ok` is answered `success`.
    pub async fn scan_push(&self, query: &PushQuery<'_>, body: &[u8]) -> Result<(), ScanPushError> {
        let scan = self.inner.scan.as_ref().ok_or(ScanPushError::Disabled)?;
        let now = self.inner.cache.clock().now();
        let message = scan.verifier.open(query, body, now).inspect_err(|error| {
            tracing::warn!(%error, outcome = "push_refused", "a push to the scan endpoint was refused");
        })?;
        let store = self.inner.cache.store();
        if query.encrypt_type != Some("aes") {
            // A plain push's signature does not cover its body: take each signed query with
            // the first body it came with only (WeChat's retries send the same bytes).
            let digest: [u8; 32] = Sha256::digest(body).into();
            let key = format!(
                "push:{}:{}:{}",
                query.signature.unwrap_or(""),
                query.timestamp.unwrap_or(""),
                query.nonce.unwrap_or("")
            );
            let first = store
                .put_value_if_absent(&key, digest.to_vec(), PLAIN_QUERY_TTL)
                .await
                .map_err(|_| ScanPushError::StoreUnavailable)?;
            if first.is_some_and(|seen| seen != digest) {
                tracing::warn!(
                    outcome = "push_refused",
                    "a signed push query came again with another body"
                );
                return Err(ScanPushError::Refused(PushError::BadSignature));
            }
        }
        let scene = match (message.qr_scene(), message.text()) {
            (Some(scene), _) => scene.to_owned(),
            (None, Some(text)) => {
                let code = text.trim();
                if code.len() != KEYWORD_DIGITS as usize
                    || !code.bytes().all(|b| b.is_ascii_digit())
                {
                    return Ok(());
                }
                let found = store
                    .get_value(&format!("scan-code:{code}"))
                    .await
                    .map_err(|_| ScanPushError::StoreUnavailable)?;
                match found.and_then(|scene| String::from_utf8(scene).ok()) {
                    Some(scene) => scene,
                    None => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        let Some(expires) = scan.expiry(&scene).filter(|at| *at > now) else {
            tracing::info!(
                outcome = "scan_ignored",
                "a push named no current scan code"
            );
            return Ok(());
        };
        let first = store
            .put_value_if_absent(
                &format!("scan:{scene}"),
                message.from_user_name.as_str().as_bytes().to_vec(),
                remaining(expires, now) + USE_GRACE,
            )
            .await
            .map_err(|_| ScanPushError::StoreUnavailable)?;
        match first {
            None => tracing::info!(outcome = "scanned", "a scan login code was scanned"),
            Some(_) => tracing::debug!(outcome = "scan_repeated", "a scan was pushed again"),
        }
        Ok(())
    }

    /// The outcome of a scan login for the browser that polls: pending, expired (or already
    /// used), or — once, for the browser holding the binding — the new session, coming back to
    /// the poll's `return_to` (else [`WebFlow::after_login`](crate::WebFlow::after_login)).
    /// Another browser (no or another binding) is refused (400 `invalid_state`) whatever the
    /// scan's state.
    pub async fn scan_status(&self, poll: ScanPoll<'_>) -> Result<ScanStatus, AuthError> {
        let ScanPoll {
            scene,
            binding,
            return_to,
            from,
            client,
        } = poll;
        let scan = self.scan()?;
        let invalid = AuthError::InvalidState(StateError::Invalid);
        let expires = scan.expiry(scene).ok_or(invalid.clone())?;
        let expected = scan.binding_of(scene);
        if !binding.is_some_and(|b| same_tag(b.as_bytes(), expected.as_bytes())) {
            return Err(invalid);
        }
        let now = self.inner.cache.clock().now();
        let store = self.inner.cache.store();
        let scanned = store
            .get_value(&format!("scan:{scene}"))
            .await
            .map_err(Self::store_error)?;
        let Some(openid) = scanned.and_then(|o| String::from_utf8(o).ok()) else {
            return Ok(match expires > now {
                true => ScanStatus::Pending,
                false => ScanStatus::Expired,
            });
        };
        let used_key = format!("scan-used:{scene}");
        if store
            .get_value(&used_key)
            .await
            .map_err(Self::store_error)?
            .is_some()
        {
            return Ok(ScanStatus::Expired);
        }
        // Scanned in time, but the browser comes back long after the code's end: too late (the
        // scan's own record is about to go).
        if now > expires + USE_GRACE {
            return Ok(ScanStatus::Expired);
        }
        let openid = OpenId::new(openid);
        let unionid = self.follower_unionid(scan, &openid).await?;
        let admission = self.admit(client, LoginFlow::Scan)?;
        // Outlives the scan's record by far, whatever the skew between the instances' clocks.
        let ttl = remaining(expires, now) + USE_GRACE + Duration::from_secs(600);
        match store
            .put_value_if_absent(&used_key, b"1".to_vec(), ttl)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                admission.succeeded();
                return Ok(ScanStatus::Expired);
            }
            Err(error) => {
                admission.succeeded();
                return Err(Self::store_error(error));
            }
        }
        let record = match self
            .inner
            .cache
            .login_scanned(&scan.appid, openid, unionid, from)
            .await
        {
            Ok(record) => {
                admission.succeeded();
                record
            }
            Err(error) => {
                admission.succeeded();
                return Err(error.into());
            }
        };
        let mut success = self.issue(record, AppKind::OfficialAccount)?;
        let after_login = self
            .inner
            .web
            .as_ref()
            .map_or("/", |web| web.after_login.as_str());
        success.return_to = Some(
            return_to
                .and_then(safe_return_to)
                .unwrap_or(after_login)
                .to_owned(),
        );
        Ok(ScanStatus::LoggedIn(success))
    }

    /// The unionid of a follower, when the account is bound to an Open Platform account:
    /// looked up with the app access token. A failure is answered (503), never skipped: a
    /// login without the unionid would get another user id.
    async fn follower_unionid(
        &self,
        scan: &Scan,
        openid: &OpenId,
    ) -> Result<Option<wechat_oauth::UnionId>, AuthError> {
        let client = self
            .inner
            .cache
            .client_for(&scan.appid)
            .ok_or(AuthError::AppNotConfigured)?;
        let follower = self
            .inner
            .cache
            .with_app_token(&scan.appid, |token| {
                let client = client.clone();
                async move { client.follower(&token, openid).await }
            })
            .await
            .map_err(|error| {
                tracing::warn!(%error, "scan login: the follower could not be looked up");
                AuthError::from(error)
            })?;
        Ok(follower.unionid)
    }

    /// The page a browser polls while a scan login is pending: the QR code (from the status
    /// URL's `qr` ticket) or the keyword (`kw`), refreshed every 2 s to `status_url`; in the
    /// sandbox, a link to the fake WeChat's "simulate scan" page. Its own
    /// `Content-Security-Policy` allows the QR image's origin.
    pub fn scan_page<B: From<Bytes>>(
        &self,
        ticket: Option<&str>,
        keyword: Option<&str>,
        status_url: &str,
    ) -> http::Response<B> {
        let scan = self.inner.scan.as_ref();
        let client = scan.and_then(|s| self.inner.cache.client_for(&s.appid));
        let image = ticket.zip(client).map(|(t, c)| c.qr_image_url(t));
        let what = match (&image, keyword) {
            (Some(url), _) => format!(
                "<p>Scan with WeChat to log in:</p>\n<p><img id=\"qr\" src=\"{}\" width=\"240\" height=\"240\" alt=\"QR code\"></p>\n",
                escape_html(url)
            ),
            (None, Some(code)) => format!(
                "<p>Send this code to our Official Account in WeChat to log in:</p>\n<p id=\"keyword\"><strong>{}</strong></p>\n",
                escape_html(code)
            ),
            (None, None) => "<p>This login has no code; start again.</p>\n".to_owned(),
        };
        let sandbox = scan
            .and_then(|s| s.sandbox_base.as_deref())
            .zip(ticket)
            .map_or(String::new(), |(base, ticket)| {
                format!(
                    "<p>Sandbox: <a id=\"simulate-scan\" href=\"{}/mock/qr/{}\">simulate the scan</a> (the fake WeChat's phone).</p>\n",
                    escape_html(base),
                    escape_html(&url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect::<String>())
                )
            });
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"2;url={refresh}\">\
             <title>Log in with WeChat</title></head>\n<body>\n<h1>Log in with WeChat</h1>\n{what}{sandbox}\
             <p>This page goes on by itself once you have.</p>\n</body></html>\n",
            refresh = escape_html(status_url),
        );
        let mut response = http::Response::new(B::from(Bytes::from(body)));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        let img_origin = image.as_deref().and_then(origin).unwrap_or_default();
        let csp = format!(
            "default-src 'self'; img-src 'self' {img_origin}; frame-ancestors 'none'; form-action 'self' https:"
        );
        if let Ok(csp) = HeaderValue::try_from(csp) {
            headers.insert(http::header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization()).filter(|o| o != "null")
}
