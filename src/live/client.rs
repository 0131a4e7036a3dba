//! The GPT-Live connector: opens `wss://api.openai.com/v1/live/sessions` (no query; `Authorization: Bearer KEY`, or
//! `api-key` on Azure) with the Realtime socket machinery ([`crate::realtime::client`]: queued sends, stall
//! detection, the runtime hand-over), sends `session.start` first and waits for `session.started` before the link is
//! handed to the call, as <https://developers.openai.com/api/docs/guides/voice-websockets?api=live> requires.
//! [`preconnect`] does it in the background while Twilio sets up the media stream.

use std::time::Duration;

use crate::live::server_events::{LiveServerEvent, parse_live_event};
use crate::realtime::client::{
    LinkEvent, Preconnect, RealtimeEndpoint, RealtimeError, RealtimeLink, connect as open_socket,
};

/// How long `session.started` may take after `session.start` was sent.
pub const STARTED_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events skipped while waiting for `session.started` (an `info` notice, say) before giving up.
const MAX_EVENTS_BEFORE_STARTED: usize = 16;

/// Opens a Live session: the socket, `session_start` sent, `session.started` received.
///
/// # Errors
/// [`RealtimeError`] as the Realtime connector reports it (refused upgrade with OpenAI's code, timeout, ...);
/// [`RealtimeError::Connect`] when Live answers `session.start` with an `error` or closes before `session.started`;
/// [`RealtimeError::Timeout`] when `session.started` does not come within [`STARTED_TIMEOUT`].
pub async fn connect(
    endpoint: &RealtimeEndpoint,
    session_start: String,
) -> Result<RealtimeLink, RealtimeError> {
    let mut link = open_socket(endpoint, vec![session_start]).await?;
    match tokio::time::timeout(STARTED_TIMEOUT, wait_started(&mut link)).await {
        Ok(Ok(())) => Ok(link),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RealtimeError::Timeout),
    }
}

/// Reads events until `session.started`.
async fn wait_started(link: &mut RealtimeLink) -> Result<(), RealtimeError> {
    for _ in 0..MAX_EVENTS_BEFORE_STARTED {
        match link.next_event().await {
            LinkEvent::Text(text) => match parse_live_event(&text) {
                Ok(LiveServerEvent::SessionStarted) => return Ok(()),
                Ok(LiveServerEvent::Error { error }) => {
                    return Err(RealtimeError::Connect(format!(
                        "GPT-Live refused session.start: {} ({})",
                        error.code.as_deref().unwrap_or(&error.kind),
                        error.message.chars().take(200).collect::<String>()
                    )));
                }
                _ => continue,
            },
            LinkEvent::Closed { code, reason } => {
                return Err(RealtimeError::Connect(format!(
                    "GPT-Live closed before session.started (code {code:?}: {})",
                    reason.chars().take(200).collect::<String>()
                )));
            }
        }
    }
    Err(RealtimeError::Connect(
        "GPT-Live sent no session.started".into(),
    ))
}

/// Starts opening a Live session on `runtime` now (see [`crate::realtime::client::preconnect`]).
pub fn preconnect(
    runtime: &tokio::runtime::Handle,
    endpoint: RealtimeEndpoint,
    session_start: String,
) -> Preconnect {
    Preconnect::spawn(
        runtime,
        async move { connect(&endpoint, session_start).await },
    )
}
