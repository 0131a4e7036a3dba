//! The JSON REST API under `/api`, every route behind the bearer key ([`crate::http::auth`]):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /api/calls` | [`PlaceCall`] | `201` [`CallView`] |
//! | `GET /api/calls?limit=N` | | `200 {"calls":[CallSummary...]}`, newest first |
//! | `GET /api/calls/{id}?wait_s=N` | | `200` [`CallView`]; with `wait_s` (≤ 120) as soon as the status changes or the call ends |
//! | `POST /api/calls/{id}/hangup` | | `200` [`CallView`] |
//! | `POST /api/calls/{id}/instruct` | `{"text":"..."}` | `202 {"ok":true}` |
//! | `POST /api/calls/{id}/dtmf` | `{"digits":"1w2"}` | `202 {"ok":true}` |
//! | `POST /api/calls/{id}/transfer` | `{"to":"+14155550100","summary":"..."}` | `202 {"ok":true}` |
//! | `GET /api/webhooks`, `POST /api/webhooks/{id}/retry` | | the webhook outbox ([`super::webhooks_api`]) |
//! | `POST /api/calls/{id}/say` | [`SayCall`] `{"text":"...","wait_for_reply":true,"timeout_s":30,"hang_up_after":false}` | `200` [`SayReport`](crate::calls::say::SayReport) once spoken (and answered) |
//!
//! Errors are `{"error":{"code":"...","message":"..."}}` (see [`ServiceError::code`]): `invalid_number` and
//! `invalid_request` 400, `unauthorized` 401, `destination_not_allowed` 403, `not_found` 404, `not_live` 409,
//! `say_refused` 409, `payload_too_large` 413, `daily_budget_exhausted` 429, `twilio_error` and `twilio_unreachable` 502, `not_configured` and `too_many_calls`
//! 503, `internal` 500 with an opaque message. A body that is not valid JSON for the route is a
//! 400 `invalid_request` carrying serde's message; bodies are limited to the server's `max_body_bytes` setting.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};

use crate::calls::model::{CallSummary, CallView};
use crate::calls::service::{PlaceCall, SayCall, ServiceError};
use crate::http::auth::{json_error, require_bearer};
use crate::http::state::AppState;

/// How many calls `GET /api/calls` lists without `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 50;

/// Registers the `/api` scope, wrapped in the bearer-key check, on `cfg`; JSON bodies over `max_body_bytes` are a
/// 413.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.service(
        web::scope("/api")
            .wrap(from_fn(require_bearer))
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .error_handler(json_error_handler),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .route("/calls", web::post().to(place_call))
            .route("/calls", web::get().to(list_calls))
            .route("/calls/{id}", web::get().to(get_call))
            .route("/calls/{id}/hangup", web::post().to(hang_up))
            .route("/calls/{id}/instruct", web::post().to(instruct))
            .route("/calls/{id}/dtmf", web::post().to(send_dtmf))
            .route("/calls/{id}/transfer", web::post().to(transfer))
            .route(
                "/webhooks",
                web::get().to(super::webhooks_api::list_webhooks),
            )
            .route(
                "/webhooks/{id}/retry",
                web::post().to(super::webhooks_api::retry_webhook),
            )
            .route("/calls/{id}/say", web::post().to(say))
            .default_service(web::to(unknown_route)),
    );
}

/// An `/api` error: a [`ServiceError`] or a malformed request, answered as JSON.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What the call service refused or failed at.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The request itself is malformed (a body that is not the route's JSON, a bad query string): 400.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body is larger than the limit (bytes): 413.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No such route under `/api`: 404.
    #[error("no such API route: {0}")]
    UnknownRoute(String),
}

impl ApiError {
    /// The stable machine-readable code of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Service(error) => error.code(),
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnknownRoute(_) => "not_found",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Service(error) => match error {
                ServiceError::InvalidNumber(_) | ServiceError::InvalidRequest(_) => {
                    StatusCode::BAD_REQUEST
                }
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::NotLive(_) => StatusCode::CONFLICT,
                ServiceError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Twilio { .. } | ServiceError::TwilioUnreachable(_) => {
                    StatusCode::BAD_GATEWAY
                }
                // The operator's policy refuses this destination: not a malformed request, not retryable.
                ServiceError::DestinationNotAllowed(_) => StatusCode::FORBIDDEN,
                // A quota of the caller's: retry tomorrow.
                ServiceError::DailyBudgetExhausted { .. }
                | ServiceError::DailyCostBudgetExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
                // The server is at capacity for now, whoever asks: retry when a call has ended.
                ServiceError::TooManyCalls { .. } => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                // Another process holds the database locked: retry shortly.
                ServiceError::StoreBusy => StatusCode::SERVICE_UNAVAILABLE,
                // The fleet's Redis is down or slow: retry shortly.
                ServiceError::FleetUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::AlreadyEnded { .. } => StatusCode::CONFLICT,
                ServiceError::SayRefused(_) => StatusCode::CONFLICT,
            },
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Never hand database details to a network peer; the log keeps them.
            tracing::error!(error = %self, "API request failed");
            return json_error(
                status,
                self.code(),
                "internal error; the server log has the details",
            );
        }
        json_error(status, self.code(), &self.to_string())
    }
}

/// Turns a JSON body error into a 400 `invalid_request` carrying serde's message (413 when the body is too large).
fn json_error_handler(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = match &error {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(*limit),
        JsonPayloadError::ContentType => ApiError::InvalidRequest(
            "the request body must be JSON with `Content-Type: application/json`".into(),
        ),
        JsonPayloadError::Deserialize(serde_error) => {
            ApiError::InvalidRequest(format!("invalid JSON body: {serde_error}"))
        }
        other => ApiError::InvalidRequest(format!("invalid request body: {other}")),
    };
    api_error.into()
}

/// Turns a query-string error (`wait_s=abc`) into a 400 `invalid_request`.
fn query_error_handler(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        QueryPayloadError::Deserialize(serde_error) => {
            format!("invalid query string: {serde_error}")
        }
        other => format!("invalid query string: {other}"),
    };
    ApiError::InvalidRequest(message).into()
}

/// The query of `GET /api/calls`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// How many calls to list, newest first (default [`DEFAULT_LIST_LIMIT`], at most
    /// [`crate::calls::service::MAX_LIST`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The query of `GET /api/calls/{id}`.
#[derive(Debug, Deserialize)]
pub struct GetQuery {
    /// Wait up to this many seconds (≤ [`crate::calls::service::MAX_WAIT_S`]) for the status to change or the call
    /// to end; absent or 0 answers at once.
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// The body of `POST /api/calls/{id}/instruct`.
#[derive(Debug, Deserialize)]
pub struct InstructBody {
    /// The instruction, added to the live call's conversation as a system message.
    pub text: String,
}

/// The body of `POST /api/calls/{id}/dtmf`.
#[derive(Debug, Deserialize)]
pub struct DtmfBody {
    /// Keys to press: `0-9`, `*`, `#`, and `w` for a half-second pause; at most 32 characters.
    pub digits: String,
}

/// The body of `POST /api/calls/{id}/transfer`.
#[derive(Debug, Deserialize)]
pub struct TransferBody {
    /// The person's number, E.164; it must pass the outbound destination policy.
    pub to: String,
    /// What the person hears before the two are connected (cut to 300 characters).
    #[serde(default)]
    pub summary: String,
}

/// The answer of `GET /api/calls`: `{"calls":[...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallList {
    /// The calls, newest first.
    pub calls: Vec<CallSummary>,
}

/// The answer of `POST /api/calls/{id}/instruct`: `{"ok":true}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// Always true.
    pub ok: bool,
}

/// `POST /api/calls`: places an outbound call; `201` with the stored call (status `queued`, its CallSid set).
///
/// # Errors
/// As [`crate::calls::service::CallService::place_call`], answered as JSON.
pub async fn place_call(
    state: web::Data<AppState>,
    body: web::Json<PlaceCall>,
) -> Result<HttpResponse, ApiError> {
    let call: CallView = state.calls.place_call(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(call))
}

/// `GET /api/calls?limit=N`: the most recent calls, newest first.
///
/// # Errors
/// `internal` when the store fails.
pub async fn list_calls(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let calls = state
        .calls
        .list_calls(query.limit.unwrap_or(DEFAULT_LIST_LIMIT))?;
    Ok(HttpResponse::Ok().json(CallList { calls }))
}

/// `GET /api/calls/{id}?wait_s=N`: one call, optionally after waiting for its next change.
///
/// # Errors
/// `not_found`; `invalid_request` for `wait_s` over 120.
pub async fn get_call(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let call = state.calls.get_call(&id, query.wait_s).await?;
    Ok(HttpResponse::Ok().json(call))
}

/// `POST /api/calls/{id}/hangup`: hangs the call up (a call that already ended is returned as it is).
///
/// # Errors
/// `not_found`; `twilio_error` when Twilio refuses to cancel a ringing call.
pub async fn hang_up(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let call = state.calls.hang_up(&id).await?;
    Ok(HttpResponse::Ok().json(call))
}

/// `POST /api/calls/{id}/instruct`: adds an instruction to a live call; `202 {"ok":true}`.
///
/// # Errors
/// `not_found`; `not_live` (409) when the call is not in progress on this server; `invalid_request` for empty text.
pub async fn instruct(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<InstructBody>,
) -> Result<HttpResponse, ApiError> {
    state.calls.instruct(&id, &body.text).await?;
    Ok(HttpResponse::Accepted().json(Accepted { ok: true }))
}

/// `POST /api/calls/{id}/dtmf`: presses keys on a live call's keypad; `202 {"ok":true}`.
///
/// # Errors
/// `invalid_request` for bad digits; `not_found`; `not_live` (409) when the call is not in progress on this server.
pub async fn send_dtmf(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<DtmfBody>,
) -> Result<HttpResponse, ApiError> {
    state.calls.send_dtmf(&id, &body.digits).await?;
    Ok(HttpResponse::Accepted().json(Accepted { ok: true }))
}

/// `POST /api/calls/{id}/transfer`: transfers a live call to a person; `202 {"ok":true}`.
///
/// # Errors
/// `invalid_number`; `destination_not_allowed` (403) when the destination policy refuses `to`; `not_found`;
/// `not_live` (409).
pub async fn transfer(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<TransferBody>,
) -> Result<HttpResponse, ApiError> {
    state.calls.transfer(&id, &body.to, &body.summary).await?;
    Ok(HttpResponse::Accepted().json(Accepted { ok: true }))
}

/// `POST /api/calls/{id}/say`: the voice of a relay-mode call speaks `text` verbatim; `200` with the
/// [`SayReport`](crate::calls::say::SayReport) once the words were spoken (and, with `wait_for_reply`, the callee
/// answered or `timeout_s` passed).
///
/// # Errors
/// `invalid_request` (400) for empty or too long text, a too long timeout, or a call not in relay mode;
/// `not_found`; `not_live` (409) when the call is not in progress here; `say_refused` (409) when another `say` is
/// under way or the call is ending.
pub async fn say(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<SayCall>,
) -> Result<HttpResponse, ApiError> {
    let report = state.calls.say(&id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Any other path or method under `/api`: a JSON 404.
async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::UnknownRoute(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::StoreError;

    async fn body_json(response: HttpResponse) -> serde_json::Value {
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("an in-memory body");
        serde_json::from_slice(&body).expect("a JSON body")
    }

    #[test]
    fn each_service_error_gets_its_documented_status() {
        let cases = [
            (
                ServiceError::InvalidNumber("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                ServiceError::InvalidRequest("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                ServiceError::NotFound("call_x".into()),
                StatusCode::NOT_FOUND,
            ),
            (ServiceError::NotLive("call_x".into()), StatusCode::CONFLICT),
            (
                ServiceError::NotConfigured("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ServiceError::Twilio {
                    code: Some(21211),
                    message: "x".into(),
                },
                StatusCode::BAD_GATEWAY,
            ),
            (
                ServiceError::DestinationNotAllowed("x".into()),
                StatusCode::FORBIDDEN,
            ),
            (
                ServiceError::DailyBudgetExhausted { budget: 2 },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                ServiceError::TooManyCalls { max: 1 },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (error, status) in cases {
            let code = error.code();

            let api_error = ApiError::from(error);

            assert_eq!(api_error.status_code(), status, "{code}");
            assert_eq!(api_error.code(), code);
        }
    }

    #[actix_web::test]
    async fn a_twilio_error_keeps_twilios_code_and_message_in_the_json() {
        let error = ApiError::from(ServiceError::Twilio {
            code: Some(21211),
            message: "Invalid 'To' Phone Number".into(),
        });

        let json = body_json(error.error_response()).await;

        assert_eq!(json["error"]["code"], "twilio_error");
        let message = json["error"]["message"].as_str().expect("a message");
        assert!(message.contains("Invalid 'To' Phone Number"), "{message}");
        assert!(message.contains("21211"), "{message}");
    }

    #[actix_web::test]
    async fn a_store_failure_is_a_500_with_an_opaque_message() {
        let error = ApiError::from(ServiceError::Store(StoreError::CreateDir {
            path: "/var/lib/callbridge/calls.db".into(),
            source: std::io::Error::other("disk I/O error"),
        }));

        let response = error.error_response();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let json = body_json(response).await;
        assert_eq!(json["error"]["code"], "internal");
        let message = json["error"]["message"].as_str().expect("a message");
        assert!(!message.contains("calls.db"), "{message}");
    }

    #[actix_web::test]
    async fn a_malformed_json_body_is_a_400_invalid_request_with_serdes_message() {
        let serde_error =
            serde_json::from_str::<PlaceCall>("{\"to\": 5").expect_err("truncated JSON");
        let expected = serde_error.to_string();
        let req = actix_web::test::TestRequest::default().to_http_request();

        let error = json_error_handler(JsonPayloadError::Deserialize(serde_error), &req);

        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let json = body_json(response).await;
        assert_eq!(json["error"]["code"], "invalid_request");
        let message = json["error"]["message"].as_str().expect("a message");
        assert!(message.contains(&expected), "{message}");
    }

    #[actix_web::test]
    async fn an_oversized_body_is_a_413() {
        let req = actix_web::test::TestRequest::default().to_http_request();

        let error = json_error_handler(
            JsonPayloadError::OverflowKnownLength {
                length: 64 * 1024 + 1,
                limit: 64 * 1024,
            },
            &req,
        );

        assert_eq!(
            error.error_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
