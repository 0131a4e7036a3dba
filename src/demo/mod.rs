//! `callbridge demo`: a whole call on this machine, with no account, no key and no network.
//!
//! [`run`] starts three things on loopback ports and lets them talk:
//! - the real server ([`crate::startup::Application`]), with its Realtime URL pointed at
//! - [`standin::StandIn`], a local stand-in for the OpenAI Realtime API (it is not OpenAI): it answers with
//!   synthesized speech compiled into the binary ([`script`]), detects the caller's speech by energy
//!   ([`session::EnergyVad`]), and calls `end_call` after its goodbye;
//! - [`crate::simulate::run`], the Twilio stand-in of `callbridge simulate`, which signs the webhook, opens the media
//!   stream and plays the caller's speech in real time, talking over the assistant's answer (a barge-in).
//!
//! It returns a [`DemoReport`]: one timeline of both stand-ins' views, and the call record read back from the
//! database. The records go to a fresh temporary directory unless [`DemoOptions::data_dir`] names one; the user's
//! settings (`.env`, `callbridge.toml`, the environment) are not read, so no real key or database is touched.

pub mod script;
pub mod session;
pub mod standin;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::calls::Speaker;
use crate::calls::model::{CallStatus, CallView};
use crate::calls::store::CallStore;
use crate::config::{Requirement, Settings};
use crate::simulate::{SimulateOptions, SimulationReport};
use crate::startup::Application;

/// The simulator hangs up if the call has not ended by then (the scripted call lasts about 15 s).
const MAX_CALL: Duration = Duration::from_secs(40);
/// How long the server gets to shut down and write the record once the call is over.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Where to keep the call records (`DIR/callbridge.db`); `None`: a temporary directory, removed afterwards.
    pub data_dir: Option<PathBuf>,
    /// Save what the assistant said as an 8 kHz 16-bit WAV file.
    pub save_audio: Option<PathBuf>,
}

/// Who a timeline line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The simulated Twilio (what Twilio would see: webhook, stream, audio, clear, marks).
    Twilio,
    /// The local stand-in for OpenAI Realtime.
    StandIn,
}

/// The demo's result.
#[derive(Debug)]
pub struct DemoReport {
    /// The Realtime URL the server was pointed at (the stand-in's).
    pub standin_url: String,
    /// Where the server listened.
    pub server_url: String,
    /// What the simulated Twilio observed, with its timings.
    pub simulation: SimulationReport,
    /// Both sides' lines, from the webhook on, in order.
    pub timeline: Vec<(Duration, Side, String)>,
    /// The database file the record was written to.
    pub database: PathBuf,
    /// Whether the database is kept (a `data_dir` was given) or was removed.
    pub database_kept: bool,
    /// The call as stored, read back from the database; `None` if it was not found.
    pub record: Option<CallView>,
}

impl DemoReport {
    /// What did not happen as it should, one sentence each; empty when the call completed with a barge-in, was
    /// stored, and ended with the goodbye.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(record) = &self.record else {
            return vec![format!(
                "the call {} was not found in {}",
                self.simulation.call_sid,
                self.database.display()
            )];
        };
        if record.status != CallStatus::Completed {
            problems.push(format!(
                "the call's status is {}, not completed",
                record.status
            ));
        }
        if record.end_reason.as_deref() != Some("goodbye") {
            problems.push(format!(
                "the call ended with {:?}, not with the goodbye",
                record.end_reason.as_deref().unwrap_or("no end reason")
            ));
        }
        let offer = script::ASSISTANT_OFFER.text;
        let offer_cut = record.transcript.iter().any(|turn| {
            turn.speaker == Speaker::Assistant
                && turn.interrupted
                && turn.text.len() < offer.len()
                && offer.starts_with(turn.text.as_str())
        });
        if !offer_cut {
            problems.push(
                "the assistant's answer was not cut short in the record: the barge-in did not happen".to_owned(),
            );
        }
        if self.simulation.barge_in_to_clear.is_none() {
            problems.push(
                "the server sent no clear after the caller talked over the answer".to_owned(),
            );
        }
        problems
    }
}

/// A fresh directory under the system's temporary directory.
fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("callbridge-demo-{}-{nanos}", std::process::id()))
}

/// Runs the demo call; see the module docs. Must run inside a tokio runtime.
///
/// # Errors
/// When a loopback port cannot be bound, the server cannot start (an unusable `data_dir`), or the simulated call
/// cannot be placed.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    let standin = standin::StandIn::start()
        .await
        .context("cannot start the local stand-in for OpenAI")?;
    let (data_dir, database_kept) = match options.data_dir {
        Some(dir) => (dir, true),
        None => (temp_dir(), false),
    };
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    let port = listener.local_addr()?.port();
    let server_url = format!("http://127.0.0.1:{port}");
    let auth_token = crate::simulate::webhook::random_hex_id("demo");
    let env: std::collections::HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", auth_token.as_str()),
        // Sent to the stand-in only; it checks nothing.
        ("OPENAI_API_KEY", "demo-no-key"),
        ("OPENAI_REALTIME_URL", standin.url().as_str()),
        ("PUBLIC_URL", server_url.as_str()),
        ("CALLBRIDGE_HOST", "127.0.0.1"),
        (
            "CALLBRIDGE_DATA_DIR",
            data_dir.display().to_string().as_str(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = Settings::load(&env, None, Requirement::Serve)
        .map_err(|e| anyhow::anyhow!("the demo's settings are invalid: {e}"))?;
    let database = settings.database_path();
    let app = Application::build_with_listener(settings, listener).await?;
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    let mut simulate = SimulateOptions::new(
        &server_url,
        &server_url,
        &auth_token,
        script::caller_audio(),
    );
    simulate.barge_in_at = Some(script::barge_in_at());
    simulate.barge_in_audio = Some(script::CALLER_BARGE_IN.audio.to_vec());
    simulate.max_duration = MAX_CALL;
    simulate.save_audio = options.save_audio;
    let origin = Instant::now();
    let simulated = crate::simulate::run(simulate).await;

    let _ = stop_server.send(());
    let shutdown = tokio::time::timeout(SHUTDOWN_TIMEOUT, server).await;
    standin.stop();
    let simulation = simulated.context("the simulated call failed")?;
    if shutdown.is_err() {
        tracing::warn!("the demo server did not stop in time");
    }
    let record = CallStore::open(&database)
        .ok()
        .and_then(|store| store.get_by_call_sid(&simulation.call_sid).ok().flatten());
    if !database_kept {
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    let mut timeline: Vec<(Duration, Side, String)> = simulation
        .timeline
        .iter()
        .map(|(at, line)| (*at, Side::Twilio, line.clone()))
        .collect();
    timeline.extend(
        standin
            .notes()
            .into_iter()
            .map(|(at, line)| (at.saturating_duration_since(origin), Side::StandIn, line)),
    );
    timeline.sort_by_key(|(at, _, _)| *at);
    Ok(DemoReport {
        standin_url: standin.url(),
        server_url,
        simulation,
        timeline,
        database,
        database_kept,
        record,
    })
}
