//! The key catalogue: every setting's flat key, the well-known environment name that also sets it, what it does,
//! its default when that is more than a number, and the raw shape the `config` crate delivers it in.
//!
//! `check-config`, the README's settings table, `.env.example` and `deploy/callbridge.toml` follow [`SETTINGS`]
//! (tests/deploy/test_callbridge_toml.py reads it from this file).

use serde::Deserialize;

/// The default OpenAI Realtime WebSocket endpoint (GA).
pub const DEFAULT_OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
/// The default Twilio REST API base URL.
pub const DEFAULT_TWILIO_API_BASE_URL: &str = "https://api.twilio.com";
/// The default GPT-Live WebSocket URL (<https://developers.openai.com/api/docs/guides/voice-websockets?api=live>).
pub const DEFAULT_OPENAI_LIVE_URL: &str = "wss://api.openai.com/v1/live/sessions";
/// The default GPT-Live model (<https://developers.openai.com/api/docs/models/gpt-live-1>).
pub const DEFAULT_LIVE_MODEL: &str = "gpt-live-1";
/// The default Responses model GPT-Live delegates tool use to: the cost-sensitive choice the delegation guide names
/// (<https://developers.openai.com/api/docs/guides/live-delegation>).
pub const DEFAULT_LIVE_BACKEND_MODEL: &str = "gpt-5.6-luna";

/// The default realtime model.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-realtime-2.1";
/// The default input transcription model: `gpt-transcribe`, OpenAI's model for the committed turns of a Realtime
/// session (<https://developers.openai.com/api/docs/models/gpt-transcribe>); `gpt-4o-mini-transcribe` shuts down on
/// 2027-02-26 (see [`crate::realtime::models`]).
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-transcribe";
/// The default system message: what the assistant is told before every call.
pub const DEFAULT_SYSTEM_MESSAGE: &str = "You are a helpful, friendly voice assistant on a phone call. Keep answers \
short and conversational: one to three sentences. Speak in the caller's language. When the conversation is over and \
you have said goodbye, call the end_call tool.";
/// The default first words when the assistant speaks first.
pub const DEFAULT_GREETING: &str = "Hello! How can I help you today?";

/// Every setting: its flat key, the well-known environment name that also sets it (if any), and what it does.
/// `check-config`, the README's settings table and `.env.example` follow this list.
pub const SETTINGS: &[(&str, Option<&str>, &str)] = &[
    ("host", None, "address to listen on"),
    ("port", Some("PORT"), "port to listen on"),
    (
        "public_url",
        Some("PUBLIC_URL"),
        "public https base URL Twilio reaches (the tunnel URL)",
    ),
    (
        "stream_public_url",
        None,
        "base URL of this instance's media streams (TwiML <Stream url>), when a fleet's instances can be addressed; unset = public_url",
    ),
    (
        "trust_forwarded_headers",
        None,
        "derive the public URL from X-Forwarded-Proto/-Host when PUBLIC_URL is not set (only behind your own proxy)",
    ),
    (
        "data_dir",
        None,
        "where the call records database (callbridge.db) lives",
    ),
    (
        "database_url",
        None,
        "postgres://user:password@host:5432/dbname (secret): call records in PostgreSQL, shared by instances; unset: SQLite in data_dir",
    ),
    (
        "api_key",
        None,
        "bearer key for /api and /mcp (secret); unset disables them",
    ),
    (
        "ring_timeout_s",
        None,
        "how long an outbound call rings before no-answer, seconds",
    ),
    (
        "answering_machine",
        None,
        "outbound calls when a machine answers: hang_up, leave_message or ignore (no detection)",
    ),
    (
        "amd_timeout_s",
        None,
        "Twilio MachineDetectionTimeout: seconds before the verdict is unknown (3 to 59)",
    ),
    (
        "amd_verdict_wait_s",
        None,
        "how long the assistant holds its tongue waiting for the AMD verdict, seconds",
    ),
    (
        "amd_speech_threshold_ms",
        None,
        "Twilio MachineDetectionSpeechThreshold, ms (1000 to 6000); unset: Twilio's default",
    ),
    (
        "amd_speech_end_threshold_ms",
        None,
        "Twilio MachineDetectionSpeechEndThreshold, ms (500 to 5000); unset: Twilio's default",
    ),
    (
        "amd_silence_timeout_ms",
        None,
        "Twilio MachineDetectionSilenceTimeout, ms (2000 to 10000); unset: Twilio's default",
    ),
    (
        "allowed_callers",
        None,
        "comma-separated E.164 numbers allowed to call in; empty allows everyone",
    ),
    (
        "outbound_allowed_prefixes",
        None,
        "comma-separated E.164 prefixes outbound calls may go to (e.g. +1,+44); empty allows none",
    ),
    (
        "outbound_allowed_numbers",
        None,
        "comma-separated exact E.164 numbers outbound calls may go to (also premium-rate ones)",
    ),
    (
        "daily_outbound_budget",
        None,
        "most outbound calls placed per UTC day",
    ),
    (
        "max_concurrent_calls",
        None,
        "most calls in progress at once",
    ),
    (
        "webhook_rate_limit_per_min",
        None,
        "requests per minute per client IP on the Twilio webhooks and media-stream upgrades",
    ),
    (
        "api_rate_limit_per_min",
        None,
        "requests per minute per key on /api and /mcp",
    ),
    (
        "stream_idle_timeout_s",
        None,
        "close a media stream that sends nothing for this long, seconds",
    ),
    (
        "max_body_bytes",
        None,
        "largest HTTP request body accepted, bytes",
    ),
    (
        "body_timeout_s",
        None,
        "a request body must arrive within this long of its head (else 408), seconds",
    ),
    (
        "drain_timeout_s",
        None,
        "on shutdown, how long calls in progress may go on before they are ended, seconds",
    ),
    ("log_format", Some("LOG_FORMAT"), "text or json"),
    (
        "openai_api_key",
        Some("OPENAI_API_KEY"),
        "OpenAI API key (secret)",
    ),
    ("openai_model", Some("OPENAI_MODEL"), "realtime model"),
    (
        "openai_realtime_url",
        Some("OPENAI_REALTIME_URL"),
        "Realtime WebSocket URL",
    ),
    (
        "engine",
        None,
        "the OpenAI voice API calls use unless place_call names one: realtime or live",
    ),
    ("live_model", None, "GPT-Live model (engine live)"),
    ("live_voice", None, "GPT-Live voice (engine live)"),
    (
        "live_backend_model",
        None,
        "Responses model GPT-Live delegates the call's tools to (engine live)",
    ),
    ("live_url", None, "GPT-Live WebSocket URL"),
    (
        "twilio_account_sid",
        Some("TWILIO_ACCOUNT_SID"),
        "Twilio Account SID (AC...), for REST hang-up",
    ),
    (
        "twilio_auth_token",
        Some("TWILIO_AUTH_TOKEN"),
        "Twilio auth token (secret): webhook signatures",
    ),
    (
        "twilio_signing_keys",
        None,
        "Twilio SharedKey secrets (secret) by id, key_id=secret: webhooks signed per X-Twilio-Webhooks-Signature-Settings",
    ),
    (
        "twilio_phone_number",
        Some("TWILIO_PHONE_NUMBER"),
        "your Twilio number, E.164",
    ),
    (
        "twilio_api_base_url",
        Some("TWILIO_API_BASE_URL"),
        "Twilio REST API base URL",
    ),
    (
        "system_message",
        Some("SYSTEM_MESSAGE"),
        "instructions for the assistant",
    ),
    ("voice", Some("VOICE"), "assistant voice"),
    ("speed", None, "speaking speed, 0.25 to 1.5"),
    (
        "assistant_speaks_first",
        None,
        "true: the assistant greets the caller",
    ),
    ("greeting", None, "the assistant's first words"),
    ("turn_detection", None, "server_vad or semantic_vad"),
    ("vad_threshold", None, "server VAD threshold, 0.0 to 1.0"),
    (
        "vad_prefix_padding_ms",
        None,
        "server VAD audio kept before speech, ms",
    ),
    (
        "vad_silence_duration_ms",
        None,
        "server VAD silence that ends a turn, ms",
    ),
    (
        "vad_idle_timeout_ms",
        None,
        "server VAD idle timeout, ms (empty: none)",
    ),
    (
        "vad_eagerness",
        None,
        "semantic VAD eagerness: low, medium, high, auto",
    ),
    ("noise_reduction", None, "near_field, far_field or none"),
    (
        "transcription_model",
        None,
        "input transcription model, or none",
    ),
    (
        "goodbye_phrases",
        None,
        "comma-separated phrases that end the call (fallback to end_call)",
    ),
    (
        "max_call_duration_s",
        None,
        "hard maximum call duration, seconds",
    ),
    (
        "stream_token_ttl_s",
        None,
        "lifetime of a media-stream token, seconds",
    ),
    (
        "farewell_grace_ms",
        None,
        "wait after the farewell's audio before hanging up anyway, ms",
    ),
    (
        "max_frame_bytes",
        None,
        "largest media-stream frame accepted; larger ones are skipped",
    ),
    (
        "peer_stall_timeout_ms",
        None,
        "end a call whose Twilio or OpenAI socket takes nothing for this long, ms",
    ),
    (
        "max_call_cost_usd",
        None,
        "estimated cost at which a call is wrapped up (the assistant says goodbye), USD; empty: no cap",
    ),
    (
        "daily_cost_budget_usd",
        None,
        "estimated spend per UTC day after which new calls are refused, USD; empty: no budget",
    ),
    (
        "model_prices",
        None,
        "price overrides, comma-separated model:key=value ... (text_in, text_cached_in, text_out, audio_in, \
         audio_cached_in, audio_out per 1M tokens; per_min per minute; USD)",
    ),
    (
        "twilio_inbound_price_per_min_usd",
        None,
        "Twilio's price per minute of an inbound call, USD (default: US local number)",
    ),
    (
        "twilio_outbound_price_per_min_usd",
        None,
        "Twilio's price per minute of an outbound call, USD (default: to a US number)",
    ),
    (
        "transfer_targets",
        None,
        "comma-separated name=+E164 people the model may transfer a call to (e.g. front desk=+14155550100); empty \
         offers no transfer tool",
    ),
    (
        "recording",
        None,
        "record calls at Twilio (both channels): off or on; place_call's record overrides it per call",
    ),
    (
        "recording_inbound",
        None,
        "record inbound calls: off or on; unset follows CALLBRIDGE_RECORDING",
    ),
    (
        "recording_consent_message",
        None,
        "what a recorded call hears first (TwiML <Say>); none for nothing",
    ),
    (
        "recording_retention_days",
        None,
        "delete recordings at Twilio this many days after they completed; unset or 0 keeps them",
    ),
    (
        "recording_retention_s",
        None,
        "the retention in seconds (tests); wins over recording_retention_days",
    ),
    (
        "webhook_url",
        None,
        "where every call's signed webhooks go unless the call names its own (https, or loopback http)",
    ),
    (
        "webhook_secret",
        None,
        "Standard Webhooks signing secret (secret), whsec_ + base64 of 24-64 random bytes",
    ),
    (
        "webhook_retry_base_ms",
        None,
        "wait before a failed webhook's first retry, ms; each next one waits 5 times longer (up to 6 h)",
    ),
    (
        "webhook_max_attempts",
        None,
        "attempts per webhook, the first included, before it is failed (1 to 20)",
    ),
    (
        "voice_mcp_servers",
        None,
        "remote MCP servers the voice may use: a JSON array of {label, url, allowed_tools, headers (secret), \
         require_approval, default} (or [[voice_mcp_servers]] tables in callbridge.toml); calls name them by label",
    ),
    (
        "realtime_session_limit_s",
        None,
        "open a fresh Realtime session and switch the call over to it after this long, seconds (OpenAI ends a \
         session at 60 minutes)",
    ),
    (
        "realtime_reconnect_attempts",
        None,
        "times a call reopens a Realtime session OpenAI closed unexpectedly before it ends; 0 ends the call at once",
    ),
    (
        "truncation",
        None,
        "what OpenAI drops when the conversation outgrows its limit: retention_ratio, auto or disabled",
    ),
    (
        "truncation_retention_ratio",
        None,
        "retention_ratio: fraction of the conversation kept when truncating, 0.0 to 1.0",
    ),
    (
        "truncation_max_tokens",
        None,
        "retention_ratio: conversation tokens (after the instructions) that trigger a truncation; empty: the \
         model's limit",
    ),
    (
        "redis_url",
        None,
        "Redis shared by several instances (secret: it may hold a password), redis://host:port; unset: one \
         instance, state in process",
    ),
    (
        "redis_key_prefix",
        None,
        "prefix of every Redis key callbridge writes (several fleets can share one Redis)",
    ),
    (
        "instance_id",
        None,
        "this instance's name in the fleet ([A-Za-z0-9._-], at most 64); default: hostname-8 random hex digits",
    ),
    (
        "instance_lease_s",
        None,
        "an instance not heard from for this long is taken for dead and its calls marked failed, seconds (3 to 3600)",
    ),
];

/// The default `goodbye_phrases`: farewell phrases in English, Spanish, French, German, Italian, Portuguese and Dutch. Chosen for precision: words that
/// are greetings as well as farewells in common use ("salut", Dutch "dag") or everyday phrases ("take care") are left
/// out. "ciao", "chao" and "chau" are in, but also greet: see `relay::goodbye`'s greeting farewells.
pub const DEFAULT_GOODBYE_PHRASES: &[&str] = &[
    // English
    "goodbye",
    "good bye",
    "bye",
    "bye bye",
    "byebye",
    "farewell",
    "have a nice day",
    "have a good day",
    "see you later",
    "talk to you later",
    // Spanish
    "adiós",
    "hasta luego",
    "hasta pronto",
    "hasta la vista",
    "nos vemos",
    "chao",
    "chau",
    "que tenga un buen día",
    "que tengas un buen día",
    // French
    "au revoir",
    "à bientôt",
    "à plus tard",
    "bonne journée",
    "bonne soirée",
    "adieu",
    // German
    "auf wiedersehen",
    "auf wiederhören",
    "tschüss",
    "tschüs",
    "tschau",
    "bis bald",
    "bis später",
    "schönen tag noch",
    // Italian
    "arrivederci",
    "arrivederla",
    "ciao",
    "a presto",
    "buona giornata",
    "buona serata",
    // Portuguese
    "tchau",
    "adeus",
    "até logo",
    "até mais",
    "até breve",
    "tenha um bom dia",
    // Dutch
    "tot ziens",
    "tot straks",
    "tot later",
    "doei",
    "fijne dag",
];

/// Raw values as the `config` crate delivers them (all optional strings or numbers).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Raw {
    pub(super) host: Option<String>,
    pub(super) port: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) stream_public_url: Option<String>,
    pub(super) trust_forwarded_headers: Option<String>,
    pub(super) drain_timeout_s: Option<String>,
    pub(super) data_dir: Option<String>,
    pub(super) database_url: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) ring_timeout_s: Option<String>,
    pub(super) answering_machine: Option<String>,
    pub(super) amd_timeout_s: Option<String>,
    pub(super) amd_verdict_wait_s: Option<String>,
    pub(super) amd_speech_threshold_ms: Option<String>,
    pub(super) amd_speech_end_threshold_ms: Option<String>,
    pub(super) amd_silence_timeout_ms: Option<String>,
    pub(super) allowed_callers: Option<ListOrCsv>,
    pub(super) outbound_allowed_prefixes: Option<ListOrCsv>,
    pub(super) outbound_allowed_numbers: Option<ListOrCsv>,
    pub(super) daily_outbound_budget: Option<String>,
    pub(super) max_concurrent_calls: Option<String>,
    pub(super) webhook_rate_limit_per_min: Option<String>,
    pub(super) api_rate_limit_per_min: Option<String>,
    pub(super) stream_idle_timeout_s: Option<String>,
    pub(super) max_body_bytes: Option<String>,
    pub(super) body_timeout_s: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) openai_api_key: Option<String>,
    pub(super) openai_model: Option<String>,
    pub(super) openai_realtime_url: Option<String>,
    pub(super) engine: Option<String>,
    pub(super) live_model: Option<String>,
    pub(super) live_voice: Option<String>,
    pub(super) live_backend_model: Option<String>,
    pub(super) live_url: Option<String>,
    pub(super) twilio_account_sid: Option<String>,
    pub(super) twilio_auth_token: Option<String>,
    pub(super) twilio_signing_keys: Option<ListOrCsv>,
    pub(super) twilio_phone_number: Option<String>,
    pub(super) twilio_api_base_url: Option<String>,
    pub(super) system_message: Option<String>,
    pub(super) voice: Option<String>,
    pub(super) speed: Option<String>,
    pub(super) assistant_speaks_first: Option<String>,
    pub(super) greeting: Option<String>,
    pub(super) turn_detection: Option<String>,
    pub(super) vad_threshold: Option<String>,
    pub(super) vad_prefix_padding_ms: Option<String>,
    pub(super) vad_silence_duration_ms: Option<String>,
    pub(super) vad_idle_timeout_ms: Option<String>,
    pub(super) vad_eagerness: Option<String>,
    pub(super) noise_reduction: Option<String>,
    pub(super) transcription_model: Option<String>,
    pub(super) goodbye_phrases: Option<ListOrCsv>,
    pub(super) max_call_duration_s: Option<String>,
    pub(super) stream_token_ttl_s: Option<String>,
    pub(super) farewell_grace_ms: Option<String>,
    pub(super) max_frame_bytes: Option<String>,
    pub(super) peer_stall_timeout_ms: Option<String>,
    pub(super) transfer_targets: Option<ListOrCsv>,
    pub(super) recording: Option<String>,
    pub(super) recording_inbound: Option<String>,
    pub(super) recording_consent_message: Option<String>,
    pub(super) recording_retention_days: Option<String>,
    pub(super) recording_retention_s: Option<String>,
    pub(super) webhook_url: Option<String>,
    pub(super) webhook_secret: Option<String>,
    pub(super) webhook_retry_base_ms: Option<String>,
    pub(super) webhook_max_attempts: Option<String>,
    pub(super) voice_mcp_servers: Option<JsonOrTables>,
    pub(super) max_call_cost_usd: Option<String>,
    pub(super) daily_cost_budget_usd: Option<String>,
    pub(super) model_prices: Option<ListOrCsv>,
    pub(super) twilio_inbound_price_per_min_usd: Option<String>,
    pub(super) twilio_outbound_price_per_min_usd: Option<String>,
    pub(super) realtime_session_limit_s: Option<String>,
    pub(super) realtime_reconnect_attempts: Option<String>,
    pub(super) truncation: Option<String>,
    pub(super) truncation_retention_ratio: Option<String>,
    pub(super) truncation_max_tokens: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) redis_key_prefix: Option<String>,
    pub(super) instance_id: Option<String>,
    pub(super) instance_lease_s: Option<String>,
}

/// A setting of JSON objects: a JSON array in one string (environment), or an array of TOML tables.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum JsonOrTables {
    /// `[[voice_mcp_servers]]` tables in callbridge.toml.
    Tables(Vec<serde_json::Value>),
    /// A JSON array, as the environment gives it.
    Json(String),
}

/// A list setting: a TOML array, or a comma-separated string (environment).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ListOrCsv {
    /// A TOML array of strings.
    List(Vec<String>),
    /// A comma-separated string, as the environment gives it.
    Csv(String),
}

impl ListOrCsv {
    /// The items, trimmed, without empty ones.
    pub(super) fn into_vec(self) -> Vec<String> {
        let items = match self {
            ListOrCsv::List(items) => items,
            ListOrCsv::Csv(text) => text.split(',').map(str::to_owned).collect(),
        };
        items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}
