//! The call service's `say` (agent-in-the-loop calls): checks the request, waits (briefly) for a call just answered
//! to be bridged, hands the line to the live call through its control channel ([`CallControl::Say`]) and waits for
//! its report. A child module of the service.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CallService, ServiceError};
use crate::calls::live::CallControl;
use crate::calls::model::CallStatus;
use crate::calls::say::{
    CallMode, DEFAULT_REPLY_TIMEOUT_S, MAX_REPLY_TIMEOUT_S, REPLY_TRANSCRIPT_GRACE,
    SAY_SPEAKING_TIMEOUT, SAY_TEXT_MAX_BYTES, SayRefusal, SayReplySlot, SayReport, SayRequest,
};

/// How long `say` waits for a call that was answered a moment ago to be bridged (Twilio opening its media stream).
pub const SAY_LIVE_WAIT: Duration = Duration::from_secs(15);
/// How often `say` looks again whether the call is bridged, while it waits [`SAY_LIVE_WAIT`].
const SAY_LIVE_POLL: Duration = Duration::from_millis(100);
/// Beyond the say's own deadlines, how long `say` waits for the live call's report before giving up on it.
const SAY_REPORT_MARGIN: Duration = Duration::from_secs(15);

/// What an agent sends to `say` (`POST /api/calls/{id}/say`; the MCP tool's arguments map to it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SayCall {
    /// The words for the voice to speak verbatim (not empty, at most [`SAY_TEXT_MAX_BYTES`] bytes).
    pub text: String,
    /// Wait, once the words were spoken, for the callee's next turn and return it as `reply`.
    #[serde(default)]
    pub wait_for_reply: bool,
    /// How long to wait for that reply, seconds from the end of the words (default [`DEFAULT_REPLY_TIMEOUT_S`], at
    /// most [`MAX_REPLY_TIMEOUT_S`]).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Hang up once the words have played (a final line); a barge-in during them calls the hang-up off.
    #[serde(default)]
    pub hang_up_after: bool,
}

impl CallService {
    /// Makes the voice of the relay-mode call `id` speak `request.text` verbatim, and returns what the callee heard
    /// and, with `wait_for_reply`, their next turn ([`SayReport`]). A call answered a moment ago is waited for up to
    /// `SAY_LIVE_WAIT` (15 s) while Twilio opens its media stream.
    ///
    /// # Errors
    /// [`ServiceError::InvalidRequest`] for empty or too long text, a timeout over [`MAX_REPLY_TIMEOUT_S`], or a
    /// call not placed with `mode: "relay"`; [`ServiceError::NotFound`]; [`ServiceError::NotLive`] when the call is
    /// not (or no longer) in progress on this server; [`ServiceError::SayRefused`] when the call refuses the line
    /// (another `say` under way, the call ending, an answering machine verdict awaited) or does not report in time.
    pub async fn say(&self, id: &str, request: SayCall) -> Result<SayReport, ServiceError> {
        let text = request.text.trim();
        if text.is_empty() {
            return Err(ServiceError::InvalidRequest("text is empty".into()));
        }
        if text.len() > SAY_TEXT_MAX_BYTES {
            return Err(ServiceError::InvalidRequest(format!(
                "text is {} bytes; at most {SAY_TEXT_MAX_BYTES}",
                text.len()
            )));
        }
        let timeout_s = request.timeout_s.unwrap_or(DEFAULT_REPLY_TIMEOUT_S);
        if timeout_s > MAX_REPLY_TIMEOUT_S {
            return Err(ServiceError::InvalidRequest(format!(
                "timeout_s is at most {MAX_REPLY_TIMEOUT_S} seconds"
            )));
        }
        let call = self.get(id)?;
        if call.mode != CallMode::Relay {
            return Err(ServiceError::InvalidRequest(
                SayRefusal::NotRelay.as_str().to_owned(),
            ));
        }
        let call_sid = self.wait_until_bridged(id).await?;
        let say = SayRequest {
            text: text.to_owned(),
            wait_for_reply: request.wait_for_reply,
            reply_timeout: Duration::from_secs(timeout_s),
            hang_up_after: request.hang_up_after,
        };
        let (reply, report) = SayReplySlot::new();
        let routed = self
            .inner
            .live
            .route(
                &call_sid,
                CallControl::Say {
                    request: say,
                    reply,
                },
            )
            .await
            .map_err(|e| ServiceError::FleetUnavailable(e.to_string()))?;
        if !routed {
            return Err(ServiceError::NotLive(id.to_owned()));
        }
        let deadline = SAY_SPEAKING_TIMEOUT
            + Duration::from_secs(timeout_s)
            + REPLY_TRANSCRIPT_GRACE
            + SAY_REPORT_MARGIN;
        match tokio::time::timeout(deadline, report).await {
            Ok(Ok(Ok(report))) => Ok(report),
            Ok(Ok(Err(refusal))) => Err(ServiceError::SayRefused(refusal.as_str().to_owned())),
            // The bridge ended without a report for this line: the call is over.
            Ok(Err(_)) => Err(ServiceError::NotLive(id.to_owned())),
            Err(_) => Err(ServiceError::SayRefused(
                "the call did not report on the line in time".into(),
            )),
        }
    }

    /// The CallSid of the call `id` once its bridge runs here, waiting up to [`SAY_LIVE_WAIT`] for a call that is
    /// answered (or answering) to be bridged.
    ///
    /// # Errors
    /// [`ServiceError::NotLive`] when the call has ended, is not answered, or is not bridged in time.
    async fn wait_until_bridged(&self, id: &str) -> Result<String, ServiceError> {
        let deadline = tokio::time::Instant::now() + SAY_LIVE_WAIT;
        loop {
            let call = self.get(id)?;
            if let Some(call_sid) = call.call_sid.as_deref()
                && self
                    .inner
                    .live
                    .is_held_anywhere(call_sid)
                    .await
                    .map_err(|e| ServiceError::FleetUnavailable(e.to_string()))?
            {
                return Ok(call_sid.to_owned());
            }
            let answering = call.status == CallStatus::InProgress;
            if !answering || tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::NotLive(id.to_owned()));
            }
            tokio::time::sleep(SAY_LIVE_POLL).await;
        }
    }
}
