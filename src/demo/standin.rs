//! The local stand-in for the OpenAI Realtime API: a WebSocket server on a loopback port that plays
//! [`StandInSession`]s. It is not OpenAI and says so: every timeline line it writes is marked as the stand-in's.
//!
//! The upgrade follows the GA shape (<https://platform.openai.com/docs/guides/realtime-websocket>):
//! `GET /v1/realtime?model=M`; any other path is refused with 404. The key the relay sends is not checked and not
//! kept. Each connection is one session, run by one task until either side closes it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_util::sync::CancellationToken;

use super::session::{Output, StandInSession};

/// The path the stand-in serves, as OpenAI's.
pub const REALTIME_PATH: &str = "/v1/realtime";
/// How long the upgrade, or one send to the relay, may take before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A line of the stand-in's timeline: when, and what it did.
pub type Note = (Instant, String);

/// The running stand-in. Dropping it does not stop it: call [`StandIn::stop`].
#[derive(Debug)]
pub struct StandIn {
    /// Where it listens (`127.0.0.1:PORT`).
    address: SocketAddr,
    /// What it did, in order.
    notes: Arc<Mutex<Vec<Note>>>,
    /// Stops the accept loop and every session.
    stop: CancellationToken,
}

impl StandIn {
    /// Starts the stand-in on `127.0.0.1`, on a free port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<StandIn> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let notes = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, notes.clone(), stop.clone()));
        Ok(StandIn {
            address,
            notes,
            stop,
        })
    }

    /// The Realtime URL to configure (`ws://127.0.0.1:PORT/v1/realtime`, without `model`).
    pub fn url(&self) -> String {
        format!("ws://{}{REALTIME_PATH}", self.address)
    }

    /// What the stand-in did so far, in order.
    pub fn notes(&self) -> Vec<Note> {
        lock(&self.notes).clone()
    }

    /// Stops accepting and closes every session.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The notes, even if a session task panicked while holding the lock (the notes are plain lines).
fn lock(notes: &Mutex<Vec<Note>>) -> std::sync::MutexGuard<'_, Vec<Note>> {
    notes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, notes: Arc<Mutex<Vec<Note>>>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                tokio::spawn(serve(tcp, notes.clone(), stop.clone()));
            }
            Err(error) => tracing::warn!(%error, "demo stand-in: cannot accept a connection"),
        }
    }
}

/// Refuses any path but [`REALTIME_PATH`] (404) and a missing `model` (400), as the real endpoint does.
// tungstenite's handshake callback returns its HTTP response type as the error.
#[allow(clippy::result_large_err)]
fn check_upgrade(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    let refuse = |status: http::StatusCode, why: &str| {
        let mut response = ErrorResponse::new(Some(why.to_owned()));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != REALTIME_PATH {
        return Err(refuse(http::StatusCode::NOT_FOUND, "not found"));
    }
    let has_model = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("model=")));
    if !has_model {
        return Err(refuse(http::StatusCode::BAD_REQUEST, "missing model"));
    }
    Ok(response)
}

/// Plays one session on one connection until either side closes it or the stand-in stops.
async fn serve(tcp: TcpStream, notes: Arc<Mutex<Vec<Note>>>, stop: CancellationToken) {
    let handshake = tokio_tungstenite::accept_hdr_async(tcp, check_upgrade);
    let Ok(Ok(mut socket)) = tokio::time::timeout(SEND_TIMEOUT, handshake).await else {
        return;
    };
    let mut session = StandInSession::new();
    let mut outputs = session.on_open();
    loop {
        for output in outputs.drain(..) {
            match output {
                Output::Send(text) => {
                    let sent =
                        tokio::time::timeout(SEND_TIMEOUT, socket.feed(Message::text(text))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                Output::Note(line) => lock(&notes).push((Instant::now(), line)),
            }
        }
        if !matches!(
            tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await,
            Ok(Ok(()))
        ) {
            return;
        }
        let deadline = session.next_deadline();
        let tick = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        outputs = tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(None)).await;
                return;
            }
            () = tick => session.on_tick(Instant::now()),
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => session.on_client_event(text.as_str(), Instant::now()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => Vec::new(),
            },
        };
    }
}
