//! The `session.start` builder: a call's [`SessionConfig`] (instructions and tools, as built for Realtime) plus the
//! Live model, voice and backend → `{"type":"session.start","session":{...}}`.
//!
//! Shape (GPT-Live event reference; `openai.types.live.SessionStartEvent`): `session.model`, `session.instructions`,
//! `session.audio.format = {"type":"audio/pcmu","rate":8000}` (Twilio's payload passes through untouched, both ways),
//! `session.audio.output.voice`, and `session.delegation`. The call's function tools (`end_call`, `send_dtmf`,
//! `transfer_call`) go to a Responses backend (`delegation.type = "responses"`, `responses.tools`): the backend model
//! decides to call one, GPT-Live forwards the call to this client as a `response.event`, and the client answers with
//! `response.item.create` (`function_call_output`) and `response.create`
//! (<https://developers.openai.com/api/docs/guides/live-delegation>). Voice, format and instructions cannot change
//! after startup.

use serde_json::json;

use crate::realtime::session::SessionConfig;

/// The Live-specific parts of a session: which models and voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The Live model, e.g. `gpt-live-1`.
    pub model: String,
    /// The voice, e.g. `marin`.
    pub voice: String,
    /// The Responses model the Live model delegates tool use to, e.g. `gpt-5.6-luna`.
    pub backend_model: String,
}

/// The `session.start` text for a call: `config`'s instructions and tools with `live`'s model, voice and backend.
/// `config`'s Realtime-only settings (turn detection, noise reduction, transcription model, speed) have no Live
/// counterpart and are left out: the Live model handles turns and interruptions itself.
pub fn session_start_json(config: &SessionConfig, live: &LiveSession) -> String {
    let tools: Vec<serde_json::Value> = config
        .tools
        .iter()
        .map(|tool| {
            json!({
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            })
        })
        .collect();
    let mut session = json!({
        "model": live.model,
        "instructions": config.instructions,
        "audio": {
            "format": {"type": "audio/pcmu", "rate": 8000},
            "output": {"voice": live.voice},
        },
    });
    if !tools.is_empty() {
        session["delegation"] = json!({
            "type": "responses",
            "responses": {
                "model": live.backend_model,
                "instructions": BACKEND_INSTRUCTIONS,
                "tools": tools,
                "tool_choice": "auto",
            },
        });
    }
    json!({"type": "session.start", "session": session}).to_string()
}

/// What the backend model is told: it acts for a phone assistant and its tools act on the call.
pub const BACKEND_INSTRUCTIONS: &str = "You work for a voice assistant on a live phone call. Your tools act on the \
call itself: end it after the goodbye, press keypad keys, transfer it. Call a tool only when the conversation asks \
for it, and reply in one short sentence.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::session::{TurnDetection, end_call_tool};

    fn config(tools: Vec<crate::realtime::session::FunctionTool>) -> SessionConfig {
        SessionConfig {
            model: "gpt-realtime-2.1".into(),
            instructions: "Book a table.".into(),
            voice: "cedar".into(),
            speed: 1.0,
            turn_detection: TurnDetection::ServerVad {
                threshold: 0.5,
                prefix_padding_ms: 300,
                silence_duration_ms: 500,
                idle_timeout_ms: None,
            },
            noise_reduction: None,
            transcription_model: None,
            tools,
            mcp_servers: Vec::new(),
            truncation: Default::default(),
        }
    }

    fn live() -> LiveSession {
        LiveSession {
            model: "gpt-live-1".into(),
            voice: "marin".into(),
            backend_model: "gpt-5.6-luna".into(),
        }
    }

    #[test]
    fn the_session_starts_with_pcmu_at_8_khz_the_call_instructions_and_the_live_voice() {
        let json: serde_json::Value =
            serde_json::from_str(&session_start_json(&config(vec![]), &live())).expect("json");
        assert_eq!(json["type"], "session.start");
        assert_eq!(json["session"]["model"], "gpt-live-1");
        assert_eq!(json["session"]["instructions"], "Book a table.");
        assert_eq!(
            json["session"]["audio"]["format"],
            json!({"type": "audio/pcmu", "rate": 8000})
        );
        assert_eq!(json["session"]["audio"]["output"]["voice"], "marin");
        assert!(json["session"].get("delegation").is_none());
    }

    #[test]
    fn the_call_tools_are_delegated_to_a_responses_backend() {
        let json: serde_json::Value = serde_json::from_str(&session_start_json(
            &config(vec![end_call_tool(true)]),
            &live(),
        ))
        .expect("json");
        let delegation = &json["session"]["delegation"];
        assert_eq!(delegation["type"], "responses");
        assert_eq!(delegation["responses"]["model"], "gpt-5.6-luna");
        assert_eq!(delegation["responses"]["tools"][0]["type"], "function");
        assert_eq!(delegation["responses"]["tools"][0]["name"], "end_call");
    }
}
