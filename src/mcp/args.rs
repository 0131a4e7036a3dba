//! The arguments of the MCP tools and of the `make-restaurant-reservation` prompt.
//!
//! Each struct is `Deserialize + JsonSchema`: rmcp turns it into the tool's `inputSchema` (or the prompt's argument
//! list), and the `///` comments on the fields become the schema's `description`s, which is what the model reads
//! when it fills the arguments in. Unknown fields are ignored, so a model that adds one is not refused.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::calls::service::{MAX_LIST, MAX_WAIT_S, PlaceCall};
use crate::twilio::amd::MachinePolicy;

/// How many calls `list_calls` returns when no `limit` is given.
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// Arguments of `place_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct PlaceCallArgs {
    /// The phone number to call, in E.164 form: a plus sign, the country code, then the number, digits only, no
    /// spaces or punctuation (e.g. +14155550100 for a US number, +442071838750 for a London one).
    pub to: String,
    /// What the voice model should do on this call, written to the model that will speak: who it is calling and
    /// why, the goal, every fact it may need (names, dates, times, numbers), what to accept or refuse, what to do
    /// if the goal cannot be met, and when to end the call. The callee never hears these words as such.
    pub instructions: String,
    /// The first sentence the voice model says as soon as the callee answers (e.g. "Hello, I'm calling to book a
    /// table."). Without it the model waits for the callee to speak first.
    #[serde(default)]
    pub greeting: Option<String>,
    /// The OpenAI Realtime voice to speak with (alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin,
    /// cedar). Default: the server's configured voice.
    #[serde(default)]
    pub voice: Option<String>,
    /// The language to speak, as a language tag (en, fr-FR, es-MX, ...), when it is not the instructions' own.
    #[serde(default)]
    pub language: Option<String>,
    /// The longest the call may last, in seconds. Default and upper bound: the server's maximum call duration.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_duration_s: Option<u64>,
    /// Any JSON object to store with the call and return untouched (e.g. your own reference for the task).
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// What to do if an answering machine or voicemail picks up: hang_up, leave_message (after the beep) or
    /// ignore (no detection: talk to whoever answers). Default: the server's setting. get_call then shows
    /// answered_by, voicemail_left and voicemail_transcript.
    #[serde(default)]
    pub answering_machine: Option<MachinePolicy>,
    /// For leave_message: the message to leave after the beep, e.g. "This is Sam calling for Rivera about a table
    /// for four tonight; please call back on +14155550100." The voice model says it in its own voice. Without it
    /// the model composes a short message from the instructions.
    #[serde(default)]
    pub voicemail_message: Option<String>,
    /// Keys to press as soon as the call is answered, when you know the extension in advance: 0-9, * and #; w waits
    /// half a second (e.g. "ww123"). For menus you do not know, the voice model presses keys itself.
    #[serde(default)]
    pub send_digits: Option<String>,
    /// Record the call (both sides) at Twilio: true or false. Default: the server's setting. Recording may need
    /// the callee's consent where you call; the callee hears the server's recording notice first. get_call then
    /// shows the recordings with their URL and duration.
    #[serde(default)]
    pub record: Option<bool>,
    /// An https URL to receive this call's events as signed webhooks (Standard Webhooks: call.status_changed,
    /// call.answered_by, call.completed with the whole record), so you need not poll get_call. Default: the
    /// server's webhook URL, if any.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Try again when the line is busy, nobody answers or the call fails: {"max_attempts": 3, "backoff_s": 300,
    /// "retry_on": ["busy", "no-answer"]} (every field optional; max_attempts counts the first attempt, at most 10;
    /// backoff_s 1 to 86400). The call is then `scheduled`, placed at once by the scheduler, and `retry-pending`
    /// between attempts; get_call shows next_attempt_at and each attempt's CallSid and result.
    #[serde(default)]
    pub retry: Option<crate::calls::schedule::RetryPlan>,
    /// The earliest the call may start, RFC 3339 with an offset (e.g. 2026-01-15T09:30:00+01:00), at most 30 days
    /// ahead. The call stays `scheduled` until then.
    #[serde(default)]
    pub not_before: Option<String>,
    /// Local hours in which the call (and each retry) may start, with an IANA time zone, e.g. "09:00-18:00
    /// Europe/Berlin" (the callee's business hours). Outside them the call waits for the next opening.
    #[serde(default)]
    pub call_window: Option<String>,
    /// A JSON Schema object the call's outcome must match (at most 16 KiB), e.g. {"type":"object","properties":
    /// {"booked":{"type":"boolean"},"time":{"type":"string"}},"required":["booked"]}. The voice model then ends the
    /// call with an outcome of that shape (checked; it is told the errors and tries again), and get_call returns it
    /// as structured_outcome. Without it the outcome is one or two sentences of text.
    #[serde(default)]
    pub outcome_schema: Option<serde_json::Map<String, serde_json::Value>>,
    /// Remote MCP servers the voice may use during the call (to check a calendar, a CRM, ...), by the labels the
    /// server's operator configured. Default: the server's default ones; [] for none. Others are refused.
    #[serde(default)]
    pub mcp_servers: Option<Vec<String>>,
    /// "relay" to hold the conversation yourself: the voice then speaks only what you pass to the say tool, word
    /// for word, and never answers on its own; say returns what the callee heard and replied. The instructions are
    /// then only context for tone and pronunciation. Default "autonomous": the voice model holds the conversation.
    #[serde(default)]
    pub mode: Option<crate::calls::say::CallMode>,
    /// The most this call may cost, in US dollars (estimated from OpenAI's token usage and Twilio's minutes). At it
    /// the voice model wraps up and says goodbye, and the call ends with end_reason cost_cap. The server's own cap
    /// still applies when lower. get_call shows the call's cost.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// The OpenAI voice API for this call: realtime (the Realtime API, billed per audio token, full tool set) or
    /// live (GPT-Live: full duplex, handles interruptions itself, billed about $0.05 per active minute). Default:
    /// the server's setting.
    #[serde(default)]
    pub engine: Option<crate::config::Engine>,
}

impl From<PlaceCallArgs> for PlaceCall {
    fn from(args: PlaceCallArgs) -> Self {
        PlaceCall {
            to: args.to,
            instructions: args.instructions,
            greeting: args.greeting,
            voice: args.voice,
            language: args.language,
            max_duration_s: args.max_duration_s,
            metadata: args.metadata.map(serde_json::Value::Object),
            answering_machine: args.answering_machine,
            voicemail_message: args.voicemail_message,
            send_digits: args.send_digits,
            record: args.record,
            webhook_url: args.webhook_url,
            retry: args.retry,
            not_before: args.not_before,
            call_window: args.call_window,
            outcome_schema: args.outcome_schema.map(serde_json::Value::Object),
            mcp_servers: args.mcp_servers,
            mode: args.mode,
            max_cost_usd: args.max_cost_usd,
            engine: args.engine,
        }
    }
}

/// Arguments of `get_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct GetCallArgs {
    /// The call's id, as `place_call` or `list_calls` returned it (`call_...`).
    pub call_id: String,
    /// Wait up to this many seconds (at most 120) for the call's status to change or for it to end, then return.
    /// Omit or 0 to return at once. Call get_call again with wait_s until the status is completed, busy,
    /// no-answer, failed or canceled.
    #[serde(default)]
    #[schemars(range(max = 120))]
    pub wait_s: Option<u64>,
}

impl GetCallArgs {
    /// `wait_s`, capped at [`MAX_WAIT_S`]: a longer wait is served as the longest one rather than refused.
    pub fn capped_wait_s(&self) -> Option<u64> {
        self.wait_s.map(|wait_s| wait_s.min(MAX_WAIT_S))
    }
}

/// Arguments of `list_calls`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct ListCallsArgs {
    /// How many calls to return, newest first (1 to 200; default 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<usize>,
}

impl ListCallsArgs {
    /// The number of calls to ask for: `limit` within 1..=[`MAX_LIST`], [`DEFAULT_LIST_LIMIT`] when not given.
    pub fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIST_LIMIT).clamp(1, MAX_LIST)
    }
}

/// Arguments of `hang_up`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct HangUpArgs {
    /// The call's id (`call_...`).
    pub call_id: String,
}

/// Arguments of `instruct_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct InstructCallArgs {
    /// The call's id (`call_...`); the call must be in progress.
    pub call_id: String,
    /// The instruction to add to the live conversation, written to the voice model (e.g. "Also ask whether they
    /// have a window table.").
    pub text: String,
}

/// Arguments of `send_dtmf`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct SendDtmfArgs {
    /// The call's id (`call_...`); the call must be in progress.
    pub call_id: String,
    /// Keys to press, in order: 0-9, * and #; w waits half a second. At most 32 characters (e.g. "1", "w2w#").
    pub digits: String,
}

/// Arguments of `transfer_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct TransferCallArgs {
    /// The call's id (`call_...`); the call must be in progress.
    pub call_id: String,
    /// The person's phone number in E.164 (e.g. "+14155550100"); it must be an allowed outbound destination.
    pub to: String,
    /// One or two sentences the person hears before being connected: who is calling and what they need.
    pub summary: String,
}

/// Arguments of the `make-restaurant-reservation` prompt. MCP prompt arguments are strings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct ReservationArgs {
    /// The restaurant's phone number, ideally in E.164 form (+14155550100).
    pub restaurant_number: String,
    /// How many people the table is for (e.g. 4).
    pub party_size: String,
    /// The day of the reservation (e.g. 2025-06-14, or "this Saturday").
    pub date: String,
    /// The time of the reservation (e.g. 19:30).
    pub time: String,
    /// The name to book the table under.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema_of<T: JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).expect("a schema serializes")
    }

    #[test]
    fn place_call_requires_to_and_instructions_only() {
        let schema = schema_of::<PlaceCallArgs>();

        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .expect("a required list")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        required.sort_unstable();

        assert_eq!(required, ["instructions", "to"]);
    }

    #[test]
    fn the_to_field_is_described_as_e164_with_an_example() {
        let schema = schema_of::<PlaceCallArgs>();

        let description = schema["properties"]["to"]["description"]
            .as_str()
            .expect("to has a description");

        assert!(description.contains("E.164"), "{description}");
        assert!(description.contains("+14155550100"), "{description}");
    }

    #[test]
    fn a_webhook_url_argument_reaches_the_services_request() {
        let args: PlaceCallArgs = serde_json::from_value(json!({
            "to": "+14155550100",
            "instructions": "Book a table",
            "webhook_url": "https://hooks.example.com/cb",
        }))
        .expect("valid arguments");

        let request = PlaceCall::from(args);

        assert_eq!(
            request.webhook_url.as_deref(),
            Some("https://hooks.example.com/cb")
        );
    }

    #[test]
    fn place_call_arguments_become_the_services_request() {
        let args: PlaceCallArgs = serde_json::from_value(json!({
            "to": "+14155550100",
            "instructions": "Book a table",
            "greeting": "Hello!",
            "max_duration_s": 300,
            "metadata": {"ticket": 7},
            "record": true,
            "something_else": true
        }))
        .expect("unknown fields are ignored");

        let request = PlaceCall::from(args);
        assert_eq!(request.record, Some(true));

        assert_eq!(request.to, "+14155550100");
        assert_eq!(request.instructions, "Book a table");
        assert_eq!(request.greeting.as_deref(), Some("Hello!"));
        assert_eq!(request.voice, None);
        assert_eq!(request.max_duration_s, Some(300));
        assert_eq!(request.metadata, Some(json!({"ticket": 7})));
    }

    #[test]
    fn metadata_must_be_an_object() {
        let parsed = serde_json::from_value::<PlaceCallArgs>(json!({
            "to": "+14155550100",
            "instructions": "Book a table",
            "metadata": [1, 2]
        }));

        assert!(parsed.is_err());
    }

    #[test]
    fn a_wait_over_the_maximum_is_capped_and_no_wait_stays_none() {
        let long = GetCallArgs {
            call_id: "call_1".into(),
            wait_s: Some(600),
        };
        let none = GetCallArgs {
            call_id: "call_1".into(),
            wait_s: None,
        };

        assert_eq!(long.capped_wait_s(), Some(MAX_WAIT_S));
        assert_eq!(none.capped_wait_s(), None);
    }

    #[test]
    fn the_wait_schema_says_at_most_120_seconds() {
        let schema = schema_of::<GetCallArgs>();

        assert_eq!(schema["properties"]["wait_s"]["maximum"], json!(120));
        assert_eq!(schema["required"], json!(["call_id"]));
    }

    #[test]
    fn the_list_limit_defaults_to_20_and_stays_within_1_to_200() {
        let limit = |limit| ListCallsArgs { limit }.effective_limit();

        assert_eq!(limit(None), DEFAULT_LIST_LIMIT);
        assert_eq!(limit(Some(0)), 1);
        assert_eq!(limit(Some(5)), 5);
        assert_eq!(limit(Some(10_000)), MAX_LIST);
    }

    #[test]
    fn every_reservation_argument_is_a_required_string() {
        let schema = schema_of::<ReservationArgs>();

        for name in ["restaurant_number", "party_size", "date", "time", "name"] {
            assert_eq!(schema["properties"][name]["type"], "string", "{name}");
            assert!(
                schema["required"]
                    .as_array()
                    .expect("a required list")
                    .contains(&json!(name)),
                "{name} is required"
            );
        }
    }
}

/// Arguments of `say` (relay-mode calls).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct SayArgs {
    /// The call's id (`call_...`); it must have been placed with mode "relay" and be in progress (a call answered
    /// a moment ago is waited for).
    pub call_id: String,
    /// The exact words for the voice to say to the callee, as you would say them (at most 4096 bytes).
    pub text: String,
    /// Wait, once the words were spoken, for the callee's answer and return it as reply. Default false: return
    /// once the words were spoken.
    #[serde(default)]
    pub wait_for_reply: bool,
    /// How long to wait for the answer, in seconds from the end of the words (default 30, at most 300).
    #[serde(default)]
    #[schemars(range(max = 300))]
    pub timeout_s: Option<u64>,
    /// Hang up once the words have played: your final line (e.g. "Thank you, goodbye!"). If the callee talks over
    /// it the call stays up and the result says interrupted.
    #[serde(default)]
    pub hang_up_after: bool,
}

impl From<SayArgs> for crate::calls::service::SayCall {
    fn from(args: SayArgs) -> Self {
        crate::calls::service::SayCall {
            text: args.text,
            wait_for_reply: args.wait_for_reply,
            timeout_s: args.timeout_s,
            hang_up_after: args.hang_up_after,
        }
    }
}
