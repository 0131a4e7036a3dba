//! `callbridge simulate`: the command-line front of [`super::run`]. Settings (`PORT`, `PUBLIC_URL`,
//! `TWILIO_AUTH_TOKEN`) come from the same sources as the server's, so with one `.env` the simulator signs exactly
//! what the server checks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use secrecy::ExposeSecret;

use super::{SimulateError, SimulateOptions, read_wav_as_mulaw, run};
use crate::config::{Requirement, Settings};

/// Arguments of `callbridge simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The caller's audio: a WAV file (8 kHz mono 16-bit PCM or μ-law; other PCM is resampled) or raw 8 kHz μ-law
    /// (`.ulaw`, `.mulaw`, `.raw`).
    #[arg(long, value_name = "FILE")]
    pub audio: PathBuf,
    /// Where the server listens [default: http://127.0.0.1:PORT].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The public URL the server checks signatures against [default: PUBLIC_URL, else --server].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Talk over the assistant this many seconds after the stream starts.
    #[arg(long, value_name = "SECONDS")]
    pub barge_in_at: Option<f64>,
    /// What to say at the barge-in [default: --audio again].
    #[arg(long, value_name = "FILE")]
    pub barge_in_audio: Option<PathBuf>,
    /// Save what the assistant said as a WAV file (8 kHz, 16-bit PCM).
    #[arg(long, value_name = "FILE")]
    pub save_audio: Option<PathBuf>,
    /// Hang up after this many seconds if the server has not ended the call.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub max_duration: f64,
    /// The caller's number (E.164).
    #[arg(long, default_value = "+15550100001")]
    pub from: String,
    /// The called number (E.164) [default: TWILIO_PHONE_NUMBER, else +15550100002].
    #[arg(long)]
    pub to: Option<String>,
}

/// Reads raw μ-law or a WAV file, by extension.
fn read_audio(path: &Path) -> Result<Vec<u8>, String> {
    let raw = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "ulaw" | "mulaw" | "raw"));
    if raw {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    } else {
        read_wav_as_mulaw(path).map_err(|e| match e {
            SimulateError::Io(e) => format!("cannot read {}: {e}", path.display()),
            other => other.to_string(),
        })
    }
}

/// What to check for a call the server ended with `error:<what>`, by the commonest causes.
pub fn failure_hint(end_reason: &str) -> &'static str {
    match end_reason.strip_prefix("error:").unwrap_or(end_reason) {
        "invalid_api_key" => {
            "OpenAI refused the server's OPENAI_API_KEY: set a valid key (https://platform.openai.com/api-keys) \
             in the server's .env and restart it"
        }
        "insufficient_quota" | "billing_hard_limit_reached" => {
            "the OpenAI account has no quota left: check its billing and limits \
             (https://platform.openai.com/settings/organization/billing)"
        }
        "account_deactivated" => "the OpenAI account of OPENAI_API_KEY is deactivated",
        "model_not_found" => {
            "OpenAI does not know OPENAI_MODEL, or the key's project has no access to it"
        }
        "openai_unavailable" => {
            "the server could not reach OpenAI Realtime: check its network (proxy, firewall, DNS) and \
             OPENAI_REALTIME_URL; the server log's `cannot open the OpenAI Realtime session` line says why"
        }
        "openai_closed" | "openai_stalled" => {
            "OpenAI ended the session during the call: the server log has its error"
        }
        _ => {
            "the server log's `call ended` line and `callbridge calls show CALLSID` have the details"
        }
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a positive number of seconds"))
}

/// Runs `callbridge simulate` and prints the report. Exit code 0 when the call ran; 1 when it could not, or when the
/// server ended it with an error (`error:invalid_api_key`, ...: printed with a hint); 2 for bad arguments or
/// settings.
pub async fn run_cli(args: SimulateArgs) -> ExitCode {
    match build_options(args) {
        Err(message) => {
            eprintln!("callbridge simulate: {message}");
            ExitCode::from(2)
        }
        Ok(options) => {
            let server_url = options.server_url.clone();
            eprintln!(
                "Calling {} (signed for {}) with {:.1} s of caller audio...",
                options.server_url,
                options.public_url,
                options.audio.len() as f64 / 8000.0
            );
            match run(options).await {
                Ok(report) => {
                    println!("{report}");
                    match report
                        .end_reason
                        .filter(|reason| reason.starts_with("error:"))
                    {
                        Some(reason) => {
                            eprintln!(
                                "callbridge simulate: the call failed: the server ended it with {reason}"
                            );
                            eprintln!("hint: {}", failure_hint(&reason));
                            ExitCode::FAILURE
                        }
                        None => ExitCode::SUCCESS,
                    }
                }
                Err(e) => {
                    eprintln!("callbridge simulate: {e}");
                    if let SimulateError::Http(_) = e {
                        eprintln!(
                            "hint: is the server running at {server_url}? Start it in another terminal with \
                             `make dev` (or `callbridge serve`), or name another one with --server"
                        );
                    }
                    if e.to_string().contains("403") {
                        eprintln!(
                            "hint: a 403 means the signature did not match: --public-url (PUBLIC_URL) and \
                             TWILIO_AUTH_TOKEN must be the server's"
                        );
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn build_options(args: SimulateArgs) -> Result<SimulateOptions, String> {
    let settings = Settings::from_process(Requirement::Nothing).map_err(|e| e.to_string())?;
    let auth_token = settings.twilio.auth_token.expose_secret().to_owned();
    if auth_token.is_empty() {
        return Err("TWILIO_AUTH_TOKEN is not set: the webhook cannot be signed".into());
    }
    let server_url = args
        .server
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.port));
    let public_url = args
        .public_url
        .or_else(|| {
            settings
                .public_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| server_url.clone());
    let mut options = SimulateOptions::new(
        &server_url,
        &public_url,
        &auth_token,
        read_audio(&args.audio)?,
    );
    options.barge_in_at = args
        .barge_in_at
        .map(|s| seconds("barge-in-at", s))
        .transpose()?;
    options.barge_in_audio = args.barge_in_audio.as_deref().map(read_audio).transpose()?;
    options.save_audio = args.save_audio;
    options.max_duration = seconds("max-duration", args.max_duration)?;
    options.from = args.from;
    options.to = args
        .to
        .or(settings.twilio.phone_number)
        .unwrap_or_else(|| "+15550100002".to_owned());
    Ok(options)
}
