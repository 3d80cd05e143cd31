//! An Official Account's side of scan-to-log-in: temporary parametric QR codes
//! (`POST /cgi-bin/qrcode/create`, the image at `GET /cgi-bin/showqrcode`), followers
//! (`GET /cgi-bin/user/info`), and the pushes WeChat sends to the account's server URL when a
//! user scans a code (`subscribe` with `qrscene_<scene>` for a new follower, `SCAN` after) or
//! sends a text message — signed with the account's token and, when an EncodingAESKey is set,
//! encrypted (safe mode) the way WeChat does it, by this module's own implementation.
//!
//! Control: `PUT /mock/apps/{appid}/push` `{"url","token","encoding_aes_key"?}` (where and how
//! to push), `GET /mock/qr/{ticket}` (a page with a "simulate scan" button),
//! `POST /mock/qr/{ticket}/scan` `{"openid","unionid"?,"deliveries"?}` and
//! `POST /mock/apps/{appid}/messages` `{"openid","content"}`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::iv::FixedLength;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use crate::Endpoint;
use crate::sns::{Params, answer, enter};
use crate::state::{ACCESS_TOKEN_MISSING, OPENID_MISSING, Shared, SnsError, random_alphanumeric};

/// A body or scene WeChat would refuse.
const INVALID_ARGS: SnsError = SnsError::for_code_const(40097, "invalid args");

/// Where (and how) the mock pushes an Official Account's events: its server configuration.
#[derive(Clone, Debug, Deserialize)]
pub struct MockPushTarget {
    /// The server URL (服务器地址).
    pub url: String,
    /// The token (令牌) pushes are signed with.
    pub token: String,
    /// The EncodingAESKey (消息加解密密钥): pushes are encrypted (safe mode) when set.
    #[serde(default)]
    pub encoding_aes_key: Option<String>,
}

#[derive(Clone, Debug)]
struct Ticket {
    appid: String,
    scene: String,
    expires_at: SystemTime,
}

/// The Official Accounts' QR codes, followers and server configurations.
#[derive(Debug, Default)]
pub(crate) struct OfficialAccounts {
    tickets: HashMap<String, Ticket>,
    /// (AppID, openid) of each follower.
    followers: HashSet<(String, String)>,
    targets: HashMap<String, MockPushTarget>,
    /// Unionids learned from scans, by openid.
    unionids: HashMap<String, String>,
}

/// One push, ready to send: the target's URL with WeChat's query, and the XML body.
#[derive(Debug)]
pub(crate) struct Push {
    url: String,
    body: String,
}

impl Shared {
    fn accounts(&self) -> std::sync::MutexGuard<'_, OfficialAccounts> {
        self.mp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where `appid` pushes from now on.
    pub(crate) fn set_push_target(&self, appid: &str, target: MockPushTarget) {
        self.accounts().targets.insert(appid.to_owned(), target);
    }

    /// The scene of a current ticket.
    pub(crate) fn qr_scene(&self, ticket: &str) -> Option<String> {
        let now = self.now();
        let accounts = self.accounts();
        let ticket = accounts.tickets.get(ticket)?;
        (ticket.expires_at > now).then(|| ticket.scene.clone())
    }

    /// A user scanning `ticket`: the push it makes (`subscribe` with `qrscene_` for a new
    /// follower, who follows from then on; `SCAN` for a follower).
    pub(crate) fn scan(
        &self,
        ticket: &str,
        openid: &str,
        unionid: Option<&str>,
    ) -> Result<Push, String> {
        let now = self.now();
        let mut accounts = self.accounts();
        let found = accounts
            .tickets
            .get(ticket)
            .filter(|t| t.expires_at > now)
            .cloned()
            .ok_or("no such QR code, or it has expired")?;
        if let Some(unionid) = unionid {
            accounts
                .unionids
                .insert(openid.to_owned(), unionid.to_owned());
        }
        let new = accounts
            .followers
            .insert((found.appid.clone(), openid.to_owned()));
        let (event, key) = match new {
            true => ("subscribe", format!("qrscene_{}", found.scene)),
            false => ("SCAN", found.scene.clone()),
        };
        let fields = format!(
            "<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey><Ticket><![CDATA[{ticket}]]></Ticket>"
        );
        push(&accounts, &found.appid, openid, "event", &fields, now)
    }

    /// A user sending `content` to `appid` as a text message.
    pub(crate) fn text_message(
        &self,
        appid: &str,
        openid: &str,
        content: &str,
    ) -> Result<Push, String> {
        let now = self.now();
        let accounts = self.accounts();
        let id = rand::random::<u64>() >> 1;
        let fields = format!(
            "<Content><![CDATA[{}]]></Content><MsgId>{id}</MsgId>",
            content.replace("]]>", "]]]]><![CDATA[>")
        );
        push(&accounts, appid, openid, "text", &fields, now)
    }
}

/// The push of one message from `openid` to `appid`'s server.
fn push(
    accounts: &OfficialAccounts,
    appid: &str,
    openid: &str,
    msg_type: &str,
    fields: &str,
    now: SystemTime,
) -> Result<Push, String> {
    let target = accounts
        .targets
        .get(appid)
        .ok_or("this app has no server URL configured (PUT /mock/apps/{appid}/push)")?;
    let created = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_{}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{created}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{fields}</xml>",
        appid.trim_start_matches("wx")
    );
    let (timestamp, nonce) = (created.to_string(), rand::random::<u32>().to_string());
    let signature = sha1_sorted(&[&target.token, &timestamp, &nonce]);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("signature", &signature)
        .append_pair("timestamp", &timestamp)
        .append_pair("nonce", &nonce)
        .append_pair("openid", openid);
    let body = match &target.encoding_aes_key {
        None => xml,
        Some(key) => {
            let encrypt = seal(key, appid, &xml)
                .ok_or("the EncodingAESKey is not 43 characters of base64")?;
            let msg_signature = sha1_sorted(&[&target.token, &timestamp, &nonce, &encrypt]);
            query
                .append_pair("encrypt_type", "aes")
                .append_pair("msg_signature", &msg_signature);
            format!(
                "<xml><ToUserName><![CDATA[gh_{}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
                appid.trim_start_matches("wx")
            )
        }
    };
    let separator = if target.url.contains('?') { '&' } else { '?' };
    Ok(Push {
        url: format!("{}{separator}{}", target.url, query.finish()),
        body,
    })
}

/// WeChat's signature: hex SHA-1 of the parts sorted and joined.
fn sha1_sorted(parts: &[&str]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_unstable();
    digest(&SHA1_FOR_LEGACY_USE_ONLY, parts.concat().as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Safe mode, as WeChat encrypts: AES-256-CBC under the EncodingAESKey (IV its first 16 bytes)
/// over 16 random bytes, the message's length (big-endian), the message and the AppID, padded
/// PKCS#7-style to a multiple of 32 bytes; base64.
fn seal(encoding_aes_key: &str, appid: &str, xml: &str) -> Option<String> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const KEY: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    if encoding_aes_key.len() != 43 {
        return None;
    }
    let key = KEY.decode(format!("{encoding_aes_key}=")).ok()?;
    let mut plain: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
    plain.extend_from_slice(&u32::try_from(xml.len()).ok()?.to_be_bytes());
    plain.extend_from_slice(xml.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.resize(plain.len() + pad, pad as u8);
    let iv: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let cipher = UnboundCipherKey::new(&AES_256, &key)
        .and_then(EncryptingKey::cbc)
        .ok()?;
    cipher
        .less_safe_encrypt(&mut plain, EncryptionContext::Iv128(FixedLength::from(iv)))
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(plain))
}

/// Sends `push` `deliveries` times (WeChat retries a push that got no answer within 5 s, the
/// same bytes each time): the last answer's status and body.
pub(crate) async fn deliver(push: &Push, deliveries: u32) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = (0, String::new());
    for _ in 0..deliveries.max(1) {
        let response = client
            .post(&push.url)
            .header(header::CONTENT_TYPE, "text/xml")
            .body(push.body.clone())
            .send()
            .await
            .map_err(|e| format!("the server URL did not answer: {}", e.without_url()))?;
        let status = response.status().as_u16();
        last = (status, response.text().await.unwrap_or_default());
    }
    Ok(last)
}

/// `POST /cgi-bin/qrcode/create?access_token` with `{"expire_seconds","action_name":
/// "QR_STR_SCENE","action_info":{"scene":{"scene_str"}}}`.
pub(crate) async fn qrcode_create(
    State(shared): State<Arc<Shared>>,
    query: RawQuery,
    body: Bytes,
) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::QrCodeCreate).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let token = params.get("access_token").ok_or(ACCESS_TOKEN_MISSING)?;
        let appid = shared.app_of_token(token)?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|_| INVALID_ARGS)?;
        let action = body["action_name"].as_str().unwrap_or("");
        let scene = match action {
            "QR_STR_SCENE" => body["action_info"]["scene"]["scene_str"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            "QR_SCENE" => body["action_info"]["scene"]["scene_id"]
                .as_u64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if scene.is_empty() || scene.len() > 64 {
            return Err(INVALID_ARGS);
        }
        let seconds = body["expire_seconds"]
            .as_u64()
            .unwrap_or(60)
            .clamp(60, 2_592_000);
        let ticket = format!("gQ{}", random_alphanumeric(62));
        let expires_at = shared.now() + Duration::from_secs(seconds);
        shared.accounts().tickets.insert(
            ticket.clone(),
            Ticket {
                appid,
                scene,
                expires_at,
            },
        );
        Ok(serde_json::json!({
            "ticket": ticket,
            "expire_seconds": seconds,
            "url": format!("http://weixin.qq.com/q/{}", random_alphanumeric(22)),
        }))
    })())
}

#[derive(Deserialize)]
pub(crate) struct TicketQuery {
    ticket: Option<String>,
}

/// `GET /cgi-bin/showqrcode?ticket=`: the code's image (here an SVG saying what it is), 404 for
/// an unknown or expired ticket.
pub(crate) async fn showqrcode(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TicketQuery>,
) -> Response {
    let Some(ticket) = query.ticket.filter(|t| shared.qr_scene(t).is_some()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let short: String = ticket.chars().take(10).collect();
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"240\" height=\"240\" viewBox=\"0 0 240 240\">\
         <rect width=\"240\" height=\"240\" fill=\"#fff\" stroke=\"#000\" stroke-width=\"8\"/>\
         <text x=\"120\" y=\"110\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"18\">mock QR code</text>\
         <text x=\"120\" y=\"140\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"14\">{short}…</text></svg>"
    );
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// `GET /cgi-bin/user/info?access_token&openid`: `{"subscribe","openid","unionid"?}`.
pub(crate) async fn user_info(State(shared): State<Arc<Shared>>, query: RawQuery) -> Response {
    if let Some(fault) = enter(&shared, Endpoint::FollowerInfo).await {
        return fault;
    }
    let params = Params::from(query);
    answer((|| -> Result<_, SnsError> {
        let token = params.get("access_token").ok_or(ACCESS_TOKEN_MISSING)?;
        let openid = params.get("openid").ok_or(OPENID_MISSING)?;
        let appid = shared.app_of_token(token)?;
        let accounts = shared.accounts();
        let follows = accounts.followers.contains(&(appid, openid.to_owned()));
        let mut body = serde_json::json!({
            "subscribe": u8::from(follows),
            "openid": openid,
            "language": "zh_CN",
        });
        if let Some(unionid) = accounts.unionids.get(openid) {
            body["unionid"] = unionid.clone().into();
        }
        Ok(body)
    })())
}

/// `PUT /mock/apps/{appid}/push` `{"url","token","encoding_aes_key"?}`.
pub(crate) async fn set_push(
    State(shared): State<Arc<Shared>>,
    Path(appid): Path<String>,
    Json(target): Json<MockPushTarget>,
) -> StatusCode {
    shared.set_push_target(&appid, target);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(crate) struct ScanBody {
    openid: Option<String>,
    unionid: Option<String>,
    deliveries: Option<u32>,
}

/// `GET /mock/qr/{ticket}`: the phone's side of a scan, as a page with one button.
pub(crate) async fn scan_page(
    State(shared): State<Arc<Shared>>,
    Path(ticket): Path<String>,
) -> Response {
    if shared.qr_scene(&ticket).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>No such QR code, or it has expired.</p>"),
        )
            .into_response();
    }
    let ticket = html_escape::encode_double_quoted_attribute(&ticket);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Mock WeChat: scan</title></head><body>\
         <h1>Scan this QR code with (mock) WeChat</h1>\
         <form method=\"post\" action=\"/mock/qr/{ticket}/scan\">\
         <label>openid <input name=\"openid\" value=\"o_scanner_{}\"></label> \
         <button id=\"scan\" type=\"submit\">Simulate scan</button></form></body></html>",
        random_alphanumeric(8)
    ))
    .into_response()
}

/// `POST /mock/qr/{ticket}/scan` (JSON or a form): pushes the scan to the account's server;
/// answers `{"status","reply"}` (a page for a form).
pub(crate) async fn scan(
    State(shared): State<Arc<Shared>>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed: Option<ScanBody> = match form {
        true => serde_urlencoded_form(&body),
        false => serde_json::from_slice(&body).ok(),
    };
    let Some(request) = parsed else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"openid\", \"unionid\"?, \"deliveries\"?}",
        )
            .into_response();
    };
    let openid = request
        .openid
        .filter(|o| !o.is_empty())
        .unwrap_or_else(crate::state::random_openid);
    let delivered = match shared.scan(&ticket, &openid, request.unionid.as_deref()) {
        Ok(push) => deliver(&push, request.deliveries.unwrap_or(1)).await,
        Err(error) => Err(error),
    };
    match (delivered, form) {
        (Ok(_), true) => Html(format!(
            "<p id=\"scanned\">Scanned as {}: the page that shows the code logs in by itself.</p>",
            html_escape::encode_text(&openid)
        ))
        .into_response(),
        (Ok((status, reply)), false) => {
            Json(serde_json::json!({ "status": status, "reply": reply, "openid": openid }))
                .into_response()
        }
        (Err(error), _) => (StatusCode::BAD_REQUEST, error).into_response(),
    }
}

fn serde_urlencoded_form(body: &[u8]) -> Option<ScanBody> {
    let mut scan = ScanBody {
        openid: None,
        unionid: None,
        deliveries: None,
    };
    for (name, value) in url::form_urlencoded::parse(body) {
        match name.as_ref() {
            "openid" => scan.openid = Some(value.into_owned()),
            "unionid" => scan.unionid = Some(value.into_owned()).filter(|u| !u.is_empty()),
            "deliveries" => scan.deliveries = value.parse().ok(),
            _ => {}
        }
    }
    Some(scan)
}

#[derive(Deserialize)]
pub(crate) struct MessageBody {
    openid: String,
    content: String,
}

/// `POST /mock/apps/{appid}/messages` `{"openid","content"}`: pushes a text message.
pub(crate) async fn message(
    State(shared): State<Arc<Shared>>,
    Path(appid): Path<String>,
    Json(request): Json<MessageBody>,
) -> Response {
    let delivered = match shared.text_message(&appid, &request.openid, &request.content) {
        Ok(push) => deliver(&push, 1).await,
        Err(error) => Err(error),
    };
    match delivered {
        Ok((status, reply)) => {
            Json(serde_json::json!({ "status": status, "reply": reply })).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error).into_response(),
    }
}
