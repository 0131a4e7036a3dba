//! The call model shared by the call service, the REST API (`/api/calls`), the MCP tools and the CLI: a call's
//! status and its timeline, the call as the API returns it ([`CallView`]), its one-line summary ([`CallSummary`]),
//! and what it takes to create one ([`NewCall`]). The serde shapes here *are* the API's JSON.
//!
//! Statuses follow Twilio's call resource and status callbacks:
//! <https://www.twilio.com/docs/voice/api/call-resource#call-status-values> and
//! <https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent>.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::calls::{Direction, DroppedInput, StreamHandover, TransferAttempt, Turn};
use crate::cost::CallCost;
use crate::realtime::usage::Usage;
use crate::twilio::amd::{AnsweredBy, MachinePolicy};

/// A call's status as Twilio reports it, in the order a call moves through them.
///
/// Serialized, displayed and parsed as Twilio spells them: `queued`, `initiated`, `ringing`, `in-progress`,
/// `completed`, `busy`, `no-answer`, `failed`, `canceled`
/// (<https://www.twilio.com/docs/voice/api/call-resource#call-status-values>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Stored and waiting to be dialed (callbridge's own first status, and Twilio's before it dials).
    Queued,
    /// Twilio started dialing.
    Initiated,
    /// The callee's phone is ringing.
    Ringing,
    /// The callee answered; the call is live.
    InProgress,
    /// The call was answered and has ended normally.
    Completed,
    /// The callee's line was busy.
    Busy,
    /// Nobody answered before the ring timeout.
    NoAnswer,
    /// Twilio could not place the call (for example an invalid number).
    Failed,
    /// The call was canceled (hung up) before it was answered.
    Canceled,
    /// callbridge's own: an outbound call placed with `not_before` or `call_window` (or `retry`) waits for its
    /// first attempt, due at `next_attempt_at`.
    Scheduled,
    /// callbridge's own: an attempt ended with a result its `retry` counts (`busy`, `no-answer`, `failed`); the
    /// next attempt is due at `next_attempt_at`.
    RetryPending,
}

impl CallStatus {
    /// Every status, in rank order (the terminal ones last, in Twilio's documentation order; callbridge's own
    /// waiting statuses first).
    pub const ALL: [CallStatus; 11] = [
        CallStatus::Scheduled,
        CallStatus::RetryPending,
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// Whether the call is over: `completed`, `busy`, `no-answer`, `failed` or `canceled`. A terminal status is final.
    pub fn is_terminal(self) -> bool {
        self.rank() == 4
    }

    /// Where the status sits in a call's life: `queued` 0 < `initiated` 1 < `ringing` 2 < `in-progress` 3 < every
    /// terminal status 4. Status callbacks can arrive out of order; a call only ever moves to a higher rank. The
    /// waiting statuses `scheduled` and `retry-pending` rank 0; a call leaves them only when its next attempt
    /// starts (back to `queued`) or when it is canceled or refused (see [`CallStatus::is_waiting`]).
    pub fn rank(self) -> u8 {
        match self {
            CallStatus::Scheduled | CallStatus::RetryPending | CallStatus::Queued => 0,
            CallStatus::Initiated => 1,
            CallStatus::Ringing => 2,
            CallStatus::InProgress => 3,
            CallStatus::Completed
            | CallStatus::Busy
            | CallStatus::NoAnswer
            | CallStatus::Failed
            | CallStatus::Canceled => 4,
        }
    }

    /// Whether the call waits for its next attempt (`scheduled`, `retry-pending`): status callbacks do not move it.
    pub fn is_waiting(self) -> bool {
        matches!(self, CallStatus::Scheduled | CallStatus::RetryPending)
    }

    /// The status as Twilio spells it (`in-progress`, `no-answer`, ...; callbridge's own `scheduled` and
    /// `retry-pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Scheduled => "scheduled",
            CallStatus::RetryPending => "retry-pending",
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of Twilio's call statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown call status {0:?}; expected one of scheduled, retry-pending, queued, initiated, ringing, in-progress, \
     completed, busy, no-answer, failed, canceled"
)]
pub struct UnknownCallStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownCallStatus;

    /// Parses Twilio's spelling (`CallStatus` form field of a status callback), exactly.
    ///
    /// # Errors
    ///
    /// [`UnknownCallStatus`] naming the string and listing the valid ones.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownCallStatus(s.to_owned()))
    }
}

/// One accepted status change: `{ "status": "ringing", "at": "2025-01-01T12:00:00Z" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status the call moved to.
    pub status: CallStatus,
    /// When it moved (when callbridge learned of it), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why placing or running the call failed at Twilio: `{ "code": 21211, "message": "..." }`.
///
/// `code` is Twilio's error code when Twilio gave one (<https://www.twilio.com/docs/api/errors>), e.g. 21211 for
/// an invalid `To` number or 21219 for an unverified number on a trial account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// Twilio's error code, when there is one.
    pub code: Option<u32>,
    /// What went wrong, in Twilio's words or ours. Never holds a credential.
    pub message: String,
}

/// A call as the REST API, the MCP tools and `callbridge calls show --json` return it.
///
/// Timestamps are RFC 3339 strings (`null` when not reached yet); `status_timeline` lists every accepted status
/// change, oldest first, starting with `queued`; `transcript` lists the turns in the order they completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallView {
    /// callbridge's id for the call: `call_` followed by 26 random URL-safe characters.
    pub id: String,
    /// `inbound` or `outbound-api`, as Twilio names it.
    pub direction: Direction,
    /// The calling number (E.164, or `anonymous` for an inbound call that hid it).
    pub from: String,
    /// The called number (E.164).
    pub to: String,
    /// Twilio's CallSid (`CA...`), once Twilio created the call.
    pub call_sid: Option<String>,
    /// Twilio's StreamSid (`MZ...`) of the call's media stream, once the call ended (absent from records written
    /// before it was stored).
    #[serde(default)]
    pub stream_sid: Option<String>,
    /// The current status; it only ever moves forward (see [`CallStatus::rank`]).
    pub status: CallStatus,
    /// Instructions for this one call, given to the voice model on top of the system message.
    pub instructions: Option<String>,
    /// What the model says first, when it speaks first.
    pub greeting: Option<String>,
    /// The Realtime voice for this call, when not the default.
    pub voice: Option<String>,
    /// The language the model should speak (e.g. `en`, `fr-FR`), when given.
    pub language: Option<String>,
    /// The longest the call may last, in seconds, when given.
    pub max_duration_s: Option<u64>,
    /// The caller's own data, stored and returned untouched.
    pub metadata: Option<Value>,
    /// What the call achieved, in the model's words (`end_call`'s `outcome`); for a call with an `outcome_schema`,
    /// the structured outcome as compact JSON text.
    pub outcome: Option<String>,
    /// The JSON Schema the call's outcome must match, as given to `place_call`; `null` for a free-text outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_schema: Option<Value>,
    /// The outcome as JSON, valid against `outcome_schema`, once the model ended the call with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_outcome: Option<Value>,
    /// The labels of the remote MCP servers attached to the call's voice session, when the call named them
    /// (`null`: the server's defaults). Never their URLs' secrets or headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<String>>,
    /// Why the call ended (`goodbye`, `caller_hung_up`, `max_duration`, `hung_up_by_api`, `shutdown`,
    /// `error:<what>`), once the media stream ended.
    pub end_reason: Option<String>,
    /// Why Twilio could not place or run the call, when it could not.
    pub error: Option<CallError>,
    /// When callbridge stored the call, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the callee answered (status `in-progress`), RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    /// When the call ended, RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// How long the media stream lasted, in milliseconds, once it ended.
    pub duration_ms: Option<u64>,
    /// Every accepted status change, oldest first.
    pub status_timeline: Vec<StatusChange>,
    /// Answering machine detection: the policy asked for, Twilio's verdict, and the voicemail left (flattened:
    /// `answering_machine`, `voicemail_message`, `answered_by`, `voicemail_left`, `voicemail_transcript`).
    #[serde(default, flatten)]
    pub answering: Answering,
    /// The transcript so far, turns in the order they completed.
    pub transcript: Vec<Turn>,
    /// OpenAI token usage summed over the call's responses.
    #[serde(default)]
    pub usage: Usage,
    /// Media-stream frames from Twilio that were skipped (malformed, oversized, binary, a DTMF digit outside
    /// `0-9*#`), once the call ended.
    #[serde(default)]
    pub skipped_frames: u64,
    /// What the call's peers sent that was dropped or ignored rather than acted on, by kind, once the call ended.
    #[serde(default)]
    pub dropped: DroppedInput,
    /// Each move of the call to a new media stream on the same Realtime session (keypad tones, a transfer that came
    /// back), once the call ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<StreamHandover>,
    /// Each transfer to a person the call attempted, once the call ended; a call that ended `transferred` went to
    /// the last one's target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<TransferAttempt>,
    /// Whether Twilio was asked to record the call (both channels).
    #[serde(default)]
    pub record: bool,
    /// The call's recordings at Twilio, as its recording status callbacks reported them (URL, duration), and their
    /// deletion when the retention ran out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recordings: Vec<crate::calls::recording::Recording>,
    /// Where the call's signed webhooks go (its own `webhook_url`, else the server's `CALLBRIDGE_WEBHOOK_URL`);
    /// absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// A scheduled or retried call's plan, its next attempt's due time and its attempts (flattened: `retry`,
    /// `not_before`, `call_window`, `next_attempt_at`, `attempts`; absent for a call placed at once).
    #[serde(default, flatten)]
    pub schedule: Schedule,
    /// Who decides what the voice says: `autonomous` (the voice model, the default) or `relay` (the agent, through
    /// `say`).
    #[serde(default)]
    pub mode: crate::calls::say::CallMode,
    /// The call's estimated cost (OpenAI tokens, transcription, Twilio minutes), once it ended; see
    /// [`crate::cost`].
    #[serde(default)]
    pub cost: Option<CallCost>,
    /// The call's own cost cap, USD, when `place_call` gave one.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Each move of the call to a new OpenAI Realtime session (the session limit, or a session OpenAI closed), once
    /// the call ended: `{at_s, gap_ms, reason, attempts}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollovers: Vec<crate::calls::SessionRollover>,
    /// The OpenAI voice API the call used or will use (`realtime`, `live`); `null` for a call placed without one
    /// before it connected (the server's default then applies) and for calls stored before engines existed.
    #[serde(default)]
    pub engine: Option<crate::config::Engine>,
}

/// A scheduled or retried outbound call: what the request asked for and what happened so far. Every field is
/// absent from the JSON for a call placed at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The call's retry plan (`max_attempts`, `backoff_s`, `retry_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::calls::schedule::RetryPlan>,
    /// The earliest the first attempt may start, RFC 3339.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// The local hours the call may start in (`09:00-18:00 Europe/Berlin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_window: Option<String>,
    /// When the next attempt is due, RFC 3339, while the call is `scheduled` or `retry-pending`.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Every attempt so far, first first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// One attempt of a scheduled or retried call: Twilio's call for it and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Twilio's CallSid of this attempt, once Twilio created it.
    pub call_sid: Option<String>,
    /// The attempt's latest status (Twilio's).
    pub status: CallStatus,
    /// When it was started, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended, RFC 3339.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// How it ended: Twilio's terminal status (`busy`, `no-answer`, `completed`, ...), followed by `, retried` when
    /// another attempt was scheduled, or `failed: <why>` when Twilio refused to place it.
    #[serde(default)]
    pub result: Option<String>,
}

impl CallView {
    /// The call's one-line summary, as [`crate::calls::store::CallStore::list`] returns it.
    pub fn summary(&self) -> CallSummary {
        CallSummary {
            id: self.id.clone(),
            direction: self.direction,
            from: self.from.clone(),
            to: self.to.clone(),
            status: self.status,
            created_at: self.created_at,
            outcome: self.outcome.clone(),
            end_reason: self.end_reason.clone(),
            duration_ms: self.duration_ms,
            cost_usd: self.cost.as_ref().map(|c| c.total_usd),
        }
    }
}

/// One call in a list (`GET /api/calls`, `list_calls`, `callbridge calls list`): the fields of [`CallView`] that
/// fit on a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSummary {
    /// callbridge's id for the call (`call_...`).
    pub id: String,
    /// `inbound` or `outbound-api`.
    pub direction: Direction,
    /// The calling number.
    pub from: String,
    /// The called number.
    pub to: String,
    /// The current status.
    pub status: CallStatus,
    /// When callbridge stored the call, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// What the call achieved, when the model said.
    pub outcome: Option<String>,
    /// Why the call ended, once it did.
    pub end_reason: Option<String>,
    /// How long the media stream lasted, in milliseconds, once it ended.
    pub duration_ms: Option<u64>,
    /// The call's estimated cost in US dollars, once it ended.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// What it takes to store a new call ([`crate::calls::store::CallStore::create`]); the store adds the id, the
/// `queued` status and the creation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCall {
    /// `inbound` or `outbound-api`.
    pub direction: Direction,
    /// The calling number (for outbound calls, the Twilio number).
    pub from: String,
    /// The called number (E.164; the caller validates it).
    pub to: String,
    /// Twilio's CallSid when already known (inbound calls); outbound calls get it later via
    /// [`crate::calls::store::CallStore::set_call_sid`].
    #[serde(default)]
    pub call_sid: Option<String>,
    /// Instructions for this one call.
    #[serde(default)]
    pub instructions: Option<String>,
    /// What the model says first, when it speaks first.
    #[serde(default)]
    pub greeting: Option<String>,
    /// The Realtime voice for this call.
    #[serde(default)]
    pub voice: Option<String>,
    /// The language the model should speak.
    #[serde(default)]
    pub language: Option<String>,
    /// The longest the call may last, in seconds.
    #[serde(default)]
    pub max_duration_s: Option<u64>,
    /// The caller's own data, stored and returned untouched.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The answering machine policy and voicemail message of an outbound call (the verdict fields stay empty).
    #[serde(default, flatten)]
    pub answering: Answering,
    /// Whether Twilio records the call.
    #[serde(default)]
    pub record: bool,
    /// Where the call's signed webhooks go (checked by the caller: https, or loopback http).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The JSON Schema the outcome must match (already checked by the call service).
    #[serde(default)]
    pub outcome_schema: Option<Value>,
    /// The labels of the remote MCP servers for the call's voice (already checked against the setting); `None`
    /// attaches the server's defaults.
    #[serde(default)]
    pub mcp_servers: Option<Vec<String>>,
    /// Who decides what the voice says (`relay`: the agent, through `say`).
    #[serde(default)]
    pub mode: crate::calls::say::CallMode,
    /// The call's own cost cap, USD (the server's `max_call_cost_usd` still applies when lower).
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// The OpenAI voice API the call uses; `None`: the server's `CALLBRIDGE_ENGINE` when the call connects.
    #[serde(default)]
    pub engine: Option<crate::config::Engine>,
}

/// Answering machine detection on one call: what was asked for and what happened. Every field is optional in JSON
/// (a call stored before detection existed has none of them).
///
/// A call answered by a machine is never reported as a conversation: its end reason is `voicemail_left` (the
/// message played to its end) or `machine_hung_up` (callbridge hung up on a machine or a fax), and
/// `voicemail_transcript` holds the message as spoken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answering {
    /// What the call does when a machine answers (`hang_up`, `leave_message`, `ignore`); `null` for inbound calls.
    #[serde(default)]
    pub answering_machine: Option<MachinePolicy>,
    /// What to say after the beep, for `leave_message`; `null` lets the model compose it from the task.
    #[serde(default)]
    pub voicemail_message: Option<String>,
    /// Twilio's AMD verdict (`human`, `machine_end_beep`, `fax`, `unknown`, ...), once its callback arrived.
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// True once a voicemail message was left and its last audio was played to the machine.
    #[serde(default)]
    pub voicemail_left: bool,
    /// The voicemail message as the model spoke it, when one was started.
    #[serde(default)]
    pub voicemail_transcript: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Speaker;
    use time::macros::datetime;

    #[test]
    fn statuses_serialize_display_and_parse_as_twilio_spells_them() {
        let spelled = [
            "scheduled",
            "retry-pending",
            "queued",
            "initiated",
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "no-answer",
            "failed",
            "canceled",
        ];
        for (status, name) in CallStatus::ALL.into_iter().zip(spelled) {
            assert_eq!(serde_json::to_value(status).expect("serializes"), name);
            assert_eq!(status.to_string(), name);
            assert_eq!(name.parse::<CallStatus>(), Ok(status));
            assert_eq!(
                serde_json::from_value::<CallStatus>(Value::from(name)).expect("deserializes"),
                status
            );
        }
    }

    #[test]
    fn an_unknown_status_is_refused_with_the_valid_ones_listed() {
        let error = "in_progress"
            .parse::<CallStatus>()
            .expect_err("not Twilio's spelling");
        let message = error.to_string();
        assert!(message.contains("\"in_progress\""), "{message}");
        assert!(message.contains("in-progress, completed"), "{message}");
    }

    #[test]
    fn ranks_rise_through_the_call_and_every_terminal_status_ranks_highest() {
        let ranks: Vec<u8> = CallStatus::ALL.into_iter().map(CallStatus::rank).collect();
        assert_eq!(ranks, [0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 4]);
        let terminal: Vec<CallStatus> = CallStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                CallStatus::Completed,
                CallStatus::Busy,
                CallStatus::NoAnswer,
                CallStatus::Failed,
                CallStatus::Canceled
            ]
        );
    }

    fn sample_view() -> CallView {
        CallView {
            engine: None,
            id: "call_0123456789abcdefghjkmnpqrs".into(),
            direction: Direction::OutboundApi,
            from: "+15550100".into(),
            to: "+15550199".into(),
            call_sid: Some("CA0123".into()),
            status: CallStatus::Completed,
            instructions: Some("Book a table for 4".into()),
            greeting: None,
            voice: Some("marin".into()),
            language: None,
            max_duration_s: Some(300),
            metadata: Some(serde_json::json!({"ticket": 7})),
            outcome: Some("Booked".into()),
            end_reason: Some("goodbye".into()),
            error: Some(CallError {
                code: Some(21211),
                message: "Invalid 'To' Phone Number".into(),
            }),
            created_at: datetime!(2025-01-02 03:04:05.678 UTC),
            answered_at: Some(datetime!(2025-01-02 03:04:15 UTC)),
            ended_at: None,
            duration_ms: Some(61_000),
            status_timeline: vec![StatusChange {
                status: CallStatus::Queued,
                at: datetime!(2025-01-02 03:04:05.678 UTC),
            }],
            answering: Answering::default(),
            transcript: vec![Turn {
                speaker: Speaker::Caller,
                text: "hello".into(),
                at: datetime!(2025-01-02 03:04:16 UTC),
                offset_ms: 1000,
                interrupted: false,
                item_id: None,
            }],
            stream_sid: None,
            skipped_frames: 0,
            dropped: Default::default(),
            handovers: Vec::new(),
            transfers: Vec::new(),
            record: false,
            recordings: Vec::new(),
            webhook_url: None,
            schedule: Schedule::default(),
            rollovers: Vec::new(),
            usage: Usage {
                total_tokens: 12,
                ..Usage::default()
            },
            outcome_schema: None,
            structured_outcome: None,
            mcp_servers: None,
            mode: Default::default(),
            cost: None,
            max_cost_usd: None,
        }
    }

    #[test]
    fn a_call_view_has_the_documented_json_shape_and_round_trips() {
        let view = sample_view();

        let json = serde_json::to_value(&view).expect("serializes");
        let back: CallView = serde_json::from_value(json.clone()).expect("deserializes");

        assert_eq!(json["direction"], "outbound-api");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["created_at"], "2025-01-02T03:04:05.678Z");
        assert_eq!(json["ended_at"], Value::Null);
        assert_eq!(
            json["error"],
            serde_json::json!({"code": 21211, "message": "Invalid 'To' Phone Number"})
        );
        assert_eq!(
            json["status_timeline"],
            serde_json::json!([{"status": "queued", "at": "2025-01-02T03:04:05.678Z"}])
        );
        assert_eq!(json["transcript"][0]["speaker"], "caller");
        assert_eq!(json["usage"]["total_tokens"], 12);
        assert_eq!(back, view);
    }

    #[test]
    fn a_summary_carries_the_views_list_fields() {
        let view = sample_view();

        let summary = view.summary();

        assert_eq!(summary.id, view.id);
        assert_eq!(summary.status, CallStatus::Completed);
        assert_eq!(summary.created_at, view.created_at);
        assert_eq!(summary.outcome.as_deref(), Some("Booked"));
        assert_eq!(summary.end_reason.as_deref(), Some("goodbye"));
        assert_eq!(summary.duration_ms, Some(61_000));
    }

    #[test]
    fn a_new_call_needs_only_direction_and_numbers() {
        let json = serde_json::json!({"direction": "outbound-api", "from": "+15550100", "to": "+15550199"});

        let call: NewCall = serde_json::from_value(json).expect("the optional fields default");

        assert_eq!(call.direction, Direction::OutboundApi);
        assert_eq!(call.instructions, None);
        assert_eq!(call.max_duration_s, None);
    }
}
