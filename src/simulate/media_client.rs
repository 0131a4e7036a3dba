//! Twilio's side of a bidirectional Media Stream: a WebSocket client that behaves like Twilio towards callbridge.
//!
//! Follows <https://www.twilio.com/docs/voice/media-streams/websocket-messages>. The client sends `connected`,
//! `start`, `media` (caller audio in 160-byte / 20 ms frames, paced in real time), `dtmf`, `mark` echoes and `stop`;
//! it receives `media`, `mark` and `clear` and models playback on a phone: assistant audio plays at 8 bytes per ms
//! from when it arrives, in order; a mark is echoed when playback reaches it; `clear` drops what has not played and
//! echoes every pending mark at once.
//!
//! A spawned task owns the socket; [`MediaStreamClient`] is the handle. Every observation is recorded with the
//! instant it happened, so tests can assert on order and timing, and [`MediaStreamClient::wait_for`] waits for one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{
    self, Message, client::IntoClientRequest as _, http::HeaderValue,
};

use super::SimulateError;
use super::audio::MULAW_SILENCE;
pub use super::observation::{Observation, ObservedEvent};
use super::playback_model::{PlaybackModel, PlaybackOutput};
use super::webhook::random_hex_id;

/// One caller audio frame: 20 ms of 8 kHz μ-law.
pub const FRAME_BYTES: usize = 160;

/// The time one frame covers; Twilio sends one frame per period.
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// How the client behaves beyond what every Twilio stream does.
#[derive(Debug, Clone)]
pub struct MediaClientConfig {
    /// Send μ-law silence (`0xFF`) frames whenever no caller audio is queued, as a live phone line does.
    /// Turn off for tests that want the server to see only the audio they queue.
    pub fill_silence: bool,
    /// `accountSid` in `start` and `stop`.
    pub account_sid: String,
    /// Value for the `X-Twilio-Signature` header of the WebSocket upgrade (Twilio signs the stream URL alone);
    /// `None` sends no such header.
    pub upgrade_signature: Option<String>,
}

impl Default for MediaClientConfig {
    fn default() -> Self {
        Self {
            fill_silence: true,
            account_sid: random_hex_id("AC"),
            upgrade_signature: None,
        }
    }
}

/// A connected Media Stream, Twilio's side. Dropping it closes the socket.
#[derive(Debug)]
pub struct MediaStreamClient {
    /// State shared with the socket task.
    inner: Arc<Inner>,
    /// Orders for the socket task.
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
struct Inner {
    /// Everything the task and the handle share; never held across an `.await`.
    state: Mutex<SharedState>,
    /// Bumped after every recorded event, to wake [`MediaStreamClient::wait_for`].
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct SharedState {
    events: Vec<ObservedEvent>,
    playback: PlaybackModel,
    /// Caller audio not yet sent, raw μ-law.
    caller_audio: VecDeque<u8>,
    /// Caller audio bytes sent since the last `CallerAudioSent`.
    caller_audio_sent_bytes: usize,
    /// Every assistant μ-law byte received.
    assistant_audio: Vec<u8>,
    stream_sid: Option<String>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        // A panic while holding this lock can only come from a bug in this module; keep going with the data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, kind: Observation) {
        self.record_at(Instant::now(), kind);
    }

    fn record_at(&self, at: Instant, kind: Observation) {
        tracing::debug!(?kind, "media stream client observation");
        self.lock().events.push(ObservedEvent { at, kind });
        self.changed.send_modify(|count| *count += 1);
    }
}

#[derive(Debug)]
struct Command {
    action: Action,
    done: oneshot::Sender<Result<(), SimulateError>>,
}

#[derive(Debug)]
enum Action {
    Start {
        call_sid: String,
        custom_parameters: Vec<(String, String)>,
    },
    Dtmf(char),
    RawText(String),
    RawBinary(Vec<u8>),
    Stop,
}

impl MediaStreamClient {
    /// Opens the stream WebSocket (`ws://` or `wss://`) with the default [`MediaClientConfig`].
    ///
    /// # Errors
    ///
    /// See [`Self::connect_with`].
    pub async fn connect(ws_url: &str) -> Result<Self, SimulateError> {
        Self::connect_with(ws_url, MediaClientConfig::default()).await
    }

    /// Opens the stream WebSocket and spawns the task that owns it. Nothing is sent until [`Self::start`].
    ///
    /// # Errors
    ///
    /// [`SimulateError::Rejected`] with the HTTP status when the server refuses the upgrade (callbridge answers
    /// 403 to an unknown, used or expired stream token); [`SimulateError::BadUrl`] for a URL or header that cannot
    /// be sent; [`SimulateError::WebSocket`] when the connection fails otherwise.
    pub async fn connect_with(
        ws_url: &str,
        config: MediaClientConfig,
    ) -> Result<Self, SimulateError> {
        let mut request = ws_url
            .into_client_request()
            .map_err(|error| SimulateError::BadUrl(format!("{ws_url:?}: {error}")))?;
        if let Some(signature) = &config.upgrade_signature {
            let value = HeaderValue::from_str(signature).map_err(|error| {
                SimulateError::BadUrl(format!("X-Twilio-Signature {signature:?}: {error}"))
            })?;
            request.headers_mut().insert("X-Twilio-Signature", value);
        }
        // Nagle off, as Twilio's media servers would: mark echoes are small frames that must leave at once.
        let (socket, _response) =
            match tokio_tungstenite::connect_async_with_config(request, None, true).await {
                Ok(connected) => connected,
                Err(tungstenite::Error::Http(response)) => {
                    return Err(SimulateError::Rejected(response.status().as_u16()));
                }
                Err(error) => {
                    return Err(SimulateError::WebSocket(format!(
                        "connecting to {ws_url}: {error}"
                    )));
                }
            };
        tracing::debug!(url = %ws_url, "media stream connected");
        let now = Instant::now();
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(SharedState {
                events: Vec::new(),
                playback: PlaybackModel::new(now),
                caller_audio: VecDeque::new(),
                caller_audio_sent_bytes: 0,
                assistant_audio: Vec::new(),
                stream_sid: None,
            }),
            changed,
        });
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let task = SocketTask {
            socket,
            inner: Arc::clone(&inner),
            commands: command_receiver,
            config,
            sequence_number: 0,
            pacing: None,
            closing: false,
            closed_recorded: false,
            call_sid: String::new(),
        };
        tokio::spawn(task.run());
        Ok(Self { inner, commands })
    }

    /// Sends `connected`, then `start` with a fresh StreamSid, this CallSid and these `customParameters`, and starts
    /// sending caller audio frames (queued audio, else silence when [`MediaClientConfig::fill_silence`]).
    ///
    /// # Errors
    ///
    /// [`SimulateError::Closed`] when the socket is already closed; [`SimulateError::WebSocket`] when sending fails.
    pub async fn start(
        &self,
        call_sid: &str,
        custom_parameters: &[(String, String)],
    ) -> Result<(), SimulateError> {
        self.command(Action::Start {
            call_sid: call_sid.to_owned(),
            custom_parameters: custom_parameters.to_vec(),
        })
        .await
    }

    /// Queues caller audio (raw 8 kHz μ-law) after anything queued earlier; it is sent in 160-byte frames, one every
    /// 20 ms, once the stream has started. A last partial frame is padded with silence.
    pub fn send_audio(&self, mulaw: &[u8]) {
        self.inner.lock().caller_audio.extend(mulaw.iter().copied());
    }

    /// Drops the caller audio not yet sent and queues this instead: the caller starts saying something else now
    /// (a barge-in). Returns how many unsent bytes were dropped.
    pub fn replace_audio(&self, mulaw: &[u8]) -> usize {
        let mut state = self.inner.lock();
        let dropped = state.caller_audio.len();
        state.caller_audio.clear();
        state.caller_audio.extend(mulaw.iter().copied());
        dropped
    }

    /// Caller audio queued and not yet sent, in bytes.
    pub fn unsent_audio_bytes(&self) -> usize {
        self.inner.lock().caller_audio.len()
    }

    /// Sends a `dtmf` message for one key (`0-9`, `*`, `#`), as Twilio does when the caller presses it.
    /// Failures are recorded (a closed socket shows as [`Observation::Closed`]) rather than returned.
    pub async fn send_dtmf(&self, digit: char) {
        self.command_logged(Action::Dtmf(digit)).await;
    }

    /// Sends a text frame as is (for tests: malformed or unexpected messages).
    pub async fn send_raw_text(&self, text: &str) {
        self.command_logged(Action::RawText(text.to_owned())).await;
    }

    /// Sends a binary frame as is (Twilio never does; for tests).
    pub async fn send_raw_binary(&self, bytes: Vec<u8>) {
        self.command_logged(Action::RawBinary(bytes)).await;
    }

    /// Sends `stop` (the caller hung up), stops the audio frames and closes the socket (close code 1000).
    pub async fn stop(&self) {
        self.command_logged(Action::Stop).await;
    }

    /// Every observation so far, in order.
    pub fn events(&self) -> Vec<ObservedEvent> {
        self.inner.lock().events.clone()
    }

    /// Waits until an observation matching `pred` exists (including ones recorded before this call) and returns the
    /// first such, or `None` after `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&ObservedEvent) -> bool,
        timeout: Duration,
    ) -> Option<ObservedEvent> {
        self.wait_for_matching(|event| pred(event), timeout).await
    }

    /// Like [`Self::wait_for`], considering only observations at or after `since`.
    pub async fn wait_for_since(
        &self,
        since: Instant,
        pred: impl Fn(&ObservedEvent) -> bool,
        timeout: Duration,
    ) -> Option<ObservedEvent> {
        self.wait_for_matching(|event| event.at >= since && pred(event), timeout)
            .await
    }

    async fn wait_for_matching(
        &self,
        pred: impl Fn(&ObservedEvent) -> bool,
        timeout: Duration,
    ) -> Option<ObservedEvent> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.inner.changed.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(found) = self.inner.lock().events.iter().find(|event| pred(event)) {
                return Some(found.clone());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives in `inner`, which `self` keeps alive; treat the impossible like a timeout.
                Ok(Err(_)) | Err(_) => {
                    return self
                        .inner
                        .lock()
                        .events
                        .iter()
                        .find(|event| pred(event))
                        .cloned();
                }
            }
        }
    }

    /// Waits up to `timeout` for the server to close the socket; true if it did (a close the client started with
    /// [`Self::stop`] does not count; see [`Observation::Closed`]).
    pub async fn closed(&self, timeout: Duration) -> bool {
        self.wait_for(
            |event| {
                matches!(
                    event.kind,
                    Observation::Closed {
                        by_server: true,
                        ..
                    }
                )
            },
            timeout,
        )
        .await
        .is_some()
    }

    /// Every assistant μ-law byte received, played or not, in order.
    pub fn assistant_audio(&self) -> Vec<u8> {
        self.inner.lock().assistant_audio.clone()
    }

    /// Assistant audio played so far, in ms (advances in real time while audio is queued; stops at a `clear`).
    pub fn played_ms(&self) -> u64 {
        self.inner.lock().playback.played_ms(Instant::now())
    }

    /// The StreamSid sent in `start`, once started.
    pub fn stream_sid(&self) -> Option<String> {
        self.inner.lock().stream_sid.clone()
    }

    async fn command(&self, action: Action) -> Result<(), SimulateError> {
        let (done, result) = oneshot::channel();
        self.commands
            .send(Command { action, done })
            .map_err(|_| SimulateError::Closed)?;
        result.await.unwrap_or(Err(SimulateError::Closed))
    }

    async fn command_logged(&self, action: Action) {
        if let Err(error) = self.command(action).await {
            tracing::debug!(%error, "media stream client could not send");
        }
    }
}

/// Caller-audio pacing, present once `start` has been sent.
struct Pacing {
    /// Ticks every 20 ms. `MissedTickBehavior::Burst`: the caller's audio is captured in real time whatever the
    /// socket does, so frames a stall held back go out back to back and the total sent keeps up with the wall clock,
    /// as with Twilio. (`Delay` would stretch the caller's speech; `Skip` would lose it.)
    interval: Interval,
    /// When `start` was sent: media `timestamp`s count from here.
    started_at: Instant,
    /// The last `chunk` number sent (Twilio counts from 1).
    chunk: u64,
}

/// The task that owns the socket.
struct SocketTask {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    inner: Arc<Inner>,
    commands: mpsc::UnboundedReceiver<Command>,
    config: MediaClientConfig,
    /// The last `sequenceNumber` sent (Twilio numbers every message after `connected`, from 1).
    sequence_number: u64,
    pacing: Option<Pacing>,
    /// The client has sent its close frame.
    closing: bool,
    /// A `Closed` observation exists.
    closed_recorded: bool,
    call_sid: String,
}

/// Messages the server may send on a Twilio Media Stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum ServerMessage {
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        media: ServerMedia,
    },
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        mark: ServerMark,
    },
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

#[derive(Debug, Deserialize)]
struct ServerMedia {
    payload: String,
}

#[derive(Debug, Deserialize)]
struct ServerMark {
    name: String,
}

impl SocketTask {
    async fn run(mut self) {
        loop {
            self.echo_due_marks().await;
            let deadline = self.inner.lock().playback.next_deadline();
            tokio::select! {
                message = self.socket.next() => match message {
                    Some(Ok(message)) => self.on_server_message(message).await,
                    Some(Err(error)) => {
                        self.record_closed(!self.closing, None, error.to_string());
                        break;
                    }
                    None => {
                        self.record_closed(!self.closing, None, "the connection ended".to_owned());
                        break;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let result = self.on_command(command.action).await;
                        // The handle may have stopped waiting; nothing to do then.
                        let _ = command.done.send(result);
                    }
                    None => {
                        // The handle was dropped: hang up quietly.
                        if !self.closing {
                            let _ = self.socket.close(None).await;
                        }
                        break;
                    }
                },
                scheduled = next_tick(&mut self.pacing) => {
                    if let Err(error) = self.send_frame(scheduled).await {
                        self.record_closed(false, None, error.to_string());
                        break;
                    }
                }
                () = sleep_until_or_forever(deadline) => {}
            }
        }
        tracing::debug!(call_sid = %self.call_sid, "media stream client task ends");
    }

    fn record_closed(&mut self, by_server: bool, code: Option<u16>, reason: String) {
        if !self.closed_recorded {
            self.closed_recorded = true;
            self.pacing = None;
            let unplayed_ms = self.inner.lock().playback.clear(Instant::now()).dropped_ms;
            self.inner.record(Observation::Closed {
                by_server,
                code,
                reason,
                unplayed_ms,
            });
        }
    }

    fn stream_sid(&self) -> String {
        self.inner.lock().stream_sid.clone().unwrap_or_default()
    }

    fn next_sequence_number(&mut self) -> String {
        self.sequence_number += 1;
        self.sequence_number.to_string()
    }

    async fn send_json(&mut self, message: serde_json::Value) -> Result<(), SimulateError> {
        if self.closing || self.closed_recorded {
            return Err(SimulateError::Closed);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|error| SimulateError::WebSocket(error.to_string()))
    }

    async fn on_command(&mut self, action: Action) -> Result<(), SimulateError> {
        match action {
            Action::Start {
                call_sid,
                custom_parameters,
            } => self.send_start(call_sid, custom_parameters).await,
            Action::Dtmf(digit) => {
                let sequence_number = self.next_sequence_number();
                let stream_sid = self.stream_sid();
                self.send_json(json!({
                    "event": "dtmf",
                    "streamSid": stream_sid,
                    "sequenceNumber": sequence_number,
                    "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
                }))
                .await?;
                self.inner.record(Observation::DtmfSent { digit });
                Ok(())
            }
            Action::RawText(text) => self.send_raw(Message::text(text)).await,
            Action::RawBinary(bytes) => self.send_raw(Message::binary(bytes)).await,
            Action::Stop => {
                let sequence_number = self.next_sequence_number();
                let stream_sid = self.stream_sid();
                let account_sid = self.config.account_sid.clone();
                let call_sid = self.call_sid.clone();
                self.send_json(json!({
                    "event": "stop",
                    "sequenceNumber": sequence_number,
                    "streamSid": stream_sid,
                    "stop": {"accountSid": account_sid, "callSid": call_sid},
                }))
                .await?;
                self.inner.record(Observation::StopSent);
                self.pacing = None;
                self.closing = true;
                self.socket
                    .close(None)
                    .await
                    .map_err(|error| SimulateError::WebSocket(error.to_string()))
            }
        }
    }

    async fn send_raw(&mut self, message: Message) -> Result<(), SimulateError> {
        if self.closing || self.closed_recorded {
            return Err(SimulateError::Closed);
        }
        self.socket
            .send(message)
            .await
            .map_err(|error| SimulateError::WebSocket(error.to_string()))
    }

    async fn send_start(
        &mut self,
        call_sid: String,
        custom_parameters: Vec<(String, String)>,
    ) -> Result<(), SimulateError> {
        let stream_sid = random_hex_id("MZ");
        self.send_json(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            .await?;
        let parameters: serde_json::Map<String, serde_json::Value> = custom_parameters
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        let sequence_number = self.next_sequence_number();
        let account_sid = self.config.account_sid.clone();
        self.send_json(json!({
            "event": "start",
            "sequenceNumber": sequence_number,
            "streamSid": stream_sid,
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }))
        .await?;
        self.call_sid = call_sid;
        self.inner.lock().stream_sid = Some(stream_sid.clone());
        let started_at = Instant::now();
        let mut interval = tokio::time::interval_at(started_at, FRAME_PERIOD);
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        self.pacing = Some(Pacing {
            interval,
            started_at,
            chunk: 0,
        });
        self.inner
            .record_at(started_at, Observation::Started { stream_sid });
        Ok(())
    }

    /// Sends the next caller audio frame scheduled for `scheduled` (queued audio, else silence if configured).
    async fn send_frame(&mut self, scheduled: Instant) -> Result<(), SimulateError> {
        let (frame, audio_bytes, drained) = {
            let mut state = self.inner.lock();
            let available = state.caller_audio.len().min(FRAME_BYTES);
            if available == 0 && !self.config.fill_silence {
                return Ok(());
            }
            let mut frame: Vec<u8> = state.caller_audio.drain(..available).collect();
            frame.resize(FRAME_BYTES, MULAW_SILENCE);
            state.caller_audio_sent_bytes += available;
            let drained = available > 0 && state.caller_audio.is_empty();
            let sent = state.caller_audio_sent_bytes;
            if drained {
                state.caller_audio_sent_bytes = 0;
            }
            (frame, sent, drained)
        };
        let Some(pacing) = self.pacing.as_mut() else {
            return Ok(());
        };
        pacing.chunk += 1;
        let chunk = pacing.chunk;
        let timestamp_ms = scheduled
            .saturating_duration_since(pacing.started_at)
            .as_millis();
        let sequence_number = self.next_sequence_number();
        let stream_sid = self.stream_sid();
        tracing::debug!(chunk, timestamp_ms, "sending a caller audio frame");
        self.send_json(json!({
            "event": "media",
            "sequenceNumber": sequence_number,
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": chunk.to_string(),
                "timestamp": timestamp_ms.to_string(),
                "payload": base64::engine::general_purpose::STANDARD.encode(&frame),
            },
        }))
        .await?;
        if drained {
            self.inner
                .record(Observation::CallerAudioSent { bytes: audio_bytes });
        }
        Ok(())
    }

    async fn on_server_message(&mut self, message: Message) {
        match message {
            Message::Text(text) => self.on_server_text(text.as_str()).await,
            Message::Binary(bytes) => self.inner.record(Observation::Invalid {
                reason: format!(
                    "a binary frame of {} bytes (Twilio expects JSON text)",
                    bytes.len()
                ),
            }),
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
                    None => (None, String::new()),
                };
                self.record_closed(!self.closing, code, reason);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }

    async fn on_server_text(&mut self, text: &str) {
        let parsed = match serde_json::from_str::<ServerMessage>(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.inner.record(Observation::Invalid {
                    reason: format!("{error}: {text}"),
                });
                return;
            }
        };
        let (ServerMessage::Media { stream_sid, .. }
        | ServerMessage::Mark { stream_sid, .. }
        | ServerMessage::Clear { stream_sid }) = &parsed;
        let expected = self.inner.lock().stream_sid.clone();
        if expected.as_deref() != Some(stream_sid.as_str()) {
            self.inner.record(Observation::Invalid {
                reason: format!(
                    "streamSid {stream_sid:?} is not this stream's ({expected:?}): {text}"
                ),
            });
            return;
        }
        let now = Instant::now();
        match parsed {
            ServerMessage::Media { media, .. } => {
                let audio = match base64::engine::general_purpose::STANDARD
                    .decode(media.payload.as_bytes())
                {
                    Ok(audio) => audio,
                    Err(error) => {
                        self.inner.record(Observation::Invalid {
                            reason: format!("media payload is not base64 ({error}): {text}"),
                        });
                        return;
                    }
                };
                let queued_ms = {
                    let mut state = self.inner.lock();
                    state.assistant_audio.extend_from_slice(&audio);
                    state.playback.push_audio(now, audio.len())
                };
                self.inner.record_at(
                    now,
                    Observation::Media {
                        bytes: audio.len(),
                        queued_ms,
                    },
                );
            }
            ServerMessage::Mark { mark, .. } => {
                self.inner.lock().playback.push_mark(now, mark.name.clone());
                self.inner
                    .record_at(now, Observation::Mark { name: mark.name });
            }
            ServerMessage::Clear { .. } => {
                let cleared = self.inner.lock().playback.clear(now);
                self.inner.record_at(
                    now,
                    Observation::Clear {
                        played_ms_at_clear: cleared.played_ms,
                        dropped_ms: cleared.dropped_ms,
                    },
                );
                for name in cleared.stale_marks {
                    self.echo_mark(name, true).await;
                }
            }
        }
    }

    /// Echoes the marks playback has reached and records playback running dry.
    async fn echo_due_marks(&mut self) {
        let now = Instant::now();
        let outputs = self.inner.lock().playback.poll(now);
        for output in outputs {
            match output {
                PlaybackOutput::MarkPlayed(name) => self.echo_mark(name, false).await,
                PlaybackOutput::Idle { played_ms } => {
                    self.inner.record(Observation::PlaybackIdle { played_ms })
                }
            }
        }
    }

    async fn echo_mark(&mut self, name: String, stale: bool) {
        let sequence_number = self.next_sequence_number();
        let stream_sid = self.stream_sid();
        let sent = self
            .send_json(json!({
                "event": "mark",
                "sequenceNumber": sequence_number,
                "streamSid": stream_sid,
                "mark": {"name": name},
            }))
            .await;
        match sent {
            Ok(()) => self.inner.record(Observation::MarkEchoed { name, stale }),
            Err(error) => tracing::debug!(%error, mark = %name, "could not echo a mark"),
        }
    }
}

/// The next pacing tick's scheduled instant; never resolves before `start`.
async fn next_tick(pacing: &mut Option<Pacing>) -> Instant {
    match pacing {
        Some(pacing) => pacing.interval.tick().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::playback_model::{Cleared, MICROS_PER_BYTE};
    use proptest::prelude::*;
    use serde_json::Value;
    use tokio::net::TcpListener;
    use tokio_tungstenite::WebSocketStream;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    // ---- the playback model, driven with made-up instants ----

    #[test]
    fn a_mark_is_reached_when_the_audio_queued_before_it_has_played() {
        // Arrange: 1600 bytes = 200 ms.
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);
        playback.push_audio(t0, 1_600);
        playback.push_mark(t0, "m1".to_owned());

        // Act
        let early = playback.poll(t0 + ms(199));
        let on_time = playback.poll(t0 + ms(200));

        // Assert
        assert_eq!(early, vec![]);
        assert_eq!(
            on_time,
            vec![
                PlaybackOutput::MarkPlayed("m1".to_owned()),
                PlaybackOutput::Idle { played_ms: 200 }
            ]
        );
    }

    #[test]
    fn the_next_deadline_is_the_first_marks_position() {
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);
        playback.push_audio(t0, 800);
        playback.push_mark(t0, "m1".to_owned());
        playback.push_audio(t0, 800);

        assert_eq!(playback.next_deadline(), Some(t0 + ms(100)));
    }

    #[test]
    fn chunks_play_in_order_behind_what_is_already_queued() {
        // Arrange
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);
        playback.push_audio(t0, 800);

        // Act
        let queued_ms = playback.push_audio(t0 + ms(50), 800);
        playback.push_mark(t0 + ms(50), "m1".to_owned());

        // Assert: 50 ms of the first chunk were left, so the mark is reached 150 ms later.
        assert_eq!(queued_ms, 50);
        assert_eq!(playback.poll(t0 + ms(199)), vec![]);
        assert_eq!(
            playback.poll(t0 + ms(200))[0],
            PlaybackOutput::MarkPlayed("m1".to_owned())
        );
    }

    #[test]
    fn audio_arriving_after_a_pause_starts_playing_when_it_arrives() {
        // Arrange: 10 ms, then silence until 100 ms.
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);
        playback.push_audio(t0, 80);
        assert_eq!(
            playback.poll(t0 + ms(100)),
            vec![PlaybackOutput::Idle { played_ms: 10 }]
        );

        // Act
        let queued_ms = playback.push_audio(t0 + ms(100), 80);

        // Assert
        assert_eq!(queued_ms, 0);
        assert_eq!(playback.played_ms(t0 + ms(105)), 15);
    }

    #[test]
    fn a_mark_with_nothing_queued_is_reached_at_once() {
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);

        playback.push_mark(t0 + ms(5), "m1".to_owned());

        assert_eq!(
            playback.poll(t0 + ms(5)),
            vec![PlaybackOutput::MarkPlayed("m1".to_owned())]
        );
    }

    #[test]
    fn clear_drops_the_unplayed_audio_returns_pending_marks_and_stops_playback() {
        // Arrange: 1 s queued with two marks, 300 ms played.
        let t0 = Instant::now();
        let mut playback = PlaybackModel::new(t0);
        playback.push_audio(t0, 4_000);
        playback.push_mark(t0, "m1".to_owned());
        playback.push_audio(t0, 4_000);
        playback.push_mark(t0, "m2".to_owned());

        // Act
        let cleared = playback.clear(t0 + ms(300));

        // Assert
        assert_eq!(
            cleared,
            Cleared {
                played_ms: 300,
                dropped_ms: 700,
                stale_marks: vec!["m1".to_owned(), "m2".to_owned()],
            }
        );
        assert_eq!(playback.played_ms(t0 + ms(900)), 300);
        assert_eq!(playback.poll(t0 + ms(900)), vec![]);
        assert_eq!(playback.next_deadline(), None);
    }

    proptest! {
        #[test]
        fn played_audio_never_exceeds_received_audio_and_never_goes_back(
            steps in proptest::collection::vec((0u64..300, 0usize..2_000, any::<bool>()), 1..40)
        ) {
            let t0 = Instant::now();
            let mut playback = PlaybackModel::new(t0);
            let mut now = t0;
            // What playback can have reached: all audio received, less what a clear dropped (known to the ms).
            let mut reachable_us = 0u64;
            let mut last_played_ms = 0u64;
            for (wait_ms, bytes, clear) in steps {
                now += ms(wait_ms);
                if clear {
                    let cleared = playback.clear(now);
                    reachable_us = cleared.played_ms * 1_000 + 999;
                } else {
                    playback.push_audio(now, bytes);
                    reachable_us += bytes as u64 * MICROS_PER_BYTE;
                }
                let played_ms = playback.played_ms(now);
                prop_assert!(played_ms >= last_played_ms, "played went back from {last_played_ms} to {played_ms}");
                prop_assert!(played_ms * 1_000 <= reachable_us, "played {played_ms} ms of {reachable_us} µs");
                last_played_ms = played_ms;
            }
        }
    }

    // ---- the client against a tiny in-test server playing callbridge's side ----

    type ServerSocket = WebSocketStream<tokio::net::TcpStream>;

    /// A listener on a free local port and the URL to reach it; `accept` gives the server's socket.
    async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port is free");
        let url = format!(
            "ws://{}/media-stream/test-token",
            listener.local_addr().expect("bound")
        );
        (listener, url)
    }

    async fn connect_pair(config: MediaClientConfig) -> (MediaStreamClient, ServerSocket) {
        let (listener, url) = listen().await;
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("the client connects");
            tokio_tungstenite::accept_async(tcp)
                .await
                .expect("the upgrade succeeds")
        });
        let client = MediaStreamClient::connect_with(&url, config)
            .await
            .expect("the server accepts");
        let server = accept.await.expect("the accept task ends");
        (client, server)
    }

    fn quiet_config() -> MediaClientConfig {
        MediaClientConfig {
            fill_silence: false,
            ..MediaClientConfig::default()
        }
    }

    /// The next text message as JSON, skipping caller `media` frames when `skip_media`.
    async fn next_json(server: &mut ServerSocket, skip_media: bool) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(2), server.next())
                .await
                .expect("the client sends within 2 s")
                .expect("the socket is open")
                .expect("a valid frame");
            if let Message::Text(text) = message {
                let value: Value =
                    serde_json::from_str(text.as_str()).expect("the client sends JSON");
                if !(skip_media && value["event"] == "media") {
                    return value;
                }
            }
        }
    }

    /// Starts the stream and returns the StreamSid the server saw in `start`.
    async fn start_stream(client: &MediaStreamClient, server: &mut ServerSocket) -> String {
        client
            .start("CA0123", &[("callId".to_owned(), "c-1".to_owned())])
            .await
            .expect("the socket is open");
        assert_eq!(next_json(server, true).await["event"], "connected");
        let start = next_json(server, true).await;
        start["streamSid"]
            .as_str()
            .expect("start carries the streamSid")
            .to_owned()
    }

    async fn send_server(server: &mut ServerSocket, value: Value) {
        server
            .send(Message::text(value.to_string()))
            .await
            .expect("the client is connected");
    }

    fn silence_payload(bytes: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![MULAW_SILENCE; bytes])
    }

    #[tokio::test]
    async fn start_sends_connected_then_a_twilio_shaped_start() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;

        // Act
        client
            .start("CA0123", &[("callId".to_owned(), "c-1".to_owned())])
            .await
            .expect("the socket is open");
        let connected = next_json(&mut server, true).await;
        let start = next_json(&mut server, true).await;

        // Assert
        assert_eq!(
            connected,
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        );
        let stream_sid = start["streamSid"].as_str().expect("a streamSid");
        assert!(
            stream_sid.starts_with("MZ") && stream_sid.len() == 34,
            "{stream_sid}"
        );
        assert_eq!(start["sequenceNumber"], "1");
        assert_eq!(start["start"]["streamSid"], stream_sid);
        assert_eq!(start["start"]["callSid"], "CA0123");
        assert_eq!(start["start"]["tracks"], json!(["inbound"]));
        assert_eq!(start["start"]["customParameters"], json!({"callId": "c-1"}));
        assert_eq!(
            start["start"]["mediaFormat"],
            json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        );
        assert_eq!(client.stream_sid().as_deref(), Some(stream_sid));
    }

    #[tokio::test]
    async fn caller_audio_goes_out_in_160_byte_frames_every_20_ms() {
        // Arrange: 5 frames of distinct audio, no silence filling.
        let (client, mut server) = connect_pair(quiet_config()).await;
        start_stream(&client, &mut server).await;
        let audio: Vec<u8> = (0..800u32).map(|i| (i % 251) as u8).collect();

        // Act
        client.send_audio(&audio);
        let mut frames = Vec::new();
        let mut arrivals = Vec::new();
        for _ in 0..5 {
            frames.push(next_json(&mut server, false).await);
            arrivals.push(Instant::now());
        }

        // Assert
        let mut received = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            assert_eq!(frame["event"], "media");
            assert_eq!(frame["media"]["track"], "inbound");
            assert_eq!(frame["media"]["chunk"], (index + 1).to_string());
            assert_eq!(frame["sequenceNumber"], (index + 2).to_string());
            let payload = base64::engine::general_purpose::STANDARD
                .decode(frame["media"]["payload"].as_str().expect("a payload"))
                .expect("base64");
            assert_eq!(payload.len(), FRAME_BYTES);
            received.extend(payload);
        }
        assert_eq!(received, audio);
        let timestamps: Vec<u64> = frames
            .iter()
            .map(|frame| {
                let timestamp = frame["media"]["timestamp"]
                    .as_str()
                    .expect("timestamp is a string");
                timestamp.parse().expect("timestamp is a number")
            })
            .collect();
        assert!(
            timestamps.windows(2).all(|pair| pair[1] - pair[0] == 20),
            "{timestamps:?}"
        );
        let span = arrivals[4] - arrivals[0];
        assert!(
            span >= ms(70),
            "5 frames arrived within {span:?}: not paced"
        );
        let sent = client
            .wait_for(
                |event| matches!(event.kind, Observation::CallerAudioSent { .. }),
                ms(500),
            )
            .await;
        assert_eq!(
            sent.map(|event| event.kind),
            Some(Observation::CallerAudioSent { bytes: 800 })
        );
    }

    #[tokio::test]
    async fn an_empty_queue_is_filled_with_silence_frames_when_configured() {
        // Arrange
        let (client, mut server) = connect_pair(MediaClientConfig::default()).await;
        start_stream(&client, &mut server).await;

        // Act
        let frame = next_json(&mut server, false).await;

        // Assert
        assert_eq!(frame["event"], "media");
        assert_eq!(frame["media"]["payload"], silence_payload(FRAME_BYTES));
    }

    #[tokio::test]
    async fn a_mark_is_echoed_only_once_its_audio_has_played() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;
        let stream_sid = start_stream(&client, &mut server).await;

        // Act: 200 ms of audio, then a mark.
        send_server(
            &mut server,
            json!({"event": "media", "streamSid": stream_sid, "media": {"payload": silence_payload(1_600)}}),
        )
        .await;
        send_server(
            &mut server,
            json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "g1:s1"}}),
        )
        .await;
        let echo = next_json(&mut server, true).await;

        // Assert
        assert_eq!(echo["event"], "mark");
        assert_eq!(echo["streamSid"], stream_sid.as_str());
        assert_eq!(echo["mark"]["name"], "g1:s1");
        assert!(echo["sequenceNumber"].is_string());
        let events = client.events();
        let audio_arrived = events
            .iter()
            .find(|event| matches!(event.kind, Observation::Media { .. }))
            .expect("the audio was recorded");
        let echoed = events
            .iter()
            .find(|event| matches!(event.kind, Observation::MarkEchoed { stale: false, .. }))
            .expect("the echo was recorded");
        // The audio starts playing when it arrives, so its end (the mark) is reached 200 ms later.
        let delay = echoed.at - audio_arrived.at;
        assert!(
            delay >= ms(199),
            "echoed after {delay:?}, before its 200 ms of audio played"
        );
        assert!(
            delay < ms(400),
            "echoed after {delay:?}, long after its audio played"
        );
        assert_eq!(client.assistant_audio().len(), 1_600);
    }

    #[tokio::test]
    async fn clear_echoes_pending_marks_at_once_and_stops_playback() {
        // Arrange: 1 s of audio with two marks, 150 ms of it played.
        let (client, mut server) = connect_pair(quiet_config()).await;
        let stream_sid = start_stream(&client, &mut server).await;
        for name in ["g1:s1", "g1:s2"] {
            send_server(
                &mut server,
                json!({"event": "media", "streamSid": stream_sid, "media": {"payload": silence_payload(4_000)}}),
            )
            .await;
            send_server(
                &mut server,
                json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}),
            )
            .await;
        }
        tokio::time::sleep(ms(150)).await;

        // Act
        send_server(
            &mut server,
            json!({"event": "clear", "streamSid": stream_sid}),
        )
        .await;
        let first_echo = next_json(&mut server, true).await;
        let second_echo = next_json(&mut server, true).await;
        let played_after_clear = client.played_ms();
        tokio::time::sleep(ms(100)).await;
        let played_later = client.played_ms();

        // Assert
        assert_eq!(first_echo["mark"]["name"], "g1:s1");
        assert_eq!(second_echo["mark"]["name"], "g1:s2");
        let events = client.events();
        let clear = events
            .iter()
            .find(|event| matches!(event.kind, Observation::Clear { .. }))
            .expect("the clear was recorded");
        let Observation::Clear {
            played_ms_at_clear,
            dropped_ms,
        } = clear.kind
        else {
            unreachable!("matched above")
        };
        assert!(
            (140..300).contains(&played_ms_at_clear),
            "played {played_ms_at_clear} ms"
        );
        // Both are floored to the ms, so together they are 999 or 1000.
        assert!(
            (999..=1_000).contains(&(played_ms_at_clear + dropped_ms)),
            "{played_ms_at_clear} + {dropped_ms}"
        );
        let stale: Vec<&ObservedEvent> = events
            .iter()
            .filter(|event| matches!(event.kind, Observation::MarkEchoed { stale: true, .. }))
            .collect();
        assert_eq!(stale.len(), 2);
        assert!(stale.iter().all(|event| event.at - clear.at < ms(20)));
        assert_eq!(played_later, played_after_clear);
    }

    #[tokio::test]
    async fn a_message_for_another_stream_is_recorded_as_invalid_and_not_played() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;
        start_stream(&client, &mut server).await;

        // Act
        send_server(
            &mut server,
            json!({"event": "media", "streamSid": "MZ-other", "media": {"payload": silence_payload(160)}}),
        )
        .await;
        let invalid = client
            .wait_for(
                |event| matches!(event.kind, Observation::Invalid { .. }),
                ms(1_000),
            )
            .await;

        // Assert
        assert!(
            matches!(&invalid, Some(ObservedEvent { kind: Observation::Invalid { reason }, .. }) if reason.contains("MZ-other")),
            "{invalid:?}"
        );
        assert!(client.assistant_audio().is_empty());
    }

    #[tokio::test]
    async fn dtmf_is_sent_like_twilio_sends_it() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;
        let stream_sid = start_stream(&client, &mut server).await;

        // Act
        client.send_dtmf('7').await;
        let dtmf = next_json(&mut server, true).await;

        // Assert
        assert_eq!(dtmf["event"], "dtmf");
        assert_eq!(dtmf["streamSid"], stream_sid.as_str());
        assert_eq!(
            dtmf["dtmf"],
            json!({"track": "inbound_track", "digit": "7"})
        );
    }

    #[tokio::test]
    async fn stop_sends_stop_then_closes_the_socket() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;
        start_stream(&client, &mut server).await;

        // Act
        client.stop().await;
        let stop = next_json(&mut server, true).await;
        let after = tokio::time::timeout(Duration::from_secs(2), server.next())
            .await
            .expect("the client closes within 2 s");

        // Assert
        assert_eq!(stop["event"], "stop");
        assert_eq!(stop["stop"]["callSid"], "CA0123");
        assert!(matches!(after, Some(Ok(Message::Close(_)))), "{after:?}");
        assert!(
            !client.closed(ms(300)).await,
            "a close the client started is not the server's"
        );
    }

    #[tokio::test]
    async fn the_server_closing_the_socket_is_observed_with_its_code() {
        // Arrange
        let (client, mut server) = connect_pair(quiet_config()).await;
        start_stream(&client, &mut server).await;

        // Act
        let goodbye = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "goodbye".into(),
        };
        server
            .close(Some(goodbye))
            .await
            .expect("the socket is open");
        let closed = client.closed(Duration::from_secs(2)).await;

        // Assert
        assert!(closed);
        let events = client.events();
        let closed_event = events
            .iter()
            .find(|event| matches!(event.kind, Observation::Closed { .. }))
            .map(|event| event.kind.clone());
        assert_eq!(
            closed_event,
            Some(Observation::Closed {
                by_server: true,
                code: Some(1000),
                reason: "goodbye".to_owned(),
                unplayed_ms: 0,
            })
        );
    }

    #[tokio::test]
    async fn audio_still_queued_when_the_server_closes_is_reported_unplayed() {
        // Arrange: 1 s of audio queued.
        let (client, mut server) = connect_pair(quiet_config()).await;
        let stream_sid = start_stream(&client, &mut server).await;
        send_server(
            &mut server,
            json!({"event": "media", "streamSid": stream_sid, "media": {"payload": silence_payload(8_000)}}),
        )
        .await;
        client
            .wait_for(
                |event| matches!(event.kind, Observation::Media { .. }),
                ms(1_000),
            )
            .await
            .expect("the audio arrives");

        // Act
        server.close(None).await.expect("the socket is open");
        let closed = client
            .wait_for(
                |event| matches!(event.kind, Observation::Closed { .. }),
                ms(2_000),
            )
            .await;
        let played_at_close = client.played_ms();
        tokio::time::sleep(ms(50)).await;

        // Assert
        let Some(ObservedEvent {
            kind: Observation::Closed { unplayed_ms, .. },
            ..
        }) = closed
        else {
            panic!("no close observed: {closed:?}");
        };
        assert!(
            (700..=1_000).contains(&unplayed_ms),
            "{unplayed_ms} ms unplayed"
        );
        assert_eq!(
            client.played_ms(),
            played_at_close,
            "playback goes on after the close"
        );
    }

    #[tokio::test]
    // tungstenite's handshake callback returns its (large) HTTP response type as the error.
    #[allow(clippy::result_large_err)]
    async fn a_refused_upgrade_is_reported_with_its_status() {
        // Arrange: a server that answers the upgrade with 403.
        let (listener, url) = listen().await;
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("the client connects");
            let refuse = |_: &tungstenite::handshake::server::Request,
                          _: tungstenite::handshake::server::Response| {
                let mut response = tungstenite::handshake::server::ErrorResponse::new(None);
                *response.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
                Err(response)
            };
            let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
        });

        // Act
        let result = MediaStreamClient::connect(&url).await;

        // Assert
        assert!(
            matches!(result, Err(SimulateError::Rejected(403))),
            "{result:?}"
        );
    }
}
