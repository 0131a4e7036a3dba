//! `GET /health` (the process is up) and `GET /ready` (it takes new calls).

use actix_web::{HttpResponse, web};

use crate::http::state::AppState;

/// Answers `200 {"status":"ok","live_calls":N}` while the process runs, draining or not.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "live_calls": state.live_calls.count(),
    }))
}

/// Answers `200 {"status":"ready"}`, or `503 {"status":"draining"}` once shutdown has begun, so a load balancer or
/// orchestrator stops sending new calls.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_draining() {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "draining",
            "live_calls": state.live_calls.count(),
        }))
    } else {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    }
}
