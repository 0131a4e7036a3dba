//! OpenAI Realtime API (GA) server events: the ones the relay handles ([`parse_server_event`] → [`ServerEvent`]).
//!
//! Names and fields follow the GA reference (<https://platform.openai.com/docs/api-reference/realtime-server-events>)
//! as modelled by the official `openai` Python SDK 3.x (`openai.types.realtime`). Only the dotted GA names are
//! recognised (`response.output_audio.delta`, never the beta `response.audio.delta`); any other event type parses to
//! [`ServerEvent::Unknown`].
//!
//! Performance: a `response.output_audio.delta` arrives for every slice of assistant audio. Parsing one does no heap
//! allocation: the `type` tag is read first with a tiny borrowed struct (serde's internally tagged enums would buffer
//! the whole event), then the event is deserialized into a borrowed struct whose `response_id`, `item_id` and base64
//! `delta` point into the input text. IDs and base64 never contain JSON escapes; an event where one does is a parse
//! error.

use std::borrow::Cow;

use serde::Deserialize;

use crate::realtime::usage::{Usage, null_as_default};

/// One event from the Realtime server, discriminated by its `type` field.
///
/// Fields the relay does not use (`event_id`, `output_index`, `content_index`, ...) are not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent<'a> {
    /// `session.created`: the first event on a new connection (its session body is not parsed).
    SessionCreated,
    /// `session.updated`: a `session.update` was applied (its session body is not parsed).
    SessionUpdated,
    /// `input_audio_buffer.speech_started`: server VAD heard the caller start speaking (barge-in trigger).
    SpeechStarted {
        /// Ms from the start of all audio appended in the session to the detected start (includes the prefix padding).
        audio_start_ms: u64,
        /// The user message item that will be created when speech stops.
        item_id: String,
    },
    /// `input_audio_buffer.speech_stopped`: server VAD heard the caller stop speaking.
    SpeechStopped {
        /// Ms from the start of all audio appended in the session to the end of speech.
        audio_end_ms: u64,
        /// The user message item being created.
        item_id: String,
    },
    /// `input_audio_buffer.timeout_triggered`: no speech for the server VAD `idle_timeout_ms`.
    InputAudioTimeoutTriggered,
    /// `response.created`: a response is now active (until its `response.done`).
    ResponseCreated {
        /// The response's ID (`resp_...`).
        response_id: String,
    },
    /// `response.output_item.added`: the response started an item (an assistant message, a function call, ...).
    OutputItemAdded {
        /// The response the item belongs to.
        response_id: String,
        /// The item.
        item: OutputItem,
    },
    /// `response.output_item.done`: an item finished streaming (also sent when the response was cancelled).
    OutputItemDone {
        /// The response the item belongs to.
        response_id: String,
        /// The item.
        item: OutputItem,
    },
    /// `response.output_audio.delta`: a slice of assistant audio, borrowed from the input text (the hot path).
    OutputAudioDelta {
        /// The response producing the audio.
        response_id: &'a str,
        /// The assistant message item the audio belongs to (the one to truncate on barge-in).
        item_id: &'a str,
        /// Base64 of the audio in the session's output format (`audio/pcmu`: raw 8 kHz μ-law), forwarded verbatim.
        delta: &'a str,
    },
    /// `response.output_audio.done`: the item's audio is complete (also sent when interrupted or cancelled).
    OutputAudioDone {
        /// The response that produced the audio.
        response_id: String,
        /// The assistant message item.
        item_id: String,
    },
    /// `response.output_audio_transcript.delta`: more of the transcript of the assistant's audio.
    OutputAudioTranscriptDelta {
        /// The assistant message item.
        item_id: String,
        /// The transcript text added.
        delta: String,
    },
    /// `response.output_audio_transcript.done`: the full transcript of the assistant's audio for the item.
    OutputAudioTranscriptDone {
        /// The response that produced the audio.
        response_id: String,
        /// The assistant message item.
        item_id: String,
        /// Everything the model said in the item (more than the caller heard if it was truncated).
        transcript: String,
    },
    /// `conversation.item.input_audio_transcription.completed`: the transcript of a caller turn.
    InputTranscriptionCompleted {
        /// The user message item holding the audio.
        item_id: String,
        /// The transcribed text (from the session's transcription model, a rough guide to what the model heard).
        transcript: String,
    },
    /// `conversation.item.truncated`: a `conversation.item.truncate` was applied.
    ItemTruncated {
        /// The assistant message item that was truncated.
        item_id: String,
        /// Ms of audio kept.
        audio_end_ms: u64,
    },
    /// `response.function_call_arguments.done`: the model called a function tool.
    FunctionCallArgumentsDone {
        /// The response holding the call.
        response_id: String,
        /// The function call item.
        item_id: String,
        /// The call's ID, echoed in the `function_call_output` item that answers it.
        call_id: String,
        /// The tool's name, e.g. `end_call`.
        name: String,
        /// The arguments as JSON text (the model may produce invalid JSON: parse with care).
        arguments: String,
    },
    /// `response.done`: the response ended, whatever its final status; no response is active any more.
    ResponseDone {
        /// The response's ID, status and token usage.
        response: ResponseSummary,
    },
    /// `rate_limits.updated`: sent at the start of each response (the limits are not parsed).
    RateLimitsUpdated,
    /// `error`: most errors leave the session open; see [`ApiError::is_fatal`].
    Error {
        /// What went wrong.
        error: ApiError,
    },
    /// Any other `type`: the relay logs it at debug level and ignores it.
    Unknown {
        /// The `type` value as received.
        event_type: String,
    },
}

impl ServerEvent<'_> {
    /// The event's `type` on the wire, e.g. `"response.output_audio.delta"` (for logs).
    pub fn event_type(&self) -> &str {
        match self {
            ServerEvent::SessionCreated => "session.created",
            ServerEvent::SessionUpdated => "session.updated",
            ServerEvent::SpeechStarted { .. } => "input_audio_buffer.speech_started",
            ServerEvent::SpeechStopped { .. } => "input_audio_buffer.speech_stopped",
            ServerEvent::InputAudioTimeoutTriggered => "input_audio_buffer.timeout_triggered",
            ServerEvent::ResponseCreated { .. } => "response.created",
            ServerEvent::OutputItemAdded { .. } => "response.output_item.added",
            ServerEvent::OutputItemDone { .. } => "response.output_item.done",
            ServerEvent::OutputAudioDelta { .. } => "response.output_audio.delta",
            ServerEvent::OutputAudioDone { .. } => "response.output_audio.done",
            ServerEvent::OutputAudioTranscriptDelta { .. } => {
                "response.output_audio_transcript.delta"
            }
            ServerEvent::OutputAudioTranscriptDone { .. } => {
                "response.output_audio_transcript.done"
            }
            ServerEvent::InputTranscriptionCompleted { .. } => {
                "conversation.item.input_audio_transcription.completed"
            }
            ServerEvent::ItemTruncated { .. } => "conversation.item.truncated",
            ServerEvent::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            ServerEvent::ResponseDone { .. } => "response.done",
            ServerEvent::RateLimitsUpdated => "rate_limits.updated",
            ServerEvent::Error { .. } => "error",
            ServerEvent::Unknown { event_type } => event_type,
        }
    }
}

/// An item of a response, as sent in `response.output_item.added` / `.done` (content is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutputItem {
    /// The item's ID (`item_...`).
    pub id: String,
    /// The item's `type`: `"message"`, `"function_call"`, `"function_call_output"`, `"mcp_call"`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// For a message: `"assistant"`, `"user"` or `"system"`.
    #[serde(default)]
    pub role: Option<String>,
    /// For a function call: the tool's name.
    #[serde(default)]
    pub name: Option<String>,
    /// For a function call: the call's ID.
    #[serde(default)]
    pub call_id: Option<String>,
    /// `"in_progress"`, `"completed"` or `"incomplete"`.
    #[serde(default)]
    pub status: Option<String>,
    /// For a remote MCP tool call (`mcp_call`) or approval request (`mcp_approval_request`): the server's label.
    #[serde(default)]
    pub server_label: Option<String>,
    /// For an MCP tool call: the arguments, JSON text.
    #[serde(default)]
    pub arguments: Option<String>,
    /// For a finished MCP tool call: what the tool returned.
    #[serde(default)]
    pub output: Option<String>,
    /// For a failed MCP tool call: `{"type":"protocol_error"|"tool_execution_error"|"http_error","message":..}`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// The `response` object of a `response.done` event (output items are not kept).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseSummary {
    /// The response's ID (`resp_...`).
    pub id: String,
    /// `"completed"`, `"cancelled"`, `"failed"` or `"incomplete"`.
    pub status: String,
    /// Why it was cancelled (`{"type":"cancelled","reason":"turn_detected"|"client_cancelled"}`), incomplete, or failed
    /// (`{"type":"failed","error":{...}}`); `None` when completed.
    #[serde(default)]
    pub status_details: Option<serde_json::Value>,
    /// Tokens the response used; the call record sums them.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// The `error` object of an `error` event.
///
/// `type` and `message` are documented as always present; a missing or `null` one reads as empty so that an error
/// event is never lost to a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// The error's `type`, e.g. `"invalid_request_error"`, `"server_error"`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Machine-readable code, e.g. `"conversation_already_has_active_response"`, `"response_cancel_not_active"`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
    /// The parameter at fault, if any.
    #[serde(default)]
    pub param: Option<String>,
    /// The `event_id` of the client event that caused it, if the client set one.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// Error codes after which retrying or continuing the session is pointless.
const FATAL_ERROR_CODES: [&str; 4] = [
    "invalid_api_key",
    "insufficient_quota",
    "account_deactivated",
    "billing_hard_limit_reached",
];

impl ApiError {
    /// True for account-level failures that no retry fixes: `invalid_api_key`, `insufficient_quota`,
    /// `account_deactivated`, `billing_hard_limit_reached` (matched on `code`, or on `type` when it carries one).
    pub fn is_fatal(&self) -> bool {
        let code_is_fatal = self
            .code
            .as_deref()
            .is_some_and(|code| FATAL_ERROR_CODES.contains(&code));
        code_is_fatal || FATAL_ERROR_CODES.contains(&self.kind.as_str())
    }
}

/// A Realtime server event that could not be parsed.
///
/// Both variants carry serde_json's message (what was wrong, with line and column).
#[derive(Debug, thiserror::Error)]
pub enum EventParseError {
    /// The text is not a JSON object with a string `type` field.
    #[error("malformed Realtime server event: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The `type` is one the relay handles, but the event does not have that type's shape (a missing field, a wrong
    /// type, an escaped string where a borrowed one is needed, ...).
    #[error("invalid Realtime `{event_type}` event: {source}")]
    InvalidEvent {
        /// The event's `type`.
        event_type: String,
        /// What serde_json found wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses one text frame from the Realtime server.
///
/// A `response.output_audio.delta` is parsed without heap allocation; the result borrows from `text`. Unhandled event
/// types yield [`ServerEvent::Unknown`] whatever the rest of the event holds.
///
/// # Errors
///
/// [`EventParseError::Malformed`] when `text` is not a JSON object with a string `type`;
/// [`EventParseError::InvalidEvent`] when a handled event lacks a field or has one of the wrong type, or (for
/// `response.output_audio.delta`) escapes inside `response_id`, `item_id` or `delta`. Never panics.
pub fn parse_server_event(text: &str) -> Result<ServerEvent<'_>, EventParseError> {
    let tag: TypeTag<'_> = serde_json::from_str(text).map_err(EventParseError::Malformed)?;
    let event_type = tag.event_type.as_ref();
    let event = match event_type {
        "response.output_audio.delta" => {
            let wire: OutputAudioDeltaWire<'_> = parse_as(event_type, text)?;
            ServerEvent::OutputAudioDelta {
                response_id: wire.response_id,
                item_id: wire.item_id,
                delta: wire.delta,
            }
        }
        "session.created" => ServerEvent::SessionCreated,
        "session.updated" => ServerEvent::SessionUpdated,
        "input_audio_buffer.speech_started" => {
            let wire: SpeechStartedWire = parse_as(event_type, text)?;
            ServerEvent::SpeechStarted {
                audio_start_ms: wire.audio_start_ms,
                item_id: wire.item_id,
            }
        }
        "input_audio_buffer.speech_stopped" => {
            let wire: SpeechStoppedWire = parse_as(event_type, text)?;
            ServerEvent::SpeechStopped {
                audio_end_ms: wire.audio_end_ms,
                item_id: wire.item_id,
            }
        }
        "input_audio_buffer.timeout_triggered" => ServerEvent::InputAudioTimeoutTriggered,
        "response.created" => {
            let wire: ResponseCreatedWire = parse_as(event_type, text)?;
            ServerEvent::ResponseCreated {
                response_id: wire.response.id,
            }
        }
        "response.output_item.added" => {
            let wire: OutputItemWire = parse_as(event_type, text)?;
            ServerEvent::OutputItemAdded {
                response_id: wire.response_id,
                item: wire.item,
            }
        }
        "response.output_item.done" => {
            let wire: OutputItemWire = parse_as(event_type, text)?;
            ServerEvent::OutputItemDone {
                response_id: wire.response_id,
                item: wire.item,
            }
        }
        "response.output_audio.done" => {
            let wire: OutputAudioDoneWire = parse_as(event_type, text)?;
            ServerEvent::OutputAudioDone {
                response_id: wire.response_id,
                item_id: wire.item_id,
            }
        }
        "response.output_audio_transcript.delta" => {
            let wire: TranscriptDeltaWire = parse_as(event_type, text)?;
            ServerEvent::OutputAudioTranscriptDelta {
                item_id: wire.item_id,
                delta: wire.delta,
            }
        }
        "response.output_audio_transcript.done" => {
            let wire: TranscriptDoneWire = parse_as(event_type, text)?;
            ServerEvent::OutputAudioTranscriptDone {
                response_id: wire.response_id,
                item_id: wire.item_id,
                transcript: wire.transcript,
            }
        }
        "conversation.item.input_audio_transcription.completed" => {
            let wire: InputTranscriptionWire = parse_as(event_type, text)?;
            ServerEvent::InputTranscriptionCompleted {
                item_id: wire.item_id,
                transcript: wire.transcript,
            }
        }
        "conversation.item.truncated" => {
            let wire: ItemTruncatedWire = parse_as(event_type, text)?;
            ServerEvent::ItemTruncated {
                item_id: wire.item_id,
                audio_end_ms: wire.audio_end_ms,
            }
        }
        "response.function_call_arguments.done" => {
            let wire: FunctionCallArgumentsDoneWire = parse_as(event_type, text)?;
            ServerEvent::FunctionCallArgumentsDone {
                response_id: wire.response_id,
                item_id: wire.item_id,
                call_id: wire.call_id,
                name: wire.name,
                arguments: wire.arguments,
            }
        }
        "response.done" => {
            let wire: ResponseDoneWire = parse_as(event_type, text)?;
            ServerEvent::ResponseDone {
                response: wire.response,
            }
        }
        "rate_limits.updated" => ServerEvent::RateLimitsUpdated,
        "error" => {
            let wire: ErrorWire = parse_as(event_type, text)?;
            ServerEvent::Error { error: wire.error }
        }
        _ => ServerEvent::Unknown {
            event_type: tag.event_type.into_owned(),
        },
    };
    Ok(event)
}

/// Deserializes `text` as the shape of a handled event type, naming the type in the error.
fn parse_as<'a, T: Deserialize<'a>>(event_type: &str, text: &'a str) -> Result<T, EventParseError> {
    serde_json::from_str(text).map_err(|source| EventParseError::InvalidEvent {
        event_type: event_type.to_owned(),
        source,
    })
}

/// The first pass over every event: only the `type` tag (borrowed unless it holds escapes).
#[derive(Deserialize)]
struct TypeTag<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

#[derive(Deserialize)]
struct OutputAudioDeltaWire<'a> {
    response_id: &'a str,
    item_id: &'a str,
    delta: &'a str,
}

#[derive(Deserialize)]
struct SpeechStartedWire {
    audio_start_ms: u64,
    item_id: String,
}

#[derive(Deserialize)]
struct SpeechStoppedWire {
    audio_end_ms: u64,
    item_id: String,
}

#[derive(Deserialize)]
struct ResponseCreatedWire {
    response: ResponseIdWire,
}

#[derive(Deserialize)]
struct ResponseIdWire {
    id: String,
}

#[derive(Deserialize)]
struct OutputItemWire {
    response_id: String,
    item: OutputItem,
}

#[derive(Deserialize)]
struct OutputAudioDoneWire {
    response_id: String,
    item_id: String,
}

#[derive(Deserialize)]
struct TranscriptDeltaWire {
    item_id: String,
    delta: String,
}

#[derive(Deserialize)]
struct TranscriptDoneWire {
    response_id: String,
    item_id: String,
    transcript: String,
}

#[derive(Deserialize)]
struct InputTranscriptionWire {
    item_id: String,
    transcript: String,
}

#[derive(Deserialize)]
struct ItemTruncatedWire {
    item_id: String,
    audio_end_ms: u64,
}

#[derive(Deserialize)]
struct FunctionCallArgumentsDoneWire {
    response_id: String,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct ResponseDoneWire {
    response: ResponseSummary,
}

#[derive(Deserialize)]
struct ErrorWire {
    error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::usage::{InputTokenDetails, OutputTokenDetails};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const RESPONSE_ID: &str = "resp_C9xL0aQm4Zt7Vn2Ee6Rw";
    const ITEM_ID: &str = "item_C9xL0bYc8Ju3Po5Hs1Kd";
    const CALL_ITEM_ID: &str = "item_C9xL3tWm2Ra9Lk6Fg0Zb";
    const USER_ITEM_ID: &str = "item_C9xKzR1fN6Vt4Qw8Ls2Dm";
    const CALL_ID: &str = "call_Xy7Qm2Lk9Pz4Rt1v";
    const OUTCOME_ARGUMENTS: &str = r#"{"outcome":"Table for 4 booked at 19:30 on Friday."}"#;
    /// 20 ms of a 440 Hz tone: 160 bytes of μ-law, 216 base64 characters.
    const FIXTURE_DELTA: &str = "/7mrpKCgpKq36DssJSAgIyo2XL2tpaGgo6m01D8tJiEgIigyTsKupqGgoqiwykYvJyIgIicvRsqwqKKgoaauwk4yKCIgISYtP9S0qaOgoaWtvVw2KiMgICUsO+i3qqSgoKSruf85KyQgICQqN2i7rKWgoKOqttw9LSUhICMpNFS/raahoKKoss5CLiYhICIoMErGr6eioKKnr8ZKMCgiIA==";
    fn parse_ok(text: &str) -> ServerEvent<'_> {
        match parse_server_event(text) {
            Ok(event) => event,
            Err(error) => panic!("expected the event to parse, got {error}"),
        }
    }

    #[test]
    fn session_created_fixture_parses_to_session_created() {
        let text = include_str!("../../tests/fixtures/realtime/session.created.json");

        assert_eq!(parse_ok(text), ServerEvent::SessionCreated);
    }

    #[test]
    fn session_updated_fixture_parses_to_session_updated() {
        let text = include_str!("../../tests/fixtures/realtime/session.updated.json");

        assert_eq!(parse_ok(text), ServerEvent::SessionUpdated);
    }

    #[test]
    fn speech_started_fixture_parses_with_audio_start_ms_and_item_id() {
        let text =
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.speech_started.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::SpeechStarted {
                audio_start_ms: 1180,
                item_id: USER_ITEM_ID.into()
            }
        );
    }

    #[test]
    fn speech_stopped_fixture_parses_with_audio_end_ms_and_item_id() {
        let text =
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.speech_stopped.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::SpeechStopped {
                audio_end_ms: 3620,
                item_id: USER_ITEM_ID.into()
            }
        );
    }

    #[test]
    fn timeout_triggered_fixture_parses_to_input_audio_timeout_triggered() {
        let text =
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.timeout_triggered.json");

        assert_eq!(parse_ok(text), ServerEvent::InputAudioTimeoutTriggered);
    }

    #[test]
    fn response_created_fixture_parses_with_the_response_id() {
        let text = include_str!("../../tests/fixtures/realtime/response.created.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::ResponseCreated {
                response_id: RESPONSE_ID.into()
            }
        );
    }

    #[test]
    fn output_item_added_fixture_parses_with_an_assistant_message_item() {
        let text = include_str!("../../tests/fixtures/realtime/response.output_item.added.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::OutputItemAdded {
                response_id: RESPONSE_ID.into(),
                item: OutputItem {
                    id: ITEM_ID.into(),
                    kind: "message".into(),
                    role: Some("assistant".into()),
                    name: None,
                    call_id: None,
                    status: Some("in_progress".into()),
                    server_label: None,
                    arguments: None,
                    output: None,
                    error: None,
                },
            }
        );
    }

    #[test]
    fn output_item_done_fixture_parses_with_a_function_call_item() {
        let text = include_str!("../../tests/fixtures/realtime/response.output_item.done.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::OutputItemDone {
                response_id: RESPONSE_ID.into(),
                item: OutputItem {
                    id: CALL_ITEM_ID.into(),
                    kind: "function_call".into(),
                    role: None,
                    name: Some("end_call".into()),
                    call_id: Some(CALL_ID.into()),
                    status: Some("completed".into()),
                    server_label: None,
                    arguments: Some(OUTCOME_ARGUMENTS.into()),
                    output: None,
                    error: None,
                },
            }
        );
    }

    #[test]
    fn output_audio_delta_fixture_parses_with_ids_and_delta_borrowed_from_the_input() {
        let text = include_str!("../../tests/fixtures/realtime/response.output_audio.delta.json");

        let event = parse_ok(text);

        let ServerEvent::OutputAudioDelta {
            response_id,
            item_id,
            delta,
        } = event
        else {
            panic!("expected OutputAudioDelta, got {event:?}");
        };
        assert_eq!(response_id, RESPONSE_ID);
        assert_eq!(item_id, ITEM_ID);
        assert_eq!(delta, FIXTURE_DELTA);
        let text_range = text.as_ptr() as usize..text.as_ptr() as usize + text.len();
        for borrowed in [response_id, item_id, delta] {
            assert!(
                text_range.contains(&(borrowed.as_ptr() as usize)),
                "{borrowed} must point into the input text, not a copy"
            );
        }
    }

    #[test]
    fn output_audio_done_fixture_parses_with_response_and_item_ids() {
        let text = include_str!("../../tests/fixtures/realtime/response.output_audio.done.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::OutputAudioDone {
                response_id: RESPONSE_ID.into(),
                item_id: ITEM_ID.into()
            }
        );
    }

    #[test]
    fn transcript_delta_fixture_parses_with_unescaped_text() {
        let text = include_str!(
            "../../tests/fixtures/realtime/response.output_audio_transcript.delta.json"
        );

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::OutputAudioTranscriptDelta {
                item_id: ITEM_ID.into(),
                delta: "Sure, \"Friday\" at 7:30 — ".into(),
            }
        );
    }

    #[test]
    fn transcript_done_fixture_parses_with_the_full_transcript() {
        let text = include_str!(
            "../../tests/fixtures/realtime/response.output_audio_transcript.done.json"
        );

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::OutputAudioTranscriptDone {
                response_id: RESPONSE_ID.into(),
                item_id: ITEM_ID.into(),
                transcript: "Sure, \"Friday\" at 7:30 — a table for four. Is there anything else?"
                    .into(),
            }
        );
    }

    #[test]
    fn input_transcription_completed_fixture_parses_with_the_caller_transcript() {
        let text = include_str!(
            "../../tests/fixtures/realtime/conversation.item.input_audio_transcription.completed.json"
        );

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::InputTranscriptionCompleted {
                item_id: USER_ITEM_ID.into(),
                transcript: "Hi, I'd like to book a table for four on Friday.".into(),
            }
        );
    }

    #[test]
    fn item_truncated_fixture_parses_with_item_id_and_audio_end_ms() {
        let text = include_str!("../../tests/fixtures/realtime/conversation.item.truncated.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::ItemTruncated {
                item_id: ITEM_ID.into(),
                audio_end_ms: 1460
            }
        );
    }

    #[test]
    fn function_call_arguments_done_fixture_parses_with_call_id_name_and_arguments() {
        let text = include_str!(
            "../../tests/fixtures/realtime/response.function_call_arguments.done.json"
        );

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::FunctionCallArgumentsDone {
                response_id: RESPONSE_ID.into(),
                item_id: CALL_ITEM_ID.into(),
                call_id: CALL_ID.into(),
                name: "end_call".into(),
                arguments: OUTCOME_ARGUMENTS.into(),
            }
        );
    }

    #[test]
    fn response_done_fixture_parses_with_status_details_and_usage() {
        let text = include_str!("../../tests/fixtures/realtime/response.done.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::ResponseDone {
                response: ResponseSummary {
                    id: RESPONSE_ID.into(),
                    status: "cancelled".into(),
                    status_details: Some(json!({"type": "cancelled", "reason": "turn_detected"})),
                    usage: Some(Usage {
                        live_active_seconds: 0,
                        total_tokens: 1742,
                        input_tokens: 1418,
                        output_tokens: 324,
                        input_token_details: InputTokenDetails {
                            text_tokens: 612,
                            audio_tokens: 806,
                            cached_tokens: 1152,
                        },
                        output_token_details: OutputTokenDetails {
                            text_tokens: 71,
                            audio_tokens: 253,
                        },
                    }),
                },
            }
        );
    }

    #[test]
    fn rate_limits_updated_fixture_parses_to_rate_limits_updated() {
        let text = include_str!("../../tests/fixtures/realtime/rate_limits.updated.json");

        assert_eq!(parse_ok(text), ServerEvent::RateLimitsUpdated);
    }

    #[test]
    fn error_fixture_parses_with_type_code_message_and_event_id() {
        let text = include_str!("../../tests/fixtures/realtime/error.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::Error {
                error: ApiError {
                    kind: "invalid_request_error".into(),
                    code: Some("conversation_already_has_active_response".into()),
                    message: "Conversation already has an active response in progress: resp_C9xL0aQm4Zt7Vn2Ee6Rw. \
                              Wait until the response is finished before creating a new one."
                        .into(),
                    param: None,
                    event_id: Some("evt_client_0042".into()),
                },
            }
        );
    }

    #[test]
    fn unknown_fixture_parses_to_unknown_with_its_type() {
        let text = include_str!("../../tests/fixtures/realtime/unknown.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::Unknown {
                event_type: "response.content_part.added".into()
            }
        );
    }

    #[test]
    fn beta_audio_delta_name_is_unknown() {
        let text =
            r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","delta":"AA=="}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::Unknown {
                event_type: "response.audio.delta".into()
            }
        );
    }

    #[test]
    fn event_type_names_the_wire_type_of_each_fixture() {
        let fixtures = [
            include_str!("../../tests/fixtures/realtime/session.created.json"),
            include_str!("../../tests/fixtures/realtime/session.updated.json"),
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.speech_started.json"),
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.speech_stopped.json"),
            include_str!("../../tests/fixtures/realtime/input_audio_buffer.timeout_triggered.json"),
            include_str!("../../tests/fixtures/realtime/response.created.json"),
            include_str!("../../tests/fixtures/realtime/response.output_item.added.json"),
            include_str!("../../tests/fixtures/realtime/response.output_item.done.json"),
            include_str!("../../tests/fixtures/realtime/response.output_audio.delta.json"),
            include_str!("../../tests/fixtures/realtime/response.output_audio.done.json"),
            include_str!(
                "../../tests/fixtures/realtime/response.output_audio_transcript.delta.json"
            ),
            include_str!(
                "../../tests/fixtures/realtime/response.output_audio_transcript.done.json"
            ),
            include_str!(
                "../../tests/fixtures/realtime/conversation.item.input_audio_transcription.completed.json"
            ),
            include_str!("../../tests/fixtures/realtime/conversation.item.truncated.json"),
            include_str!(
                "../../tests/fixtures/realtime/response.function_call_arguments.done.json"
            ),
            include_str!("../../tests/fixtures/realtime/response.done.json"),
            include_str!("../../tests/fixtures/realtime/rate_limits.updated.json"),
            include_str!("../../tests/fixtures/realtime/error.json"),
            include_str!("../../tests/fixtures/realtime/unknown.json"),
        ];

        for text in fixtures {
            let wire_type: Value = serde_json::from_str(text).expect("fixtures are JSON");

            let event = parse_ok(text);

            assert_eq!(event.event_type(), wire_type["type"], "{text}");
        }
    }

    #[test]
    fn response_done_without_usage_or_status_details_parses_with_none() {
        let text = r#"{"type":"response.done","response":{"id":"resp_1","status":"completed","status_details":null,"usage":null}}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::ResponseDone {
                response: ResponseSummary {
                    id: "resp_1".into(),
                    status: "completed".into(),
                    status_details: None,
                    usage: None,
                },
            }
        );
    }

    fn api_error(kind: &str, code: Option<&str>) -> ApiError {
        ApiError {
            kind: kind.into(),
            code: code.map(Into::into),
            message: String::new(),
            param: None,
            event_id: None,
        }
    }

    #[test]
    fn account_level_error_codes_are_fatal() {
        for code in FATAL_ERROR_CODES {
            assert!(
                api_error("invalid_request_error", Some(code)).is_fatal(),
                "{code}"
            );
        }
        assert!(api_error("insufficient_quota", None).is_fatal());
    }

    #[test]
    fn request_level_errors_are_not_fatal() {
        assert!(
            !api_error(
                "invalid_request_error",
                Some("conversation_already_has_active_response")
            )
            .is_fatal()
        );
        assert!(!api_error("invalid_request_error", Some("response_cancel_not_active")).is_fatal());
        assert!(!api_error("server_error", None).is_fatal());
    }

    #[test]
    fn error_event_without_type_or_message_still_parses() {
        let text = r#"{"type":"error","error":{"code":"invalid_api_key","message":null}}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            ServerEvent::Error {
                error: api_error("", Some("invalid_api_key"))
            }
        );
    }

    fn assert_invalid(text: &str, expected_type: &str) {
        match parse_server_event(text) {
            Err(EventParseError::InvalidEvent { event_type, .. }) => {
                assert_eq!(event_type, expected_type)
            }
            other => panic!("expected InvalidEvent for {text}, got {other:?}"),
        }
    }

    fn assert_malformed(text: &str) {
        match parse_server_event(text) {
            Err(EventParseError::Malformed(_)) => {}
            other => panic!("expected Malformed for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn text_that_is_not_a_json_object_with_a_string_type_is_malformed() {
        assert_malformed("");
        assert_malformed("{");
        assert_malformed("[1,2]");
        assert_malformed("{}");
        assert_malformed(r#"{"type":1}"#);
        assert_malformed(r#"{"type":"error"} {}"#);
    }

    #[test]
    fn handled_events_with_missing_fields_or_wrong_types_are_invalid() {
        assert_invalid(
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i"}"#,
            "response.output_audio.delta",
        );
        assert_invalid(
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":"12","item_id":"i"}"#,
            "input_audio_buffer.speech_started",
        );
        assert_invalid(
            r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":-1,"item_id":"i"}"#,
            "input_audio_buffer.speech_stopped",
        );
        assert_invalid(
            r#"{"type":"response.created","response":{}}"#,
            "response.created",
        );
        assert_invalid(
            r#"{"type":"response.output_item.added","response_id":"r","item":{"type":"message"}}"#,
            "response.output_item.added",
        );
        assert_invalid(
            r#"{"type":"conversation.item.truncated","item_id":"i","audio_end_ms":1.5}"#,
            "conversation.item.truncated",
        );
        assert_invalid(
            r#"{"type":"response.function_call_arguments.done","response_id":"r","item_id":"i","call_id":"c","name":"end_call"}"#,
            "response.function_call_arguments.done",
        );
        assert_invalid(
            r#"{"type":"response.done","response":{"id":"r"}}"#,
            "response.done",
        );
        assert_invalid(r#"{"type":"error","error":"boom"}"#, "error");
    }

    #[test]
    fn audio_delta_with_an_escaped_delta_is_invalid_not_a_panic() {
        assert_invalid(
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"A\/8="}"#,
            "response.output_audio.delta",
        );
    }

    #[test]
    fn parse_errors_carry_serde_json_message() {
        let text = r#"{"type":"conversation.item.truncated","item_id":"i"}"#;

        let error = parse_server_event(text).expect_err("truncated without audio_end_ms");

        let message = error.to_string();
        assert!(
            message.contains("`conversation.item.truncated`"),
            "{message}"
        );
        assert!(
            message.contains("missing field `audio_end_ms`"),
            "{message}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse_server_event(&text);
        }

        #[test]
        fn json_ish_text_never_panics(
            text in r#"\{("(type|response|item|item_id|response_id|delta|audio_end_ms|usage|error|id|status|response\.done|error|response\.output_audio\.delta)"|"[a-z_.]{0,8}"|-?[0-9]{1,3}|true|null|[\[\]\{\},:"\\])*\}?"#
        ) {
            let _ = parse_server_event(&text);
        }

        #[test]
        fn any_handled_type_with_arbitrary_json_fields_never_panics(
            event_type in prop::sample::select(vec![
                "session.created", "input_audio_buffer.speech_started", "response.created",
                "response.output_item.added", "response.output_audio.delta", "response.done", "error",
                "conversation.item.truncated", "response.function_call_arguments.done",
            ]),
            field in "[a-z_]{1,12}",
            value in prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
                Just(Value::Null),
                Just(json!({"id": 1, "status": [], "usage": {"total_tokens": -1}})),
            ],
        ) {
            let text = json!({"type": event_type, field: value}).to_string();

            let _ = parse_server_event(&text);
        }

        #[test]
        fn audio_delta_round_trips_any_base64_delta(delta in "[A-Za-z0-9+/]{0,2000}={0,2}") {
            let text = json!({"type": "response.output_audio.delta", "event_id": "e", "response_id": RESPONSE_ID,
                              "item_id": ITEM_ID, "output_index": 0, "content_index": 0, "delta": delta}).to_string();

            let event = parse_server_event(&text).expect("a well-formed delta parses");

            prop_assert_eq!(event, ServerEvent::OutputAudioDelta {
                response_id: RESPONSE_ID, item_id: ITEM_ID, delta: &delta,
            });
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);

            let _ = parse_server_event(&text);
        }

        #[test]
        fn arbitrary_json_documents_never_panic(document in crate::test_support::arbitrary_json()) {
            let text = document.to_string();

            let parsed = parse_server_event(&text);

            if document.is_object() && !document.get("type").is_some_and(Value::is_string) {
                prop_assert!(parsed.is_err(), "an object without a string type parsed: {:?}", parsed);
            }
        }

        #[test]
        fn every_handled_type_with_arbitrary_json_fields_never_panics(
            event_type in prop::sample::select(vec![
                "response.output_audio.delta", "session.created", "session.updated",
                "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                "input_audio_buffer.timeout_triggered", "response.created", "response.output_item.added",
                "response.output_item.done", "response.output_audio.done", "response.output_audio_transcript.delta",
                "response.output_audio_transcript.done", "conversation.item.input_audio_transcription.completed",
                "conversation.item.truncated", "response.function_call_arguments.done", "response.done",
                "rate_limits.updated", "error",
            ]),
            fields in proptest::collection::vec(
                (
                    prop::sample::select(vec![
                        "response", "response_id", "item_id", "item", "delta", "transcript", "audio_end_ms",
                        "audio_start_ms", "call_id", "name", "arguments", "error", "usage", "output_index",
                    ]),
                    crate::test_support::arbitrary_json(),
                ),
                0..6,
            ),
        ) {
            let mut document = json!({"type": event_type});
            for (name, value) in fields {
                document[name] = value;
            }

            let _ = parse_server_event(&document.to_string());
        }

        #[test]
        fn an_unhandled_type_is_unknown_whatever_else_the_event_holds(
            event_type in "x-[a-z.]{0,12}",
            extra in crate::test_support::arbitrary_json(),
        ) {
            let text = json!({"type": event_type, "response": extra}).to_string();

            let parsed = parse_server_event(&text);

            prop_assert!(matches!(parsed, Ok(ServerEvent::Unknown { .. })), "{:?}", parsed);
        }
    }
}
