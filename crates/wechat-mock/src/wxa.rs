//! The app access token and the Mini Program APIs made with it: `/cgi-bin/stable_token`,
//! `/cgi-bin/token`, `/wxa/business/getuserphonenumber`, `/wxa/checksession` and
//! `/wxa/resetusersessionkey`, answered as WeChat does (HTTP 200, errors as errcode bodies).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
};

use crate::{
    Endpoint,
    sns::{Ok0, Params, answer, check_app, check_grant_type, enter},
    state::{ACCESS_TOKEN_MISSING, CODE_MISSING, OPENID_MISSING, Shared, SnsError},
};

/// A body that is not a JSON object.
const DATA_FORMAT_ERROR: SnsError = SnsError::for_code_const(47001, "data format error");
/// `signature` or `sig_method` missing.
const SIGNATURE_MISSING: SnsError = SnsError::for_code_const(41001, "signature missing");

/// `POST /cgi-bin/stable_token` with `{"grant_type":"client_credential","appid","secret",
/// "force_refresh"?}`.
pub(crate) async fn stable_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::StableToken).await {
        return fault;
    }
    let Some(params) = Params::from_json(&body) else {
        return DATA_FORMAT_ERROR.into_response();
    };
    answer((|| -> Result<_, SnsError> {
        let appid = check_app(&shared, &params, Endpoint::StableToken)?;
        check_grant_type(&params, "client_credential")?;
        let force = params.get("force_refresh") == Some("true");
        shared.stable_token(appid, force)
    })())
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid&secret`.
pub(crate) async fn token(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::Token).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let appid = check_app(&shared, &params, Endpoint::Token)?;
        check_grant_type(&params, "client_credential")?;
        Ok(shared.legacy_token(appid))
    })())
}

/// `POST /wxa/business/getuserphonenumber?access_token` with `{"code"}`.
pub(crate) async fn phone_number(
    State(shared): State<Arc<Shared>>,
    query: RawQuery,
    body: Bytes,
) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::PhoneNumber).await {
        return fault;
    }
    let params = Params::from(query);
    let Some(body) = Params::from_json(&body) else {
        return DATA_FORMAT_ERROR.into_response();
    };
    answer((|| -> Result<_, SnsError> {
        let token = params.get("access_token").ok_or(ACCESS_TOKEN_MISSING)?;
        let code = body.get("code").ok_or(CODE_MISSING)?;
        shared.phone_number(token, code)
    })())
}

/// The parameters of `checksession` and `resetusersessionkey`.
fn signed(params: &Params) -> Result<(&str, &str, &str, &str), SnsError> {
    let token = params.get("access_token").ok_or(ACCESS_TOKEN_MISSING)?;
    let openid = params.get("openid").ok_or(OPENID_MISSING)?;
    let signature = params.get("signature").ok_or(SIGNATURE_MISSING)?;
    let sig_method = params.get("sig_method").ok_or(SIGNATURE_MISSING)?;
    Ok((token, openid, signature, sig_method))
}

/// `GET /wxa/checksession?access_token&openid&signature&sig_method=hmac_sha256`.
pub(crate) async fn check_session(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::CheckSession).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let (token, openid, signature, sig_method) = signed(&params)?;
        shared.check_session(token, openid, signature, sig_method)?;
        Ok(Ok0 {
            errcode: 0,
            errmsg: "ok",
        })
    })())
}

/// `GET /wxa/resetusersessionkey?access_token&openid&signature&sig_method=hmac_sha256`.
pub(crate) async fn reset_session_key(
    State(shared): State<Arc<Shared>>,
    query: RawQuery,
) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::ResetSessionKey).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let (token, openid, signature, sig_method) = signed(&params)?;
        shared.reset_session_key(token, openid, signature, sig_method)
    })())
}
