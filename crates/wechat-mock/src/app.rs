//! The route table: which path reaches which handler. WeChat's hosts (`api.weixin.qq.com`,
//! `open.weixin.qq.com`, `mp.weixin.qq.com`) and the control API are served from one router.

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post, put},
};

use crate::{control, mp, pages, sns, state::Shared, wxa};

/// The whole mock application over this shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sns/oauth2/access_token", get(sns::access_token))
        .route("/sns/oauth2/refresh_token", get(sns::refresh_token))
        .route("/sns/auth", get(sns::auth))
        .route("/sns/userinfo", get(sns::userinfo))
        .route("/sns/jscode2session", get(sns::jscode2session))
        .route("/cgi-bin/stable_token", post(wxa::stable_token))
        .route("/cgi-bin/token", get(wxa::token))
        .route("/wxa/business/getuserphonenumber", post(wxa::phone_number))
        .route("/wxa/checksession", get(wxa::check_session))
        .route("/wxa/resetusersessionkey", get(wxa::reset_session_key))
        .route("/cgi-bin/qrcode/create", post(mp::qrcode_create))
        .route("/cgi-bin/showqrcode", get(mp::showqrcode))
        .route("/cgi-bin/user/info", get(mp::user_info))
        .route("/mock/apps/{appid}/push", put(mp::set_push))
        .route("/mock/apps/{appid}/messages", post(mp::message))
        .route("/mock/qr/{ticket}", get(mp::scan_page))
        .route("/mock/qr/{ticket}/scan", post(mp::scan))
        .route("/connect/qrconnect", get(pages::qrconnect))
        .route("/connect/oauth2/authorize", get(pages::authorize))
        .route("/connect/mock/approve", get(pages::approve))
        .route("/connect/mock/deny", get(pages::deny))
        .route("/mock/codes", post(control::mint_code))
        .route("/mock/clock/advance", post(control::advance_clock))
        .route("/mock/stats", get(control::stats))
        .route(
            "/mock/faults",
            post(control::inject_fault).delete(control::clear_faults),
        )
        .route("/mock/users/{openid}/revoke", post(control::revoke))
        .route("/mock/users/{openid}/profile", put(control::set_profile))
        .route("/mock/users/{openid}/encrypt", post(control::encrypt))
        .route("/mock/phone-codes", post(control::mint_phone_code))
        .route(
            "/mock/apps/{appid}/invalidate-token",
            post(control::invalidate_app_token),
        )
        .with_state(shared)
}
