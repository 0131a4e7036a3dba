//! HTTP route handlers: `/health`, `/ready`, the `/incoming-call`, `/outbound-call/{id}` and `/call-status`
//! webhooks, the `/media-stream/{token}` upgrade, the bearer-protected `/api` REST API and `/mcp`.
//!
//! [`configure`] registers every route on an actix `ServiceConfig`; [`crate::startup`] and the tests share it.

pub mod api;
pub mod auth;
pub mod health;
pub mod media_stream;
pub mod outbound;
pub mod public_url;
pub mod state;
pub mod voice;

use actix_web::web;

/// Registers every route; `/api` and `/mcp` refuse bodies over `max_body_bytes` (the app-wide extractors get the
/// same limit in [`crate::startup`]).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/incoming-call", web::post().to(voice::incoming_call))
        .route(
            "/outbound-call/{call_id}",
            web::post().to(outbound::outbound_call),
        )
        .route("/call-status", web::post().to(outbound::call_status))
        .route(
            "/media-stream/{token}",
            web::get().to(media_stream::media_stream),
        )
        .configure(|cfg| api::configure(cfg, max_body_bytes));
    cfg.service(crate::mcp::http::service(max_body_bytes));
}
