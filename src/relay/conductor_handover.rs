//! The conductor's side of a stream handover (see [`crate::relay::handover`]) and of keypad tones sent on the call.
//!
//! Phases: idle → *requested* (the call update is on its way; the old stream still runs) → *detached* (the old
//! stream sent `stop` or closed; no stream is attached) → idle again when the new stream's `start` arrives. While a
//! handover is requested or detached the idle-stream timer is suspended and [`HANDOVER_TIMEOUT`] applies instead
//! (no new stream in time: [`EndReason::StreamHandoverTimeout`]). At the detach, audio the caller had not heard is
//! cut as a barge-in would cut it (Twilio dropped it with the old stream); at the new `start`, the playback ledger
//! starts a new generation, and the gap (the old stream's last frame → the new stream's first `media`) is recorded.
//!
//! Keypad tones (the model's `send_dtmf` tool, or an agent's request) are checked ([`DtmfDigits`]), limited per call
//! ([`DTMF_OUT_BURST`], then one request per [`DTMF_OUT_REFILL`]), written to the transcript as an action turn
//! (`pressed 1`), and become an [`Action::UpdateCall`].

use std::time::{Duration, Instant};

use super::{Action, Conductor, Farewell};
use crate::calls::{EndReason, Speaker, StreamHandover};
use crate::realtime::client_events::{ClientEvent, ConversationItem};
use crate::relay::handover::CallUpdate;
use crate::twilio::dtmf::DtmfDigits;

/// How long a call may go without a media stream during a handover: the call update, the keypad tones (up to
/// 32 × 0.5 s) and Twilio opening the new stream.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Keypad-tone requests a call may make at once before the rate limit applies (a menu, a sub-menu, an extension).
pub const DTMF_OUT_BURST: u32 = 4;
/// Once the burst is spent, one more keypad-tone request per this interval; the others are refused.
pub const DTMF_OUT_REFILL: Duration = Duration::from_secs(5);

/// Where the call is in a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum HandoverPhase {
    /// One stream, no handover under way.
    #[default]
    Idle,
    /// The call update is on its way; the old stream may still send frames.
    Requested {
        cause: &'static str,
        deadline: Instant,
    },
    /// The old stream is gone; the new one has not started.
    Detached {
        cause: &'static str,
        deadline: Instant,
    },
}

/// The conductor's handover state.
#[derive(Debug, Default)]
pub(super) struct HandoverState {
    /// The phase.
    pub(super) phase: HandoverPhase,
    /// The old stream's last frame, until the new stream's first media frame measures the gap.
    gap_from: Option<Instant>,
}

impl HandoverState {
    /// The handover deadline, while one is under way.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            HandoverPhase::Idle => None,
            HandoverPhase::Requested { deadline, .. }
            | HandoverPhase::Detached { deadline, .. } => Some(deadline),
        }
    }
}

/// Why keypad tones were not sent: said to the model (tool output) or logged (agent request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfRefusal {
    /// Another handover is under way, or the stream has not started.
    Busy,
    /// The call is ending.
    Ending,
    /// Over the per-call rate limit.
    RateLimited,
}

impl DtmfRefusal {
    /// In words for the model and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfRefusal::Busy => "keys are already being pressed; wait for the menu to answer",
            DtmfRefusal::Ending => "the call is ending",
            DtmfRefusal::RateLimited => "too many keypresses; wait a few seconds",
        }
    }
}

impl Conductor {
    /// Asks for keypad tones `digits` at `now`: an action turn in the transcript, a call update, and a handover.
    ///
    /// # Errors
    /// [`DtmfRefusal`] when a handover is under way or the stream has not started, the call is ending, or the
    /// per-call limit is spent; nothing is done then.
    pub fn send_digits(
        &mut self,
        digits: DtmfDigits,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), DtmfRefusal> {
        if self.farewell != Farewell::None || self.shutdown_deadline.is_some() {
            return Err(DtmfRefusal::Ending);
        }
        if self.handover.phase != HandoverPhase::Idle || self.stream_sid.is_none() {
            return Err(DtmfRefusal::Busy);
        }
        if self.dtmf_out_budget.take(now).is_none() {
            return Err(DtmfRefusal::RateLimited);
        }
        tracing::info!(%digits, "sending keypad tones (call update, stream handover)");
        let offset = self.offset_ms(now);
        self.record.push_turn(
            Speaker::Action,
            &format!("pressed {digits}"),
            offset,
            false,
            None,
        );
        let update = CallUpdate::PlayDigits(digits);
        self.handover.phase = HandoverPhase::Requested {
            cause: update.cause(),
            deadline: now + HANDOVER_TIMEOUT,
        };
        out.push(Action::UpdateCall(update));
        Ok(())
    }

    /// An agent asked for keypad tones: sent as [`Conductor::send_digits`], and the model is told.
    pub fn on_send_digits_request(
        &mut self,
        digits: DtmfDigits,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let note = format!(
            "The operator pressed {digits} on the keypad for you. Wait silently for the menu or the person to answer."
        );
        match self.send_digits(digits, now, out) {
            Ok(()) => out.push(Action::OpenAi(
                ClientEvent::ConversationItemCreate {
                    item: ConversationItem::system_text(note),
                }
                .to_json(),
            )),
            Err(refusal) => {
                tracing::warn!(
                    reason = refusal.as_str(),
                    "keypad tones from the API refused"
                )
            }
        }
    }

    /// The model called `send_dtmf` with `arguments` (`{"digits":"1"}`); returns the function call's output.
    /// On success no response is asked for: the model waits for the menu to answer.
    pub(super) fn on_send_dtmf_call(
        &mut self,
        arguments: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> String {
        let digits = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v.get("digits").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let result = DtmfDigits::parse(&digits)
            .map_err(|e| e.to_string())
            .and_then(|digits| {
                self.send_digits(digits, now, out)
                    .map_err(|r| r.as_str().to_owned())
            });
        match result {
            Ok(()) => serde_json::json!({"ok": true, "note": "The keys are being pressed now. Say nothing; \
                wait for the menu or the person to answer."})
            .to_string(),
            Err(error) => {
                tracing::info!(%error, "send_dtmf refused");
                self.responses.queue();
                serde_json::json!({"ok": false, "error": error}).to_string()
            }
        }
    }

    /// The call update failed (`error`): no handover after all; the model is told the keys were not pressed.
    pub fn on_call_update_failed(&mut self, error: &str, out: &mut Vec<Action>) {
        let (HandoverPhase::Requested { cause, .. } | HandoverPhase::Detached { cause, .. }) =
            self.handover.phase
        else {
            return;
        };
        tracing::warn!(%error, cause, "call update failed; the call stays on its stream");
        self.handover.phase = HandoverPhase::Idle;
        let note = if cause == "transfer" {
            self.on_transfer_update_failed();
            "The transfer could not be started: the phone system refused. Tell the caller briefly and help them yourself."
        } else {
            "The keypad tones could not be sent: the phone system refused. Tell the person briefly, or try again."
        };
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(note),
            }
            .to_json(),
        ));
        self.request_response(out);
    }

    /// True while a handover is under way: the old stream's `stop` or close does not end the call.
    pub fn awaiting_stream(&self) -> bool {
        self.handover.phase != HandoverPhase::Idle
    }

    /// The Twilio socket closed at `now`. Returns true when the call goes on (a handover is under way), false when
    /// the call ends (the caller hung up).
    pub fn on_stream_closed(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        if let HandoverPhase::Requested { .. } = self.handover.phase {
            self.detach_stream(now, out);
        }
        self.awaiting_stream()
    }

    /// A new stream of this call was accepted at `now`. Returns true when the call takes it (a handover is under
    /// way; any old stream still attached is detached and must be closed), false when it must be refused.
    pub fn on_stream_attached(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        if let HandoverPhase::Requested { .. } = self.handover.phase {
            self.detach_stream(now, out);
        }
        matches!(self.handover.phase, HandoverPhase::Detached { .. })
    }

    /// The old stream is gone: what it had not played was not heard (cut as a barge-in would, without `clear`).
    pub(super) fn detach_stream(&mut self, now: Instant, out: &mut Vec<Action>) {
        let HandoverPhase::Requested { cause, deadline } = self.handover.phase else {
            return;
        };
        tracing::info!(
            cause,
            "media stream detached; awaiting the call's next stream"
        );
        self.stream_sid = None;
        self.on_speech_started(now, out);
        self.ledger.start_generation();
        self.items_in_generation.clear();
        self.handover.gap_from = Some(self.last_frame);
        self.handover.phase = HandoverPhase::Detached { cause, deadline };
    }

    /// The new stream's `start` (StreamSid `stream_sid`) at `now`, during a handover. Returns false when no handover
    /// awaits a stream (the caller treats the `start` as usual).
    pub(super) fn on_handover_start(&mut self, stream_sid: &str, now: Instant) -> bool {
        let HandoverPhase::Detached { cause, .. } = self.handover.phase else {
            return false;
        };
        tracing::info!(%stream_sid, cause, "media stream handed over; the conversation continues");
        self.stream_sid = Some(stream_sid.to_owned());
        self.ledger.start_generation();
        let offset_ms = self.offset_ms(now);
        self.record.handovers.push(StreamHandover {
            cause: cause.to_owned(),
            stream_sid: stream_sid.to_owned(),
            offset_ms,
            gap_ms: None,
        });
        self.handover.phase = HandoverPhase::Idle;
        true
    }

    /// A media frame of the current stream at `now`: the first after a handover measures the audio gap.
    pub(super) fn on_handover_media(&mut self, now: Instant) {
        if self.stream_sid.is_none() {
            return;
        }
        let Some(from) = self.handover.gap_from.take() else {
            return;
        };
        let gap_ms = now.saturating_duration_since(from).as_millis() as u64;
        tracing::info!(gap_ms, "first audio of the new media stream");
        if let Some(last) = self.record.handovers.last_mut() {
            last.gap_ms = Some(gap_ms);
        }
    }

    /// Past the handover deadline at `now`: the call ends.
    pub(super) fn handover_timed_out(&self, now: Instant) -> bool {
        self.handover
            .deadline()
            .is_some_and(|deadline| now >= deadline)
    }
}

/// Ends the call for a handover that got no new stream in time.
pub(super) fn handover_timeout_action() -> Action {
    tracing::warn!("no new media stream within the handover deadline; ending the call");
    Action::HangUp(EndReason::StreamHandoverTimeout)
}
