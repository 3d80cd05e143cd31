//! The pages a browser sees when a web login fails (a declined consent, a used link, WeChat
//! unavailable): [`ErrorPages`] writes them, replaceable on the layer's builder, with English
//! and Simplified Chinese built in ([`BuiltinPages`], chosen by `Accept-Language`). The status,
//! `Retry-After` and the page headers stay the library's whatever the page says.

use http::HeaderMap;

use crate::rejection::AuthError;

/// `text` with the five HTML special characters escaped (`&`, `<`, `>`, `"`, `'`): safe in
/// element content and in quoted attribute values.
pub fn escape_html(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// Writes the HTML page for a failed browser login. Set it with
/// [`WeChatAuthBuilder::error_pages`](crate::WeChatAuthBuilder::error_pages); the default is
/// [`BuiltinPages::Negotiated`].
///
/// ```
/// use http::HeaderMap;
/// use tower_wechat::{AuthError, ErrorPages, escape_html};
///
/// struct Branded;
///
/// impl ErrorPages for Branded {
///     fn page(&self, error: &AuthError, login_again: &str, _request: &HeaderMap) -> String {
///         format!(
///             "<!doctype html><title>Oops</title><p>{} <a href=\"{}\">Try again</a></p>",
///             escape_html(&error.to_string()),
///             escape_html(login_again),
///         )
///     }
/// }
/// ```
pub trait ErrorPages: Send + Sync + 'static {
    /// The page for `error` to a browser that sent `request`'s headers. `login_again` is the
    /// path that starts a new login. Escape what you put in it ([`escape_html`](crate::escape_html)):
    /// a login hook's refusal message is the application's text.
    fn page(&self, error: &AuthError, login_again: &str, request: &HeaderMap) -> String;
}

/// The built-in pages: a title, one sentence, "log in again" and "home" links; no script, no
/// foreign asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuiltinPages {
    /// Simplified Chinese when the browser's `Accept-Language` prefers Chinese (`zh`, any
    /// region) to English, else English.
    #[default]
    Negotiated,
    /// Always English.
    English,
    /// Always Simplified Chinese.
    Chinese,
}

impl ErrorPages for BuiltinPages {
    fn page(&self, error: &AuthError, login_again: &str, request: &HeaderMap) -> String {
        let chinese = match self {
            Self::English => false,
            Self::Chinese => true,
            Self::Negotiated => prefers_chinese(request),
        };
        let (lang, title, text, again, home) = if chinese {
            let (title, text) = chinese_text(error);
            ("zh-CN", title, text, "重新登录", "首页")
        } else {
            let title = english_title(error);
            ("en", title, error.to_string(), "Log in again", "Home")
        };
        format!(
            "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\n\
             <body><h1>{title}</h1>\n<p>{}</p>\n<p><a href=\"{}\">{again}</a> \
             · <a href=\"/\">{home}</a></p></body></html>\n",
            escape_html(&text),
            escape_html(login_again),
        )
    }
}

fn english_title(error: &AuthError) -> &'static str {
    match error {
        AuthError::AccessDenied(None) => "Login cancelled",
        AuthError::AccessDenied(Some(_)) => "WeChat refused this login",
        AuthError::InvalidState(_) => "This login link cannot be used",
        AuthError::SnapshotUser => "Open this page in WeChat to log in",
        AuthError::Refused { .. } => "This account cannot log in",
        AuthError::UpstreamUnavailable { .. }
        | AuthError::StoreUnavailable
        | AuthError::AccountsUnavailable(_) => "Login is unavailable right now",
        AuthError::TooManyAttempts(_) => "Too many attempts",
        _ => "Login failed",
    }
}

/// The title and sentence in Simplified Chinese (a login hook's refusal keeps its own message).
fn chinese_text(error: &AuthError) -> (&'static str, String) {
    let (title, text) = match error {
        AuthError::AccessDenied(None) => ("已取消登录", "你在微信中取消了授权。"),
        AuthError::AccessDenied(Some(_)) => {
            ("微信拒绝了此次登录", "请稍后再试，或换一个微信账号。")
        }
        AuthError::InvalidState(_) => (
            "此登录链接无法使用",
            "链接已使用、已过期，或不是在这个浏览器中发起的。请重新登录。",
        ),
        AuthError::SnapshotUser => (
            "请在微信中打开此页面登录",
            "这是页面的预览：点击“使用完整服务”或在微信中打开此页面。",
        ),
        AuthError::Refused { message, .. } => return ("此账号无法登录", message.clone()),
        AuthError::UpstreamUnavailable { .. }
        | AuthError::StoreUnavailable
        | AuthError::AccountsUnavailable(_) => ("暂时无法登录", "服务暂时不可用，请稍后再试。"),
        AuthError::TooManyAttempts(_) => ("尝试次数过多", "请稍后再试。"),
        _ => ("登录失败", "请重新登录。"),
    };
    (title, text.to_owned())
}

/// Whether `Accept-Language` ranks a Chinese tag above every English one (by q-value, then
/// order); no header or neither language: English.
fn prefers_chinese(request: &HeaderMap) -> bool {
    let mut best: Option<(bool, f32)> = None;
    for value in request.get_all(http::header::ACCEPT_LANGUAGE) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let chinese = tag == "zh" || tag.starts_with("zh-");
            let english = tag == "en" || tag.starts_with("en-");
            if !(chinese || english) || q <= 0.0 {
                continue;
            }
            if best.is_none_or(|(_, best_q)| q > best_q) {
                best = Some((chinese, q));
            }
        }
    }
    best.is_some_and(|(chinese, _)| chinese)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept_language: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_LANGUAGE,
            accept_language.parse().unwrap(),
        );
        headers
    }

    /// Breaks if negotiation ignores q-values, order, regions, or picks Chinese by default.
    #[test]
    fn the_browsers_preference_chooses_the_language() {
        for (header, chinese) in [
            ("zh-CN,zh;q=0.9,en;q=0.8", true),
            ("en-US,en;q=0.9,zh-CN;q=0.8", false),
            ("zh-TW", true),
            ("fr-FR,en;q=0.5,zh;q=0.7", true),
            ("en;q=0.5,zh;q=0", false),
            ("fr", false),
            ("", false),
        ] {
            assert_eq!(prefers_chinese(&headers(header)), chinese, "{header:?}");
        }
        assert!(!prefers_chinese(&HeaderMap::new()));
    }

    /// Breaks if a page stops escaping (the hook's message is the application's text) or
    /// loses its way back.
    #[test]
    fn pages_are_escaped_and_link_to_a_new_login() {
        let refused = AuthError::Refused {
            code: "banned".into(),
            message: "<script>x</script>".into(),
        };
        for pages in [BuiltinPages::English, BuiltinPages::Chinese] {
            let page = pages.page(&refused, "/start?a=1&b=2", &HeaderMap::new());
            assert!(!page.contains("<script>"), "{page}");
            assert!(page.contains("&lt;script&gt;"), "{page}");
            assert!(page.contains("href=\"/start?a=1&amp;b=2\""), "{page}");
        }
        let chinese =
            BuiltinPages::Negotiated.page(&AuthError::AccessDenied(None), "/s", &headers("zh-CN"));
        assert!(
            chinese.contains("lang=\"zh-CN\"") && chinese.contains("已取消登录"),
            "{chinese}"
        );
    }
}
