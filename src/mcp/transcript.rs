//! The transcript resource: one per call, at `callbridge://calls/{call_id}/transcript`, as `text/plain`.
//!
//! [`render_transcript`] writes a call as a short header (numbers, status, times, instructions, outcome, end reason,
//! error) followed by its turns, one per line, each stamped with its offset from the start of the call. The URI
//! functions build and parse the resource URI; anything that is not exactly that shape is no transcript.
//! MCP resources: <https://modelcontextprotocol.io/specification/2025-11-25/server/resources>.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::calls::model::CallView;
use crate::calls::{Direction, Speaker};

/// The URI scheme and path before the call id.
const URI_PREFIX: &str = "callbridge://calls/";
/// The path after the call id.
const URI_SUFFIX: &str = "/transcript";

/// The RFC 6570 URI template of the transcript resources, for `resources/templates/list`.
pub const TRANSCRIPT_URI_TEMPLATE: &str = "callbridge://calls/{call_id}/transcript";
/// The MIME type of a transcript.
pub const TRANSCRIPT_MIME_TYPE: &str = "text/plain";

/// The resource URI of call `call_id`'s transcript: `callbridge://calls/{call_id}/transcript`.
pub fn transcript_uri(call_id: &str) -> String {
    format!("{URI_PREFIX}{call_id}{URI_SUFFIX}")
}

/// The call id in a transcript URI, or `None` when `uri` is not `callbridge://calls/{call_id}/transcript` with a
/// non-empty id of letters, digits, `_` and `-` (the characters of a call id).
pub fn call_id_from_uri(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix(URI_PREFIX)?.strip_suffix(URI_SUFFIX)?;
    let plausible = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plausible.then_some(id)
}

/// RFC 3339, or the `Display` form in the (impossible for stored times) case it cannot be formatted.
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// The direction as Twilio spells it.
fn direction(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::OutboundApi => "outbound-api",
    }
}

/// `mm:ss.t` (or `h:mm:ss.t` past an hour) for an offset in milliseconds.
fn offset(offset_ms: u64) -> String {
    let tenths = offset_ms / 100;
    let (hours, minutes, seconds, tenth) = (
        tenths / 36_000,
        tenths / 600 % 60,
        tenths / 10 % 60,
        tenths % 10,
    );
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}.{tenth}")
    } else {
        format!("{minutes:02}:{seconds:02}.{tenth}")
    }
}

/// The call as plain text: a header, then `Transcript:` and one line per turn,
/// `[mm:ss.t] Caller: ...` / `[mm:ss.t] Assistant: ...` (an assistant turn the caller cut short ends with
/// `(interrupted)`), or `(no turns yet)`.
pub fn render_transcript(call: &CallView) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        text,
        "Call {}: {} from {} to {}",
        call.id,
        direction(call.direction),
        call.from,
        call.to
    );
    let _ = writeln!(text, "Status: {}", call.status);
    let _ = writeln!(text, "Created: {}", rfc3339(call.created_at));
    if let Some(at) = call.answered_at {
        let _ = writeln!(text, "Answered: {}", rfc3339(at));
    }
    if let Some(at) = call.ended_at {
        let _ = writeln!(text, "Ended: {}", rfc3339(at));
    }
    if let Some(duration_ms) = call.duration_ms {
        let _ = writeln!(text, "Duration: {}", offset(duration_ms));
    }
    if let Some(instructions) = &call.instructions {
        let _ = writeln!(text, "Instructions: {instructions}");
    }
    if let Some(outcome) = &call.outcome {
        let _ = writeln!(text, "Outcome: {outcome}");
    }
    if let Some(end_reason) = &call.end_reason {
        let _ = writeln!(text, "End reason: {end_reason}");
    }
    if let Some(error) = &call.error {
        match error.code {
            Some(code) => {
                let _ = writeln!(text, "Error: Twilio error {code}: {}", error.message);
            }
            None => {
                let _ = writeln!(text, "Error: {}", error.message);
            }
        }
    }
    text.push_str("\nTranscript:\n");
    if call.transcript.is_empty() {
        text.push_str("(no turns yet)\n");
    }
    for turn in &call.transcript {
        let speaker = match turn.speaker {
            Speaker::Caller => "Caller",
            Speaker::Assistant => "Assistant",
            Speaker::Action => "Action",
        };
        let interrupted = if turn.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "[{}] {speaker}: {}{interrupted}",
            offset(turn.offset_ms),
            turn.text
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;
    use crate::calls::Turn;
    use crate::calls::model::{CallError, CallStatus};
    use crate::realtime::usage::Usage;

    fn call(transcript: Vec<Turn>) -> CallView {
        CallView {
            engine: None,
            id: "call_0123456789abcdefghjkmnpqrs".into(),
            direction: Direction::OutboundApi,
            from: "+15550100".into(),
            to: "+14155550100".into(),
            call_sid: Some("CA0123".into()),
            status: CallStatus::Completed,
            instructions: Some("Book a table for 4".into()),
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: Some(300),
            metadata: None,
            outcome: Some("Booked 4 at 19:30 under Rivera".into()),
            end_reason: Some("goodbye".into()),
            error: None,
            created_at: datetime!(2025-01-02 03:04:05 UTC),
            answered_at: Some(datetime!(2025-01-02 03:04:15 UTC)),
            ended_at: Some(datetime!(2025-01-02 03:05:16 UTC)),
            duration_ms: Some(61_000),
            status_timeline: Vec::new(),
            transcript,
            stream_sid: None,
            skipped_frames: 0,
            dropped: Default::default(),
            handovers: Vec::new(),
            transfers: Vec::new(),
            record: false,
            recordings: Vec::new(),
            webhook_url: None,
            schedule: Default::default(),
            rollovers: Vec::new(),
            usage: Usage::default(),
            answering: Default::default(),
            outcome_schema: None,
            structured_outcome: None,
            mcp_servers: None,
            mode: Default::default(),
            cost: None,
            max_cost_usd: None,
        }
    }

    fn turn(speaker: Speaker, text: &str, offset_ms: u64, interrupted: bool) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            at: datetime!(2025-01-02 03:04:16 UTC),
            offset_ms,
            interrupted,
            item_id: None,
        }
    }

    #[test]
    fn a_transcript_uri_round_trips_to_its_call_id() {
        let uri = transcript_uri("call_0123456789abcdefghjkmnpqrs");

        assert_eq!(
            uri,
            "callbridge://calls/call_0123456789abcdefghjkmnpqrs/transcript"
        );
        assert_eq!(
            call_id_from_uri(&uri),
            Some("call_0123456789abcdefghjkmnpqrs")
        );
    }

    #[test]
    fn uris_of_another_shape_name_no_call() {
        for uri in [
            "callbridge://calls//transcript",
            "callbridge://calls/call_1/transcript/extra",
            "callbridge://calls/call_1/audio",
            "callbridge://calls/../x/transcript",
            "callbridge://calls/a/b/transcript",
            "callbridge://calls/call_1/transcript?x=1",
            "https://calls/call_1/transcript",
            "",
        ] {
            assert_eq!(call_id_from_uri(uri), None, "{uri}");
        }
    }

    #[test]
    fn the_rendered_transcript_has_the_header_and_every_turn_in_order() {
        let view = call(vec![
            turn(
                Speaker::Assistant,
                "Hello, I'd like to book a table.",
                1_500,
                false,
            ),
            turn(Speaker::Caller, "Sure, for how many?", 4_200, false),
            turn(Speaker::Assistant, "For four people at", 65_000, true),
        ]);

        let text = render_transcript(&view);

        assert!(
            text.starts_with(
                "Call call_0123456789abcdefghjkmnpqrs: outbound-api from +15550100 to +14155550100\n"
            ),
            "{text}"
        );
        assert!(text.contains("Status: completed\n"), "{text}");
        assert!(
            text.contains("Outcome: Booked 4 at 19:30 under Rivera\n"),
            "{text}"
        );
        assert!(text.contains("End reason: goodbye\n"), "{text}");
        assert!(text.contains("Duration: 01:01.0\n"), "{text}");
        assert!(
            text.ends_with(
                "Transcript:\n[00:01.5] Assistant: Hello, I'd like to book a table.\n\
                 [00:04.2] Caller: Sure, for how many?\n\
                 [01:05.0] Assistant: For four people at (interrupted)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_call_without_turns_says_so_and_shows_twilios_error() {
        let mut view = call(Vec::new());
        view.status = CallStatus::Failed;
        view.error = Some(CallError {
            code: Some(21211),
            message: "Invalid 'To' Phone Number".into(),
        });

        let text = render_transcript(&view);

        assert!(
            text.contains("Error: Twilio error 21211: Invalid 'To' Phone Number\n"),
            "{text}"
        );
        assert!(text.ends_with("Transcript:\n(no turns yet)\n"), "{text}");
    }

    #[test]
    fn offsets_past_an_hour_show_the_hours() {
        assert_eq!(offset(3_723_400), "1:02:03.4");
        assert_eq!(offset(0), "00:00.0");
    }

    proptest! {
        #[test]
        fn any_call_id_of_id_characters_round_trips(id in "[A-Za-z0-9_-]{1,40}") {
            let uri = transcript_uri(&id);
            prop_assert_eq!(call_id_from_uri(&uri), Some(id.as_str()));
        }

        #[test]
        fn parsing_any_string_never_panics_and_only_yields_id_characters(uri in ".*") {
            if let Some(id) = call_id_from_uri(&uri) {
                prop_assert!(!id.is_empty());
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            }
        }
    }
}
