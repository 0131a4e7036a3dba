//! The call record: who called, the transcript (caller and assistant turns, assistant turns cut to what the caller
//! heard), start and end times, why the call ended, and the OpenAI token usage. The bridge builds it during the call
//! and logs it as one structured line at the end. (A persistent store comes with outbound calls.)

pub mod backend;
pub mod clock;
pub mod control_route;
pub mod control_wire;
pub mod end_reason;
pub mod fleet_lease;
pub mod live;
pub mod model;
pub mod outcome;
pub mod recorder;
pub mod recording;
pub mod retention;
pub mod say;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod webhook_delivery;
pub mod writer;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::realtime::usage::Usage;

pub use end_reason::{CallFailure, EndReason};

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The person on the phone (from `conversation.item.input_audio_transcription.completed`).
    Caller,
    /// The voice model (from `response.output_audio_transcript.done`).
    Assistant,
    /// Something the assistant did on the line rather than said: keypad tones sent, a transfer (`pressed 1`).
    Action,
}

/// One turn of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said. An interrupted assistant turn is cut to the words the caller heard (proportionally to the
    /// audio played: the Realtime API does not time-align transcripts).
    pub text: String,
    /// When the turn was complete, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Milliseconds from the start of the call to the end of the turn.
    pub offset_ms: u64,
    /// True when the assistant turn was cut short: the caller barged in or hung up before it had played.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The Realtime conversation item of an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
}

/// Direction of a call, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Someone called the Twilio number.
    Inbound,
    /// callbridge placed the call through the REST API.
    OutboundApi,
}

/// Everything known about one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// Twilio's CallSid (`CA...`).
    pub call_sid: String,
    /// Twilio's StreamSid (`MZ...`), once the stream started.
    pub stream_sid: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The caller's number as Twilio gave it (E.164, or `anonymous`).
    pub from: String,
    /// The number called.
    pub to: String,
    /// When the media stream started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the call ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Call length in ms (stream start to end).
    pub duration_ms: u64,
    /// Why it ended.
    pub end_reason: Option<EndReason>,
    /// Transcript turns in the order they completed.
    pub turns: Vec<Turn>,
    /// What the call achieved, in the model's words (the `end_call` tool's `outcome` argument), when it said.
    pub outcome: Option<String>,
    /// The outcome as JSON, when the call has an outcome schema and the model's outcome passed it.
    pub structured_outcome: Option<serde_json::Value>,
    /// Token usage summed over every `response.done`.
    pub usage: Usage,
    /// Frames from Twilio that were skipped (malformed, oversized, binary, a DTMF digit outside `0-9*#`).
    pub skipped_frames: u64,
    /// What the call's peers sent that was dropped or ignored rather than acted on.
    pub dropped: DroppedInput,
    /// Twilio's answering machine verdict, when detection ran and its callback reached the call.
    pub answered_by: Option<crate::twilio::amd::AnsweredBy>,
    /// True when a voicemail message was left and its last mark was echoed (end reason `voicemail_left`).
    pub voicemail_left: bool,
    /// The voicemail message as spoken (the assistant's turns after the beep), when one was started.
    pub voicemail_transcript: Option<String>,
    /// Each time the call moved to a new media stream on the same Realtime session, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<StreamHandover>,
    /// Each transfer to a person the call attempted, in order; the last one of a call that ended `transferred` is
    /// the person it went to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<TransferAttempt>,
    /// The call's estimated cost, set when it ends (see [`crate::cost`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::CallCost>,
    /// Each time the call moved to a new OpenAI Realtime session (the session limit, or a session OpenAI closed),
    /// in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollovers: Vec<SessionRollover>,
}

/// One move of a call to a new OpenAI Realtime session, seeded with the conversation so far; the call, its record
/// and its transcript go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRollover {
    /// Seconds from the start of the call to the switch.
    pub at_s: u64,
    /// The gap in the audio path, ms: from the old session's last use (the switch, or the moment OpenAI closed it)
    /// to the new session taking the caller's audio (the first caller frame forwarded to it). `None` when no
    /// caller audio reached the new session before the call ended.
    pub gap_ms: Option<u64>,
    /// Why: `session_limit` (the planned rollover before OpenAI's limit) or `session_closed` (OpenAI closed the
    /// session unexpectedly; the assistant apologised and went on).
    pub reason: String,
    /// Attempts it took to open the new session (1 when the first succeeded).
    pub attempts: u32,
}

/// One transfer of a call to a person (a Twilio call update to `<Dial>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAttempt {
    /// Who: `front desk (+14155550100)` for a configured target, the E.164 number for an agent's.
    pub target: String,
    /// The number dialled (E.164).
    pub number: String,
    /// Ms from the start of the call to the transfer request.
    pub offset_ms: u64,
    /// How it ended: Twilio's `DialCallStatus` (`completed`, `no-answer`, ...), `answered` once the person picked
    /// up (the whisper was fetched), `update_failed` when Twilio refused the call update; `None` while under way.
    pub status: Option<String>,
}

/// One move of a call to a new media stream (a Twilio call update ended the old `<Connect><Stream>`; the new one
/// opened with a fresh stream token), on the same Realtime session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHandover {
    /// Why: `dtmf` (keypad tones played between the streams) or `transfer_returned`.
    pub cause: String,
    /// The new stream's StreamSid.
    pub stream_sid: String,
    /// Ms from the start of the call to the new stream's `start`.
    pub offset_ms: u64,
    /// The audio gap: ms from the old stream's last frame to the new stream's first `media` frame (the keypad tones
    /// and Twilio's stream set-up). `None` until the first media frame arrived.
    pub gap_ms: Option<u64>,
}

/// Input from a call's peers that was dropped or ignored rather than acted on, by kind. Each kind is also logged,
/// within a per-call budget of lines (`relay::budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DroppedInput {
    /// DTMF keys over the per-call rate limit (not passed to the model).
    pub dtmf_digits: u64,
    /// `start` messages after the first.
    pub repeated_starts: u64,
    /// `stop` messages naming another CallSid or StreamSid.
    pub foreign_stops: u64,
    /// Non-fatal `error` events from OpenAI (the call goes on).
    pub openai_errors: u64,
    /// OpenAI events that could not be parsed.
    pub malformed_openai_events: u64,
}

impl CallRecord {
    /// A fresh record for a call whose stream starts now.
    pub fn new(call_sid: String, direction: Direction, from: String, to: String) -> Self {
        CallRecord {
            call_sid,
            stream_sid: None,
            direction,
            from,
            to,
            started_at: OffsetDateTime::now_utc(),
            ended_at: None,
            duration_ms: 0,
            end_reason: None,
            turns: Vec::new(),
            outcome: None,
            structured_outcome: None,
            usage: Usage::default(),
            skipped_frames: 0,
            dropped: DroppedInput::default(),
            answered_by: None,
            voicemail_left: false,
            voicemail_transcript: None,
            handovers: Vec::new(),
            transfers: Vec::new(),
            cost: None,
            rollovers: Vec::new(),
        }
    }

    /// Appends a turn that completed `offset_ms` after the start; empty text is not recorded. `item_id` names the
    /// Realtime item of an assistant turn.
    pub fn push_turn(
        &mut self,
        speaker: Speaker,
        text: &str,
        offset_ms: u64,
        interrupted: bool,
        item_id: Option<&str>,
    ) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.turns.push(Turn {
            speaker,
            text: text.to_owned(),
            at: self.started_at
                + time::Duration::milliseconds(offset_ms.min(i64::MAX as u64) as i64),
            offset_ms,
            interrupted,
            item_id: item_id.map(str::to_owned),
        });
    }

    /// Marks the call ended `duration_ms` after the start, for `reason`. The first reason given is kept.
    pub fn finish(&mut self, reason: EndReason, duration_ms: u64) {
        if self.end_reason.is_none() {
            self.end_reason = Some(reason);
        }
        self.duration_ms = duration_ms;
        self.ended_at = Some(
            self.started_at + time::Duration::milliseconds(duration_ms.min(i64::MAX as u64) as i64),
        );
    }
}

/// A brisk speaking rate, words per second: no more words than this can have been heard in a given time.
pub const MAX_SPOKEN_WORDS_PER_S: u64 = 3;

/// Cuts `text` to the share of it the caller heard: the first `round(words * heard_ms / sent_ms)` words.
/// With `sent_ms == 0` nothing was heard.
///
/// When the response was cancelled while it was still being generated, its transcript runs ahead of its audio (the
/// model writes the words before it speaks them), so the share of audio sent overstates the words; `text_ahead` then
/// also caps the words at [`MAX_SPOKEN_WORDS_PER_S`] × the seconds heard (rounded up).
pub fn cut_to_heard(text: &str, heard_ms: u64, sent_ms: u64, text_ahead: bool) -> String {
    if sent_ms == 0 || heard_ms == 0 {
        return String::new();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut keep = if heard_ms >= sent_ms {
        words.len()
    } else {
        ((words.len() as u64 * heard_ms + sent_ms / 2) / sent_ms) as usize
    };
    if text_ahead {
        let spoken = (heard_ms * MAX_SPOKEN_WORDS_PER_S).div_ceil(1000) as usize;
        keep = keep.min(spoken);
    }
    words[..keep.min(words.len())].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_end_reason_is_kept() {
        let mut record =
            CallRecord::new("CA1".into(), Direction::Inbound, "+1".into(), "+2".into());
        record.finish(EndReason::Goodbye, 1000);
        record.finish(EndReason::CallerHungUp, 1200);
        assert_eq!(record.end_reason, Some(EndReason::Goodbye));
        assert_eq!(record.duration_ms, 1200);
    }

    #[test]
    fn an_interrupted_turn_keeps_the_share_of_words_that_was_heard() {
        let text = "one two three four five six seven eight nine ten";
        assert_eq!(
            cut_to_heard(text, 500, 1000, false),
            "one two three four five"
        );
        assert_eq!(cut_to_heard(text, 1000, 1000, false), text);
        assert_eq!(cut_to_heard(text, 0, 1000, false), "");
        assert_eq!(cut_to_heard(text, 10, 0, false), "");
    }

    #[test]
    fn a_transcript_that_ran_ahead_of_its_audio_is_capped_at_a_speaking_rate() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        // Half the audio sent was heard, but only one second of it: at most three words.
        assert_eq!(cut_to_heard(text, 1000, 2000, true), "one two three");
        assert_eq!(
            cut_to_heard(text, 1000, 2000, false),
            "one two three four five six"
        );
    }

    #[test]
    fn empty_turns_are_not_recorded() {
        let mut record =
            CallRecord::new("CA1".into(), Direction::Inbound, "+1".into(), "+2".into());
        record.push_turn(Speaker::Caller, "  ", 10, false, None);
        record.push_turn(Speaker::Caller, "hello", 20, false, None);
        assert_eq!(record.turns.len(), 1);
        assert_eq!(record.turns[0].text, "hello");
    }
}
