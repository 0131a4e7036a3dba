//! The webhook outbox under `/api` (behind the bearer key, registered by [`crate::http::api::configure`]):
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/webhooks?status=pending\|delivered\|failed&limit=N` | `200 {"deliveries":[WebhookDelivery...]}`, newest first |
//! | `POST /api/webhooks/{id}/retry` | `200` [`WebhookDelivery`], pending and due now |
//!
//! Errors as the rest of `/api`: `invalid_request` 400 (an unknown status), `not_found` 404, `store_busy` 503.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::calls::service::{MAX_LIST, STORE_DEADLINE, ServiceError};
use crate::calls::store::{DeliveryStatus, OutboxWrite, StoreError, WebhookDelivery};
use crate::calls::writer::Write;
use crate::http::api::{ApiError, DEFAULT_LIST_LIMIT};
use crate::http::state::AppState;

/// The query of `GET /api/webhooks`.
#[derive(Debug, Deserialize)]
pub struct WebhookQuery {
    /// Only deliveries in this status: `pending`, `delivered` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// How many to list, newest first (default 50, at most 200).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The answer of `GET /api/webhooks`: `{"deliveries":[...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookList {
    /// The deliveries, newest first.
    pub deliveries: Vec<WebhookDelivery>,
}

/// `GET /api/webhooks`: the webhook deliveries, newest first.
///
/// # Errors
/// `invalid_request` for an unknown status; `internal` when the store fails.
pub async fn list_webhooks(
    state: web::Data<AppState>,
    query: web::Query<WebhookQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST);
    let deliveries = state
        .calls
        .store()
        .list_webhooks(status, limit)
        .map_err(ServiceError::from)?;
    Ok(HttpResponse::Ok().json(WebhookList { deliveries }))
}

/// `POST /api/webhooks/{id}/retry`: sends the delivery again now (a failed one gets one more attempt).
///
/// # Errors
/// `not_found` for an unknown id; `store_busy` when the database is locked; `internal` when the store fails.
pub async fn retry_webhook(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let retry = Write::Webhook(OutboxWrite::Retry {
        id: id.clone(),
        at: time::OffsetDateTime::now_utc(),
    });
    match state.calls.writer().write(retry, STORE_DEADLINE).await {
        Ok(()) => {}
        Err(Some(StoreError::NotFound(_))) => {
            return Err(ServiceError::NotFound(id).into());
        }
        Err(Some(error)) => return Err(ServiceError::Store(error).into()),
        Err(None) => return Err(ServiceError::StoreBusy.into()),
    }
    let delivery = state
        .calls
        .store()
        .get_webhook(&id)
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::NotFound(id.clone()))?;
    Ok(HttpResponse::Ok().json(delivery))
}
