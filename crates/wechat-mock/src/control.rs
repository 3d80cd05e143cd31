//! The control API under `/mock/*`: lets tools outside the process (the binary's users) mint
//! codes, move the clock, read call counts, queue faults, revoke users, set profiles, seal a
//! Mini Program user's data under their session key, mint phone-number codes and replace an
//! app's access token.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{Endpoint, Fault, MockGrant, MockProfile, state::Shared};

/// A request the control API cannot act on: 400 with `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

/// Parses a JSON body; an empty body reads as `{}`.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, BadRequest> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|error| BadRequest(format!("invalid JSON body: {error}")))
}

/// `POST /mock/codes` with an optional [`MockGrant`] body: `{"code": "..."}`.
pub(crate) async fn mint_code(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let grant: MockGrant = parse_body(&body)?;
    Ok(Json(json!({ "code": shared.mint_code(grant) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    seconds: u64,
}

/// `POST /mock/clock/advance` with `{"seconds": N}`: `{"now": <unix seconds>}`.
pub(crate) async fn advance_clock(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let request: AdvanceRequest = parse_body(&body)?;
    let now = shared.advance(Duration::from_secs(request.seconds));
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Ok(Json(json!({ "now": unix })))
}

/// `GET /mock/stats`: endpoint name to call count, all endpoints present.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<&'static str, u64>> {
    Json(shared.stats())
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: String,
    #[serde(default = "one")]
    times: u32,
    errcode: Option<i64>,
    status: Option<u16>,
    delay_ms: Option<u64>,
    body: Option<String>,
}

impl FaultRequest {
    fn into_fault(self) -> Result<(Endpoint, Fault, u32), String> {
        let endpoint: Endpoint = self.endpoint.parse().map_err(|e| format!("{e}"))?;
        let mut faults = Vec::new();
        if let Some(code) = self.errcode {
            faults.push(Fault::ErrCode(code));
        }
        if let Some(status) = self.status {
            StatusCode::from_u16(status)
                .map_err(|_| format!("status {status} is not an HTTP status code"))?;
            faults.push(Fault::HttpStatus(status));
        }
        if let Some(ms) = self.delay_ms {
            faults.push(Fault::Delay(Duration::from_millis(ms)));
        }
        if let Some(body) = self.body {
            faults.push(Fault::Body(body));
        }
        match <[Fault; 1]>::try_from(faults) {
            Ok([fault]) => Ok((endpoint, fault, self.times)),
            Err(_) => Err(
                "give exactly one of \"errcode\", \"status\", \"delay_ms\", \"body\"".to_owned(),
            ),
        }
    }
}

/// `POST /mock/faults`: queues a fault for the next `times` calls of an endpoint; 204.
pub(crate) async fn inject_fault(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<StatusCode, BadRequest> {
    let request: FaultRequest = parse_body(&body)?;
    let (endpoint, fault, times) = request.into_fault().map_err(BadRequest)?;
    shared.inject(endpoint, fault, times);
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /mock/faults`: drops every queued fault; 204.
pub(crate) async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

/// `POST /mock/users/{openid}/revoke`: 204.
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    Path(openid): Path<String>,
) -> StatusCode {
    shared.revoke(&openid);
    StatusCode::NO_CONTENT
}

/// `PUT /mock/users/{openid}/profile` with a [`MockProfile`] (missing fields take defaults): 204.
pub(crate) async fn set_profile(
    State(shared): State<Arc<Shared>>,
    Path(openid): Path<String>,
    body: Bytes,
) -> Result<StatusCode, BadRequest> {
    let profile: MockProfile = parse_body(&body)?;
    shared.set_profile(&openid, profile);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    /// The Mini Program's AppID (default: the primary app).
    appid: Option<String>,
    /// The JSON object to seal (a watermark is added).
    data: Value,
}

/// `POST /mock/users/{openid}/encrypt` with `{"appid"?, "data": {...}}`: what WeChat hands
/// the user's client, `{"encrypted_data", "iv"}`, sealed under the session key of the user's
/// latest `jscode2session` in that app; 404 if there was none, 400 if `data` is not an object.
pub(crate) async fn encrypt(
    State(shared): State<Arc<Shared>>,
    Path(openid): Path<String>,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let request: EncryptRequest = parse_body(&body)?;
    if !request.data.is_object() {
        return Err(BadRequest("data must be a JSON object".into()));
    }
    let appid = request.appid.unwrap_or_else(|| shared.config.appid.clone());
    Ok(
        match shared.seal_user_data(&appid, &openid, &request.data) {
            Some((encrypted_data, iv)) => {
                Json(json!({ "encrypted_data": encrypted_data, "iv": iv })).into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "this user has no session key in this app" })),
            )
                .into_response(),
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneCodeRequest {
    /// The Mini Program's AppID (default: the primary app).
    appid: Option<String>,
    /// The number without country prefix.
    phone: String,
    /// The country calling code (default `"86"`).
    country_code: Option<String>,
}

/// `POST /mock/phone-codes` with `{"appid"?, "phone", "country_code"?}`: `{"code": "..."}`,
/// a single-use phone-number code; 400 if `phone` is not 4 to 20 digits.
pub(crate) async fn mint_phone_code(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let request: PhoneCodeRequest = parse_body(&body)?;
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let country_code = request.country_code.unwrap_or_else(|| "86".to_owned());
    if !digits(&request.phone, 4, 20) || !digits(&country_code, 1, 4) {
        return Err(BadRequest(
            "phone must be 4 to 20 digits and country_code 1 to 4 digits".into(),
        ));
    }
    let appid = request.appid.unwrap_or_else(|| shared.config.appid.clone());
    Ok(Json(json!({
        "code": shared.mint_phone_code(&appid, &request.phone, &country_code)
    })))
}

/// `POST /mock/apps/{appid}/invalidate-token`: as if another party forced a `stable_token`
/// refresh, the app's current stable token stops working; 204.
pub(crate) async fn invalidate_app_token(
    State(shared): State<Arc<Shared>>,
    Path(appid): Path<String>,
) -> StatusCode {
    shared.invalidate_stable_token(&appid);
    StatusCode::NO_CONTENT
}
