//! Rejections for gRPC clients: [`GrpcRejection`] answers a refused request the way gRPC
//! expects — HTTP 200, `content-type: application/grpc`, no body ("trailers-only"), and the
//! status in `grpc-status` / `grpc-message` — instead of an HTTP 401 a gRPC client reports as a
//! transport error. A wait is carried in `retry-after` and in `grpc-status-details-bin` as a
//! `google.rpc.Status` with a `google.rpc.RetryInfo`, which tonic and grpc-go clients decode.
//!
//! | [`AuthError`] | gRPC status |
//! |---|---|
//! | 401s (missing, invalid, expired token; session ended; grant gone; session key expired) | `UNAUTHENTICATED` (16) |
//! | 403s (denied, refused, scope) | `PERMISSION_DENIED` (7) |
//! | 503s (WeChat, the store or the accounts unavailable) and 502 | `UNAVAILABLE` (14), with the retry delay |
//! | 429 (too many attempts) | `RESOURCE_EXHAUSTED` (8), with the retry delay |
//! | 400s, 415 | `INVALID_ARGUMENT` (3) |
//! | 404s | `NOT_FOUND` (5) |
//! | 500s | `INTERNAL` (13) |

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::rejection::{AuthError, RejectionResponse};

/// The content type gRPC requests carry (`application/grpc`, `application/grpc+proto`...).
const GRPC_CONTENT_TYPE: &[u8] = b"application/grpc";

/// Whether a request is a gRPC call, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(GRPC_CONTENT_TYPE))
}

/// Answers every refusal with a gRPC status (see the [module docs](self)): for a server that
/// serves only gRPC (tonic). The body type only needs `Default` (tonic's `Body` has no
/// `From<Bytes>`). For a server mixing gRPC with JSON or pages on one port, use
/// [`GrpcRejection::or_else`].
///
/// ```
/// use tower_wechat::{GrpcRejection, JsonAuthRejection};
///
/// // tonic only:
/// let grpc = GrpcRejection;
/// // gRPC requests get a gRPC status, everything else the JSON answer:
/// let mixed = GrpcRejection::or_else(JsonAuthRejection);
/// # let _ = (grpc, mixed);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcRejection;

impl GrpcRejection {
    /// gRPC requests get a gRPC status; any other request gets `other`'s answer.
    pub fn or_else<R>(other: R) -> GrpcOrElse<R> {
        GrpcOrElse(other)
    }
}

impl<B: Default> RejectionResponse<B> for GrpcRejection {
    fn response(&self, error: &AuthError) -> Response<B> {
        grpc_response(error)
    }
}

/// [`GrpcRejection::or_else`]: a gRPC status for gRPC requests (by `content-type`), `R`'s
/// answer for the others.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcOrElse<R>(R);

impl<B: Default, R: RejectionResponse<B>> RejectionResponse<B> for GrpcOrElse<R> {
    /// Without the request (the extractor of optional mode): `R`'s answer.
    fn response(&self, error: &AuthError) -> Response<B> {
        self.0.response(error)
    }

    fn response_to(&self, error: &AuthError, request: &HeaderMap) -> Response<B> {
        if is_grpc(request) {
            grpc_response(error)
        } else {
            self.0.response_to(error, request)
        }
    }
}

/// The gRPC status code of an error.
pub fn grpc_code(error: &AuthError) -> i32 {
    match error.status() {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => 14,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::NOT_FOUND => 5,
        _ => 13,
    }
}

/// The trailers-only answer: HTTP 200, the status in headers, an empty body.
fn grpc_response<B: Default>(error: &AuthError) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let code = grpc_code(error);
    headers.insert("grpc-status", HeaderValue::from(code));
    let message = format!("{}: {}", error.code(), error);
    if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", value);
    }
    if let Some(retry_after) = error.retry_after() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs().max(1)),
        );
        let details = status_details(code, &message, retry_after);
        if let Ok(value) = HeaderValue::from_str(&STANDARD_NO_PAD.encode(details)) {
            headers.insert("grpc-status-details-bin", value);
        }
    }
    response.extensions_mut().insert(error.clone());
    response
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A protobuf `google.rpc.Status { code, message, details: [Any(RetryInfo { retry_delay })] }`,
/// encoded by hand: three small messages are not worth a protobuf dependency.
fn status_details(code: i32, message: &str, retry_after: Duration) -> Bytes {
    // google.protobuf.Duration { seconds = 1 }.
    let mut delay = Vec::new();
    field_varint(&mut delay, 1, retry_after.as_secs().max(1));
    // google.rpc.RetryInfo { retry_delay = 1 }.
    let mut retry_info = Vec::new();
    field_bytes(&mut retry_info, 1, &delay);
    // google.protobuf.Any { type_url = 1, value = 2 }.
    let mut any = Vec::new();
    field_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    field_bytes(&mut any, 2, &retry_info);
    // google.rpc.Status { code = 1, message = 2, details = 3 }.
    let mut status = Vec::new();
    field_varint(&mut status, 1, code as u64);
    field_bytes(&mut status, 2, message.as_bytes());
    field_bytes(&mut status, 3, &any);
    Bytes::from(status)
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_a_grpc_status_in_a_trailers_only_answer() {
        let cases = [
            (AuthError::MissingToken, 16),
            (AuthError::TokenExpired, 16),
            (AuthError::SessionKeyExpired, 16),
            (AuthError::AccessDenied(None), 7),
            (
                AuthError::UpstreamUnavailable {
                    retry_after: Duration::from_secs(30),
                },
                14,
            ),
            (AuthError::StoreUnavailable, 14),
            (AuthError::TooManyAttempts(Duration::from_secs(9)), 8),
            (AuthError::InvalidPhoneCode, 3),
            (AuthError::AppNotConfigured, 5),
            (AuthError::MissingLayer, 13),
        ];
        for (error, code) in cases {
            let response: Response<String> = grpc_response(&error);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["grpc-status"], code.to_string().as_str());
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
            assert!(response.body().is_empty());
            assert_eq!(response.extensions().get::<AuthError>(), Some(&error));
            assert_eq!(
                response.headers().contains_key("grpc-status-details-bin"),
                error.retry_after().is_some()
            );
        }
    }

    #[test]
    fn messages_are_percent_encoded_and_details_are_protobuf() {
        assert_eq!(percent_encode("a 100% ü\n"), "a 100%25 %C3%BC%0A");
        let details = status_details(14, "m", Duration::from_secs(300));
        // Status.code = 14, Status.message = "m", then the Any.
        assert_eq!(&details[..5], &[0x08, 14, 0x12, 1, b'm']);
        // RetryInfo's Duration.seconds = 300 as a varint at the very end.
        assert_eq!(&details[details.len() - 3..], &[0x08, 0xAC, 0x02]);
    }

    #[test]
    fn or_else_chooses_by_content_type() {
        let mixed = GrpcRejection::or_else(crate::JsonAuthRejection);
        let mut headers = HeaderMap::new();
        let json: Response<axum_like::Body> = mixed.response_to(&AuthError::InvalidToken, &headers);
        assert_eq!(json.status(), StatusCode::UNAUTHORIZED);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let grpc: Response<axum_like::Body> = mixed.response_to(&AuthError::InvalidToken, &headers);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "16");
    }

    /// A body with both `Default` and `From<Bytes>`, like axum's.
    mod axum_like {
        #[derive(Default)]
        pub struct Body(#[allow(dead_code)] bytes::Bytes);
        impl From<bytes::Bytes> for Body {
            fn from(bytes: bytes::Bytes) -> Self {
                Self(bytes)
            }
        }
    }
}
