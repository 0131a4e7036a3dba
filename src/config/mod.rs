//! Settings: built-in defaults < optional `callbridge.toml` < environment (with `.env` loaded first).
//!
//! Every setting has one flat key. In `callbridge.toml` the key is written as is (`port = 5050`); in the environment it
//! is `CALLBRIDGE_` + the key in upper case (`CALLBRIDGE_PORT`). The names users of Twilio's and OpenAI's samples
//! already know also work (`PORT`, `PUBLIC_URL`, `OPENAI_API_KEY`, `TWILIO_AUTH_TOKEN`, ...); when both are set the
//! `CALLBRIDGE_` name wins. [`Settings::load`] turns the raw values into typed settings and reports every invalid or
//! missing value as one line of its own.
//!
//! - [`keys`]: the key catalogue ([`SETTINGS`]), the defaults and the raw shape of every value.
//! - `load`: raw values to typed settings, one function per section.
//! - `describe`: [`Settings::describe`], the effective settings with secrets masked and where each came from.
//! - [`sources`]: where each value came from, the names errors are reported under, unknown keys in the file, and
//!   `.env.example`'s placeholders.
//!
//! This module depends only on leaves: [`crate::phone`] for E.164 numbers and the session types of
//! [`crate::realtime::session`].

pub mod database;
mod describe;
pub mod fleet;
pub mod keys;
mod load;
pub mod recording;
pub use self::load::LIVE_VOICES;
pub mod sources;
#[cfg(test)]
mod sources_tests;
pub mod webhooks;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use self::keys::Raw;
pub use self::keys::{
    DEFAULT_GOODBYE_PHRASES, DEFAULT_GREETING, DEFAULT_LIVE_BACKEND_MODEL, DEFAULT_LIVE_MODEL,
    DEFAULT_OPENAI_LIVE_URL, DEFAULT_OPENAI_MODEL, DEFAULT_OPENAI_REALTIME_URL,
    DEFAULT_SYSTEM_MESSAGE, DEFAULT_TWILIO_API_BASE_URL, SETTINGS,
};
use self::sources::Sources;
use crate::realtime::session::{NoiseReduction, SessionConfig, TurnDetection};
use crate::twilio::amd::{AmdTuning, MachinePolicy};

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
    /// Base URL of this instance's media streams (`CALLBRIDGE_STREAM_PUBLIC_URL`, same form as `public_url`): the
    /// TwiML `<Stream url>` is built from it instead of `public_url`, so that the stream reaches the instance that
    /// answered the webhook (and pre-connected the OpenAI session) in a fleet whose instances can be addressed one
    /// by one. Webhook signatures are still checked against `public_url`. `None`: streams use `public_url`.
    pub stream_public_url: Option<Url>,
    /// Whether `X-Forwarded-Proto` / `X-Forwarded-Host` (else `Host`) may be trusted to tell the public URL. Only
    /// used when `public_url` is not set; only safe behind a proxy or tunnel you run (cloudflared).
    pub trust_forwarded_headers: bool,
    /// On shutdown, how long calls in progress may go on before the assistant is asked to say goodbye.
    pub drain_timeout: Duration,
    /// Directory of the call records database (`callbridge.db`); created on first run.
    pub data_dir: std::path::PathBuf,
    /// `CALLBRIDGE_DATABASE_URL`: the PostgreSQL database of the call records (`postgres://…`, a secret: it holds
    /// the password); `None` keeps them in SQLite under `data_dir`.
    pub database_url: Option<SecretString>,
    /// Bearer key for `/api` and `/mcp`; empty disables them.
    pub api_key: SecretString,
    /// How long an outbound call rings before Twilio gives up (no-answer), seconds.
    pub ring_timeout_s: u32,
    /// Answering machine detection on outbound calls.
    pub amd: AmdSettings,
    /// Security limits and policies (issue: security layers).
    pub security: SecuritySettings,
    /// Log output format.
    pub log_format: LogFormat,
    /// OpenAI API key; sent as `Authorization: Bearer` (or `api-key` for Azure).
    pub openai_api_key: SecretString,
    /// OpenAI Realtime connection and session settings.
    pub realtime: RealtimeSettings,
    /// The voice API a call uses unless it names one (`CALLBRIDGE_ENGINE`).
    pub engine: Engine,
    /// GPT-Live connection and session settings.
    pub live: LiveSettings,
    /// Twilio credentials and REST base URL.
    pub twilio: TwilioSettings,
    /// Call limits and timings.
    pub calls: CallSettings,
    /// Call recording at Twilio: on or off, the consent line, the retention.
    pub recording: recording::RecordingSettings,
    /// Signed webhooks: the default destination, the secret, the retry schedule.
    pub webhooks: webhooks::WebhookSettings,
    /// Prices, the per-call cost cap and the daily cost budget.
    pub cost: CostSettings,
    /// Several instances sharing one Redis: the URL, the key prefix, this instance's id and lease.
    pub fleet: fleet::FleetSettings,
    /// Where each value came from (default, `.env`, environment, `callbridge.toml`), for `check-config`.
    pub sources: Sources,
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
    /// Session rollover and recovery (`realtime_session_limit_s`, `realtime_reconnect_attempts`).
    pub sessions: SessionLifetime,
    /// `session.truncation` (`truncation`, `truncation_retention_ratio`, `truncation_max_tokens`).
    pub truncation: crate::realtime::truncation::Truncation,
}

/// How long a call keeps one Realtime session, and how hard it tries to get a new one when OpenAI drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// After this long the call opens a fresh session and switches to it at a quiet moment (default 55 minutes:
    /// OpenAI closes a session at 60).
    pub session_limit: Duration,
    /// How many times a session OpenAI closed mid-call is reopened before the call ends
    /// (`error:openai_reconnect_failed`); 0 ends the call at once (`error:openai_closed`).
    pub reconnect_attempts: u32,
}

impl SessionLifetime {
    /// One session for the whole call: no rollover before a limit (the limit is a year) and no reopening when the
    /// session closes (`error:openai_closed`). For GPT-Live calls, whose sessions the Realtime rollover cannot reopen.
    pub const WITHOUT_ROLLOVER: Self = Self {
        session_limit: Duration::from_secs(365 * 24 * 3600),
        reconnect_attempts: 0,
    };
}

/// Which OpenAI voice API carries a call: the Realtime API (billed per audio token) or GPT-Live (billed per active
/// minute, full duplex). Spelled `realtime` / `live` in settings, `place_call` and the call record.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `wss://api.openai.com/v1/realtime`.
    #[default]
    Realtime,
    /// `wss://api.openai.com/v1/live/sessions`.
    Live,
}

impl Engine {
    /// `realtime` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Realtime => "realtime",
            Engine::Live => "live",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `realtime` or `live` (case-insensitive, trimmed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "realtime" => Ok(Engine::Realtime),
            "live" => Ok(Engine::Live),
            _ => Err(format!("{text:?} (use realtime or live)")),
        }
    }
}

/// GPT-Live settings: where to connect and which models and voice a session starts with.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// WebSocket URL, no query: `wss://api.openai.com/v1/live/sessions`.
    pub url: Url,
    /// The Live model (`gpt-live-1`, `gpt-live-1.1`).
    pub model: String,
    /// The voice (immutable after startup).
    pub voice: String,
    /// The Responses model the call's tools are delegated to.
    pub backend_model: String,
}

/// Twilio settings.
#[derive(Clone)]
pub struct TwilioSettings {
    /// Account SID (`AC...`); with the auth token it enables REST hang-up.
    pub account_sid: Option<String>,
    /// Auth token: the key of `X-Twilio-Signature`, and the REST password.
    pub auth_token: SecretString,
    /// SharedKey secrets by SharedKey id (`CALLBRIDGE_TWILIO_SIGNING_KEYS`): the key of `X-Twilio-Signature` for a
    /// webhook whose `X-Twilio-Webhooks-Signature-Settings` names the id
    /// (<https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys>).
    pub signing_keys: Vec<(String, SecretString)>,
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
            .field(
                "signing_keys",
                &self
                    .signing_keys
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>(),
            )
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
    /// The people the model may transfer a call to, by name (`CALLBRIDGE_TRANSFER_TARGETS`); empty offers no
    /// `transfer_call` tool.
    pub transfer_targets: Vec<crate::twilio::dial::TransferTarget>,
    /// The remote MCP servers the voice may use (`CALLBRIDGE_VOICE_MCP_SERVERS`): those marked `default` go into
    /// every session; a call may name others by label.
    pub voice_mcp_servers: crate::realtime::mcp_tools::VoiceMcpServers,
}

/// What calls cost and how much they may cost (see [`crate::cost`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CostSettings {
    /// The price table: the built-in prices with the overrides of `CALLBRIDGE_MODEL_PRICES` and the Twilio prices.
    pub prices: crate::cost::PriceTable,
    /// At this estimated cost a call is wrapped up: the assistant says goodbye and the call ends (`cost_cap`), USD.
    pub max_call_cost_usd: Option<f64>,
    /// Once the calls of the UTC day have cost this much (estimated), new calls are refused, USD.
    pub daily_cost_budget_usd: Option<f64>,
}

/// Answering machine detection on outbound calls (see [`crate::twilio::amd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdSettings {
    /// What a call does when a machine answers, unless `place_call` says (`CALLBRIDGE_ANSWERING_MACHINE`).
    pub policy: MachinePolicy,
    /// Twilio's detection tuning (`CALLBRIDGE_AMD_*`).
    pub tuning: AmdTuning,
    /// How long the assistant waits for the verdict before it talks anyway, as if it were `unknown`.
    pub verdict_wait: Duration,
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
        let before: HashSet<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        // A missing .env is normal; a malformed one is reported by dotenvy when the value is used, so ignore here.
        let _ = dotenvy::dotenv();
        let env: HashMap<String, String> = std::env::vars().collect();
        // dotenvy never overrides a variable already set, so the names that appeared came from .env.
        let dotenv_names: HashSet<String> = env
            .keys()
            .filter(|name| !before.contains(*name))
            .cloned()
            .collect();
        let path = env
            .get("CALLBRIDGE_CONFIG")
            .cloned()
            .unwrap_or_else(|| "callbridge.toml".to_owned());
        let path = Path::new(&path);
        Self::load_with_dotenv(
            &env,
            &dotenv_names,
            path.exists().then_some(path),
            requirement,
        )
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
        Self::load_with_dotenv(env, &HashSet::new(), toml_path, requirement)
    }

    /// [`Settings::load`], knowing which names of `env` came from `.env` (for `check-config`'s sources and the
    /// error lines: `PORT in .env is invalid: ...`).
    ///
    /// Beyond invalid values, every key of the file that is not a setting is refused (with the closest setting's
    /// name), and so is every value still set to a placeholder of `.env.example` (`sk-...`,
    /// `https://your-tunnel.trycloudflare.com`). Each line names the setting as it was given: `CALLBRIDGE_PORT`,
    /// `PORT`, `port in callbridge.toml`.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_dotenv(
        env: &HashMap<String, String>,
        dotenv_names: &HashSet<String>,
        toml_path: Option<&Path>,
        requirement: Requirement,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        let mut problems = Vec::new();
        let mut file_keys = HashSet::new();
        if let Some(path) = toml_path {
            let file = config::File::from(path).format(config::FileFormat::Toml);
            file_keys = config::Source::collect(&file)?.into_keys().collect();
            problems.extend(sources::unknown_file_keys(
                &path.display().to_string(),
                &file_keys,
            ));
            builder = builder.add_source(file);
        }
        let file_name = toml_path.map(|path| path.display().to_string());
        let sources = Sources::resolve(
            env,
            dotenv_names,
            file_name.as_deref().map(|name| (name, &file_keys)),
        );
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
        let built = builder.build()?;
        for key in sources::PLACEHOLDER_CHECKED {
            if let Ok(value) = built.get_string(key)
                && sources::is_placeholder(&value)
            {
                problems.push(format!(
                    "{} is still the example's placeholder {value:?}: {}",
                    sources::env_name(key),
                    sources::placeholder_hint(key)
                ));
            }
        }
        let raw: Raw = built.try_deserialize()?;
        match load::from_raw(raw, requirement) {
            Ok(settings) if problems.is_empty() => {
                return Ok(Settings {
                    sources,
                    ..settings
                });
            }
            Ok(_) => {}
            Err(ConfigError::Invalid(lines)) => problems.extend(lines),
            Err(error) => return Err(error),
        }
        Err(ConfigError::Invalid(
            problems
                .into_iter()
                .map(|line| sources.rename(line))
                .collect(),
        ))
    }

    /// The `transfer_call` tool naming the configured targets, when there are any.
    pub fn transfer_tool(&self) -> Option<crate::realtime::session::FunctionTool> {
        let names: Vec<String> = self
            .calls
            .transfer_targets
            .iter()
            .filter_map(|t| t.name.clone())
            .collect();
        (!names.is_empty()).then(|| crate::realtime::session::transfer_call_tool(&names))
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
            truncation: rt.truncation,
            tools: {
                let mut tools = vec![
                    crate::realtime::session::end_call_tool(false),
                    crate::realtime::session::send_dtmf_tool(),
                ];
                tools.extend(self.transfer_tool());
                tools
            },
            mcp_servers: self.calls.voice_mcp_servers.tools_for(None),
        }
    }

    /// One warning line per configured model (the Realtime model, the input transcription model) that OpenAI has
    /// deprecated, as of `today` (`YYYY-MM-DD`); see [`crate::realtime::models`].
    pub fn model_warnings(&self, today: &str) -> Vec<String> {
        let rt = &self.realtime;
        let mut warnings = Vec::new();
        warnings.extend(crate::realtime::models::deprecation_warning(
            "openai_model",
            &rt.model,
            today,
        ));
        if let Some(model) = &rt.transcription_model {
            warnings.extend(crate::realtime::models::deprecation_warning(
                "transcription_model",
                model,
                today,
            ));
        }
        warnings
    }

    /// The call records database file: `data_dir/callbridge.db`.
    pub fn database_path(&self) -> std::path::PathBuf {
        self.data_dir.join("callbridge.db")
    }

    /// Whether Twilio REST credentials are configured (account SID and auth token), enabling REST hang-up.
    pub fn has_twilio_rest_credentials(&self) -> bool {
        self.twilio.account_sid.is_some() && !self.twilio.auth_token.expose_secret().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment map from pairs (shared by the config tests).
    pub(crate) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The settings `serve` cannot start without.
    pub(crate) fn minimal() -> Vec<(&'static str, &'static str)> {
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
    fn the_engine_defaults_to_realtime_and_the_live_settings_are_read() {
        let defaults = Settings::load(&env(&minimal()), None, Requirement::Serve).expect("valid");
        assert_eq!(defaults.engine, Engine::Realtime);
        assert_eq!(defaults.live.model, "gpt-live-1");
        assert_eq!(
            defaults.live.url.as_str(),
            "wss://api.openai.com/v1/live/sessions"
        );

        let mut pairs = minimal();
        pairs.extend([
            ("CALLBRIDGE_ENGINE", "Live"),
            ("CALLBRIDGE_LIVE_MODEL", "gpt-live-1.1"),
            ("CALLBRIDGE_LIVE_VOICE", "cinder"),
        ]);
        let live = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        assert_eq!(live.engine, Engine::Live);
        assert_eq!(live.live.model, "gpt-live-1.1");
        assert_eq!(live.live.voice, "cinder");
        assert!(live.describe().contains("engine"));
    }

    #[test]
    fn an_unknown_engine_or_live_voice_is_refused_each_on_its_line() {
        let mut pairs = minimal();
        pairs.extend([
            ("CALLBRIDGE_ENGINE", "gemini"),
            ("CALLBRIDGE_LIVE_VOICE", "bob"),
        ]);
        let text = Settings::load(&env(&pairs), None, Requirement::Serve)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.lines()
                .any(|l| l.starts_with("CALLBRIDGE_ENGINE is invalid")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("CALLBRIDGE_LIVE_VOICE is invalid")),
            "{text}"
        );
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
    fn voice_mcp_servers_are_read_from_toml_tables() {
        let dir =
            std::env::temp_dir().join(format!("callbridge-config-mcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("callbridge.toml");
        std::fs::write(
            &path,
            "[[voice_mcp_servers]]\nlabel = \"calendar\"\nurl = \"https://mcp.example.com/cal\"\n\
             allowed_tools = [\"find_slot\"]\nheaders = { Authorization = \"Bearer x\" }\ndefault = true\n\n\
             [[voice_mcp_servers]]\nlabel = \"crm\"\nurl = \"https://crm.example.com/mcp\"\n\
             require_approval = \"always\"\n",
        )
        .expect("write toml");

        let settings =
            Settings::load(&env(&minimal()), Some(&path), Requirement::Serve).expect("valid");

        let tools = settings.calls.voice_mcp_servers.tools_for(None);
        assert_eq!(tools.len(), 1, "{tools:?}");
        assert_eq!(tools[0]["server_label"], "calendar");
        assert_eq!(tools[0]["allowed_tools"][0], "find_slot");
        assert_eq!(
            tools[0]["headers"].as_object().map(|h| h.len()),
            Some(1),
            "{tools:?}"
        );
        let crm = settings
            .calls
            .voice_mcp_servers
            .tools_for(Some(&["crm".to_owned()]));
        assert_eq!(crm[0]["require_approval"], "always");
        assert_eq!(settings.session_config(String::new()).mcp_servers, tools);
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
    fn the_stream_public_url_is_optional_and_checked_like_the_public_url() {
        let unset = Settings::load(&env(&minimal()), None, Requirement::Serve).expect("valid");
        let mut pairs = minimal();
        pairs.push(("CALLBRIDGE_STREAM_PUBLIC_URL", "https://cb-a.example/"));
        let set = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let mut bad = minimal();
        bad.push(("CALLBRIDGE_STREAM_PUBLIC_URL", "http://cb-a.example"));
        let text = Settings::load(&env(&bad), None, Requirement::Serve)
            .expect_err("plain http to a remote host is refused")
            .to_string();

        assert!(unset.stream_public_url.is_none());
        assert_eq!(
            set.stream_public_url.map(|u| u.to_string()).as_deref(),
            Some("https://cb-a.example/")
        );
        assert!(
            text.contains("CALLBRIDGE_STREAM_PUBLIC_URL is invalid: \"http://cb-a.example\""),
            "{text}"
        );
    }

    #[test]
    fn public_url_trailing_slash_is_dropped_and_prefix_kept() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != "PUBLIC_URL");
        pairs.push(("PUBLIC_URL", "https://x.example/voice/"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let url = settings.public_url.expect("set");
        assert_eq!(
            crate::urls::public_endpoint(&url, crate::urls::INCOMING_CALL_PATH),
            "https://x.example/voice/incoming-call"
        );
    }

    #[test]
    fn twilio_signing_keys_are_read_as_key_id_equals_secret() {
        let mut pairs = minimal();
        pairs.push((
            "CALLBRIDGE_TWILIO_SIGNING_KEYS",
            " key1 = s3cret= , key2=other",
        ));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let keys: Vec<(&str, &str)> = settings
            .twilio
            .signing_keys
            .iter()
            .map(|(id, secret)| (id.as_str(), secret.expose_secret()))
            .collect();
        assert_eq!(keys, [("key1", "s3cret="), ("key2", "other")]);
    }

    #[test]
    fn a_malformed_or_repeated_signing_key_is_refused_without_showing_its_secret() {
        let mut pairs = minimal();
        pairs.push((
            "CALLBRIDGE_TWILIO_SIGNING_KEYS",
            "key1=first-secret,justasecret,=nokey,key1=second-secret",
        ));
        let error = Settings::load(&env(&pairs), None, Requirement::Serve)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("item 2 is not key_id=secret"), "{error}");
        assert!(error.contains("item 3 is not key_id=secret"), "{error}");
        assert!(error.contains("key id \"key1\" is given twice"), "{error}");
        assert!(
            !error.contains("secret-") && !error.contains("justasecret"),
            "{error}"
        );
    }

    #[test]
    fn goodbye_phrases_from_the_environment_are_comma_separated() {
        let mut pairs = minimal();
        pairs.push(("CALLBRIDGE_GOODBYE_PHRASES", "see ya, so long ,"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        assert_eq!(settings.realtime.goodbye_phrases, vec!["see ya", "so long"]);
    }
}

#[cfg(test)]
#[path = "lifetime_tests.rs"]
mod lifetime_tests;
