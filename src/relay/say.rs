//! One `say` on a relay-mode call, as a plain state machine: waiting for the server to be free, speaking (its
//! `response.create` sent), playing (its response done, a mark queued behind its audio), then, when the agent asked
//! for it, waiting for the callee's reply. No I/O and no clock: the
//! [`Conductor`](crate::relay::conductor::Conductor) feeds it what happens and asks it what is due.
//!
//! What the callee heard is read from the call record: the assistant turns of the say's items, cut by a barge-in
//! exactly as for any other call (the record is the transcript; the report is a view of it). The reply is the
//! transcripts of the caller items whose speech started after the say was accepted: a callee who barges in answers
//! with the words that interrupted.

use std::time::Instant;

use crate::calls::say::{REPLY_TRANSCRIPT_GRACE, SAY_SPEAKING_TIMEOUT, SayReport, SayRequest};
use crate::calls::{CallRecord, Speaker};
use crate::relay::playback::MarkName;

/// Where a say is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SayPhase {
    /// Accepted; its `response.create` waits for the stream to start or for the server to be free.
    Waiting,
    /// Its `response.create` was sent; its response is not done.
    Speaking,
    /// Its response is done; the words are heard in full when `mark` is echoed (or at `deadline`). Without a mark
    /// (a final line) the farewell's own mark ends the call.
    Playing {
        /// The mark queued behind the say's last audio.
        mark: Option<MarkName>,
        /// When the words count as heard even without the echo.
        deadline: Option<Instant>,
    },
    /// The words were spoken; the callee's reply is awaited until `deadline`.
    AwaitingReply {
        /// When the wait ends.
        deadline: Instant,
        /// Whether the deadline was extended already for a reply still being transcribed.
        extended: bool,
    },
}

/// One say under way. See the module docs.
#[derive(Debug, Clone)]
pub struct SayTurn {
    /// What the agent asked for.
    request: SayRequest,
    /// Where it is.
    phase: SayPhase,
    /// When it must be spoken by ([`SAY_SPEAKING_TIMEOUT`] after it was accepted).
    speaking_deadline: Instant,
    /// The say's response, once `response.created` named it.
    response_id: Option<String>,
    /// The assistant items of that response.
    items: Vec<String>,
    /// The callee started speaking before the words had played.
    interrupted: bool,
    /// Caller items whose speech started after the say was accepted and whose transcript has not arrived.
    caller_pending: Vec<String>,
    /// Transcripts of those items, in order.
    reply: Vec<String>,
}

impl SayTurn {
    /// A say accepted at `now`, waiting to be sent.
    pub fn new(request: SayRequest, now: Instant) -> Self {
        SayTurn {
            request,
            phase: SayPhase::Waiting,
            speaking_deadline: now + SAY_SPEAKING_TIMEOUT,
            response_id: None,
            items: Vec::new(),
            interrupted: false,
            caller_pending: Vec::new(),
            reply: Vec::new(),
        }
    }

    /// What the agent asked for.
    pub fn request(&self) -> &SayRequest {
        &self.request
    }

    /// Where the say is.
    pub fn phase(&self) -> &SayPhase {
        &self.phase
    }

    /// Its `response.create` was sent.
    pub fn on_sent(&mut self) {
        self.phase = SayPhase::Speaking;
    }

    /// `response.created` named `response_id` while the say's request was the one in flight.
    pub fn on_response_created(&mut self, response_id: &str) {
        if self.phase == SayPhase::Speaking && self.response_id.is_none() {
            self.response_id = Some(response_id.to_owned());
        }
    }

    /// Whether `response_id` is the say's response.
    pub fn owns_response(&self, response_id: &str) -> bool {
        self.response_id.as_deref() == Some(response_id)
    }

    /// Audio or a transcript of item `item_id` of response `response_id` arrived.
    pub fn on_item(&mut self, response_id: &str, item_id: &str) {
        if self.owns_response(response_id) && !self.items.iter().any(|i| i == item_id) {
            self.items.push(item_id.to_owned());
        }
    }

    /// The say's response is done; its words are playing until `mark` is echoed or `deadline` passes.
    pub fn on_playing(&mut self, mark: Option<MarkName>, deadline: Option<Instant>) {
        self.phase = SayPhase::Playing { mark, deadline };
    }

    /// The callee started speaking (caller item `item_id`); `cut` when the words were still playing (a barge-in
    /// cut them).
    pub fn on_caller_speech(&mut self, item_id: &str, cut: bool) {
        if !self.caller_pending.iter().any(|i| i == item_id) {
            self.caller_pending.push(item_id.to_owned());
        }
        if cut {
            self.interrupted = true;
        }
    }

    /// The transcript of caller item `item_id` arrived: part of the reply when its speech started during the say.
    pub fn on_caller_transcript(&mut self, item_id: &str, transcript: &str) {
        let Some(at) = self.caller_pending.iter().position(|i| i == item_id) else {
            return;
        };
        self.caller_pending.remove(at);
        let words = transcript.trim();
        if !words.is_empty() {
            self.reply.push(words.to_owned());
        }
    }

    /// The words were spoken (heard in full, or cut) at `now`: the reply wait starts. Returns `true` when the say
    /// is done (no reply was asked for).
    pub fn on_spoken(&mut self, now: Instant) -> bool {
        if !self.request.wait_for_reply {
            return true;
        }
        self.phase = SayPhase::AwaitingReply {
            deadline: now + self.request.reply_timeout,
            extended: false,
        };
        false
    }

    /// Whether the reply is complete: some words came, and no speech that started during the say still waits for
    /// its transcript.
    pub fn reply_ready(&self) -> bool {
        matches!(self.phase, SayPhase::AwaitingReply { .. })
            && !self.reply.is_empty()
            && self.caller_pending.is_empty()
    }

    /// The earliest instant something is due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            SayPhase::Waiting | SayPhase::Speaking => Some(self.speaking_deadline),
            SayPhase::Playing { deadline, .. } => *deadline,
            SayPhase::AwaitingReply { deadline, .. } => Some(*deadline),
        }
    }

    /// What is due at `now`.
    pub fn on_tick(&mut self, now: Instant) -> SayTick {
        match &mut self.phase {
            SayPhase::Waiting | SayPhase::Speaking if now >= self.speaking_deadline => {
                SayTick::GiveUp
            }
            SayPhase::Playing {
                deadline: Some(deadline),
                ..
            } if now >= *deadline => SayTick::Spoken,
            SayPhase::AwaitingReply { deadline, extended } if now >= *deadline => {
                if !self.caller_pending.is_empty() && !*extended {
                    *deadline = now + REPLY_TRANSCRIPT_GRACE;
                    *extended = true;
                    SayTick::Nothing
                } else {
                    SayTick::ReplyTimedOut
                }
            }
            _ => SayTick::Nothing,
        }
    }

    /// The report, read from `record` (the say's assistant turns as heard). `reply_timed_out`: the wait ended
    /// without an answer; `call_ended`: the call is over.
    pub fn report(&self, record: &CallRecord, call_ended: bool) -> SayReport {
        let turns: Vec<_> = record
            .turns
            .iter()
            .filter(|t| {
                t.speaker == Speaker::Assistant
                    && t.item_id
                        .as_deref()
                        .is_some_and(|id| self.items.iter().any(|i| i == id))
            })
            .collect();
        let interrupted = self.interrupted || turns.iter().any(|t| t.interrupted);
        let heard_text = turns
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let reply = (!self.reply.is_empty()).then(|| self.reply.join(" "));
        SayReport {
            spoken: self.request.text.clone(),
            interrupted,
            heard_text,
            reply_timed_out: self.request.wait_for_reply && reply.is_none() && !call_ended,
            reply,
            call_ended,
        }
    }
}

/// What [`SayTurn::on_tick`] found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SayTick {
    /// Nothing.
    Nothing,
    /// The words were not spoken within [`SAY_SPEAKING_TIMEOUT`]: report as it stands.
    GiveUp,
    /// The words count as heard (their mark was not echoed in time).
    Spoken,
    /// No reply in time.
    ReplyTimedOut,
}
