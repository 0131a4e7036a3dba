//! Raw values to typed settings: one function per section, each pushing one line per missing or invalid value onto
//! the shared error list, so a start-up with several mistakes names all of them at once.
//!
//! Sections are read in this order: the server (public URL, port, log format, drain), the OpenAI Realtime session,
//! Twilio, the security limits, the call limits, and the outbound ring timeout; within a section, values are checked
//! in the order the section's fields are listed.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::keys::{
    DEFAULT_GOODBYE_PHRASES, DEFAULT_GREETING, DEFAULT_OPENAI_MODEL, DEFAULT_OPENAI_REALTIME_URL,
    DEFAULT_SYSTEM_MESSAGE, DEFAULT_TWILIO_API_BASE_URL, ListOrCsv, Raw,
};
use super::{
    CallSettings, ConfigError, LogFormat, RealtimeSettings, Requirement, SecuritySettings,
    Settings, TwilioSettings,
};
use crate::phone::{E164, is_e164_prefix};
use crate::realtime::session::{Eagerness, NoiseReduction, TurnDetection};

/// Turns the raw values into [`Settings`], or every problem as one line each.
pub(super) fn from_raw(mut raw: Raw, requirement: Requirement) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();
    let required = requirement == Requirement::Serve;

    let server = server(&mut errors, &mut raw, required);
    let (openai_api_key, realtime) = realtime(&mut errors, &mut raw, required);
    let (engine, live) = live(&mut errors, &mut raw);
    let twilio = twilio(&mut errors, &mut raw, required);
    let security = security(&mut errors, &mut raw);
    let calls = calls(&mut errors, &mut raw);
    let ring_timeout_s = ring_timeout_s(&mut errors, &mut raw);
    let amd = amd::amd(&mut errors, &mut raw);
    let recording = super::recording::recording(&mut errors, &mut raw);
    let webhooks = super::webhooks::webhooks(&mut errors, &mut raw, required);
    let cost = cost::cost(&mut errors, &mut raw);
    let fleet = super::fleet::fleet(&mut errors, &mut raw);
    let database_url = super::database::database_url(&mut errors, &mut raw);

    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    let Server {
        host,
        port,
        public_url,
        stream_public_url,
        trust_forwarded_headers,
        drain_timeout,
        data_dir,
        api_key,
        log_format,
    } = server;
    Ok(Settings {
        host,
        port,
        public_url,
        stream_public_url,
        trust_forwarded_headers,
        drain_timeout,
        data_dir,
        database_url,
        api_key,
        ring_timeout_s,
        amd,
        security,
        log_format,
        openai_api_key,
        realtime,
        engine,
        live,
        twilio,
        calls,
        recording,
        webhooks,
        cost,
        fleet,
        sources: Default::default(),
    })
}

/// The top-level server settings, before they are spread into [`Settings`].
struct Server {
    host: String,
    port: u16,
    public_url: Option<Url>,
    stream_public_url: Option<Url>,
    trust_forwarded_headers: bool,
    drain_timeout: Duration,
    data_dir: PathBuf,
    api_key: SecretString,
    log_format: LogFormat,
}

/// Where to listen, the public URL (required to serve unless forwarded headers are trusted), the log format and
/// the drain timeout.
fn server(errors: &mut Vec<String>, raw: &mut Raw, required: bool) -> Server {
    let trust_forwarded_headers = parse_bool(raw.trust_forwarded_headers.take(), false);
    let public_url = match nonempty(raw.public_url.take()) {
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
    let stream_public_url = nonempty(raw.stream_public_url.take()).and_then(|text| {
        parse_public_url(&text)
            .map_err(|e| {
                errors.push(e.replacen(
                    "PUBLIC_URL is invalid",
                    "CALLBRIDGE_STREAM_PUBLIC_URL is invalid",
                    1,
                ))
            })
            .ok()
    });
    let port = parse_or(errors, "PORT", raw.port.take(), 5050u16);
    let log_format = match nonempty(raw.log_format.take()).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errors.push(format!(
                "LOG_FORMAT is invalid: {other:?} (use text or json)"
            ));
            LogFormat::Text
        }
    };
    let drain_timeout_s = parse_or(
        errors,
        "CALLBRIDGE_DRAIN_TIMEOUT_S",
        raw.drain_timeout_s.take(),
        30u64,
    );
    Server {
        host: nonempty(raw.host.take()).unwrap_or_else(|| "0.0.0.0".to_owned()),
        port,
        public_url,
        stream_public_url,
        trust_forwarded_headers,
        drain_timeout: Duration::from_secs(drain_timeout_s),
        data_dir: nonempty(raw.data_dir.take())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("data")),
        api_key: SecretString::from(nonempty(raw.api_key.take()).unwrap_or_default()),
        log_format,
    }
}

/// The OpenAI API key (required to serve) and the Realtime connection and session settings.
fn realtime(
    errors: &mut Vec<String>,
    raw: &mut Raw,
    required: bool,
) -> (SecretString, RealtimeSettings) {
    let openai_api_key = nonempty(raw.openai_api_key.take());
    if openai_api_key.is_none() && required {
        errors.push("OPENAI_API_KEY is not set: the Realtime session cannot be opened".to_owned());
    }
    let url = parse_url(
        errors,
        "OPENAI_REALTIME_URL",
        raw.openai_realtime_url.take(),
        DEFAULT_OPENAI_REALTIME_URL,
        &["ws", "wss"],
    );
    let speed = parse_or(errors, "CALLBRIDGE_SPEED", raw.speed.take(), 1.0f64);
    if !(0.25..=1.5).contains(&speed) {
        errors.push(format!(
            "CALLBRIDGE_SPEED is invalid: {speed} (use 0.25 to 1.5)"
        ));
    }
    let turn_detection = turn_detection(errors, raw);
    let noise_reduction = match nonempty(raw.noise_reduction.take()).as_deref() {
        Some("none") => None,
        None => Some(NoiseReduction::NearField),
        Some(text) => text
            .parse::<NoiseReduction>()
            .map_err(|e| errors.push(format!("CALLBRIDGE_NOISE_REDUCTION is invalid: {e}")))
            .ok(),
    };
    let transcription_model = match nonempty(raw.transcription_model.take()) {
        Some(model) if model == "none" => None,
        Some(model) => Some(model),
        None => Some(super::keys::DEFAULT_TRANSCRIPTION_MODEL.to_owned()),
    };
    let goodbye_phrases = raw
        .goodbye_phrases
        .take()
        .map(ListOrCsv::into_vec)
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| {
            DEFAULT_GOODBYE_PHRASES
                .iter()
                .map(|&p| p.to_owned())
                .collect()
        });
    let sessions = sessions::session_lifetime(errors, raw);
    let truncation = sessions::truncation(errors, raw);
    let realtime = RealtimeSettings {
        url,
        model: nonempty(raw.openai_model.take()).unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_owned()),
        system_message: nonempty(raw.system_message.take())
            .unwrap_or_else(|| DEFAULT_SYSTEM_MESSAGE.to_owned()),
        voice: voice(errors, raw.voice.take()),
        speed,
        assistant_speaks_first: parse_bool(raw.assistant_speaks_first.take(), true),
        greeting: nonempty(raw.greeting.take()).unwrap_or_else(|| DEFAULT_GREETING.to_owned()),
        turn_detection,
        noise_reduction,
        transcription_model,
        goodbye_phrases,
        sessions,
        truncation,
    };
    (
        SecretString::from(openai_api_key.unwrap_or_default()),
        realtime,
    )
}

/// The default engine and the GPT-Live settings. The voice must be one of `openai.types.live.BuiltInVoice`.
fn live(errors: &mut Vec<String>, raw: &mut Raw) -> (super::Engine, super::LiveSettings) {
    let engine = match nonempty(raw.engine.take()) {
        None => super::Engine::Realtime,
        Some(text) => text.parse().unwrap_or_else(|e| {
            errors.push(format!("CALLBRIDGE_ENGINE is invalid: {e}"));
            super::Engine::Realtime
        }),
    };
    let url = parse_url(
        errors,
        "CALLBRIDGE_LIVE_URL",
        raw.live_url.take(),
        super::keys::DEFAULT_OPENAI_LIVE_URL,
        &["ws", "wss"],
    );
    let voice = nonempty(raw.live_voice.take()).unwrap_or_else(|| "marin".to_owned());
    if !LIVE_VOICES.contains(&voice.as_str()) {
        errors.push(format!(
            "CALLBRIDGE_LIVE_VOICE is invalid: {voice:?} (GPT-Live's voices are {})",
            LIVE_VOICES.join(", ")
        ));
    }
    let live = super::LiveSettings {
        url,
        model: nonempty(raw.live_model.take())
            .unwrap_or_else(|| super::keys::DEFAULT_LIVE_MODEL.to_owned()),
        voice,
        backend_model: nonempty(raw.live_backend_model.take())
            .unwrap_or_else(|| super::keys::DEFAULT_LIVE_BACKEND_MODEL.to_owned()),
    };
    (engine, live)
}

/// GPT-Live's built-in voices, as `openai.types.live.BuiltInVoice` (openai 3.57) lists them.
pub const LIVE_VOICES: [&str; 23] = [
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone", "tempo",
    "verse", "vesper", "willow",
];

/// The built-in voices of the OpenAI Realtime API (`session.audio.output.voice`), as OpenAI's API reference lists
/// them: <https://platform.openai.com/docs/api-reference/realtime-client-events/session/update> (mirrored in the
/// official SDKs, e.g. <https://rubydoc.info/gems/openai/OpenAI/Models/Realtime/RealtimeResponseCreateAudioOutput/Output/Voice>).
pub const REALTIME_VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

/// The voice (default `marin`); anything but one of [`REALTIME_VOICES`] is refused, with the closest one when it
/// looks like a typo.
fn voice(errors: &mut Vec<String>, raw: Option<String>) -> String {
    let Some(voice) = nonempty(raw) else {
        return "marin".to_owned();
    };
    if !REALTIME_VOICES.contains(&voice.as_str()) {
        let near = super::sources::closest(&voice, REALTIME_VOICES)
            .map(|near| format!("did you mean {near}? "))
            .unwrap_or_default();
        errors.push(format!(
            "VOICE is invalid: {voice:?} ({near}OpenAI Realtime's voices are {})",
            REALTIME_VOICES.join(", ")
        ));
    }
    voice
}

/// Server VAD (the default) with its threshold, padding, silence and idle timeout, or semantic VAD with its
/// eagerness.
fn turn_detection(errors: &mut Vec<String>, raw: &mut Raw) -> TurnDetection {
    match nonempty(raw.turn_detection.take()).as_deref() {
        None | Some("server_vad") => {
            let threshold = parse_or(
                errors,
                "CALLBRIDGE_VAD_THRESHOLD",
                raw.vad_threshold.take(),
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
                    errors,
                    "CALLBRIDGE_VAD_PREFIX_PADDING_MS",
                    raw.vad_prefix_padding_ms.take(),
                    300u32,
                ),
                silence_duration_ms: parse_or(
                    errors,
                    "CALLBRIDGE_VAD_SILENCE_DURATION_MS",
                    raw.vad_silence_duration_ms.take(),
                    500u32,
                ),
                idle_timeout_ms: nonempty(raw.vad_idle_timeout_ms.take()).and_then(|text| {
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
                errors,
                "CALLBRIDGE_VAD_EAGERNESS",
                raw.vad_eagerness.take(),
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
    }
}

/// The auth token (required to serve), the account SID, the Twilio number and the REST base URL.
fn twilio(errors: &mut Vec<String>, raw: &mut Raw, required: bool) -> TwilioSettings {
    let auth_token = nonempty(raw.twilio_auth_token.take());
    if auth_token.is_none() && required {
        errors
            .push("TWILIO_AUTH_TOKEN is not set: webhook signatures cannot be checked".to_owned());
    }
    let account_sid = nonempty(raw.twilio_account_sid.take());
    if let Some(sid) = &account_sid
        && !(sid.starts_with("AC") && sid.len() == 34)
    {
        errors.push(format!(
            "TWILIO_ACCOUNT_SID is invalid: expected AC followed by 32 hex characters, got {} characters",
            sid.len()
        ));
    }
    let phone_number = nonempty(raw.twilio_phone_number.take());
    if let Some(number) = &phone_number
        && E164::parse(number).is_err()
    {
        errors.push(format!(
            "TWILIO_PHONE_NUMBER is invalid: expected E.164 such as +14155550100, got {number:?}"
        ));
    }
    let api_base_url = parse_url(
        errors,
        "TWILIO_API_BASE_URL",
        raw.twilio_api_base_url.take(),
        DEFAULT_TWILIO_API_BASE_URL,
        &["http", "https"],
    );
    let signing_keys = signing_keys(errors, raw.twilio_signing_keys.take());
    TwilioSettings {
        account_sid,
        auth_token: SecretString::from(auth_token.unwrap_or_default()),
        signing_keys,
        phone_number,
        api_base_url,
    }
}

/// The SharedKey secrets of `CALLBRIDGE_TWILIO_SIGNING_KEYS`: `key_id=secret` items (split at the first `=`, so a
/// secret may hold `=`), each id once. An error names the item by its id only, never its secret.
fn signing_keys(errors: &mut Vec<String>, raw: Option<ListOrCsv>) -> Vec<(String, SecretString)> {
    let mut keys: Vec<(String, SecretString)> = Vec::new();
    for (n, item) in raw
        .map(ListOrCsv::into_vec)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some((id, secret)) = item
            .split_once('=')
            .map(|(id, secret)| (id.trim(), secret.trim()))
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
        else {
            errors.push(format!(
                "CALLBRIDGE_TWILIO_SIGNING_KEYS is invalid: item {} is not key_id=secret",
                n + 1
            ));
            continue;
        };
        if keys.iter().any(|(known, _)| known == id) {
            errors.push(format!(
                "CALLBRIDGE_TWILIO_SIGNING_KEYS is invalid: key id {id:?} is given twice"
            ));
            continue;
        }
        keys.push((id.to_owned(), SecretString::from(secret.to_owned())));
    }
    keys
}

/// The allow-lists (E.164 numbers and prefixes), the outbound budget, the caps and rate limits, and the stream and
/// body deadlines.
fn security(errors: &mut Vec<String>, raw: &mut Raw) -> SecuritySettings {
    let security = SecuritySettings {
        allowed_callers: e164_list(
            errors,
            "CALLBRIDGE_ALLOWED_CALLERS",
            raw.allowed_callers.take(),
            false,
        ),
        outbound_allowed_prefixes: e164_list(
            errors,
            "CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES",
            raw.outbound_allowed_prefixes.take(),
            true,
        ),
        outbound_allowed_numbers: e164_list(
            errors,
            "CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS",
            raw.outbound_allowed_numbers.take(),
            false,
        ),
        daily_outbound_budget: parse_or(
            errors,
            "CALLBRIDGE_DAILY_OUTBOUND_BUDGET",
            raw.daily_outbound_budget.take(),
            50u32,
        ),
        max_concurrent_calls: parse_or(
            errors,
            "CALLBRIDGE_MAX_CONCURRENT_CALLS",
            raw.max_concurrent_calls.take(),
            10u32,
        ),
        webhook_rate_limit_per_min: parse_or(
            errors,
            "CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN",
            raw.webhook_rate_limit_per_min.take(),
            120u32,
        ),
        api_rate_limit_per_min: parse_or(
            errors,
            "CALLBRIDGE_API_RATE_LIMIT_PER_MIN",
            raw.api_rate_limit_per_min.take(),
            120u32,
        ),
        stream_idle_timeout: Duration::from_secs(parse_or(
            errors,
            "CALLBRIDGE_STREAM_IDLE_TIMEOUT_S",
            raw.stream_idle_timeout_s.take(),
            10u64,
        )),
        max_body_bytes: parse_or(
            errors,
            "CALLBRIDGE_MAX_BODY_BYTES",
            raw.max_body_bytes.take(),
            64 * 1024usize,
        ),
        body_timeout: Duration::from_secs(parse_or(
            errors,
            "CALLBRIDGE_BODY_TIMEOUT_S",
            raw.body_timeout_s.take(),
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
        errors.push("CALLBRIDGE_STREAM_IDLE_TIMEOUT_S is invalid: 0 (use at least 1)".to_owned());
    }
    security
}

/// A list of E.164 numbers (or, with `prefix`, E.164 prefixes); each bad item is one error line.
fn e164_list(
    errors: &mut Vec<String>,
    name: &str,
    raw: Option<ListOrCsv>,
    prefix: bool,
) -> Vec<String> {
    let list = raw.map(ListOrCsv::into_vec).unwrap_or_default();
    for item in &list {
        let ok = if prefix {
            is_e164_prefix(item)
        } else {
            E164::parse(item).is_ok()
        };
        if !ok {
            errors.push(format!(
                "{name} is invalid: {item:?} (use E.164{}, e.g. +14155550100)",
                if prefix { " prefixes" } else { " numbers" }
            ));
        }
    }
    list
}

/// The call limits and timings: the maximum duration, the stream-token lifetime, the farewell grace, the largest
/// frame and the peer stall timeout.
fn calls(errors: &mut Vec<String>, raw: &mut Raw) -> CallSettings {
    let max_call_duration_s = parse_at_least(
        errors,
        "CALLBRIDGE_MAX_CALL_DURATION_S",
        raw.max_call_duration_s.take(),
        1800u64,
        1,
    );
    let stream_token_ttl_s = parse_at_least(
        errors,
        "CALLBRIDGE_STREAM_TOKEN_TTL_S",
        raw.stream_token_ttl_s.take(),
        60u64,
        1,
    );
    let farewell_grace_ms = parse_or(
        errors,
        "CALLBRIDGE_FAREWELL_GRACE_MS",
        raw.farewell_grace_ms.take(),
        2000u64,
    );
    let max_frame_bytes = parse_at_least(
        errors,
        "CALLBRIDGE_MAX_FRAME_BYTES",
        raw.max_frame_bytes.take(),
        64 * 1024usize,
        1024,
    );
    let peer_stall_timeout_ms = parse_at_least(
        errors,
        "CALLBRIDGE_PEER_STALL_TIMEOUT_MS",
        raw.peer_stall_timeout_ms.take(),
        5000u64,
        100,
    );
    let transfer_targets = crate::twilio::dial::parse_targets(
        &raw.transfer_targets
            .take()
            .map(ListOrCsv::into_vec)
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| {
        errors.push(format!("CALLBRIDGE_TRANSFER_TARGETS is invalid: {e}"));
        Vec::new()
    });
    let voice_mcp_servers = match raw.voice_mcp_servers.take() {
        None => Ok(Default::default()),
        Some(super::keys::JsonOrTables::Json(text)) => {
            crate::realtime::mcp_tools::VoiceMcpServers::parse_json(&text)
        }
        Some(super::keys::JsonOrTables::Tables(entries)) => {
            crate::realtime::mcp_tools::VoiceMcpServers::parse(entries)
        }
    }
    .unwrap_or_else(|e| {
        errors.push(format!("CALLBRIDGE_VOICE_MCP_SERVERS is invalid: {e}"));
        Default::default()
    });
    CallSettings {
        transfer_targets,
        voice_mcp_servers,
        max_call_duration: Duration::from_secs(max_call_duration_s),
        stream_token_ttl: Duration::from_secs(stream_token_ttl_s),
        farewell_grace: Duration::from_millis(farewell_grace_ms),
        max_frame_bytes,
        peer_stall_timeout: Duration::from_millis(peer_stall_timeout_ms),
    }
}

/// How long an outbound call rings: Twilio's `Timeout` takes 5 to 600 seconds.
fn ring_timeout_s(errors: &mut Vec<String>, raw: &mut Raw) -> u32 {
    let ring_timeout_s = parse_or(
        errors,
        "CALLBRIDGE_RING_TIMEOUT_S",
        raw.ring_timeout_s.take(),
        30u32,
    );
    if !(5..=600).contains(&ring_timeout_s) {
        errors.push(format!(
            "CALLBRIDGE_RING_TIMEOUT_S is invalid: {ring_timeout_s} (Twilio takes 5 to 600)"
        ));
    }
    ring_timeout_s
}

pub(super) fn nonempty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) fn parse_or<T: std::str::FromStr>(
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

/// [`parse_or`], and a value under `min` is refused too (`NAME is invalid: 0 (use at least 1)`).
fn parse_at_least<T>(
    errors: &mut Vec<String>,
    name: &str,
    raw: Option<String>,
    default: T,
    min: T,
) -> T
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let value = parse_or(errors, name, raw, default);
    if value < min {
        errors.push(format!("{name} is invalid: {value} (use at least {min})"));
    }
    value
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

/// Parses `PUBLIC_URL`: https (http only for a loopback host, for local tests), a host, no query or fragment; a
/// trailing slash is dropped.
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
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(format!(
            "PUBLIC_URL is invalid: {text:?} (must be https://: Twilio streams only to wss://; http:// is accepted \
             only for a loopback host such as http://127.0.0.1:5050, for local tests)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "PUBLIC_URL is invalid: {text:?} (no query string or fragment)"
        ));
    }
    Ok(url)
}

/// Whether the URL's host is `localhost` or a loopback address (`127.0.0.0/8`, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[path = "load_amd.rs"]
mod amd;
#[path = "load_cost.rs"]
mod cost;
#[path = "load_sessions.rs"]
mod sessions;
