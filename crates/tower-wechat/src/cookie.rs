//! The cookies: the session cookie's attributes ([`SessionCookie`]) and reading a cookie's
//! values from a request. The layer reads the session cookie; the login endpoints set it and
//! the web flow's binding cookie.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::rejection::AuthError;

/// `SameSite` for the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax` (default): sent on top-level navigations, as the WeChat callback is.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (requires `Secure`).
    None,
}

/// The session cookie's attributes. It is always `HttpOnly`.
///
/// With `Secure`, `Path=/` and [`host_prefix`](Self::host_prefix) (all the default) the cookie
/// is named `__Host-<name>`: browsers then refuse it from a sibling domain or over plain HTTP,
/// so no other site can toss a cookie of that name at ours.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionCookie {
    /// Cookie name (default `wechat_session`), without the `__Host-` prefix.
    pub name: String,
    /// Prefix the name with `__Host-` when the cookie is `Secure` with `Path=/` (default true;
    /// this cookie never has a `Domain`).
    pub host_prefix: bool,
    /// `Secure` (default true; browsers accept it on `http://localhost`). With a
    /// [`WebFlow`](crate::WebFlow), its public URL's scheme decides.
    pub secure: bool,
    /// `Path` (default `/`).
    pub path: String,
    /// `SameSite` (default Lax).
    pub same_site: SameSite,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self {
            name: "wechat_session".into(),
            host_prefix: true,
            secure: true,
            path: "/".into(),
            same_site: SameSite::Lax,
        }
    }
}

impl SessionCookie {
    /// The cookie with a different name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The cookie with `Secure` on or off.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The name the cookie is sent under: `__Host-<name>` when [`host_prefix`](Self::host_prefix)
    /// applies, else `name`.
    pub fn full_name(&self) -> String {
        if self.host_prefix && self.secure && self.path == "/" {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// `Set-Cookie` value holding `token` for `max_age` seconds.
    pub fn set(&self, token: &str, max_age: u64) -> Option<HeaderValue> {
        let mut value = HeaderValue::try_from(self.render(token, max_age)).ok()?;
        // A credential: marked so that `Debug` of the headers and HTTP/2's HPACK keep it out.
        value.set_sensitive(true);
        Some(value)
    }

    /// The same attributes for another cookie name (e.g. the web flow's binding cookie).
    pub(crate) fn with_name(&self, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..self.clone()
        }
    }

    /// This cookie's value in a request, if exactly one was sent (and it is UTF-8).
    pub(crate) fn value_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.full_name();
        let mut values = cookies(headers, &name);
        match (values.next(), values.next()) {
            (Some(Ok(one)), None) => Some(one),
            _ => None,
        }
    }

    /// `Set-Cookie` value that deletes the cookie.
    pub fn clear(&self) -> Option<HeaderValue> {
        HeaderValue::try_from(self.render("", 0)).ok()
    }

    fn render(&self, value: &str, max_age: u64) -> String {
        let same_site = match self.same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}",
            self.full_name(),
            self.path
        )
    }
}

/// Every non-empty value of the cookie `name`, across all `Cookie` headers, in order; a value
/// that is not UTF-8 is an error item.
pub(crate) fn cookies<'h, 'n>(
    headers: &'h HeaderMap,
    name: &'n str,
) -> impl Iterator<Item = Result<&'h str, AuthError>> + use<'h, 'n> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let token = pair.trim_ascii().strip_prefix(name.as_bytes())?;
            let token = token.strip_prefix(b"=")?;
            match std::str::from_utf8(token) {
                Err(_) => Some(Err(AuthError::MalformedCredentials)),
                Ok(token) => Some(Ok(token.trim_matches('"'))).filter(|t| t != &Ok("")),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_render() {
        let c = SessionCookie::default();
        assert_eq!(
            c.set("tok", 60).unwrap(),
            "__Host-wechat_session=tok; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        let unprefixed = SessionCookie {
            host_prefix: false,
            ..SessionCookie::default()
        };
        assert_eq!(unprefixed.full_name(), "wechat_session");
        assert_eq!(
            c.secure(false).clear().unwrap(),
            "wechat_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }
}
