//! The Realtime session lifetime (rollover, reopening) and `session.truncation` settings, read like the rest of
//! [`super`]: one line per invalid value.

use std::time::Duration;

use super::{nonempty, parse_at_least, parse_or};
use crate::config::keys::Raw;

/// When a call rolls over to a fresh Realtime session (default 3300 s, at least 1) and how many times it reopens
/// one OpenAI dropped (default 3).
pub(super) fn session_lifetime(
    errors: &mut Vec<String>,
    raw: &mut Raw,
) -> crate::config::SessionLifetime {
    let limit_s = parse_at_least(
        errors,
        "CALLBRIDGE_REALTIME_SESSION_LIMIT_S",
        raw.realtime_session_limit_s.take(),
        3300u64,
        1,
    );
    let reconnect_attempts = parse_or(
        errors,
        "CALLBRIDGE_REALTIME_RECONNECT_ATTEMPTS",
        raw.realtime_reconnect_attempts.take(),
        3u32,
    );
    crate::config::SessionLifetime {
        session_limit: Duration::from_secs(limit_s),
        reconnect_attempts,
    }
}

/// `session.truncation`: `retention_ratio` (default) with its ratio (default 0.8) and post-instruction token limit
/// (default 16000; empty: the model's), or `auto` / `disabled`.
pub(super) fn truncation(
    errors: &mut Vec<String>,
    raw: &mut Raw,
) -> crate::realtime::truncation::Truncation {
    use crate::realtime::truncation::{
        DEFAULT_POST_INSTRUCTIONS_TOKENS, DEFAULT_RETENTION_RATIO, Truncation,
    };
    let ratio = parse_or(
        errors,
        "CALLBRIDGE_TRUNCATION_RETENTION_RATIO",
        raw.truncation_retention_ratio.take(),
        DEFAULT_RETENTION_RATIO,
    );
    let max_tokens = match raw.truncation_max_tokens.take() {
        None => Some(DEFAULT_POST_INSTRUCTIONS_TOKENS),
        Some(text) if text.trim().is_empty() => None,
        text => Some(parse_at_least(
            errors,
            "CALLBRIDGE_TRUNCATION_MAX_TOKENS",
            text,
            DEFAULT_POST_INSTRUCTIONS_TOKENS,
            1,
        )),
    };
    let kind = nonempty(raw.truncation.take()).unwrap_or_else(|| "retention_ratio".to_owned());
    Truncation::from_parts(&kind, ratio, max_tokens).unwrap_or_else(|e| {
        errors.push(format!("CALLBRIDGE_TRUNCATION is invalid: {e}"));
        Truncation::default()
    })
}
