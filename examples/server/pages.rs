//! The example server's pages for people in browsers: the home page (`GET /`, who is logged in,
//! where else they are logged in, or how to log in) and the logout forms behind it. Server-rendered HTML with no script and
//! no external asset, so the strict Content-Security-Policy the app sends holds.
//!
//! The logout forms are `POST`s guarded against cross-site requests: the session cookie is
//! `SameSite=Lax` (not sent on a cross-site POST), and the request must say it comes from this
//! site (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to ours when a browser does not send
//! `Sec-Fetch-Site`); anything else is 403. `POST /me/sessions/{id}/logout` is also an API
//! route: a request that carries no cookie (a bearer token) needs no such proof.

use axum::Extension;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use wechat_login::middleware::UserSessions;
use wechat_login::middleware::{LoginEndpoints, SessionChanged, WeChatUser, escape_html};
use wechat_login::oauth::Lang;
use wechat_login::sessions::SharedStore;

/// What the pages need.
pub struct Pages<St> {
    pub endpoints: LoginEndpoints<St>,
    /// This site's origin (`scheme://host:port`), for the forms' cross-site check.
    pub origin: String,
    /// The fake WeChat's address, in sandbox mode.
    pub sandbox: Option<String>,
    /// Whether scan-to-log-in (the Official Account's QR code) is on.
    pub scan: bool,
}

impl<St> Clone for Pages<St> {
    fn clone(&self) -> Self {
        Self {
            endpoints: self.endpoints.clone(),
            origin: self.origin.clone(),
            sandbox: self.sandbox.clone(),
            scan: self.scan,
        }
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head>\n\
         <body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body></html>\n"
    ))
}

/// `GET /style.css`: the pages' only style, from this origin (the CSP allows nothing else).
pub async fn style() -> impl IntoResponse {
    const CSS: &str = "body{font-family:system-ui,sans-serif;background:#f5f5f5;color:#222;margin:0}\
main{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem 2.5rem;border-radius:12px;\
box-shadow:0 1px 4px rgba(0,0,0,.1)}h1{font-size:1.6rem;margin-top:0}\
dl{display:grid;grid-template-columns:7rem 1fr;gap:.4rem 1rem}dt{color:#666}dd{margin:0;font-family:monospace}\
a#login,button{display:inline-block;background:#07c160;color:#fff;border:0;border-radius:6px;\
padding:.6rem 1.2rem;font-size:1rem;text-decoration:none;cursor:pointer;margin:.3rem .5rem .3rem 0}\
button#logout-all{background:#555}form{display:inline}pre{background:#f0f0f0;padding:1rem;\
overflow-x:auto;font-size:.85rem}";
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

/// `GET /`: the logged-in user, or the way to log in.
pub async fn home<St: SharedStore>(
    State(pages): State<Pages<St>>,
    user: Option<Extension<WeChatUser>>,
) -> Html<String> {
    let Some(Extension(user)) = user else {
        let sandbox = pages.sandbox.as_deref().map_or(String::new(), |base| {
            format!(
                "<p>Sandbox mode: a fake WeChat at <code>{}</code> stands in for the real one; \
                 its consent page lets you approve or deny.</p>\n",
                escape_html(base)
            )
        });
        let body = format!(
            "<p>This server logs users in with WeChat and keeps their session.</p>\n{sandbox}\
             <p><a id=\"login\" href=\"/auth/wechat/web/start\">Log in with WeChat</a>{scan}</p>\n\
             <h2>For API clients</h2>\n<pre>CODE=... # from the WeChat SDK on the phone\n\
             curl -X POST {origin}/auth/wechat/login -H 'content-type: application/json' \
             -d '{{\"code\":\"'$CODE'\"}}'\ncurl {origin}/me -H \"authorization: Bearer $TOKEN\"</pre>",
            origin = escape_html(&pages.origin),
            scan = if pages.scan {
                " <a id=\"scan-login\" href=\"/auth/wechat/scan/start\">Scan with WeChat (Official Account)</a>"
            } else {
                ""
            },
        );
        return page("wechat-login example", &body);
    };
    let profile = if user.scopes().allows_userinfo() && !user.is_snapshot_user() {
        match user.userinfo(Lang::ZhCn).await {
            Ok(info) => {
                // Only a web address becomes a link (never `javascript:` or `data:`).
                let avatar = info
                    .headimgurl
                    .as_deref()
                    .filter(|url| web_address(url))
                    .map_or(String::new(), |url| {
                        format!(" (<a href=\"{}\">avatar</a>)", escape_html(url))
                    });
                format!(
                    "<p id=\"nickname\">Nickname: {}{avatar}</p>\n",
                    escape_html(&info.nickname)
                )
            }
            Err(error) => format!(
                "<p>The profile is unavailable right now ({}).</p>\n",
                escape_html(&error.to_string())
            ),
        }
    } else {
        "<p>This login's grant does not include the profile.</p>\n".to_owned()
    };
    let sessions = match pages.endpoints.sessions(&user).await {
        Ok(list) => session_list(&list),
        Err(error) => format!(
            "<p>Your sessions cannot be listed right now ({}).</p>\n",
            escape_html(&error.to_string())
        ),
    };
    let scopes: Vec<&str> = user.scopes().iter().map(|s| s.as_str()).collect();
    let body = format!(
        "<dl id=\"user\">\n<dt>openid</dt><dd id=\"openid\">{}</dd>\n<dt>unionid</dt><dd>{}</dd>\n\
         <dt>scope</dt><dd>{}</dd>\n<dt>app</dt><dd>{}</dd>\n<dt>session</dt><dd>{}</dd>\n</dl>\n{profile}\
         <form method=\"post\" action=\"/session/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\n\
         <form method=\"post\" action=\"/session/logout-all\"><button id=\"logout-all\" type=\"submit\">Log out everywhere</button></form>\n{sessions}",
        escape_html(user.openid().as_str()),
        escape_html(user.unionid().map_or("(none)", |u| u.as_str())),
        escape_html(&scopes.join(" ")),
        escape_html(user.appid().as_str()),
        escape_html(&user.session_id().to_string()),
    );
    page("Logged in with WeChat", &body)
}

/// "Where you're logged in": one row per session, each with its own logout form.
fn session_list(list: &UserSessions) -> String {
    let now = list.as_of;
    let mut rows = String::new();
    for record in &list.sessions {
        let client = record.client.as_deref();
        let id = record.sid.to_string();
        let this = if record.sid == list.current {
            " <strong>(this browser)</strong>"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<li class=\"session\" id=\"session-{id}\">{app}{this}<br><small>{agent} · {network} · \
             logged in {created} · confirmed {confirmed}</small> \
             <form method=\"post\" action=\"/me/sessions/{id}/logout\">\
             <button class=\"end-session\" type=\"submit\">Log out</button></form></li>\n",
            app = escape_html(
                list.app_of(record)
                    .map_or(record.appid.as_str(), |k| k.as_str())
            ),
            agent = escape_html(
                client
                    .and_then(|c| c.user_agent())
                    .unwrap_or("unknown software")
            ),
            network = escape_html(
                client
                    .and_then(|c| c.network())
                    .unwrap_or("unknown network")
            ),
            created = ago(record.created_at, now),
            confirmed = ago(record.confirmed_at, now),
        ));
    }
    format!("<h2>Where you're logged in</h2>\n<ul id=\"sessions\">\n{rows}</ul>")
}

/// How long before `now` `time` was, coarsely: "just now", "5 min ago", "3 h ago", "2 days ago".
fn ago(time: std::time::SystemTime, now: std::time::SystemTime) -> String {
    let secs = now.duration_since(time).map_or(0, |d| d.as_secs());
    match secs {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// Whether `url` is an `https:` or `http:` address (any case), fit for a link.
fn web_address(url: &str) -> bool {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")
}

/// Whether a form POST comes from this site.
fn same_site(headers: &HeaderMap, origin: &str) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    match header("sec-fetch-site") {
        Some(site) => site == "same-origin",
        None => header(header::ORIGIN.as_str()).is_some_and(|o| o == origin),
    }
}

/// 303 to `/`, clearing the session cookie.
fn back_home<St: SharedStore>(pages: &Pages<St>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    // The session ended here: the layer must not re-issue its token on this response.
    response.extensions_mut().insert(SessionChanged);
    if let Some(clear) = pages.endpoints.clear_cookie() {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

fn cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            "Refused",
            "<p>This form must be sent from this site.</p><p><a href=\"/\">Home</a></p>",
        ),
    )
        .into_response()
}

/// `POST /session/logout`: ends this browser's session, back to `/`.
pub async fn logout<St: SharedStore>(State(pages): State<Pages<St>>, request: Request) -> Response {
    end(&pages, request, false).await
}

/// `POST /session/logout-all`: ends every session of the user, back to `/`.
pub async fn logout_all<St: SharedStore>(
    State(pages): State<Pages<St>>,
    request: Request,
) -> Response {
    end(&pages, request, true).await
}

/// `POST /me/sessions/{id}/logout`: ends one of the user's own sessions (404
/// `session_not_found` for any other id). From the home page's form: refused across sites, then
/// back to `/` (clearing the cookie when it was this browser's session). From an API client
/// (no cookie sent): 204.
pub async fn end_listed<St: SharedStore>(
    State(pages): State<Pages<St>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let from_browser = parts.headers.contains_key(header::COOKIE);
    if from_browser && !same_site(&parts.headers, &pages.origin) {
        return cross_site();
    }
    // The extractor's answer, after the cross-site check: the layer's refusal when no user.
    let user = match WeChatUser::from_request_parts(&mut parts, &()).await {
        Ok(user) => user,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(failure) = pages.endpoints.logout_own_session(&user, &id).await {
        return match from_browser {
            true => pages.endpoints.html_failure(&failure, &parts.headers),
            false => failure.into_response(),
        };
    }
    let this_one = user.session_id().to_string() == id;
    match (from_browser, this_one) {
        (true, true) => back_home(&pages),
        (true, false) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
        (false, _) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if this_one {
                response.extensions_mut().insert(SessionChanged);
            }
            response
        }
    }
}

/// A logout form: refused across sites; otherwise ends this session (or all of the user's) —
/// also while WeChat or the store cannot serve it — clears the cookie and goes back to `/`.
async fn end<St: SharedStore>(pages: &Pages<St>, request: Request, everywhere: bool) -> Response {
    let (parts, _) = request.into_parts();
    if !same_site(&parts.headers, &pages.origin) {
        return cross_site();
    }
    if let Some(sid) = pages.endpoints.session_in(&parts.extensions) {
        let ended = match everywhere {
            true => pages.endpoints.logout_all_by_session(sid).await.map(drop),
            false => pages.endpoints.logout_session(sid).await,
        };
        if let Err(failure) = ended {
            return pages.endpoints.html_failure(&failure, &parts.headers);
        }
    }
    back_home(pages)
}
