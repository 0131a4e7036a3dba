//! `GET /health`: the process is up and serving.

use actix_web::{HttpResponse, web};

use crate::http::state::AppState;

/// Answers `200 {"status":"ok","live_calls":N}`.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "live_calls": state.live_calls.count(),
    }))
}
