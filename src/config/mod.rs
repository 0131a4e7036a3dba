//! Settings: built-in defaults < optional `callbridge.toml` < environment (with `.env` loaded first).
//!
//! Every setting has one flat key. In `callbridge.toml` the key is written as is (`port = 5050`); in the environment it
//! is `CALLBRIDGE_` + the key in upper case (`CALLBRIDGE_PORT`). The names users of Twilio's and OpenAI's samples
//! already know also work (`PORT`, `PUBLIC_URL`, `OPENAI_API_KEY`, `TWILIO_AUTH_TOKEN`, ...); when both are set the
//! `CALLBRIDGE_` name wins. [`Settings::load`] turns the raw values into typed settings and reports every invalid or
//! missing value as one line of its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::realtime::session::{Eagerness, NoiseReduction, SessionConfig, TurnDetection};

/// The default OpenAI Realtime WebSocket endpoint (GA).
pub const DEFAULT_OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
/// The default Twilio REST API base URL.
pub const DEFAULT_TWILIO_API_BASE_URL: &str = "https://api.twilio.com";
/// The default realtime model.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-realtime-2.1";
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

/// Everything callbridge is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to bind, e.g. `0.0.0.0`.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Public base URL Twilio reaches (scheme, host, optional port and path prefix; no trailing slash, no query).
    /// Webhook signatures are checked against it and the TwiML stream URL is built from it.
    pub public_url: Option<Url>,
    /// Whether `X-Forwarded-Proto` / `X-Forwarded-Host` (else `Host`) may be trusted to tell the public URL. Only
    /// used when `public_url` is not set; only safe behind a proxy or tunnel you run (cloudflared).
    pub trust_forwarded_headers: bool,
    /// On shutdown, how long calls in progress may go on before the assistant is asked to say goodbye.
    pub drain_timeout: Duration,
    /// Directory of the call records database (`callbridge.db`); created on first run.
    pub data_dir: std::path::PathBuf,
    /// Bearer key for `/api` and `/mcp`; empty disables them.
    pub api_key: SecretString,
    /// How long an outbound call rings before Twilio gives up (no-answer), seconds.
    pub ring_timeout_s: u32,
    /// Security limits and policies (issue: security layers).
    pub security: SecuritySettings,
    /// Log output format.
    pub log_format: LogFormat,
    /// OpenAI API key; sent as `Authorization: Bearer` (or `api-key` for Azure).
    pub openai_api_key: SecretString,
    /// OpenAI Realtime connection and session settings.
    pub realtime: RealtimeSettings,
    /// Twilio credentials and REST base URL.
    pub twilio: TwilioSettings,
    /// Call limits and timings.
    pub calls: CallSettings,
}

/// OpenAI Realtime settings: where to connect and how the session is configured.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// WebSocket URL without the `model` query, e.g. `wss://api.openai.com/v1/realtime`.
    pub url: Url,
    /// Model name, sent as `?model=` and in `session.update`.
    pub model: String,
    /// Base instructions (the system message).
    pub system_message: String,
    /// Output voice.
    pub voice: String,
    /// Output speed multiplier.
    pub speed: f64,
    /// Whether the assistant speaks first when the stream starts.
    pub assistant_speaks_first: bool,
    /// The assistant's first words when it speaks first.
    pub greeting: String,
    /// Turn detection (server VAD or semantic VAD).
    pub turn_detection: TurnDetection,
    /// Input noise reduction; `None` disables it.
    pub noise_reduction: Option<NoiseReduction>,
    /// Input transcription model; `None` disables caller transcripts.
    pub transcription_model: Option<String>,
    /// Phrases that end the call when the assistant's last sentence contains one.
    pub goodbye_phrases: Vec<String>,
}

/// Twilio settings.
#[derive(Clone)]
pub struct TwilioSettings {
    /// Account SID (`AC...`); with the auth token it enables REST hang-up.
    pub account_sid: Option<String>,
    /// Auth token: the key of `X-Twilio-Signature`, and the REST password.
    pub auth_token: SecretString,
    /// The Twilio phone number in E.164.
    pub phone_number: Option<String>,
    /// REST API base URL, e.g. `https://api.twilio.com`.
    pub api_base_url: Url,
}

impl std::fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("phone_number", &self.phone_number)
            .field("api_base_url", &self.api_base_url.as_str())
            .finish()
    }
}

/// Abuse limits and policies.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Callers (E.164) allowed to call in; empty allows everyone. Others get `<Reject/>` and no stream token.
    pub allowed_callers: Vec<String>,
    /// E.164 prefixes outbound calls may go to; empty allows none (toll-fraud protection).
    pub outbound_allowed_prefixes: Vec<String>,
    /// Exact E.164 numbers outbound calls may go to, even premium-rate or satellite ones.
    pub outbound_allowed_numbers: Vec<String>,
    /// Most outbound calls placed per UTC day.
    pub daily_outbound_budget: u32,
    /// Most calls in progress at once (inbound over the cap hear busy; outbound get an error).
    pub max_concurrent_calls: u32,
    /// Requests per minute per client IP on the Twilio webhooks and media-stream upgrades.
    pub webhook_rate_limit_per_min: u32,
    /// Requests per minute per key on `/api` and `/mcp`.
    pub api_rate_limit_per_min: u32,
    /// A media stream that sends nothing for this long is closed.
    pub stream_idle_timeout: Duration,
    /// Largest HTTP request body accepted, bytes.
    pub max_body_bytes: usize,
    /// A request body must have fully arrived this long after its head, else 408 and the connection is closed.
    pub body_timeout: Duration,
}

/// Limits and timings of a call.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Hard maximum duration of a call.
    pub max_call_duration: Duration,
    /// Lifetime of a single-use media-stream token.
    pub stream_token_ttl: Duration,
    /// After the farewell's last audio should have played, how long to wait for its mark before hanging up anyway.
    pub farewell_grace: Duration,
    /// Largest media-stream frame accepted, bytes; larger frames are skipped.
    pub max_frame_bytes: usize,
    /// How long frames queued for Twilio or OpenAI may wait for the peer to take them before the call ends
    /// (`error:twilio_stalled` / `error:openai_stalled`).
    pub peer_stall_timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Start-up configuration errors: one line per problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration sources could not be read (a broken `callbridge.toml`, say).
    #[error("cannot read the configuration: {0}")]
    Source(#[from] config::ConfigError),
    /// One or more settings are missing or invalid; each string is one line.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Raw values as the `config` crate delivers them (all optional strings or numbers).
#[derive(Debug, Default, Deserialize)]
struct Raw {
    host: Option<String>,
    port: Option<String>,
    public_url: Option<String>,
    trust_forwarded_headers: Option<String>,
    drain_timeout_s: Option<String>,
    data_dir: Option<String>,
    api_key: Option<String>,
    ring_timeout_s: Option<String>,
    allowed_callers: Option<ListOrCsv>,
    outbound_allowed_prefixes: Option<ListOrCsv>,
    outbound_allowed_numbers: Option<ListOrCsv>,
    daily_outbound_budget: Option<String>,
    max_concurrent_calls: Option<String>,
    webhook_rate_limit_per_min: Option<String>,
    api_rate_limit_per_min: Option<String>,
    stream_idle_timeout_s: Option<String>,
    max_body_bytes: Option<String>,
    body_timeout_s: Option<String>,
    log_format: Option<String>,
    openai_api_key: Option<String>,
    openai_model: Option<String>,
    openai_realtime_url: Option<String>,
    twilio_account_sid: Option<String>,
    twilio_auth_token: Option<String>,
    twilio_phone_number: Option<String>,
    twilio_api_base_url: Option<String>,
    system_message: Option<String>,
    voice: Option<String>,
    speed: Option<String>,
    assistant_speaks_first: Option<String>,
    greeting: Option<String>,
    turn_detection: Option<String>,
    vad_threshold: Option<String>,
    vad_prefix_padding_ms: Option<String>,
    vad_silence_duration_ms: Option<String>,
    vad_idle_timeout_ms: Option<String>,
    vad_eagerness: Option<String>,
    noise_reduction: Option<String>,
    transcription_model: Option<String>,
    goodbye_phrases: Option<ListOrCsv>,
    max_call_duration_s: Option<String>,
    stream_token_ttl_s: Option<String>,
    farewell_grace_ms: Option<String>,
    max_frame_bytes: Option<String>,
    peer_stall_timeout_ms: Option<String>,
}

/// A list setting: a TOML array, or a comma-separated string (environment).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListOrCsv {
    List(Vec<String>),
    Csv(String),
}

impl ListOrCsv {
    fn into_vec(self) -> Vec<String> {
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

/// What a command needs from the settings; decides which missing values are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// `serve`: the auth token, the OpenAI key and the public URL are required.
    Serve,
    /// Commands that only read or show settings: nothing is required.
    Nothing,
}

impl Settings {
    /// Loads settings the way the binary does: `.env` (if present) into the process environment, then defaults <
    /// `callbridge.toml` (the path in `CALLBRIDGE_CONFIG`, else `./callbridge.toml` if it exists) < environment.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] lists every missing or invalid setting, one per line.
    pub fn from_process(requirement: Requirement) -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is reported by dotenvy when the value is used, so ignore here.
        let _ = dotenvy::dotenv();
        let env: HashMap<String, String> = std::env::vars().collect();
        let path = env
            .get("CALLBRIDGE_CONFIG")
            .cloned()
            .unwrap_or_else(|| "callbridge.toml".to_owned());
        let path = Path::new(&path);
        Self::load(&env, path.exists().then_some(path), requirement)
    }

    /// Loads settings from an explicit environment map and optional TOML file (tests use this directly).
    ///
    /// # Errors
    /// [`ConfigError::Source`] when the file cannot be parsed; [`ConfigError::Invalid`] with one line per bad value.
    pub fn load(
        env: &HashMap<String, String>,
        toml_path: Option<&Path>,
        requirement: Requirement,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = toml_path {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Well-known names (PORT, OPENAI_API_KEY, ...) first, so the CALLBRIDGE_ names override them.
        let mut well_known = config::Map::new();
        for (key, alias, _) in SETTINGS {
            if let Some(value) = alias.and_then(|alias| env.get(alias)) {
                well_known.insert((*key).to_owned(), value.clone());
            }
        }
        for (key, value) in well_known {
            builder = builder.set_override(key, value)?;
        }
        // Then the CALLBRIDGE_ names, which win over both the file and the well-known names.
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("CALLBRIDGE_") {
                let key = key.to_ascii_lowercase();
                if SETTINGS.iter().any(|(k, _, _)| *k == key) {
                    builder = builder.set_override(key, value.clone())?;
                }
            }
        }
        let raw: Raw = builder.build()?.try_deserialize()?;
        Self::from_raw(raw, requirement)
    }

    fn from_raw(raw: Raw, requirement: Requirement) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let required = requirement == Requirement::Serve;

        let trust_forwarded_headers = parse_bool(raw.trust_forwarded_headers, false);
        let public_url = match nonempty(raw.public_url) {
            Some(text) => parse_public_url(&text).map_err(|e| errors.push(e)).ok(),
            None => {
                if required && !trust_forwarded_headers {
                    errors.push(
                        "PUBLIC_URL is not set: Twilio webhooks cannot be verified and the media-stream URL cannot \
                         be built (set it to your tunnel's https URL, e.g. https://abc.trycloudflare.com, or set \
                         CALLBRIDGE_TRUST_FORWARDED_HEADERS=true behind your own tunnel)"
                            .to_owned(),
                    );
                }
                None
            }
        };
        let openai_api_key = nonempty(raw.openai_api_key);
        if openai_api_key.is_none() && required {
            errors.push(
                "OPENAI_API_KEY is not set: the Realtime session cannot be opened".to_owned(),
            );
        }
        let auth_token = nonempty(raw.twilio_auth_token);
        if auth_token.is_none() && required {
            errors.push(
                "TWILIO_AUTH_TOKEN is not set: webhook signatures cannot be checked".to_owned(),
            );
        }
        let account_sid = nonempty(raw.twilio_account_sid);
        if let Some(sid) = &account_sid
            && !(sid.starts_with("AC") && sid.len() == 34)
        {
            errors.push(format!(
                "TWILIO_ACCOUNT_SID is invalid: expected AC followed by 32 hex characters, got {} characters",
                sid.len()
            ));
        }
        let phone_number = nonempty(raw.twilio_phone_number);
        if let Some(number) = &phone_number
            && !is_e164(number)
        {
            errors.push(format!(
                "TWILIO_PHONE_NUMBER is invalid: expected E.164 such as +15550100, got {number:?}"
            ));
        }

        let port = parse_or(&mut errors, "PORT", raw.port, 5050u16);
        let log_format = match nonempty(raw.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                errors.push(format!(
                    "LOG_FORMAT is invalid: {other:?} (use text or json)"
                ));
                LogFormat::Text
            }
        };
        let realtime_url = parse_url(
            &mut errors,
            "OPENAI_REALTIME_URL",
            raw.openai_realtime_url,
            DEFAULT_OPENAI_REALTIME_URL,
            &["ws", "wss"],
        );
        let api_base_url = parse_url(
            &mut errors,
            "TWILIO_API_BASE_URL",
            raw.twilio_api_base_url,
            DEFAULT_TWILIO_API_BASE_URL,
            &["http", "https"],
        );

        let speed = parse_or(&mut errors, "CALLBRIDGE_SPEED", raw.speed, 1.0f64);
        if !(0.25..=1.5).contains(&speed) {
            errors.push(format!(
                "CALLBRIDGE_SPEED is invalid: {speed} (use 0.25 to 1.5)"
            ));
        }
        let turn_detection = match nonempty(raw.turn_detection).as_deref() {
            None | Some("server_vad") => {
                let threshold = parse_or(
                    &mut errors,
                    "CALLBRIDGE_VAD_THRESHOLD",
                    raw.vad_threshold,
                    0.5f64,
                );
                if !(0.0..=1.0).contains(&threshold) {
                    errors.push(format!(
                        "CALLBRIDGE_VAD_THRESHOLD is invalid: {threshold} (use 0.0 to 1.0)"
                    ));
                }
                TurnDetection::ServerVad {
                    threshold,
                    prefix_padding_ms: parse_or(
                        &mut errors,
                        "CALLBRIDGE_VAD_PREFIX_PADDING_MS",
                        raw.vad_prefix_padding_ms,
                        300u32,
                    ),
                    silence_duration_ms: parse_or(
                        &mut errors,
                        "CALLBRIDGE_VAD_SILENCE_DURATION_MS",
                        raw.vad_silence_duration_ms,
                        500u32,
                    ),
                    idle_timeout_ms: nonempty(raw.vad_idle_timeout_ms).and_then(|text| {
                        text.parse::<u32>()
                            .map_err(|_| {
                                errors.push(format!(
                                    "CALLBRIDGE_VAD_IDLE_TIMEOUT_MS is invalid: {text:?} (a whole number of ms)"
                                ))
                            })
                            .ok()
                    }),
                }
            }
            Some("semantic_vad") => TurnDetection::SemanticVad {
                eagerness: parse_or(
                    &mut errors,
                    "CALLBRIDGE_VAD_EAGERNESS",
                    raw.vad_eagerness,
                    Eagerness::Auto,
                ),
            },
            Some(other) => {
                errors.push(format!(
                    "CALLBRIDGE_TURN_DETECTION is invalid: {other:?} (use server_vad or semantic_vad)"
                ));
                TurnDetection::SemanticVad {
                    eagerness: Eagerness::Auto,
                }
            }
        };
        let noise_reduction = match nonempty(raw.noise_reduction).as_deref() {
            Some("none") => None,
            None => Some(NoiseReduction::NearField),
            Some(text) => text
                .parse::<NoiseReduction>()
                .map_err(|e| errors.push(format!("CALLBRIDGE_NOISE_REDUCTION is invalid: {e}")))
                .ok(),
        };
        let transcription_model = match nonempty(raw.transcription_model) {
            Some(model) if model == "none" => None,
            Some(model) => Some(model),
            None => Some("gpt-4o-mini-transcribe".to_owned()),
        };
        let goodbye_phrases = raw
            .goodbye_phrases
            .map(ListOrCsv::into_vec)
            .filter(|list| !list.is_empty())
            .unwrap_or_else(|| {
                DEFAULT_GOODBYE_PHRASES
                    .iter()
                    .map(|&p| p.to_owned())
                    .collect()
            });

        let e164_list =
            |errors: &mut Vec<String>, name: &str, raw: Option<ListOrCsv>, prefix: bool| {
                let list = raw.map(ListOrCsv::into_vec).unwrap_or_default();
                for item in &list {
                    let digits = item.strip_prefix('+').unwrap_or("");
                    let ok = if prefix {
                        !digits.is_empty()
                            && digits.len() <= 15
                            && digits.bytes().all(|b| b.is_ascii_digit())
                    } else {
                        is_e164(item)
                    };
                    if !ok {
                        errors.push(format!(
                            "{name} is invalid: {item:?} (use E.164{}, e.g. +14155550100)",
                            if prefix { " prefixes" } else { " numbers" }
                        ));
                    }
                }
                list
            };
        let security = SecuritySettings {
            allowed_callers: e164_list(
                &mut errors,
                "CALLBRIDGE_ALLOWED_CALLERS",
                raw.allowed_callers,
                false,
            ),
            outbound_allowed_prefixes: e164_list(
                &mut errors,
                "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES",
                raw.outbound_allowed_prefixes,
                true,
            ),
            outbound_allowed_numbers: e164_list(
                &mut errors,
                "CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS",
                raw.outbound_allowed_numbers,
                false,
            ),
            daily_outbound_budget: parse_or(
                &mut errors,
                "CALLBRIDGE_DAILY_OUTBOUND_BUDGET",
                raw.daily_outbound_budget,
                50u32,
            ),
            max_concurrent_calls: parse_or(
                &mut errors,
                "CALLBRIDGE_MAX_CONCURRENT_CALLS",
                raw.max_concurrent_calls,
                10u32,
            ),
            webhook_rate_limit_per_min: parse_or(
                &mut errors,
                "CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN",
                raw.webhook_rate_limit_per_min,
                120u32,
            ),
            api_rate_limit_per_min: parse_or(
                &mut errors,
                "CALLBRIDGE_API_RATE_LIMIT_PER_MIN",
                raw.api_rate_limit_per_min,
                120u32,
            ),
            stream_idle_timeout: Duration::from_secs(parse_or(
                &mut errors,
                "CALLBRIDGE_STREAM_IDLE_TIMEOUT_S",
                raw.stream_idle_timeout_s,
                10u64,
            )),
            max_body_bytes: parse_or(
                &mut errors,
                "CALLBRIDGE_MAX_BODY_BYTES",
                raw.max_body_bytes,
                64 * 1024usize,
            ),
            body_timeout: Duration::from_secs(parse_or(
                &mut errors,
                "CALLBRIDGE_BODY_TIMEOUT_S",
                raw.body_timeout_s,
                10u64,
            )),
        };
        for (name, value) in [
            (
                "CALLBRIDGE_MAX_CONCURRENT_CALLS",
                security.max_concurrent_calls,
            ),
            (
                "CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN",
                security.webhook_rate_limit_per_min,
            ),
            (
                "CALLBRIDGE_API_RATE_LIMIT_PER_MIN",
                security.api_rate_limit_per_min,
            ),
        ] {
            if value == 0 {
                errors.push(format!("{name} is invalid: 0 (use at least 1)"));
            }
        }
        if security.body_timeout.is_zero() {
            errors.push("CALLBRIDGE_BODY_TIMEOUT_S is invalid: 0 (use at least 1)".to_owned());
        }
        if security.stream_idle_timeout.is_zero() {
            errors
                .push("CALLBRIDGE_STREAM_IDLE_TIMEOUT_S is invalid: 0 (use at least 1)".to_owned());
        }

        let max_call_duration_s = parse_or(
            &mut errors,
            "CALLBRIDGE_MAX_CALL_DURATION_S",
            raw.max_call_duration_s,
            1800u64,
        );
        if max_call_duration_s == 0 {
            errors.push("CALLBRIDGE_MAX_CALL_DURATION_S is invalid: 0 (use at least 1)".to_owned());
        }
        let stream_token_ttl_s = parse_or(
            &mut errors,
            "CALLBRIDGE_STREAM_TOKEN_TTL_S",
            raw.stream_token_ttl_s,
            60u64,
        );
        if stream_token_ttl_s == 0 {
            errors.push("CALLBRIDGE_STREAM_TOKEN_TTL_S is invalid: 0 (use at least 1)".to_owned());
        }
        let farewell_grace_ms = parse_or(
            &mut errors,
            "CALLBRIDGE_FAREWELL_GRACE_MS",
            raw.farewell_grace_ms,
            2000u64,
        );
        let ring_timeout_s = parse_or(
            &mut errors,
            "CALLBRIDGE_RING_TIMEOUT_S",
            raw.ring_timeout_s,
            30u32,
        );
        if !(5..=600).contains(&ring_timeout_s) {
            errors.push(format!(
                "CALLBRIDGE_RING_TIMEOUT_S is invalid: {ring_timeout_s} (Twilio takes 5 to 600)"
            ));
        }
        let drain_timeout_s = parse_or(
            &mut errors,
            "CALLBRIDGE_DRAIN_TIMEOUT_S",
            raw.drain_timeout_s,
            30u64,
        );
        let max_frame_bytes = parse_or(
            &mut errors,
            "CALLBRIDGE_MAX_FRAME_BYTES",
            raw.max_frame_bytes,
            64 * 1024usize,
        );
        let peer_stall_timeout_ms = parse_or(
            &mut errors,
            "CALLBRIDGE_PEER_STALL_TIMEOUT_MS",
            raw.peer_stall_timeout_ms,
            5000u64,
        );
        if peer_stall_timeout_ms < 100 {
            errors.push(format!(
                "CALLBRIDGE_PEER_STALL_TIMEOUT_MS is invalid: {peer_stall_timeout_ms} (use at least 100)"
            ));
        }
        if max_frame_bytes < 1024 {
            errors.push(format!(
                "CALLBRIDGE_MAX_FRAME_BYTES is invalid: {max_frame_bytes} (use at least 1024)"
            ));
        }

        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        Ok(Settings {
            host: nonempty(raw.host).unwrap_or_else(|| "0.0.0.0".to_owned()),
            port,
            public_url,
            trust_forwarded_headers,
            drain_timeout: Duration::from_secs(drain_timeout_s),
            data_dir: nonempty(raw.data_dir)
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::path::PathBuf::from("data")),
            api_key: SecretString::from(nonempty(raw.api_key).unwrap_or_default()),
            ring_timeout_s,
            security,
            log_format,
            openai_api_key: SecretString::from(openai_api_key.unwrap_or_default()),
            realtime: RealtimeSettings {
                url: realtime_url,
                model: nonempty(raw.openai_model)
                    .unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_owned()),
                system_message: nonempty(raw.system_message)
                    .unwrap_or_else(|| DEFAULT_SYSTEM_MESSAGE.to_owned()),
                voice: nonempty(raw.voice).unwrap_or_else(|| "marin".to_owned()),
                speed,
                assistant_speaks_first: parse_bool(raw.assistant_speaks_first, true),
                greeting: nonempty(raw.greeting).unwrap_or_else(|| DEFAULT_GREETING.to_owned()),
                turn_detection,
                noise_reduction,
                transcription_model,
                goodbye_phrases,
            },
            twilio: TwilioSettings {
                account_sid,
                auth_token: SecretString::from(auth_token.unwrap_or_default()),
                phone_number,
                api_base_url,
            },
            calls: CallSettings {
                max_call_duration: Duration::from_secs(max_call_duration_s),
                stream_token_ttl: Duration::from_secs(stream_token_ttl_s),
                farewell_grace: Duration::from_millis(farewell_grace_ms),
                max_frame_bytes,
                peer_stall_timeout: Duration::from_millis(peer_stall_timeout_ms),
            },
        })
    }

    /// The realtime session configuration for a call, with `instructions` as the assistant's instructions.
    pub fn session_config(&self, instructions: String) -> SessionConfig {
        let rt = &self.realtime;
        SessionConfig {
            model: rt.model.clone(),
            instructions,
            voice: rt.voice.clone(),
            speed: rt.speed,
            turn_detection: rt.turn_detection.clone(),
            noise_reduction: rt.noise_reduction,
            transcription_model: rt.transcription_model.clone(),
            tools: vec![crate::realtime::session::end_call_tool(false)],
        }
    }

    /// The call records database file: `data_dir/callbridge.db`.
    pub fn database_path(&self) -> std::path::PathBuf {
        self.data_dir.join("callbridge.db")
    }

    /// Whether Twilio REST credentials are configured (account SID and auth token), enabling REST hang-up.
    pub fn has_twilio_rest_credentials(&self) -> bool {
        self.twilio.account_sid.is_some() && !self.twilio.auth_token.expose_secret().is_empty()
    }

    /// The effective settings as `key = value` lines with secrets masked, for `callbridge check-config`.
    pub fn describe(&self) -> String {
        let rt = &self.realtime;
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key:<26} = {value}");
        };
        line("host", self.host.clone());
        line("port", self.port.to_string());
        line(
            "public_url",
            self.public_url
                .as_ref()
                .map_or("(not set)".to_owned(), |u| u.to_string()),
        );
        line(
            "trust_forwarded_headers",
            self.trust_forwarded_headers.to_string(),
        );
        line("drain_timeout_s", self.drain_timeout.as_secs().to_string());
        line("data_dir", self.data_dir.display().to_string());
        line("api_key", mask(self.api_key.expose_secret()));
        line("ring_timeout_s", self.ring_timeout_s.to_string());
        let sec = &self.security;
        line(
            "allowed_callers",
            list_or(&sec.allowed_callers, "(everyone)"),
        );
        line(
            "outbound_allowed_prefixes",
            list_or(
                &sec.outbound_allowed_prefixes,
                "(none: outbound calls are refused)",
            ),
        );
        line(
            "outbound_allowed_numbers",
            list_or(&sec.outbound_allowed_numbers, "(none)"),
        );
        line(
            "daily_outbound_budget",
            sec.daily_outbound_budget.to_string(),
        );
        line("max_concurrent_calls", sec.max_concurrent_calls.to_string());
        line(
            "webhook_rate_limit_per_min",
            sec.webhook_rate_limit_per_min.to_string(),
        );
        line(
            "api_rate_limit_per_min",
            sec.api_rate_limit_per_min.to_string(),
        );
        line(
            "stream_idle_timeout_s",
            sec.stream_idle_timeout.as_secs().to_string(),
        );
        line("max_body_bytes", sec.max_body_bytes.to_string());
        line("body_timeout_s", sec.body_timeout.as_secs().to_string());
        line(
            "log_format",
            format!("{:?}", self.log_format).to_lowercase(),
        );
        line("openai_api_key", mask(self.openai_api_key.expose_secret()));
        line("openai_model", rt.model.clone());
        line("openai_realtime_url", rt.url.to_string());
        line(
            "twilio_account_sid",
            self.twilio
                .account_sid
                .clone()
                .unwrap_or_else(|| "(not set)".to_owned()),
        );
        line(
            "twilio_auth_token",
            mask(self.twilio.auth_token.expose_secret()),
        );
        line(
            "twilio_phone_number",
            self.twilio
                .phone_number
                .clone()
                .unwrap_or_else(|| "(not set)".to_owned()),
        );
        line("twilio_api_base_url", self.twilio.api_base_url.to_string());
        line("system_message", format!("{:?}", rt.system_message));
        line("voice", rt.voice.clone());
        line("speed", rt.speed.to_string());
        line(
            "assistant_speaks_first",
            rt.assistant_speaks_first.to_string(),
        );
        line("greeting", format!("{:?}", rt.greeting));
        line("turn_detection", format!("{:?}", rt.turn_detection));
        line(
            "noise_reduction",
            rt.noise_reduction
                .map_or("none".to_owned(), |n| format!("{n:?}")),
        );
        line(
            "transcription_model",
            rt.transcription_model
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        );
        line("goodbye_phrases", rt.goodbye_phrases.join(", "));
        line(
            "max_call_duration_s",
            self.calls.max_call_duration.as_secs().to_string(),
        );
        line(
            "stream_token_ttl_s",
            self.calls.stream_token_ttl.as_secs().to_string(),
        );
        line(
            "farewell_grace_ms",
            self.calls.farewell_grace.as_millis().to_string(),
        );
        line("max_frame_bytes", self.calls.max_frame_bytes.to_string());
        line(
            "peer_stall_timeout_ms",
            self.calls.peer_stall_timeout.as_millis().to_string(),
        );
        out
    }
}

fn list_or(list: &[String], empty: &str) -> String {
    if list.is_empty() {
        empty.to_owned()
    } else {
        list.join(", ")
    }
}

/// Masks a secret for display: `(not set)`, or its length and last four characters.
fn mask(secret: &str) -> String {
    if secret.is_empty() {
        return "(not set)".to_owned();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return format!("******** ({} chars)", chars.len());
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("********{tail} ({} chars)", chars.len())
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_or<T: std::str::FromStr>(
    errors: &mut Vec<String>,
    name: &str,
    raw: Option<String>,
    default: T,
) -> T
where
    T::Err: std::fmt::Display,
{
    match nonempty(raw) {
        None => default,
        Some(text) => match text.parse::<T>() {
            Ok(value) => value,
            Err(e) => {
                errors.push(format!("{name} is invalid: {text:?} ({e})"));
                default
            }
        },
    }
}

fn parse_bool(raw: Option<String>, default: bool) -> bool {
    match nonempty(raw).map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("true" | "1" | "yes" | "on") => true,
        Some("false" | "0" | "no" | "off") => false,
        _ => default,
    }
}

fn parse_url(
    errors: &mut Vec<String>,
    name: &str,
    raw: Option<String>,
    default: &str,
    schemes: &[&str],
) -> Url {
    let text = nonempty(raw).unwrap_or_else(|| default.to_owned());
    match Url::parse(&text) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host_str().is_some() => url,
        Ok(url) => {
            errors.push(format!(
                "{name} is invalid: {text:?} (scheme must be one of {}, got {})",
                schemes.join(", "),
                url.scheme()
            ));
            Url::parse(default).expect("default URLs are valid")
        }
        Err(e) => {
            errors.push(format!("{name} is invalid: {text:?} ({e})"));
            Url::parse(default).expect("default URLs are valid")
        }
    }
}

/// Parses `PUBLIC_URL`: http(s), a host, no query or fragment; a trailing slash is dropped.
fn parse_public_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim_end_matches('/')).map_err(|e| {
        format!(
            "PUBLIC_URL is invalid: {text:?} ({e}); expected e.g. https://abc.trycloudflare.com"
        )
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!(
            "PUBLIC_URL is invalid: {text:?} (must be an https:// URL with a host; Twilio only streams to wss://)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "PUBLIC_URL is invalid: {text:?} (no query string or fragment)"
        ));
    }
    Ok(url)
}

/// True for E.164: `+`, then 2 to 15 digits, the first not 0.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Joins a path onto the public base URL, keeping any path prefix: `https://h/p` + `/incoming-call` →
/// `https://h/p/incoming-call`.
pub fn public_endpoint(public_url: &Url, path: &str) -> String {
    format!("{}{}", public_url.as_str().trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("TWILIO_AUTH_TOKEN", "token"),
            ("OPENAI_API_KEY", "sk-test"),
            ("PUBLIC_URL", "https://example.trycloudflare.com"),
        ]
    }

    #[test]
    fn defaults_apply_when_only_required_settings_are_given() {
        let settings = Settings::load(&env(&minimal()), None, Requirement::Serve).expect("valid");
        assert_eq!(settings.port, 5050);
        assert_eq!(settings.realtime.url.as_str(), DEFAULT_OPENAI_REALTIME_URL);
        assert_eq!(
            settings.twilio.api_base_url.as_str(),
            "https://api.twilio.com/"
        );
        assert_eq!(settings.realtime.voice, "marin");
        assert_eq!(settings.calls.stream_token_ttl, Duration::from_secs(60));
        assert!(settings.realtime.assistant_speaks_first);
        assert!(!settings.realtime.goodbye_phrases.is_empty());
    }

    #[test]
    fn missing_required_settings_are_each_reported_on_one_line() {
        let err = Settings::load(&env(&[]), None, Requirement::Serve).expect_err("invalid");
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines.contains(&"TWILIO_AUTH_TOKEN is not set: webhook signatures cannot be checked")
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("OPENAI_API_KEY is not set"))
        );
        assert!(lines.iter().any(|l| l.starts_with("PUBLIC_URL is not set")));
    }

    #[test]
    fn nothing_is_required_for_commands_that_only_show_settings() {
        assert!(Settings::load(&env(&[]), None, Requirement::Nothing).is_ok());
    }

    #[test]
    fn callbridge_prefixed_names_override_well_known_names() {
        let mut pairs = minimal();
        pairs.push(("PORT", "6000"));
        pairs.push(("CALLBRIDGE_PORT", "7000"));
        pairs.push(("VOICE", "cedar"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        assert_eq!(settings.port, 7000);
        assert_eq!(settings.realtime.voice, "cedar");
    }

    #[test]
    fn toml_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("callbridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("callbridge.toml");
        std::fs::write(
            &path,
            "port = 6001\nvoice = \"sage\"\ngoodbye_phrases = [\"ciao ciao\", \"later\"]\n",
        )
        .expect("write toml");
        let mut pairs = minimal();
        pairs.push(("VOICE", "ash"));
        let settings =
            Settings::load(&env(&pairs), Some(&path), Requirement::Serve).expect("valid");
        assert_eq!(settings.port, 6001, "file beats default");
        assert_eq!(settings.realtime.voice, "ash", "environment beats file");
        assert_eq!(
            settings.realtime.goodbye_phrases,
            vec!["ciao ciao", "later"]
        );
    }

    #[test]
    fn invalid_values_name_the_setting_and_the_value() {
        let mut pairs = minimal();
        pairs.push(("PORT", "seventy"));
        pairs.push(("CALLBRIDGE_TURN_DETECTION", "psychic"));
        pairs.push(("TWILIO_PHONE_NUMBER", "555-0100"));
        let text = Settings::load(&env(&pairs), None, Requirement::Serve)
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("PORT is invalid: \"seventy\""), "{text}");
        assert!(
            text.contains("CALLBRIDGE_TURN_DETECTION is invalid: \"psychic\""),
            "{text}"
        );
        assert!(text.contains("TWILIO_PHONE_NUMBER is invalid"), "{text}");
    }

    #[test]
    fn public_url_may_be_left_out_only_when_forwarded_headers_are_trusted() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != "PUBLIC_URL");
        assert!(Settings::load(&env(&pairs), None, Requirement::Serve).is_err());
        pairs.push(("CALLBRIDGE_TRUST_FORWARDED_HEADERS", "true"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        assert!(settings.public_url.is_none());
        assert!(settings.trust_forwarded_headers);
    }

    #[test]
    fn public_url_must_be_http_or_https_without_query() {
        for bad in ["ftp://x.example", "https://x.example/?a=1", "not a url"] {
            let mut pairs = minimal();
            pairs.retain(|(k, _)| *k != "PUBLIC_URL");
            pairs.push(("PUBLIC_URL", bad));
            assert!(
                Settings::load(&env(&pairs), None, Requirement::Serve).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn public_url_trailing_slash_is_dropped_and_prefix_kept() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != "PUBLIC_URL");
        pairs.push(("PUBLIC_URL", "https://x.example/voice/"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let url = settings.public_url.expect("set");
        assert_eq!(
            public_endpoint(&url, "/incoming-call"),
            "https://x.example/voice/incoming-call"
        );
    }

    #[test]
    fn goodbye_phrases_from_the_environment_are_comma_separated() {
        let mut pairs = minimal();
        pairs.push(("CALLBRIDGE_GOODBYE_PHRASES", "see ya, so long ,"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        assert_eq!(settings.realtime.goodbye_phrases, vec!["see ya", "so long"]);
    }

    #[test]
    fn describe_masks_secrets() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != "OPENAI_API_KEY");
        pairs.push(("OPENAI_API_KEY", "sk-verysecretvalue1234"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let text = settings.describe();
        assert!(!text.contains("sk-verysecretvalue1234"));
        assert!(!text.contains("= token"));
        assert!(text.contains("********1234"));
    }

    #[test]
    fn e164_accepts_plus_and_digits_only() {
        assert!(is_e164("+15550100"));
        assert!(is_e164("+442071838750"));
        assert!(!is_e164("15550100"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("+1 555 0100"));
        assert!(!is_e164("+1234567890123456"));
    }
}
