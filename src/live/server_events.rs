//! GPT-Live server events the relay handles, parsed from one text frame: [`parse_live_event`].
//!
//! Shapes follow the GPT-Live event reference and `openai.types.live` (`SessionStartedEvent`,
//! `OutputAudioDeltaEvent`, `InputTranscriptDeltaEvent`, `OutputTranscriptDeltaEvent`, `ResponseEvent`,
//! `SessionUsageUpdatedEvent`, `SessionClosedEvent`, `ErrorEvent`). Any other `type` is [`LiveServerEvent::Unknown`]:
//! logged at debug level and ignored, never a failure.

use serde::Deserialize;

use crate::realtime::server_events::{ApiError, EventParseError};

/// One server event, borrowing the audio from the frame's text.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveServerEvent<'a> {
    /// `session.started`: the session is configured; audio and commands may follow.
    SessionStarted,
    /// `session.output_audio.delta`: assistant audio in the startup format (`audio/pcmu` at 8 kHz), forwarded
    /// verbatim. Primary WebSocket deltas carry no timestamps.
    OutputAudioDelta {
        /// Base64 raw μ-law.
        delta: &'a str,
    },
    /// `session.output_transcript.delta`: more of the transcript of the assistant's speech (there is no `.done`).
    OutputTranscriptDelta {
        /// The text added.
        delta: String,
    },
    /// `session.input_transcript.delta`: more of the transcript of the caller's speech (there is no `.done`).
    InputTranscriptDelta {
        /// The text added.
        delta: String,
    },
    /// A `response.event` whose nested Responses event finished a `function_call` item
    /// (`response.output_item.done`): the backend calls one of the session's function tools, which the client runs.
    FunctionCall {
        /// The call's id, echoed in the `function_call_output` that answers it.
        call_id: String,
        /// The tool's name, e.g. `end_call`.
        name: String,
        /// The arguments as JSON text (parse with care).
        arguments: String,
    },
    /// `session.usage.updated`: cumulative billable duration so far (do not sum across events).
    UsageUpdated {
        /// Billable seconds since the session started.
        seconds: f64,
    },
    /// `session.closed`: the session finished, with why and its final billable duration.
    SessionClosed {
        /// `close_requested`, `expired`, `content`, `remote_hangup` or `connection_lost`.
        reason: String,
        /// Final billable seconds.
        seconds: f64,
    },
    /// `error`: an invalid command or a session failure.
    Error {
        /// What went wrong (same shape as a Realtime error object).
        error: ApiError,
    },
    /// Any other `type` (including `response.event`s that are not a finished function call).
    Unknown {
        /// The `type` as received.
        event_type: String,
    },
}

#[derive(Deserialize)]
struct TypeTag<'a> {
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct AudioDeltaWire<'a> {
    #[serde(borrow)]
    delta: &'a str,
}

#[derive(Deserialize)]
struct TextDeltaWire {
    delta: String,
}

#[derive(Deserialize)]
struct UsageWire {
    seconds: f64,
}

#[derive(Deserialize)]
struct UsageUpdatedWire {
    usage: UsageWire,
}

#[derive(Deserialize)]
struct ClosedWire {
    #[serde(default)]
    reason: String,
    usage: UsageWire,
}

#[derive(Deserialize)]
struct ErrorWire {
    error: ApiError,
}

#[derive(Deserialize)]
struct ResponseEventWire {
    event: NestedWire,
}

#[derive(Deserialize)]
struct NestedWire {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    item: Option<NestedItem>,
}

#[derive(Deserialize)]
struct NestedItem {
    #[serde(rename = "type", default)]
    item_type: String,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

fn parse_as<'a, T: Deserialize<'a>>(event_type: &str, text: &'a str) -> Result<T, EventParseError> {
    serde_json::from_str(text).map_err(|source| EventParseError::InvalidEvent {
        event_type: event_type.to_owned(),
        source,
    })
}

/// Parses one text frame from the Live server.
///
/// # Errors
/// [`EventParseError::Malformed`] when `text` is not a JSON object with a string `type`;
/// [`EventParseError::InvalidEvent`] when a handled event lacks a field or has one of the wrong type (or an audio
/// delta has escapes). Never panics.
pub fn parse_live_event(text: &str) -> Result<LiveServerEvent<'_>, EventParseError> {
    let tag: TypeTag<'_> = serde_json::from_str(text).map_err(EventParseError::Malformed)?;
    let event_type = tag.event_type.as_ref();
    Ok(match event_type {
        "session.output_audio.delta" => {
            let wire: AudioDeltaWire<'_> = parse_as(event_type, text)?;
            LiveServerEvent::OutputAudioDelta { delta: wire.delta }
        }
        "session.started" => LiveServerEvent::SessionStarted,
        "session.output_transcript.delta" => {
            let wire: TextDeltaWire = parse_as(event_type, text)?;
            LiveServerEvent::OutputTranscriptDelta { delta: wire.delta }
        }
        "session.input_transcript.delta" => {
            let wire: TextDeltaWire = parse_as(event_type, text)?;
            LiveServerEvent::InputTranscriptDelta { delta: wire.delta }
        }
        "session.usage.updated" => {
            let wire: UsageUpdatedWire = parse_as(event_type, text)?;
            LiveServerEvent::UsageUpdated {
                seconds: wire.usage.seconds,
            }
        }
        "session.closed" => {
            let wire: ClosedWire = parse_as(event_type, text)?;
            LiveServerEvent::SessionClosed {
                reason: wire.reason,
                seconds: wire.usage.seconds,
            }
        }
        "error" => {
            let wire: ErrorWire = parse_as(event_type, text)?;
            LiveServerEvent::Error { error: wire.error }
        }
        "response.event" => {
            let wire: ResponseEventWire = parse_as(event_type, text)?;
            match wire.event.item {
                Some(NestedItem {
                    item_type,
                    call_id: Some(call_id),
                    name: Some(name),
                    arguments,
                }) if wire.event.event_type == "response.output_item.done"
                    && item_type == "function_call" =>
                {
                    LiveServerEvent::FunctionCall {
                        call_id,
                        name,
                        arguments: arguments.unwrap_or_default(),
                    }
                }
                _ => LiveServerEvent::Unknown {
                    event_type: format!("response.event/{}", wire.event.event_type),
                },
            }
        }
        other => LiveServerEvent::Unknown {
            event_type: other.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audio_delta_borrows_its_payload() {
        let text = r#"{"type":"session.output_audio.delta","delta":"AAEC"}"#;
        assert_eq!(
            parse_live_event(text).expect("parses"),
            LiveServerEvent::OutputAudioDelta { delta: "AAEC" }
        );
    }

    #[test]
    fn a_finished_function_call_of_the_backend_is_a_function_call() {
        let text = r#"{"type":"response.event","event_id":"e1","delegation_id":"d1","event":{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"end_call","arguments":"{}"}}}"#;
        assert_eq!(
            parse_live_event(text).expect("parses"),
            LiveServerEvent::FunctionCall {
                call_id: "call_1".into(),
                name: "end_call".into(),
                arguments: "{}".into()
            }
        );
    }

    #[test]
    fn other_backend_events_and_unknown_types_are_ignored_not_failed() {
        let nested = r#"{"type":"response.event","event_id":"e","event":{"type":"response.output_text.delta","delta":"x"}}"#;
        assert!(matches!(
            parse_live_event(nested),
            Ok(LiveServerEvent::Unknown { .. })
        ));
        assert!(matches!(
            parse_live_event(r#"{"type":"session.future_thing","x":1}"#),
            Ok(LiveServerEvent::Unknown { .. })
        ));
        assert!(parse_live_event("not json").is_err());
        assert!(parse_live_event(r#"{"type":"session.usage.updated"}"#).is_err());
    }

    #[test]
    fn usage_and_close_carry_the_billable_seconds() {
        let usage = r#"{"type":"session.usage.updated","event_id":"e","usage":{"seconds":12}}"#;
        assert_eq!(
            parse_live_event(usage).expect("parses"),
            LiveServerEvent::UsageUpdated { seconds: 12.0 }
        );
        let closed = r#"{"type":"session.closed","event_id":"e","reason":"close_requested","session":{},"usage":{"seconds":30}}"#;
        assert_eq!(
            parse_live_event(closed).expect("parses"),
            LiveServerEvent::SessionClosed {
                reason: "close_requested".into(),
                seconds: 30.0
            }
        );
    }
}
