//! The fake's server VAD and audio codec: energy detection over 20 ms μ-law frames ([`Vad`]), the turn-detection
//! settings read from the session, μ-law ↔ 16-bit PCM, the tone the fake "speaks" and base64 lengths.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

/// A 20 ms frame is speech when the RMS of its decoded 16-bit PCM samples is at least this (about -42 dBFS).
/// The espeak-ng fixtures' voiced frames sit well above 1000; μ-law silence (`0xFF`) decodes to exactly 0.
pub const SPEECH_RMS_THRESHOLD: f64 = 250.0;
/// Consecutive speech needed before `input_audio_buffer.speech_started` is emitted, in ms.
pub const SPEECH_START_MS: u64 = 60;
/// Length of one VAD frame, in ms (Twilio's media frame: 160 bytes of 8 kHz μ-law).
pub const VAD_FRAME_MS: u64 = 20;
/// μ-law bytes per ms of 8 kHz mono audio.
pub const ULAW_BYTES_PER_MS: u64 = 8;
/// The μ-law byte of digital silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// Default `silence_duration_ms` of server VAD (SDK: "Defaults to 500ms").
pub(super) const DEFAULT_SILENCE_DURATION_MS: u64 = 500;
/// Default `prefix_padding_ms` of server VAD (SDK: "Defaults to 300ms").
pub(super) const DEFAULT_PREFIX_PADDING_MS: u64 = 300;

/// Bytes a base64 string decodes to (0 when it is not valid base64).
pub(super) fn decoded_len(b64: &str) -> u64 {
    BASE64
        .decode(b64)
        .map(|bytes| bytes.len() as u64)
        .unwrap_or(0)
}

/// Turn detection settings read from the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TurnDetection {
    pub(super) enabled: bool,
    pub(super) create_response: bool,
    pub(super) interrupt_response: bool,
    pub(super) silence_duration_ms: u64,
    pub(super) prefix_padding_ms: u64,
}

impl TurnDetection {
    pub(super) fn from_session(session: &Value) -> Self {
        let config = session.pointer("/audio/input/turn_detection");
        let flag = |name: &str| {
            config
                .and_then(|c| c.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let ms = |name: &str, default: u64| {
            config
                .and_then(|c| c.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(default)
        };
        Self {
            enabled: !matches!(config, Some(Value::Null)),
            create_response: flag("create_response"),
            interrupt_response: flag("interrupt_response"),
            silence_duration_ms: ms("silence_duration_ms", DEFAULT_SILENCE_DURATION_MS),
            prefix_padding_ms: ms("prefix_padding_ms", DEFAULT_PREFIX_PADDING_MS),
        }
    }
}

/// A VAD transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VadEvent {
    Started { audio_start_ms: u64 },
    Stopped { audio_end_ms: u64 },
}

/// Energy-based voice activity detection over the session's input stream.
#[derive(Debug, Default)]
pub(super) struct Vad {
    /// Bytes of an incomplete frame, kept for the next append.
    carry: Vec<u8>,
    /// Whole frames processed since the session started.
    frames: u64,
    /// Consecutive speech frames while in silence, in ms.
    speech_run_ms: u64,
    /// Stream position of the first frame of that run, in ms.
    speech_run_start_ms: u64,
    /// `Some(silence run in ms)` while in speech.
    in_speech: Option<u64>,
}

impl Vad {
    /// Feeds μ-law bytes; returns the transitions they caused, in order.
    pub(super) fn push(&mut self, ulaw: &[u8], turn: TurnDetection) -> Vec<VadEvent> {
        let frame_bytes = (VAD_FRAME_MS * ULAW_BYTES_PER_MS) as usize;
        self.carry.extend_from_slice(ulaw);
        let mut events = Vec::new();
        let whole = self.carry.len() / frame_bytes * frame_bytes;
        let frames: Vec<u8> = self.carry.drain(..whole).collect();
        for frame in frames.chunks_exact(frame_bytes) {
            let start_ms = self.frames * VAD_FRAME_MS;
            self.frames += 1;
            if !turn.enabled {
                continue;
            }
            let speech = frame_rms(frame) >= SPEECH_RMS_THRESHOLD;
            match self.in_speech {
                None if speech => {
                    if self.speech_run_ms == 0 {
                        self.speech_run_start_ms = start_ms;
                    }
                    self.speech_run_ms += VAD_FRAME_MS;
                    if self.speech_run_ms >= SPEECH_START_MS {
                        self.in_speech = Some(0);
                        self.speech_run_ms = 0;
                        let audio_start_ms = self
                            .speech_run_start_ms
                            .saturating_sub(turn.prefix_padding_ms);
                        events.push(VadEvent::Started { audio_start_ms });
                    }
                }
                None => self.speech_run_ms = 0,
                Some(_) if speech => self.in_speech = Some(0),
                Some(silence_ms) => {
                    let silence_ms = silence_ms + VAD_FRAME_MS;
                    if silence_ms >= turn.silence_duration_ms {
                        self.in_speech = None;
                        events.push(VadEvent::Stopped {
                            audio_end_ms: start_ms + VAD_FRAME_MS,
                        });
                    } else {
                        self.in_speech = Some(silence_ms);
                    }
                }
            }
        }
        events
    }

    /// Forgets any speech in progress (after `input_audio_buffer.clear`).
    pub(super) fn reset_turn(&mut self) {
        self.in_speech = None;
        self.speech_run_ms = 0;
    }

    /// Position of the input stream, in ms (whole frames plus carried bytes).
    pub(super) fn position_ms(&self) -> u64 {
        self.frames * VAD_FRAME_MS + self.carry.len() as u64 / ULAW_BYTES_PER_MS
    }
}

/// RMS of a μ-law frame's decoded 16-bit PCM samples.
pub fn frame_rms(ulaw: &[u8]) -> f64 {
    if ulaw.is_empty() {
        return 0.0;
    }
    let sum: f64 = ulaw
        .iter()
        .map(|&b| f64::from(ulaw_to_linear(b)).powi(2))
        .sum();
    (sum / ulaw.len() as f64).sqrt()
}

/// G.711 μ-law byte → 16-bit linear PCM sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let sample = if u & 0x80 != 0 { -magnitude } else { magnitude };
    i16::try_from(sample).expect("a μ-law magnitude is at most 32124")
}

/// 16-bit linear PCM sample → G.711 μ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let top = u8::try_from((s >> 7) & 0xFF).expect("masked to 8 bits");
    let exponent = if top == 0 { 0 } else { 7 - top.leading_zeros() };
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    let byte = sign | (i32::try_from(exponent).expect("exponent < 8") << 4) | mantissa;
    !u8::try_from(byte).expect("sign, exponent and mantissa fit 8 bits")
}

/// One period (20 samples, 400 Hz at 8 kHz) of the tone the fake "speaks".
pub(super) fn tone_period() -> [u8; 20] {
    std::array::from_fn(|i| {
        let phase = i as f64 / 20.0 * std::f64::consts::TAU;
        linear_to_ulaw((phase.sin() * 8000.0) as i16)
    })
}

/// `ms` of tone starting `offset_ms` into the item, as μ-law bytes (phase-continuous across deltas).
pub(super) fn tone(offset_ms: u64, ms: u64) -> Vec<u8> {
    let period = tone_period();
    let start = offset_ms * ULAW_BYTES_PER_MS;
    (start..start + ms * ULAW_BYTES_PER_MS)
        .map(|i| period[(i % 20) as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_realtime::test_client::*;
    use crate::fake_realtime::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[tokio::test]
    async fn the_espeak_fixture_triggers_speech_started_then_speech_stopped() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, HELLO).await;
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 700]).await;
        let events = events_until(
            &mut ws,
            "conversation.item.input_audio_transcription.completed",
        )
        .await;

        // Assert
        let vad: Vec<Value> = events
            .iter()
            .filter(|e| e["type"].as_str().is_some_and(|t| t.contains(".speech_")))
            .cloned()
            .collect();
        assert_eq!(
            types(&vad),
            [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped"
            ]
        );
        let hello_ms = HELLO.len() as u64 / ULAW_BYTES_PER_MS;
        let end_ms = vad[1]["audio_end_ms"].as_u64().expect("audio_end_ms");
        assert!(
            end_ms > hello_ms && end_ms <= hello_ms + 700,
            "speech stops after the words: {end_ms} vs {hello_ms}"
        );
        assert_eq!(vad[0]["item_id"], vad[1]["item_id"]);
    }

    #[tokio::test]
    async fn the_interrupt_fixture_is_one_caller_turn_too() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, INTERRUPT).await;
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 700]).await;
        send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        let events = events_until(&mut ws, "input_audio_buffer.cleared").await;

        // Assert
        let starts = events
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.speech_started")
            .count();
        let stops = events
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.speech_stopped")
            .count();
        assert_eq!((starts, stops), (1, 1));
    }

    #[tokio::test]
    async fn silence_triggers_no_speech_events() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 2000]).await;
        send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        let events = events_until(&mut ws, "input_audio_buffer.cleared").await;

        // Assert
        assert_eq!(types(&events), ["input_audio_buffer.cleared"]);
    }

    #[test]
    fn ulaw_silence_is_below_and_the_tone_above_the_speech_threshold() {
        assert_eq!(frame_rms(&[ULAW_SILENCE; 160]), 0.0);
        assert!(frame_rms(&tone(0, 20)) >= SPEECH_RMS_THRESHOLD);
    }

    #[test]
    fn the_fixtures_are_real_speech_by_the_fakes_own_measure() {
        for fixture in [HELLO, INTERRUPT] {
            let speech_frames = fixture
                .chunks(160)
                .filter(|f| frame_rms(f) >= SPEECH_RMS_THRESHOLD)
                .count();
            assert!(
                speech_frames * 2 > fixture.len() / 160,
                "most frames are speech"
            );
        }
    }

    proptest! {
        #[test]
        fn ulaw_encoding_round_trips_within_its_quantisation_step(sample in i16::MIN..=i16::MAX) {
            let decoded = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let original = i32::from(sample).clamp(-32635, 32635);
            // μ-law's step doubles per segment; the error is at most half a step of the sample's segment.
            let tolerance = (original.abs() / 16).max(8);
            prop_assert!((decoded - original).abs() <= tolerance, "{sample} -> {decoded}");
        }

        #[test]
        fn every_ulaw_byte_survives_decode_then_encode(byte in any::<u8>()) {
            let expected = if byte == 0x7F { 0xFF } else { byte }; // -0 and +0 both encode as +0
            prop_assert_eq!(linear_to_ulaw(ulaw_to_linear(byte)), expected);
        }
    }
}
