//! `simulate` plays Twilio against a running callbridge, so a setup (including the real OpenAI session) can be
//! tested with no phone. It is the engine of `callbridge simulate` and the integration tests' Twilio media client.
//!
//! Two layers:
//! - low level, one piece of Twilio each: [`WebhookCall`] signs and posts the incoming-call webhook and reads the
//!   TwiML; [`MediaStreamClient`] speaks the Media Stream like Twilio (real-time 20 ms caller frames, a playback
//!   model that echoes marks when their audio has played, `clear` handling); [`audio`] has the μ-law codec and WAV
//!   I/O;
//! - high level: [`run`] strings them into a whole call and returns a [`SimulationReport`] of timings.
//!
//! The simulator cannot see the transcript (it lives on the server's side: its end-of-call log line and the call
//! record); it reports what Twilio could observe.

pub mod audio;
pub mod cli;
pub mod media_client;
pub mod observation;
pub mod playback_model;
pub mod scenario;
pub mod webhook;

pub use audio::{mulaw_decode, mulaw_encode, read_wav_as_mulaw, write_mulaw_as_wav};
pub use media_client::{MediaClientConfig, MediaStreamClient, Observation, ObservedEvent};
pub use playback_model::PlaybackModel;
pub use scenario::{SimulateOptions, SimulationReport, run};
pub use webhook::{
    ConnectStream, WebhookAnswer, WebhookCall, local_stream_url, parse_connect_stream,
};

/// Everything that can stop a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The webhook request could not be sent or its answer read (connection refused, timeout, ...).
    #[error("the webhook request failed: {0}")]
    Http(String),
    /// The webhook answered with a status other than 200 (403 usually means the auth token or the public URL
    /// differ from the server's).
    #[error("the webhook answered HTTP {status}: {body}")]
    WebhookRejected {
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The TwiML is malformed or holds no `<Connect><Stream>`.
    #[error("unusable TwiML: {0}")]
    Twiml(String),
    /// A URL that cannot be used.
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// The server refused the Media Stream WebSocket upgrade with this HTTP status (callbridge: 403 for an unknown,
    /// used or expired stream token).
    #[error("the media stream upgrade was refused with HTTP {0}")]
    Rejected(u16),
    /// The Media Stream WebSocket failed.
    #[error("media stream WebSocket error: {0}")]
    WebSocket(String),
    /// The Media Stream is already closed.
    #[error("the media stream is closed")]
    Closed,
    /// A WAV file cannot be read or written, or holds a format the simulator does not take.
    #[error("WAV file {path}: {reason}")]
    Wav {
        /// The file.
        path: String,
        /// What is wrong, and what is expected.
        reason: String,
    },
    /// A file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
