//! The demo call's script: the synthesized speech compiled into the binary, who says what, and when the simulated
//! caller talks.
//!
//! The speech is raw 8 kHz μ-law (the Realtime API's `audio/pcmu`, Twilio's `audio/x-mulaw`), made with espeak-ng by
//! `src/demo/voice/make-voices.sh`; each clip's `.txt` holds its text. The local stand-in for OpenAI speaks the
//! assistant's clips in order, one per response; the simulated caller plays its clips into the media stream.

use std::time::Duration;

use crate::simulate::audio::{MULAW_BYTES_PER_MS, MULAW_SILENCE};

/// One piece of synthesized speech and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clip {
    /// Raw 8 kHz mono μ-law, 8 bytes per ms.
    pub audio: &'static [u8],
    /// What is said (the clip's `.txt`, without the trailing newline).
    pub text: &'static str,
}

impl Clip {
    /// The clip's length in ms.
    pub fn duration_ms(&self) -> u64 {
        self.audio.len() as u64 / MULAW_BYTES_PER_MS
    }
}

macro_rules! clip {
    ($name:literal) => {
        Clip {
            audio: include_bytes!(concat!("voice/", $name, ".ulaw")),
            text: trim_newline(include_str!(concat!("voice/", $name, ".txt"))),
        }
    };
}

/// `text` without one trailing `\n` (const, for the clip texts).
const fn trim_newline(text: &'static str) -> &'static str {
    match text.as_bytes() {
        [rest @ .., b'\n'] => match std::str::from_utf8(rest) {
            Ok(trimmed) => trimmed,
            Err(_) => text,
        },
        _ => text,
    }
}

/// The assistant's greeting, spoken when the stream starts.
pub const ASSISTANT_GREETING: Clip = clip!("assistant-greeting");
/// The caller's request.
pub const CALLER_BOOKING: Clip = clip!("caller-booking");
/// The assistant's long answer, which the caller talks over.
pub const ASSISTANT_OFFER: Clip = clip!("assistant-offer");
/// What the caller says over the answer (the barge-in).
pub const CALLER_BARGE_IN: Clip = clip!("caller-barge-in");
/// The assistant's farewell; `end_call` follows it in the same response.
pub const ASSISTANT_GOODBYE: Clip = clip!("assistant-goodbye");

/// One scripted assistant response: what it says, and whether it then calls the `end_call` tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptedResponse {
    /// The speech.
    pub clip: Clip,
    /// Call `end_call` after speaking (when the session offers the tool).
    pub end_call: bool,
}

/// The assistant's responses in order: greeting, offer, goodbye (+ `end_call`). Responses past the end repeat the
/// goodbye, so every path ends the call.
pub const ASSISTANT_RESPONSES: [ScriptedResponse; 3] = [
    ScriptedResponse {
        clip: ASSISTANT_GREETING,
        end_call: false,
    },
    ScriptedResponse {
        clip: ASSISTANT_OFFER,
        end_call: false,
    },
    ScriptedResponse {
        clip: ASSISTANT_GOODBYE,
        end_call: true,
    },
];

/// The caller's turns in order, as the stand-in "transcribes" them (it does not recognise speech: it knows the
/// script).
pub const CALLER_TRANSCRIPTS: [&str; 2] = [CALLER_BOOKING.text, CALLER_BARGE_IN.text];

/// The caller waits this long after the greeting has played before speaking.
const CALLER_PAUSE: Duration = Duration::from_millis(500);
/// Server VAD's default `silence_duration_ms`: the answer starts about this long after the caller stops.
const VAD_SILENCE: Duration = Duration::from_millis(500);
/// How far into the assistant's answer the caller talks over it, as a fraction of the answer.
const BARGE_IN_FRACTION: f64 = 0.45;

/// What the simulated caller plays: silence while the greeting plays, then the request.
pub fn caller_audio() -> Vec<u8> {
    let pause_ms = ASSISTANT_GREETING.duration_ms() + CALLER_PAUSE.as_millis() as u64;
    let mut audio = vec![MULAW_SILENCE; (pause_ms * MULAW_BYTES_PER_MS) as usize];
    audio.extend_from_slice(CALLER_BOOKING.audio);
    audio
}

/// When the caller talks over the answer, counted from the stream's `start`: the answer starts about
/// `VAD_SILENCE` after the request ends, and the caller cuts in `BARGE_IN_FRACTION` of the way through it. The
/// margin either side is more than two seconds, so a slow machine still barges in mid-answer.
pub fn barge_in_at() -> Duration {
    let request_ends = Duration::from_millis(caller_audio().len() as u64 / MULAW_BYTES_PER_MS);
    let into_answer =
        Duration::from_millis(ASSISTANT_OFFER.duration_ms()).mul_f64(BARGE_IN_FRACTION);
    request_ends + VAD_SILENCE + into_answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clip_is_speech_with_its_text() {
        for clip in [
            ASSISTANT_GREETING,
            CALLER_BOOKING,
            ASSISTANT_OFFER,
            CALLER_BARGE_IN,
            ASSISTANT_GOODBYE,
        ] {
            assert!(clip.duration_ms() >= 500, "{}", clip.text);
            assert!(!clip.text.is_empty() && !clip.text.ends_with('\n'));
            assert!(clip.audio.iter().any(|&b| b != MULAW_SILENCE));
        }
    }

    #[test]
    fn the_barge_in_falls_inside_the_answer_with_seconds_to_spare() {
        let answer_starts = Duration::from_millis(caller_audio().len() as u64 / 8) + VAD_SILENCE;
        let answer_ends = answer_starts + Duration::from_millis(ASSISTANT_OFFER.duration_ms());
        let at = barge_in_at();
        assert!(at >= answer_starts + Duration::from_secs(2), "{at:?}");
        assert!(at + Duration::from_secs(2) <= answer_ends, "{at:?}");
    }
}
