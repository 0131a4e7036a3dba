//! The floor of the many-call load benchmark (`make bench-load-floor`): the least a relay can do for the bench's calls
//! on this machine, so callbridge's figures can be read against what the sockets alone cost here.
//!
//! It speaks just enough to stand in for `callbridge serve` under `benches/load.rs`: any `POST` is answered with fixed
//! TwiML (`<Connect><Stream>`, no signature check), any `GET` is taken as the Media Stream upgrade. Each call is one
//! task that polls both sockets and does only what the bench sees the relay do: on `start` it opens the Realtime
//! socket (`OPENAI_REALTIME_URL`) and sends a `session.update`; each caller `media` frame becomes an
//! `input_audio_buffer.append`; each `response.output_audio.delta` becomes a Twilio `media` and a `mark`, fed and
//! flushed together. No signatures, tokens, conductor, playback ledger, timers, transcript or records: what is left is
//! tokio, tungstenite, serde_json and the kernel's loopback TCP, with the threads shaped like actix-web's (one
//! single-threaded runtime per core, connections dealt out in turn).
//!
//! Not a product: it exists to be measured. Settings: `CALLBRIDGE_HOST`, `CALLBRIDGE_PORT`, `OPENAI_REALTIME_URL`
//! (the variables the bench sets for the real binary); `FLOOR_RELAY_WORKERS` (default: the number of CPUs).

use std::borrow::Cow;
use std::net::TcpListener;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The TwiML every webhook gets: the bench rewrites the stream URL's host to the server it posted to.
const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://callbridge.test/media-stream"/></Connect></Response>"#;
/// Longest request head or body read from a webhook.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Deadline of every set-up step (webhook, upgrade, Realtime connect).
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The same small buffers callbridge's Realtime link uses.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(256 * 1024)
}

/// The fields of a Twilio Media Streams message the floor reads.
#[derive(Deserialize)]
struct TwilioEvent<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<TwilioMedia<'a>>,
    #[serde(borrow, default, rename = "streamSid")]
    stream_sid: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TwilioMedia<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

/// The fields of a Realtime server event the floor reads.
#[derive(Deserialize)]
struct ServerEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
}

fn main() -> std::io::Result<()> {
    let host = std::env::var("CALLBRIDGE_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("CALLBRIDGE_PORT").unwrap_or_else(|_| "8080".to_owned());
    let realtime_url = std::env::var("OPENAI_REALTIME_URL")
        .map_err(|_| std::io::Error::other("OPENAI_REALTIME_URL is not set"))?;
    let workers = std::env::var("FLOOR_RELAY_WORKERS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let listener = TcpListener::bind(format!("{host}:{port}"))?;
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("floor-worker-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    eprintln!("floor relay on {host}:{port}, {workers} worker(s), Realtime at {realtime_url}");
    for (accepted, connection) in listener.incoming().enumerate() {
        let Ok(connection) = connection else { continue };
        let url = realtime_url.clone();
        let handle = &handles[accepted % workers];
        if connection.set_nonblocking(true).is_err() || connection.set_nodelay(true).is_err() {
            continue;
        }
        handle.spawn(async move {
            let Ok(stream) = TcpStream::from_std(connection) else {
                return;
            };
            let _ = tokio::time::timeout(SETUP_TIMEOUT, serve_connection_head(stream, url)).await;
        });
    }
    Ok(())
}

/// Takes one connection: a `GET` is a Media Stream (bridged to its end, outside the set-up deadline); anything else
/// is answered as the incoming-call webhook and closed.
async fn serve_connection_head(stream: TcpStream, realtime_url: String) {
    let mut first = [0u8; 4];
    if stream.peek(&mut first).await.is_err() {
        return;
    }
    if &first[..] == b"GET " {
        let Ok(twilio) =
            tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config())).await
        else {
            return;
        };
        tokio::spawn(bridge(twilio, realtime_url));
    } else {
        answer_webhook(stream).await;
    }
}

/// Reads a request head and its `Content-Length` body, then answers 200 with [`TWIML`] and closes.
async fn answer_webhook(mut stream: TcpStream) {
    let mut request = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 || request.len() + n > MAX_REQUEST_BYTES {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
        let body_bytes = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if request.len() >= head_end + 4 + body_bytes {
            break;
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TWIML}",
        TWIML.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

/// One call: waits for `start`, opens the Realtime socket, then moves frames both ways until either side ends.
async fn bridge(mut twilio: Ws<TcpStream>, realtime_url: String) {
    let stream_sid = loop {
        match twilio.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(event) = serde_json::from_str::<TwilioEvent<'_>>(&text)
                    && event.event == "start"
                    && let Some(sid) = event.stream_sid
                {
                    break sid.into_owned();
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    };
    let connecting = tokio_tungstenite::connect_async_with_config(
        realtime_url.as_str(),
        Some(websocket_config()),
        true,
    );
    let Ok(Ok((mut realtime, _))) = tokio::time::timeout(SETUP_TIMEOUT, connecting).await else {
        return;
    };
    let update = r#"{"type":"session.update","session":{"type":"realtime"}}"#;
    if realtime.send(Message::text(update)).await.is_err() {
        return;
    }
    let mut mark_number: u64 = 0;
    loop {
        tokio::select! {
            message = twilio.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                let Ok(event) = serde_json::from_str::<TwilioEvent<'_>>(&text) else { continue };
                match (event.event.as_ref(), event.media) {
                    ("media", Some(media)) => {
                        let append = format!(
                            r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
                            media.payload
                        );
                        if realtime.send(Message::text(append)).await.is_err() {
                            break;
                        }
                    }
                    ("stop", _) => break,
                    _ => {}
                }
            }
            message = realtime.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                let Ok(event) = serde_json::from_str::<ServerEvent<'_>>(&text) else { continue };
                if let ("response.output_audio.delta", Some(delta)) = (event.kind.as_ref(), event.delta) {
                    mark_number += 1;
                    let media = format!(
                        r#"{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{delta}"}}}}"#
                    );
                    let mark = format!(
                        r#"{{"event":"mark","streamSid":"{stream_sid}","mark":{{"name":"m{mark_number}"}}}}"#
                    );
                    if twilio.feed(Message::text(media)).await.is_err()
                        || twilio.send(Message::text(mark)).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(SETUP_TIMEOUT, async {
        let _ = realtime.close(None).await;
        let _ = twilio.close(None).await;
    })
    .await;
}
