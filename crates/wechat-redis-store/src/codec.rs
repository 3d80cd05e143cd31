//! The compact binary form of a session record, before sealing: a format byte, then the fields
//! with length-prefixed strings and times as nanoseconds since the epoch. The session id, app and
//! version live outside it (the key, the sealed value's header, a hash field), so they are not
//! repeated. A new format gets a new first byte; old ones stay readable. WeChat's identifiers and
//! tokens, in the base64url alphabet, are packed six bits a character: a quarter of their length
//! saved, which takes a typical record's value down one Redis allocation class.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wechat_oauth::{AccessToken, AppId, OpenId, RefreshToken, Scopes, SessionKey, UnionId};
use wechat_session_store::{Credentials, LoginClient, SessionId, SessionRecord, UserId};

/// The first format: no user id (records read back get the default one).
const FORMAT_V1: u8 = 1;
/// Adds the user id after the unionid.
const FORMAT_V2: u8 = 2;
/// The user id after the unionid only when it is not the default one (a byte says which): most
/// sessions' is the unionid, which is then not stored twice.
const FORMAT_V3: u8 = 3;
/// Format 3, then where the login came from (user agent and network, each a flag byte and a
/// string): written only for records that know it, so the others stay as short as before.
const FORMAT_V4: u8 = 4;
/// What is written now: format 4 with WeChat's identifiers and tokens (openid, unionid, access
/// and refresh token) packed (see [`put_token`]) and the client's part always present behind a
/// byte saying whether there is one.
const FORMAT_V5: u8 = 5;
const OAUTH: u8 = 0;
const MINI_PROGRAM: u8 = 1;
const SCANNED: u8 = 2;

/// Why a record could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("a kind of credentials this version cannot store")]
    UnknownCredentials,
    #[error("a field is longer than 65,535 bytes")]
    TooLong,
    #[error("not a record of a known format")]
    Malformed,
}

/// Encodes everything of `record` but its id, app and version, in the current format.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode(record: &SessionRecord) -> Result<Vec<u8>, CodecError> {
    write(record, true)
}

/// Encodes in the current format, or (`packed` false: for a fleet changing over from versions
/// before format 5, see `RedisStoreBuilder::legacy_writes`) in format 3 or 4 as they wrote it.
pub(crate) fn write(record: &SessionRecord, packed: bool) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(match (packed, &record.client) {
        (true, _) => FORMAT_V5,
        (false, Some(_)) => FORMAT_V4,
        (false, None) => FORMAT_V3,
    });
    put_token(&mut out, record.openid.as_str(), packed)?;
    match &record.unionid {
        Some(unionid) => {
            out.push(1);
            put_token(&mut out, unionid.as_str(), packed)?;
        }
        None => out.push(0),
    }
    if record.user_id == UserId::default_for(&record.appid, &record.openid, record.unionid.as_ref())
    {
        out.push(0);
    } else {
        out.push(1);
        put_str(&mut out, record.user_id.as_str())?;
    }
    let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
    put_str(&mut out, &scopes.join(","))?;
    out.push(u8::from(record.snapshot_user));
    match &record.credentials {
        Credentials::OAuth {
            access_token,
            access_token_expires_at,
            refresh_token,
        } => {
            out.push(OAUTH);
            put_token(&mut out, access_token.secret(), packed)?;
            put_time(&mut out, *access_token_expires_at);
            put_token(&mut out, refresh_token.secret(), packed)?;
        }
        Credentials::MiniProgram { session_key } => {
            out.push(MINI_PROGRAM);
            put_str(&mut out, session_key.secret())?;
        }
        Credentials::Scanned => out.push(SCANNED),
        _ => return Err(CodecError::UnknownCredentials),
    }
    for time in [record.created_at, record.expires_at, record.confirmed_at] {
        put_time(&mut out, time);
    }
    if packed {
        out.push(u8::from(record.client.is_some()));
    }
    if let Some(client) = &record.client {
        for part in [client.user_agent(), client.network()] {
            match part {
                Some(text) => {
                    out.push(1);
                    put_str(&mut out, text)?;
                }
                None => out.push(0),
            }
        }
    }
    Ok(out)
}

/// Decodes a record of session `sid` in app `appid` at `version`.
pub(crate) fn decode(
    sid: SessionId,
    appid: AppId,
    version: u64,
    bytes: &[u8],
) -> Result<SessionRecord, CodecError> {
    let mut r = Reader(bytes);
    let format = r.byte()?;
    if !matches!(
        format,
        FORMAT_V1 | FORMAT_V2 | FORMAT_V3 | FORMAT_V4 | FORMAT_V5
    ) {
        return Err(CodecError::Malformed);
    }
    let packed = format == FORMAT_V5;
    let openid = OpenId::new(r.token(packed)?);
    let unionid = match r.byte()? {
        0 => None,
        1 => Some(UnionId::new(r.token(packed)?)),
        _ => return Err(CodecError::Malformed),
    };
    let stored = match format {
        FORMAT_V1 => None,
        FORMAT_V2 => Some(r.str()?),
        _ => match r.byte()? {
            0 => None,
            1 => Some(r.str()?),
            _ => return Err(CodecError::Malformed),
        },
    };
    // The default (and a stored id equal to it) shares the unionid's text.
    let default = UserId::default_for(&appid, &openid, unionid.as_ref());
    let user_id = match stored {
        Some(id) if id != default.as_str() => UserId::new(id).ok_or(CodecError::Malformed)?,
        _ => default,
    };
    let scopes = Scopes::parse(r.str()?);
    let snapshot_user = r.byte()? == 1;
    let credentials = match r.byte()? {
        OAUTH => Credentials::OAuth {
            access_token: AccessToken::new(r.token(packed)?),
            access_token_expires_at: r.time()?,
            refresh_token: RefreshToken::new(r.token(packed)?),
        },
        MINI_PROGRAM => Credentials::MiniProgram {
            session_key: SessionKey::new(r.str()?),
        },
        SCANNED => Credentials::Scanned,
        _ => return Err(CodecError::Malformed),
    };
    let (created_at, expires_at, confirmed_at) = (r.time()?, r.time()?, r.time()?);
    let has_client = match format {
        FORMAT_V4 => true,
        FORMAT_V5 => match r.byte()? {
            0 => false,
            1 => true,
            _ => return Err(CodecError::Malformed),
        },
        _ => false,
    };
    let client = if has_client {
        let (user_agent, network) = (r.optional_str()?, r.optional_str()?);
        Some(Box::new(LoginClient::from_stored(user_agent, network)))
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(CodecError::Malformed);
    }
    let mut record = SessionRecord::new(sid, appid, openid, credentials, created_at, expires_at);
    record.user_id = user_id;
    record.unionid = unionid;
    record.scopes = scopes;
    record.snapshot_user = snapshot_user;
    record.confirmed_at = confirmed_at;
    record.version = version;
    record.client = client;
    Ok(record)
}

/// The base64url alphabet, in the order of the six-bit values a packed token stores.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The six-bit value of a base64url character.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// A token (`packed`): a byte 1, the number of characters, then six bits a character, when
/// every character is in the base64url alphabet — any such string round-trips exactly, whatever
/// its length or last character (unlike base64-decoding it); otherwise a byte 0 and the text.
/// Unpacked (the old formats): the text.
fn put_token(out: &mut Vec<u8>, token: &str, packed: bool) -> Result<(), CodecError> {
    if !packed {
        return put_str(out, token);
    }
    let sextets: Option<Vec<u8>> = token.bytes().map(sextet).collect();
    let Some(sextets) = sextets else {
        out.push(0);
        return put_str(out, token);
    };
    let len = u16::try_from(sextets.len()).map_err(|_| CodecError::TooLong)?;
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    for chunk in sextets.chunks(4) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, &s)| word | u32::from(s) << (18 - 6 * i));
        // Four characters in three bytes; a last chunk of n characters in the bytes it fills.
        let bytes = (chunk.len() * 6).div_ceil(8);
        out.extend_from_slice(&word.to_be_bytes()[1..1 + bytes]);
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    let len = u16::try_from(s.len()).map_err(|_| CodecError::TooLong)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A time as nanoseconds since the epoch in 8 bytes: exact until the year 2554 (times before
/// the epoch are stored as the epoch, later ones as the last representable nanosecond).
fn put_time(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
    out.extend_from_slice(&nanos.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::Malformed)
    }

    /// A token as [`put_token`] wrote it.
    fn token(&mut self, packed: bool) -> Result<String, CodecError> {
        if !packed || self.byte()? == 0 {
            return self.str().map(str::to_owned);
        }
        let len = usize::from(u16::from_le_bytes(self.array()?));
        let bytes = self.take((len * 6).div_ceil(8))?;
        let mut token = String::with_capacity(len);
        for (chunk, chars) in bytes.chunks(3).zip((0..len).step_by(4)) {
            let word = chunk
                .iter()
                .enumerate()
                .fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
            for i in 0..(len - chars).min(4) {
                let sextet = (word >> (18 - 6 * i)) & 63;
                token.push(char::from(ALPHABET[sextet as usize]));
            }
        }
        Ok(token)
    }

    fn optional_str(&mut self) -> Result<Option<&'a str>, CodecError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(CodecError::Malformed),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Malformed)
    }

    fn time(&mut self) -> Result<SystemTime, CodecError> {
        let nanos = u64::from_le_bytes(self.array()?);
        UNIX_EPOCH
            .checked_add(Duration::from_nanos(nanos))
            .ok_or(CodecError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wechat_oauth::ManualClock;
    use wechat_session_store::conformance::sample_record;

    /// `bytes` decoded as `record`'s (its id and app, version 0).
    fn reread(record: &SessionRecord, bytes: &[u8]) -> Result<SessionRecord, CodecError> {
        decode(record.sid, record.appid.clone(), 0, bytes)
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let clock = ManualClock::starting_now();
        let mut record = sample_record(&clock, "wxapp", "alice");
        record.version = 7;
        record.snapshot_user = true;
        record.user_id = UserId::new("account-42").unwrap();
        let bytes = encode(&record).unwrap();
        let back = decode(record.sid, record.appid.clone(), 7, &bytes).unwrap();
        assert_eq!(back, record);
        let mut mini = sample_record(&clock, "wxapp", "bob");
        mini.unionid = None;
        mini.credentials = Credentials::MiniProgram {
            session_key: SessionKey::new("SK=="),
        };
        let bytes = encode(&mini).unwrap();
        assert_eq!(reread(&mini, &bytes).unwrap(), mini);
        for cut in 0..bytes.len() {
            assert!(reread(&mini, &bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(reread(&mini, &longer).is_err());
        let mut scanned = sample_record(&clock, "wxoa", "carol");
        scanned.credentials = Credentials::Scanned;
        let bytes = encode(&scanned).unwrap();
        assert_eq!(reread(&scanned, &bytes).unwrap(), scanned);
    }

    /// Break to see it fail: the format check letting an unknown first byte through, the
    /// earlier formats' records (no user id; the user id always stored) no longer read, or the
    /// default user id stored again.
    #[test]
    fn every_format_is_read_and_no_other() {
        let clock = ManualClock::starting_now();
        let mut record = sample_record(&clock, "wxapp", "carol");
        record.unionid = None;
        record.user_id = UserId::default_for(&record.appid, &record.openid, None);
        let v3 = write(&record, false).unwrap();
        assert_eq!(v3[0], FORMAT_V3);
        for format in [0, 6, 255] {
            let mut unknown = v3.clone();
            unknown[0] = format;
            assert_eq!(
                reread(&record, &unknown),
                Err(CodecError::Malformed),
                "format {format}"
            );
        }
        // After the openid and the unionid's absence, one byte: the default user id.
        let flag_at = 1 + 2 + record.openid.as_str().len() + 1;
        assert_eq!(v3[flag_at], 0, "the default user id is not stored");
        // The second format: the user id stored, whatever it is.
        let mut v2 = v3.clone();
        let id = record.user_id.as_str();
        let mut stored = (id.len() as u16).to_le_bytes().to_vec();
        stored.extend_from_slice(id.as_bytes());
        v2.splice(flag_at..=flag_at, stored);
        v2[0] = FORMAT_V2;
        assert_eq!(reread(&record, &v2).unwrap(), record);
        // The first format: no user id, which reads back as the default one.
        let mut v1 = v3.clone();
        v1.remove(flag_at);
        v1[0] = FORMAT_V1;
        assert_eq!(reread(&record, &v1).unwrap(), record);
        // A user id that is the unionid costs one byte, not the unionid again.
        let mut with_unionid = sample_record(&clock, "wxapp", "dave");
        let unionid = with_unionid
            .unionid
            .clone()
            .expect("the sample has a unionid");
        with_unionid.user_id =
            UserId::default_for(&with_unionid.appid, &with_unionid.openid, Some(&unionid));
        let bytes = write(&with_unionid, false).unwrap();
        assert_eq!(reread(&with_unionid, &bytes).unwrap(), with_unionid);
        let text = unionid.as_str().as_bytes();
        assert_eq!(bytes.windows(text.len()).filter(|w| *w == text).count(), 1);
    }

    /// Break to see it fail: the client not written, or read back in the wrong order.
    #[test]
    fn where_a_login_came_from_round_trips_and_costs_a_byte_when_unknown() {
        let clock = ManualClock::starting_now();
        let mut record = sample_record(&clock, "wxapp", "erin");
        let without = encode(&record).unwrap();
        assert_eq!(without[0], FORMAT_V5);
        assert_eq!(without.last(), Some(&0), "no client: one byte says so");
        assert_eq!(reread(&record, &without).unwrap(), record);
        let old = write(&record, false).unwrap();
        assert_eq!(old[0], FORMAT_V3);
        assert_eq!(reread(&record, &old).unwrap(), record);
        for client in [
            LoginClient::new(
                Some("Mozilla/5.0 (iPhone)"),
                Some("203.0.113.9".parse().unwrap()),
            ),
            LoginClient::new(None, Some("2001:db8::1".parse().unwrap())),
            LoginClient::new(Some("curl/8"), None),
        ] {
            record.client = Some(Box::new(client));
            let current = encode(&record).unwrap();
            assert_eq!(reread(&record, &current).unwrap(), record);
            let bytes = write(&record, false).unwrap();
            assert_eq!(bytes[0], FORMAT_V4);
            assert_eq!(reread(&record, &bytes).unwrap(), record);
            let mut bad = bytes.clone();
            let flag = bytes.len()
                - 1
                - record
                    .client
                    .as_ref()
                    .unwrap()
                    .network()
                    .map_or(0, |n| n.len() + 2);
            bad[flag] = 7;
            assert!(reread(&record, &bad).is_err());
        }
    }

    /// Break to see it fail: a character mapped to the wrong value, the last chunk's bytes
    /// miscounted, or a token outside the alphabet packed anyway.
    #[test]
    fn tokens_pack_six_bits_a_character_and_round_trip_exactly() {
        let clock = ManualClock::starting_now();
        let mut record = sample_record(&clock, "wxapp", "frank");
        let alphabet = std::str::from_utf8(ALPHABET).unwrap();
        let mut tokens: Vec<String> = (0..=9).map(|n| alphabet[..n].to_owned()).collect();
        tokens.extend([
            alphabet.to_owned(),
            alphabet.chars().rev().collect(),
            // WeChat's shape, and the lengths that do not base64-decode.
            "86_xTZ-kq".repeat(10)[..86].to_owned(),
            "_".repeat(85),
            // Outside the alphabet: stored as text.
            "ab+/cd==".to_owned(),
            "naïve token".to_owned(),
        ]);
        let now = wechat_oauth::clock::Clock::now(&clock);
        for token in &tokens {
            record.credentials = Credentials::OAuth {
                access_token: AccessToken::new(token.clone()),
                access_token_expires_at: now,
                refresh_token: RefreshToken::new(format!("{token}R")),
            };
            let packed = encode(&record).unwrap();
            let back = reread(&record, &packed).unwrap();
            assert_eq!(back, record, "{token:?}");
            let plain = write(&record, false).unwrap();
            let in_alphabet = token.bytes().all(|b| sextet(b).is_some());
            if in_alphabet && token.len() >= 12 {
                assert!(packed.len() < plain.len(), "{token:?}");
            }
            if !in_alphabet {
                // The text itself is in the record, a byte 0 before its length.
                let text = token.as_bytes();
                assert!(packed.windows(text.len()).any(|w| w == text));
            }
        }
        // An 86-character token takes 65 bytes, not 86: 2 × 21 saved over format 4, less the
        // two kind bytes and the client byte.
        record.credentials = Credentials::OAuth {
            access_token: AccessToken::new("A".repeat(86)),
            access_token_expires_at: now,
            refresh_token: RefreshToken::new("B".repeat(86)),
        };
        assert_eq!(
            write(&record, false).unwrap().len() - encode(&record).unwrap().len(),
            2 * 21 - 3
        );
    }
}
