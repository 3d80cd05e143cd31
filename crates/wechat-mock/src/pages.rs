//! The `open.weixin.qq.com` side: the consent pages (`/connect/qrconnect`,
//! `/connect/oauth2/authorize`) and the mock-only buttons behind them (`/connect/mock/approve`,
//! `/connect/mock/deny`) that redirect back to the app like WeChat does.

use std::sync::Arc;

use axum::{
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    DEMO_OPENID, Endpoint, MockGrant,
    sns::{Params, enter},
    state::Shared,
};

/// Longest `state` WeChat accepts.
const MAX_STATE_LEN: usize = 128;

/// Which consent page is asked for.
#[derive(Clone, Copy, Debug)]
enum Page {
    QrConnect,
    Authorize,
}

impl Page {
    fn endpoint(self) -> Endpoint {
        match self {
            Page::QrConnect => Endpoint::QrConnect,
            Page::Authorize => Endpoint::Authorize,
        }
    }

    fn allowed_scopes(self) -> &'static [&'static str] {
        match self {
            Page::QrConnect => &["snsapi_login"],
            Page::Authorize => &["snsapi_base", "snsapi_userinfo"],
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::QrConnect => "WeChat website login (mock QR code)",
            Page::Authorize => "WeChat authorization (mock)",
        }
    }

    /// Where the approve/deny buttons point, relative to this page so the mock also works when
    /// its router is nested under a prefix.
    fn buttons_base(self) -> &'static str {
        match self {
            Page::QrConnect => "mock/",
            Page::Authorize => "../mock/",
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{}\n</body>\n</html>\n",
        escape(title),
        body
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn error_page(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "WeChat mock: bad request",
        &format!("<h1>Bad request</h1>\n<p>{}</p>", escape(message)),
    )
}

/// `redirect_uri` if it is an absolute http(s) URL.
fn redirect_uri(params: &Params) -> Result<&str, String> {
    let uri = params.get("redirect_uri").ok_or("redirect_uri missing")?;
    match url::Url::parse(uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(uri),
        _ => Err(format!(
            "redirect_uri {uri:?} is not an absolute http(s) URL"
        )),
    }
}

/// `state`, empty when absent; WeChat takes at most 128 bytes of `[A-Za-z0-9]`.
fn state_param(params: &Params) -> Result<&str, String> {
    let state = params.get("state").unwrap_or_default();
    if state.len() > MAX_STATE_LEN || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "state {state:?} must be at most {MAX_STATE_LEN} letters and digits"
        ));
    }
    Ok(state)
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// The consent page, or the reason it cannot be shown.
fn consent(shared: &Shared, page: Page, params: &Params) -> Result<Response, String> {
    let appid = params.get("appid").ok_or("appid missing")?;
    if shared.config.secret_of(appid).is_none() {
        return Err(format!("unknown appid {appid:?}"));
    }
    let redirect_uri = redirect_uri(params)?;
    if params.get("response_type") != Some("code") {
        return Err("response_type must be code".to_owned());
    }
    let scope = params.get("scope").ok_or("scope missing")?;
    if !page.allowed_scopes().contains(&scope) {
        return Err(format!(
            "scope {scope:?} is not allowed here; expected one of {}",
            page.allowed_scopes().join(", ")
        ));
    }
    let state = state_param(params)?;

    let base = page.buttons_base();
    let body = format!(
        "<h1>{title}</h1>\n\
         <p>App <code>{appid}</code> asks for <code>{scope}</code>.</p>\n\
         <p>It will be sent back to <code>{redirect}</code>.</p>\n\
         <form method=\"get\" action=\"{base}approve\">\n\
         {h_redirect}\n{h_state}\n{h_scope}\n{h_appid}\n\
         <label>openid (empty: a new random user) \
         <input type=\"text\" name=\"openid\" value=\"{demo}\"></label>\n\
         <label>unionid (empty: none) \
         <input type=\"text\" name=\"unionid\" value=\"\"></label>\n\
         <button type=\"submit\">Approve</button>\n\
         </form>\n\
         <form method=\"get\" action=\"{base}deny\">\n\
         {h_redirect}\n{h_state}\n\
         <button type=\"submit\">Deny</button>\n\
         </form>",
        title = escape(page.title()),
        appid = escape(appid),
        scope = escape(scope),
        redirect = escape(redirect_uri),
        h_redirect = hidden("redirect_uri", redirect_uri),
        h_state = hidden("state", state),
        h_scope = hidden("scope", scope),
        h_appid = hidden("appid", appid),
        demo = escape(DEMO_OPENID),
    );
    Ok(html(StatusCode::OK, page.title(), &body))
}

async fn show(shared: Arc<Shared>, page: Page, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, page.endpoint()).await {
        return fault;
    }
    consent(&shared, page, &Params::from(query)).unwrap_or_else(|message| error_page(&message))
}

/// `GET /connect/qrconnect?appid&redirect_uri&response_type=code&scope=snsapi_login&state`.
pub(crate) async fn qrconnect(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    show(shared, Page::QrConnect, query).await
}

/// `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`.
pub(crate) async fn authorize(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    show(shared, Page::Authorize, query).await
}

/// `redirect_uri` with these parameters appended (`?` or `&`), before any fragment.
fn with_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let (base, fragment) = match redirect_uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (redirect_uri, None),
    };
    let mut out = base.to_owned();
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    let added = serializer.finish();
    if !added.is_empty() {
        if !out.contains('?') {
            out.push('?');
        } else if !out.ends_with(['?', '&']) {
            out.push('&');
        }
        out.push_str(&added);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `GET /connect/mock/approve?redirect_uri&state&scope&openid`: mints a code for that user and
/// scope and redirects to `redirect_uri?code=CODE&state=STATE`.
pub(crate) async fn approve(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    let params = Params::from(query);
    let approved = (|| -> Result<Response, String> {
        let redirect_uri = redirect_uri(&params)?;
        let state = state_param(&params)?;
        let scope = params.get("scope").ok_or("scope missing")?;
        let known = ["snsapi_base", "snsapi_userinfo", "snsapi_login"];
        if !known.contains(&scope) {
            return Err(format!("unknown scope {scope:?}"));
        }
        let non_empty = |name| {
            params
                .get(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let code = shared.mint_code(MockGrant {
            openid: params.get("openid").map(str::to_owned),
            scope: Some(scope.to_owned()),
            unionid: non_empty("unionid"),
            appid: non_empty("appid"),
            ..MockGrant::default()
        });
        let mut pairs = vec![("code", code.as_str())];
        if !state.is_empty() {
            pairs.push(("state", state));
        }
        Ok(redirect(&with_query(redirect_uri, &pairs)))
    })();
    approved.unwrap_or_else(|message| error_page(&message))
}

/// `GET /connect/mock/deny?redirect_uri&state`: redirects to `redirect_uri?state=STATE`.
pub(crate) async fn deny(RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let denied = (|| -> Result<Response, String> {
        let redirect_uri = redirect_uri(&params)?;
        let state = state_param(&params)?;
        let pairs: &[(&str, &str)] = if state.is_empty() {
            &[]
        } else {
            &[("state", state)]
        };
        Ok(redirect(&with_query(redirect_uri, pairs)))
    })();
    denied.unwrap_or_else(|message| error_page(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }

    #[test]
    fn with_query_picks_separator_and_keeps_fragment() {
        let pairs = [("code", "abc"), ("state", "s1")];
        assert_eq!(
            with_query("https://a.example/cb", &pairs),
            "https://a.example/cb?code=abc&state=s1"
        );
        assert_eq!(
            with_query("https://a.example/cb?x=1#frag", &pairs),
            "https://a.example/cb?x=1&code=abc&state=s1#frag"
        );
        assert_eq!(
            with_query("https://a.example/cb?", &[("code", "a b")]),
            "https://a.example/cb?code=a+b"
        );
        assert_eq!(
            with_query("https://a.example/cb", &[]),
            "https://a.example/cb"
        );
    }
}
