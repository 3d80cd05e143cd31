//! The `api.weixin.qq.com` side: the `/sns/*` handlers, their parameter checks and the
//! WeChat-shaped answers (HTTP 200, `Content-Type: text/plain`, errors as
//! `{"errcode":N,"errmsg":"..., rid: ..."}`), plus fault injection shared by every counted
//! endpoint.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    Endpoint, Fault,
    state::{
        ACCESS_TOKEN_MISSING, APPID_MISSING, CODE_MISSING, INVALID_APPID, INVALID_GRANT_TYPE,
        INVALID_SECRET, OPENID_MISSING, REFRESH_TOKEN_MISSING, SECRET_MISSING, Shared, SnsError,
        random_rid,
    },
};

/// Decoded query parameters; an empty value counts as missing.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes());
        Self(pairs.into_owned().collect())
    }

    /// The parameter's value, `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl Params {
    /// The members of a JSON object body as parameters (strings as they are, other values as
    /// their JSON text); `None` if the body is not a JSON object.
    pub(crate) fn from_json(body: &[u8]) -> Option<Self> {
        let serde_json::Value::Object(members) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        Some(Self(
            members
                .into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (name, value)
                })
                .collect(),
        ))
    }
}

impl From<RawQuery> for Params {
    fn from(RawQuery(query): RawQuery) -> Self {
        Self::parse(query.as_deref())
    }
}

/// An HTTP 200 `text/plain` answer, as every sns endpoint gives.
pub(crate) fn text_plain(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errcode: i64,
    errmsg: &'a str,
}

impl IntoResponse for SnsError {
    fn into_response(self) -> Response {
        let errmsg = format!("{}, rid: {}", self.message, random_rid());
        text_plain(json(&ErrorBody {
            errcode: self.code,
            errmsg: &errmsg,
        }))
    }
}

fn json<T: Serialize>(body: &T) -> String {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_string(body).unwrap_or_default()
}

pub(crate) fn answer<T: Serialize>(result: Result<T, SnsError>) -> Response {
    match result {
        Ok(body) => text_plain(json(&body)),
        Err(error) => error.into_response(),
    }
}

/// Counts the call and plays the next queued fault: `Some` is the answer to send instead of the
/// normal one; a delay is waited out here and then yields `None`.
pub(crate) async fn enter(shared: &Shared, endpoint: Endpoint) -> Option<Response> {
    let fault = shared.enter(endpoint)?;
    // The kind only: an injected body may hold tokens a test wants to see redacted elsewhere.
    let kind = match &fault {
        Fault::ErrCode(_) => "errcode",
        Fault::HttpStatus(_) => "http_status",
        Fault::Delay(_) => "delay",
        Fault::Body(_) => "body",
    };
    tracing::debug!(
        endpoint = endpoint.name(),
        fault = kind,
        "playing injected fault"
    );
    match fault {
        Fault::ErrCode(code) => Some(SnsError::for_code(code).into_response()),
        Fault::HttpStatus(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Mock Fault")
            );
            Some((status, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
        }
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::Body(body) => Some(text_plain(body)),
    }
}

/// Checks `appid` is present and one the mock knows; returns it, and counts the call for it.
pub(crate) fn check_appid<'a>(
    shared: &Shared,
    params: &'a Params,
    endpoint: Endpoint,
) -> Result<&'a str, SnsError> {
    let appid = params.get("appid").ok_or(APPID_MISSING)?;
    if shared.config.secret_of(appid).is_none() {
        return Err(INVALID_APPID);
    }
    shared.count_for_app(appid, endpoint);
    Ok(appid)
}

/// Checks `appid` and its `secret`, as the code exchanges do; returns the AppID.
pub(crate) fn check_app<'a>(
    shared: &Shared,
    params: &'a Params,
    endpoint: Endpoint,
) -> Result<&'a str, SnsError> {
    let appid = check_appid(shared, params, endpoint)?;
    let secret = params.get("secret").ok_or(SECRET_MISSING)?;
    if Some(secret) != shared.config.secret_of(appid) {
        return Err(INVALID_SECRET);
    }
    Ok(appid)
}

pub(crate) fn check_grant_type(params: &Params, expected: &str) -> Result<(), SnsError> {
    match params.get("grant_type") {
        Some(grant_type) if grant_type == expected => Ok(()),
        _ => Err(INVALID_GRANT_TYPE),
    }
}

/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`.
pub(crate) async fn access_token(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::AccessToken).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let appid = check_app(&shared, &params, Endpoint::AccessToken)?;
        let code = params.get("code").ok_or(CODE_MISSING)?;
        check_grant_type(&params, "authorization_code")?;
        shared.exchange(appid, code)
    })())
}

/// `GET /sns/oauth2/refresh_token?appid&grant_type=refresh_token&refresh_token`.
pub(crate) async fn refresh_token(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::RefreshToken).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let appid = check_appid(&shared, &params, Endpoint::RefreshToken)?;
        check_grant_type(&params, "refresh_token")?;
        let token = params.get("refresh_token").ok_or(REFRESH_TOKEN_MISSING)?;
        shared.refresh(appid, token)
    })())
}

/// The `access_token` and `openid` parameters of `/sns/auth` and `/sns/userinfo`.
fn token_and_openid(params: &Params) -> Result<(&str, &str), SnsError> {
    let access_token = params.get("access_token").ok_or(ACCESS_TOKEN_MISSING)?;
    let openid = params.get("openid").ok_or(OPENID_MISSING)?;
    Ok((access_token, openid))
}

#[derive(Serialize)]
pub(crate) struct Ok0 {
    pub(crate) errcode: i64,
    pub(crate) errmsg: &'static str,
}

/// `GET /sns/auth?access_token&openid`.
pub(crate) async fn auth(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::Auth).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let (access_token, openid) = token_and_openid(&params)?;
        shared.check_access(access_token, openid)?;
        Ok(Ok0 {
            errcode: 0,
            errmsg: "ok",
        })
    })())
}

/// `GET /sns/userinfo?access_token&openid&lang`. `lang` is accepted whatever its value and does
/// not change the answer (`language` is always `zh_CN`).
pub(crate) async fn userinfo(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::UserInfo).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let (access_token, openid) = token_and_openid(&params)?;
        shared.user_info(access_token, openid)
    })())
}

/// `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`.
pub(crate) async fn jscode2session(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::JsCode2Session).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let appid = check_app(&shared, &params, Endpoint::JsCode2Session)?;
        let code = params.get("js_code").ok_or(CODE_MISSING)?;
        check_grant_type(&params, "authorization_code")?;
        shared.code_to_session(appid, code)
    })())
}
