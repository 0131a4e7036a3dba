//! Logging set-up: human-readable lines by default, JSON with `LOG_FORMAT=json`; the level comes from `RUST_LOG`
//! (default `info`). Every line logged during a call carries the call's span: its CallSid and, once the stream
//! started, its StreamSid (text: `call{call_sid=CA… stream_sid=MZ…}:` before the message; JSON: a `span` object).
//!
//! **No secret at any level.** Some dependencies print what they send at `trace`: tungstenite logs the whole
//! WebSocket handshake request, `Authorization: Bearer <OPENAI_API_KEY>` included. The targets in
//! [`CAPPED_TARGETS`] are therefore capped at `debug` whatever `RUST_LOG` says (`RUST_LOG=trace` and
//! `RUST_LOG=tungstenite=trace` alike); their `debug` lines carry no header. The secrets test of the integration
//! suite runs a whole call at `RUST_LOG=trace` to keep this true as dependencies change.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Log targets that print request headers (credentials) at `trace`, with the level they are capped at: the
/// WebSocket client of the OpenAI Realtime connection (`tungstenite::handshake::client` logs the handshake request).
pub const CAPPED_TARGETS: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::DEBUG),
];

/// The filter that caps [`CAPPED_TARGETS`] and lets everything else through (`RUST_LOG` decides the rest).
pub fn secret_safe_targets() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_TARGETS.iter().copied())
}

/// Installs the global subscriber writing to stderr, filtered by `RUST_LOG` (else `default_filter`) and by
/// [`secret_safe_targets`]. Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald, files and pipes get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    // One filter made of both (`and`): its level hint is the lower of the two, so the `log` crate's maximum level
    // (which `try_init` sets from it) is `RUST_LOG`'s. As two separate layers the hint was the caps' `trace`, and
    // every `log` line of tungstenite (several per WebSocket frame) went through the subscriber to be refused.
    let filter = filter.and(secret_safe_targets());
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Text => registry.with(layer.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    fn enabled(target: &str, level: Level) -> bool {
        secret_safe_targets().would_enable(target, &level)
    }

    #[test]
    fn the_websocket_handshake_targets_stop_at_debug() {
        assert!(!enabled("tungstenite::handshake::client", Level::TRACE));
        assert!(!enabled("tokio_tungstenite", Level::TRACE));
        assert!(enabled("tungstenite::handshake::client", Level::DEBUG));
    }

    #[test]
    fn every_other_target_may_trace() {
        assert!(enabled("callbridge::relay::bridge", Level::TRACE));
        assert!(enabled("actix_http::h1::dispatcher", Level::TRACE));
    }
}
