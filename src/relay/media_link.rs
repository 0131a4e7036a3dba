//! The bridge's Twilio side: the call's current media stream, wherever its socket lives.
//!
//! A media stream socket belongs to the actix worker thread that accepted it ([`TwilioWriter`] and [`TwilioReader`]
//! are not `Send`). The call's first stream is accepted on the thread that then runs the call, so the bridge uses it
//! directly ([`MediaLink::Local`]). A later stream of the same call (a stream handover) may be accepted on another
//! worker: that worker keeps the socket and runs a small pump task that moves frames to and from the call over
//! bounded channels ([`MediaLink::Remote`], made by [`pump`]). Nothing waits without a deadline: the bridge's
//! sends are `try_send` (a full channel is a stalled peer), and the pump gives a frame [`FORWARD_TIMEOUT`] to reach
//! the call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::relay::twilio_socket::{
    CloseReason, Message, ReadError, TwilioReader, TwilioWriter, WriteError,
};

/// How long the connection gets to take the close frame before it is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pump waits for the call to take a frame before it drops the stream.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued from the call to a remote stream before a send fails as stalled (about 5 s of 20 ms media with
/// their marks).
const OUTGOING_FRAMES: usize = 512;
/// Frames queued from a remote stream to the call.
const INCOMING_FRAMES: usize = 64;
/// How often the pump reports the writer's stall clock.
const STALL_REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// What the call sends a remote stream.
#[derive(Debug)]
enum Outgoing {
    Text(String),
    Pong(Vec<u8>),
    Close(Option<CloseReason>),
}

/// A media stream whose socket lives on another worker thread: channels to its pump.
#[derive(Debug)]
pub struct RemoteStream {
    frames: mpsc::Receiver<Result<Message, ReadError>>,
    outgoing: mpsc::Sender<Outgoing>,
    stalled_since: Arc<Mutex<Option<Instant>>>,
}

/// The call's current media stream.
pub enum MediaLink {
    /// The socket is on this thread.
    Local {
        /// Queues frames for Twilio.
        writer: TwilioWriter,
        /// Frames from Twilio.
        frames: TwilioReader,
    },
    /// The socket is on another worker; a pump moves the frames.
    Remote(RemoteStream),
}

impl std::fmt::Debug for MediaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaLink::Local { .. } => f.write_str("MediaLink::Local"),
            MediaLink::Remote(_) => f.write_str("MediaLink::Remote"),
        }
    }
}

impl MediaLink {
    /// The next frame; `None` when the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<Message, ReadError>> {
        match self {
            MediaLink::Local { frames, .. } => frames.recv().await,
            MediaLink::Remote(remote) => remote.frames.recv().await,
        }
    }

    /// Queues a text frame.
    ///
    /// # Errors
    /// [`WriteError::Gone`] when the stream has ended; [`WriteError::Full`] when the peer is not taking frames.
    pub fn send_text(&mut self, text: &str) -> Result<(), WriteError> {
        match self {
            MediaLink::Local { writer, .. } => writer.send_text(text),
            MediaLink::Remote(remote) => remote.send(Outgoing::Text(text.to_owned())),
        }
    }

    /// Queues a pong.
    ///
    /// # Errors
    /// As [`MediaLink::send_text`].
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        match self {
            MediaLink::Local { writer, .. } => writer.pong(payload),
            MediaLink::Remote(remote) => remote.send(Outgoing::Pong(payload.to_vec())),
        }
    }

    /// Since when queued frames have waited for the peer.
    pub fn stalled_since(&self) -> Option<Instant> {
        match self {
            MediaLink::Local { writer, .. } => writer.stalled_since(),
            MediaLink::Remote(remote) => *remote
                .stalled_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Closes the stream with `reason` after what is queued (dropped after [`CLOSE_TIMEOUT`] if the close does not
    /// get through); `None` drops the connection at once.
    pub fn close(self, reason: Option<CloseReason>) {
        match self {
            MediaLink::Local { writer, .. } => close_writer(writer, reason),
            MediaLink::Remote(remote) => {
                // A pump that cannot take the close drops the stream when the channel closes with this value.
                let _ = remote.outgoing.try_send(Outgoing::Close(reason));
            }
        }
    }
}

impl RemoteStream {
    fn send(&self, frame: Outgoing) -> Result<(), WriteError> {
        self.outgoing.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Full,
            mpsc::error::TrySendError::Closed(_) => WriteError::Gone,
        })
    }
}

/// Closes `writer` with `reason` (a close frame after what is queued, the connection dropped if it has not taken it
/// within [`CLOSE_TIMEOUT`]); `None` drops the connection at once.
pub fn close_writer(writer: TwilioWriter, reason: Option<CloseReason>) {
    match reason {
        None => writer.abort(),
        Some(close) => {
            let handle = writer.abort_handle();
            writer.close(Some(close));
            if !handle.is_gone() {
                actix_web::rt::spawn(async move {
                    tokio::time::sleep(CLOSE_TIMEOUT).await;
                    handle.abort();
                });
            }
        }
    }
}

/// Keeps the socket on this worker thread and returns the channels a call on any thread uses it through. The pump
/// ends when the stream ends, when the call closes it or drops the channels, or when a frame waits
/// [`FORWARD_TIMEOUT`] for the call.
pub fn pump(writer: TwilioWriter, frames: TwilioReader) -> RemoteStream {
    let (frames_tx, frames_rx) = mpsc::channel(INCOMING_FRAMES);
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_FRAMES);
    let stalled_since = Arc::new(Mutex::new(None));
    actix_web::rt::spawn(run_pump(
        writer,
        frames,
        frames_tx,
        outgoing_rx,
        Arc::clone(&stalled_since),
    ));
    RemoteStream {
        frames: frames_rx,
        outgoing: outgoing_tx,
        stalled_since,
    }
}

async fn run_pump(
    mut writer: TwilioWriter,
    mut frames: TwilioReader,
    frames_tx: mpsc::Sender<Result<Message, ReadError>>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    stalled_since: Arc<Mutex<Option<Instant>>>,
) {
    let mut report = tokio::time::interval(STALL_REPORT_INTERVAL);
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { return };
                let last = matches!(&frame, Ok(Message::Close(_)))
                    || frame.as_ref().is_err_and(|e| !e.is_skippable());
                match tokio::time::timeout(FORWARD_TIMEOUT, frames_tx.send(frame)).await {
                    Ok(Ok(())) if !last => {}
                    Ok(Ok(())) => return,
                    // The call is gone or not reading: drop the stream.
                    _ => {
                        writer.abort();
                        return;
                    }
                }
            }
            frame = outgoing.recv() => {
                let sent = match frame {
                    Some(Outgoing::Text(text)) => writer.send_text(&text),
                    Some(Outgoing::Pong(payload)) => writer.pong(&payload),
                    Some(Outgoing::Close(reason)) => {
                        close_writer(writer, reason);
                        return;
                    }
                    // The call dropped the stream without closing it: drop the connection.
                    None => {
                        close_writer(writer, None);
                        return;
                    }
                };
                if sent.is_err() {
                    writer.abort();
                    return;
                }
            }
            _ = report.tick() => {
                *stalled_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = writer.stalled_since();
            }
        }
    }
}
