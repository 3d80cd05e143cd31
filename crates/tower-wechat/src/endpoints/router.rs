//! The axum router of the login endpoints (feature `axum`): each route parses its request,
//! calls [`LoginEndpoints`](super::LoginEndpoints) and writes the answer.

//! The endpoints as an axum router: one named handler per route, each parsing its request
//! and rendering the outcome of the framework-free method it calls.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use wechat_oauth::OfficialAccountScope;
use wechat_sessions::SharedStore;

use super::{
    AuthError, CodeLogin, LoginEndpoints, LoginSuccess, SessionChanged, StartRequest, WebCallback,
    json_response,
};
use crate::apps::AppKind;
use crate::rejection::Rejection;
use crate::user::{Anonymous, VerifiedSession, WeChatUser};

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    return_to: Option<String>,
}

#[derive(Deserialize)]
struct StartQuery {
    app: Option<String>,
    return_to: Option<String>,
    scope: Option<String>,
}

/// The body of a JSON login: an object with a string `code` and an optional string
/// `request_id` (other members are ignored).
struct CodeBody {
    code: String,
    request_id: Option<String>,
}

fn parse_code_body(headers: &HeaderMap, body: &Bytes) -> Result<CodeBody, AuthError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AuthError::UnsupportedMediaType);
    }
    let malformed =
        AuthError::BadRequest(r#"expected a JSON object {"code": "...", "request_id"?: "..."}"#);
    let serde_json::Value::Object(mut object) =
        serde_json::from_slice(body).map_err(|_| malformed.clone())?
    else {
        return Err(malformed);
    };
    let Some(serde_json::Value::String(code)) = object.remove("code") else {
        return Err(malformed);
    };
    let request_id = match object.remove("request_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id),
        Some(_) => return Err(malformed),
    };
    Ok(CodeBody { code, request_id })
}

/// A failure, answered with the rejection of the layer in front (if it left one in the
/// request), else the default JSON.
fn reject(failure: AuthError, parts: &Parts) -> Response {
    Rejection::new(failure, &parts.extensions).into_response()
}

/// A failure of a route a browser navigates to: the builder's page for a browser
/// (`Accept: text/html`), the rejection otherwise; with the page headers either way.
fn page_or_reject<St: SharedStore>(
    endpoints: &LoginEndpoints<St>,
    failure: AuthError,
    parts: &Parts,
) -> Response {
    let mut response: Response = if super::wants_html(&parts.headers) {
        endpoints.html_failure(&failure, &parts.headers)
    } else {
        reject(failure, parts)
    };
    crate::headers::secure_page_headers(response.headers_mut());
    response
}

fn answer(result: Result<LoginSuccess, AuthError>, parts: &Parts) -> Response {
    match result {
        Ok(success) => {
            let mut response: Response = json_response(StatusCode::OK, success.to_json().to_vec());
            response.extensions_mut().insert(SessionChanged);
            response
        }
        Err(failure) => reject(failure, parts),
    }
}

fn redirect(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(header::LOCATION, location);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => AuthError::Misconfigured.to_response(),
    }
}

/// A browser flow's answer once it logged in: the session cookie set, the flow's binding
/// cookie cleared, and the session marked changed (the layer re-issues no token on it).
fn browser_logged_in(
    mut response: Response,
    session: Option<HeaderValue>,
    clear_binding: Option<HeaderValue>,
) -> Response {
    for cookie in [session, clear_binding].into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response.extensions_mut().insert(SessionChanged);
    response
}

fn no_content(clear_cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = clear_cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response.extensions_mut().insert(SessionChanged);
    response
}

/// The refusal for a logout route that found no session to end: the layer's error, else
/// "no credentials" (optional mode) or "no layer".
fn no_session(parts: &Parts) -> Response {
    let extensions = &parts.extensions;
    let error = extensions.get::<AuthError>().cloned().unwrap_or(
        if extensions.get::<Anonymous>().is_some() {
            AuthError::MissingToken
        } else {
            AuthError::MissingLayer
        },
    );
    reject(error, parts)
}

/// The session a logout route ends: a live one, or one whose token verified but which
/// could not be served (ended, WeChat or the store down).
fn session_of(parts: &Parts) -> Option<wechat_sessions::SessionId> {
    let extensions = &parts.extensions;
    extensions
        .get::<WeChatUser>()
        .map(WeChatUser::session_id)
        .or_else(|| extensions.get::<VerifiedSession>().map(|v| v.0))
}

/// A JSON code login to the app of `kind`.
async fn submit<St: SharedStore>(
    endpoints: LoginEndpoints<St>,
    kind: AppKind,
    parts: Parts,
    body: Bytes,
) -> Response {
    // An app that is not configured has no endpoint, whatever was sent to it.
    let parsed = endpoints
        .app(kind)
        .and_then(|_| parse_code_body(&parts.headers, &body));
    match parsed {
        Ok(body) => {
            let client = endpoints.client_of(&parts);
            let from = endpoints.login_client_of(&parts);
            let request = CodeLogin::new(&body.code)
                .request_id(body.request_id.as_deref())
                .client(client.as_deref())
                .from(from.as_ref());
            answer(endpoints.login_through(kind, request).await, &parts)
        }
        Err(failure) => reject(failure, &parts),
    }
}

async fn code_login<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    body: Bytes,
) -> Response {
    submit(endpoints, AppKind::MobileApp, parts, body).await
}

async fn mini_program_login<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    body: Bytes,
) -> Response {
    submit(endpoints, AppKind::MiniProgram, parts, body).await
}

/// The start request a query asks for: `app` (web, oa), `return_to`, `scope`.
fn start_request<'a>(
    headers: &HeaderMap,
    query: &'a StartQuery,
) -> Result<StartRequest<'a>, AuthError> {
    let app = match query.app.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            name.parse::<AppKind>()
                .map_err(|_| AuthError::BadRequest("app must be web or oa"))?,
        ),
    };
    let scope = match query.scope.as_deref() {
        None | Some("") => None,
        Some("snsapi_base") => Some(OfficialAccountScope::Base),
        Some("snsapi_userinfo") => Some(OfficialAccountScope::UserInfo),
        Some(_) => {
            return Err(AuthError::BadRequest(
                "scope must be snsapi_base or snsapi_userinfo",
            ));
        }
    };
    Ok(StartRequest::from_headers(headers)
        .app(app)
        .return_to(query.return_to.as_deref())
        .scope(scope))
}

async fn web_start<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Response {
    let headers = &parts.headers;
    let started = match &query {
        Ok(Query(query)) => {
            start_request(headers, query).and_then(|request| endpoints.web_start(request))
        }
        Err(_) => Err(AuthError::BadRequest("malformed query")),
    };
    match started {
        Ok(start) => {
            let mut response = redirect(&start.url);
            if let Some(cookie) = start.binding_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(failure) if super::wants_html(headers) => endpoints.html_failure(&failure, headers),
        Err(failure) => reject(failure, &parts),
    }
}

async fn web_callback<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let fail = |failure: AuthError| page_or_reject(&endpoints, failure, &parts);
    let Ok(Query(query)) = query else {
        return fail(AuthError::BadRequest("malformed query"));
    };
    let client = endpoints.client_of(&parts);
    let from = endpoints.login_client_of(&parts);
    let callback = WebCallback::new(
        query.code.as_deref(),
        query.state.as_deref(),
        endpoints.binding(&parts.headers),
    )
    .return_to(query.return_to.as_deref())
    .client(client.as_deref())
    .from(from.as_ref())
    .from_headers(&parts.headers);
    match endpoints.web_callback(callback).await {
        Ok(success) => {
            let response = redirect(success.return_to.as_deref().unwrap_or("/"));
            let mut response = browser_logged_in(
                response,
                endpoints.session_cookie(&success),
                endpoints.clear_binding_cookie(),
            );
            crate::headers::secure_page_headers(response.headers_mut());
            response
        }
        Err(failure) => fail(failure),
    }
}

async fn logout<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    match session_of(&parts) {
        Some(sid) => match endpoints.logout_session(sid).await {
            Ok(()) => no_content(endpoints.clear_cookie()),
            Err(failure) => reject(failure, &parts),
        },
        None => no_session(&parts),
    }
}

async fn logout_all<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    // A live session names its user; a verified token whose session cannot be served just
    // now (WeChat down, access token expired) still does, through the stored record.
    let ended = match parts.extensions.get::<WeChatUser>() {
        Some(user) => endpoints.logout_all(user).await.map(Some),
        None => match session_of(&parts) {
            Some(sid) => endpoints.logout_all_by_session(sid).await,
            None => return no_session(&parts),
        },
    };
    match ended {
        Ok(Some(_)) => no_content(endpoints.clear_cookie()),
        Ok(None) => reject(AuthError::SessionExpired, &parts),
        Err(failure) => reject(failure, &parts),
    }
}

#[derive(Deserialize)]
struct ScanStartQuery {
    keyword: Option<String>,
    return_to: Option<String>,
}

/// `GET /auth/wechat/scan/start?keyword=1&return_to=`: the QR page (a browser) or
/// `{"qr_image_url","keyword","expires_in","status_url"}`, with the binding cookie.
async fn scan_start<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    query: Result<Query<ScanStartQuery>, QueryRejection>,
) -> Response {
    let html = super::wants_html(&parts.headers);
    let started = match &query {
        Ok(Query(q)) => {
            let keyword = matches!(q.keyword.as_deref(), Some("1" | "true"));
            let client = endpoints.client_of(&parts);
            endpoints
                .scan_start(keyword, q.return_to.as_deref(), client.as_deref())
                .await
        }
        Err(_) => Err(AuthError::BadRequest("malformed query")),
    };
    let start = match started {
        Ok(start) => start,
        Err(failure) => return page_or_reject(&endpoints, failure, &parts),
    };
    let mut response: Response = if html {
        endpoints.scan_page(
            start.ticket.as_deref(),
            start.keyword.as_deref(),
            &start.status_url,
        )
    } else {
        json_response(StatusCode::OK, start.to_json().to_vec())
    };
    if let Some(cookie) = start.binding_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    crate::headers::secure_page_headers(response.headers_mut());
    response
}

#[derive(Deserialize)]
struct ScanStatusQuery {
    scene: Option<String>,
    qr: Option<String>,
    kw: Option<String>,
    return_to: Option<String>,
}

/// `GET /auth/wechat/scan/status?scene=&qr=|kw=&return_to=`: for a browser, the QR page again
/// while pending, a 303 with the session cookie once scanned; for a script
/// `{"status":"pending"|"expired"|"logged_in"}` (with the cookie when logged in).
async fn scan_status<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    parts: Parts,
    query: Result<Query<ScanStatusQuery>, QueryRejection>,
) -> Response {
    let html = super::wants_html(&parts.headers);
    let fail = |failure: AuthError| page_or_reject(&endpoints, failure, &parts);
    let Ok(Query(query)) = query else {
        return fail(AuthError::BadRequest("malformed query"));
    };
    let client = endpoints.client_of(&parts);
    let from = endpoints.login_client_of(&parts);
    let poll = super::ScanPoll::new(
        query.scene.as_deref().unwrap_or(""),
        endpoints.scan_binding(&parts.headers),
    )
    .return_to(query.return_to.as_deref())
    .from(from.as_ref())
    .client(client.as_deref());
    let status_json = |status: &str| {
        json_response::<Body>(
            StatusCode::OK,
            serde_json::json!({ "status": status })
                .to_string()
                .into_bytes(),
        )
    };
    let mut response = match endpoints.scan_status(poll).await {
        Ok(super::ScanStatus::Pending) if html => {
            let url = parts.uri.path_and_query().map_or("", |p| p.as_str());
            endpoints.scan_page(query.qr.as_deref(), query.kw.as_deref(), url)
        }
        Ok(super::ScanStatus::Pending) => status_json("pending"),
        Ok(super::ScanStatus::Expired) => {
            // Done with this code either way: the browser forgets its binding.
            let mut response = match html {
                true => fail(AuthError::InvalidState(crate::state::StateError::Expired)),
                false => status_json("expired"),
            };
            if let Some(clear) = endpoints.clear_scan_binding() {
                response.headers_mut().append(header::SET_COOKIE, clear);
            }
            response
        }
        Ok(super::ScanStatus::LoggedIn(success)) => {
            let response = if html {
                let mut see_other = redirect(success.return_to.as_deref().unwrap_or("/"));
                *see_other.status_mut() = StatusCode::SEE_OTHER;
                see_other
            } else {
                status_json("logged_in")
            };
            browser_logged_in(
                response,
                endpoints.session_cookie(&success),
                endpoints.clear_scan_binding(),
            )
        }
        Err(failure) => return fail(failure),
    };
    crate::headers::secure_page_headers(response.headers_mut());
    response
}

/// `GET` (the server URL handshake) and `POST` (a push) of the Official Account's server URL.
async fn scan_events<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let query = wechat_oauth::PushQuery::from_pairs(&pairs);
    let plain = |status: StatusCode, text: String| -> Response {
        let mut response = (status, text).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    let outcome = if parts.method == http::Method::GET {
        endpoints.scan_echo(&query).map(str::to_owned)
    } else {
        match axum::body::to_bytes(body, wechat_oauth::push::MAX_PUSH_BYTES).await {
            Ok(bytes) => endpoints
                .scan_push(&query, &bytes)
                .await
                .map(|()| "success".to_owned()),
            Err(_) => Err(super::ScanPushError::Refused(
                wechat_oauth::PushError::TooLarge,
            )),
        }
    };
    match outcome {
        Ok(text) => plain(StatusCode::OK, text),
        Err(error) => plain(error.status(), error.to_string()),
    }
}

impl<St: SharedStore> LoginEndpoints<St> {
    /// The endpoints as an axum router, to merge into the application's. Its routes, at
    /// the [`LoginPaths`](super::LoginPaths) of the builder (these are the defaults):
    ///
    /// | route | answers |
    /// |---|---|
    /// | `POST /auth/wechat/login` | mobile app: `{"code", "request_id"?}` → session token JSON |
    /// | `POST /auth/wechat/miniprogram/login` | Mini Program: the same, with a `wx.login` code |
    /// | `GET /auth/wechat/web/start` | `?app=web\|oa&return_to=&scope=` → 302 to WeChat |
    /// | `GET /auth/wechat/web/callback` | WeChat's redirect → session cookie, 302 to `return_to` |
    /// | `POST /auth/logout` | ends this session → 204 |
    /// | `POST /auth/logout/all` | ends every session of this user, all apps → 204 |
    /// | `GET /auth/wechat/scan/start` | `?keyword=1&return_to=` → the QR page, or its JSON |
    /// | `GET`/`POST /auth/wechat/scan/events` | the Official Account's server URL (WeChat's pushes) |
    /// | `GET /auth/wechat/scan/status` | a scan's outcome → the page again, or 303 with the session cookie |
    ///
    /// The endpoints of an app that is not configured answer 404 `app_not_configured`.
    /// The logout routes read the [`WeChatUser`], so the
    /// [`WeChatAuthLayer`](crate::WeChatAuthLayer) wraps the router in *optional* mode
    /// (the default; a required layer would refuse the login routes themselves, which are
    /// called without a session). Failures answer with that layer's rejection.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let paths = self.inner.paths.clone();
        Router::new()
            .route(&paths.login, post(code_login::<St>))
            .route(&paths.mini_program_login, post(mini_program_login::<St>))
            .route(&paths.web_start, get(web_start::<St>))
            .route(&paths.web_callback, get(web_callback::<St>))
            .route(&paths.logout, post(logout::<St>))
            .route(&paths.logout_all, post(logout_all::<St>))
            .route(&paths.scan_start, get(scan_start::<St>))
            .route(
                &paths.scan_events,
                get(scan_events::<St>).post(scan_events::<St>),
            )
            .route(&paths.scan_status, get(scan_status::<St>))
            .with_state(self)
    }
}
