//! The messages of live-call control across a fleet, and the routing decision, as plain functions: what
//! [`crate::calls::control_route`] publishes on Redis pub/sub and reads back, tested without Redis.
//!
//! A control for a call held by another instance is published, as JSON, on that instance's channel
//! `PREFIX control:{instance}`; a `say`'s answer comes back on a channel of its own, `PREFIX reply:{uuid}`, named in
//! the request. Every message carries a version field `v` ([`WIRE_VERSION`]); a message of another version, or one
//! that does not parse or carries an invalid value (a malformed CallSid, keypad digits outside `0-9*#w`, a number
//! that is not E.164), is refused with a [`WireError`] which the subscriber logs before it skips the message.
//! Redis pub/sub: <https://redis.io/docs/latest/develop/interact/pubsub/>.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calls::live::CallControl;
use crate::calls::say::{SayAnswer, SayRefusal, SayReport, SayRequest};
use crate::twilio::amd::AnsweredBy;
use crate::twilio::dial::{DialStatus, TransferEvent, TransferTarget};
use crate::twilio::dtmf::DtmfDigits;

/// The version of the control and reply messages this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// The longest control message read, in bytes (an `instruct_call` text is far shorter); longer ones are refused.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The channel an instance reads its controls on: `PREFIX control:{instance}`.
pub fn control_channel(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}control:{instance_id}")
}

/// The channel a `say`'s answer comes back on: `PREFIX reply:{id}` (`id`: fresh random hex per request).
pub fn reply_channel(prefix: &str, id: &str) -> String {
    format!("{prefix}reply:{id}")
}

/// Where a control for a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The call runs here: hand it to the local bridge.
    Local,
    /// Another instance holds the call: publish on its channel.
    Remote(String),
    /// No instance holds the call (ended, never streamed, or registered as ours but not running here any more).
    Nowhere,
}

/// Decides where a control for a call goes: here when the call runs here (`local`), else to the instance the
/// registry names as its holder (`holder`), unless that is this instance itself (`own_instance`: a stale entry)
/// or there is none.
pub fn decide(local: bool, holder: Option<&str>, own_instance: &str) -> Route {
    match holder {
        _ if local => Route::Local,
        Some(instance) if instance != own_instance => Route::Remote(instance.to_owned()),
        _ => Route::Nowhere,
    }
}

/// A control message for the call `call_sid`, as published: `{"v":1,"call_sid":"CA…","control":{"kind":…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The CallSid of the call it is for.
    pub call_sid: String,
    /// What to do.
    pub control: WireControl,
}

/// A [`CallControl`] as JSON, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireControl {
    /// [`CallControl::HangUp`].
    HangUp,
    /// [`CallControl::Instruct`].
    Instruct {
        /// The system message.
        text: String,
    },
    /// [`CallControl::AnsweredBy`].
    AnsweredBy {
        /// Twilio's `AnsweredBy` value.
        answered_by: AnsweredBy,
    },
    /// [`CallControl::SendDigits`].
    SendDigits {
        /// `0-9*#w`.
        digits: String,
    },
    /// [`CallControl::Transfer`].
    Transfer {
        /// The target's name, when it came from the configured targets.
        name: Option<String>,
        /// Whom to dial, E.164.
        number: String,
        /// What the person hears first.
        summary: String,
    },
    /// [`CallControl::TransferEvent`] with [`TransferEvent::Answered`].
    TransferAnswered,
    /// [`CallControl::TransferEvent`] with [`TransferEvent::Ended`].
    TransferEnded {
        /// Twilio's `DialCallStatus` (`no-answer`, ...).
        dial_call_status: String,
    },
    /// [`CallControl::Say`]; the answer is published on `reply_channel` as a [`ReplyMessage`].
    Say {
        /// The words.
        text: String,
        /// Wait for the callee's next turn.
        wait_for_reply: bool,
        /// How long to wait for it, ms.
        reply_timeout_ms: u64,
        /// Hang up once the words have played.
        hang_up_after: bool,
        /// `PREFIX reply:{id}`.
        reply_channel: String,
    },
}

/// A control as the receiving instance hands it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Everything but `say`: for the call's control channel as it is.
    Control(CallControl),
    /// A `say`, whose answer goes back on `reply_channel`.
    Say {
        /// The line.
        request: SayRequest,
        /// Where to publish the [`ReplyMessage`].
        reply_channel: String,
    },
}

/// Why a message was refused (logged, then skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("control message of {0} bytes refused (at most {MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// Another version than [`WIRE_VERSION`].
    #[error("control message of version {0} refused; this instance reads version {WIRE_VERSION}")]
    Version(u32),
    /// A field's value is invalid.
    #[error("invalid control message: {0}")]
    Invalid(String),
    /// A control that cannot be sent to another instance (a `say` without its reply channel).
    #[error("this control cannot be routed to another instance: {0}")]
    NotRoutable(&'static str),
}

/// The JSON of `control` for the call `call_sid`. A `say` needs `reply_channel` (the answer's way back); its reply
/// slot stays with the sender.
///
/// # Errors
/// [`WireError::NotRoutable`] for a `say` without a reply channel.
pub fn encode(
    call_sid: &str,
    control: &CallControl,
    reply_channel: Option<&str>,
) -> Result<String, WireError> {
    let control = match control {
        CallControl::HangUp => WireControl::HangUp,
        CallControl::Instruct(text) => WireControl::Instruct { text: text.clone() },
        CallControl::AnsweredBy(answered_by) => WireControl::AnsweredBy {
            answered_by: *answered_by,
        },
        CallControl::SendDigits(digits) => WireControl::SendDigits {
            digits: digits.as_str().to_owned(),
        },
        CallControl::Transfer { target, summary } => WireControl::Transfer {
            name: target.name.clone(),
            number: target.number.as_str().to_owned(),
            summary: summary.clone(),
        },
        CallControl::TransferEvent(TransferEvent::Answered) => WireControl::TransferAnswered,
        CallControl::TransferEvent(TransferEvent::Ended(status)) => WireControl::TransferEnded {
            dial_call_status: status.as_str().to_owned(),
        },
        CallControl::Say { request, .. } => WireControl::Say {
            text: request.text.clone(),
            wait_for_reply: request.wait_for_reply,
            reply_timeout_ms: u64::try_from(request.reply_timeout.as_millis()).unwrap_or(u64::MAX),
            hang_up_after: request.hang_up_after,
            reply_channel: reply_channel
                .ok_or(WireError::NotRoutable("say needs a reply channel"))?
                .to_owned(),
        },
    };
    let message = ControlMessage {
        v: WIRE_VERSION,
        call_sid: call_sid.to_owned(),
        control,
    };
    serde_json::to_string(&message).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads a control message published under `prefix`: the CallSid it is for and the control.
///
/// # Errors
/// [`WireError`]: too large, not JSON of the shape, another version, a malformed CallSid, invalid digits or number,
/// an unknown `DialCallStatus`, or a reply channel outside `PREFIX reply:`.
pub fn decode(prefix: &str, payload: &[u8]) -> Result<(String, Received), WireError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(payload.len()));
    }
    let version: Versioned =
        serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version.v != WIRE_VERSION {
        return Err(WireError::Version(version.v));
    }
    let message: ControlMessage =
        serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !is_call_sid(&message.call_sid) {
        return Err(WireError::Invalid("call_sid is not a CallSid".into()));
    }
    let invalid = |what: String| WireError::Invalid(what);
    let control = match message.control {
        WireControl::HangUp => CallControl::HangUp,
        WireControl::Instruct { text } => CallControl::Instruct(text),
        WireControl::AnsweredBy { answered_by } => CallControl::AnsweredBy(answered_by),
        WireControl::SendDigits { digits } => CallControl::SendDigits(
            DtmfDigits::parse(&digits).map_err(|e| invalid(format!("digits: {e}")))?,
        ),
        WireControl::Transfer {
            name,
            number,
            summary,
        } => CallControl::Transfer {
            target: TransferTarget {
                name,
                number: crate::phone::E164::parse(&number)
                    .map_err(|e| invalid(format!("number {number:?}: {e}")))?,
            },
            summary,
        },
        WireControl::TransferAnswered => CallControl::TransferEvent(TransferEvent::Answered),
        WireControl::TransferEnded { dial_call_status } => {
            CallControl::TransferEvent(TransferEvent::Ended(
                DialStatus::parse(&dial_call_status)
                    .ok_or_else(|| invalid(format!("DialCallStatus {dial_call_status:?}")))?,
            ))
        }
        WireControl::Say {
            text,
            wait_for_reply,
            reply_timeout_ms,
            hang_up_after,
            reply_channel,
        } => {
            if !reply_channel.starts_with(&format!("{prefix}reply:")) {
                return Err(invalid(format!("reply channel {reply_channel:?}")));
            }
            let request = SayRequest {
                text,
                wait_for_reply,
                reply_timeout: Duration::from_millis(reply_timeout_ms),
                hang_up_after,
            };
            return Ok((
                message.call_sid,
                Received::Say {
                    request,
                    reply_channel,
                },
            ));
        }
    };
    Ok((message.call_sid, Received::Control(control)))
}

/// Just the version, read first so that a message of another version is told apart from a malformed one.
#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

/// True for `CA` followed by 32 hex characters.
fn is_call_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("CA") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A `say`'s answer, as published on its reply channel: `{"v":1,"answer":{"report":{…}}}` or
/// `{"v":1,"answer":{"refused":"busy"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The report or the refusal.
    pub answer: WireAnswer,
}

/// A [`SayAnswer`] as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireAnswer {
    /// What became of the line.
    Report(SayReport),
    /// Why the call did not take it: `not_relay`, `busy`, `ending`, `awaiting_verdict`.
    Refused(String),
}

/// The JSON of a `say`'s answer.
pub fn encode_reply(answer: &SayAnswer) -> String {
    let answer = match answer {
        Ok(report) => WireAnswer::Report(report.clone()),
        Err(refusal) => WireAnswer::Refused(refusal_name(*refusal).to_owned()),
    };
    serde_json::to_string(&ReplyMessage {
        v: WIRE_VERSION,
        answer,
    })
    .unwrap_or_default()
}

/// Reads a `say`'s answer.
///
/// # Errors
/// [`WireError`]: too large, malformed, another version, or an unknown refusal.
pub fn decode_reply(payload: &[u8]) -> Result<SayAnswer, WireError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(payload.len()));
    }
    let version: Versioned =
        serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version.v != WIRE_VERSION {
        return Err(WireError::Version(version.v));
    }
    let message: ReplyMessage =
        serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
    match message.answer {
        WireAnswer::Report(report) => Ok(Ok(report)),
        WireAnswer::Refused(name) => refusal_from_name(&name)
            .map(Err)
            .ok_or_else(|| WireError::Invalid(format!("say refusal {name:?}"))),
    }
}

/// The wire name of a refusal.
fn refusal_name(refusal: SayRefusal) -> &'static str {
    match refusal {
        SayRefusal::NotRelay => "not_relay",
        SayRefusal::Busy => "busy",
        SayRefusal::Ending => "ending",
        SayRefusal::AwaitingVerdict => "awaiting_verdict",
    }
}

/// The refusal of a wire name.
fn refusal_from_name(name: &str) -> Option<SayRefusal> {
    [
        SayRefusal::NotRelay,
        SayRefusal::Busy,
        SayRefusal::Ending,
        SayRefusal::AwaitingVerdict,
    ]
    .into_iter()
    .find(|r| refusal_name(*r) == name)
}

#[cfg(test)]
#[path = "control_wire_tests.rs"]
mod tests;
