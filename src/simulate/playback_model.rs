//! The simulated caller's ear: a model of Twilio playing the assistant's audio in real time, and echoing each mark
//! when the audio before it has played (at once on `clear`). Pure: time is passed in.
//! Follows <https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message>.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::audio::MULAW_BYTES_PER_MS;

/// Microseconds of audio per μ-law byte (8 kHz).
pub(super) const MICROS_PER_BYTE: u64 = 1_000 / MULAW_BYTES_PER_MS;

/// What [`PlaybackModel::poll`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackOutput {
    /// Playback reached this mark: echo it.
    MarkPlayed(String),
    /// Playback ran out of audio.
    Idle {
        /// Total played, in ms.
        played_ms: u64,
    },
}

/// What a `clear` did to playback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// Total played at the clear, in ms.
    pub played_ms: u64,
    /// Unplayed audio dropped, in ms.
    pub dropped_ms: u64,
    /// Marks still pending, in order: Twilio echoes them at once.
    pub stale_marks: Vec<String>,
}

/// A phone's playback of the assistant's audio, without I/O: audio plays at 8 μ-law bytes per ms from when it
/// arrives, chunks queue in order, and a mark sits at the end of the audio received before it.
///
/// Time is passed in, so tests drive it with made-up instants. Positions are in µs of audio (125 µs per byte), so
/// no rounding accumulates.
#[derive(Debug, Clone)]
pub struct PlaybackModel {
    /// The instant `played_us` and `buffered_us` describe.
    last_update: Instant,
    /// Audio played since the stream started, in µs.
    played_us: u64,
    /// Audio received and not yet played, in µs.
    buffered_us: u64,
    /// Audio was playing at `last_update` and no `Idle` has been reported since.
    playing: bool,
    /// Marks not yet reached: (position in µs of played audio at which they are reached, name).
    pending_marks: VecDeque<(u64, String)>,
}

impl PlaybackModel {
    /// An idle playback with nothing played, starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            last_update: now,
            played_us: 0,
            buffered_us: 0,
            playing: false,
            pending_marks: VecDeque::new(),
        }
    }

    fn advance(&mut self, now: Instant) {
        if now <= self.last_update {
            return;
        }
        let elapsed_us =
            u64::try_from(now.duration_since(self.last_update).as_micros()).unwrap_or(u64::MAX);
        let step_us = elapsed_us.min(self.buffered_us);
        self.played_us += step_us;
        self.buffered_us -= step_us;
        self.last_update = now;
    }

    /// Queues `bytes` of μ-law behind what is already queued; returns the ms still queued ahead of it.
    pub fn push_audio(&mut self, now: Instant, bytes: usize) -> u64 {
        self.advance(now);
        let queued_ms = self.buffered_us / 1_000;
        self.buffered_us += u64::try_from(bytes).unwrap_or(u64::MAX / 2) * MICROS_PER_BYTE;
        if bytes > 0 {
            self.playing = true;
        }
        queued_ms
    }

    /// Places a mark after the audio queued so far (reached at once if nothing is queued).
    pub fn push_mark(&mut self, now: Instant, name: String) {
        self.advance(now);
        self.pending_marks
            .push_back((self.played_us + self.buffered_us, name));
    }

    /// Advances to `now` and reports, in order, the marks reached and whether playback just ran dry.
    pub fn poll(&mut self, now: Instant) -> Vec<PlaybackOutput> {
        self.advance(now);
        let mut outputs = Vec::new();
        while let Some((position_us, _)) = self.pending_marks.front() {
            if *position_us > self.played_us {
                break;
            }
            if let Some((_, name)) = self.pending_marks.pop_front() {
                outputs.push(PlaybackOutput::MarkPlayed(name));
            }
        }
        if self.playing && self.buffered_us == 0 {
            self.playing = false;
            outputs.push(PlaybackOutput::Idle {
                played_ms: self.played_us / 1_000,
            });
        }
        outputs
    }

    /// Drops all unplayed audio and hands back every pending mark, as a Twilio `clear` does.
    pub fn clear(&mut self, now: Instant) -> Cleared {
        self.advance(now);
        let dropped_ms = self.buffered_us / 1_000;
        self.buffered_us = 0;
        self.playing = false;
        Cleared {
            played_ms: self.played_us / 1_000,
            dropped_ms,
            stale_marks: self.pending_marks.drain(..).map(|(_, name)| name).collect(),
        }
    }

    /// When [`Self::poll`] next has something to report: the next mark's position or the end of the queued audio.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mark = self.pending_marks.front().map(|(position_us, _)| {
            self.last_update + Duration::from_micros(position_us.saturating_sub(self.played_us))
        });
        let idle = self
            .playing
            .then(|| self.last_update + Duration::from_micros(self.buffered_us));
        match (mark, idle) {
            (Some(mark), Some(idle)) => Some(mark.min(idle)),
            (mark, idle) => mark.or(idle),
        }
    }

    /// Audio played by `now`, in ms.
    pub fn played_ms(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.played_us / 1_000
    }

    /// Audio queued and not yet played at `now`, in ms.
    pub fn buffered_ms(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.buffered_us / 1_000
    }
}
