//! Agent-in-the-loop calls: the call mode ([`CallMode`]), what an agent asks a relay-mode call to say
//! ([`SayRequest`]), what it gets back ([`SayReport`]) or why it was refused ([`SayRefusal`]), and the one-shot
//! slot the live call answers through ([`SayReplySlot`]).
//!
//! In `relay` mode the voice model never answers the callee on its own: server VAD runs with
//! `create_response: false`, and each `say` becomes one `response.create` whose instructions make the voice speak
//! the agent's text verbatim. The relay decides when the text was spoken (its last audio heard, or cut by a
//! barge-in) and which caller turn answers it; see [`crate::relay::say`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The most text one `say` may carry, in bytes (a few paragraphs; a phone line is not the place for more).
pub const SAY_TEXT_MAX_BYTES: usize = 4096;
/// How long `say` waits for the callee's reply when the request names no `timeout_s`.
pub const DEFAULT_REPLY_TIMEOUT_S: u64 = 30;
/// The longest reply wait a `say` may ask for, in seconds.
pub const MAX_REPLY_TIMEOUT_S: u64 = 300;
/// How long a say may take to be spoken (the model's time to first audio and the audio itself) before it is
/// reported as it stands: a model that never answers does not keep the agent waiting.
pub const SAY_SPEAKING_TIMEOUT: Duration = Duration::from_secs(90);
/// When the reply wait ends while the callee is still speaking (speech started, no transcript yet), it is extended
/// once by this much for the transcript to arrive.
pub const REPLY_TRANSCRIPT_GRACE: Duration = Duration::from_secs(10);

/// Who decides what the voice says on a call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    /// The voice model holds the conversation itself, following the call's instructions (the default).
    #[default]
    Autonomous,
    /// The agent holds the conversation: the voice speaks exactly what `say` gives it and never answers on its
    /// own; the callee's turns go back to the agent.
    Relay,
}

impl CallMode {
    /// The mode's name, as stored and in JSON: `autonomous` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Autonomous => "autonomous",
            CallMode::Relay => "relay",
        }
    }

    /// Reads a stored or typed name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "autonomous" => Some(CallMode::Autonomous),
            "relay" => Some(CallMode::Relay),
            _ => None,
        }
    }
}

impl std::str::FromStr for CallMode {
    type Err = String;

    /// `autonomous` or `relay` (any case); the error lists both.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CallMode::parse(text)
            .ok_or_else(|| format!("unknown call mode {text:?}; expected autonomous or relay"))
    }
}

/// One line for the voice of a relay-mode call to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SayRequest {
    /// The words, spoken verbatim (at most [`SAY_TEXT_MAX_BYTES`], not empty).
    pub text: String,
    /// Whether to wait, once the words were spoken, for the callee's next turn.
    pub wait_for_reply: bool,
    /// How long to wait for that reply, from the end of the words.
    pub reply_timeout: Duration,
    /// Hang up once the words have played (a final line). A barge-in during them calls the hang-up off.
    pub hang_up_after: bool,
}

/// What became of a `say`: the JSON an agent gets back from the MCP tool and `POST /api/calls/{id}/say`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SayReport {
    /// The text the agent asked to be spoken.
    pub spoken: String,
    /// True when the callee started speaking before the words had played to the end (a barge-in).
    pub interrupted: bool,
    /// What the callee heard, as the voice's own transcript cut to the audio played (all of it when not
    /// interrupted).
    pub heard_text: String,
    /// The callee's next turn, transcribed, when the request waited for it and the callee spoke in time
    /// (several turns in a row joined with spaces). `null` otherwise.
    pub reply: Option<String>,
    /// True when the request waited for a reply and none came within its timeout.
    pub reply_timed_out: bool,
    /// True when the call ended before the `say` was done (hung up after the final line, by the callee, ...).
    pub call_ended: bool,
}

/// Why a live call did not take a `say`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SayRefusal {
    /// The call was not placed with `mode: "relay"`.
    NotRelay,
    /// Another `say` is still under way on the call.
    Busy,
    /// The call is ending (a final line, a hang-up, the server shutting down).
    Ending,
    /// The callee's answering machine verdict has not arrived yet.
    AwaitingVerdict,
}

impl SayRefusal {
    /// In words for the agent.
    pub fn as_str(self) -> &'static str {
        match self {
            SayRefusal::NotRelay => {
                "the call was not placed with mode \"relay\"; use instruct_call instead"
            }
            SayRefusal::Busy => "another say is still under way on this call; wait for its result",
            SayRefusal::Ending => "the call is ending",
            SayRefusal::AwaitingVerdict => {
                "the answering machine verdict has not arrived yet; try again in a few seconds"
            }
        }
    }
}

/// What a live call answers to a `say`: the report, or why it did not take the line.
pub type SayAnswer = Result<SayReport, SayRefusal>;

/// The one-shot answer to a `say`, carried to the live call inside
/// [`CallControl::Say`](crate::calls::live::CallControl::Say). Cheap to clone; the first answer sent wins and the
/// others are dropped. Two slots are equal when they are the same slot.
#[derive(Debug, Clone)]
pub struct SayReplySlot(Arc<Mutex<Option<oneshot::Sender<SayAnswer>>>>);

impl SayReplySlot {
    /// A slot and the receiver its answer arrives on.
    pub fn new() -> (Self, oneshot::Receiver<SayAnswer>) {
        let (tx, rx) = oneshot::channel();
        (SayReplySlot(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Answers the `say`; nothing happens when it was answered already or nobody waits any more.
    pub fn send(&self, answer: SayAnswer) {
        // One take under the lock: a panic elsewhere cannot leave the slot inconsistent.
        let sender = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(answer);
        }
    }
}

impl PartialEq for SayReplySlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SayReplySlot {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_mode_reads_its_own_names_and_nothing_else() {
        assert_eq!(CallMode::parse("relay"), Some(CallMode::Relay));
        assert_eq!(CallMode::parse(" Autonomous "), Some(CallMode::Autonomous));
        assert_eq!(CallMode::parse("agent"), None);
        for mode in [CallMode::Autonomous, CallMode::Relay] {
            assert_eq!(CallMode::parse(mode.as_str()), Some(mode));
            assert_eq!(
                serde_json::to_value(mode).expect("JSON"),
                serde_json::Value::from(mode.as_str())
            );
        }
    }

    #[test]
    fn a_say_reply_slot_delivers_the_first_answer_only() {
        let (slot, mut rx) = SayReplySlot::new();
        let copy = slot.clone();

        copy.send(Err(SayRefusal::Busy));
        slot.send(Ok(SayReport::default()));

        assert_eq!(rx.try_recv().ok(), Some(Err(SayRefusal::Busy)));
        assert_eq!(slot, copy);
        assert_ne!(slot, SayReplySlot::new().0);
    }
}
