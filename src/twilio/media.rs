//! Twilio Media Streams messages: the JSON text frames of a bidirectional stream opened by `<Connect><Stream>`.
//!
//! Owns parsing what Twilio sends ([`parse_twilio_event`] → [`TwilioEvent`]) and building what the server sends back
//! ([`media_message`], [`mark_message`], [`clear_message`], or [`TwilioCommand::to_json`]).
//! Follows <https://www.twilio.com/docs/voice/media-streams/websocket-messages>.
//!
//! Performance: a `media` frame arrives every 20 ms of every call. Parsing one does no heap allocation: the event tag
//! is read first with a tiny borrowed struct (serde's internally tagged enums would buffer the whole message), then
//! the message is deserialized into borrowed structs whose `streamSid`, `track` and base64 `payload` point into the
//! input text. This works because those strings never contain JSON escapes; a frame where one does is reported as a
//! parse error. The strings of `mark`, `dtmf` and `stop` (a mark echo arrives for every assistant audio delta) are
//! `Cow`s: borrowed from the input text too, and owned only when the JSON string holds escapes, so any legal mark name
//! parses. Outgoing messages are serialized once into a buffer sized up front (one allocation); [`mark_message`]
//! writes the mark name straight from its [`Display`](fmt::Display) into that buffer.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One message from Twilio to the server, discriminated by its `event` field.
///
/// Numbers that Twilio sends as JSON strings (`sequenceNumber`, `chunk`, `timestamp`) are parsed to `u64`.
/// See <https://www.twilio.com/docs/voice/media-streams/websocket-messages#websocket-messages-from-twilio>.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioEvent<'a> {
    /// `connected`: the first message on a new stream WebSocket, before `start`.
    Connected {
        /// Always `"Call"` today.
        protocol: String,
        /// Protocol version, e.g. `"1.0.0"`.
        version: String,
    },
    /// `start`: the stream's metadata; sent once, after `connected`.
    Start {
        /// Position of this message in the stream (`"1"` for `start`).
        sequence_number: u64,
        /// The stream's SID (`MZ...`), needed in every outgoing message.
        stream_sid: String,
        /// The call, the tracks and the audio format.
        start: StreamStart,
    },
    /// `media`: 20 ms of caller audio (160 bytes of 8 kHz μ-law), borrowed from the input text.
    Media {
        /// Position of this message in the stream.
        sequence_number: u64,
        /// The stream's SID (`MZ...`).
        stream_sid: &'a str,
        /// The audio chunk.
        media: MediaChunk<'a>,
    },
    /// `dtmf`: the caller pressed a key. Strings are borrowed from the input text unless they hold JSON escapes.
    Dtmf {
        /// Position of this message in the stream.
        sequence_number: u64,
        /// The stream's SID (`MZ...`).
        stream_sid: Cow<'a, str>,
        /// The key: `0`-`9`, `*` or `#` (anything else makes the message invalid).
        digit: DtmfDigit,
        /// The track the tone was detected on (Twilio sends `"inbound_track"`).
        track: Cow<'a, str>,
    },
    /// `mark`: Twilio echoes a mark the server sent, once the audio queued before it has played, or at once when a
    /// `clear` dropped that audio. Strings are borrowed from the input text unless they hold JSON escapes.
    Mark {
        /// Position of this message in the stream.
        sequence_number: u64,
        /// The stream's SID (`MZ...`).
        stream_sid: Cow<'a, str>,
        /// The name the server gave the mark.
        name: Cow<'a, str>,
    },
    /// `stop`: the stream ended (the caller hung up, or the call was redirected or completed). Strings are borrowed
    /// from the input text unless they hold JSON escapes.
    Stop {
        /// Position of this message in the stream.
        sequence_number: u64,
        /// The stream's SID (`MZ...`).
        stream_sid: Cow<'a, str>,
        /// The Twilio account (`AC...`).
        account_sid: Cow<'a, str>,
        /// The call (`CA...`).
        call_sid: Cow<'a, str>,
    },
    /// Any other `event` value: the relay logs it at debug level and ignores it.
    Unknown {
        /// The `event` value as received.
        event: String,
    },
}

/// One key of a telephone keypad as a `dtmf` message names it: `0`-`9`, `*` or `#`.
///
/// Twilio sends one key per `dtmf` message
/// (<https://www.twilio.com/docs/voice/media-streams/websocket-messages#dtmf-message>). A `digit` holding anything
/// else (another character, several, none) makes the message an [`MediaParseError::InvalidEvent`] whose message
/// never repeats a long value: what a peer puts there reaches neither a log line nor the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(u8);

impl DtmfDigit {
    /// The key `key`, when it is one of `0`-`9`, `*`, `#`.
    pub fn new(key: char) -> Option<Self> {
        (key.is_ascii_digit() || key == '*' || key == '#').then_some(DtmfDigit(key as u8))
    }

    /// The key as a character.
    pub fn as_char(self) -> char {
        char::from(self.0)
    }

    /// Reads `value` as one key: exactly one of `0`-`9`, `*`, `#`.
    fn parse(value: &str) -> Option<Self> {
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (Some(key), None) => DtmfDigit::new(key),
            _ => None,
        }
    }
}

impl fmt::Display for DtmfDigit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Write::write_char(formatter, self.as_char())
    }
}

impl<'de> Deserialize<'de> for DtmfDigit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;

        impl Visitor<'_> for Key {
            type Value = DtmfDigit;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("one DTMF key: 0-9, * or #")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<DtmfDigit, E> {
                DtmfDigit::parse(value).ok_or_else(|| {
                    // Short values are named; a long one only by its size (it must not flood a log line).
                    if value.len() <= 8 {
                        E::custom(format_args!(
                            "invalid DTMF digit {value:?}, expected one of 0-9, * or #"
                        ))
                    } else {
                        E::custom(format_args!(
                            "invalid DTMF digit of {} bytes, expected one of 0-9, * or #",
                            value.len()
                        ))
                    }
                })
            }
        }

        deserializer.deserialize_str(Key)
    }
}

/// The `start` object of a `start` message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStart {
    /// The Twilio account (`AC...`).
    pub account_sid: String,
    /// The stream's SID (`MZ...`); the same as the message's top-level `streamSid`.
    pub stream_sid: String,
    /// The call this stream belongs to (`CA...`); the relay checks it against the stream token.
    pub call_sid: String,
    /// The tracks Twilio streams: `["inbound"]` for `<Connect><Stream>`.
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The `<Parameter name value>` pairs of the TwiML `<Stream>`, by name.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio format of inbound `media` payloads.
    pub media_format: MediaFormat,
}

/// The `mediaFormat` object of a `start` message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `"audio/x-mulaw"`.
    pub encoding: String,
    /// Samples per second: 8000.
    pub sample_rate: u32,
    /// Audio channels: 1.
    pub channels: u16,
}

/// The `media` object of a `media` message, borrowed from the input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct MediaChunk<'a> {
    /// `"inbound"` (the caller's audio).
    pub track: &'a str,
    /// The chunk's number, counting from 1 (sent by Twilio as a string).
    #[serde(deserialize_with = "u64_from_string")]
    pub chunk: u64,
    /// Milliseconds since the stream started, on the inbound clock (Twilio's `timestamp`, sent as a string).
    /// This is not a measure of what the caller heard.
    #[serde(rename = "timestamp", deserialize_with = "u64_from_string")]
    pub timestamp_ms: u64,
    /// Base64 of raw 8 kHz mono μ-law, no header; forwarded to OpenAI verbatim, never decoded.
    pub payload: &'a str,
}

/// A Twilio Media Streams message that could not be parsed.
///
/// Both variants carry serde_json's message (what was wrong, with line and column).
#[derive(Debug, thiserror::Error)]
pub enum MediaParseError {
    /// The text is not a JSON object with a string `event` field.
    #[error("malformed Twilio media stream message: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The `event` is one callbridge handles, but the message does not have that event's shape (a missing field, a
    /// wrong type, a number that is not a decimal string, an escaped string where a borrowed one is needed, ...).
    #[error("invalid Twilio `{event}` message: {source}")]
    InvalidEvent {
        /// The message's `event` value.
        event: String,
        /// What serde_json found wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses one text frame from Twilio.
///
/// A `media` frame is parsed without heap allocation, and so is a `mark`, `dtmf` or `stop` frame whose strings hold no
/// JSON escapes; the result borrows from `text`. Any `event` value other than
/// the six documented ones yields [`TwilioEvent::Unknown`], whatever the rest of the message holds.
///
/// # Errors
///
/// [`MediaParseError::Malformed`] when `text` is not a JSON object with a string `event`;
/// [`MediaParseError::InvalidEvent`] when a known event lacks a field, has a field of the wrong type, has a
/// `sequenceNumber`/`chunk`/`timestamp` that is not a decimal `u64` in a string, a `dtmf` whose `digit` is not one
/// key of `0-9*#` ([`DtmfDigit`]), or (for `media`) escapes inside the `streamSid`, `track` or `payload` strings.
/// Never panics.
pub fn parse_twilio_event(text: &str) -> Result<TwilioEvent<'_>, MediaParseError> {
    let tag: EventTag<'_> = serde_json::from_str(text).map_err(MediaParseError::Malformed)?;
    match tag.event.as_ref() {
        "media" => {
            let message: MediaMessage<'_> = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Media {
                sequence_number: message.sequence_number,
                stream_sid: message.stream_sid,
                media: message.media,
            })
        }
        "mark" => {
            let message: MarkMessage<'_> = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Mark {
                sequence_number: message.sequence_number,
                stream_sid: message.stream_sid,
                name: message.mark.name,
            })
        }
        "connected" => {
            let message: ConnectedMessage = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Connected {
                protocol: message.protocol,
                version: message.version,
            })
        }
        "start" => {
            let message: StartMessage = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Start {
                sequence_number: message.sequence_number,
                stream_sid: message.stream_sid,
                start: message.start,
            })
        }
        "dtmf" => {
            let message: DtmfMessage<'_> = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Dtmf {
                sequence_number: message.sequence_number,
                stream_sid: message.stream_sid,
                digit: message.dtmf.digit,
                track: message.dtmf.track,
            })
        }
        "stop" => {
            let message: StopMessage<'_> = parse_as(&tag.event, text)?;
            Ok(TwilioEvent::Stop {
                sequence_number: message.sequence_number,
                stream_sid: message.stream_sid,
                account_sid: message.stop.account_sid,
                call_sid: message.stop.call_sid,
            })
        }
        _ => Ok(TwilioEvent::Unknown {
            event: tag.event.into_owned(),
        }),
    }
}

/// One message from the server to Twilio, serialized with its `event` tag.
///
/// Shapes (see <https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-websocket-messages-to-twilio>):
/// `{"event":"media","streamSid":..,"media":{"payload":..}}`, `{"event":"mark","streamSid":..,"mark":{"name":..}}`,
/// `{"event":"clear","streamSid":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioCommand<'a> {
    /// Queue audio for playback to the caller.
    Media {
        /// The stream's SID (`MZ...`).
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// The audio.
        media: OutgoingMedia<'a>,
    },
    /// Queue a mark behind the audio sent so far; Twilio echoes it when playback reaches it.
    Mark {
        /// The stream's SID (`MZ...`).
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// The mark.
        mark: OutgoingMark<'a>,
    },
    /// Drop all audio queued for playback; Twilio echoes every pending mark at once.
    Clear {
        /// The stream's SID (`MZ...`).
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

/// The `media` object of an outgoing `media` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutgoingMedia<'a> {
    /// Base64 of raw 8 kHz mono μ-law, no header (as OpenAI produces it for `audio/pcmu`).
    pub payload: &'a str,
}

/// The `mark` object of an outgoing `mark` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutgoingMark<'a> {
    /// The name Twilio echoes back in the `mark` event.
    pub name: &'a str,
}

impl TwilioCommand<'_> {
    /// Serializes the message to the JSON text to send on the stream WebSocket, in one buffer allocated up front.
    pub fn to_json(&self) -> String {
        let (stream_sid, body_bytes) = match self {
            TwilioCommand::Media { stream_sid, media } => (stream_sid, media.payload.len()),
            TwilioCommand::Mark { stream_sid, mark } => (stream_sid, mark.name.len()),
            TwilioCommand::Clear { stream_sid } => (stream_sid, 0),
        };
        write_frame(self, stream_sid.len() + body_bytes)
    }
}

/// Serializes an outgoing frame into one buffer of [`FRAME_OVERHEAD_BYTES`] + `strings_bytes`: the buffer does not
/// grow unless the strings need JSON escapes.
fn write_frame(frame: &impl Serialize, strings_bytes: usize) -> String {
    let mut buffer = Vec::with_capacity(FRAME_OVERHEAD_BYTES + strings_bytes);
    serde_json::to_writer(&mut buffer, frame).expect(
        "an outgoing frame holds only strings and Display values, and writing to a Vec cannot fail",
    );
    String::from_utf8(buffer).expect("serde_json writes UTF-8")
}

/// Room for the fixed text of an outgoing frame: `{"event":"media","streamSid":"","media":{"payload":""}}`, the
/// longest, is 55 bytes.
const FRAME_OVERHEAD_BYTES: usize = 64;

/// Builds `{"event":"media","streamSid":..,"media":{"payload":..}}`: audio for Twilio to play to the caller.
///
/// `payload_b64` is base64 of raw 8 kHz mono μ-law, passed through verbatim.
pub fn media_message(stream_sid: &str, payload_b64: &str) -> String {
    TwilioCommand::Media {
        stream_sid,
        media: OutgoingMedia {
            payload: payload_b64,
        },
    }
    .to_json()
}

/// Builds `{"event":"mark","streamSid":..,"mark":{"name":..}}`: a mark Twilio echoes when playback reaches it.
///
/// `name` is anything that displays as the mark's name: a `&str`, or a
/// [`MarkName`](crate::relay::playback::MarkName), which is written straight into the message's buffer (JSON-escaped
/// as needed) without a `String` of its own. One allocation, sized up front (`name` is displayed twice: once to
/// measure it).
///
/// # Panics
///
/// If `name`'s `Display` returns an error of its own, as [`ToString::to_string`] would; `str` and `MarkName` never
/// do.
pub fn mark_message(stream_sid: &str, name: impl fmt::Display) -> String {
    let mut name_bytes = ByteCounter(0);
    // Only a capacity hint: an error can come from `name` alone (the counter never fails), and `write_frame` then
    // panics as documented.
    let _ = fmt::write(&mut name_bytes, format_args!("{name}"));
    let frame = MarkFrame {
        event: "mark",
        stream_sid,
        mark: MarkFrameBody {
            name: Displayed(&name),
        },
    };
    write_frame(&frame, stream_sid.len() + name_bytes.0)
}

/// Builds `{"event":"clear","streamSid":..}`: drop all queued outbound audio (pending marks are echoed at once).
pub fn clear_message(stream_sid: &str) -> String {
    TwilioCommand::Clear { stream_sid }.to_json()
}

/// `{"event":"mark","streamSid":..,"mark":{"name":..}}` with a name of any `Display` type (see [`mark_message`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase", bound = "")]
struct MarkFrame<'a, N: fmt::Display> {
    event: &'static str,
    stream_sid: &'a str,
    mark: MarkFrameBody<'a, N>,
}

/// The `mark` object of [`MarkFrame`].
#[derive(Serialize)]
#[serde(bound = "")]
struct MarkFrameBody<'a, N: fmt::Display> {
    name: Displayed<'a, N>,
}

/// Serializes a `Display` value as a JSON string, formatted straight into the output (serde_json's `collect_str`
/// writes without an intermediate `String`).
struct Displayed<'a, N>(&'a N);

impl<N: fmt::Display> Serialize for Displayed<'_, N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

/// A `fmt::Write` that only counts the bytes written to it.
struct ByteCounter(usize);

impl fmt::Write for ByteCounter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(text.len());
        Ok(())
    }
}

/// Deserializes `text` as the message shape of a known `event`, naming the event in the error.
fn parse_as<'a, T: Deserialize<'a>>(event: &str, text: &'a str) -> Result<T, MediaParseError> {
    serde_json::from_str(text).map_err(|source| MediaParseError::InvalidEvent {
        event: event.to_owned(),
        source,
    })
}

/// Reads a `u64` that Twilio sends as a JSON string of decimal digits (`"sequenceNumber":"42"`), without allocating.
fn u64_from_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct DecimalString;

    impl Visitor<'_> for DecimalString {
        type Value = u64;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a string holding a decimal u64")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
            value.parse().map_err(|_| {
                // A long value is named only by its size: it must not flood a log line.
                if value.len() <= 24 {
                    E::invalid_value(de::Unexpected::Str(value), &self)
                } else {
                    E::custom(format_args!(
                        "invalid value: a string of {} bytes, expected {}",
                        value.len(),
                        "a string holding a decimal u64"
                    ))
                }
            })
        }
    }

    deserializer.deserialize_str(DecimalString)
}

/// The first pass over every frame: only the `event` tag (borrowed unless it holds escapes).
#[derive(Deserialize)]
struct EventTag<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ConnectedMessage {
    protocol: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartMessage {
    #[serde(deserialize_with = "u64_from_string")]
    sequence_number: u64,
    stream_sid: String,
    start: StreamStart,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaMessage<'a> {
    #[serde(deserialize_with = "u64_from_string")]
    sequence_number: u64,
    stream_sid: &'a str,
    #[serde(borrow)]
    media: MediaChunk<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DtmfMessage<'a> {
    #[serde(deserialize_with = "u64_from_string")]
    sequence_number: u64,
    #[serde(borrow)]
    stream_sid: Cow<'a, str>,
    #[serde(borrow)]
    dtmf: DtmfBody<'a>,
}

#[derive(Deserialize)]
struct DtmfBody<'a> {
    #[serde(borrow)]
    track: Cow<'a, str>,
    digit: DtmfDigit,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkMessage<'a> {
    #[serde(deserialize_with = "u64_from_string")]
    sequence_number: u64,
    #[serde(borrow)]
    stream_sid: Cow<'a, str>,
    #[serde(borrow)]
    mark: MarkBody<'a>,
}

#[derive(Deserialize)]
struct MarkBody<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopMessage<'a> {
    #[serde(deserialize_with = "u64_from_string")]
    sequence_number: u64,
    #[serde(borrow)]
    stream_sid: Cow<'a, str>,
    #[serde(borrow)]
    stop: StopBody<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopBody<'a> {
    #[serde(borrow)]
    account_sid: Cow<'a, str>,
    #[serde(borrow)]
    call_sid: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const STREAM_SID: &str = "MZ0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const ACCOUNT_SID: &str = "AC5f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const CALL_SID: &str = "CA9e8d7c6b5a49382716f5e4d3c2b1a0f9";
    /// 20 ms of a 440 Hz tone: 160 bytes of μ-law, 216 base64 characters.
    const FIXTURE_PAYLOAD: &str = "/7mrpKCgpKq36DssJSAgIyo2XL2tpaGgo6m01D8tJiEgIigyTsKupqGgoqiwykYvJyIgIicvRsqwqKKgoaauwk4yKCIgISYtP9S0qaOgoaWtvVw2KiMgICUsO+i3qqSgoKSruf85KyQgICQqN2i7rKWgoKOqttw9LSUhICMpNFS/raahoKKoss5CLiYhICIoMErGr6eioKKnr8ZKMCgiIA==";

    fn key(key: char) -> DtmfDigit {
        DtmfDigit::new(key).expect("a keypad key")
    }

    fn dtmf_with_digit(digit: &str) -> String {
        json!({
            "event": "dtmf",
            "sequenceNumber": "5",
            "streamSid": STREAM_SID,
            "dtmf": {"track": "inbound_track", "digit": digit}
        })
        .to_string()
    }

    fn parse_ok(text: &str) -> TwilioEvent<'_> {
        match parse_twilio_event(text) {
            Ok(event) => event,
            Err(error) => panic!("expected {text} to parse, got {error}"),
        }
    }

    #[test]
    fn connected_fixture_parses_to_connected_with_protocol_and_version() {
        let text = include_str!("../../tests/fixtures/twilio/connected.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            }
        );
    }

    #[test]
    fn start_fixture_parses_to_start_with_call_tracks_parameters_and_format() {
        let text = include_str!("../../tests/fixtures/twilio/start.json");

        let event = parse_ok(text);

        let expected_parameters = BTreeMap::from([
            ("direction".to_string(), "inbound".to_string()),
            ("callId".to_string(), "c_01HZX3K9T2".to_string()),
        ]);
        assert_eq!(
            event,
            TwilioEvent::Start {
                sequence_number: 1,
                stream_sid: STREAM_SID.into(),
                start: StreamStart {
                    account_sid: ACCOUNT_SID.into(),
                    stream_sid: STREAM_SID.into(),
                    call_sid: CALL_SID.into(),
                    tracks: vec!["inbound".into()],
                    custom_parameters: expected_parameters,
                    media_format: MediaFormat {
                        encoding: "audio/x-mulaw".into(),
                        sample_rate: 8000,
                        channels: 1,
                    },
                },
            }
        );
    }

    #[test]
    fn media_fixture_parses_to_media_with_numbers_and_the_payload_borrowed_from_the_input() {
        let text = include_str!("../../tests/fixtures/twilio/media.json");

        let event = parse_ok(text);

        let TwilioEvent::Media {
            sequence_number,
            stream_sid,
            media,
        } = event
        else {
            panic!("expected Media, got {event:?}");
        };
        assert_eq!(sequence_number, 3);
        assert_eq!(stream_sid, STREAM_SID);
        assert_eq!(media.track, "inbound");
        assert_eq!(media.chunk, 2);
        assert_eq!(media.timestamp_ms, 20);
        assert_eq!(media.payload, FIXTURE_PAYLOAD);
        let text_range = text.as_ptr() as usize..text.as_ptr() as usize + text.len();
        assert!(
            text_range.contains(&(media.payload.as_ptr() as usize)),
            "the payload must point into the input text, not a copy"
        );
    }

    #[test]
    fn dtmf_fixture_parses_to_dtmf_with_digit_and_track() {
        let text = include_str!("../../tests/fixtures/twilio/dtmf.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Dtmf {
                sequence_number: 5,
                stream_sid: STREAM_SID.into(),
                digit: key('3'),
                track: "inbound_track".into(),
            }
        );
    }

    #[test]
    fn every_keypad_key_parses_as_a_dtmf_digit() {
        for key in "0123456789*#".chars() {
            let text = dtmf_with_digit(&key.to_string());

            let event = parse_ok(&text);

            assert!(
                matches!(event, TwilioEvent::Dtmf { digit, .. } if digit.as_char() == key),
                "{key}: {event:?}"
            );
        }
    }

    #[test]
    fn a_dtmf_digit_outside_the_keypad_or_of_several_keys_is_an_invalid_event() {
        for digit in ["", "A", "12", "3 ", "٣", "\u{0}", "**"] {
            assert_invalid(&dtmf_with_digit(digit), "dtmf");
        }
    }

    #[test]
    fn the_error_for_a_60000_character_digit_names_its_size_not_its_text() {
        let text = dtmf_with_digit(&"7".repeat(60_000));

        let error = parse_twilio_event(&text).expect_err("a digit of 60,000 characters");

        let message = error.to_string();
        assert!(
            message.contains("invalid DTMF digit of 60000 bytes"),
            "{message}"
        );
        assert!(
            message.len() < 200,
            "{} bytes: {message:.300}",
            message.len()
        );
    }

    #[test]
    fn mark_fixture_parses_to_mark_with_its_name() {
        let text = include_str!("../../tests/fixtures/twilio/mark.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Mark {
                sequence_number: 4,
                stream_sid: STREAM_SID.into(),
                name: "g3:s41".into(),
            }
        );
    }

    #[test]
    fn mark_strings_without_escapes_are_borrowed_from_the_input() {
        let text = include_str!("../../tests/fixtures/twilio/mark.json");

        let event = parse_ok(text);

        let TwilioEvent::Mark {
            stream_sid, name, ..
        } = event
        else {
            panic!("expected Mark, got {event:?}");
        };
        assert!(matches!(stream_sid, Cow::Borrowed(_)), "{stream_sid:?}");
        assert!(matches!(name, Cow::Borrowed(_)), "{name:?}");
        let text_range = text.as_ptr() as usize..text.as_ptr() as usize + text.len();
        assert!(text_range.contains(&(name.as_ptr() as usize)));
    }

    #[test]
    fn a_mark_name_with_escapes_parses_to_the_unescaped_name() {
        let text = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"say \"bye\"\n\u00e9"}}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Mark {
                sequence_number: 4,
                stream_sid: "MZ1".into(),
                name: Cow::Owned("say \"bye\"\né".to_owned()),
            }
        );
    }

    #[test]
    fn dtmf_and_stop_with_escaped_strings_parse_to_the_unescaped_strings() {
        let dtmf = r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ\u0031","dtmf":{"track":"inbound\u005ftrack","digit":"\u0023"}}"#;
        let stop = r#"{"event":"stop","sequenceNumber":"6","streamSid":"MZ1","stop":{"accountSid":"AC\/1","callSid":"CA\/1"}}"#;

        let events = [parse_ok(dtmf), parse_ok(stop)];

        assert_eq!(
            events,
            [
                TwilioEvent::Dtmf {
                    sequence_number: 5,
                    stream_sid: "MZ1".into(),
                    digit: key('#'),
                    track: "inbound_track".into(),
                },
                TwilioEvent::Stop {
                    sequence_number: 6,
                    stream_sid: "MZ1".into(),
                    account_sid: "AC/1".into(),
                    call_sid: "CA/1".into(),
                },
            ]
        );
    }

    #[test]
    fn stop_fixture_parses_to_stop_with_account_and_call() {
        let text = include_str!("../../tests/fixtures/twilio/stop.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Stop {
                sequence_number: 6,
                stream_sid: STREAM_SID.into(),
                account_sid: ACCOUNT_SID.into(),
                call_sid: CALL_SID.into(),
            }
        );
    }

    #[test]
    fn unknown_event_fixture_parses_to_unknown_with_its_name() {
        let text = include_str!("../../tests/fixtures/twilio/unknown.json");

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Unknown {
                event: "transcription".into()
            }
        );
    }

    #[test]
    fn unknown_event_with_a_body_shaped_like_a_known_event_is_still_unknown() {
        let text = r#"{"event":"media2","sequenceNumber":"x","media":42}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Unknown {
                event: "media2".into()
            }
        );
    }

    #[test]
    fn start_without_custom_parameters_or_tracks_parses_with_them_empty() {
        let text = json!({
            "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
            "start": {"accountSid": ACCOUNT_SID, "streamSid": STREAM_SID, "callSid": CALL_SID,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        })
        .to_string();

        let event = parse_ok(&text);

        let TwilioEvent::Start { start, .. } = event else {
            panic!("expected Start, got {event:?}");
        };
        assert!(start.custom_parameters.is_empty());
        assert!(start.tracks.is_empty());
    }

    #[test]
    fn escaped_event_tag_is_still_recognised() {
        let text =
            r#"{"event":"m\u0061rk","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"n"}}"#;

        let event = parse_ok(text);

        assert_eq!(
            event,
            TwilioEvent::Mark {
                sequence_number: 4,
                stream_sid: "MZ1".into(),
                name: "n".into()
            }
        );
    }

    #[test]
    fn sequence_number_up_to_u64_max_parses() {
        let text = r#"{"event":"mark","sequenceNumber":"18446744073709551615","streamSid":"MZ1","mark":{"name":"n"}}"#;

        let event = parse_ok(text);

        assert!(matches!(
            event,
            TwilioEvent::Mark {
                sequence_number: u64::MAX,
                ..
            }
        ));
    }

    fn assert_invalid(text: &str, expected_event: &str) {
        match parse_twilio_event(text) {
            Err(MediaParseError::InvalidEvent { event, .. }) => assert_eq!(event, expected_event),
            other => panic!("expected InvalidEvent for {text}, got {other:?}"),
        }
    }

    fn assert_malformed(text: &str) {
        match parse_twilio_event(text) {
            Err(MediaParseError::Malformed(_)) => {}
            other => panic!("expected Malformed for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn text_that_is_not_json_is_malformed() {
        assert_malformed("");
        assert_malformed("not json");
        assert_malformed(r#"{"event":"media""#);
        assert_malformed(r#"{"event":"media"} trailing"#);
    }

    #[test]
    fn json_without_a_string_event_is_malformed() {
        assert_malformed("[]");
        assert_malformed(r#""media""#);
        assert_malformed("{}");
        assert_malformed(r#"{"event":7}"#);
        assert_malformed(r#"{"event":null}"#);
    }

    #[test]
    fn non_numeric_sequence_number_is_an_invalid_event() {
        assert_invalid(
            r#"{"event":"mark","sequenceNumber":"four","streamSid":"MZ1","mark":{"name":"n"}}"#,
            "mark",
        );
        assert_invalid(
            r#"{"event":"mark","sequenceNumber":"-4","streamSid":"MZ1","mark":{"name":"n"}}"#,
            "mark",
        );
        assert_invalid(
            r#"{"event":"mark","sequenceNumber":"18446744073709551616","streamSid":"MZ1","mark":{"name":"n"}}"#,
            "mark",
        );
    }

    #[test]
    fn sequence_number_sent_as_a_json_number_is_an_invalid_event() {
        assert_invalid(
            r#"{"event":"mark","sequenceNumber":4,"streamSid":"MZ1","mark":{"name":"n"}}"#,
            "mark",
        );
    }

    #[test]
    fn media_with_non_numeric_chunk_or_timestamp_is_an_invalid_event() {
        assert_invalid(
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"x","timestamp":"20","payload":"AA=="}}"#,
            "media",
        );
        assert_invalid(
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"","payload":"AA=="}}"#,
            "media",
        );
    }

    #[test]
    fn media_with_a_missing_payload_is_an_invalid_event() {
        assert_invalid(
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"20"}}"#,
            "media",
        );
    }

    #[test]
    fn media_with_an_escaped_payload_is_an_invalid_event_not_a_panic() {
        assert_invalid(
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"A\/=="}}"#,
            "media",
        );
    }

    #[test]
    fn known_events_with_wrong_types_or_missing_fields_are_invalid_events() {
        assert_invalid(r#"{"event":"connected","protocol":"Call"}"#, "connected");
        assert_invalid(
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1"}"#,
            "start",
        );
        assert_invalid(
            r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":3}}"#,
            "dtmf",
        );
        assert_invalid(
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":"n"}"#,
            "mark",
        );
        assert_invalid(
            r#"{"event":"stop","sequenceNumber":"6","streamSid":42,"stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
            "stop",
        );
    }

    #[test]
    fn parse_errors_carry_serde_json_message() {
        let text = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1"}"#;

        let error = parse_twilio_event(text).expect_err("mark without a mark object");

        let message = error.to_string();
        assert!(message.contains("`mark`"), "{message}");
        assert!(message.contains("missing field `mark`"), "{message}");
    }

    #[test]
    fn media_message_has_exactly_the_documented_keys() {
        let text = media_message(STREAM_SID, "AAEC/w==");

        let value: Value = serde_json::from_str(&text).expect("media_message writes JSON");

        assert_eq!(
            value,
            json!({"event": "media", "streamSid": STREAM_SID, "media": {"payload": "AAEC/w=="}})
        );
    }

    #[test]
    fn mark_message_has_exactly_the_documented_keys() {
        let text = mark_message(STREAM_SID, "g3:s41");

        let value: Value = serde_json::from_str(&text).expect("mark_message writes JSON");

        assert_eq!(
            value,
            json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g3:s41"}})
        );
    }

    #[test]
    fn clear_message_has_exactly_the_documented_keys() {
        let text = clear_message(STREAM_SID);

        let value: Value = serde_json::from_str(&text).expect("clear_message writes JSON");

        assert_eq!(value, json!({"event": "clear", "streamSid": STREAM_SID}));
    }

    #[test]
    fn mark_message_escapes_a_name_with_quotes() {
        let text = mark_message(STREAM_SID, "say \"bye\"\n");

        let value: Value = serde_json::from_str(&text).expect("mark_message writes JSON");

        assert_eq!(value["mark"]["name"], "say \"bye\"\n");
    }

    /// Displays `g3:s41` in three pieces, as a formatted mark name does.
    struct PiecewiseName;

    impl fmt::Display for PiecewiseName {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "g{}:s{}", 3, 41)
        }
    }

    #[test]
    fn mark_message_writes_a_display_name_as_a_json_string() {
        let text = mark_message(STREAM_SID, PiecewiseName);

        let value: Value = serde_json::from_str(&text).expect("mark_message writes JSON");

        assert_eq!(
            value,
            json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g3:s41"}})
        );
    }

    /// Displays `ab` repeated `.0` times, one piece at a time.
    struct RepeatedName(usize);

    impl fmt::Display for RepeatedName {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            (0..self.0).try_for_each(|_| formatter.write_str("ab"))
        }
    }

    #[test]
    fn mark_message_with_a_long_display_name_fits_the_buffer_allocated_up_front() {
        let text = mark_message(STREAM_SID, RepeatedName(200));

        assert_eq!(text.len(), 50 + STREAM_SID.len() + 400);
        assert!(
            text.capacity() <= FRAME_OVERHEAD_BYTES + STREAM_SID.len() + 400,
            "the buffer must not have grown past its initial size"
        );
    }

    #[test]
    fn media_message_fits_the_buffer_allocated_up_front() {
        let payload = "A".repeat(216);

        let text = media_message(STREAM_SID, &payload);

        assert!(text.len() <= text.capacity());
        assert!(
            text.capacity() <= 64 + STREAM_SID.len() + payload.len(),
            "the buffer must not have grown past its initial size"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse_twilio_event(&text);
        }

        #[test]
        fn json_ish_text_never_panics(
            text in r#"\{("(event|sequenceNumber|streamSid|media|mark|start|stop|dtmf|track|chunk|timestamp|payload|name)"|"[a-z]{0,6}"|[0-9-]{1,4}|true|null|[\[\]\{\},:"\\])*\}?"#
        ) {
            let _ = parse_twilio_event(&text);
        }

        #[test]
        fn media_round_trips_any_sequence_number_chunk_timestamp_and_base64_payload(
            sequence_number in any::<u64>(),
            chunk in any::<u64>(),
            timestamp_ms in any::<u64>(),
            payload in "[A-Za-z0-9+/]{0,400}={0,2}",
        ) {
            let text = json!({
                "event": "media", "sequenceNumber": sequence_number.to_string(), "streamSid": STREAM_SID,
                "media": {"track": "inbound", "chunk": chunk.to_string(), "timestamp": timestamp_ms.to_string(),
                          "payload": payload},
            }).to_string();

            let event = parse_twilio_event(&text).expect("a well-formed media message parses");

            prop_assert_eq!(event, TwilioEvent::Media {
                sequence_number,
                stream_sid: STREAM_SID,
                media: MediaChunk { track: "inbound", chunk, timestamp_ms, payload: &payload },
            });
        }

        #[test]
        fn a_mark_echo_with_any_name_parses_to_that_name(name in any::<String>()) {
            let text = json!({
                "event": "mark", "sequenceNumber": "4", "streamSid": STREAM_SID, "mark": {"name": name},
            }).to_string();

            let event = parse_twilio_event(&text).expect("a mark with any legal JSON string as its name parses");

            prop_assert_eq!(event, TwilioEvent::Mark {
                sequence_number: 4,
                stream_sid: STREAM_SID.into(),
                name: name.as_str().into(),
            });
        }

        #[test]
        fn mark_message_parses_back_to_the_same_name(name in any::<String>()) {
            let text = mark_message(STREAM_SID, &name);

            let value: Value = serde_json::from_str(&text).expect("mark_message writes JSON");

            prop_assert_eq!(value, json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);

            let _ = parse_twilio_event(&text);
        }

        #[test]
        fn arbitrary_json_documents_never_panic(document in crate::test_support::arbitrary_json()) {
            let text = document.to_string();

            let parsed = parse_twilio_event(&text);

            if document.is_object() && !document.get("event").is_some_and(Value::is_string) {
                prop_assert!(parsed.is_err(), "an object without a string event parsed: {:?}", parsed);
            }
        }

        #[test]
        fn every_documented_event_with_arbitrary_json_fields_never_panics(
            event in prop::sample::select(vec!["connected", "start", "media", "dtmf", "mark", "stop"]),
            fields in proptest::collection::vec(
                (
                    prop::sample::select(vec![
                        "sequenceNumber", "streamSid", "media", "start", "mark", "dtmf", "stop", "protocol",
                        "version",
                    ]),
                    crate::test_support::arbitrary_json(),
                ),
                0..6,
            ),
        ) {
            let mut document = json!({"event": event});
            for (name, value) in fields {
                document[name] = value;
            }

            let _ = parse_twilio_event(&document.to_string());
        }

        #[test]
        fn an_undocumented_event_is_unknown_whatever_else_the_message_holds(
            event in "x-[a-z.]{0,12}",
            extra in crate::test_support::arbitrary_json(),
        ) {
            let text = json!({"event": event, "media": extra}).to_string();

            let parsed = parse_twilio_event(&text);

            prop_assert_eq!(parsed.ok(), Some(TwilioEvent::Unknown { event }));
        }
    }
}
