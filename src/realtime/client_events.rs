//! OpenAI Realtime API (GA) client events, as the relay sends them: [`ClientEvent::to_json`].
//!
//! Names and fields follow <https://platform.openai.com/docs/api-reference/realtime-client-events> as modelled by the
//! official `openai` Python SDK 3.x (`openai.types.realtime`). `session.update` is written by
//! [`crate::realtime::session`], which owns the session shape. An `input_audio_buffer.append` is serialized into one
//! buffer sized up front (the hot path costs one allocation).

use serde::Serialize;

/// One event from the client to the Realtime server, serialized with its dotted GA `type`.
///
/// See <https://platform.openai.com/docs/api-reference/realtime-client-events>.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ClientEvent<'a> {
    /// `input_audio_buffer.append{audio}`: caller audio, the Twilio payload forwarded verbatim (the hot path).
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Base64 audio in the session's input format (`audio/pcmu`).
        audio: &'a str,
    },
    /// `input_audio_buffer.clear`: discard uncommitted caller audio.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear,
    /// `conversation.item.create{item}`: add an item (a function call's output, a text message) to the conversation.
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate {
        /// The item.
        item: ConversationItem,
    },
    /// `conversation.item.truncate{item_id, content_index, audio_end_ms}`: cut an assistant item's audio to what the
    /// caller heard. `audio_end_ms` past the audio the item produced is rejected by the server.
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate {
        /// The assistant message item.
        item_id: &'a str,
        /// The content part holding the audio: 0.
        content_index: u32,
        /// Ms of the item's audio the caller heard.
        audio_end_ms: u64,
    },
    /// `response.create{response?}`: ask the model to respond (never while a response is active).
    #[serde(rename = "response.create")]
    ResponseCreate {
        /// Overrides for this response only; omitted when `None`.
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<ResponseParams>,
    },
    /// `response.cancel{response_id?}`: stop the active response (an error if none is active).
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// The response to cancel; omitted when `None` (the active one in the default conversation).
        #[serde(skip_serializing_if = "Option::is_none")]
        response_id: Option<&'a str>,
    },
}

/// Bytes of `{"type":"input_audio_buffer.append","audio":""}`, rounded up.
const APPEND_OVERHEAD_BYTES: usize = 48;
/// Room for the fixed keys of any other client event.
const EVENT_OVERHEAD_BYTES: usize = 256;

impl ClientEvent<'_> {
    /// Serializes the event to the JSON text to send, in one buffer allocated up front.
    ///
    /// For `input_audio_buffer.append` the buffer is sized exactly for the payload, so the hot path costs one
    /// allocation.
    pub fn to_json(&self) -> String {
        let capacity = match self {
            ClientEvent::InputAudioBufferAppend { audio } => APPEND_OVERHEAD_BYTES + audio.len(),
            ClientEvent::ConversationItemCreate { item } => EVENT_OVERHEAD_BYTES + item.text_len(),
            _ => EVENT_OVERHEAD_BYTES,
        };
        let mut buffer = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut buffer, self)
            .expect("a ClientEvent holds only strings, numbers and JSON values, and writing to a Vec cannot fail");
        String::from_utf8(buffer).expect("serde_json writes UTF-8")
    }
}

/// Overrides carried by a `response.create` for that response only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResponseParams {
    /// Instructions for this response instead of the session's; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `none`, `auto` or `required` for this response only (a voicemail message calls no tool); omitted when
    /// `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
}

impl ResponseParams {
    /// The overrides that make one response speak `text` verbatim (a relay-mode call's `say`): instructions that
    /// quote the words and forbid anything else, and no tool call. Sent as
    /// `{"type":"response.create","response":{"instructions":"...","tool_choice":"none"}}` in the default
    /// conversation, so the words become an assistant item that a barge-in can truncate like any other.
    ///
    /// `instructions` on `response.create` replace the session's for that response only
    /// (<https://platform.openai.com/docs/api-reference/realtime-client-events/response/create>, the SDK's
    /// `RealtimeResponseCreateParams`); the model follows them closely but is not bound to, so the transcript
    /// of what it actually said is what the relay reports as heard.
    pub fn verbatim(text: &str) -> Self {
        ResponseParams {
            instructions: Some(format!(
                "Say exactly the words between the markers below to the person on the phone, word for word, in \
                 this call's voice and language. Add nothing before or after them, answer nothing else, and do not \
                 read the markers.\n<<<\n{text}\n>>>"
            )),
            tool_choice: Some("none"),
        }
    }
}

/// An item the client adds with `conversation.item.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConversationItem {
    /// `{"type":"function_call_output","call_id":..,"output":..}`: the answer to a function call.
    FunctionCallOutput {
        /// The `call_id` of the function call being answered.
        call_id: String,
        /// Free text (often JSON) returned to the model.
        output: String,
    },
    /// `{"type":"message","role":..,"content":[{"type":"input_text","text":..}]}`: a text message.
    Message {
        /// Who says it.
        role: MessageRole,
        /// The text parts.
        content: Vec<InputText>,
    },
    /// `{"type":"message","role":"assistant","content":[{"type":"output_text","text":..}]}`: something the assistant
    /// said earlier, as text (a new session seeded with the conversation so far). Follows
    /// `RealtimeConversationItemAssistantMessage` of the `openai` SDK
    /// (<https://platform.openai.com/docs/api-reference/realtime-client-events/conversation/item/create>).
    #[serde(rename = "message")]
    AssistantMessage {
        /// Always [`MessageRole::Assistant`].
        role: MessageRole,
        /// The text parts.
        content: Vec<OutputText>,
    },
}

impl ConversationItem {
    /// A `function_call_output` answering the function call `call_id`.
    pub fn function_call_output(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        ConversationItem::FunctionCallOutput {
            call_id: call_id.into(),
            output: output.into(),
        }
    }

    /// A user message with one `input_text` part, e.g. "The caller pressed 3".
    pub fn user_text(text: impl Into<String>) -> Self {
        ConversationItem::Message {
            role: MessageRole::User,
            content: vec![InputText { text: text.into() }],
        }
    }

    /// A system message with one `input_text` part: extra context or an instruction added mid-call.
    pub fn system_text(text: impl Into<String>) -> Self {
        ConversationItem::Message {
            role: MessageRole::System,
            content: vec![InputText { text: text.into() }],
        }
    }

    /// An assistant message with one `output_text` part: a reply the assistant gave earlier in the call.
    pub fn assistant_text(text: impl Into<String>) -> Self {
        ConversationItem::AssistantMessage {
            role: MessageRole::Assistant,
            content: vec![OutputText { text: text.into() }],
        }
    }

    /// Bytes of the free text the item carries (to size the output buffer).
    fn text_len(&self) -> usize {
        match self {
            ConversationItem::FunctionCallOutput { call_id, output } => {
                call_id.len() + output.len()
            }
            ConversationItem::Message { content, .. } => {
                content.iter().map(|part| part.text.len()).sum()
            }
            ConversationItem::AssistantMessage { content, .. } => {
                content.iter().map(|part| part.text.len()).sum()
            }
        }
    }
}

/// The role of a message item the client creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// `"user"`: as if the caller said it.
    User,
    /// `"system"`: context or instructions for the model.
    System,
    /// `"assistant"`: what the model said (only in [`ConversationItem::AssistantMessage`]).
    Assistant,
}

/// One `{"type":"output_text","text":..}` content part of an assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "output_text")]
pub struct OutputText {
    /// The text.
    pub text: String,
}

/// One `{"type":"input_text","text":..}` content part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "input_text")]
pub struct InputText {
    /// The text.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const RESPONSE_ID: &str = "resp_C9xL0aQm4Zt7Vn2Ee6Rw";
    const ITEM_ID: &str = "item_C9xL0bYc8Ju3Po5Hs1Kd";
    const CALL_ID: &str = "call_Xy7Qm2Lk9Pz4Rt1v";

    fn json_of(event: &ClientEvent<'_>) -> Value {
        serde_json::from_str(&event.to_json()).expect("to_json writes JSON")
    }

    #[test]
    fn a_verbatim_response_create_quotes_the_text_and_calls_no_tool() {
        let event = ClientEvent::ResponseCreate {
            response: Some(ResponseParams::verbatim("Table for four at seven, please.")),
        };

        let value = json_of(&event);

        assert_eq!(value["type"], "response.create");
        assert_eq!(value["response"]["tool_choice"], "none");
        let instructions = value["response"]["instructions"].as_str().expect("text");
        assert!(
            instructions.contains("<<<\nTable for four at seven, please.\n>>>"),
            "{instructions}"
        );
        assert_eq!(value["response"].as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn input_audio_buffer_append_serializes_to_the_ga_shape() {
        let value = json_of(&ClientEvent::InputAudioBufferAppend { audio: "AAEC/w==" });

        assert_eq!(
            value,
            json!({"type": "input_audio_buffer.append", "audio": "AAEC/w=="})
        );
    }

    #[test]
    fn input_audio_buffer_append_fits_the_buffer_allocated_up_front() {
        let audio = "A".repeat(216);

        let text = ClientEvent::InputAudioBufferAppend { audio: &audio }.to_json();

        assert!(
            text.capacity() <= APPEND_OVERHEAD_BYTES + audio.len(),
            "the buffer must not have grown past its initial size"
        );
    }

    #[test]
    fn input_audio_buffer_clear_serializes_to_the_ga_shape() {
        let value = json_of(&ClientEvent::InputAudioBufferClear);

        assert_eq!(value, json!({"type": "input_audio_buffer.clear"}));
    }

    #[test]
    fn function_call_output_item_serializes_to_the_ga_shape() {
        let event = ClientEvent::ConversationItemCreate {
            item: ConversationItem::function_call_output(CALL_ID, r#"{"ok":true}"#),
        };

        let value = json_of(&event);

        assert_eq!(
            value,
            json!({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": CALL_ID, "output": "{\"ok\":true}"}})
        );
    }

    #[test]
    fn user_text_item_serializes_to_the_ga_shape() {
        let event = ClientEvent::ConversationItemCreate {
            item: ConversationItem::user_text("The caller pressed 3"),
        };

        let value = json_of(&event);

        assert_eq!(
            value,
            json!({"type": "conversation.item.create",
                   "item": {"type": "message", "role": "user",
                            "content": [{"type": "input_text", "text": "The caller pressed 3"}]}})
        );
    }

    #[test]
    fn system_text_item_serializes_to_the_ga_shape() {
        let event = ClientEvent::ConversationItemCreate {
            item: ConversationItem::system_text("Wrap up the call now."),
        };

        let value = json_of(&event);

        assert_eq!(
            value,
            json!({"type": "conversation.item.create",
                   "item": {"type": "message", "role": "system",
                            "content": [{"type": "input_text", "text": "Wrap up the call now."}]}})
        );
    }

    #[test]
    fn conversation_item_truncate_serializes_to_the_ga_shape() {
        let event = ClientEvent::ConversationItemTruncate {
            item_id: ITEM_ID,
            content_index: 0,
            audio_end_ms: 1460,
        };

        let value = json_of(&event);

        assert_eq!(
            value,
            json!({"type": "conversation.item.truncate", "item_id": ITEM_ID, "content_index": 0, "audio_end_ms": 1460})
        );
    }

    #[test]
    fn response_create_without_params_has_no_response_key() {
        let value = json_of(&ClientEvent::ResponseCreate { response: None });

        assert_eq!(value, json!({"type": "response.create"}));
    }

    #[test]
    fn response_create_with_instructions_carries_them_in_response() {
        let event = ClientEvent::ResponseCreate {
            response: Some(ResponseParams {
                instructions: Some("Greet the caller.".into()),
                ..ResponseParams::default()
            }),
        };

        let value = json_of(&event);

        assert_eq!(
            value,
            json!({"type": "response.create", "response": {"instructions": "Greet the caller."}})
        );
    }

    #[test]
    fn response_cancel_without_id_has_no_response_id_key() {
        let value = json_of(&ClientEvent::ResponseCancel { response_id: None });

        assert_eq!(value, json!({"type": "response.cancel"}));
    }

    #[test]
    fn response_cancel_with_id_carries_it() {
        let value = json_of(&ClientEvent::ResponseCancel {
            response_id: Some(RESPONSE_ID),
        });

        assert_eq!(
            value,
            json!({"type": "response.cancel", "response_id": RESPONSE_ID})
        );
    }

    proptest! {
        #[test]
        fn user_text_round_trips_any_text(text in any::<String>()) {
            let event = ClientEvent::ConversationItemCreate { item: ConversationItem::user_text(text.clone()) };

            let value = json_of(&event);

            prop_assert_eq!(&value["item"]["content"][0]["text"], &Value::from(text));
        }
    }
}
