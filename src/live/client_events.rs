//! GPT-Live client events, as the relay sends them: [`LiveClientEvent::to_json`].
//!
//! Names and fields follow the GPT-Live event reference and `openai.types.live` (`InputAudioAppendEvent`,
//! `InstructionsAppendEvent`, `CommentaryAppendEvent`, `ResponseItemCreateEvent`, `ResponseCreateEvent`,
//! `SessionCloseEvent`); `session.start` is written by [`crate::live::session`]. A `session.input_audio.append` is
//! serialized into one buffer sized up front (the hot path costs one allocation).

use serde::Serialize;

/// One event from the client to the Live server, serialized with its dotted `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum LiveClientEvent<'a> {
    /// `session.input_audio.append{audio}`: caller audio in the startup format (`audio/pcmu` at 8 kHz), the Twilio
    /// payload forwarded verbatim. Appends are not acknowledged.
    #[serde(rename = "session.input_audio.append")]
    InputAudioAppend {
        /// Base64 raw μ-law, no container header.
        audio: &'a str,
    },
    /// `session.instructions.append{content, delegation_id}`: developer instructions added mid-call (silent context
    /// that stays in the conversation history), at most 500 tokens.
    #[serde(rename = "session.instructions.append")]
    InstructionsAppend {
        /// The instruction text (a plain string).
        content: &'a str,
        /// Required and nullable: `null` for general session context.
        delegation_id: Option<&'a str>,
    },
    /// `session.commentary.append{content, delegation_id}`: context the model should communicate to the caller (the
    /// greeting, a goodbye), at most 500 tokens.
    #[serde(rename = "session.commentary.append")]
    CommentaryAppend {
        /// Speakable context.
        content: &'a str,
        /// Required and nullable: `null` for general session context.
        delegation_id: Option<&'a str>,
    },
    /// `response.item.create{item}`: a function tool's result for the Responses backend (Responses delegation).
    #[serde(rename = "response.item.create")]
    ResponseItemCreate {
        /// The `function_call_output` item.
        item: FunctionCallOutput<'a>,
    },
    /// `response.create`: continue the delegated response that waits for tool results.
    #[serde(rename = "response.create")]
    ResponseCreate,
    /// `session.close`: ask the session to close; `session.closed` carries the final usage.
    #[serde(rename = "session.close")]
    SessionClose,
}

/// `{"type":"function_call_output","call_id":..,"output":..}`, a Responses input item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "function_call_output")]
pub struct FunctionCallOutput<'a> {
    /// The `call_id` of the function call answered.
    pub call_id: &'a str,
    /// The result text (JSON here).
    pub output: &'a str,
}

/// Bytes of `{"type":"session.input_audio.append","audio":""}`, rounded up.
const APPEND_OVERHEAD_BYTES: usize = 56;
/// Room for the fixed keys of any other client event.
const EVENT_OVERHEAD_BYTES: usize = 128;

impl LiveClientEvent<'_> {
    /// Serializes the event to the JSON text to send, in one buffer allocated up front.
    pub fn to_json(&self) -> String {
        let capacity = match self {
            LiveClientEvent::InputAudioAppend { audio } => APPEND_OVERHEAD_BYTES + audio.len(),
            LiveClientEvent::InstructionsAppend { content, .. }
            | LiveClientEvent::CommentaryAppend { content, .. } => {
                EVENT_OVERHEAD_BYTES + content.len()
            }
            LiveClientEvent::ResponseItemCreate { item } => {
                EVENT_OVERHEAD_BYTES + item.call_id.len() + item.output.len()
            }
            _ => EVENT_OVERHEAD_BYTES,
        };
        let mut buffer = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut buffer, self)
            .expect("a LiveClientEvent holds only strings, and writing to a Vec cannot fail");
        String::from_utf8(buffer).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audio_append_is_the_payload_under_the_live_event_name() {
        let json = LiveClientEvent::InputAudioAppend { audio: "AAEC" }.to_json();
        assert_eq!(
            json,
            r#"{"type":"session.input_audio.append","audio":"AAEC"}"#
        );
        assert!(json.len() <= APPEND_OVERHEAD_BYTES + 4);
    }

    #[test]
    fn instructions_always_carry_a_delegation_id_even_when_null() {
        let json = LiveClientEvent::InstructionsAppend {
            content: "Be brief.",
            delegation_id: None,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"session.instructions.append","content":"Be brief.","delegation_id":null}"#
        );
    }

    #[test]
    fn a_tool_result_is_a_function_call_output_item() {
        let json = LiveClientEvent::ResponseItemCreate {
            item: FunctionCallOutput {
                call_id: "call_1",
                output: "{\"ok\":true}",
            },
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"response.item.create","item":{"type":"function_call_output","call_id":"call_1","output":"{\"ok\":true}"}}"#
        );
    }
}
