//! The conductor's side of relay mode (agent-in-the-loop calls): the voice speaks only what the agent's `say`
//! gives it, and each say is reported back ([`Action::SayDone`]) with what the callee heard and, when asked, their
//! reply. A child module of the conductor, so that it shares the conductor's state.
//!
//! A say goes out as one `response.create` with [`ResponseParams::verbatim`] instructions, when the stream has
//! started and no response is in flight (never two at once). Its response done, a mark is queued behind its audio:
//! the echo means the callee heard it all. A barge-in during the say is the ordinary barge-in (`clear`,
//! `response.cancel`, truncate at what was heard); the say then reports the cut transcript as `heard_text`. With
//! `hang_up_after` the say is the call's farewell: the goodbye machinery queues the final mark and hangs up on its
//! echo, unless the callee barges in, which calls the hang-up off as for any goodbye. The state of one say is the
//! plain [`SayTurn`].

use std::time::{Duration, Instant};

use super::{Action, Conductor, Farewell};
use crate::calls::CallRecord;
use crate::calls::say::{SayRefusal, SayReport, SayRequest};
use crate::realtime::client_events::{ClientEvent, ResponseParams};
use crate::relay::playback::MarkName;
use crate::relay::say::{SayPhase, SayTick, SayTurn};
use crate::twilio::media::mark_message;

/// The conductor's relay-mode state.
#[derive(Debug, Default)]
pub(super) struct SayState {
    /// The call is in relay mode: the voice speaks only on a say.
    pub(super) relay: bool,
    /// The say under way, if any.
    turn: Option<SayTurn>,
}

impl Conductor {
    /// Puts the call in relay mode: nothing asks the model for a response except a say (and the goodbye of a server
    /// shutting down). Call it before the stream starts.
    pub fn set_relay_mode(&mut self) {
        self.say.relay = true;
    }

    /// Whether the call is in relay mode.
    pub(super) fn is_relay(&self) -> bool {
        self.say.relay
    }

    /// The agent asks the voice to say `request.text` at `now`. The say is sent at once when the stream has started
    /// and the model is free, else as soon as both hold; its [`Action::SayDone`] follows when it is done.
    ///
    /// # Errors
    /// [`SayRefusal::NotRelay`] on a call not in relay mode; [`SayRefusal::Busy`] while another say is under way;
    /// [`SayRefusal::Ending`] once the call is ending; [`SayRefusal::AwaitingVerdict`] while an answering machine
    /// verdict is awaited. Nothing is done then.
    pub fn on_say(
        &mut self,
        request: SayRequest,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SayRefusal> {
        if !self.say.relay {
            return Err(SayRefusal::NotRelay);
        }
        if self.say.turn.is_some() {
            return Err(SayRefusal::Busy);
        }
        if self.farewell != Farewell::None || self.shutdown_deadline.is_some() {
            return Err(SayRefusal::Ending);
        }
        if self.is_holding() {
            return Err(SayRefusal::AwaitingVerdict);
        }
        tracing::info!(
            text_bytes = request.text.len(),
            wait_for_reply = request.wait_for_reply,
            hang_up_after = request.hang_up_after,
            "the agent says a line"
        );
        self.say.turn = Some(SayTurn::new(request, now));
        self.send_waiting_say(out);
        Ok(())
    }

    /// Sends the waiting say's `response.create` when the stream has started and no response is in flight.
    pub(super) fn send_waiting_say(&mut self, out: &mut Vec<Action>) {
        let Some(turn) = self.say.turn.as_mut() else {
            return;
        };
        if *turn.phase() != SayPhase::Waiting || self.stream_sid.is_none() {
            return;
        }
        if !self.responses.request() {
            // Asked again once the response in flight is done, with this say's own instructions.
            self.responses.drop_queued();
            return;
        }
        turn.on_sent();
        if turn.request().hang_up_after {
            self.farewell = Farewell::Speaking { response_id: None };
        }
        let create = ClientEvent::ResponseCreate {
            response: Some(ResponseParams::verbatim(&turn.request().text)),
        };
        out.push(Action::OpenAi(create.to_json()));
    }

    /// `response.created` named `response_id`.
    pub(super) fn say_on_response_created(&mut self, response_id: &str) {
        if let Some(turn) = &mut self.say.turn {
            turn.on_response_created(response_id);
        }
    }

    /// Audio or a transcript of assistant item `item_id` of response `response_id` arrived.
    pub(super) fn say_on_item(&mut self, response_id: &str, item_id: &str) {
        if let Some(turn) = &mut self.say.turn {
            turn.on_item(response_id, item_id);
        }
    }

    /// The callee started speaking (caller item `item_id`), before the barge-in is handled. Returns `true` when
    /// the say's words were playing: they end here (cut, or heard to the end), and [`Conductor::say_spoken`] must
    /// follow the barge-in.
    pub(super) fn say_on_speech_started(&mut self, item_id: &str, now: Instant) -> bool {
        let unplayed = self.ledger.has_unplayed(now);
        let active = self.responses.is_active();
        let Some(turn) = &mut self.say.turn else {
            return false;
        };
        match turn.phase() {
            SayPhase::Speaking => {
                turn.on_caller_speech(item_id, unplayed || active);
                false
            }
            SayPhase::Playing { .. } => {
                turn.on_caller_speech(item_id, unplayed);
                true
            }
            SayPhase::Waiting | SayPhase::AwaitingReply { .. } => {
                turn.on_caller_speech(item_id, false);
                false
            }
        }
    }

    /// The response `response_id` is done (`completed`, or not), its transcripts flushed to the record: the say's
    /// words start playing out (or, cut, are spoken), and a waiting say goes out if the model is free.
    pub(super) fn say_on_response_done(
        &mut self,
        response_id: &str,
        completed: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(turn) = &mut self.say.turn else {
            return;
        };
        if !turn.owns_response(response_id) {
            self.send_waiting_say(out);
            return;
        }
        if !completed {
            // Cancelled by a barge-in (or the server): what was heard is in the record now.
            self.say_spoken(now, out);
            return;
        }
        let final_line = turn.request().hang_up_after && self.farewell != Farewell::None;
        match self.stream_sid.as_deref() {
            Some(stream_sid) if !final_line => {
                let unplayed_ms = self
                    .ledger
                    .sent_ms()
                    .saturating_sub(self.ledger.played_ms(now));
                let mark = self.ledger.record_mark(now);
                out.push(Action::Twilio(mark_message(stream_sid, mark)));
                let deadline =
                    now + Duration::from_millis(unplayed_ms) + self.config.farewell_grace;
                turn.on_playing(Some(mark), Some(deadline));
            }
            // A final line: the goodbye's own mark ends the call; a barge-in ends the say.
            Some(_) => turn.on_playing(None, None),
            None => self.say_spoken(now, out),
        }
    }

    /// Twilio echoed `mark`: when it is the say's, its words were heard to the end.
    pub(super) fn say_on_mark(&mut self, mark: MarkName, now: Instant, out: &mut Vec<Action>) {
        let ours = self.say.turn.as_ref().is_some_and(
            |turn| matches!(turn.phase(), SayPhase::Playing { mark: Some(m), .. } if *m == mark),
        );
        if ours {
            self.say_spoken(now, out);
        }
    }

    /// The transcript of caller item `item_id` arrived: part of the say's reply when the callee spoke during it.
    pub(super) fn say_on_caller_transcript(
        &mut self,
        item_id: &str,
        transcript: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(turn) = &mut self.say.turn else {
            return;
        };
        turn.on_caller_transcript(item_id, transcript);
        if turn.reply_ready() {
            self.say_done(out);
        }
    }

    /// The say's words were spoken at `now`: done, or on to the reply wait (which may be over already).
    pub(super) fn say_spoken(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(turn) = &mut self.say.turn else {
            return;
        };
        if turn.on_spoken(now) || turn.reply_ready() {
            self.say_done(out);
        }
    }

    /// The say's next deadline, if it has one.
    pub(super) fn say_deadline(&self) -> Option<Instant> {
        self.say.turn.as_ref().and_then(SayTurn::deadline)
    }

    /// Time passed: a say not spoken in time, a mark not echoed, a reply wait over.
    pub(super) fn say_on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(turn) = &mut self.say.turn else {
            return;
        };
        match turn.on_tick(now) {
            SayTick::Nothing => {}
            SayTick::GiveUp => {
                tracing::warn!("the agent's line was not spoken in time; reported as it stands");
                self.say_done(out);
            }
            SayTick::Spoken => self.say_spoken(now, out),
            SayTick::ReplyTimedOut => self.say_done(out),
        }
    }

    /// Reports the say and forgets it.
    fn say_done(&mut self, out: &mut Vec<Action>) {
        if let Some(turn) = self.say.turn.take() {
            let report = turn.report(&self.record, false);
            tracing::info!(
                interrupted = report.interrupted,
                replied = report.reply.is_some(),
                reply_timed_out = report.reply_timed_out,
                "the agent's line is done"
            );
            out.push(Action::SayDone(report));
        }
    }

    /// The say under way when the call ends, if any: report it with [`say_report_at_end`] once the record is
    /// finished.
    pub fn take_say(&mut self) -> Option<SayTurn> {
        self.say.turn.take()
    }
}

/// The report of a say that was under way when the call ended, read from the finished record.
pub fn say_report_at_end(turn: &SayTurn, record: &CallRecord) -> SayReport {
    turn.report(record, true)
}
