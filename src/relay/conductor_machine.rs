//! The conductor's part in answering machine detection: the verdict arrives, and the [`MachineStep`] the
//! [`MachineHold`] decides is carried out (the conversation starts, the voicemail message is asked for, or the call
//! hangs up). A child module of the conductor, so that it shares the conductor's state.

use std::time::Instant;

use super::{Action, Conductor, Farewell};
use crate::calls::EndReason;
use crate::realtime::client_events::{ClientEvent, ConversationItem, ResponseParams};
use crate::realtime::session::turn_detection_update;
use crate::relay::machine::{MachineHold, MachineStep};
use crate::twilio::amd::AnsweredBy;

impl Conductor {
    /// Twilio's answering machine verdict arrived (ignored on a call without detection, and once a step was taken).
    pub fn on_answered_by(&mut self, answered_by: AnsweredBy, now: Instant, out: &mut Vec<Action>) {
        let started = self.stream_started();
        let Some(hold) = self.machine.as_mut() else {
            tracing::debug!(%answered_by, "answering machine verdict for a call without detection ignored");
            return;
        };
        let step = hold.on_verdict(answered_by, started);
        self.record.answered_by = hold.answered_by();
        tracing::info!(%answered_by, held_ms = self.offset_ms(now), "answering machine verdict");
        if let Some(step) = step {
            self.take_machine_step(step, out);
        }
    }

    /// True while the model is held back waiting for the answering machine verdict.
    pub(super) fn is_holding(&self) -> bool {
        self.machine.as_ref().is_some_and(MachineHold::is_holding)
    }

    /// Performs what the answering machine verdict decided.
    pub(super) fn take_machine_step(&mut self, step: MachineStep, out: &mut Vec<Action>) {
        let Some(plan) = self.machine.as_ref().map(|m| m.plan().clone()) else {
            return;
        };
        match step {
            MachineStep::Converse { answer_now } => {
                out.push(Action::OpenAi(plan.release_update));
                if self.stream_started() && self.config.assistant_speaks_first {
                    self.greet(out);
                } else if self.stream_started() && answer_now {
                    self.request_response(out);
                }
            }
            MachineStep::LeaveMessage => {
                tracing::info!("answering machine: leaving the voicemail message");
                // No turn detection from here: nothing the machine plays interrupts the message.
                out.push(Action::OpenAi(turn_detection_update(None)));
                out.push(Action::OpenAi(
                    ClientEvent::ConversationItemCreate {
                        item: ConversationItem::system_text(plan.voicemail_instruction()),
                    }
                    .to_json(),
                ));
                self.voicemail_from = Some(self.record.turns.len());
                self.farewell = Farewell::Speaking { response_id: None };
                if self.responses.request() {
                    let response = ResponseParams {
                        tool_choice: Some("none"),
                        ..ResponseParams::default()
                    };
                    let create = ClientEvent::ResponseCreate {
                        response: Some(response),
                    };
                    out.push(Action::OpenAi(create.to_json()));
                }
            }
            MachineStep::HangUp => {
                tracing::info!("answering machine or fax: hanging up");
                out.push(Action::HangUp(EndReason::MachineHungUp));
            }
        }
    }

    /// Asks the model to greet the caller with the configured greeting.
    pub(super) fn greet(&mut self, out: &mut Vec<Action>) {
        let greeting = format!(
            "The call has just connected. Greet the caller by saying: \"{}\"",
            self.config.greeting
        );
        out.push(Action::OpenAi(
            ClientEvent::ConversationItemCreate {
                item: ConversationItem::system_text(greeting),
            }
            .to_json(),
        ));
        self.request_response(out);
    }
}
