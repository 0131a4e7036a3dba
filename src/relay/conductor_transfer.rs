//! The conductor's side of a transfer to a person: the model's `transfer_call` tool (a name from the configured
//! list, never a number), an agent's request (a number the destination policy already passed), and what Twilio
//! reports back (see [`crate::relay::transfer`]).
//!
//! A transfer is a stream handover (see [`crate::relay::conductor`]'s handover part) whose call update dials the
//! person: the idle timer is suspended and the deadline is the dial timeout plus [`TRANSFER_MARGIN`]. The person
//! answers (the whisper is fetched) or the `<Dial action>` reports `completed`/`answered`: the call ends
//! [`EndReason::Transferred`] and the assistant leaves. `no-answer`, `busy`, `failed` or `canceled`: the action
//! brings the caller back on a new stream (cause `transfer_returned`), the model is told at once and asked to speak
//! when that stream starts. At most [`MAX_TRANSFERS_PER_CALL`] per call; each is an action turn in the transcript
//! and an entry in [`crate::calls::CallRecord::transfers`].

use std::time::{Duration, Instant};

/// After the person answered (the whisper was fetched), how long the call waits for a `<Dial action>` that brings
/// the caller back (the person hung up during the whisper) before it counts as transferred: the whisper's length
/// and Twilio's reporting.
pub const ANSWERED_GRACE: Duration = Duration::from_secs(20);

use super::handover::{HANDOVER_TIMEOUT, HandoverPhase};
use super::{Action, Conductor, Farewell};
use crate::calls::{EndReason, Speaker, TransferAttempt};
use crate::realtime::client_events::{ClientEvent, ConversationItem};
use crate::relay::handover::CallUpdate;
use crate::twilio::dial::{
    DIAL_TIMEOUT_S, DialStatus, MAX_TRANSFERS_PER_CALL, TRANSFER_MARGIN, TransferEvent,
    TransferTarget, clip_summary, find_target,
};

/// The conductor's transfer state.
#[derive(Debug, Default)]
pub(super) struct TransferState {
    /// The configured targets the model may pick from.
    targets: Vec<TransferTarget>,
    /// Transfers attempted so far.
    attempts: u32,
    /// True while a transfer is under way (from the request to its outcome).
    under_way: bool,
    /// True once the person of the transfer under way answered (the whisper was fetched).
    answered: bool,
    /// The caller came back from a failed transfer: ask the model to speak once the new stream starts.
    respond_on_start: bool,
}

/// Why a transfer was not started: said to the model (tool output) or logged (agent request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferRefusal {
    /// Another handover is under way, or the stream has not started.
    Busy,
    /// The call is ending.
    Ending,
    /// The call has used its transfers.
    TooMany,
}

impl TransferRefusal {
    /// In words for the model and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferRefusal::Busy => "the line is busy with another action; try again in a moment",
            TransferRefusal::Ending => "the call is ending",
            TransferRefusal::TooMany => "no more transfers are allowed on this call",
        }
    }
}

impl Conductor {
    /// Sets the people the model may transfer to by name (`CALLBRIDGE_TRANSFER_TARGETS`); none by default.
    pub fn set_transfer_targets(&mut self, targets: Vec<TransferTarget>) {
        self.transfer.targets = targets;
    }

    /// Transfers the call to `target` at `now`, whispering `summary` (bounded by [`clip_summary`]): an action turn,
    /// a transfer entry in the record, a call update and a handover awaiting the outcome.
    ///
    /// # Errors
    /// [`TransferRefusal`] when another handover is under way or the stream has not started, the call is ending, or
    /// it has used its [`MAX_TRANSFERS_PER_CALL`]; nothing is done then.
    pub fn transfer(
        &mut self,
        target: TransferTarget,
        summary: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), TransferRefusal> {
        if self.farewell != Farewell::None || self.shutdown_deadline.is_some() {
            return Err(TransferRefusal::Ending);
        }
        if self.handover.phase != HandoverPhase::Idle || self.stream_sid.is_none() {
            return Err(TransferRefusal::Busy);
        }
        if self.transfer.attempts >= MAX_TRANSFERS_PER_CALL {
            return Err(TransferRefusal::TooMany);
        }
        self.transfer.attempts += 1;
        self.transfer.under_way = true;
        self.transfer.answered = false;
        let label = target.label();
        tracing::info!(target = %label, "transferring the call (call update, <Dial>)");
        let offset_ms = self.offset_ms(now);
        self.record.push_turn(
            Speaker::Action,
            &format!("transferring to {label}"),
            offset_ms,
            false,
            None,
        );
        self.record.transfers.push(TransferAttempt {
            target: label,
            number: target.number.to_string(),
            offset_ms,
            status: None,
        });
        let update = CallUpdate::Transfer {
            target,
            summary: clip_summary(summary),
        };
        self.handover.phase = HandoverPhase::Requested {
            cause: update.cause(),
            deadline: now + Duration::from_secs(u64::from(DIAL_TIMEOUT_S)) + TRANSFER_MARGIN,
        };
        out.push(Action::UpdateCall(update));
        Ok(())
    }

    /// The model called `transfer_call` with `arguments` (`{"target":"front desk","summary":"..."}`); returns the
    /// function call's output. Only a configured name is dialled; anything else is refused with `ok:false`.
    pub(super) fn on_transfer_call(
        &mut self,
        arguments: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> String {
        let args = serde_json::from_str::<serde_json::Value>(arguments).unwrap_or_default();
        let field = |name: &str| {
            args.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let (name, summary) = (field("target"), field("summary"));
        let result = match find_target(&self.transfer.targets, &name).cloned() {
            None => Err(format!(
                "no transfer target is called {:?}; choose one of: {}",
                clip_summary(&name),
                self.transfer_names()
            )),
            Some(target) => self
                .transfer(target, &summary, now, out)
                .map_err(|r| r.as_str().to_owned()),
        };
        match result {
            Ok(()) => serde_json::json!({"ok": true, "note": "The call is being transferred now. Say nothing more; \
                if nobody answers you will be told."})
            .to_string(),
            Err(error) => {
                tracing::info!(%error, "transfer_call refused");
                self.responses.queue();
                serde_json::json!({"ok": false, "error": error}).to_string()
            }
        }
    }

    /// An agent asked to transfer the call to `target` with `summary`: transferred as [`Conductor::transfer`], and
    /// the model is told; a refusal is logged.
    pub fn on_transfer_request(
        &mut self,
        target: TransferTarget,
        summary: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let note = format!(
            "The operator is transferring this call to {} now. Say nothing more unless you are told the transfer \
             failed.",
            target.label()
        );
        match self.transfer(target, summary, now, out) {
            Ok(()) => out.push(Action::OpenAi(
                ClientEvent::ConversationItemCreate {
                    item: ConversationItem::system_text(note),
                }
                .to_json(),
            )),
            Err(refusal) => {
                tracing::warn!(reason = refusal.as_str(), "transfer from the API refused")
            }
        }
    }

    /// What Twilio reported about the transfer under way, at `now`. The person answered (the whisper): they hear
    /// the summary and are connected, and Twilio reports the dial only when that call ends, so the call ends
    /// `transferred` within [`ANSWERED_GRACE`] (sooner on `completed`); a whisper hung up on still comes back as
    /// a failure. The dial ended `completed`/`answered` → the call ends `transferred`; any other status → the caller
    /// comes back on a new stream and the model is told.
    pub fn on_transfer_event(&mut self, event: TransferEvent, now: Instant, out: &mut Vec<Action>) {
        if !self.transfer.under_way {
            tracing::info!(?event, "transfer report for no transfer under way; ignored");
            return;
        }
        let status = match event {
            TransferEvent::Answered => {
                tracing::info!("the person answered the transfer; the summary is whispered");
                self.transfer.answered = true;
                if let Some(last) = self.record.transfers.last_mut() {
                    last.status = Some("answered".to_owned());
                }
                if let HandoverPhase::Requested { deadline, .. }
                | HandoverPhase::Detached { deadline, .. } = &mut self.handover.phase
                {
                    *deadline = (*deadline).min(now + ANSWERED_GRACE);
                }
                return;
            }
            TransferEvent::Ended(status) => status,
        };
        let connected = status.connected();
        let status = status.as_str();
        if let Some(last) = self.record.transfers.last_mut() {
            last.status = Some(status.to_owned());
        }
        self.transfer.under_way = false;
        if connected {
            tracing::info!(
                status,
                "the person answered the transfer; the assistant leaves the call"
            );
            out.push(Action::HangUp(EndReason::Transferred));
            return;
        }
        tracing::info!(
            status,
            "the transfer was not answered; the caller comes back to the assistant"
        );
        if let HandoverPhase::Requested { .. } = self.handover.phase {
            self.detach_stream(now, out);
        }
        // The new stream may already have started (the report raced it): then the model speaks at once.
        let back_already = self.handover.phase == HandoverPhase::Idle;
        if !back_already {
            self.handover.phase = HandoverPhase::Detached {
                cause: "transfer_returned",
                deadline: now + HANDOVER_TIMEOUT,
            };
        }
        let offset_ms = self.offset_ms(now);
        self.record.push_turn(
            Speaker::Action,
            &format!("transfer failed: {status}"),
            offset_ms,
            false,
            None,
        );
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(format!(
                    "The transfer failed ({}): nobody took the call, and the caller is back with you. Tell them \
                     briefly, then help them yourself or offer to take a message.",
                    describe(status)
                )),
            }
            .to_json(),
        ));
        if back_already {
            self.request_response(out);
        } else {
            self.transfer.respond_on_start = true;
        }
    }

    /// What the handover deadline does: a transfer the person answered is done (the assistant leaves the call);
    /// any other handover that got no new stream in time ends the call.
    pub(super) fn handover_deadline_action(&mut self) -> Action {
        if self.transfer.under_way && self.transfer.answered {
            self.transfer.under_way = false;
            tracing::info!("the transferred person is connected; the assistant leaves the call");
            Action::HangUp(EndReason::Transferred)
        } else {
            super::handover::handover_timeout_action()
        }
    }

    /// The call update of a transfer failed: no transfer after all.
    pub(super) fn on_transfer_update_failed(&mut self) {
        if self.transfer.under_way {
            self.transfer.under_way = false;
            if let Some(last) = self.record.transfers.last_mut() {
                last.status = Some("update_failed".to_owned());
            }
        }
    }

    /// The new stream started after a handover: if the caller came back from a transfer, the model speaks now.
    pub(super) fn after_handover_start(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.transfer.respond_on_start) {
            self.request_response(out);
        }
    }

    /// The configured names, comma-separated.
    fn transfer_names(&self) -> String {
        let names: Vec<&str> = self
            .transfer
            .targets
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        if names.is_empty() {
            "(none: transfers are not configured)".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// A `DialCallStatus` in words for the model.
fn describe(status: &str) -> &'static str {
    match DialStatus::parse(status) {
        Some(DialStatus::Busy) => "the line was busy",
        Some(DialStatus::NoAnswer) => "nobody answered",
        Some(DialStatus::Canceled) => "the call was cancelled",
        _ => "the call could not be placed",
    }
}
