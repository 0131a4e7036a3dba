//! `GET /metrics`: the server's Prometheus metrics ([`crate::metrics`]) in Prometheus's text format, behind the
//! bearer key of `/api` (`Authorization: Bearer <CALLBRIDGE_API_KEY>`; 401 without it, and always refused while no
//! key is configured), so it is never public by default.

use actix_web::HttpResponse;

/// Answers the metrics text (`text/plain; version=0.0.4`).
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(crate::metrics::encode())
}
