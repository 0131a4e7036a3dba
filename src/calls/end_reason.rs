//! Why a call ended: [`EndReason`], and for a failure, which one ([`CallFailure`]). Both print as the names stored
//! in the call record, logged on the `call ended` line and sent as the reason of the media stream's close frame
//! (`goodbye`, `error:openai_closed`, ...); README.md ("The call record") lists them.

use serde::Serialize;

/// Why a call ended. Serialized as `caller_hung_up`, `goodbye`, `max_duration`, `hung_up_by_api`, `shutdown`,
/// `voicemail_left`, `machine_hung_up`, `stream_handover_timeout`, `transferred`, `cost_cap`, `instance_lost`, or `error:<what>` (see
/// [`CallFailure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The caller hung up (Twilio sent `stop` or closed the stream).
    CallerHungUp,
    /// The conversation ended with a goodbye (the `end_call` tool or a goodbye phrase), after the farewell played.
    Goodbye,
    /// The hard maximum call duration was reached.
    MaxDuration,
    /// Someone asked the server to hang up (API).
    HungUpByApi,
    /// The server is shutting down.
    Shutdown,
    /// An answering machine took the call and the voicemail message played to its end.
    VoicemailLeft,
    /// An answering machine (policy `hang_up`) or a fax took the call, and callbridge hung up.
    MachineHungUp,
    /// The call moved to a new media stream (keypad tones, a transfer that came back) and no new stream opened
    /// within the handover deadline.
    StreamHandoverTimeout,
    /// The call was transferred to a person (a `<Dial>` they answered); the assistant left the call. The target is in
    /// [`crate::calls::CallRecord::transfers`].
    Transferred,
    /// The call reached its estimated cost cap (`max_call_cost_usd`, or the call's own `max_cost_usd`): the assistant
    /// was asked to wrap up, and the call ended after its goodbye.
    CostCap,
    /// The instance that held the call stopped renewing its fleet lease (it died or lost Redis): another instance
    /// of the fleet closed the record as `failed` (see `fleet::lease`). The turns stored until then are kept.
    InstanceLost,
    /// Something failed; printed `error:<what>`.
    Error(CallFailure),
}

/// What failed when a call ended with [`EndReason::Error`]. Each named failure prints as its fixed name
/// (`openai_closed`, ...); a fatal OpenAI error prints as the code OpenAI sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// `openai_unavailable`: the Realtime session could not be opened (connect, TLS, HTTP refusal or
    /// `session.update` not confirmed) before the media stream started.
    OpenAiUnavailable,
    /// `openai_closed`: OpenAI closed the Realtime session (a close frame, the socket's end, or a send on a closed
    /// session) while the call was going on.
    OpenAiClosed,
    /// `openai_reconnect_failed`: OpenAI closed the Realtime session mid-call and every attempt to open a new one
    /// (`realtime_reconnect_attempts`, each within the connect deadline) failed.
    OpenAiReconnectFailed,
    /// `openai_stalled`: OpenAI took none of the client events queued for it for the peer stall timeout.
    OpenAiStalled,
    /// `openai_error`: OpenAI sent a fatal `error` event without a `code`.
    OpenAiError,
    /// `<code>`: OpenAI sent a fatal `error` event (an account-level failure such as `invalid_api_key` or
    /// `insufficient_quota`, see [`crate::realtime::server_events::ApiError::is_fatal`]); this is its `code` as
    /// sent, clipped to the logged-text bound. The set of codes is OpenAI's, so it is kept open.
    OpenAiFatal(String),
    /// `twilio_stalled`: Twilio took none of the media-stream frames queued for it for the peer stall timeout (or
    /// the queue was full); its connection is dropped without a close frame.
    TwilioStalled,
    /// `stream_idle`: Twilio sent nothing on the media stream for the stream idle timeout.
    StreamIdle,
    /// `frame_too_large`: a media-stream frame declared more than the largest frame accepted.
    FrameTooLarge,
    /// `twilio_protocol_error`: the media stream broke the WebSocket protocol (an unmasked frame, a bad opcode, ...).
    TwilioProtocolError,
    /// `call_sid_mismatch`: the stream's `start` named another CallSid than the one its stream token was issued for.
    CallSidMismatch,
    /// `stream_expired`: the media stream opened with a valid token whose pending call had already expired, so there
    /// was nothing to run it with.
    StreamExpired,
    /// `stream_never_opened`: the call was answered but its stream token expired before Twilio opened the media
    /// stream (no stream to close).
    StreamNeverOpened,
    /// `stream_not_awaited`: a handover stream (opened with a fresh token for a call that moves to a new media stream)
    /// arrived when its call no longer awaited one (the call had ended, or another stream took its place). Only that
    /// stream is closed with it; the call itself never ends with this failure.
    StreamNotAwaited,
    /// `server_stopped`: the server stopped (killed, crashed) while the call was in progress; written at the next
    /// start when the store's records are reconciled.
    ServerStopped,
}

impl CallFailure {
    /// The failure's name as stored and logged, without the `error:` prefix.
    pub fn name(&self) -> &str {
        match self {
            CallFailure::OpenAiUnavailable => "openai_unavailable",
            CallFailure::OpenAiClosed => "openai_closed",
            CallFailure::OpenAiReconnectFailed => "openai_reconnect_failed",
            CallFailure::OpenAiStalled => "openai_stalled",
            CallFailure::OpenAiError => "openai_error",
            CallFailure::OpenAiFatal(code) => code,
            CallFailure::TwilioStalled => "twilio_stalled",
            CallFailure::StreamIdle => "stream_idle",
            CallFailure::FrameTooLarge => "frame_too_large",
            CallFailure::TwilioProtocolError => "twilio_protocol_error",
            CallFailure::CallSidMismatch => "call_sid_mismatch",
            CallFailure::StreamExpired => "stream_expired",
            CallFailure::StreamNeverOpened => "stream_never_opened",
            CallFailure::StreamNotAwaited => "stream_not_awaited",
            CallFailure::ServerStopped => "server_stopped",
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::CallerHungUp => f.write_str("caller_hung_up"),
            EndReason::Goodbye => f.write_str("goodbye"),
            EndReason::MaxDuration => f.write_str("max_duration"),
            EndReason::HungUpByApi => f.write_str("hung_up_by_api"),
            EndReason::Shutdown => f.write_str("shutdown"),
            EndReason::VoicemailLeft => f.write_str("voicemail_left"),
            EndReason::MachineHungUp => f.write_str("machine_hung_up"),
            EndReason::StreamHandoverTimeout => f.write_str("stream_handover_timeout"),
            EndReason::Transferred => f.write_str("transferred"),
            EndReason::CostCap => f.write_str("cost_cap"),
            EndReason::InstanceLost => f.write_str("instance_lost"),
            EndReason::Error(failure) => write!(f, "error:{failure}"),
        }
    }
}

impl Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
#[path = "end_reason_tests.rs"]
mod tests;
