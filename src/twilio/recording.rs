//! Call recording at Twilio: the fields that ask Twilio to record a call in two channels, and the recording status
//! callback Twilio posts when a recording is ready (or turned out empty).
//!
//! An outbound call is recorded from the moment it is answered with `Record=true`, `RecordingChannels=dual`,
//! `RecordingStatusCallback` and `RecordingStatusCallbackEvent` on the Calls create form
//! (<https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>); an inbound call with TwiML
//! `<Start><Recording channels="dual" recordingStatusCallback=… recordingStatusCallbackEvent="completed absent"/>`
//! before its `<Connect><Stream>` (<https://www.twilio.com/docs/voice/twiml/recording>, built by
//! [`crate::twilio::twiml::connect_stream_after`]). Either way Twilio posts the callback, form-encoded and signed like
//! every webhook, with `AccountSid`, `CallSid`, `RecordingSid`, `RecordingUrl`, `RecordingStatus`,
//! `RecordingDuration` (seconds), `RecordingChannels` and `RecordingSource`
//! (<https://www.twilio.com/docs/voice/api/recording>). A recording is deleted with
//! `DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json`
//! (<https://www.twilio.com/docs/voice/api/recording>, answered 204;
//! [`crate::twilio::rest::TwilioRest::delete_recording`]).

use std::fmt;
use std::str::FromStr;

/// `RecordingChannels` / `channels`: each party on a channel of its own (the caller on one, the assistant on the
/// other).
pub const RECORDING_CHANNELS: &str = "dual";

/// The recording events callbridge asks to be told about: `completed` (the file is ready: URL and duration) and
/// `absent` (nothing was recorded). Twilio's default is `completed` alone.
pub const RECORDING_STATUS_EVENTS: [&str; 2] = ["completed", "absent"];

/// The extra fields of a Calls create form that record the call in two channels and report to `callback_url`:
/// `Record=true`, `RecordingChannels=dual`, `RecordingStatusCallback`, `RecordingStatusCallbackMethod=POST` and one
/// `RecordingStatusCallbackEvent` per [`RECORDING_STATUS_EVENTS`] (a repeated field, as Twilio's SDKs send a list).
pub fn create_form_fields(callback_url: &str) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("Record", "true".to_owned()),
        ("RecordingChannels", RECORDING_CHANNELS.to_owned()),
        ("RecordingStatusCallback", callback_url.to_owned()),
        ("RecordingStatusCallbackMethod", "POST".to_owned()),
    ];
    fields.extend(
        RECORDING_STATUS_EVENTS
            .iter()
            .map(|event| ("RecordingStatusCallbackEvent", (*event).to_owned())),
    );
    fields
}

/// A recording's status as Twilio reports it in `RecordingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    /// `in-progress`: recording (only reported when that event is asked for).
    InProgress,
    /// `completed`: the file is ready; `RecordingUrl` and `RecordingDuration` are set.
    Completed,
    /// `absent`: nothing was recorded (no audio); there is no file.
    Absent,
    /// `failed`: the recording could not be made.
    Failed,
}

impl RecordingStatus {
    /// Twilio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::InProgress => "in-progress",
            RecordingStatus::Completed => "completed",
            RecordingStatus::Absent => "absent",
            RecordingStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RecordingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a recording status callback could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingCallbackError {
    /// A required field is missing: `RecordingSid` or `RecordingStatus`.
    #[error("{0} missing")]
    Missing(&'static str),
    /// `RecordingSid` is not `RE` followed by 32 hex characters.
    #[error("RecordingSid malformed")]
    MalformedSid,
    /// `RecordingStatus` is not one of Twilio's values.
    #[error("unknown RecordingStatus {0:?}; expected in-progress, completed, absent or failed")]
    UnknownStatus(String),
    /// `RecordingUrl` is not an https URL.
    #[error("RecordingUrl is not an https URL")]
    MalformedUrl,
}

impl FromStr for RecordingStatus {
    type Err = RecordingCallbackError;

    /// Parses Twilio's spelling exactly.
    ///
    /// # Errors
    /// [`RecordingCallbackError::UnknownStatus`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-progress" => Ok(RecordingStatus::InProgress),
            "completed" => Ok(RecordingStatus::Completed),
            "absent" => Ok(RecordingStatus::Absent),
            "failed" => Ok(RecordingStatus::Failed),
            other => Err(RecordingCallbackError::UnknownStatus(other.to_owned())),
        }
    }
}

/// What a recording status callback says about one recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingUpdate {
    /// `RecordingSid`: `RE` + 32 hex characters.
    pub sid: String,
    /// `RecordingStatus`.
    pub status: RecordingStatus,
    /// `RecordingUrl`: where Twilio serves the file (`https://api.twilio.com/2010-04-01/Accounts/AC…/Recordings/RE…`;
    /// add `.mp3` or `.wav`), when the recording completed.
    pub url: Option<String>,
    /// `RecordingDuration`, seconds, when given.
    pub duration_s: Option<u64>,
    /// `RecordingChannels`: 1 or 2, when given.
    pub channels: Option<u8>,
    /// `RecordingSource` (how the recording was started, e.g. `OutboundAPI`), when given.
    pub source: Option<String>,
    /// `ErrorCode`, when Twilio reports one (`0` is none).
    pub error_code: Option<u32>,
}

impl RecordingUpdate {
    /// Reads a recording status callback's form fields (`(name, value)` pairs). Numbers that do not parse are left
    /// out rather than refused; an empty `RecordingUrl` counts as none.
    ///
    /// # Errors
    /// [`RecordingCallbackError`] for a missing or malformed `RecordingSid`, a missing or unknown `RecordingStatus`,
    /// or a `RecordingUrl` that is not https.
    pub fn from_form(params: &[(String, String)]) -> Result<Self, RecordingCallbackError> {
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let sid = field("RecordingSid").ok_or(RecordingCallbackError::Missing("RecordingSid"))?;
        if !is_recording_sid(sid) {
            return Err(RecordingCallbackError::MalformedSid);
        }
        let status = field("RecordingStatus")
            .ok_or(RecordingCallbackError::Missing("RecordingStatus"))?
            .parse()?;
        let url = field("RecordingUrl")
            .map(|url| {
                url::Url::parse(url)
                    .ok()
                    .filter(|u| u.scheme() == "https" || u.scheme() == "http")
                    .map(|_| url.to_owned())
                    .ok_or(RecordingCallbackError::MalformedUrl)
            })
            .transpose()?;
        Ok(RecordingUpdate {
            sid: sid.to_owned(),
            status,
            url,
            duration_s: field("RecordingDuration").and_then(|d| d.parse().ok()),
            channels: field("RecordingChannels").and_then(|c| c.parse().ok()),
            source: field("RecordingSource").map(str::to_owned),
            error_code: field("ErrorCode")
                .and_then(|c| c.parse().ok())
                .filter(|c| *c != 0),
        })
    }
}

/// True for a Twilio RecordingSid: `RE` followed by 32 hex characters.
pub fn is_recording_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("RE") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "RE0123456789abcdef0123456789abcdef";

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_create_form_fields_ask_for_a_dual_channel_recording_reported_on_completed_and_absent() {
        let fields = create_form_fields("https://x.example/recording-status/call_1");

        assert_eq!(
            fields,
            [
                ("Record", "true".to_owned()),
                ("RecordingChannels", "dual".to_owned()),
                (
                    "RecordingStatusCallback",
                    "https://x.example/recording-status/call_1".to_owned()
                ),
                ("RecordingStatusCallbackMethod", "POST".to_owned()),
                ("RecordingStatusCallbackEvent", "completed".to_owned()),
                ("RecordingStatusCallbackEvent", "absent".to_owned()),
            ]
        );
    }

    #[test]
    fn a_completed_callback_gives_the_sid_url_duration_and_channels() {
        let update = RecordingUpdate::from_form(&form(&[
            ("RecordingSid", SID),
            ("RecordingStatus", "completed"),
            (
                "RecordingUrl",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            ),
            ("RecordingDuration", "42"),
            ("RecordingChannels", "2"),
            ("RecordingSource", "OutboundAPI"),
            ("ErrorCode", "0"),
        ]))
        .expect("valid");

        assert_eq!(update.sid, SID);
        assert_eq!(update.status, RecordingStatus::Completed);
        assert_eq!(
            update.url.as_deref(),
            Some("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1")
        );
        assert_eq!(update.duration_s, Some(42));
        assert_eq!(update.channels, Some(2));
        assert_eq!(update.source.as_deref(), Some("OutboundAPI"));
        assert_eq!(update.error_code, None);
    }

    #[test]
    fn a_callback_without_a_valid_sid_or_status_or_with_a_strange_url_is_refused() {
        let missing = RecordingUpdate::from_form(&form(&[("RecordingStatus", "completed")]));
        let malformed = RecordingUpdate::from_form(&form(&[
            ("RecordingSid", "RE123"),
            ("RecordingStatus", "completed"),
        ]));
        let unknown = RecordingUpdate::from_form(&form(&[
            ("RecordingSid", SID),
            ("RecordingStatus", "done"),
        ]));
        let url = RecordingUpdate::from_form(&form(&[
            ("RecordingSid", SID),
            ("RecordingStatus", "completed"),
            ("RecordingUrl", "javascript:alert(1)"),
        ]));

        assert_eq!(
            missing,
            Err(RecordingCallbackError::Missing("RecordingSid"))
        );
        assert_eq!(malformed, Err(RecordingCallbackError::MalformedSid));
        assert_eq!(
            unknown,
            Err(RecordingCallbackError::UnknownStatus("done".into()))
        );
        assert_eq!(url, Err(RecordingCallbackError::MalformedUrl));
    }

    #[test]
    fn statuses_parse_and_display_as_twilio_spells_them() {
        for name in ["in-progress", "completed", "absent", "failed"] {
            let status: RecordingStatus = name.parse().expect("known");
            assert_eq!(status.to_string(), name);
        }
    }
}
