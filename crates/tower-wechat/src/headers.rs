//! The HTTP headers that keep credentials out of logs and pages safe in a browser: the
//! [`security_headers`] layer an application puts around its router, and the page headers the
//! login endpoints set on the pages they render themselves.

use http::header::{self, HeaderName, HeaderValue};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_layer::Stack;

use crate::REISSUED_TOKEN_HEADER;

/// `Content-Security-Policy` of pages a browser shows: nothing from other origins, no framing,
/// forms post to this site or HTTPS (WeChat's consent page).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self' https:";

/// The headers that carry credentials: the session token (`Authorization`, `Cookie`,
/// `Set-Cookie`) and a reissued token ([`REISSUED_TOKEN_HEADER`]).
pub const SENSITIVE_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    REISSUED_TOKEN_HEADER,
];

/// The layer [`security_headers`] builds.
pub type SecurityHeadersLayer = Stack<
    Stack<
        Stack<SetResponseHeaderLayer<HeaderValue>, SetResponseHeaderLayer<HeaderValue>>,
        SetResponseHeaderLayer<HeaderValue>,
    >,
    SetSensitiveHeadersLayer,
>;

/// The headers every service behind the login layer wants, as one layer (tower-http's):
///
/// - [`SENSITIVE_HEADERS`] marked sensitive on requests and responses, so `TraceLayer`, `Debug`
///   and logs print them as `Sensitive`. Add this layer **last** (outermost), so every layer
///   inside it sees them marked.
/// - On responses that do not set them: `Content-Security-Policy: default-src 'self';
///   frame-ancestors 'none'; form-action 'self' https:` (no framing, no foreign resources),
///   `Referrer-Policy: no-referrer` (the web callback's URL carries the login code, which must
///   not leak through `Referer`) and `X-Content-Type-Options: nosniff`. Harmless on JSON.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hi" }))
///     .layer(tower_wechat::security_headers());
/// # }
/// ```
pub fn security_headers() -> SecurityHeadersLayer {
    let [csp, referrer, nosniff] = page_headers();
    let set = |(name, value): (HeaderName, HeaderValue)| {
        SetResponseHeaderLayer::if_not_present(name, value)
    };
    Stack::new(
        Stack::new(Stack::new(set(csp), set(referrer)), set(nosniff)),
        SetSensitiveHeadersLayer::new(SENSITIVE_HEADERS),
    )
}

/// The three page headers of [`security_headers`].
fn page_headers() -> [(HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// Sets the page headers of [`security_headers`] on a page the endpoints render (a browser's
/// error page, the web callback's redirect), keeping values already there: the pages are safe
/// even behind an application that did not add the layer.
pub(crate) fn secure_page_headers(headers: &mut http::HeaderMap) {
    for (name, value) in page_headers() {
        headers.entry(name).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    /// Breaks if a header is dropped from the layer or the layer overrides an app's own value.
    #[tokio::test]
    async fn the_layer_marks_credentials_and_sets_page_headers_it_does_not_override() {
        let inner = tower::service_fn(|request: http::Request<()>| async move {
            assert!(request.headers()[header::AUTHORIZATION].is_sensitive());
            assert!(request.headers()[header::COOKIE].is_sensitive());
            let mut response = http::Response::new(());
            response
                .headers_mut()
                .insert(header::REFERRER_POLICY, HeaderValue::from_static("origin"));
            response
                .headers_mut()
                .insert(REISSUED_TOKEN_HEADER, HeaderValue::from_static("t"));
            Ok::<_, Infallible>(response)
        });
        let service = security_headers().layer(inner);
        let request = http::Request::builder()
            .header(header::AUTHORIZATION, "Bearer x")
            .header(header::COOKIE, "a=b")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(
            headers[header::REFERRER_POLICY],
            "origin",
            "the app's own value stays"
        );
        assert!(headers[REISSUED_TOKEN_HEADER].is_sensitive());
    }
}
