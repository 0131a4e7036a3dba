//! Outgoing webhooks, signed as [Standard Webhooks](https://www.standardwebhooks.com/) (spec 1.0:
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>): the plain parts,
//! below the call model and free of I/O.
//!
//! - [`signing`]: the `whsec_` secret and the `webhook-signature` header (`v1,` + base64 HMAC-SHA256 over
//!   `{webhook-id}.{webhook-timestamp}.{body}`).
//! - [`destination`]: where a webhook may go (https, or http to a loopback host for development).
//! - [`schedule`]: when a failed delivery is tried again (exponential backoff, then `failed`).
//! - [`WebhookEvent`] and [`envelope`]: the event types and the JSON body every delivery carries.
//!
//! The durable outbox (the `webhook_deliveries` table) lives in the call store, and the task that delivers it in
//! [`crate::calls::webhook_delivery`].

pub mod destination;
pub mod schedule;
pub mod signing;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The events a call sends to its webhook URL (the body's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// `call.status_changed`: the call moved to a new status (Twilio's status callbacks, or callbridge's own
    /// `failed` / `canceled`). `data`: `{call_id, call_sid, status, previous_status, at}`.
    #[serde(rename = "call.status_changed")]
    StatusChanged,
    /// `call.answered_by`: Twilio's answering machine detection verdict arrived. `data`: `{call_id, call_sid,
    /// answered_by}`.
    #[serde(rename = "call.answered_by")]
    AnsweredBy,
    /// `call.completed`: nothing more will happen to the call. `data`: the whole record, exactly as `get_call`
    /// returns it.
    #[serde(rename = "call.completed")]
    Completed,
}

impl WebhookEvent {
    /// The event type as sent: `call.status_changed`, `call.answered_by`, `call.completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::StatusChanged => "call.status_changed",
            WebhookEvent::AnsweredBy => "call.answered_by",
            WebhookEvent::Completed => "call.completed",
        }
    }

    /// The event named `name`, if it is one.
    pub fn parse(name: &str) -> Option<WebhookEvent> {
        [
            WebhookEvent::StatusChanged,
            WebhookEvent::AnsweredBy,
            WebhookEvent::Completed,
        ]
        .into_iter()
        .find(|event| event.as_str() == name)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a delivery, as the Standard Webhooks spec recommends: `{"type": "call.completed", "timestamp":
/// "2025-01-02T03:04:05.678Z", "data": {...}}`, minified. `timestamp` is when the event happened (RFC 3339, UTC);
/// the `webhook-timestamp` header is when the attempt was signed. The body is made once, when the event is queued,
/// and every attempt sends exactly these bytes.
pub fn envelope(event: WebhookEvent, at: OffsetDateTime, data: serde_json::Value) -> String {
    let timestamp = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "type": event.as_str(),
        "timestamp": timestamp,
        "data": data,
    })
    .to_string()
}

/// A fresh delivery id (the `webhook-id` header, the same on every attempt of one event): `msg_` and 26 random
/// characters of `0-9a-z` (130 bits), no `.` (the signed content is dot-delimited).
pub fn new_message_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let bytes: [u8; 26] = rand::random();
    let mut id = String::with_capacity(4 + 26);
    id.push_str("msg_");
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b % 32)])),
    );
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_envelope_carries_the_type_the_event_time_and_the_data() {
        let body = envelope(
            WebhookEvent::AnsweredBy,
            datetime!(2025-01-02 03:04:05.678 UTC),
            serde_json::json!({"call_id": "call_1", "answered_by": "human"}),
        );

        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["type"], "call.answered_by");
        assert_eq!(json["timestamp"], "2025-01-02T03:04:05.678Z");
        assert_eq!(json["data"]["answered_by"], "human");
        assert!(!body.contains('\n'), "minified: {body}");
    }

    #[test]
    fn event_names_parse_back_and_unknown_ones_do_not() {
        for event in [
            WebhookEvent::StatusChanged,
            WebhookEvent::AnsweredBy,
            WebhookEvent::Completed,
        ] {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(WebhookEvent::parse("call.created"), None);
    }

    #[test]
    fn message_ids_are_distinct_and_hold_no_dot() {
        let a = new_message_id();
        let b = new_message_id();

        assert_ne!(a, b);
        assert!(a.starts_with("msg_") && a.len() == 30, "{a}");
        assert!(!a.contains('.'));
    }
}
