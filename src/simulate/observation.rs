//! What the simulated Twilio client saw or did during a Media Stream: [`ObservedEvent`] (an [`Observation`] with
//! the instant it happened). [`MediaStreamClient`](super::media_client::MediaStreamClient) records them; tests and
//! the simulation report read them.

use tokio::time::Instant;

/// Something the client saw or did, with the instant it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedEvent {
    /// When it happened ([`tokio::time::Instant`], so paused test time applies).
    pub at: Instant,
    /// What happened.
    pub kind: Observation,
}

/// The kinds of [`ObservedEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The client sent `connected` and `start` with this StreamSid; caller audio frames follow.
    Started {
        /// `MZ` + 32 hex digits.
        stream_sid: String,
    },
    /// The server sent assistant audio.
    Media {
        /// Decoded μ-law bytes in this message (8 per ms).
        bytes: usize,
        /// Audio still unplayed when it arrived, in ms; 0 means this chunk starts playing at once.
        queued_ms: u64,
    },
    /// The server sent a mark; it is echoed when playback reaches it.
    Mark {
        /// The mark's name.
        name: String,
    },
    /// The server sent `clear`.
    Clear {
        /// Assistant audio played since the stream started, at the moment of the clear, in ms.
        played_ms_at_clear: u64,
        /// Unplayed assistant audio dropped by the clear, in ms.
        dropped_ms: u64,
    },
    /// The client echoed a mark back to the server.
    MarkEchoed {
        /// The mark's name.
        name: String,
        /// True when echoed because of a `clear` (its audio never played).
        stale: bool,
    },
    /// Playback ran out of assistant audio (the assistant stopped talking, as the caller hears it).
    PlaybackIdle {
        /// Assistant audio played since the stream started, in ms.
        played_ms: u64,
    },
    /// The last frame of the queued caller audio has been sent.
    CallerAudioSent {
        /// Caller audio bytes sent since the previous `CallerAudioSent` (silence padding excluded).
        bytes: usize,
    },
    /// The client sent a `dtmf` message.
    DtmfSent {
        /// The key pressed.
        digit: char,
    },
    /// The client sent `stop` (the caller hung up).
    StopSent,
    /// The server sent something the client could not use (bad JSON, unknown event, wrong streamSid, binary frame).
    /// Real Twilio would ignore it or fail the stream; recorded so tests can assert it never happens.
    Invalid {
        /// What was wrong, with the message text when it was text.
        reason: String,
    },
    /// The socket is closed.
    Closed {
        /// True when the server closed it first (rather than the client after `stop`, or a socket error).
        by_server: bool,
        /// The close code in the close frame, if any.
        code: Option<u16>,
        /// The close reason, or the socket error.
        reason: String,
        /// Assistant audio still unplayed when the socket closed, in ms: it is never heard (playback stops, and
        /// pending marks are not echoed).
        unplayed_ms: u64,
    },
}
