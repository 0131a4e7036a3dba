//! The bearer key in front of `/api` and `/mcp`: `Authorization: Bearer <CALLBRIDGE_API_KEY>`.
//!
//! [`check_bearer`] compares the presented key with the configured one in constant time (`subtle`); an empty configured
//! key refuses everything. [`require_bearer`] wraps a scope with that check (`middleware::from_fn(require_bearer)`),
//! reading the key from the shared [`AppState`]. A refusal is `401 Unauthorized` with `WWW-Authenticate: Bearer`
//! (RFC 6750, section 3) and the JSON error body every `/api` error uses (see [`json_error`]).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError, web};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::http::state::AppState;

/// The authentication scheme of the `Authorization` header (compared case-insensitively, RFC 7235 section 2.1).
const BEARER_SCHEME: &str = "bearer";

/// Why a request to `/api` or `/mcp` was refused. Every variant answers `401` with `WWW-Authenticate: Bearer` and
/// `{"error":{"code":"unauthorized","message":...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The server has no `CALLBRIDGE_API_KEY`: nothing can be let in.
    #[error("CALLBRIDGE_API_KEY is not set on the server, so /api and /mcp refuse every request")]
    NotConfigured,
    /// No `Authorization` header, or not of the form `Bearer <key>`.
    #[error("missing bearer key: send the header `Authorization: Bearer <CALLBRIDGE_API_KEY>`")]
    Missing,
    /// A bearer key was given but it is not the configured one.
    #[error("invalid bearer key: it does not match the server's CALLBRIDGE_API_KEY")]
    Invalid,
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = json_error(self.status_code(), "unauthorized", &self.to_string());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// The JSON error body of `/api`: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Serialize)]
struct ErrorEnvelope<'a> {
    /// The one error.
    error: ErrorBody<'a>,
}

/// The `error` object: a stable machine-readable `code` and a human-readable `message`.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    /// `unauthorized`, `invalid_request`, `not_found`, ... (see `crate::calls::service::ServiceError::code`).
    code: &'a str,
    /// What went wrong, in words a person or an agent can act on. Never holds a secret.
    message: &'a str,
}

/// A JSON error response `{"error":{"code":code,"message":message}}` with `status`, as every `/api` error is sent.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorEnvelope {
        error: ErrorBody { code, message },
    })
}

/// The key of an `Authorization: Bearer <key>` header value, if the value has that form (scheme matched
/// case-insensitively, surrounding whitespace ignored, an empty key is no key).
fn bearer_key(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme_len = BEARER_SCHEME.len();
    if value.len() <= scheme_len
        || !value[..scheme_len].eq_ignore_ascii_case(BEARER_SCHEME.as_bytes())
    {
        return None;
    }
    let rest = &value[scheme_len..];
    if !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    let key = rest.trim_ascii_start();
    (!key.is_empty()).then_some(key)
}

/// Checks `Authorization: Bearer <key>` on `req` against `api_key`.
///
/// The comparison is constant-time over the key's bytes (`subtle::ConstantTimeEq`): a key of another length is refused
/// without looking at its content, and a key of the right length is compared without exiting at the first differing
/// byte. Only the length of the configured key can be learned from timing.
///
/// # Errors
/// [`AuthError::NotConfigured`] when `api_key` is empty (whatever the request carries); [`AuthError::Missing`] without
/// a well-formed bearer header; [`AuthError::Invalid`] when the key does not match.
pub fn check_bearer(req: &HttpRequest, api_key: &SecretString) -> Result<(), AuthError> {
    check_header(req.headers().get(header::AUTHORIZATION), api_key)
}

/// [`check_bearer`] over the raw header value, shared by the request and service-request forms.
fn check_header(
    authorization: Option<&HeaderValue>,
    api_key: &SecretString,
) -> Result<(), AuthError> {
    let expected = api_key.expose_secret().as_bytes();
    if expected.is_empty() {
        return Err(AuthError::NotConfigured);
    }
    let presented = authorization
        .and_then(|value| bearer_key(value.as_bytes()))
        .ok_or(AuthError::Missing)?;
    if bool::from(presented.ct_eq(expected)) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

/// Middleware for a scope behind the bearer key: `web::scope("/api").wrap(middleware::from_fn(require_bearer))`.
///
/// Reads the configured key from the `web::Data<AppState>` app data. A refused request gets the [`AuthError`]
/// response (401) and never reaches the wrapped service.
///
/// # Errors
/// Only the wrapped service's own errors; refusals are answered as responses, not errors.
pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let verdict = match req.app_data::<web::Data<AppState>>() {
        Some(state) => check_header(req.headers().get(header::AUTHORIZATION), &state.api_key),
        None => {
            // A wiring mistake, not something a peer can cause: refuse rather than let anyone in.
            tracing::error!("bearer check without AppState in the app data; refusing the request");
            Err(AuthError::NotConfigured)
        }
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refusal) => {
            tracing::debug!(path = %req.path(), reason = %refusal, "bearer key refused");
            Ok(req
                .into_response(refusal.error_response())
                .map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn key(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    fn request_with(authorization: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((header::AUTHORIZATION, authorization))
            .to_http_request()
    }

    #[test]
    fn the_configured_key_is_accepted() {
        let req = request_with("Bearer test-api-key");

        let verdict = check_bearer(&req, &key("test-api-key"));

        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn the_scheme_is_matched_case_insensitively_and_whitespace_is_ignored() {
        let req = request_with("  bEaReR   test-api-key ");

        let verdict = check_bearer(&req, &key("test-api-key"));

        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn a_request_without_the_header_is_refused_as_missing() {
        let req = TestRequest::default().to_http_request();

        let verdict = check_bearer(&req, &key("test-api-key"));

        assert_eq!(verdict, Err(AuthError::Missing));
    }

    #[test]
    fn another_scheme_or_an_empty_key_is_refused_as_missing() {
        for value in [
            "Basic dGVzdDp0ZXN0",
            "Bearer",
            "Bearer   ",
            "Bearertest-api-key",
            "test-api-key",
        ] {
            let req = request_with(value);

            let verdict = check_bearer(&req, &key("test-api-key"));

            assert_eq!(verdict, Err(AuthError::Missing), "{value:?}");
        }
    }

    #[test]
    fn a_wrong_key_of_the_same_length_is_refused() {
        let req = request_with("Bearer test-api-kez");

        let verdict = check_bearer(&req, &key("test-api-key"));

        assert_eq!(verdict, Err(AuthError::Invalid));
    }

    #[test]
    fn a_key_of_another_length_is_refused_even_when_it_is_a_prefix() {
        for presented in ["Bearer test-api-ke", "Bearer test-api-key2"] {
            let req = request_with(presented);

            let verdict = check_bearer(&req, &key("test-api-key"));

            assert_eq!(verdict, Err(AuthError::Invalid), "{presented:?}");
        }
    }

    #[test]
    fn an_empty_configured_key_refuses_everything_and_says_so() {
        let req = request_with("Bearer anything");

        let verdict = check_bearer(&req, &key(""));

        assert_eq!(verdict, Err(AuthError::NotConfigured));
        assert!(
            AuthError::NotConfigured
                .to_string()
                .contains("CALLBRIDGE_API_KEY is not set on the server")
        );
    }

    #[actix_web::test]
    async fn a_refusal_is_a_401_with_www_authenticate_and_a_json_error() {
        let response = AuthError::Invalid.error_response();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(HeaderValue::as_bytes),
            Some(&b"Bearer"[..])
        );
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("an in-memory body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(json["error"]["code"], "unauthorized");
        assert_eq!(json["error"]["message"], AuthError::Invalid.to_string());
    }

    proptest::proptest! {
        #[test]
        fn only_the_exact_key_is_ever_accepted(configured in "[!-~]{1,40}", presented in "[!-~]{1,40}") {
            let req = request_with(&format!("Bearer {presented}"));

            let verdict = check_bearer(&req, &key(&configured));

            proptest::prop_assert_eq!(verdict.is_ok(), presented == configured);
        }
    }
}
