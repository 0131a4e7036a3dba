//! The bridge: one task per call that moves messages between the Twilio media stream and the OpenAI Realtime link.
//!
//! It is a single `select!` loop over the Twilio socket, the Realtime link, the conductor's next deadline, a control
//! channel (hang up, inject an instruction) and the server's shutdown token (on which the assistant says goodbye). Every
//! Twilio frame, skipped ones included, is reported to the conductor for its idle-stream timer. Every decision is the
//! [`Conductor`]'s; the loop parses frames, hands them over and performs the returned [`Action`]s. When either side goes
//! away the other is closed at once, the call is hung up through the REST API when credentials are configured, and the
//! call record is logged as one structured line.
//!
//! Per frame the loop does no base64 decoding, parses with borrowed strings, and logs nothing above debug level.

use std::time::Instant;

use actix_ws::{Message, MessageStream, ProtocolError, Session};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::calls::live::CallControl;
use crate::calls::recorder::Persistence;
use crate::calls::{CallRecord, EndReason};
use crate::realtime::client::{LinkEvent, RealtimeLink};
use crate::realtime::events::parse_server_event;
use crate::relay::conductor::{Action, Conductor};
use crate::twilio::media::parse_twilio_event;
use crate::twilio::rest::TwilioRest;

/// Everything one call's bridge owns.
pub struct Bridge {
    /// Sends frames to Twilio.
    pub twilio_session: Session,
    /// Frames from Twilio (already limited to the maximum frame size: larger frames arrive as `Overflow` errors).
    pub twilio_frames: MessageStream,
    /// The OpenAI Realtime session.
    pub link: RealtimeLink,
    /// The call's decisions.
    pub conductor: Conductor,
    /// REST client for the hang-up, when credentials are configured.
    pub rest: Option<TwilioRest>,
    /// Requests from outside the call.
    pub control: mpsc::Receiver<CallControl>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Where the call's record is stored as it grows, when it is stored.
    pub persistence: Option<Persistence>,
}

impl Bridge {
    /// Runs the call to its end and returns the finished record (also logged).
    pub async fn run(self) -> CallRecord {
        let Bridge {
            mut twilio_session,
            mut twilio_frames,
            mut link,
            mut conductor,
            rest,
            mut control,
            shutdown,
            persistence,
        } = self;
        let mut stored_turns = 0;
        let mut actions: Vec<Action> = Vec::with_capacity(8);
        let mut shutting_down = false;
        let mut control_open = true;
        let mut stream_sid_logged = false;

        let reason = loop {
            let deadline = tokio::time::Instant::from_std(conductor.next_deadline());
            tokio::select! {
                frame = twilio_frames.next() => {
                    let now = Instant::now();
                    if frame.is_some() {
                        // Any frame, even one skipped below, shows the stream is alive (the idle timeout).
                        conductor.on_frame(now);
                    }
                    match frame {
                        Some(Ok(Message::Text(text))) => match parse_twilio_event(&text) {
                            Ok(event) => conductor.on_twilio(event, now, &mut actions),
                            Err(e) => {
                                if conductor.count_skipped_frame() {
                                    tracing::warn!(error = %e, frame_bytes = text.len(), "malformed Twilio frame skipped");
                                } else {
                                    tracing::debug!(error = %e, frame_bytes = text.len(), "malformed Twilio frame skipped");
                                }
                            }
                        },
                        Some(Ok(Message::Binary(bytes))) => {
                            if conductor.count_skipped_frame() {
                                tracing::warn!(frame_bytes = bytes.len(), "binary Twilio frame skipped");
                            }
                        }
                        Some(Ok(Message::Ping(bytes))) => {
                            if twilio_session.pong(&bytes).await.is_err() {
                                break EndReason::CallerHungUp;
                            }
                        }
                        Some(Ok(Message::Close(reason))) => {
                            tracing::info!(?reason, "Twilio closed the media stream");
                            break EndReason::CallerHungUp;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(ProtocolError::Overflow)) => {
                            if conductor.count_skipped_frame() {
                                tracing::warn!("oversized Twilio frame skipped");
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Twilio media stream failed");
                            break EndReason::CallerHungUp;
                        }
                        None => {
                            tracing::info!("Twilio media stream ended");
                            break EndReason::CallerHungUp;
                        }
                    }
                },
                event = link.incoming.recv() => match event {
                    Some(LinkEvent::Text(text)) => match parse_server_event(&text) {
                        Ok(event) => conductor.on_openai(event, Instant::now(), &mut actions),
                        Err(e) => tracing::warn!(error = %e, "malformed OpenAI event skipped"),
                    },
                    Some(LinkEvent::Closed { code, reason }) => {
                        tracing::warn!(?code, %reason, "OpenAI Realtime closed the session");
                        break EndReason::Error("openai_closed".into());
                    }
                    None => break EndReason::Error("openai_closed".into()),
                },
                request = control.recv(), if control_open => match request {
                    Some(CallControl::HangUp) => conductor.on_hang_up_request(&mut actions),
                    Some(CallControl::Instruct(text)) => conductor.on_instruction(&text, &mut actions),
                    // Nobody can reach this call any more: stop polling a channel that would answer at once forever.
                    None => control_open = false,
                },
                () = tokio::time::sleep_until(deadline) => conductor.on_tick(Instant::now(), &mut actions),
                () = shutdown.cancelled(), if !shutting_down => {
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
            if let Some(reason) = perform(&mut actions, &mut twilio_session, &link).await {
                break reason;
            }
        };

        // Either side is gone or the call is over: close both at once.
        let _ = twilio_session.close(None).await;
        drop(link);
        let record = conductor.finish(reason.clone(), Instant::now());
        // Store the record first: readers waiting for the outcome should not wait on Twilio's REST API.
        log_record(&record);
        if let Some(persistence) = &persistence {
            persistence.finish(&record);
        }
        if reason != EndReason::CallerHungUp
            && let Some(rest) = rest
            && let Err(e) = rest.hang_up(&record.call_sid).await
        {
            tracing::warn!(error = %e, call_sid = %record.call_sid, "REST hang-up failed");
        }
        record
    }
}

/// Performs the conductor's actions in order; returns why the call ends, if it does.
async fn perform(
    actions: &mut Vec<Action>,
    twilio: &mut Session,
    link: &RealtimeLink,
) -> Option<EndReason> {
    let mut end = None;
    for action in actions.drain(..) {
        match action {
            Action::Twilio(text) => {
                if twilio.text(text).await.is_err() {
                    end = Some(EndReason::CallerHungUp);
                    break;
                }
            }
            Action::OpenAi(text) => {
                if link.outgoing.send(text).await.is_err() {
                    end = Some(EndReason::Error("openai_closed".into()));
                    break;
                }
            }
            Action::HangUp(reason) => {
                end = Some(reason);
                break;
            }
        }
    }
    actions.clear();
    end
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
        total_tokens = record.usage.total_tokens,
        record = %json,
        "call ended"
    );
}
