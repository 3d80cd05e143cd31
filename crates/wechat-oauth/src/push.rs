//! What WeChat pushes to an Official Account's server URL (events and messages), checked and
//! opened: [`PushVerifier`] verifies the GET echo handshake and each POST's signature
//! (`sha1(sort(token, timestamp, nonce))`, compared in constant time, the timestamp within
//! [`MAX_SKEW`] of the clock), decrypts safe mode (`encrypt_type=aes`: `msg_signature` over
//! the ciphertext too, AES-256-CBC with the EncodingAESKey, its own PKCS#7 padding to 32 bytes,
//! the AppID at the end checked), and parses the XML (at most [`MAX_PUSH_BYTES`], flat) into a
//! [`PushMessage`].
//!
//! Any failure is a [`PushError`]; nothing here panics on what a sender posts, and neither the
//! token nor the key appears in `Debug`. The crypto is aws-lc-rs's, the XML quick-xml's.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::cipher::{AES_256, DecryptingKey, DecryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quick_xml::events::Event;

use crate::{AppId, OpenId};

/// How far a push's `timestamp` may be from the clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// The largest push body accepted (WeChat's are well under 2 KiB).
pub const MAX_PUSH_BYTES: usize = 16 * 1024;
/// The most elements a push may have.
const MAX_ELEMENTS: usize = 64;

/// Which pushes an Official Account's server accepts, as set on the account's "message
/// encryption mode" (消息加解密方式).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PushMode {
    /// 明文模式: plain XML, signed.
    Plain,
    /// 兼容模式: plain or encrypted; an encrypted push is opened.
    Compatible,
    /// 安全模式: encrypted only (the default when a key is configured); a plain push is refused.
    #[default]
    Safe,
}

/// Why a push (or the echo handshake) was refused. Answer it with 403 (signature, time) or 400
/// (the body); WeChat retries only a push that got no answer within 5 s, so a refusal is
/// final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The `signature` or `msg_signature` is not the token's.
    #[error("the push is not signed with this account's token")]
    BadSignature,
    /// The `timestamp` is missing or further than five minutes from the clock.
    #[error("the push's timestamp is missing or not recent")]
    Stale,
    /// A plain push while safe mode is required, or an encrypted one without a key.
    #[error("the push is not in the configured encryption mode")]
    WrongMode,
    /// The body is not a push: not XML of the expected shape, bad base64 or padding.
    #[error("the push is malformed")]
    Malformed,
    /// The body is larger than [`MAX_PUSH_BYTES`].
    #[error("the push is too large")]
    TooLarge,
    /// The decrypted push names another AppID.
    #[error("the push is for another app")]
    WrongApp,
}

/// A bad EncodingAESKey: it must be the 43 characters the account's settings show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "an EncodingAESKey is 43 characters of base64 (as the Official Account's settings show it)"
)]
pub struct InvalidAesKey;

/// The query WeChat adds to the server URL on every call.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct PushQuery<'a> {
    /// `signature`: `sha1(sort(token, timestamp, nonce))`, hex.
    pub signature: Option<&'a str>,
    /// `timestamp`: Unix seconds.
    pub timestamp: Option<&'a str>,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `echostr`: the handshake's challenge (GET only).
    pub echostr: Option<&'a str>,
    /// `encrypt_type`: `aes` for an encrypted push.
    pub encrypt_type: Option<&'a str>,
    /// `msg_signature`: `sha1(sort(token, timestamp, nonce, Encrypt))`, hex (encrypted pushes).
    pub msg_signature: Option<&'a str>,
}

impl<'a> PushQuery<'a> {
    /// The query of a call, from its `(name, value)` pairs (the last of a name wins).
    pub fn from_pairs(pairs: &'a [(String, String)]) -> Self {
        let mut query = Self::default();
        for (name, value) in pairs {
            let value = Some(value.as_str());
            match name.as_str() {
                "signature" => query.signature = value,
                "timestamp" => query.timestamp = value,
                "nonce" => query.nonce = value,
                "echostr" => query.echostr = value,
                "encrypt_type" => query.encrypt_type = value,
                "msg_signature" => query.msg_signature = value,
                _ => {}
            }
        }
        query
    }
}

/// One pushed message or event, as its XML names the fields (absent ones are `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushMessage {
    /// `ToUserName`: the account's original id (`gh_...`).
    pub to_user_name: String,
    /// `FromUserName`: the user's openid in the Official Account.
    pub from_user_name: OpenId,
    /// `CreateTime`: Unix seconds.
    pub create_time: u64,
    /// `MsgType`: `event`, `text`, ...
    pub msg_type: String,
    /// `Event`: `subscribe`, `unsubscribe`, `SCAN`, ... (events only).
    pub event: Option<String>,
    /// `EventKey`: for a parametric QR code, its scene (`qrscene_` + scene on `subscribe`).
    pub event_key: Option<String>,
    /// `Ticket`: the QR code's ticket (QR events).
    pub ticket: Option<String>,
    /// `Content`: a text message's text.
    pub content: Option<String>,
    /// `MsgId`: a message's id (events have none).
    pub msg_id: Option<String>,
}

impl PushMessage {
    /// The scene of a parametric QR code this push reports a scan of: a `SCAN` event's
    /// `EventKey`, or a `subscribe` event's after its `qrscene_` prefix (a follow by scanning).
    pub fn qr_scene(&self) -> Option<&str> {
        let key = self.event_key.as_deref()?;
        match self.event.as_deref()? {
            "SCAN" => Some(key),
            "subscribe" => key.strip_prefix("qrscene_"),
            _ => None,
        }
        .filter(|scene| !scene.is_empty())
    }

    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        (self.msg_type == "text").then_some(self.content.as_deref()?)
    }
}

/// Checks and opens what WeChat pushes to one Official Account's server URL.
#[derive(Clone)]
pub struct PushVerifier {
    appid: AppId,
    token: String,
    key: Option<[u8; 32]>,
    mode: PushMode,
}

impl fmt::Debug for PushVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushVerifier")
            .field("appid", &self.appid)
            .field("token", &"[redacted]")
            .field("key", &self.key.map(|_| "[redacted]"))
            .field("mode", &self.mode)
            .finish()
    }
}

impl PushVerifier {
    /// The Official Account `appid`'s pushes, signed with the server configuration's `token`
    /// (令牌), in plain mode until [`encoding_aes_key`](Self::encoding_aes_key) is set.
    pub fn new(appid: AppId, token: impl Into<String>) -> Self {
        Self {
            appid,
            token: token.into(),
            key: None,
            mode: PushMode::Plain,
        }
    }

    /// The EncodingAESKey (消息加解密密钥) and the mode; safe mode requires every push to be
    /// encrypted, compatible mode opens encrypted ones and accepts plain ones.
    pub fn encoding_aes_key(mut self, key: &str, mode: PushMode) -> Result<Self, InvalidAesKey> {
        self.key = Some(aes_key(key).ok_or(InvalidAesKey)?);
        self.mode = mode;
        Ok(self)
    }

    /// The mode in force.
    pub fn mode(&self) -> PushMode {
        self.mode
    }

    /// The server URL handshake (a GET): the `echostr` to answer when the signature is the
    /// token's and the timestamp recent.
    pub fn echo<'q>(&self, query: &PushQuery<'q>, now: SystemTime) -> Result<&'q str, PushError> {
        self.check_signature(query, now)?;
        query.echostr.ok_or(PushError::Malformed)
    }

    /// A pushed message or event (a POST's `body`), once its signature, time, encryption and
    /// app are checked.
    pub fn open(
        &self,
        query: &PushQuery<'_>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<PushMessage, PushError> {
        if body.len() > MAX_PUSH_BYTES {
            return Err(PushError::TooLarge);
        }
        self.check_signature(query, now)?;
        let encrypted = query.encrypt_type == Some("aes");
        match (encrypted, self.mode, &self.key) {
            (false, PushMode::Safe, _) | (true, PushMode::Plain, _) | (true, _, None) => {
                Err(PushError::WrongMode)
            }
            (false, _, _) => parse(body),
            (true, _, Some(key)) => {
                let outer = parse_fields(body)?;
                let encrypt = field(&outer, "Encrypt").ok_or(PushError::Malformed)?;
                let expected = sign(&[
                    &self.token,
                    query.timestamp.unwrap_or(""),
                    query.nonce.unwrap_or(""),
                    encrypt,
                ]);
                same(&expected, query.msg_signature)?;
                let inner = decrypt(key, encrypt, &self.appid)?;
                parse(&inner)
            }
        }
    }

    fn check_signature(&self, query: &PushQuery<'_>, now: SystemTime) -> Result<(), PushError> {
        let (Some(timestamp), Some(nonce)) = (query.timestamp, query.nonce) else {
            return Err(PushError::BadSignature);
        };
        let expected = sign(&[&self.token, timestamp, nonce]);
        same(&expected, query.signature)?;
        let sent = timestamp.parse::<u64>().map_err(|_| PushError::Stale)?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if sent.abs_diff(now) > MAX_SKEW.as_secs() {
            return Err(PushError::Stale);
        }
        Ok(())
    }
}

/// The 32-byte key an EncodingAESKey (43 base64 characters, the `=` left off) stands for. Its
/// last character carries 4 bits that are not part of the key: WeChat generates them freely,
/// so they are allowed.
pub(crate) fn aes_key(key: &str) -> Option<[u8; 32]> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    if key.len() != 43 {
        return None;
    }
    LENIENT.decode(format!("{key}=")).ok()?.try_into().ok()
}

/// WeChat's signature: the hex SHA-1 of the parts sorted and joined.
pub(crate) fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, sorted.concat().as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `given` is `expected` (in constant time, hex case ignored).
fn same(expected: &str, given: Option<&str>) -> Result<(), PushError> {
    let given = given.ok_or(PushError::BadSignature)?.to_ascii_lowercase();
    verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
        .map_err(|_| PushError::BadSignature)
}

/// Opens a safe-mode `Encrypt`: AES-256-CBC (IV: the key's first 16 bytes), WeChat's PKCS#7
/// padding to 32 bytes, then 16 random bytes, the message's length (4 bytes, big-endian), the
/// message and the AppID, which must be `appid`.
fn decrypt(key: &[u8; 32], encrypt: &str, appid: &AppId) -> Result<Vec<u8>, PushError> {
    let mut bytes = STANDARD
        .decode(encrypt.trim())
        .map_err(|_| PushError::Malformed)?;
    if bytes.is_empty() || bytes.len() % 32 != 0 {
        return Err(PushError::Malformed);
    }
    let iv: [u8; 16] = key[..16].try_into().map_err(|_| PushError::Malformed)?;
    let cipher = UnboundCipherKey::new(&AES_256, key)
        .and_then(DecryptingKey::cbc)
        .map_err(|_| PushError::Malformed)?;
    let plain = cipher
        .decrypt(&mut bytes, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| PushError::Malformed)?;
    let pad = usize::from(*plain.last().ok_or(PushError::Malformed)?);
    let padded = (1..=32).contains(&pad)
        && pad <= plain.len()
        && plain[plain.len() - pad..]
            .iter()
            .all(|b| usize::from(*b) == pad);
    if !padded {
        return Err(PushError::Malformed);
    }
    let content = &plain[..plain.len() - pad];
    let len_bytes: [u8; 4] = content
        .get(16..20)
        .and_then(|b| b.try_into().ok())
        .ok_or(PushError::Malformed)?;
    let end = usize::try_from(u32::from_be_bytes(len_bytes))
        .ok()
        .and_then(|len| len.checked_add(20))
        .ok_or(PushError::Malformed)?;
    let message = content.get(20..end).ok_or(PushError::Malformed)?;
    let from = content.get(end..).ok_or(PushError::Malformed)?;
    if from != appid.as_str().as_bytes() {
        return Err(PushError::WrongApp);
    }
    Ok(message.to_vec())
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A push's XML as its message.
fn parse(xml: &[u8]) -> Result<PushMessage, PushError> {
    let fields = parse_fields(xml)?;
    let get = |name| field(&fields, name).map(str::to_owned);
    let from = get("FromUserName").ok_or(PushError::Malformed)?;
    Ok(PushMessage {
        to_user_name: get("ToUserName").unwrap_or_default(),
        from_user_name: OpenId::new(from),
        create_time: get("CreateTime")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        msg_type: get("MsgType").ok_or(PushError::Malformed)?,
        event: get("Event"),
        event_key: get("EventKey"),
        ticket: get("Ticket"),
        content: get("Content"),
        msg_id: get("MsgId"),
    })
}

/// The text of each child of the `<xml>` root (text, CDATA and references joined). Deeper
/// elements are read past; no DTD, at most [`MAX_ELEMENTS`] elements.
fn parse_fields(xml: &[u8]) -> Result<Vec<(String, String)>, PushError> {
    if xml.len() > MAX_PUSH_BYTES {
        return Err(PushError::TooLarge);
    }
    let text = std::str::from_utf8(xml).map_err(|_| PushError::Malformed)?;
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut fields, mut depth, mut elements) = (Vec::new(), 0usize, 0usize);
    let mut current: Option<(String, String)> = None;
    let malformed = |_| PushError::Malformed;
    loop {
        match reader.read_event().map_err(|_| PushError::Malformed)? {
            Event::Start(start) => {
                elements += 1;
                if elements > MAX_ELEMENTS || depth > 3 {
                    return Err(PushError::Malformed);
                }
                let name = std::str::from_utf8(start.name().as_ref())
                    .map_err(|_| PushError::Malformed)?
                    .to_owned();
                match depth {
                    0 if name != "xml" => return Err(PushError::Malformed),
                    1 => current = Some((name, String::new())),
                    _ => {}
                }
                depth += 1;
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or(PushError::Malformed)?;
                if depth == 1
                    && let Some(done) = current.take()
                {
                    fields.push(done);
                }
                if depth == 0 {
                    return Ok(fields);
                }
            }
            Event::Empty(_) => {
                elements += 1;
                if elements > MAX_ELEMENTS || depth == 0 {
                    return Err(PushError::Malformed);
                }
            }
            Event::Text(t) if depth == 2 => {
                push_text(&mut current, &t.decode().map_err(malformed)?)
            }
            Event::CData(c) if depth == 2 => {
                push_text(&mut current, &c.decode().map_err(malformed)?)
            }
            Event::GeneralRef(r) if depth == 2 => {
                let resolved = match r.resolve_char_ref().map_err(|_| PushError::Malformed)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(malformed)?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or(PushError::Malformed)?
                            .to_owned()
                    }
                };
                push_text(&mut current, &resolved);
            }
            Event::DocType(_) => return Err(PushError::Malformed),
            Event::Eof => return Err(PushError::Malformed),
            _ => {}
        }
    }
}

fn push_text(current: &mut Option<(String, String)>, text: &str) {
    if let Some((_, value)) = current {
        value.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext};

    /// WeChat's published sample (WXBizMsgCrypt): token, key, AppID, the query and the push.
    const TOKEN: &str = "spamtest";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx2c2769f8efd9abc2";
    const TIMESTAMP: &str = "1409735669";
    const NONCE: &str = "1320562132";
    const MSG_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    fn sample_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_409_735_669)
    }

    fn verifier(mode: PushMode) -> PushVerifier {
        PushVerifier::new(AppId::new(APPID), TOKEN)
            .encoding_aes_key(KEY, mode)
            .unwrap()
    }

    fn sample_body() -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{ENCRYPT}]]></Encrypt></xml>"
        )
    }

    fn query<'a>(signature: &'a str, msg_signature: &'a str) -> PushQuery<'a> {
        PushQuery {
            signature: Some(signature),
            timestamp: Some(TIMESTAMP),
            nonce: Some(NONCE),
            encrypt_type: Some("aes"),
            msg_signature: Some(msg_signature),
            ..PushQuery::default()
        }
    }

    #[test]
    fn wechats_published_sample_opens() {
        let signature = sign(&[TOKEN, TIMESTAMP, NONCE]);
        let message = verifier(PushMode::Safe)
            .open(
                &query(&signature, MSG_SIGNATURE),
                sample_body().as_bytes(),
                sample_time(),
            )
            .unwrap();
        assert_eq!(message.to_user_name, "gh_10f6c3c3ac5a");
        assert_eq!(
            message.from_user_name.as_str(),
            "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
        );
        assert_eq!(message.create_time, 1_409_735_668);
        assert_eq!(message.msg_type, "text");
        assert_eq!(message.text(), Some("abcdteT"));
        assert_eq!(message.qr_scene(), None);
    }

    /// An independent implementation of WeChat's side: AES-256-CBC over the random bytes, the
    /// length, the message and the AppID, padded to 32 bytes.
    fn seal(key: &str, appid: &str, xml: &str, pad_with: Option<u8>) -> String {
        let key = aes_key(key).unwrap();
        let mut plain = vec![7u8; 16];
        plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        plain.extend_from_slice(xml.as_bytes());
        plain.extend_from_slice(appid.as_bytes());
        let pad = 32 - plain.len() % 32;
        plain.extend(std::iter::repeat_n(pad_with.unwrap_or(pad as u8), pad));
        let cipher = EncryptingKey::cbc(UnboundCipherKey::new(&AES_256, &key).unwrap()).unwrap();
        let iv: [u8; 16] = key[..16].try_into().unwrap();
        cipher
            .less_safe_encrypt(&mut plain, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        STANDARD.encode(plain)
    }

    /// A QR scan pushed by WeChat's side (encrypted by [`seal`]): opened when everything is
    /// right, refused for each thing that is not.
    #[test]
    fn a_scan_opens_and_every_tampering_is_refused() {
        let xml = "<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[o_scanner]]></FromUserName><CreateTime>1409735669</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_s&lt;1&#x3e;]]></EventKey><Ticket><![CDATA[T1]]></Ticket></xml>";
        let open = |encrypt: &str, timestamp: &str, msg_signature: Option<String>| {
            let signature = sign(&[TOKEN, timestamp, NONCE]);
            let msg_signature =
                msg_signature.unwrap_or_else(|| sign(&[TOKEN, timestamp, NONCE, encrypt]));
            let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
            let query = PushQuery {
                timestamp: Some(timestamp),
                ..query(&signature, &msg_signature)
            };
            verifier(PushMode::Safe).open(&query, body.as_bytes(), sample_time())
        };
        let good = seal(KEY, APPID, xml, None);
        let message = open(&good, TIMESTAMP, None).unwrap();
        assert_eq!(message.from_user_name.as_str(), "o_scanner");
        // CDATA is taken as it is (no entities inside it).
        assert_eq!(message.qr_scene(), Some("s&lt;1&#x3e;"));
        assert_eq!(message.ticket.as_deref(), Some("T1"));

        let tampered = open(&good, TIMESTAMP, Some("0".repeat(40)));
        assert_eq!(tampered, Err(PushError::BadSignature));
        let stale = (1_409_735_669 - 301).to_string();
        assert_eq!(open(&good, &stale, None), Err(PushError::Stale));
        let other_app = seal(KEY, "wx0000000000000000", xml, None);
        assert_eq!(open(&other_app, TIMESTAMP, None), Err(PushError::WrongApp));
        let bad_padding = seal(KEY, APPID, xml, Some(33));
        assert_eq!(
            open(&bad_padding, TIMESTAMP, None),
            Err(PushError::Malformed)
        );
        let other_key = seal(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
            APPID,
            xml,
            None,
        );
        assert!(open(&other_key, TIMESTAMP, None).is_err());
        let huge = "x".repeat(MAX_PUSH_BYTES + 1);
        let signature = sign(&[TOKEN, TIMESTAMP, NONCE]);
        assert_eq!(
            verifier(PushMode::Safe).open(&query(&signature, ""), huge.as_bytes(), sample_time()),
            Err(PushError::TooLarge)
        );
    }

    #[test]
    fn plain_pushes_and_the_handshake_by_mode() {
        let xml = b"<xml><FromUserName>o_a</FromUserName><MsgType>event</MsgType><Event>SCAN</Event><EventKey>scene-1</EventKey></xml>";
        let signature = sign(&[TOKEN, TIMESTAMP, NONCE]);
        let plain = PushQuery {
            signature: Some(&signature),
            timestamp: Some(TIMESTAMP),
            nonce: Some(NONCE),
            echostr: Some("challenge"),
            ..PushQuery::default()
        };
        let plain_verifier = PushVerifier::new(AppId::new(APPID), TOKEN);
        let message = plain_verifier.open(&plain, xml, sample_time()).unwrap();
        assert_eq!(message.qr_scene(), Some("scene-1"));
        assert!(
            verifier(PushMode::Compatible)
                .open(&plain, xml, sample_time())
                .is_ok()
        );
        assert_eq!(
            verifier(PushMode::Safe).open(&plain, xml, sample_time()),
            Err(PushError::WrongMode)
        );
        assert_eq!(plain_verifier.echo(&plain, sample_time()), Ok("challenge"));
        let forged = PushQuery {
            signature: Some("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            ..plain
        };
        assert_eq!(
            plain_verifier.echo(&forged, sample_time()),
            Err(PushError::BadSignature)
        );
        assert_eq!(
            plain_verifier.open(&forged, xml, sample_time()),
            Err(PushError::BadSignature)
        );
        for garbage in [
            &b"not xml"[..],
            b"<xml><FromUserName>o</FromUserName>",
            b"<!DOCTYPE x [<!ENTITY a \"b\">]><xml><FromUserName>&a;</FromUserName><MsgType>t</MsgType></xml>",
            b"<other><FromUserName>o</FromUserName><MsgType>t</MsgType></other>",
            b"<xml><MsgType>text</MsgType></xml>",
        ] {
            assert_eq!(
                plain_verifier.open(&plain, garbage, sample_time()),
                Err(PushError::Malformed),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        let deep = format!("<xml>{}</xml>", "<a>".repeat(70) + &"</a>".repeat(70));
        assert!(
            plain_verifier
                .open(&plain, deep.as_bytes(), sample_time())
                .is_err()
        );
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(
            PushVerifier::new(AppId::new(APPID), TOKEN)
                .encoding_aes_key("short", PushMode::Safe)
                .is_err()
        );
        let shown = format!("{:?}", verifier(PushMode::Safe));
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY), "{shown}");
    }
}
