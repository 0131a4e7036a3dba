//! Holding the model back until Twilio says who answered an outbound call, then deciding what the call does: talk
//! (a person, or no verdict in time), leave a voicemail message after the beep, or hang up (a machine the call's
//! policy hangs up on, or a fax). A plain state machine: the conductor feeds it verdicts, the stream's start and
//! the time, and performs the [`MachineStep`] it returns.
//!
//! While the verdict is pending the session runs with `create_response: false` (see
//! [`crate::realtime::session::SessionConfig::to_json_holding`]): the callee is heard and transcribed, but the model
//! says nothing, and no greeting is spoken into a voicemail box. Verdicts follow Twilio's `AnsweredBy`
//! (<https://www.twilio.com/docs/voice/answering-machine-detection>); with `DetectMessageEnd` a machine is reported
//! as `machine_end_beep`, `machine_end_silence` or `machine_end_other` once its greeting is over. `machine_start`
//! (only sent with `MachineDetection=Enable`) is still handled: hang up at once, or wait for the greeting's end.

use std::time::{Duration, Instant};

use crate::twilio::amd::{AnsweredBy, MachinePolicy};

/// What a call with answering machine detection needs from its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    /// `HangUp` or `LeaveMessage` (a call with `Ignore` has no plan).
    pub policy: MachinePolicy,
    /// What to say after the beep; `None` lets the model compose it from the task.
    pub voicemail_message: Option<String>,
    /// How long to hold the model back waiting for a verdict before talking as if it were `unknown`.
    pub verdict_wait: Duration,
    /// The `session.update` that turns automatic responses back on
    /// ([`crate::realtime::session::turn_detection_update`] with the call's turn detection).
    pub release_update: String,
}

impl MachinePlan {
    /// The system message that asks for the voicemail message: the given text, or one composed from the task.
    pub fn voicemail_instruction(&self) -> String {
        let what = match &self.voicemail_message {
            Some(message) => format!(
                "Leave this message, in your own voice and in the language of the call, adapted to your task but \
                 keeping every fact in it: \"{message}\""
            ),
            None => "Leave a short message that says who is calling, why, and how to call back, from your task."
                .to_owned(),
        };
        format!(
            "The call was answered by an answering machine, not a person, and its greeting has ended: you are now \
             recording a voicemail. {what} Speak once, clearly, in at most three sentences, then stop. Do not wait \
             for an answer and do not greet anyone as if they were listening live."
        )
    }
}

/// What the conductor does about the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineStep {
    /// A person, `unknown`, or no verdict in time: automatic responses back on, and the conversation starts as on
    /// any call (the greeting, or an answer to what the callee already said when `answer_now`).
    Converse {
        /// The callee finished speaking while the model was held back: answer it now.
        answer_now: bool,
    },
    /// A machine whose greeting is over, and the policy is `leave_message`: say the message, then hang up.
    LeaveMessage,
    /// A machine and the policy is `hang_up`, or a fax: hang up now (end reason `machine_hung_up`).
    HangUp,
}

/// Where the hold is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No verdict acted on yet. `pending` is a step decided before the media stream started (nothing can be said
    /// before it has), taken when it starts.
    Holding { pending: Option<MachineStep> },
    /// A step was taken; later verdicts (a retried callback) change nothing.
    Decided,
}

/// The hold of one call. See the module docs.
#[derive(Debug, Clone)]
pub struct MachineHold {
    /// The call's plan.
    plan: MachinePlan,
    /// When the wait for a verdict ends.
    deadline: Instant,
    /// Where the hold is.
    phase: Phase,
    /// The verdict, once one came (the latest of a `machine_start` and the greeting's end).
    answered_by: Option<AnsweredBy>,
    /// The callee's speech ended (server VAD `speech_stopped`) while the model was held back.
    callee_spoke: bool,
}

impl MachineHold {
    /// A hold that starts at `now` (the call's bridge starts) and waits [`MachinePlan::verdict_wait`].
    pub fn new(plan: MachinePlan, now: Instant) -> Self {
        let deadline = now + plan.verdict_wait;
        MachineHold {
            plan,
            deadline,
            phase: Phase::Holding { pending: None },
            answered_by: None,
            callee_spoke: false,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &MachinePlan {
        &self.plan
    }

    /// True while the model must not speak on its own (no step taken yet).
    pub fn is_holding(&self) -> bool {
        matches!(self.phase, Phase::Holding { .. })
    }

    /// The verdict, once one came.
    pub fn answered_by(&self) -> Option<AnsweredBy> {
        self.answered_by
    }

    /// When [`MachineHold::on_tick`] has something to do: the end of the wait, while no step is decided.
    pub fn deadline(&self) -> Option<Instant> {
        (self.phase == Phase::Holding { pending: None }).then_some(self.deadline)
    }

    /// The callee stopped speaking (server VAD `speech_stopped`).
    pub fn on_speech_stopped(&mut self) {
        if self.is_holding() {
            self.callee_spoke = true;
        }
    }

    /// Twilio's verdict arrived. Returns the step to take now; before the stream started every step but a hang-up
    /// waits for [`MachineHold::on_stream_start`]. A verdict after a step was taken returns `None`.
    pub fn on_verdict(
        &mut self,
        answered_by: AnsweredBy,
        stream_started: bool,
    ) -> Option<MachineStep> {
        let Phase::Holding { pending: None } = self.phase else {
            return None;
        };
        self.answered_by = Some(answered_by);
        let step = match answered_by {
            AnsweredBy::Human | AnsweredBy::Unknown => self.converse(),
            AnsweredBy::Fax => MachineStep::HangUp,
            _ if self.plan.policy == MachinePolicy::HangUp => MachineStep::HangUp,
            AnsweredBy::MachineStart => return None, // wait for the greeting's end (or the deadline)
            _ => MachineStep::LeaveMessage,
        };
        self.take(step, stream_started)
    }

    /// The media stream started: returns a step decided before it, if any.
    pub fn on_stream_start(&mut self) -> Option<MachineStep> {
        match self.phase {
            Phase::Holding {
                pending: Some(step),
            } => {
                self.phase = Phase::Decided;
                Some(match step {
                    MachineStep::Converse { .. } => self.converse(),
                    other => other,
                })
            }
            _ => None,
        }
    }

    /// Time passed: at the end of the wait with no verdict the call goes on as a conversation (or, after a
    /// `machine_start`, leaves its message).
    pub fn on_tick(&mut self, now: Instant, stream_started: bool) -> Option<MachineStep> {
        if self.deadline() != Some(self.deadline) || now < self.deadline {
            return None;
        }
        let step = if self.answered_by == Some(AnsweredBy::MachineStart) {
            tracing::info!("no end of the machine's greeting in time: leaving the message now");
            MachineStep::LeaveMessage
        } else {
            tracing::info!("no answering machine verdict in time: talking as to a person");
            self.converse()
        };
        self.take(step, stream_started)
    }

    fn converse(&self) -> MachineStep {
        MachineStep::Converse {
            answer_now: self.callee_spoke,
        }
    }

    /// Takes `step` now, or (unless it hangs up) keeps it until the stream starts.
    fn take(&mut self, step: MachineStep, stream_started: bool) -> Option<MachineStep> {
        if stream_started || step == MachineStep::HangUp {
            self.phase = Phase::Decided;
            Some(step)
        } else {
            self.phase = Phase::Holding {
                pending: Some(step),
            };
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(40);

    fn hold(policy: MachinePolicy) -> (MachineHold, Instant) {
        let now = Instant::now();
        let plan = MachinePlan {
            policy,
            voicemail_message: Some("Please call Sam back.".into()),
            verdict_wait: WAIT,
            release_update: "{}".into(),
        };
        (MachineHold::new(plan, now), now)
    }

    #[test]
    fn a_person_or_an_unknown_answer_starts_the_conversation() {
        for verdict in [AnsweredBy::Human, AnsweredBy::Unknown] {
            let (mut hold, _) = hold(MachinePolicy::LeaveMessage);

            let step = hold.on_verdict(verdict, true);

            assert_eq!(step, Some(MachineStep::Converse { answer_now: false }));
            assert!(!hold.is_holding());
            assert_eq!(hold.answered_by(), Some(verdict));
        }
    }

    #[test]
    fn a_person_who_already_spoke_is_answered_at_once() {
        let (mut hold, _) = hold(MachinePolicy::HangUp);
        hold.on_speech_stopped();

        let step = hold.on_verdict(AnsweredBy::Human, true);

        assert_eq!(step, Some(MachineStep::Converse { answer_now: true }));
    }

    #[test]
    fn the_end_of_a_machines_greeting_leaves_the_message_or_hangs_up_per_the_policy() {
        for verdict in [
            AnsweredBy::MachineEndBeep,
            AnsweredBy::MachineEndSilence,
            AnsweredBy::MachineEndOther,
        ] {
            let (mut leave, _) = hold(MachinePolicy::LeaveMessage);
            let (mut hang_up, _) = hold(MachinePolicy::HangUp);

            assert_eq!(
                leave.on_verdict(verdict, true),
                Some(MachineStep::LeaveMessage)
            );
            assert_eq!(hang_up.on_verdict(verdict, true), Some(MachineStep::HangUp));
        }
    }

    #[test]
    fn a_fax_is_hung_up_on_whatever_the_policy() {
        let (mut hold, _) = hold(MachinePolicy::LeaveMessage);

        assert_eq!(
            hold.on_verdict(AnsweredBy::Fax, true),
            Some(MachineStep::HangUp)
        );
    }

    #[test]
    fn machine_start_hangs_up_at_once_or_waits_for_the_greetings_end() {
        let (mut hang_up, _) = hold(MachinePolicy::HangUp);
        let (mut leave, start) = hold(MachinePolicy::LeaveMessage);

        assert_eq!(
            hang_up.on_verdict(AnsweredBy::MachineStart, true),
            Some(MachineStep::HangUp)
        );
        assert_eq!(leave.on_verdict(AnsweredBy::MachineStart, true), None);
        assert!(leave.is_holding());
        assert_eq!(
            leave.on_tick(start + WAIT, true),
            Some(MachineStep::LeaveMessage)
        );
    }

    #[test]
    fn a_machine_start_followed_by_the_greetings_end_leaves_the_message() {
        let (mut hold, _) = hold(MachinePolicy::LeaveMessage);
        hold.on_verdict(AnsweredBy::MachineStart, true);

        let step = hold.on_verdict(AnsweredBy::MachineEndBeep, true);

        assert_eq!(step, Some(MachineStep::LeaveMessage));
        assert_eq!(hold.answered_by(), Some(AnsweredBy::MachineEndBeep));
    }

    #[test]
    fn no_verdict_before_the_deadline_starts_the_conversation_then() {
        let (mut hold, start) = hold(MachinePolicy::LeaveMessage);

        let early = hold.on_tick(start + WAIT - Duration::from_millis(1), true);
        let due = hold.on_tick(start + WAIT, true);

        assert_eq!(early, None);
        assert_eq!(due, Some(MachineStep::Converse { answer_now: false }));
        assert_eq!(hold.deadline(), None);
        assert_eq!(hold.answered_by(), None);
    }

    #[test]
    fn a_repeated_or_late_verdict_changes_nothing() {
        let (mut hold, start) = hold(MachinePolicy::LeaveMessage);
        hold.on_verdict(AnsweredBy::MachineEndBeep, true);

        let again = hold.on_verdict(AnsweredBy::MachineEndBeep, true);
        let other = hold.on_verdict(AnsweredBy::Human, true);
        let tick = hold.on_tick(start + WAIT, true);

        assert_eq!((again, other, tick), (None, None, None));
        assert_eq!(hold.answered_by(), Some(AnsweredBy::MachineEndBeep));
    }

    #[test]
    fn a_verdict_before_the_stream_started_is_taken_when_it_starts_but_a_hang_up_is_not_delayed() {
        let (mut leave, _) = hold(MachinePolicy::LeaveMessage);
        let (mut fax, _) = hold(MachinePolicy::LeaveMessage);

        let before = leave.on_verdict(AnsweredBy::MachineEndBeep, false);
        let hung_up = fax.on_verdict(AnsweredBy::Fax, false);

        assert_eq!(before, None);
        assert!(
            leave.is_holding(),
            "nothing is said before the stream starts"
        );
        assert_eq!(
            leave.deadline(),
            None,
            "the decided step no longer times out"
        );
        assert_eq!(leave.on_stream_start(), Some(MachineStep::LeaveMessage));
        assert!(!leave.is_holding());
        assert_eq!(leave.on_stream_start(), None);
        assert_eq!(hung_up, Some(MachineStep::HangUp));
    }

    #[test]
    fn the_voicemail_instruction_carries_the_given_message_or_asks_for_one_from_the_task() {
        let (given, _) = hold(MachinePolicy::LeaveMessage);
        let mut plan = given.plan().clone();
        plan.voicemail_message = None;

        assert!(
            given
                .plan()
                .voicemail_instruction()
                .contains("\"Please call Sam back.\"")
        );
        assert!(plan.voicemail_instruction().contains("from your task"));
    }
}
