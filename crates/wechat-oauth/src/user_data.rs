//! Data a Mini Program client hands its server, opened and checked with the user's session key
//! (which never leaves the server):
//!
//! - `encryptedData` + `iv`: AES-128-CBC with PKCS#7 padding, key = the session key, all three
//!   base64. The plaintext is JSON with a `watermark` `{"appid", "timestamp"}`: the AppID must
//!   be the session's app and the timestamp recent.
//! - `rawData` + `signature`: the signature is the hex SHA-1 of `rawData` followed by the
//!   session key (as its base64 text), compared in constant time.
//!
//! Any failure is a [`DecryptError`] whose message names the usual cause; nothing here panics
//! on client input. The crypto is aws-lc-rs's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::cipher::{AES_128, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{AppId, SessionKey};

/// How far in the future a watermark's timestamp may be (clock skew between WeChat and us).
const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// What a Mini Program client sent to be opened: `encryptedData` and `iv` as the client got
/// them from WeChat (base64), and optionally `rawData` and `signature`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EncryptedData<'a> {
    /// `encryptedData` (base64).
    pub encrypted_data: &'a str,
    /// `iv` (base64 of 16 bytes).
    pub iv: &'a str,
    /// `rawData`, when the client sent it with its `signature`.
    pub raw_data: Option<&'a str>,
    /// `signature`: hex SHA-1 of `rawData` + the session key.
    pub signature: Option<&'a str>,
}

/// Why client data could not be opened or trusted. The messages say the usual cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// `encryptedData` or `iv` is not base64, the iv is not 16 bytes, or the data is not whole
    /// AES blocks.
    #[error("encryptedData and iv must be base64, the iv 16 bytes and the data whole AES blocks")]
    Malformed,
    /// The data does not open with this session's key (bad padding or not JSON). Usually the
    /// client called `wx.login` again after WeChat produced the data, so it was encrypted under
    /// a newer session key than the one this session holds: log in again, then retry.
    #[error(
        "the data does not decrypt with this session's key: usually wx.login was called again after it was produced (a newer session key); log in again and retry"
    )]
    WrongKey,
    /// The data opened but carries no `watermark` with an `appid` and a `timestamp`.
    #[error("the decrypted data has no watermark")]
    NoWatermark,
    /// The watermark names another app.
    #[error("the data was produced for another app")]
    WrongApp,
    /// The watermark is older than allowed, or too far in the future.
    #[error("the data is too old (or its timestamp is in the future)")]
    Stale,
    /// `rawData` does not match `signature` under this session's key (or only one was sent).
    #[error("rawData does not match its signature under this session's key")]
    BadSignature,
}

/// Opens `data` with `session_key`: the plaintext JSON, once its watermark names `appid` and
/// is at most `max_age` old at `now`, and (when sent) `rawData` matches its signature.
pub fn decrypt_user_data(
    session_key: &SessionKey,
    data: &EncryptedData<'_>,
    appid: &AppId,
    now: SystemTime,
    max_age: Duration,
) -> Result<serde_json::Value, DecryptError> {
    match (data.raw_data, data.signature) {
        (None, None) => {}
        (Some(raw), Some(signature)) => verify_signature(session_key, raw, signature)?,
        _ => return Err(DecryptError::BadSignature),
    }
    let key: [u8; 16] = decode(session_key.secret()).ok_or(DecryptError::WrongKey)?;
    let iv: [u8; 16] = decode(data.iv).ok_or(DecryptError::Malformed)?;
    let mut bytes = STANDARD
        .decode(data.encrypted_data.trim())
        .map_err(|_| DecryptError::Malformed)?;
    if bytes.is_empty() || bytes.len() % 16 != 0 {
        return Err(DecryptError::Malformed);
    }
    let cipher = UnboundCipherKey::new(&AES_128, &key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| DecryptError::WrongKey)?;
    let context = DecryptionContext::Iv128(FixedLength::from(iv));
    let plain = cipher
        .decrypt(&mut bytes, context)
        .map_err(|_| DecryptError::WrongKey)?;
    let value: serde_json::Value =
        serde_json::from_slice(plain).map_err(|_| DecryptError::WrongKey)?;
    let watermark = value.get("watermark").ok_or(DecryptError::NoWatermark)?;
    let (Some(from), Some(at)) = (
        watermark.get("appid").and_then(|v| v.as_str()),
        watermark.get("timestamp").and_then(|v| v.as_u64()),
    ) else {
        return Err(DecryptError::NoWatermark);
    };
    if from != appid.as_str() {
        return Err(DecryptError::WrongApp);
    }
    let at = UNIX_EPOCH
        .checked_add(Duration::from_secs(at))
        .ok_or(DecryptError::Stale)?;
    let fresh = match now.duration_since(at) {
        Ok(age) => age <= max_age,
        Err(ahead) => ahead.duration() <= FUTURE_SKEW,
    };
    if !fresh {
        return Err(DecryptError::Stale);
    }
    Ok(value)
}

/// `signature` is the hex SHA-1 of `raw` + the session key's base64 text.
fn verify_signature(
    session_key: &SessionKey,
    raw: &str,
    signature: &str,
) -> Result<(), DecryptError> {
    let mut signed = Vec::with_capacity(raw.len() + session_key.secret().len());
    signed.extend_from_slice(raw.as_bytes());
    signed.extend_from_slice(session_key.secret().as_bytes());
    let expected = hex(digest(&SHA1_FOR_LEGACY_USE_ONLY, &signed).as_ref());
    let given = signature.trim().to_ascii_lowercase();
    verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
        .map_err(|_| DecryptError::BadSignature)
}

/// Exactly `N` bytes of standard base64.
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey};

    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";
    const IV: [u8; 16] = *b"fedcba9876543210";
    const APPID: &str = "wxminiprogram00001";

    fn session_key(key: &[u8; 16]) -> SessionKey {
        SessionKey::new(STANDARD.encode(key))
    }

    /// What WeChat does: the JSON, padded and encrypted under `key` with `iv`.
    fn seal(key: &[u8; 16], iv: [u8; 16], json: &str) -> String {
        let cipher =
            PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_128, key).unwrap())
                .unwrap();
        let mut bytes = json.as_bytes().to_vec();
        cipher
            .less_safe_encrypt(&mut bytes, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        STANDARD.encode(bytes)
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn phone(appid: &str, timestamp: u64) -> String {
        format!(
            r#"{{"phoneNumber":"+8613800000000","purePhoneNumber":"13800000000","countryCode":"86","watermark":{{"appid":"{appid}","timestamp":{timestamp}}}}}"#
        )
    }

    fn open(
        key: &[u8; 16],
        data: &EncryptedData<'_>,
        now: u64,
    ) -> Result<serde_json::Value, DecryptError> {
        decrypt_user_data(
            &session_key(key),
            data,
            &AppId::new(APPID),
            at(now),
            Duration::from_secs(600),
        )
    }

    /// WeChat's published sample (the `WXBizDataCrypt` demo of the Mini Program docs).
    #[test]
    fn wechats_published_sample_opens() {
        let data = EncryptedData {
            encrypted_data: concat!(
                "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC",
                "+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOF",
                "tnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W",
                "//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaH",
                "qZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoK",
                "laRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
            ),
            iv: "r7BXXKkLb8qrSNn05n0qiA==",
            ..EncryptedData::default()
        };
        let value = decrypt_user_data(
            &SessionKey::new("tiihtNczf5v6AKRyjwEUhQ=="),
            &data,
            &AppId::new("wx4f4bc4dec97d474b"),
            at(1_477_314_187 + 60),
            Duration::from_secs(600),
        )
        .unwrap();
        assert_eq!(value["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(value["nickName"], "Band");
        assert_eq!(value["watermark"]["timestamp"], 1_477_314_187);
    }

    #[test]
    fn data_sealed_under_the_session_key_opens() {
        let sealed = seal(&KEY, IV, &phone(APPID, 1_700_000_000));
        let iv = STANDARD.encode(IV);
        let data = EncryptedData {
            encrypted_data: &sealed,
            iv: &iv,
            ..EncryptedData::default()
        };
        let value = open(&KEY, &data, 1_700_000_100).unwrap();
        assert_eq!(value["purePhoneNumber"], "13800000000");
    }

    #[test]
    fn tampering_another_key_or_iv_and_bad_watermarks_are_typed_errors() {
        let iv = STANDARD.encode(IV);
        let sealed = seal(&KEY, IV, &phone(APPID, 1_700_000_000));
        let data = |encrypted_data| EncryptedData {
            encrypted_data,
            iv: &iv,
            ..EncryptedData::default()
        };
        // A newer session key (wx.login again): the usual cause, said in the message.
        let newer = *b"a newer key 0123";
        let error = open(&newer, &data(&sealed), 1_700_000_100).unwrap_err();
        assert_eq!(error, DecryptError::WrongKey);
        assert!(error.to_string().contains("wx.login"));
        // The last block flipped: bad padding or garbage.
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        let flipped = STANDARD.encode(&bytes);
        assert_eq!(
            open(&KEY, &data(&flipped), 1_700_000_100),
            Err(DecryptError::WrongKey)
        );
        // Another iv garbles the first block: not JSON.
        let other_iv = STANDARD.encode(*b"0000000000000000");
        let data_other_iv = EncryptedData {
            encrypted_data: &sealed,
            iv: &other_iv,
            ..EncryptedData::default()
        };
        assert_eq!(
            open(&KEY, &data_other_iv, 1_700_000_100),
            Err(DecryptError::WrongKey)
        );
        // Malformed inputs.
        for (encrypted, iv) in [
            ("not base64!", iv.as_str()),
            ("", iv.as_str()),
            ("AAAA", iv.as_str()),
            (sealed.as_str(), "AAAA"),
        ] {
            let data = EncryptedData {
                encrypted_data: encrypted,
                iv,
                ..EncryptedData::default()
            };
            assert_eq!(
                open(&KEY, &data, 1_700_000_100),
                Err(DecryptError::Malformed),
                "{encrypted} {iv}"
            );
        }
        // Another app's data, old data, data from the future, no watermark.
        let other = seal(&KEY, IV, &phone("wxanotherapp000001", 1_700_000_000));
        assert_eq!(
            open(&KEY, &data(&other), 1_700_000_100),
            Err(DecryptError::WrongApp)
        );
        assert_eq!(
            open(&KEY, &data(&sealed), 1_700_000_601),
            Err(DecryptError::Stale)
        );
        assert!(open(&KEY, &data(&sealed), 1_700_000_600).is_ok());
        assert_eq!(
            open(&KEY, &data(&sealed), 1_700_000_000 - 301),
            Err(DecryptError::Stale)
        );
        let bare = seal(&KEY, IV, r#"{"openId":"o1"}"#);
        assert_eq!(
            open(&KEY, &data(&bare), 1_700_000_100),
            Err(DecryptError::NoWatermark)
        );
    }

    #[test]
    fn raw_data_must_match_its_signature() {
        let iv = STANDARD.encode(IV);
        let sealed = seal(&KEY, IV, &phone(APPID, 1_700_000_000));
        let raw = r#"{"nickName":"Band","gender":1}"#;
        // sha1(raw + base64(KEY)), computed independently of the code under test.
        let key_text = STANDARD.encode(KEY);
        let signature = hex(digest(
            &SHA1_FOR_LEGACY_USE_ONLY,
            format!("{raw}{key_text}").as_bytes(),
        )
        .as_ref());
        let with = |raw_data, signature| EncryptedData {
            encrypted_data: &sealed,
            iv: &iv,
            raw_data,
            signature,
        };
        assert!(open(&KEY, &with(Some(raw), Some(&signature)), 1_700_000_100).is_ok());
        let upper = signature.to_uppercase();
        assert!(open(&KEY, &with(Some(raw), Some(&upper)), 1_700_000_100).is_ok());
        let tampered = raw.replace("Band", "Bond");
        for (raw, signature) in [
            (Some(tampered.as_str()), Some(signature.as_str())),
            (Some(raw), None),
            (None, Some(signature.as_str())),
            (Some(raw), Some("0000")),
        ] {
            assert_eq!(
                open(&KEY, &with(raw, signature), 1_700_000_100),
                Err(DecryptError::BadSignature)
            );
        }
        // The signature is checked with this session's key, not any key.
        assert_eq!(
            open(
                b"a newer key 0123",
                &with(Some(raw), Some(&signature)),
                1_700_000_100
            ),
            Err(DecryptError::BadSignature)
        );
    }

    #[test]
    fn errors_name_no_secret() {
        for error in [
            DecryptError::WrongKey,
            DecryptError::BadSignature,
            DecryptError::Malformed,
        ] {
            let text = format!("{error} {error:?}");
            assert!(!text.contains(&STANDARD.encode(KEY)));
        }
    }
}
