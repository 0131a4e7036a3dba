//! The conductor: every decision of a call, as a plain synchronous state machine.
//!
//! The bridge feeds it what arrives (Twilio Media Streams events, OpenAI Realtime server events, the passing of
//! time) and performs the [`Action`]s it returns: frames to send to Twilio, client events to send to OpenAI, or the end
//! of the call. No sockets, no clock of its own: tests drive it with hand-made events and instants.
//!
//! What it decides (DESIGN.md "The bridge"):
//! - caller audio → `input_audio_buffer.append` (payload forwarded verbatim); assistant audio deltas → Twilio `media`
//!   followed by a generation-named `mark` (the [`PlaybackLedger`] keeps what was sent and heard);
//! - barge-in on `input_audio_buffer.speech_started`: `clear`, `response.cancel` only while a response is active,
//!   `conversation.item.truncate` at what was heard for every item with unplayed audio, late deltas of the cancelled
//!   response dropped;
//! - goodbye: the `end_call` tool (or a goodbye phrase, as a fallback) → the farewell plays → a final mark → hang up
//!   when Twilio echoes it (or after a grace period); barge-in cancels the hang-up;
//! - answering machines (outbound calls with detection): the model is held back until Twilio's verdict, then talks,
//!   leaves the voicemail message (ending like a goodbye, as `voicemail_left`) or hangs up (`machine_hung_up`), as
//!   the [`MachineHold`] decides;
//! - DTMF → a short text item, at most [`DTMF_BURST`] keys at once then one per [`DTMF_REFILL`] (the rest dropped and
//!   counted); the hard maximum call duration; the idle stream (no frame of any kind from Twilio for
//!   [`ConductorConfig::stream_idle_timeout`] ends the call as `error:stream_idle`); the call record (transcript cut to
//!   what was heard, token usage, end reason, and what the peers sent that was dropped).
//!
//! It keeps the decisions; its sub-machines are plain types of their own: the [`PlaybackLedger`] (what was sent
//! and heard), the [`Responses`] tracker (one response in flight, a queued `response.create`, the cancelled ones),
//! the [`Transcript`] (assistant turns cut to what was heard, caller turns) and the [`GoodbyeMatcher`].
//!
//! Peers cannot flood the logs through it: every log line a peer can provoke (a skipped frame, a repeated `start`, a
//! foreign `stop`, a keypress, an OpenAI `error` event, a malformed event) passes a per-call, per-kind
//! [`LogBudget`](crate::relay::budget::LogBudgets) first, and peer-sent text in a line is clipped to
//! [`LOGGED_TEXT_MAX_BYTES`](crate::relay::budget::LOGGED_TEXT_MAX_BYTES). Methods the bridge calls for what it skips itself return whether to log.

use crate::relay::budget::clip;
use std::time::{Duration, Instant};

use crate::calls::{CallFailure, CallRecord, EndReason};
use crate::realtime::client_events::{ClientEvent, ConversationItem};
use crate::realtime::server_events::ServerEvent;
use crate::relay::budget::{Budget, LogBudgets};
use crate::relay::goodbye::GoodbyeMatcher;
use crate::relay::handover::CallUpdate;
use crate::relay::machine::{MachineHold, MachinePlan};
use crate::relay::playback::{MarkEcho, MarkName, PlaybackLedger};
use crate::relay::responses::Responses;
use crate::relay::transcript::Transcript;
use crate::twilio::media::TwilioEvent;

/// While the server shuts down, how long a call gets to say goodbye before it is hung up anyway.
pub const SHUTDOWN_GOODBYE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the model is told when the server shuts down during a call.
pub const SHUTDOWN_INSTRUCTION: &str = "The phone service is shutting down for maintenance and this call must end now. \
Tell the caller briefly that you have to end the call, apologise, and say goodbye.";

/// DTMF keys passed to the model at once before the rate limit applies: a phone or card number typed quickly.
pub const DTMF_BURST: u32 = 20;
/// Once the burst is spent, one more DTMF key is passed to the model per this interval (5 keys a second; a person
/// presses a few keys a second at most). Keys over the limit are dropped and counted in the record.
pub const DTMF_REFILL: Duration = Duration::from_millis(200);

/// What the bridge must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this text frame to Twilio.
    Twilio(String),
    /// Send this client event (JSON) to OpenAI.
    OpenAi(String),
    /// End the call for this reason. Nothing after it in the same batch needs doing.
    HangUp(EndReason),
    /// Send this Twilio call update, whose TwiML ends in a new stream of this call (a stream handover); report a
    /// failure with [`Conductor::on_call_update_failed`].
    UpdateCall(CallUpdate),
    /// Answer the agent's `say` under way with this report (relay mode).
    SayDone(crate::calls::say::SayReport),
    /// Open a new Realtime session in the background with the call's `session.update`; report the outcome with
    /// [`Conductor::on_session_opened`] or [`Conductor::on_session_open_failed`].
    OpenSession,
    /// Make the session that opened the call's session and close the old one; the events after this action go to
    /// the new session.
    SwitchSession,
}

/// Settings of one call.
#[derive(Debug, Clone)]
pub struct ConductorConfig {
    /// The CallSid the stream token was issued for; the `start` message must carry the same.
    pub call_sid: String,
    /// Whether the assistant greets first when the stream starts.
    pub assistant_speaks_first: bool,
    /// What it says first.
    pub greeting: String,
    /// Hard maximum call length, from the conductor's creation.
    pub max_call_duration: Duration,
    /// Extra wait for the farewell's final mark after its audio should have played.
    pub farewell_grace: Duration,
    /// Goodbye phrases (fallback to `end_call`).
    pub goodbye: GoodbyeMatcher,
    /// A media stream that sends no frame of any kind (media, mark, ping, even a malformed one) for this long is
    /// hung up with `error:stream_idle`. Twilio sends a media frame every 20 ms while a call is up, so seconds of
    /// silence on the socket mean a dead or hostile peer (`CALLBRIDGE_STREAM_IDLE_TIMEOUT_S`).
    pub stream_idle_timeout: Duration,
    /// Answering machine detection: hold the model back until the verdict (outbound calls that asked for it).
    pub machine: Option<MachinePlan>,
}

/// Where the call is on its way to a goodbye.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Farewell {
    /// Conversation in progress.
    None,
    /// The call should end once `response_id` is done; if it carried no audio, ask the model for its goodbye first.
    AfterResponse {
        response_id: String,
        ask_for_words: bool,
    },
    /// `response.create` was sent for the goodbye; `response_id` once `response.created` names it.
    Speaking { response_id: Option<String> },
    /// The final mark is queued behind the farewell audio: hang up when it is echoed, or at `deadline`.
    MarkSent { mark: MarkName, deadline: Instant },
}

/// The per-call decision maker. See the module docs.
#[derive(Debug)]
pub struct Conductor {
    /// Per-call settings.
    config: ConductorConfig,
    /// When the call began (the bridge started), for offsets and the maximum duration.
    started: Instant,
    /// Twilio's StreamSid once `start` arrived; no media is forwarded before.
    stream_sid: Option<String>,
    /// When the last frame of any kind came from Twilio (the conductor's creation until one does): the idle timer.
    last_frame: Instant,
    /// What was sent to Twilio and what the caller heard.
    ledger: PlaybackLedger,
    /// Assistant items with audio in the ledger's current generation, in order (usually one or two).
    /// Each with the response that produced it.
    items_in_generation: Vec<(String, String)>,
    /// The responses in flight, cancelled and asked for: never two at once.
    responses: Responses,
    /// Pending cuts and partial assistant transcripts; the turns go to `record`.
    transcript: Transcript,
    /// Goodbye progress.
    farewell: Farewell,
    /// The caller's last turn was a goodbye: end after the assistant's next reply.
    caller_said_goodbye: bool,
    /// The server is shutting down: once set, the call ends after the assistant's goodbye, or at this instant.
    shutdown_deadline: Option<Instant>,
    /// The call record under construction.
    record: CallRecord,
    /// DTMF keys the caller may still pass to the model ([`DTMF_BURST`], one more per [`DTMF_REFILL`]).
    dtmf_budget: Budget,
    /// Log lines each kind of peer-driven event may still write.
    logs: LogBudgets,
    /// The hold until the answering machine verdict, when the call has detection.
    machine: Option<MachineHold>,
    /// Once a voicemail message was asked for: how many turns the record had then (the message's turns follow).
    voicemail_from: Option<usize>,
    /// Keypad-tone requests the call may still make.
    dtmf_out_budget: Budget,
    /// A move to a new media stream under way, if any.
    handover: handover::HandoverState,
    /// Transfers to a person: the targets, the attempts, the one under way.
    transfer: transfer::TransferState,
    /// The call's outcome schema and the invalid outcomes sent back so far.
    outcome: outcome::OutcomeState,
    /// Relay mode (the agent decides every word) and the agent's say under way.
    say: say::SayState,
    /// The call's cost meter and cap, when metered.
    cost: Option<cost::CostMeter>,
    /// Why the call ends once the wrap-up under `shutdown_deadline` is over, when not `shutdown` (the cost cap).
    wrap_up_reason: Option<EndReason>,
    /// Latency spans and frame counts for the metrics.
    probe: crate::relay::latency::LatencyProbe,
    /// The Realtime session: its age, a rollover or a reopening under way.
    session: rollover::SessionState,
}

impl Conductor {
    /// A conductor for a call whose bridge starts at `now`.
    pub fn new(config: ConductorConfig, record: CallRecord, now: Instant) -> Self {
        let machine = config
            .machine
            .clone()
            .map(|plan| MachineHold::new(plan, now));
        Conductor {
            config,
            started: now,
            stream_sid: None,
            last_frame: now,
            ledger: PlaybackLedger::new(),
            items_in_generation: Vec::new(),
            responses: Responses::new(),
            transcript: Transcript::new(),
            farewell: Farewell::None,
            caller_said_goodbye: false,
            shutdown_deadline: None,
            record,
            dtmf_budget: Budget::new(DTMF_BURST, DTMF_REFILL),
            logs: LogBudgets::default(),
            machine,
            voicemail_from: None,
            dtmf_out_budget: Budget::new(handover::DTMF_OUT_BURST, handover::DTMF_OUT_REFILL),
            handover: handover::HandoverState::default(),
            transfer: transfer::TransferState::default(),
            outcome: outcome::OutcomeState::default(),
            say: say::SayState::default(),
            cost: None,
            wrap_up_reason: None,
            probe: Default::default(),
            session: rollover::SessionState::new(now),
        }
    }

    /// The record so far.
    pub fn record(&self) -> &CallRecord {
        &self.record
    }

    /// GPT-Live reported `seconds` of billable (active) session time so far (cumulative, not summed): the record
    /// keeps the latest. `None` leaves the record as it is.
    pub fn set_live_billable_seconds(&mut self, seconds: Option<f64>) {
        if let Some(seconds) = seconds {
            self.record.usage.live_active_seconds = seconds.max(0.0).round() as u64;
        }
    }

    /// A frame of any kind arrived from Twilio at `now` (parsed or skipped, a ping included): the stream is not
    /// idle. [`Conductor::on_twilio`] notes this itself; the bridge calls it for the frames it does not hand over.
    /// Costs one `Instant` copy.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// Counts a frame from Twilio that was skipped at `now` (malformed, oversized, binary, or a `dtmf` whose digit
    /// is not one of `0-9*#`).
    ///
    /// Returns `Some(suppressed)` when a warning may be logged, `suppressed` being how many were not logged since
    /// the last one (log it with the line); `None` to log nothing above debug. The record keeps the full count.
    pub fn on_skipped_frame(&mut self, now: Instant) -> Option<u64> {
        self.record.skipped_frames += 1;
        self.logs.skipped_frame.take(now)
    }

    /// Counts an OpenAI event that could not be parsed, at `now`.
    ///
    /// Returns `Some(suppressed)` when a warning may be logged (as [`Conductor::on_skipped_frame`]); the record keeps
    /// the full count.
    pub fn on_malformed_openai_event(&mut self, now: Instant) -> Option<u64> {
        self.record.dropped.malformed_openai_events += 1;
        self.logs.malformed_openai_event.take(now)
    }

    /// Ends the record with `reason` at `now` and hands it over.
    pub fn finish(mut self, reason: EndReason, now: Instant) -> CallRecord {
        // Audio still unplayed when the call ends was never heard: cut those turns like a barge-in would.
        for (item_id, _) in std::mem::take(&mut self.items_in_generation) {
            let sent_ms = self.ledger.item_sent_ms(&item_id);
            let heard_ms = self.ledger.item_played_ms(&item_id, now);
            if heard_ms < sent_ms {
                let still_generating = self.responses.is_active();
                self.transcript.cut(
                    &mut self.record,
                    item_id,
                    heard_ms,
                    sent_ms,
                    still_generating,
                );
            }
        }
        let duration_ms = self.offset_ms(now);
        self.transcript.flush(&mut self.record, duration_ms);
        self.price_record(duration_ms);
        self.probe.flush(self.record.skipped_frames);
        if let Some(from) = self.voicemail_from {
            let words: Vec<&str> = self.record.turns[from.min(self.record.turns.len())..]
                .iter()
                .filter(|t| t.speaker == crate::calls::Speaker::Assistant)
                .map(|t| t.text.as_str())
                .collect();
            self.record.voicemail_transcript = Some(words.join(" "));
            self.record.voicemail_left = reason == EndReason::VoicemailLeft;
        }
        self.record.finish(reason, duration_ms);
        self.record
    }

    /// Whether the stream has started (Twilio `start` accepted).
    pub fn stream_started(&self) -> bool {
        self.stream_sid.is_some()
    }

    /// Twilio's StreamSid, once the stream has started.
    pub fn stream_sid(&self) -> Option<&str> {
        self.stream_sid.as_deref()
    }

    /// The earliest instant at which [`Conductor::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        // While the call moves to a new stream, the handover deadline stands in for the idle timer.
        let stream_deadline = self
            .handover
            .deadline()
            .unwrap_or(self.last_frame + self.config.stream_idle_timeout);
        let mut next = (self.started + self.config.max_call_duration).min(stream_deadline);
        if let Farewell::MarkSent { deadline, .. } = &self.farewell {
            next = next.min(*deadline);
        }
        if let Some(deadline) = self.shutdown_deadline {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.machine.as_ref().and_then(MachineHold::deadline) {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.say_deadline() {
            next = next.min(deadline);
        }
        self.session
            .deadline()
            .map_or(next, |deadline| next.min(deadline))
    }

    /// Why the call ends when its goodbye has played: `shutdown` while the server shuts down, else `goodbye`.
    fn goodbye_reason(&self) -> EndReason {
        if self.shutdown_deadline.is_some() {
            self.wrap_up_reason.clone().unwrap_or(EndReason::Shutdown)
        } else if self.voicemail_from.is_some() {
            EndReason::VoicemailLeft
        } else {
            EndReason::Goodbye
        }
    }

    /// The server is shutting down: cut what the assistant is saying (as a barge-in would) and ask it to say goodbye;
    /// the call ends when the goodbye has played, or [`SHUTDOWN_GOODBYE_TIMEOUT`] from now at the latest.
    pub fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GOODBYE_TIMEOUT);
        if self.stream_sid.is_none() || self.is_holding() {
            out.push(Action::HangUp(EndReason::Shutdown));
            return;
        }
        if self.farewell != Farewell::None {
            return; // a goodbye is already on its way
        }
        tracing::info!("server shutting down: asking the assistant to say goodbye");
        // Cut whatever the assistant is saying, exactly as a barge-in would (what was heard is kept).
        self.on_speech_started(now, out);
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(SHUTDOWN_INSTRUCTION),
            }
            .to_json(),
        ));
        self.farewell = Farewell::Speaking { response_id: None };
        // If the cancelled response is still in flight, the goodbye is asked for once it is done.
        self.request_response(out);
    }

    /// Time passed: enforces the maximum duration, the idle-stream timeout, the farewell deadline and the shutdown
    /// deadline (in that order of precedence).
    pub fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.say_on_tick(now, out);
        let started = self.stream_started();
        if let Some(step) = self.machine.as_mut().and_then(|m| m.on_tick(now, started)) {
            self.take_machine_step(step, out);
        }
        self.on_session_tick(now, out);
        if now >= self.started + self.config.max_call_duration {
            tracing::info!("maximum call duration reached");
            out.push(Action::HangUp(EndReason::MaxDuration));
        } else if self.handover_timed_out(now) {
            out.push(self.handover_deadline_action());
        } else if !self.awaiting_stream()
            && now >= self.last_frame + self.config.stream_idle_timeout
        {
            tracing::warn!(
                idle_ms = now.saturating_duration_since(self.last_frame).as_millis() as u64,
                "no frame from Twilio for the stream idle timeout; hanging up"
            );
            out.push(Action::HangUp(EndReason::Error(CallFailure::StreamIdle)));
        } else if let Farewell::MarkSent { deadline, .. } = &self.farewell
            && now >= *deadline
        {
            tracing::info!("farewell mark not echoed in time; hanging up");
            out.push(Action::HangUp(self.goodbye_reason()));
        } else if self
            .shutdown_deadline
            .is_some_and(|deadline| now >= deadline)
        {
            tracing::info!("no goodbye in time while wrapping up; hanging up");
            out.push(Action::HangUp(
                self.wrap_up_reason.clone().unwrap_or(EndReason::Shutdown),
            ));
        }
    }

    /// A hang-up was requested from outside the call (API).
    pub fn on_hang_up_request(&mut self, out: &mut Vec<Action>) {
        out.push(Action::HangUp(EndReason::HungUpByApi));
    }

    /// Adds an instruction to the live conversation as a system message.
    pub fn on_instruction(&mut self, text: &str, out: &mut Vec<Action>) {
        self.remember_instruction(text);
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(text),
            }
            .to_json(),
        ));
    }

    /// A Media Streams event from Twilio.
    pub fn on_twilio(&mut self, event: TwilioEvent<'_>, now: Instant, out: &mut Vec<Action>) {
        self.last_frame = now;
        match event {
            TwilioEvent::Media { media, .. } => {
                self.on_handover_media(now);
                // While no Realtime session serves the call (reopening one), the caller's audio has nowhere to go.
                if self.stream_sid.is_some() && !self.session.is_lost() {
                    self.probe.on_caller_frame();
                    self.on_audio_forwarded(now);
                    out.push(Action::OpenAi(
                        ClientEvent::InputAudioBufferAppend {
                            audio: media.payload,
                        }
                        .to_json(),
                    ));
                }
            }
            TwilioEvent::Mark { name, .. } => match self.ledger.on_mark(&name, now) {
                MarkEcho::Played { mark: echo, .. } => {
                    self.say_on_mark(echo, now, out);
                    if matches!(&self.farewell, Farewell::MarkSent { mark, .. } if *mark == echo) {
                        tracing::info!("farewell played; hanging up");
                        out.push(Action::HangUp(self.goodbye_reason()));
                    }
                }
                MarkEcho::Stale => tracing::debug!(mark = %name, "stale mark ignored"),
                MarkEcho::Unknown => tracing::debug!(mark = %name, "unknown mark ignored"),
            },
            TwilioEvent::Start {
                stream_sid, start, ..
            } => {
                if self.stream_sid.is_some() {
                    self.record.dropped.repeated_starts += 1;
                    if let Some(suppressed) = self.logs.repeated_start.take(now) {
                        tracing::warn!(suppressed, "second start message ignored");
                    }
                    return;
                }
                if start.call_sid != self.config.call_sid {
                    tracing::warn!(
                        expected = %self.config.call_sid,
                        got = %clip(&start.call_sid),
                        "start message CallSid does not match the stream token"
                    );
                    out.push(Action::HangUp(EndReason::Error(
                        CallFailure::CallSidMismatch,
                    )));
                    return;
                }
                if self.on_handover_start(&stream_sid, now) {
                    self.after_handover_start(out);
                    return;
                }
                tracing::info!(stream_sid = %stream_sid, "media stream started");
                self.record.stream_sid = Some(stream_sid.clone());
                self.stream_sid = Some(stream_sid);
                self.probe.on_stream_start(now);
                if let Some(step) = self.machine.as_mut().and_then(MachineHold::on_stream_start) {
                    self.take_machine_step(step, out);
                } else if self.config.assistant_speaks_first && !self.is_holding() {
                    self.greet(out);
                }
                self.send_waiting_say(out);
            }
            TwilioEvent::Dtmf { digit, .. } => {
                if self.stream_sid.is_none() {
                    return;
                }
                if self.dtmf_budget.take(now).is_none() {
                    self.record.dropped.dtmf_digits += 1;
                    if let Some(suppressed) = self.logs.dtmf_dropped.take(now) {
                        tracing::warn!(
                            suppressed,
                            dropped_total = self.record.dropped.dtmf_digits,
                            "DTMF key over the rate limit dropped"
                        );
                    }
                    return;
                }
                if let Some(suppressed) = self.logs.dtmf.take(now) {
                    tracing::info!(%digit, suppressed, "caller pressed a key");
                }
                out.push(Action::OpenAi(
                    ClientEvent::ConversationItemCreate {
                        item: ConversationItem::user_text(format!("The caller pressed {digit}")),
                    }
                    .to_json(),
                ));
                self.request_response(out);
            }
            TwilioEvent::Stop {
                stream_sid,
                call_sid,
                ..
            } => {
                let ours = call_sid == self.config.call_sid.as_str()
                    && self
                        .stream_sid
                        .as_deref()
                        .is_none_or(|ours| ours == stream_sid);
                if !ours {
                    self.record.dropped.foreign_stops += 1;
                    if let Some(suppressed) = self.logs.foreign_stop.take(now) {
                        tracing::warn!(
                            call_sid = %clip(&call_sid),
                            stream_sid = %clip(&stream_sid),
                            suppressed,
                            "stop message for another CallSid or StreamSid ignored"
                        );
                    }
                    return;
                }
                if self.awaiting_stream() {
                    // The call update ended this stream; the call goes on on the next one.
                    self.detach_stream(now, out);
                    return;
                }
                tracing::info!("Twilio stopped the stream");
                out.push(Action::HangUp(EndReason::CallerHungUp));
            }
            TwilioEvent::Connected { .. } => {}
            TwilioEvent::Unknown { event } => {
                if let Some(suppressed) = self.logs.unknown_event.take(now) {
                    tracing::debug!(event = %clip(&event), suppressed, "unknown Twilio event ignored")
                }
            }
        }
    }

    /// A server event from OpenAI.
    pub fn on_openai(&mut self, event: ServerEvent<'_>, now: Instant, out: &mut Vec<Action>) {
        match event {
            ServerEvent::OutputAudioDelta {
                response_id,
                item_id,
                delta,
            } => self.on_audio_delta(response_id, item_id, delta, now, out),
            ServerEvent::SpeechStarted { item_id, .. } => {
                self.probe.on_speech_started();
                self.session.caller_speaking = true;
                let say_ends = self.say_on_speech_started(&item_id, now);
                self.on_speech_started(now, out);
                if say_ends {
                    self.say_spoken(now, out);
                }
            }
            ServerEvent::SpeechStopped { .. } => {
                self.session.caller_speaking = false;
                self.probe.on_speech_stopped(now);
                if let Some(hold) = &mut self.machine {
                    hold.on_speech_stopped();
                }
            }
            ServerEvent::ResponseCreated { response_id } => {
                self.responses.on_created(&response_id);
                self.say_on_response_created(&response_id);
                // A response created while our goodbye request still waits is not the goodbye.
                if !self.responses.is_queued()
                    && let Farewell::Speaking {
                        response_id: id @ None,
                    } = &mut self.farewell
                {
                    *id = Some(response_id);
                }
            }
            ServerEvent::ResponseDone { response } => self.on_response_done(response, now, out),
            ServerEvent::OutputAudioTranscriptDelta { item_id, delta } => {
                self.transcript.on_assistant_delta(item_id, &delta);
            }
            ServerEvent::OutputAudioTranscriptDone {
                response_id,
                item_id,
                transcript,
            } => {
                let cancelled = self.responses.is_cancelled(&response_id);
                self.say_on_item(&response_id, &item_id);
                let offset = self.offset_ms(now);
                self.transcript.on_assistant_done(
                    &mut self.record,
                    &item_id,
                    &transcript,
                    cancelled,
                    offset,
                );
                if !cancelled
                    && self.farewell == Farewell::None
                    && (self.caller_said_goodbye || self.config.goodbye.is_farewell(&transcript))
                {
                    tracing::info!("goodbye detected in the conversation");
                    self.farewell = Farewell::AfterResponse {
                        response_id,
                        ask_for_words: false,
                    };
                }
            }
            ServerEvent::InputTranscriptionCompleted {
                item_id,
                transcript,
            } => {
                let offset = self.offset_ms(now);
                self.transcript
                    .on_caller(&mut self.record, &transcript, offset);
                self.caller_said_goodbye = self.config.goodbye.is_farewell(&transcript);
                self.say_on_caller_transcript(&item_id, &transcript, out);
            }
            ServerEvent::FunctionCallArgumentsDone {
                response_id,
                call_id,
                name,
                arguments,
                ..
            } => self.on_function_call(response_id, &call_id, &name, &arguments, now, out),
            ServerEvent::Error { error } => {
                let code = error.code.as_deref().map(clip);
                crate::metrics::realtime_error(code);
                if error.is_fatal() {
                    tracing::error!(?code, message = %clip(&error.message), "OpenAI Realtime fatal error");
                    let failure = code.map_or(CallFailure::OpenAiError, |code| {
                        CallFailure::OpenAiFatal(code.to_owned())
                    });
                    out.push(Action::HangUp(EndReason::Error(failure)));
                    return;
                }
                self.record.dropped.openai_errors += 1;
                let Some(suppressed) = self.logs.openai_error.take(now) else {
                    return;
                };
                if code == Some("response_cancel_not_active") {
                    tracing::debug!(suppressed, "response already finished when cancelled");
                } else {
                    tracing::warn!(?code, message = %clip(&error.message), suppressed, "OpenAI Realtime error");
                }
            }
            ServerEvent::SessionCreated | ServerEvent::SessionUpdated => {
                tracing::debug!("realtime session ready")
            }
            ServerEvent::OutputItemDone { item, .. } if item.kind.starts_with("mcp_") => {
                self.on_mcp_item(&item, now)
            }
            ServerEvent::ItemTruncated {
                item_id,
                audio_end_ms,
            } => {
                tracing::debug!(%item_id, audio_end_ms, "item truncated")
            }
            _ => {}
        }
    }

    /// Asks for a response now, or once the active one is done (never two at once).
    fn request_response(&mut self, out: &mut Vec<Action>) {
        if self.is_holding() {
            return; // nothing is said before the answering machine verdict
        }
        if self.is_relay() && self.farewell == Farewell::None {
            return; // in relay mode the voice speaks only the agent's lines
        }
        if self.responses.request() {
            out.push(Action::OpenAi(
                ClientEvent::ResponseCreate { response: None }.to_json(),
            ));
        }
    }

    fn offset_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }
}

/// Bytes a base64 string decodes to, from its length and padding (no decoding).
pub fn base64_decoded_len(b64: &str) -> usize {
    let bytes = b64.as_bytes();
    let padding = bytes.iter().rev().take(2).filter(|&&b| b == b'=').count();
    (bytes.len() / 4 * 3 + (bytes.len() % 4).saturating_sub(1)).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_decoded_len_matches_real_decoding() {
        for n in 0..50 {
            let data = vec![7u8; n];
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(base64_decoded_len(&encoded), n, "{encoded}");
        }
    }
}

#[path = "conductor_barge_in.rs"]
mod barge_in;
#[path = "conductor_machine.rs"]
mod conductor_machine;
#[path = "conductor_handover.rs"]
mod handover;
pub use handover::{DTMF_OUT_BURST, DTMF_OUT_REFILL, DtmfRefusal, HANDOVER_TIMEOUT};
#[path = "conductor_cost.rs"]
mod cost;
#[path = "conductor_outcome.rs"]
mod outcome;
#[path = "conductor_say.rs"]
mod say;
pub use cost::{COST_CAP_GOODBYE_TIMEOUT, COST_CAP_INSTRUCTION, CostMeter};
pub use say::say_report_at_end;
#[path = "conductor_response_events.rs"]
mod response_events;
#[path = "conductor_rollover.rs"]
mod rollover;
#[path = "conductor_transfer.rs"]
mod transfer;
pub use rollover::{MAX_QUIET_WAIT, QUIET_CHECK_INTERVAL, RECONNECT_BACKOFF};
pub use transfer::{ANSWERED_GRACE, TransferRefusal};

#[cfg(test)]
#[path = "conductor_tests/mod.rs"]
mod conductor_tests;
