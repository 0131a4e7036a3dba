//! The GA `session.update` builder: [`SessionConfig`] → `{"type":"session.update","session":{...}}`.
//!
//! Owns the session shape callbridge sends: a `realtime` session speaking `audio/pcmu` in both
//! directions (Twilio's μ-law passes through byte for byte), audio output only, server or semantic VAD that creates
//! and interrupts responses, optional noise reduction and input transcription, and function tools (`end_call`).
//! There is no `temperature` in GA sessions and none of the beta keys (`modalities`, `input_audio_format`, ...).
//! Follows <https://platform.openai.com/docs/api-reference/realtime-client-events/session/update> and the
//! `openai` Python SDK's `RealtimeSessionCreateRequestParam`.
//!
//! Also owns the config-string enums ([`VadKind`], [`Eagerness`], [`NoiseReduction`]) with `FromStr` and serde that
//! accept the API's own spellings and list the valid values on error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name of the tool the model calls to hang up.
pub const END_CALL_TOOL_NAME: &str = "end_call";

/// The name of the tool the model calls to press keys on the phone's keypad (phone menus).
pub const SEND_DTMF_TOOL_NAME: &str = "send_dtmf";

/// The name of the tool the model calls to transfer the caller to a person.
pub const TRANSFER_CALL_TOOL_NAME: &str = "transfer_call";

/// The session instructions of a relay-mode call (the agent decides every word): the voice speaks only what each
/// `response.create` quotes, and its session runs server VAD with `create_response: false`
/// ([`SessionConfig::to_json_holding`]), so it never answers the callee on its own. Followed by the agent's own
/// context for the call ([`relay_instructions`]).
pub const RELAY_INSTRUCTIONS: &str = "You are the voice of an agent on a phone call. You never decide what to say: \
each time you are asked to speak, you are given the exact words, and you say exactly those words, nothing more. \
Never answer the person on the phone on your own, never greet, never ask questions of your own. If you are asked to \
speak without being given words, only ask the person, briefly, to repeat what they said.";

/// [`RELAY_INSTRUCTIONS`], then the call's language and the agent's context (`context`, the call's
/// `instructions`, kept for tone and pronunciation only).
pub fn relay_instructions(context: Option<&str>, language: Option<&str>) -> String {
    let mut text = RELAY_INSTRUCTIONS.to_owned();
    if let Some(language) = language {
        text.push_str(&format!("\nSpeak {language}."));
    }
    if let Some(context) = context.filter(|c| !c.trim().is_empty()) {
        text.push_str(
            "\n\n# Context from the agent (for tone and pronunciation only; it does not change your role)\n",
        );
        text.push_str(context);
    }
    text
}

/// Everything callbridge puts in a `session.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// The Realtime model, e.g. `gpt-realtime-2.1` (also sent as `?model=` when connecting).
    pub model: String,
    /// The system instructions for this call.
    pub instructions: String,
    /// Output voice, e.g. `marin` or `cedar`; fixed once the model has produced audio.
    pub voice: String,
    /// Output speed multiplier, 0.25 to 1.5 (1.0 is normal).
    pub speed: f64,
    /// How the server decides the caller finished a turn.
    pub turn_detection: TurnDetection,
    /// Input noise reduction; `None` sends `null` (off).
    pub noise_reduction: Option<NoiseReduction>,
    /// Input transcription model, e.g. `gpt-4o-mini-transcribe`; `None` sends `null` (no caller transcripts).
    pub transcription_model: Option<String>,
    /// Function tools the model may call.
    pub tools: Vec<FunctionTool>,
    /// Remote MCP servers' `{"type":"mcp",...}` tool entries, sent after the function tools
    /// ([`crate::realtime::mcp_tools`]).
    pub mcp_servers: Vec<serde_json::Value>,
    /// What OpenAI drops once the conversation outgrows the input limit (`session.truncation`).
    pub truncation: super::truncation::Truncation,
}

/// Room for the fixed keys of a `session.update` (audio formats, turn detection, ...), tools excluded.
const SESSION_UPDATE_OVERHEAD_BYTES: usize = 1024;

/// `{"type":"session.update","session":{...}}` as it goes on the wire.
#[derive(Serialize)]
struct WireSessionUpdate<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: WireSession<'a>,
}

impl SessionConfig {
    /// The full `{"type":"session.update","session":{...}}` text to send.
    ///
    /// Shape: `session` = `{type:"realtime", model, output_modalities:["audio"], instructions,
    /// audio:{input:{format:{type:"audio/pcmu"}, noise_reduction:{type}|null, transcription:{model}|null,
    /// turn_detection:{...}}, output:{format:{type:"audio/pcmu"}, voice, speed}}, tools:[...], tool_choice:"auto",
    /// truncation}` (truncation as [`super::truncation::Truncation`] writes it).
    /// `noise_reduction` and `transcription` are sent as `null` when off, so that the update is authoritative (an
    /// omitted key would leave the server's current setting unchanged).
    pub fn to_json(&self) -> String {
        self.to_json_with(true)
    }

    /// [`SessionConfig::to_json`] for a call that holds the model back until an answering machine verdict: the
    /// turn detection is the same but with `create_response: false`, so the callee's speech is heard and
    /// transcribed without the model answering it (it speaks only on a `response.create`). Release the hold with
    /// [`turn_detection_update`].
    pub fn to_json_holding(&self) -> String {
        self.to_json_with(false)
    }

    fn to_json_with(&self, create_response: bool) -> String {
        let mut session = WireSession::from_config(self);
        session
            .audio
            .input
            .turn_detection
            .set_create_response(create_response);
        let update = WireSessionUpdate {
            kind: "session.update",
            session,
        };
        let mut buffer =
            Vec::with_capacity(SESSION_UPDATE_OVERHEAD_BYTES + self.instructions.len());
        serde_json::to_writer(&mut buffer, &update)
            .expect("a session holds only strings, numbers and JSON values, and writing to a Vec cannot fail");
        String::from_utf8(buffer).expect("serde_json writes UTF-8")
    }
}

/// A `session.update` that changes only `audio.input.turn_detection`: `Some` sets it as [`SessionConfig::to_json`]
/// does (creating and interrupting responses), `None` sends `null` (no turn detection: the model speaks only on a
/// `response.create`, and nothing the callee says interrupts it). The other session fields keep their values.
/// Shape: `{"type":"session.update","session":{"type":"realtime","audio":{"input":{"turn_detection":...}}}}`.
pub fn turn_detection_update(turn_detection: Option<&TurnDetection>) -> String {
    #[derive(Serialize)]
    struct Update {
        #[serde(rename = "type")]
        kind: &'static str,
        session: Session,
    }
    #[derive(Serialize)]
    struct Session {
        #[serde(rename = "type")]
        kind: &'static str,
        audio: Audio,
    }
    #[derive(Serialize)]
    struct Audio {
        input: Input,
    }
    #[derive(Serialize)]
    struct Input {
        turn_detection: Option<WireTurnDetection>,
    }
    let update = Update {
        kind: "session.update",
        session: Session {
            kind: "realtime",
            audio: Audio {
                input: Input {
                    turn_detection: turn_detection.map(WireTurnDetection::from_config),
                },
            },
        },
    };
    serde_json::to_string(&update).expect("a turn detection holds only numbers and names")
}

/// Turn detection (`audio.input.turn_detection`); both kinds create a response when the caller stops and interrupt
/// the active one when the caller starts speaking (`create_response` and `interrupt_response` are always true).
#[derive(Debug, Clone, PartialEq)]
pub enum TurnDetection {
    /// `server_vad`: voice activity detection on audio energy.
    ServerVad {
        /// Activation threshold, 0.0 to 1.0 (higher needs louder speech).
        threshold: f64,
        /// Audio kept before detected speech, in ms.
        prefix_padding_ms: u32,
        /// Silence that ends a turn, in ms.
        silence_duration_ms: u32,
        /// Silence after the assistant's audio finished playing before the model prompts the caller, in ms; `None`
        /// omits the key (no idle timeout). Exists only for `server_vad`.
        idle_timeout_ms: Option<u32>,
    },
    /// `semantic_vad`: a turn-detection model estimates whether the caller has finished.
    SemanticVad {
        /// How soon the model answers.
        eagerness: Eagerness,
    },
}

impl Default for TurnDetection {
    /// Server VAD with the API's defaults: threshold 0.5, 300 ms prefix padding, 500 ms silence, no idle timeout.
    fn default() -> Self {
        TurnDetection::ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            idle_timeout_ms: None,
        }
    }
}

impl TurnDetection {
    /// Which kind of turn detection this is.
    pub fn kind(&self) -> VadKind {
        match self {
            TurnDetection::ServerVad { .. } => VadKind::ServerVad,
            TurnDetection::SemanticVad { .. } => VadKind::SemanticVad,
        }
    }
}

/// A config string that names none of the valid values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}, expected one of: {expected}")]
pub struct ParseChoiceError {
    /// What was being parsed, e.g. `"eagerness"`.
    pub what: &'static str,
    /// The text that did not match.
    pub value: String,
    /// The valid values, comma-separated.
    pub expected: String,
}

/// Finds the value among `all` whose name equals `text`, ignoring ASCII case and surrounding whitespace.
fn parse_choice<T: Copy>(
    what: &'static str,
    text: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, ParseChoiceError> {
    let wanted = text.trim();
    all.iter()
        .copied()
        .find(|choice| name(*choice).eq_ignore_ascii_case(wanted))
        .ok_or_else(|| ParseChoiceError {
            what,
            value: text.to_owned(),
            expected: all
                .iter()
                .map(|choice| name(*choice))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Implements `Display` (the API spelling), `FromStr` and `TryFrom<String>` (used by serde) for a choice enum.
macro_rules! choice_conversions {
    ($type:ident, $what:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = ParseChoiceError;

            /// Parses the API spelling, ignoring ASCII case and surrounding whitespace.
            ///
            /// # Errors
            ///
            /// [`ParseChoiceError`] listing the valid values.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_choice($what, text, &Self::ALL, Self::as_str)
            }
        }

        impl TryFrom<String> for $type {
            type Error = ParseChoiceError;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

/// The kind of turn detection, as written in config: `server_vad` or `semantic_vad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum VadKind {
    /// `server_vad`.
    ServerVad,
    /// `semantic_vad`.
    SemanticVad,
}

impl VadKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [VadKind; 2] = [VadKind::ServerVad, VadKind::SemanticVad];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VadKind::ServerVad => "server_vad",
            VadKind::SemanticVad => "semantic_vad",
        }
    }
}

choice_conversions!(VadKind, "turn detection");

/// Semantic VAD eagerness: `low` waits longest (up to 8 s), `high` answers soonest (2 s), `auto` = `medium` (4 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Eagerness {
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `auto` (the API default).
    Auto,
}

impl Eagerness {
    /// Every value, in the order error messages list them.
    pub const ALL: [Eagerness; 4] = [
        Eagerness::Low,
        Eagerness::Medium,
        Eagerness::High,
        Eagerness::Auto,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Eagerness::Low => "low",
            Eagerness::Medium => "medium",
            Eagerness::High => "high",
            Eagerness::Auto => "auto",
        }
    }
}

choice_conversions!(Eagerness, "eagerness");

/// Input noise reduction (`audio.input.noise_reduction.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum NoiseReduction {
    /// `near_field`: close-talking microphones such as a phone handset or headset.
    NearField,
    /// `far_field`: microphones away from the speaker, such as a speakerphone.
    FarField,
}

impl NoiseReduction {
    /// Every value, in the order error messages list them.
    pub const ALL: [NoiseReduction; 2] = [NoiseReduction::NearField, NoiseReduction::FarField];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseReduction::NearField => "near_field",
            NoiseReduction::FarField => "far_field",
        }
    }
}

choice_conversions!(NoiseReduction, "noise reduction");

/// A function tool: `{"type":"function","name":..,"description":..,"parameters":<JSON Schema>}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "function")]
pub struct FunctionTool {
    /// The name the model calls it by.
    pub name: String,
    /// When and how to call it, and what to say meanwhile.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// The `end_call` tool: the model calls it after saying goodbye, and the relay hangs up once the goodbye has played.
///
/// With `with_outcome`, the arguments carry a required string `outcome` (one or two sentences of what the call
/// achieved, for an outbound call's result); without it, the arguments are an empty object.
pub fn end_call_tool(with_outcome: bool) -> FunctionTool {
    let when = "End the phone call. Call this only when the conversation is over and you have already said goodbye \
                out loud; the line is closed once your goodbye has finished playing. Never call it while you still \
                expect an answer, and do not say anything after calling it.";
    let (description, parameters) = if with_outcome {
        (
            format!(
                "{when} Pass `outcome`: one or two sentences of what was achieved on the call."
            ),
            serde_json::json!({
                "type": "object",
                "properties": {
                    "outcome": {
                        "type": "string",
                        "description": "One or two sentences of what was achieved on the call.",
                    },
                },
                "required": ["outcome"],
            }),
        )
    } else {
        (
            when.to_owned(),
            serde_json::json!({"type": "object", "properties": {}}),
        )
    };
    FunctionTool {
        name: END_CALL_TOOL_NAME.to_owned(),
        description,
        parameters,
    }
}

/// The `end_call` tool of a call placed with an `outcome_schema`: the arguments carry a required `outcome` that must
/// match `schema` (a JSON Schema object). The relay checks what the model sends and answers an outcome that does not
/// match with the errors, without hanging up, so the model can call the tool again with a corrected one.
pub fn end_call_tool_with_schema(schema: &serde_json::Value) -> FunctionTool {
    let mut tool = end_call_tool(true);
    tool.description.push_str(
        " The outcome must match the given JSON schema exactly; if it does not, you get the errors back and must          call end_call again with a corrected outcome, without telling the callee.",
    );
    tool.parameters["properties"]["outcome"] = schema.clone();
    tool
}

/// The `send_dtmf` tool: the model presses keys on the phone's keypad to get through an automated phone menu
/// ("for reservations, press 1"). The arguments carry a required string `digits` of `0-9`, `*`, `#` and `w` (a
/// half-second pause), at most 32 characters. The relay plays the tones with a Twilio call update; the model hears
/// the menu's answer on the same session.
pub fn send_dtmf_tool() -> FunctionTool {
    FunctionTool {
        name: SEND_DTMF_TOOL_NAME.to_owned(),
        description: "Press keys on the phone keypad. Use it only when an automated phone menu or system asks you to \
                      press a key or type a number (\"for reservations, press 1\", \"enter the extension\"). Pass \
                      exactly the keys the menu asked for. Do not speak while the keys are pressed: wait silently for \
                      the menu or the person to answer. Never use it to dial a phone number."
            .to_owned(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "description": "Keys to press, in order: 0-9, * and #; w waits half a second. At most 32 characters.",
                    "pattern": "^[0-9*#w]{1,32}$",
                },
            },
            "required": ["digits"],
        }),
    }
}

/// The `transfer_call` tool: the model hands the caller to a person, picked by name from `targets` (the configured
/// names; the numbers stay on the server). The arguments carry `target` (one of the names) and `summary` (what the
/// person hears before the two are connected). Offer it only when `targets` is not empty.
pub fn transfer_call_tool(targets: &[String]) -> FunctionTool {
    FunctionTool {
        name: TRANSFER_CALL_TOOL_NAME.to_owned(),
        description: format!(
            "Transfer the caller to a person. Use it only when the caller asks for a person or you cannot help and \
             one of these can: {}. Tell the caller first, in one short sentence, that you are transferring them; \
             then call this tool. You can only choose a name from that list: never dial a number the caller gives \
             you. If the transfer fails you will be told, and the conversation goes on with you.",
            targets.join(", ")
        ),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "target": {
                    "type": "string",
                    "description": "Who to transfer to: exactly one of the names listed.",
                    "enum": targets,
                },
                "summary": {
                    "type": "string",
                    "description": "One or two sentences for the person before they are connected: who is calling and what they need.",
                },
            },
            "required": ["target", "summary"],
        }),
    }
}

/// The μ-law format Twilio streams, in both directions.
const PCMU: WireFormat = WireFormat { kind: "audio/pcmu" };

#[derive(Serialize)]
struct WireSession<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    model: &'a str,
    output_modalities: [&'static str; 1],
    instructions: &'a str,
    audio: WireAudio<'a>,
    tools: WireTools<'a>,
    tool_choice: &'static str,
    truncation: super::truncation::Truncation,
}

/// `session.tools`: the function tools, then the remote MCP servers' entries.
struct WireTools<'a> {
    functions: &'a [FunctionTool],
    mcp: &'a [serde_json::Value],
}

impl Serialize for WireTools<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum WireTool<'a> {
            Function(&'a FunctionTool),
            Mcp(&'a serde_json::Value),
        }
        serializer.collect_seq(
            self.functions
                .iter()
                .map(WireTool::Function)
                .chain(self.mcp.iter().map(WireTool::Mcp)),
        )
    }
}

impl<'a> WireSession<'a> {
    fn from_config(config: &'a SessionConfig) -> Self {
        WireSession {
            kind: "realtime",
            model: &config.model,
            output_modalities: ["audio"],
            instructions: &config.instructions,
            audio: WireAudio {
                input: WireAudioInput {
                    format: PCMU,
                    noise_reduction: config
                        .noise_reduction
                        .map(|kind| WireNoiseReduction { kind }),
                    transcription: config
                        .transcription_model
                        .as_deref()
                        .map(|model| WireTranscription { model }),
                    turn_detection: WireTurnDetection::from_config(&config.turn_detection),
                },
                output: WireAudioOutput {
                    format: PCMU,
                    voice: &config.voice,
                    speed: config.speed,
                },
            },
            tools: WireTools {
                functions: &config.tools,
                mcp: &config.mcp_servers,
            },
            tool_choice: "auto",
            truncation: config.truncation,
        }
    }
}

#[derive(Serialize)]
struct WireAudio<'a> {
    input: WireAudioInput<'a>,
    output: WireAudioOutput<'a>,
}

#[derive(Serialize)]
struct WireAudioInput<'a> {
    format: WireFormat,
    noise_reduction: Option<WireNoiseReduction>,
    transcription: Option<WireTranscription<'a>>,
    turn_detection: WireTurnDetection,
}

#[derive(Serialize)]
struct WireAudioOutput<'a> {
    format: WireFormat,
    voice: &'a str,
    speed: f64,
}

#[derive(Serialize)]
struct WireFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct WireNoiseReduction {
    #[serde(rename = "type")]
    kind: NoiseReduction,
}

#[derive(Serialize)]
struct WireTranscription<'a> {
    model: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireTurnDetection {
    ServerVad {
        threshold: f64,
        prefix_padding_ms: u32,
        silence_duration_ms: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        idle_timeout_ms: Option<u32>,
        create_response: bool,
        interrupt_response: bool,
    },
    SemanticVad {
        eagerness: Eagerness,
        create_response: bool,
        interrupt_response: bool,
    },
}

impl WireTurnDetection {
    fn set_create_response(&mut self, value: bool) {
        match self {
            WireTurnDetection::ServerVad {
                create_response, ..
            }
            | WireTurnDetection::SemanticVad {
                create_response, ..
            } => *create_response = value,
        }
    }

    fn from_config(turn_detection: &TurnDetection) -> Self {
        match *turn_detection {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                idle_timeout_ms,
            } => WireTurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                idle_timeout_ms,
                create_response: true,
                interrupt_response: true,
            },
            TurnDetection::SemanticVad { eagerness } => WireTurnDetection::SemanticVad {
                eagerness,
                create_response: true,
                interrupt_response: true,
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// A server-VAD configuration shaped like the one callbridge sends by default.
    pub(crate) fn server_vad_config() -> SessionConfig {
        SessionConfig {
            model: "gpt-realtime-2.1".into(),
            instructions: "You are a friendly phone assistant.".into(),
            voice: "marin".into(),
            speed: 1.0,
            turn_detection: TurnDetection::default(),
            noise_reduction: Some(NoiseReduction::NearField),
            transcription_model: Some("gpt-4o-mini-transcribe".into()),
            tools: vec![end_call_tool(false)],
            mcp_servers: Vec::new(),
            truncation: crate::realtime::truncation::Truncation::default(),
        }
    }

    #[test]
    fn remote_mcp_servers_follow_the_function_tools() {
        let mcp = json!({"type": "mcp", "server_label": "calendar", "server_url": "https://mcp.example.com",
                         "require_approval": "never"});
        let config = SessionConfig {
            mcp_servers: vec![mcp.clone()],
            ..server_vad_config()
        };

        let value = update_json(&config);

        assert_eq!(value["session"]["tools"][0]["name"], "end_call");
        assert_eq!(value["session"]["tools"][1], mcp);
        assert_eq!(value["session"]["tools"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn end_call_with_a_schema_takes_that_schema_as_its_required_outcome() {
        let schema = json!({"type": "object", "properties": {"booked": {"type": "boolean"}},
                            "required": ["booked"]});

        let tool = end_call_tool_with_schema(&schema);

        assert_eq!(tool.name, "end_call");
        assert_eq!(tool.parameters["properties"]["outcome"], schema);
        assert_eq!(tool.parameters["required"], json!(["outcome"]));
        assert!(tool.description.contains("schema"), "{}", tool.description);
    }

    fn update_json(config: &SessionConfig) -> Value {
        serde_json::from_str(&config.to_json()).expect("to_json writes JSON")
    }

    #[test]
    fn a_holding_session_has_the_same_turn_detection_without_creating_responses() {
        let config = server_vad_config();

        let held: Value = serde_json::from_str(&config.to_json_holding()).expect("JSON");
        let normal = update_json(&config);

        let turn = &held["session"]["audio"]["input"]["turn_detection"];
        assert_eq!(turn["create_response"], false);
        assert_eq!(turn["interrupt_response"], true);
        assert_eq!(turn["silence_duration_ms"], 500);
        let mut normal_turn = normal["session"]["audio"]["input"]["turn_detection"].clone();
        normal_turn["create_response"] = json!(false);
        assert_eq!(*turn, normal_turn);
    }

    #[test]
    fn a_turn_detection_update_sets_only_the_turn_detection_or_turns_it_off() {
        let on: Value =
            serde_json::from_str(&turn_detection_update(Some(&TurnDetection::default())))
                .expect("JSON");
        let off: Value = serde_json::from_str(&turn_detection_update(None)).expect("JSON");

        assert_eq!(
            on,
            json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                   "silence_duration_ms": 500, "create_response": true,
                                   "interrupt_response": true}}}}})
        );
        assert_eq!(
            off,
            json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": null}}}})
        );
    }

    fn end_call_json() -> Value {
        serde_json::to_value(end_call_tool(false)).expect("a tool serializes")
    }

    #[test]
    fn server_vad_session_update_has_exactly_the_ga_shape() {
        let config = server_vad_config();

        let value = update_json(&config);

        assert_eq!(
            value,
            json!({"type": "session.update", "session": {
                "type": "realtime", "model": "gpt-realtime-2.1", "output_modalities": ["audio"],
                "instructions": "You are a friendly phone assistant.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "noise_reduction": {"type": "near_field"},
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                           "silence_duration_ms": 500, "create_response": true,
                                           "interrupt_response": true},
                    },
                    "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
                },
                "tools": [end_call_json()],
                "tool_choice": "auto",
                "truncation": {"type": "retention_ratio", "retention_ratio": 0.8,
                               "token_limits": {"post_instructions": 16000}},
            }})
        );
    }

    #[test]
    fn server_vad_with_idle_timeout_sends_idle_timeout_ms() {
        let config = SessionConfig {
            turn_detection: TurnDetection::ServerVad {
                threshold: 0.6,
                prefix_padding_ms: 200,
                silence_duration_ms: 700,
                idle_timeout_ms: Some(8000),
            },
            ..server_vad_config()
        };

        let value = update_json(&config);

        assert_eq!(
            value["session"]["audio"]["input"]["turn_detection"],
            json!({"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200, "silence_duration_ms": 700,
                   "idle_timeout_ms": 8000, "create_response": true, "interrupt_response": true})
        );
    }

    #[test]
    fn semantic_vad_session_update_has_eagerness_and_no_server_vad_keys() {
        let config = SessionConfig {
            turn_detection: TurnDetection::SemanticVad {
                eagerness: Eagerness::Low,
            },
            ..server_vad_config()
        };

        let value = update_json(&config);

        assert_eq!(
            value["session"]["audio"]["input"]["turn_detection"],
            json!({"type": "semantic_vad", "eagerness": "low", "create_response": true, "interrupt_response": true})
        );
    }

    #[test]
    fn disabled_noise_reduction_and_transcription_are_sent_as_null() {
        let config = SessionConfig {
            noise_reduction: None,
            transcription_model: None,
            ..server_vad_config()
        };

        let value = update_json(&config);

        let input = &value["session"]["audio"]["input"];
        assert_eq!(input.get("noise_reduction"), Some(&Value::Null));
        assert_eq!(input.get("transcription"), Some(&Value::Null));
    }

    #[test]
    fn far_field_noise_reduction_is_sent_by_type() {
        let config = SessionConfig {
            noise_reduction: Some(NoiseReduction::FarField),
            ..server_vad_config()
        };

        let value = update_json(&config);

        assert_eq!(
            value["session"]["audio"]["input"]["noise_reduction"],
            json!({"type": "far_field"})
        );
    }

    #[test]
    fn session_update_has_no_temperature_and_no_beta_keys() {
        let text = server_vad_config().to_json();

        for beta_key in [
            "\"temperature\"",
            "\"modalities\"",
            "\"input_audio_format\"",
            "\"output_audio_format\"",
            "\"input_audio_transcription\"",
            "\"input_audio_noise_reduction\"",
        ] {
            assert!(
                !text.contains(beta_key),
                "{beta_key} must not be sent: {text}"
            );
        }
    }

    #[test]
    fn no_tools_are_sent_as_an_empty_list() {
        let config = SessionConfig {
            tools: Vec::new(),
            ..server_vad_config()
        };

        let value = update_json(&config);

        assert_eq!(value["session"]["tools"], json!([]));
    }

    #[test]
    fn session_update_serializes_with_the_session_update_type_and_a_session_object() {
        let config = server_vad_config();

        let value: serde_json::Value = serde_json::from_str(&config.to_json()).expect("JSON");

        assert_eq!(value["type"], "session.update");
        assert_eq!(value["session"]["type"], "realtime");
        assert_eq!(value.as_object().map(|object| object.len()), Some(2));
    }

    #[test]
    fn end_call_tool_without_outcome_takes_an_empty_object() {
        let tool = end_call_tool(false);

        let value = serde_json::to_value(&tool).expect("a tool serializes");

        assert_eq!(value["type"], "function");
        assert_eq!(value["name"], "end_call");
        assert_eq!(
            value["parameters"],
            json!({"type": "object", "properties": {}})
        );
        let description = value["description"]
            .as_str()
            .expect("description is a string");
        assert!(description.contains("goodbye"), "{description}");
    }

    #[test]
    fn end_call_tool_with_outcome_requires_a_string_outcome() {
        let tool = end_call_tool(true);

        let value = serde_json::to_value(&tool).expect("a tool serializes");

        assert_eq!(value["name"], "end_call");
        assert_eq!(
            value["parameters"]["properties"]["outcome"]["type"],
            "string"
        );
        assert_eq!(value["parameters"]["required"], json!(["outcome"]));
        assert_eq!(
            value.as_object().map(|object| {
                // Key order depends on serde_json's `preserve_order` feature; compare the set of keys.
                let mut keys = object.keys().cloned().collect::<Vec<_>>();
                keys.sort();
                keys
            }),
            Some(vec![
                "description".into(),
                "name".into(),
                "parameters".into(),
                "type".into()
            ])
        );
    }

    #[test]
    fn config_strings_parse_to_their_values() {
        assert_eq!("server_vad".parse(), Ok(VadKind::ServerVad));
        assert_eq!("semantic_vad".parse(), Ok(VadKind::SemanticVad));
        assert_eq!("near_field".parse(), Ok(NoiseReduction::NearField));
        assert_eq!("far_field".parse(), Ok(NoiseReduction::FarField));
        assert_eq!("low".parse(), Ok(Eagerness::Low));
        assert_eq!("medium".parse(), Ok(Eagerness::Medium));
        assert_eq!("high".parse(), Ok(Eagerness::High));
        assert_eq!("auto".parse(), Ok(Eagerness::Auto));
    }

    #[test]
    fn config_strings_parse_ignoring_case_and_surrounding_spaces() {
        assert_eq!(" Semantic_VAD ".parse(), Ok(VadKind::SemanticVad));
        assert_eq!("HIGH".parse(), Ok(Eagerness::High));
    }

    #[test]
    fn unknown_eagerness_error_lists_the_valid_values() {
        let error = "eager".parse::<Eagerness>().expect_err("not an eagerness");

        assert_eq!(
            error.to_string(),
            "unknown eagerness \"eager\", expected one of: low, medium, high, auto"
        );
    }

    #[test]
    fn unknown_noise_reduction_error_lists_the_valid_values() {
        let error = "nearfield"
            .parse::<NoiseReduction>()
            .expect_err("not a noise reduction");

        assert_eq!(
            error.to_string(),
            "unknown noise reduction \"nearfield\", expected one of: near_field, far_field"
        );
    }

    #[test]
    fn unknown_vad_kind_error_lists_the_valid_values() {
        let error = "vad".parse::<VadKind>().expect_err("not a VAD kind");

        assert_eq!(
            error.to_string(),
            "unknown turn detection \"vad\", expected one of: server_vad, semantic_vad"
        );
    }

    #[test]
    fn serde_reads_and_writes_the_same_strings_as_from_str_and_display() {
        for eagerness in Eagerness::ALL {
            let written = serde_json::to_value(eagerness).expect("serializes");
            assert_eq!(written, json!(eagerness.to_string()));
            assert_eq!(
                serde_json::from_value::<Eagerness>(written).ok(),
                Some(eagerness)
            );
        }
        for noise_reduction in NoiseReduction::ALL {
            let written = serde_json::to_value(noise_reduction).expect("serializes");
            assert_eq!(written, json!(noise_reduction.to_string()));
            assert_eq!(
                serde_json::from_value::<NoiseReduction>(written).ok(),
                Some(noise_reduction)
            );
        }
        for kind in VadKind::ALL {
            let written = serde_json::to_value(kind).expect("serializes");
            assert_eq!(written, json!(kind.to_string()));
            assert_eq!(serde_json::from_value::<VadKind>(written).ok(), Some(kind));
        }
    }

    #[test]
    fn serde_rejects_an_unknown_string_with_the_valid_values() {
        let error =
            serde_json::from_value::<Eagerness>(json!("eager")).expect_err("not an eagerness");

        assert!(
            error
                .to_string()
                .contains("expected one of: low, medium, high, auto"),
            "{error}"
        );
    }

    #[test]
    fn turn_detection_reports_its_kind() {
        assert_eq!(TurnDetection::default().kind(), VadKind::ServerVad);
        assert_eq!(
            TurnDetection::SemanticVad {
                eagerness: Eagerness::Auto
            }
            .kind(),
            VadKind::SemanticVad
        );
    }

    proptest! {
        #[test]
        fn arbitrary_config_strings_parse_or_fail_without_panicking(text in any::<String>()) {
            let parsed = text.parse::<Eagerness>();

            match parsed {
                Ok(eagerness) => prop_assert!(eagerness.as_str().eq_ignore_ascii_case(text.trim())),
                Err(error) => prop_assert_eq!(error.value, text),
            }
        }

        #[test]
        fn instructions_round_trip_through_the_session_update(instructions in any::<String>()) {
            let config = SessionConfig { instructions: instructions.clone(), ..server_vad_config() };

            let value = update_json(&config);

            prop_assert_eq!(&value["session"]["instructions"], &Value::from(instructions));
        }
    }
}
