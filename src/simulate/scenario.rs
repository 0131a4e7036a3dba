//! One whole simulated inbound call, as `callbridge simulate` runs it, and the report it prints.
//!
//! The run: sign and post the incoming-call webhook → parse the TwiML → connect to the stream (at the server's
//! local address, keeping the TwiML's path) → `start` → stream the caller's audio in real time → keep the line open
//! with silence until the server closes the stream or the maximum duration passes (then hang up with `stop`) → at
//! the barge-in time, the caller starts speaking again → report timings and a timeline.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::SimulateError;
use super::audio::{MULAW_BYTES_PER_MS, write_mulaw_as_wav};
use super::media_client::{MediaClientConfig, MediaStreamClient, Observation, ObservedEvent};
use super::webhook::{WebhookCall, local_stream_url, random_hex_id, twilio_signature};

/// How long to wait for the server's close after the simulator hangs up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Longest piece of a refused webhook's body kept in the error.
const ERROR_BODY_CHARS: usize = 500;

/// [`SimulationReport::ended_by`] when the server closed the stream.
pub const ENDED_BY_SERVER: &str = "server closed the stream";

/// [`SimulationReport::ended_by`] when the maximum duration passed and the simulator hung up.
pub const ENDED_BY_MAX_DURATION: &str = "max duration";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Where the server listens, e.g. `http://127.0.0.1:5050`: the webhook goes here and the stream URL's host is
    /// rewritten to it.
    pub server_url: String,
    /// The server's configured public URL, which Twilio would sign, e.g. `https://abc.trycloudflare.com`.
    pub public_url: String,
    /// The Twilio auth token the server verifies signatures with.
    pub auth_token: String,
    /// The caller's audio, raw 8 kHz μ-law (see [`super::read_wav_as_mulaw`]), streamed from `start`.
    pub audio: Vec<u8>,
    /// When the caller speaks again, counted from `start`; unsent caller audio is dropped then.
    pub barge_in_at: Option<Duration>,
    /// What the caller says at the barge-in; `None` repeats `audio`.
    pub barge_in_audio: Option<Vec<u8>>,
    /// The caller, E.164.
    pub from: String,
    /// The called number, E.164.
    pub to: String,
    /// The simulator hangs up (`stop`) this long after `start` if the server has not ended the call.
    pub max_duration: Duration,
    /// Where to save the assistant's audio as an 8 kHz 16-bit PCM WAV.
    pub save_audio: Option<PathBuf>,
    /// `AccountSid` in the webhook and `start`; `None` makes one up.
    pub account_sid: Option<String>,
}

impl SimulateOptions {
    /// Options with no barge-in, fictional numbers (`+15550100001` calling `+15550100002`), a 60 s limit and no
    /// saved audio.
    pub fn new(server_url: &str, public_url: &str, auth_token: &str, audio: Vec<u8>) -> Self {
        Self {
            server_url: server_url.to_owned(),
            public_url: public_url.to_owned(),
            auth_token: auth_token.to_owned(),
            audio,
            barge_in_at: None,
            barge_in_audio: None,
            from: "+15550100001".to_owned(),
            to: "+15550100002".to_owned(),
            max_duration: Duration::from_secs(60),
            save_audio: None,
            account_sid: None,
        }
    }
}

/// What a simulated call observed, from Twilio's side.
#[derive(Debug, Clone)]
pub struct SimulationReport {
    /// The CallSid the simulator made up.
    pub call_sid: String,
    /// The StreamSid sent in `start`.
    pub stream_sid: String,
    /// From posting the webhook to having the whole TwiML.
    pub webhook_to_twiml: Duration,
    /// From sending `start` to the first assistant `media`; `None` if the assistant never spoke.
    pub start_to_first_audio: Option<Duration>,
    /// From the barge-in to the server's `clear`; `None` without a barge-in or without a `clear` after it.
    pub barge_in_to_clear: Option<Duration>,
    /// Assistant audio received (played or not), in ms.
    pub assistant_audio_ms: u64,
    /// Assistant audio played by the end, in ms.
    pub assistant_played_ms: u64,
    /// Marks echoed, including those echoed at once by a `clear`.
    pub marks_echoed: usize,
    /// Marks echoed because of a `clear` (their audio never played).
    pub stale_marks_echoed: usize,
    /// Server messages the simulator could not use (should be 0).
    pub invalid_messages: usize,
    /// [`ENDED_BY_SERVER`], [`ENDED_BY_MAX_DURATION`], or a description of a socket failure.
    pub ended_by: String,
    /// The server's end reason, from the reason of its close frame (`goodbye`, `error:invalid_api_key`, ...), when
    /// the server closed the stream with one.
    pub end_reason: Option<String>,
    /// Where the assistant audio was saved, if asked.
    pub saved_audio: Option<PathBuf>,
    /// What happened when, counted from posting the webhook, in order.
    pub timeline: Vec<(Duration, String)>,
}

/// Simulates one inbound call against a running callbridge; see the module documentation for the steps.
///
/// # Errors
///
/// [`SimulateError::Http`] when the webhook cannot be posted; [`SimulateError::WebhookRejected`] on a non-200
/// answer; [`SimulateError::Twiml`] when the answer has no `<Connect><Stream>`; [`SimulateError::Rejected`] /
/// [`SimulateError::WebSocket`] when the stream cannot be opened or started; [`SimulateError::Wav`] when the audio
/// cannot be saved. Once the stream runs, the server closing it is the normal end, not an error.
pub async fn run(opts: SimulateOptions) -> Result<SimulationReport, SimulateError> {
    let posted_at = Instant::now();
    let call = WebhookCall {
        server_url: opts.server_url.clone(),
        public_url: opts.public_url.clone(),
        auth_token: opts.auth_token.clone(),
        call_sid: random_hex_id("CA"),
        account_sid: opts
            .account_sid
            .clone()
            .unwrap_or_else(|| random_hex_id("AC")),
        from: opts.from.clone(),
        to: opts.to.clone(),
    };
    let mut timeline = vec![(
        Duration::ZERO,
        format!(
            "POST {}/incoming-call (CallSid {}, {} → {})",
            opts.server_url.trim_end_matches('/'),
            call.call_sid,
            call.from,
            call.to
        ),
    )];
    let answer = call.post_incoming().await?;
    if answer.status != 200 {
        return Err(SimulateError::WebhookRejected {
            status: answer.status,
            body: answer.body.chars().take(ERROR_BODY_CHARS).collect(),
        });
    }
    let stream = answer.stream.ok_or_else(|| {
        SimulateError::Twiml(format!(
            "the answer has no <Connect><Stream>: {}",
            answer
                .body
                .chars()
                .take(ERROR_BODY_CHARS)
                .collect::<String>()
        ))
    })?;
    timeline.push((
        posted_at.elapsed(),
        format!(
            "TwiML: <Connect><Stream url=\"{}\"> with {} parameter(s)",
            redact_token(&stream.url),
            stream.parameters.len()
        ),
    ));

    let ws_url = local_stream_url(&stream.url, &opts.server_url)?;
    let config = MediaClientConfig {
        fill_silence: true,
        account_sid: call.account_sid.clone(),
        upgrade_signature: Some(twilio_signature(&opts.auth_token, &stream.url, &[])),
    };
    let client = MediaStreamClient::connect_with(&ws_url, config).await?;
    timeline.push((posted_at.elapsed(), "stream WebSocket connected".to_owned()));
    match client.start(&call.call_sid, &stream.parameters).await {
        // The server closed the stream before `start` (a call whose OpenAI session could not be opened): the close
        // frame says why, and the report carries it.
        Ok(()) | Err(SimulateError::Closed) => {}
        Err(error) => return Err(error),
    }
    let started_at = Instant::now();
    client.send_audio(&opts.audio);

    let barge_in_audio = opts
        .barge_in_audio
        .clone()
        .unwrap_or_else(|| opts.audio.clone());
    let max_deadline = started_at + opts.max_duration;
    let mut barge_in_sent_at: Option<Instant> = None;
    let closed_event = loop {
        let barge_in_deadline = opts
            .barge_in_at
            .filter(|_| barge_in_sent_at.is_none())
            .map(|after| started_at + after);
        let remaining = max_deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            closed = client.wait_for(|event| matches!(event.kind, Observation::Closed { .. }), remaining) => {
                break closed;
            }
            () = sleep_until_or_forever(barge_in_deadline) => {
                let dropped_bytes = client.replace_audio(&barge_in_audio);
                let now = Instant::now();
                barge_in_sent_at = Some(now);
                timeline.push((
                    now - posted_at,
                    format!(
                        "barge-in: the caller speaks ({} ms of audio{})",
                        ms_of(barge_in_audio.len()),
                        if dropped_bytes > 0 { format!(", {} ms unsent dropped", ms_of(dropped_bytes)) } else { String::new() }
                    ),
                ));
            }
        }
    };
    let end_reason = match &closed_event {
        Some(ObservedEvent {
            kind:
                Observation::Closed {
                    by_server: true,
                    reason,
                    ..
                },
            ..
        }) if !reason.is_empty() => Some(reason.clone()),
        _ => None,
    };
    let ended_by = match closed_event {
        Some(ObservedEvent {
            kind: Observation::Closed {
                by_server: true, ..
            },
            ..
        }) => ENDED_BY_SERVER.to_owned(),
        Some(ObservedEvent {
            kind: Observation::Closed { reason, .. },
            ..
        }) => format!("the stream failed: {reason}"),
        _ => {
            client.stop().await;
            client
                .wait_for(
                    |event| matches!(event.kind, Observation::Closed { .. }),
                    CLOSE_GRACE,
                )
                .await;
            ENDED_BY_MAX_DURATION.to_owned()
        }
    };

    let assistant_audio = client.assistant_audio();
    if let Some(path) = &opts.save_audio {
        write_mulaw_as_wav(path, &assistant_audio)?;
    }
    let events = client.events();
    timeline.extend(timeline_of(&events, posted_at));
    timeline.sort_by_key(|(at, _)| *at);

    let first_of = |pred: &dyn Fn(&ObservedEvent) -> bool| {
        events.iter().find(|event| pred(event)).map(|e| e.at)
    };
    let start_to_first_audio = first_of(&|event| matches!(event.kind, Observation::Media { .. }))
        .map(|at| at.saturating_duration_since(started_at));
    let barge_in_to_clear = barge_in_sent_at.and_then(|barge_in_at| {
        events
            .iter()
            .find(|event| {
                event.at >= barge_in_at && matches!(event.kind, Observation::Clear { .. })
            })
            .map(|event| event.at - barge_in_at)
    });
    let count = |pred: &dyn Fn(&Observation) -> bool| {
        events.iter().filter(|event| pred(&event.kind)).count()
    };
    Ok(SimulationReport {
        call_sid: call.call_sid,
        stream_sid: client.stream_sid().unwrap_or_default(),
        webhook_to_twiml: answer.elapsed,
        start_to_first_audio,
        barge_in_to_clear,
        assistant_audio_ms: ms_of(assistant_audio.len()),
        assistant_played_ms: client.played_ms(),
        marks_echoed: count(&|kind| matches!(kind, Observation::MarkEchoed { .. })),
        stale_marks_echoed: count(&|kind| {
            matches!(kind, Observation::MarkEchoed { stale: true, .. })
        }),
        invalid_messages: count(&|kind| matches!(kind, Observation::Invalid { .. })),
        ended_by,
        end_reason,
        saved_audio: opts.save_audio.clone(),
        timeline,
    })
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Milliseconds of 8 kHz μ-law in `bytes`.
fn ms_of(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX) / MULAW_BYTES_PER_MS
}

/// The stream URL with its last path segment (the single-use stream token) shortened, for printing.
fn redact_token(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, token)) if token.chars().count() > 6 => {
            format!("{base}/{}…", token.chars().take(4).collect::<String>())
        }
        _ => url.to_owned(),
    }
}

/// The timeline lines the media stream observations give, counted from `origin`. Per-chunk and per-mark events
/// are summarised: assistant audio appears when it starts and when it has played out.
pub fn timeline_of(events: &[ObservedEvent], origin: Instant) -> Vec<(Duration, String)> {
    let mut lines = Vec::new();
    let mut stale_since_clear = 0usize;
    for event in events {
        let at = event.at.saturating_duration_since(origin);
        let line = match &event.kind {
            Observation::Started { stream_sid } => {
                Some(format!("start sent (StreamSid {stream_sid})"))
            }
            Observation::Media { queued_ms: 0, .. } => Some("assistant audio starts".to_owned()),
            Observation::PlaybackIdle { played_ms } => Some(format!(
                "assistant audio played out ({played_ms} ms played in all)"
            )),
            Observation::Clear {
                played_ms_at_clear,
                dropped_ms,
            } => {
                stale_since_clear = 0;
                Some(format!(
                    "clear: {dropped_ms} ms of assistant audio dropped ({played_ms_at_clear} ms played in all)"
                ))
            }
            Observation::MarkEchoed { stale: true, .. } => {
                stale_since_clear += 1;
                None
            }
            Observation::CallerAudioSent { bytes } => {
                Some(format!("caller audio sent ({} ms)", ms_of(*bytes)))
            }
            Observation::DtmfSent { digit } => Some(format!("DTMF {digit} sent")),
            Observation::StopSent => Some("stop sent: the caller hangs up".to_owned()),
            Observation::Invalid { reason } => Some(format!("unusable server message: {reason}")),
            Observation::Closed {
                by_server,
                code,
                reason,
                unplayed_ms,
            } => {
                let who = if *by_server {
                    "server closed the stream"
                } else {
                    "stream closed"
                };
                let code = code
                    .map(|code| format!(" (code {code})"))
                    .unwrap_or_default();
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                let unheard = if *unplayed_ms > 0 {
                    format!(" ({unplayed_ms} ms of assistant audio never played)")
                } else {
                    String::new()
                };
                Some(format!("{who}{code}{reason}{unheard}"))
            }
            Observation::Media { .. }
            | Observation::Mark { .. }
            | Observation::MarkEchoed { .. } => None,
        };
        if let Some(line) = line {
            if stale_since_clear > 0 && !matches!(event.kind, Observation::Clear { .. }) {
                lines.push((
                    at,
                    format!("{stale_since_clear} pending mark(s) echoed at once by the clear"),
                ));
                stale_since_clear = 0;
            }
            lines.push((at, line));
        }
    }
    if stale_since_clear > 0
        && let Some(last) = events.last()
    {
        lines.push((
            last.at.saturating_duration_since(origin),
            format!("{stale_since_clear} pending mark(s) echoed at once by the clear"),
        ));
    }
    lines
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |duration: Duration| duration.as_millis();
        writeln!(
            f,
            "Simulated call {} (StreamSid {})",
            self.call_sid, self.stream_sid
        )?;
        writeln!(
            f,
            "  webhook → TwiML:               {:>6} ms",
            ms(self.webhook_to_twiml)
        )?;
        match self.start_to_first_audio {
            Some(duration) => {
                writeln!(f, "  start → first assistant audio: {:>6} ms", ms(duration))?
            }
            None => writeln!(
                f,
                "  start → first assistant audio:   none (the assistant never spoke)"
            )?,
        }
        match self.barge_in_to_clear {
            Some(duration) => {
                writeln!(f, "  barge-in → clear:              {:>6} ms", ms(duration))?
            }
            None => writeln!(f, "  barge-in → clear:                none")?,
        }
        writeln!(
            f,
            "  assistant audio:               {:>6} ms received, {} ms played",
            self.assistant_audio_ms, self.assistant_played_ms
        )?;
        writeln!(
            f,
            "  marks echoed:                  {:>6} ({} at once by a clear)",
            self.marks_echoed, self.stale_marks_echoed
        )?;
        if self.invalid_messages > 0 {
            writeln!(
                f,
                "  unusable server messages:      {:>6}",
                self.invalid_messages
            )?;
        }
        match &self.end_reason {
            Some(reason) => writeln!(f, "  ended by: {} ({reason})", self.ended_by)?,
            None => writeln!(f, "  ended by: {}", self.ended_by)?,
        }
        if let Some(path) = &self.saved_audio {
            writeln!(f, "  assistant audio saved to {}", path.display())?;
        }
        writeln!(f, "Timeline:")?;
        for (at, line) in &self.timeline {
            writeln!(f, "  {:>7.3} s  {line}", at.as_secs_f64())?;
        }
        write!(
            f,
            "The transcript stays on the server: see its end-of-call log line or the call record for {}.",
            self.call_sid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: Instant, ms: u64, kind: Observation) -> ObservedEvent {
        ObservedEvent {
            at: origin + Duration::from_millis(ms),
            kind,
        }
    }

    #[test]
    fn the_timeline_summarises_audio_and_the_marks_a_clear_echoes() {
        // Arrange
        let origin = Instant::now();
        let events = vec![
            at(
                origin,
                10,
                Observation::Started {
                    stream_sid: "MZ1".to_owned(),
                },
            ),
            at(
                origin,
                900,
                Observation::Media {
                    bytes: 160,
                    queued_ms: 0,
                },
            ),
            at(
                origin,
                901,
                Observation::Media {
                    bytes: 160,
                    queued_ms: 19,
                },
            ),
            at(
                origin,
                901,
                Observation::Mark {
                    name: "g1:s1".to_owned(),
                },
            ),
            at(
                origin,
                921,
                Observation::MarkEchoed {
                    name: "g1:s1".to_owned(),
                    stale: false,
                },
            ),
            at(
                origin,
                930,
                Observation::Clear {
                    played_ms_at_clear: 29,
                    dropped_ms: 11,
                },
            ),
            at(
                origin,
                930,
                Observation::MarkEchoed {
                    name: "g1:s2".to_owned(),
                    stale: true,
                },
            ),
            at(
                origin,
                930,
                Observation::MarkEchoed {
                    name: "g1:s3".to_owned(),
                    stale: true,
                },
            ),
            at(
                origin,
                2000,
                Observation::Closed {
                    by_server: true,
                    code: Some(1000),
                    reason: String::new(),
                    unplayed_ms: 0,
                },
            ),
        ];

        // Act
        let lines: Vec<String> = timeline_of(&events, origin)
            .into_iter()
            .map(|(_, line)| line)
            .collect();

        // Assert
        assert_eq!(
            lines,
            vec![
                "start sent (StreamSid MZ1)",
                "assistant audio starts",
                "clear: 11 ms of assistant audio dropped (29 ms played in all)",
                "2 pending mark(s) echoed at once by the clear",
                "server closed the stream (code 1000)",
            ]
        );
    }

    #[test]
    fn the_report_prints_timings_in_ms_and_timeline_lines_in_seconds() {
        // Arrange
        let report = SimulationReport {
            call_sid: "CA1".to_owned(),
            stream_sid: "MZ1".to_owned(),
            webhook_to_twiml: Duration::from_millis(12),
            start_to_first_audio: Some(Duration::from_millis(1234)),
            barge_in_to_clear: None,
            assistant_audio_ms: 5230,
            assistant_played_ms: 4100,
            marks_echoed: 40,
            stale_marks_echoed: 3,
            invalid_messages: 0,
            ended_by: ENDED_BY_SERVER.to_owned(),
            end_reason: Some("goodbye".to_owned()),
            saved_audio: None,
            timeline: vec![(
                Duration::from_millis(1234),
                "assistant audio starts".to_owned(),
            )],
        };

        // Act
        let text = report.to_string();

        // Assert
        assert!(
            text.contains("webhook → TwiML:                   12 ms"),
            "{text}"
        );
        assert!(
            text.contains("start → first assistant audio:   1234 ms"),
            "{text}"
        );
        assert!(
            text.contains("barge-in → clear:                none"),
            "{text}"
        );
        assert!(
            text.contains("    1.234 s  assistant audio starts"),
            "{text}"
        );
        assert!(
            text.contains("ended by: server closed the stream"),
            "{text}"
        );
    }

    use base64::Engine as _;
    use futures_util::{SinkExt as _, StreamExt as _};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::{self, Message};

    const TOKEN: &str = "test-auth-token";
    const PUBLIC_URL: &str = "https://public.example";
    const STREAM_URL: &str = "wss://public.example/media-stream/stream-token-123";

    /// Answers one webhook POST with a `<Connect><Stream>` TwiML, then accepts the stream upgrade on the same port
    /// and hands the socket and the upgrade's `X-Twilio-Signature` to `play`, which plays callbridge's side.
    // tungstenite's handshake callback returns its (large) HTTP response type as the error.
    #[allow(clippy::result_large_err)]
    async fn fake_callbridge<F, Fut>(play: F) -> (String, tokio::task::JoinHandle<Option<String>>)
    where
        F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port is free");
        let server_url = format!("http://{}", listener.local_addr().expect("bound"));
        let handle = tokio::spawn(async move {
            let (mut http, _) = listener.accept().await.expect("the webhook arrives");
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("ApiVersion=2010-04-01") {
                let read = http
                    .read(&mut buffer)
                    .await
                    .expect("the request is readable");
                assert!(read > 0, "the request ended early");
                request.extend_from_slice(&buffer[..read]);
            }
            let twiml = format!(
                r#"<Response><Connect><Stream url="{STREAM_URL}"><Parameter name="callId" value="c-1"/></Stream></Connect></Response>"#
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{twiml}",
                twiml.len()
            );
            http.write_all(answer.as_bytes())
                .await
                .expect("the answer is writable");
            http.shutdown().await.ok();
            let (tcp, _) = listener.accept().await.expect("the stream connects");
            let mut signature = None;
            let capture =
                |request: &tungstenite::handshake::server::Request,
                 response: tungstenite::handshake::server::Response| {
                    assert_eq!(request.uri().path(), "/media-stream/stream-token-123");
                    signature = request
                        .headers()
                        .get("X-Twilio-Signature")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    Ok(response)
                };
            let socket = tokio_tungstenite::accept_hdr_async(tcp, capture)
                .await
                .expect("the upgrade succeeds");
            play(socket).await;
            signature
        });
        (server_url, handle)
    }

    type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    /// Reads until an event of this name; returns it.
    async fn read_until(socket: &mut Socket, event: &str) -> Value {
        loop {
            let message = socket
                .next()
                .await
                .expect("the socket is open")
                .expect("a valid frame");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if value["event"] == event {
                    return value;
                }
            }
        }
    }

    async fn send(socket: &mut Socket, value: Value) {
        socket
            .send(Message::text(value.to_string()))
            .await
            .expect("the client is connected");
    }

    fn audio_payload(bytes: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![0x55u8; bytes])
    }

    fn options(server_url: &str) -> SimulateOptions {
        let mut opts = SimulateOptions::new(server_url, PUBLIC_URL, TOKEN, vec![0x10; 800]);
        opts.max_duration = Duration::from_secs(5);
        opts
    }

    #[tokio::test]
    async fn a_simulated_call_reports_the_assistants_audio_and_the_servers_close() {
        // Arrange: the server answers 400 ms of audio and a mark, waits for the echo, then hangs up.
        let (server_url, server) = fake_callbridge(|mut socket| async move {
            let start = read_until(&mut socket, "start").await;
            assert_eq!(start["start"]["customParameters"], json!({"callId": "c-1"}));
            let stream_sid = start["streamSid"].clone();
            send(&mut socket, json!({"event": "media", "streamSid": stream_sid, "media": {"payload": audio_payload(3_200)}})).await;
            send(&mut socket, json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "g1:s1"}})).await;
            read_until(&mut socket, "mark").await;
            socket.close(None).await.expect("the socket is open");
        })
        .await;
        let saved = std::env::temp_dir().join(format!(
            "callbridge-simulate-run-{}.wav",
            std::process::id()
        ));
        let mut opts = options(&server_url);
        opts.save_audio = Some(saved.clone());

        // Act
        let report = run(opts).await.expect("the simulated call runs");
        let upgrade_signature = server.await.expect("the fake server ends");

        // Assert
        assert_eq!(report.ended_by, ENDED_BY_SERVER);
        assert!(report.start_to_first_audio.is_some());
        assert_eq!(report.assistant_audio_ms, 400);
        assert_eq!(report.marks_echoed, 1);
        assert_eq!(report.invalid_messages, 0);
        assert_eq!(
            upgrade_signature,
            Some(twilio_signature(TOKEN, STREAM_URL, &[]))
        );
        let saved_audio =
            super::super::read_wav_as_mulaw(&saved).expect("the saved WAV is readable");
        assert_eq!(saved_audio, vec![0x55u8; 3_200]);
        let lines: Vec<&str> = report
            .timeline
            .iter()
            .map(|(_, line)| line.as_str())
            .collect();
        assert!(lines.contains(&"assistant audio starts"), "{lines:?}");
    }

    #[tokio::test]
    async fn a_barge_in_is_timed_to_the_servers_clear() {
        // Arrange: 2 s of assistant audio; the server clears as soon as caller audio that is not silence arrives
        // after the first frames (the barge-in), then hangs up.
        let (server_url, server) = fake_callbridge(|mut socket| async move {
            let start = read_until(&mut socket, "start").await;
            let stream_sid = start["streamSid"].clone();
            send(&mut socket, json!({"event": "media", "streamSid": stream_sid, "media": {"payload": audio_payload(16_000)}})).await;
            send(&mut socket, json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "g1:s1"}})).await;
            let loud = base64::engine::general_purpose::STANDARD.encode(vec![0x00u8; 160]);
            loop {
                let media = read_until(&mut socket, "media").await;
                if media["media"]["payload"] == loud.as_str() {
                    break;
                }
            }
            send(&mut socket, json!({"event": "clear", "streamSid": stream_sid})).await;
            read_until(&mut socket, "mark").await;
            socket.close(None).await.expect("the socket is open");
        })
        .await;
        let mut opts = options(&server_url);
        opts.audio = vec![0xFF; 160];
        opts.barge_in_at = Some(Duration::from_millis(300));
        opts.barge_in_audio = Some(vec![0x00; 800]);

        // Act
        let report = run(opts).await.expect("the simulated call runs");
        server.await.expect("the fake server ends");

        // Assert
        let barge_in_to_clear = report
            .barge_in_to_clear
            .expect("the clear follows the barge-in");
        assert!(
            barge_in_to_clear < Duration::from_secs(1),
            "{barge_in_to_clear:?}"
        );
        assert_eq!(report.stale_marks_echoed, 1);
        assert!(
            (250..1_000).contains(&report.assistant_played_ms),
            "{}",
            report.assistant_played_ms
        );
        assert_eq!(report.ended_by, ENDED_BY_SERVER);
    }

    #[tokio::test]
    async fn the_simulator_hangs_up_at_the_maximum_duration() {
        // Arrange: a server that never ends the call.
        let (server_url, server) = fake_callbridge(|mut socket| async move {
            read_until(&mut socket, "stop").await;
        })
        .await;
        let mut opts = options(&server_url);
        opts.max_duration = Duration::from_millis(300);

        // Act
        let report = run(opts).await.expect("the simulated call runs");
        server.await.expect("the fake server saw the stop");

        // Assert
        assert_eq!(report.ended_by, ENDED_BY_MAX_DURATION);
        assert_eq!(report.start_to_first_audio, None);
    }

    #[tokio::test]
    async fn a_refused_webhook_is_an_error_carrying_the_status() {
        // Arrange: a server that answers 403.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port is free");
        let server_url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            let (mut http, _) = listener.accept().await.expect("the webhook arrives");
            let mut buffer = [0u8; 4096];
            let _ = http.read(&mut buffer).await;
            let answer =
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nForbidden";
            http.write_all(answer.as_bytes())
                .await
                .expect("the answer is writable");
            http.shutdown().await.ok();
        });

        // Act
        let result = run(options(&server_url)).await;

        // Assert
        assert!(
            matches!(&result, Err(SimulateError::WebhookRejected { status: 403, body }) if body == "Forbidden"),
            "{result:?}"
        );
    }

    #[test]
    fn the_stream_token_is_shortened_when_printed() {
        assert_eq!(
            redact_token("wss://h.example/media-stream/abcdefghijklmnop"),
            "wss://h.example/media-stream/abcd…"
        );
    }
}
