//! HTTP route handlers: `/health`, `/ready`, the `/incoming-call`, `/outbound-call/{id}`, `/amd-status/{id}`,
//! `/call-status`, `/recording-status/{id}` and `/transfer/{id}/whisper|action` webhooks, the `/media-stream/{token}`
//! upgrade, the bearer-protected `/api` REST API, `/mcp` and `/metrics` (Prometheus).
//!
//! [`configure`] registers every route on an actix `ServiceConfig`; [`crate::startup`] and the tests share it.
//! Request bodies are limited in size and time on every route by [`body_guard::guard_body`] (wrapped around the
//! whole app in [`crate::startup`]); the Twilio webhooks also refuse a request without `X-Twilio-Signature` before
//! reading its body ([`body_guard::require_twilio_signature`]).

pub mod amd;
pub mod api;
pub mod auth;
pub mod body_guard;
pub mod health;
pub mod mcp;
pub mod media_stream;
pub mod outbound;
pub mod rate_limit;
pub mod recording;
pub mod scrape;
pub mod state;
pub mod transfer;
pub mod voice;
pub mod webhook;
pub mod webhooks_api;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::urls::{
    AMD_STATUS_ROUTE, CALL_STATUS_PATH, INCOMING_CALL_PATH, OUTBOUND_CALL_ROUTE,
    RECORDING_STATUS_ROUTE, TRANSFER_ACTION_ROUTE, TRANSFER_WHISPER_ROUTE,
};

/// Registers every route; `/api` and `/mcp` refuse bodies over `max_body_bytes` (the app-wide extractors get the
/// same limit in [`crate::startup`]).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.route("/", web::get().to(health::root))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .service(
            web::resource(INCOMING_CALL_PATH)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(voice::incoming_call)),
        )
        .service(
            web::resource(OUTBOUND_CALL_ROUTE)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(outbound::outbound_call)),
        )
        .service(
            web::resource(AMD_STATUS_ROUTE)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(amd::amd_status)),
        )
        .service(
            web::resource(CALL_STATUS_PATH)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(outbound::call_status)),
        )
        .service(
            web::resource(RECORDING_STATUS_ROUTE)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(recording::recording_status)),
        )
        .service(
            web::resource(TRANSFER_WHISPER_ROUTE)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(transfer::whisper)),
        )
        .service(
            web::resource(TRANSFER_ACTION_ROUTE)
                .wrap(from_fn(body_guard::require_twilio_signature))
                .route(web::post().to(transfer::action)),
        )
        .route(
            "/media-stream/{token}",
            web::get().to(media_stream::media_stream),
        )
        .service(
            web::resource("/metrics")
                .wrap(from_fn(auth::require_bearer))
                .route(web::get().to(scrape::metrics)),
        )
        .configure(|cfg| api::configure(cfg, max_body_bytes));
    cfg.service(mcp::service(max_body_bytes));
}
