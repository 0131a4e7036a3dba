//! A call's recordings as the call record shows them (`recordings` beside the transcript in `get_call`,
//! `GET /api/calls/{id}` and `callbridge calls show`): what Twilio reported in its recording status callback, and
//! whether the recording was deleted at Twilio when its retention ran out.
//!
//! Follows <https://www.twilio.com/docs/voice/api/recording>.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One recording of a call: `{ "sid": "RE…", "status": "completed", "url": "https://api.twilio.com/…",
/// "duration_s": 42, "channels": 2, "reported_at": "…", "delete_due_at": "…", "deleted_at": null }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// Twilio's RecordingSid (`RE…`).
    pub sid: String,
    /// `completed`, `absent`, `failed`, `in-progress` as Twilio reported it, or `deleted` once callbridge deleted
    /// it at Twilio.
    pub status: String,
    /// Where Twilio serves the file (add `.mp3` or `.wav`; fetching it takes the account's credentials when HTTP
    /// authentication of media is on), once it completed.
    #[serde(default)]
    pub url: Option<String>,
    /// Its length, seconds.
    #[serde(default)]
    pub duration_s: Option<u64>,
    /// 2 for a dual-channel recording (caller and assistant apart), 1 for mono.
    #[serde(default)]
    pub channels: Option<u8>,
    /// When Twilio's last callback about it arrived, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub reported_at: OffsetDateTime,
    /// When it is to be deleted at Twilio (the retention setting), RFC 3339; `null` keeps it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delete_due_at: Option<OffsetDateTime>,
    /// When callbridge deleted it at Twilio, RFC 3339; the URL no longer serves it from then on.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    /// Why the last attempt to delete it failed (it is tried again later), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_error: Option<String>,
}
