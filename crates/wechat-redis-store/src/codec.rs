//! The compact binary form of a session record, before sealing: a format byte, then the fields
//! with length-prefixed strings and times as nanoseconds since the epoch. The session id, app and
//! version live outside it (the key, the sealed value's header, a hash field), so they are not
//! repeated. A new format gets a new first byte; old ones stay readable.

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

/// Encodes everything of `record` but its id, app and version.
pub(crate) fn encode(record: &SessionRecord) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(match record.client {
        Some(_) => FORMAT_V4,
        None => FORMAT_V3,
    });
    put_str(&mut out, record.openid.as_str())?;
    match &record.unionid {
        Some(unionid) => {
            out.push(1);
            put_str(&mut out, unionid.as_str())?;
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
            put_str(&mut out, access_token.secret())?;
            put_time(&mut out, *access_token_expires_at);
            put_str(&mut out, refresh_token.secret())?;
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
    if !matches!(format, FORMAT_V1 | FORMAT_V2 | FORMAT_V3 | FORMAT_V4) {
        return Err(CodecError::Malformed);
    }
    let openid = OpenId::new(r.str()?);
    let unionid = match r.byte()? {
        0 => None,
        1 => Some(UnionId::new(r.str()?)),
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
            access_token: AccessToken::new(r.str()?),
            access_token_expires_at: r.time()?,
            refresh_token: RefreshToken::new(r.str()?),
        },
        MINI_PROGRAM => Credentials::MiniProgram {
            session_key: SessionKey::new(r.str()?),
        },
        SCANNED => Credentials::Scanned,
        _ => return Err(CodecError::Malformed),
    };
    let (created_at, expires_at, confirmed_at) = (r.time()?, r.time()?, r.time()?);
    let client = match format {
        FORMAT_V4 => {
            let (user_agent, network) = (r.optional_str()?, r.optional_str()?);
            Some(Box::new(LoginClient::from_stored(user_agent, network)))
        }
        _ => None,
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
        assert_eq!(
            decode(mini.sid, mini.appid.clone(), 0, &bytes).unwrap(),
            mini
        );
        for cut in 0..bytes.len() {
            assert!(decode(mini.sid, mini.appid.clone(), 0, &bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(mini.sid, mini.appid.clone(), 0, &longer).is_err());
        let mut scanned = sample_record(&clock, "wxoa", "carol");
        scanned.credentials = Credentials::Scanned;
        let bytes = encode(&scanned).unwrap();
        assert_eq!(
            decode(scanned.sid, scanned.appid.clone(), 0, &bytes).unwrap(),
            scanned
        );
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
        let v3 = encode(&record).unwrap();
        for format in [0, 5, 255] {
            let mut unknown = v3.clone();
            unknown[0] = format;
            assert_eq!(
                decode(record.sid, record.appid.clone(), 0, &unknown),
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
        assert_eq!(
            decode(record.sid, record.appid.clone(), 0, &v2).unwrap(),
            record
        );
        // The first format: no user id, which reads back as the default one.
        let mut v1 = v3.clone();
        v1.remove(flag_at);
        v1[0] = FORMAT_V1;
        assert_eq!(
            decode(record.sid, record.appid.clone(), 0, &v1).unwrap(),
            record
        );
        // A user id that is the unionid costs one byte, not the unionid again.
        let mut with_unionid = sample_record(&clock, "wxapp", "dave");
        let unionid = with_unionid
            .unionid
            .clone()
            .expect("the sample has a unionid");
        with_unionid.user_id =
            UserId::default_for(&with_unionid.appid, &with_unionid.openid, Some(&unionid));
        let bytes = encode(&with_unionid).unwrap();
        assert_eq!(
            decode(with_unionid.sid, with_unionid.appid.clone(), 0, &bytes).unwrap(),
            with_unionid
        );
        let text = unionid.as_str().as_bytes();
        assert_eq!(bytes.windows(text.len()).filter(|w| *w == text).count(), 1);
    }

    /// Break to see it fail: the client not written, or read back in the wrong order.
    #[test]
    fn where_a_login_came_from_round_trips_and_costs_nothing_when_unknown() {
        let clock = ManualClock::starting_now();
        let mut record = sample_record(&clock, "wxapp", "erin");
        let without = encode(&record).unwrap();
        assert_eq!(without[0], FORMAT_V3, "no client, no new bytes");
        for client in [
            LoginClient::new(
                Some("Mozilla/5.0 (iPhone)"),
                Some("203.0.113.9".parse().unwrap()),
            ),
            LoginClient::new(None, Some("2001:db8::1".parse().unwrap())),
            LoginClient::new(Some("curl/8"), None),
        ] {
            record.client = Some(Box::new(client));
            let bytes = encode(&record).unwrap();
            assert_eq!(bytes[0], FORMAT_V4);
            assert_eq!(
                decode(record.sid, record.appid.clone(), 0, &bytes).unwrap(),
                record
            );
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
            assert!(decode(record.sid, record.appid.clone(), 0, &bad).is_err());
        }
    }
}
