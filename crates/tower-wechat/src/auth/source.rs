//! Where the session token comes from: `Authorization: Bearer`, a cookie, or a named header,
//! tried in the configured order. One pass over the request's headers finds `Authorization` and
//! `Cookie`; extraction borrows from the request: no allocation.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) use crate::cookie::cookies;
use crate::rejection::AuthError;

/// The name of the response header that carries a re-issued token to bearer clients.
pub const REISSUED_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-session-token");

/// A place the session token may be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The session cookie (see [`SessionCookie`](crate::SessionCookie)).
    Cookie,
    /// A custom header holding the bare token.
    Header(HeaderName),
}

/// How a token was sent, which decides how a re-issued one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SentBy {
    /// In a header: the new token goes in [`REISSUED_TOKEN_HEADER`].
    Header,
    /// In the cookie: the new token goes in `Set-Cookie`.
    Cookie,
    /// In several cookies of the session cookie's name (cookie tossing: a sibling domain can
    /// set one). None is trusted unless exactly one verifies; then it counts as [`Self::Cookie`].
    /// Otherwise none is cleared either: which one is ours cannot be told.
    Cookies,
}

/// Finds the token: the first configured source that has one. A source that is present but
/// malformed (non-UTF-8, empty bearer, repeated header) is an error, not a fallthrough; the
/// error says how the bad token was sent (a bad cookie is cleared).
/// What [`find`] found: the token as sent and how, or why what was sent is refused (and how).
pub(crate) type Found<'a> = Result<Option<(&'a [u8], SentBy)>, (AuthError, SentBy)>;

pub(crate) fn find<'a>(
    headers: &'a HeaderMap,
    sources: &[TokenSource],
    cookie_name: &str,
) -> Found<'a> {
    let sent = Sent::scan(headers);
    for source in sources {
        let found = match source {
            TokenSource::Bearer => bearer(&sent.authorization)
                .map_err(|e| (e, SentBy::Header))?
                .map(|t| (t, SentBy::Header)),
            TokenSource::Cookie if !sent.cookie => None,
            TokenSource::Cookie => {
                let mut values = cookies(headers, cookie_name);
                match (values.next(), values.next()) {
                    (None, _) => None,
                    (Some(one), None) => Some((
                        one.map_err(|e| (e, SentBy::Cookie))?.as_bytes(),
                        SentBy::Cookie,
                    )),
                    // Several: each is verified (malformed ones skipped) by the caller.
                    (Some(first), Some(_)) => {
                        Some((first.unwrap_or("").as_bytes(), SentBy::Cookies))
                    }
                }
            }
            TokenSource::Header(name) => single(headers, name)
                .map_err(|e| (e, SentBy::Header))?
                .map(|t| (t.as_bytes(), SentBy::Header)),
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The `Authorization` and `Cookie` headers of a request, found in one pass over its headers
/// (cheaper than a lookup for each on the few headers a request has, and on a request with
/// neither — the anonymous one — the only cost).
struct Sent<'a> {
    authorization: Values<'a>,
    cookie: bool,
}

/// A header's first value, and whether it has more.
#[derive(Default)]
struct Values<'a> {
    first: Option<&'a HeaderValue>,
    more: bool,
}

impl<'a> Sent<'a> {
    fn scan(headers: &'a HeaderMap) -> Self {
        let mut sent = Sent {
            authorization: Values::default(),
            cookie: false,
        };
        for (name, value) in headers {
            if name == AUTHORIZATION {
                let values = &mut sent.authorization;
                values.more |= values.first.is_some();
                values.first = values.first.or(Some(value));
            } else if name == COOKIE {
                sent.cookie = true;
            }
        }
        sent
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedCredentials);
    }
    let token = value
        .to_str()
        .map_err(|_| AuthError::MalformedCredentials)?
        .trim();
    if token.is_empty() {
        return Err(AuthError::MalformedCredentials);
    }
    Ok(Some(token))
}

/// The token of an `Authorization: Bearer` header, as sent. Its bytes are checked where it is
/// verified: a token seen before matches one that verified byte for byte; a new one must be
/// UTF-8 without spaces (else 400), then verify.
fn bearer<'a>(authorization: &Values<'a>) -> Result<Option<&'a [u8]>, AuthError> {
    let Some(value) = authorization.first else {
        return Ok(None);
    };
    if authorization.more {
        return Err(AuthError::MalformedCredentials);
    }
    let bytes = value.as_bytes();
    // What clients send, checked at once; any other spelling of the scheme the long way.
    let token = match bytes.strip_prefix(b"Bearer ") {
        Some(token) => token,
        None => {
            let scheme_ends = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
            if !bytes[..scheme_ends].eq_ignore_ascii_case(b"bearer") {
                // Another scheme (Basic, ...) is not ours: try the next source.
                return Ok(None);
            }
            &bytes[scheme_ends..]
        }
    }
    .trim_ascii();
    if token.is_empty() {
        return Err(AuthError::MalformedCredentials);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    const ALL: [TokenSource; 3] = [
        TokenSource::Bearer,
        TokenSource::Cookie,
        TokenSource::Header(HeaderName::from_static("x-token")),
    ];

    #[test]
    fn sources_in_order() {
        let h = headers(&[
            ("authorization", b"Bearer abc"),
            ("cookie", b"a=1; wechat_session=def; b=2"),
        ]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Ok(Some((&b"abc"[..], SentBy::Header)))
        );
        let h = headers(&[("cookie", b"a=1; wechat_session=def")]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Ok(Some((&b"def"[..], SentBy::Cookie)))
        );
        let h = headers(&[("authorization", b"Basic Zm9v"), ("x-token", b"ghi")]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Ok(Some((&b"ghi"[..], SentBy::Header)))
        );
        let h = headers(&[("cookie", b"wechat_session_other=x")]);
        assert_eq!(find(&h, &ALL, "wechat_session"), Ok(None));
        assert_eq!(find(&HeaderMap::new(), &ALL, "wechat_session"), Ok(None));
    }

    /// The scheme is case-insensitive and the token trimmed, whether the header takes the quick
    /// way (`Bearer ` exactly) or not. Break to see it fail: the long way made case-sensitive,
    /// or the quick way not trimming.
    #[test]
    fn the_bearer_scheme_in_any_spelling() {
        for value in [
            &b"Bearer abc"[..],
            b"Bearer   abc ",
            b"bearer abc",
            b"BEARER abc",
            b"BeArEr  abc",
        ] {
            let sent = headers(&[("authorization", value)]);
            assert_eq!(
                find(&sent, &ALL, "wechat_session"),
                Ok(Some((&b"abc"[..], SentBy::Header))),
                "{value:?}"
            );
        }
        for other in [&b"Bearerabc"[..], b"Basic abc", b"Bear abc"] {
            let sent = headers(&[("authorization", other)]);
            assert_eq!(find(&sent, &ALL, "wechat_session"), Ok(None), "{other:?}");
        }
        for empty in [&b"Bearer"[..], b"bearer   ", b"Bearer \t"] {
            let sent = headers(&[("authorization", empty)]);
            assert_eq!(
                find(&sent, &ALL, "wechat_session"),
                Err((AuthError::MalformedCredentials, SentBy::Header)),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn malformed_credentials_are_errors() {
        for bad in [
            headers(&[("authorization", b"Bearer ")]),
            headers(&[
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer b"),
            ]),
            headers(&[("cookie", b"wechat_session=\xff")]),
        ] {
            assert!(
                matches!(
                    find(&bad, &ALL, "wechat_session"),
                    Err((AuthError::MalformedCredentials, _))
                ),
                "{bad:?}"
            );
        }
        // Odd bytes are the verifier's to judge (a token seen before is matched as sent).
        for (value, token) in [
            (&b"Bearer a b"[..], &b"a b"[..]),
            (b"Bearer \xff\xfe", b"\xff\xfe"),
        ] {
            let sent = headers(&[("authorization", value)]);
            assert_eq!(
                find(&sent, &ALL, "wechat_session"),
                Ok(Some((token, SentBy::Header)))
            );
        }
    }

    #[test]
    fn duplicate_and_bad_cookies_are_told_apart() {
        let h = headers(&[
            ("cookie", b"wechat_session=a; x=1"),
            ("cookie", b"wechat_session=b"),
        ]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Ok(Some((&b"a"[..], SentBy::Cookies)))
        );
        assert_eq!(
            cookies(&h, "wechat_session").collect::<Vec<_>>(),
            [Ok("a"), Ok("b")]
        );
        let h = headers(&[("cookie", b"wechat_session=\xff")]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Err((AuthError::MalformedCredentials, SentBy::Cookie))
        );
        // A tossed malformed cookie next to ours does not lock the user out.
        let h = headers(&[("cookie", b"wechat_session=\xff; wechat_session=good")]);
        assert_eq!(
            find(&h, &ALL, "wechat_session"),
            Ok(Some((&b""[..], SentBy::Cookies)))
        );
    }
}
