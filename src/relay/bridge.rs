//! The bridge: one task per call that moves messages between the Twilio media stream and the OpenAI Realtime link.
//!
//! It is a single `select!` loop over the Twilio socket, the Realtime link, one reusable timer, a control channel (hang
//! up, inject an instruction) and the server's shutdown token (on which the assistant says goodbye). Every Twilio frame,
//! skipped ones included, is reported to the conductor for its idle-stream timer. Every decision is the
//! [`Conductor`]'s; the loop parses frames, hands them over and performs the returned [`Action`]s.
//!
//! **Nothing in the loop waits on a peer.** Sends are queued ([`TwilioWriter`], [`RealtimeLink::send`](crate::realtime::client::RealtimeLink::send)) and written as
//! the sockets take them, several frames per write when several are ready; the loop never awaits a send. A side whose
//! queued frames make no progress for the call's stall timeout is gone: the call ends with `error:twilio_stalled` or
//! `error:openai_stalled`, and the stalled Twilio connection is dropped without a close frame. So the idle timeout,
//! the maximum duration, `hang_up`, the caller's `stop` and the shutdown token are always heard.
//!
//! The timer is one `Sleep`, reset only when the next deadline (the conductor's, or a stall deadline) moves.
//!
//! When the call ends, the Twilio stream gets a close frame whose code says why (1000 for a normal end, 1009 for a
//! frame too large, 1002 for a protocol error, 1008 for a policy violation, 1011 when OpenAI failed) and whose reason
//! is the end reason; the record is stored and logged as one structured line; the Realtime socket is closed; and the
//! call is hung up through the REST API when credentials are configured.
//!
//! Per frame the loop does no base64 decoding, parses with borrowed strings, and logs nothing above debug level.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::calls::live::CallControl;
use crate::calls::recorder::Persistence;
use crate::calls::say::SayReplySlot;
use crate::calls::{CallFailure, CallRecord, EndReason};
use crate::realtime::client::{LinkEvent, SendError};
use crate::realtime::server_events::parse_server_event;
use crate::relay::budget::clip;
use crate::relay::conductor::{Action, Conductor, say_report_at_end};
use crate::relay::engine;
use crate::relay::handover::{CallUpdate, HandoverDeps};
use crate::relay::media_link::{MediaLink, close_writer};
use crate::relay::sessions::RealtimeSessions;
use crate::relay::twilio_socket::{
    CloseCode, CloseReason, Message, ReadError, TwilioReader, TwilioWriter, WriteError,
};
use crate::twilio::media::parse_twilio_event;
use crate::twilio::rest::TwilioRest;

/// Everything one call's bridge owns.
pub struct Bridge {
    /// Queues frames for Twilio.
    pub twilio: TwilioWriter,
    /// Frames from Twilio (limited to the maximum frame size: larger frames arrive as errors, from their header).
    pub twilio_frames: TwilioReader,
    /// The OpenAI Realtime session, and the next one during a rollover or a reopening.
    pub sessions: RealtimeSessions,
    /// The call's decisions.
    pub conductor: Conductor,
    /// REST client for the hang-up, when credentials are configured.
    pub rest: Option<TwilioRest>,
    /// Requests from outside the call.
    pub control: crate::calls::live::ControlReceiver,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Where the call's record is stored as it grows, when it is stored.
    pub persistence: Option<Persistence>,
    /// How long queued frames may wait for a peer to take them before the peer counts as gone.
    pub stall_timeout: Duration,
    /// What the call needs to move to a new media stream (keypad tones).
    pub handover: HandoverDeps,
    /// New media streams of this call, from the media-stream route (a handover).
    pub new_streams: crate::relay::handover::AttachmentReceiver,
    /// The GPT-Live mapping when the call runs on GPT-Live; `None` on the Realtime API.
    pub live: Option<crate::live::translate::LiveTranslator>,
}

/// The Twilio side of the loop: the attached media stream, if any (none between two streams of a handover).
struct TwilioSide(Option<MediaLink>);

impl TwilioSide {
    /// The next frame of the attached stream; pending forever while none is attached.
    async fn recv(&mut self) -> Option<Result<Message, ReadError>> {
        match &mut self.0 {
            Some(link) => link.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Since when frames queued for the attached stream have waited.
    fn stalled_since(&self) -> Option<Instant> {
        self.0.as_ref().and_then(MediaLink::stalled_since)
    }

    /// Closes the attached stream, if any, with a normal close frame saying `reason`.
    fn detach(&mut self, reason: &str) {
        if let Some(link) = self.0.take() {
            link.close(Some(CloseReason {
                code: CloseCode::Normal,
                description: Some(reason.to_owned()),
            }));
        }
    }
}

impl Bridge {
    /// Runs the call to its end and returns the finished record (also logged).
    ///
    /// `self` comes boxed: an `async fn` keeps its arguments in its future next to the locals they are moved into,
    /// and the call's task holds that future for the whole call, so a `Bridge` by value would be stored twice. The
    /// box is freed as soon as its fields are taken out.
    pub async fn run(self: Box<Self>) -> CallRecord {
        let Bridge {
            twilio,
            twilio_frames,
            mut sessions,
            mut conductor,
            rest,
            mut control,
            shutdown,
            persistence,
            stall_timeout,
            handover,
            mut new_streams,
            mut live,
        } = {
            // Moved out of the box in a block of its own, so that the box is freed here, not when the call ends.
            let this = self;
            *this
        };
        let mut twilio = TwilioSide(Some(MediaLink::Local {
            writer: twilio,
            frames: twilio_frames,
        }));
        let call_sid = conductor.record().call_sid.clone();
        // Failed call updates come back here; the channel is made with the call's first update (most calls have
        // none, and a channel preallocates its slots).
        let mut update_results = UpdateResults::default();
        let mut stored_turns = 0;
        let mut actions: Vec<Action> = Vec::with_capacity(8);
        let mut shutting_down = false;
        let mut control_open = true;
        let mut stream_sid_logged = false;
        // Where the agent's say under way (relay mode) is answered.
        let mut say_reply: Option<SayReplySlot> = None;
        let mut deadline = next_deadline(
            &conductor,
            twilio.stalled_since(),
            sessions.stalled_since(),
            stall_timeout,
            live.as_ref(),
        );
        let timer = tokio::time::sleep_until(deadline.into());
        tokio::pin!(timer);
        // One shutdown future for the whole call: a fresh `cancelled()` per turn of the loop would register with (and
        // leave) the token's waiter list every time.
        let shutdown_signal = shutdown.cancelled();
        tokio::pin!(shutdown_signal);

        let reason = loop {
            tokio::select! {
                // The two sockets first: they are ready on almost every turn, the other branches seldom. Neither can
                // starve the rest: each returns pending once what its connection delivered has been read.
                biased;
                frame = twilio.recv() => {
                    let now = Instant::now();
                    if frame.is_some() {
                        // Any frame, even one skipped below, shows the stream is alive (the idle timeout).
                        conductor.on_frame(now);
                    }
                    match frame {
                        Some(Ok(Message::Text(text))) => match parse_twilio_event(&text) {
                            Ok(event) => conductor.on_twilio(event, now, &mut actions),
                            Err(e) => {
                                if let Some(suppressed) = conductor.on_skipped_frame(now) {
                                    tracing::warn!(error = clip(&e.to_string()), frame_bytes = text.len(), suppressed,
                                        "malformed Twilio frame skipped");
                                }
                            }
                        },
                        Some(Ok(Message::Binary(bytes))) => {
                            if let Some(suppressed) = conductor.on_skipped_frame(now) {
                                tracing::warn!(frame_bytes = bytes.len(), suppressed, "binary Twilio frame skipped");
                            }
                        }
                        Some(Ok(Message::Ping(bytes))) => {
                            if let Some(link) = &mut twilio.0
                                && let Err(e) = link.pong(&bytes)
                            {
                                break write_failed(e);
                            }
                        }
                        Some(Ok(Message::Close(reason))) => {
                            tracing::info!(code = reason.as_ref().map(|r| u16::from(r.code)),
                                "Twilio closed the media stream");
                            if conductor.on_stream_closed(now, &mut actions) {
                                twilio.detach("stream_handover");
                            } else {
                                break EndReason::CallerHungUp;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e @ ReadError::Oversized { .. })) => {
                            if let Some(suppressed) = conductor.on_skipped_frame(now) {
                                tracing::warn!(error = %e, suppressed, "oversized Twilio frame skipped");
                            }
                        }
                        Some(Err(e @ ReadError::TooLarge { .. })) => {
                            tracing::warn!(error = %e, "Twilio frame refused; closing the media stream (1009)");
                            break EndReason::Error(CallFailure::FrameTooLarge);
                        }
                        Some(Err(e @ ReadError::Protocol(_))) => {
                            tracing::warn!(error = %e, "the media stream broke the WebSocket protocol; closing it (1002)");
                            break EndReason::Error(CallFailure::TwilioProtocolError);
                        }
                        Some(Err(e @ ReadError::Connection(_))) => {
                            tracing::info!(error = %e, "Twilio media stream connection failed");
                            if conductor.on_stream_closed(now, &mut actions) {
                                twilio.detach("stream_handover");
                            } else {
                                break EndReason::CallerHungUp;
                            }
                        }
                        None => {
                            tracing::info!("Twilio media stream ended");
                            if conductor.on_stream_closed(now, &mut actions) {
                                twilio.detach("stream_handover");
                            } else {
                                break EndReason::CallerHungUp;
                            }
                        }
                    }
                },
                event = sessions.link.next_event() => match event {
                    LinkEvent::Text(text) if live.is_some() => {
                        if let Some(translator) = &mut live {
                            engine::on_live_text(translator, &text, Instant::now(), &mut conductor, &mut actions);
                        }
                    }
                    LinkEvent::Text(text) => {
                        let now = Instant::now();
                        match parse_server_event(&text) {
                            Ok(event) => conductor.on_openai(event, now, &mut actions),
                            Err(e) => {
                                if let Some(suppressed) = conductor.on_malformed_openai_event(now) {
                                    tracing::warn!(error = clip(&e.to_string()), event_bytes = text.len(), suppressed,
                                        "malformed OpenAI event skipped");
                                }
                            }
                        }
                    }
                    // Not the end of the call: the conductor reopens the session, or ends the call if it cannot.
                    LinkEvent::Closed { code, reason } =>
                        conductor.on_session_closed(code, clip(&reason), Instant::now(), &mut actions),
                },
                opened = sessions.next.opened() => match opened {
                    Ok(()) => conductor.on_session_opened(Instant::now(), &mut actions),
                    Err(e) => conductor.on_session_open_failed(&e.to_string(), Instant::now(), &mut actions),
                },
                request = control.recv(), if control_open => match request.map(|control| *control) {
                    Some(CallControl::HangUp) => conductor.on_hang_up_request(&mut actions),
                    Some(CallControl::Instruct(text)) => conductor.on_instruction(&text, &mut actions),
                    Some(CallControl::AnsweredBy(answered_by)) =>
                        conductor.on_answered_by(answered_by, Instant::now(), &mut actions),
                    Some(CallControl::SendDigits(digits)) => {
                        conductor.on_send_digits_request(digits, Instant::now(), &mut actions)
                    }
                    Some(CallControl::Transfer { target, summary }) => {
                        conductor.on_transfer_request(target, &summary, Instant::now(), &mut actions)
                    }
                    Some(CallControl::TransferEvent(event)) => {
                        conductor.on_transfer_event(event, Instant::now(), &mut actions)
                    }
                    Some(CallControl::Say { request, reply }) => {
                        match conductor.on_say(request, Instant::now(), &mut actions) {
                            Ok(()) => say_reply = Some(reply),
                            Err(refusal) => reply.send(Err(refusal)),
                        }
                    }
                    // Nobody can reach this call any more: stop polling a channel that would answer at once forever.
                    None => control_open = false,
                },
                Some(attachment) = new_streams.recv() => {
                    if conductor.on_stream_attached(Instant::now(), &mut actions) {
                        // Any old stream still attached ends here; the new one takes its place.
                        twilio.detach("stream_handover");
                        tracing::info!("new media stream attached to the call");
                        twilio.0 = Some(MediaLink::Remote(attachment.stream));
                    } else {
                        tracing::warn!("a media stream for this call arrived while none was awaited; closed");
                        MediaLink::Remote(attachment.stream)
                            .close(close_reason(&EndReason::Error(CallFailure::StreamNotAwaited)));
                    }
                }
                error = update_results.failed() => conductor.on_call_update_failed(&error, &mut actions),
                () = &mut timer => {
                    let now = Instant::now();
                    if is_stalled(twilio.stalled_since(), stall_timeout, now) {
                        tracing::warn!(stall_timeout_ms = stall_timeout.as_millis() as u64,
                            "Twilio is not taking the media stream's frames; ending the call");
                        break EndReason::Error(CallFailure::TwilioStalled);
                    }
                    if is_stalled(sessions.stalled_since(), stall_timeout, now) {
                        tracing::warn!(stall_timeout_ms = stall_timeout.as_millis() as u64,
                            "OpenAI Realtime is not taking client events; ending the call");
                        break EndReason::Error(CallFailure::OpenAiStalled);
                    }
                    if let Some(translator) = &mut live {
                        engine::on_live_tick(translator, now, &mut conductor, &mut actions);
                    }
                    if now >= conductor.next_deadline() {
                        conductor.on_tick(now, &mut actions);
                    }
                }
                () = &mut shutdown_signal, if !shutting_down => {
                    shutting_down = true;
                    conductor.on_shutdown(Instant::now(), &mut actions);
                }
            }
            if !stream_sid_logged && let Some(stream_sid) = conductor.stream_sid() {
                // From now on every log line of this call carries its StreamSid too.
                tracing::Span::current().record("stream_sid", stream_sid);
                stream_sid_logged = true;
            }
            if let Some(persistence) = &persistence {
                let turns = &conductor.record().turns;
                if turns.len() > stored_turns {
                    persistence.append(&turns[stored_turns..]);
                    stored_turns = turns.len();
                }
            }
            if let Some(translator) = &mut live {
                engine::translate_actions(translator, &mut actions);
            }
            let end = perform(
                &mut actions,
                &mut twilio.0,
                &mut sessions,
                &mut say_reply,
                &mut |update| {
                    request_update(
                        &call_sid,
                        &handover,
                        rest.as_ref(),
                        update,
                        update_results.sender(),
                    )
                },
            );
            if let Some(received) = conductor.take_clear() {
                crate::metrics::barge_in_cleared(received.elapsed());
            }
            // What was queued leaves now, before the loop waits again.
            sessions.link.write_ready();
            if let Some(reason) = end {
                break reason;
            }
            let next = next_deadline(
                &conductor,
                twilio.stalled_since(),
                sessions.stalled_since(),
                stall_timeout,
                live.as_ref(),
            );
            if next != deadline {
                deadline = next;
                timer.as_mut().reset(deadline.into());
            }
        };

        // Either side is gone or the call is over: close the media stream with a code that says why.
        if let Some(link) = twilio.0.take() {
            link.close(close_reason(&reason));
        }
        let say_under_way = conductor.take_say();
        let record = conductor.finish(reason.clone(), Instant::now());
        if let (Some(turn), Some(reply)) = (say_under_way, say_reply.take()) {
            reply.send(Ok(say_report_at_end(&turn, &record)));
        }
        // Store the record first: readers waiting for the outcome should not wait on either socket or Twilio's API.
        log_record(&record);
        if let Some(persistence) = &persistence {
            persistence.finish(&record);
        }
        if matches!(reason, EndReason::Error(CallFailure::OpenAiStalled)) {
            drop(sessions);
        } else {
            if live.is_some() {
                // GPT-Live: ask the session to close (it finalizes its usage) ahead of the close frame.
                let _ = sessions
                    .link
                    .send(crate::live::client_events::LiveClientEvent::SessionClose.to_json());
                sessions.link.write_ready();
            }
            // Boxed, as the hang-up below: the end of the call should not size the task for the whole call.
            Box::pin(sessions.close()).await;
        }
        // A transferred call goes on between the caller and the person: only the assistant leaves it.
        if reason != EndReason::CallerHungUp
            && reason != EndReason::Transferred
            && let Some(rest) = rest
            && let Err(e) = Box::pin(rest.hang_up(&record.call_sid)).await
        {
            tracing::warn!(error = %e, call_sid = %record.call_sid, "REST hang-up failed");
        }
        record
    }
}

/// Where the tasks that send call updates report a failure, as text: a channel made when the first update is sent.
#[derive(Default)]
struct UpdateResults(Option<(mpsc::Sender<String>, mpsc::Receiver<String>)>);

impl UpdateResults {
    /// The sender for a new update's task (the channel is made now if it is the call's first update).
    fn sender(&mut self) -> &mpsc::Sender<String> {
        &self.0.get_or_insert_with(|| mpsc::channel(4)).0
    }

    /// The next failure; pending for ever while no update was sent (the channel holds a sender of its own, so it never
    /// closes).
    async fn failed(&mut self) -> String {
        match &mut self.0 {
            Some((_, failures)) => match failures.recv().await {
                Some(error) => error,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// The earliest of the conductor's next deadline and the stall deadlines of both sides.
fn next_deadline(
    conductor: &Conductor,
    twilio_stalled_since: Option<Instant>,
    openai_stalled_since: Option<Instant>,
    stall_timeout: Duration,
    live: Option<&crate::live::translate::LiveTranslator>,
) -> Instant {
    [twilio_stalled_since, openai_stalled_since]
        .into_iter()
        .flatten()
        .map(|since| since + stall_timeout)
        .chain(live.and_then(crate::live::translate::LiveTranslator::deadline))
        .fold(conductor.next_deadline(), Instant::min)
}

/// True when frames have waited since `since` for at least `stall_timeout`.
fn is_stalled(since: Option<Instant>, stall_timeout: Duration, now: Instant) -> bool {
    since.is_some_and(|since| now.duration_since(since) >= stall_timeout)
}

/// Why the call ends when a frame cannot be queued for Twilio.
fn write_failed(e: WriteError) -> EndReason {
    match e {
        WriteError::Gone => EndReason::CallerHungUp,
        WriteError::Full => EndReason::Error(CallFailure::TwilioStalled),
    }
}

/// Performs the conductor's actions in order, queuing the frames (nothing here waits); returns why the call ends, if
/// it does.
fn perform(
    actions: &mut Vec<Action>,
    twilio: &mut Option<MediaLink>,
    sessions: &mut RealtimeSessions,
    say_reply: &mut Option<SayReplySlot>,
    update_call: &mut dyn FnMut(CallUpdate),
) -> Option<EndReason> {
    let mut end = None;
    for action in actions.drain(..) {
        match action {
            Action::Twilio(text) => {
                // Between two streams of a handover there is no one to send to: the frame is dropped.
                if let Some(twilio) = twilio
                    && let Err(e) = twilio.send_text(&text)
                {
                    end = Some(write_failed(e));
                    break;
                }
            }
            Action::UpdateCall(update) => update_call(update),
            Action::SayDone(report) => {
                if let Some(reply) = say_reply.take() {
                    reply.send(Ok(report));
                }
            }
            Action::OpenAi(text) => match sessions.link.send(text) {
                Ok(()) => {}
                // The link reports its close with its next event; the conductor decides then.
                Err(SendError::Closed) => {
                    tracing::debug!("client event for a closed Realtime session dropped")
                }
                Err(SendError::Full) => {
                    end = Some(EndReason::Error(CallFailure::OpenAiStalled));
                    break;
                }
            },
            Action::HangUp(reason) => {
                end = Some(reason);
                break;
            }
            Action::OpenSession => sessions.next.open(),
            Action::SwitchSession => {
                if !sessions.switch() {
                    tracing::warn!("no new Realtime session to switch to");
                }
            }
        }
    }
    actions.clear();
    end
}

/// Sends the call update `update` (a fresh handover token in its TwiML) through the REST API in a task of its own;
/// a failure comes back on `failed` as text. Without REST credentials it fails at once.
fn request_update(
    call_sid: &str,
    handover: &HandoverDeps,
    rest: Option<&TwilioRest>,
    update: CallUpdate,
    failed: &mpsc::Sender<String>,
) {
    let Some(rest) = rest.cloned() else {
        let _ = failed.try_send("no Twilio REST credentials configured".into());
        return;
    };
    let twiml = handover.update_twiml(call_sid, &update);
    let call_sid = call_sid.to_owned();
    let failed = failed.clone();
    let tokens = handover.tokens.clone();
    actix_web::rt::spawn(async move {
        // With a fleet, the handover token's grant must be in Redis before Twilio can open the new stream.
        if let Err(e) = tokens.all_published().await {
            let _ = failed.try_send(format!("the handover token cannot be shared: {e}"));
            return;
        }
        // The REST client's own timeout bounds this request.
        if let Err(e) = rest.update_twiml(&call_sid, &twiml).await {
            let _ = failed.try_send(e.to_string());
        }
    });
}

/// The close frame that tells Twilio (or whoever holds the stream) why the call ended: its code follows RFC 6455
/// §7.4.1 and its reason is the end reason (`goodbye`, `error:openai_closed`, ...). `None` for a peer that is not
/// reading, whose connection is dropped instead.
pub fn close_reason(reason: &EndReason) -> Option<CloseReason> {
    let code = match reason {
        EndReason::CallerHungUp
        | EndReason::Goodbye
        | EndReason::MaxDuration
        | EndReason::HungUpByApi
        | EndReason::Shutdown
        | EndReason::VoicemailLeft
        | EndReason::MachineHungUp
        | EndReason::StreamHandoverTimeout
        | EndReason::Transferred
        | EndReason::CostCap
        | EndReason::InstanceLost => CloseCode::Normal,
        EndReason::Error(failure) => match failure {
            CallFailure::TwilioStalled => return None,
            CallFailure::FrameTooLarge => CloseCode::Size,
            CallFailure::TwilioProtocolError => CloseCode::Protocol,
            CallFailure::CallSidMismatch => CloseCode::Policy,
            CallFailure::StreamIdle => CloseCode::Normal,
            CallFailure::OpenAiUnavailable
            | CallFailure::OpenAiClosed
            | CallFailure::OpenAiReconnectFailed
            | CallFailure::OpenAiStalled
            | CallFailure::OpenAiError
            | CallFailure::OpenAiFatal(_)
            | CallFailure::StreamExpired
            | CallFailure::StreamNeverOpened
            | CallFailure::StreamNotAwaited
            | CallFailure::ServerStopped => CloseCode::Error,
        },
    };
    Some(CloseReason {
        code,
        description: Some(reason.to_string()),
    })
}

/// Closes the media stream for `reason`: a close frame after what is queued, and the connection dropped if it has not
/// taken it within [`crate::relay::media_link::CLOSE_TIMEOUT`]; a stalled peer's connection is dropped at once.
pub fn close_twilio(twilio: TwilioWriter, reason: &EndReason) {
    close_writer(twilio, close_reason(reason));
}

/// Logs the finished call as one structured line (target `callbridge::call`).
pub fn log_record(record: &CallRecord) {
    let json = serde_json::to_string(record).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    tracing::info!(
        target: "callbridge::call",
        call_sid = %record.call_sid,
        stream_sid = record.stream_sid.as_deref().unwrap_or(""),
        end_reason = %record.end_reason.as_ref().map(ToString::to_string).unwrap_or_default(),
        duration_ms = record.duration_ms,
        turns = record.turns.len(),
        transfers = record.transfers.len(),
        rollovers = record.rollovers.len(),
        total_tokens = record.usage.total_tokens,
        cost_usd = record.cost.as_ref().map_or(0.0, |c| c.total_usd),
        live_active_seconds = record.usage.live_active_seconds,
        live_cost_usd = record.usage.live_active_seconds as f64 / 60.0
            * crate::live::translate::LIVE_USD_PER_ACTIVE_MINUTE,
        record = %json,
        "call ended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(reason: EndReason) -> Option<u16> {
        close_reason(&reason).map(|close| u16::from(close.code))
    }

    #[test]
    fn each_end_reason_closes_the_stream_with_the_code_readme_documents() {
        assert_eq!(code_of(EndReason::Goodbye), Some(1000));
        assert_eq!(code_of(EndReason::CallerHungUp), Some(1000));
        assert_eq!(
            code_of(EndReason::Error(CallFailure::StreamIdle)),
            Some(1000)
        );
        assert_eq!(code_of(EndReason::Error(CallFailure::TwilioStalled)), None);
        assert_eq!(
            code_of(EndReason::Error(CallFailure::OpenAiStalled)),
            Some(1011)
        );
        assert_eq!(
            code_of(EndReason::Error(CallFailure::OpenAiClosed)),
            Some(1011)
        );
        assert_eq!(
            code_of(EndReason::Error(CallFailure::FrameTooLarge)),
            Some(1009)
        );
        assert_eq!(
            code_of(EndReason::Error(CallFailure::TwilioProtocolError)),
            Some(1002)
        );
        assert_eq!(
            code_of(EndReason::Error(CallFailure::CallSidMismatch)),
            Some(1008)
        );
        assert_eq!(
            code_of(EndReason::Error(CallFailure::OpenAiFatal(
                "invalid_api_key".into()
            ))),
            Some(1011)
        );
    }

    #[test]
    fn an_openai_code_that_spells_a_named_failure_is_still_an_openai_failure() {
        // The close code follows the variant, not the text: OpenAI cannot make the relay drop Twilio's connection.
        assert_eq!(
            code_of(EndReason::Error(CallFailure::OpenAiFatal(
                "twilio_stalled".into()
            ))),
            Some(1011)
        );
    }

    #[test]
    fn the_close_frame_reason_is_the_end_reason() {
        let close =
            close_reason(&EndReason::Error(CallFailure::OpenAiClosed)).expect("a close frame");
        assert_eq!(close.description.as_deref(), Some("error:openai_closed"));
    }
}
