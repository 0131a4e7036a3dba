//! What one call contributes to the latency and frame metrics ([`crate::metrics`]), kept by the conductor: the
//! instants the timed spans start at, and per-call frame counts added to the metrics once, when the call ends.
//!
//! - stream `start` → the first assistant audio sent to Twilio;
//! - end of the caller's speech (`input_audio_buffer.speech_stopped`) → the first assistant audio after it;
//! - barge-in (`speech_started` received) → `clear` queued for Twilio: the conductor notes the instant and the bridge
//!   observes it once the `clear` is queued ([`LatencyProbe::take_clear`]).
//!
//! Per frame it only adds to a plain counter: no lock, no atomic.

use std::time::Instant;

/// The per-call probe. See the module docs.
#[derive(Debug, Default)]
pub struct LatencyProbe {
    /// When the stream started, until the first assistant audio.
    stream_started: Option<Instant>,
    /// When the caller last stopped speaking, until the next assistant audio.
    speech_stopped: Option<Instant>,
    /// When the `speech_started` of a barge-in arrived, until the bridge has queued its `clear`.
    clear_asked: Option<Instant>,
    /// Caller audio frames forwarded to OpenAI.
    caller_frames: u64,
    /// Assistant audio deltas forwarded to Twilio.
    assistant_frames: u64,
}

impl LatencyProbe {
    /// The media stream started at `now`.
    pub fn on_stream_start(&mut self, now: Instant) {
        self.stream_started = Some(now);
    }

    /// A caller audio frame was forwarded to OpenAI.
    pub fn on_caller_frame(&mut self) {
        self.caller_frames += 1;
    }

    /// The caller stopped speaking at `now`.
    pub fn on_speech_stopped(&mut self, now: Instant) {
        self.speech_stopped = Some(now);
    }

    /// The caller started speaking: an earlier end of speech no longer waits for an answer.
    pub fn on_speech_started(&mut self) {
        self.speech_stopped = None;
    }

    /// Assistant audio went to Twilio at `now`: observes the spans it ends.
    pub fn on_assistant_audio(&mut self, now: Instant) {
        self.assistant_frames += 1;
        if let Some(started) = self.stream_started.take() {
            crate::metrics::first_audio(now.saturating_duration_since(started));
        }
        if let Some(stopped) = self.speech_stopped.take() {
            crate::metrics::answer_audio(now.saturating_duration_since(stopped));
        }
    }

    /// A barge-in's `clear` was decided for the `speech_started` that arrived at `received`.
    pub fn on_clear(&mut self, received: Instant) {
        self.clear_asked = Some(received);
    }

    /// The instant the last barge-in's `speech_started` arrived, once (the bridge observes the span after it queued
    /// the `clear`).
    pub fn take_clear(&mut self) -> Option<Instant> {
        self.clear_asked.take()
    }

    /// The call ended: adds its frame counts, and the `skipped` frames of its record, to the metrics.
    pub fn flush(&mut self, skipped: u64) {
        crate::metrics::frames(
            std::mem::take(&mut self.caller_frames),
            std::mem::take(&mut self.assistant_frames),
            skipped,
        );
    }
}
