//! HTTP route handlers: `/health`, `/ready`, the `/incoming-call` voice webhook and the `/media-stream/{token}` upgrade.
//!
//! [`configure`] registers every route on an actix `ServiceConfig`; [`crate::startup`] and the tests share it.

pub mod health;
pub mod media_stream;
pub mod public_url;
pub mod state;
pub mod voice;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/incoming-call", web::post().to(voice::incoming_call))
        .route(
            "/media-stream/{token}",
            web::get().to(media_stream::media_stream),
        );
}
