//! TwiML documents callbridge answers voice webhooks with.
//!
//! Owns the three responses the server gives: connect the call to a bidirectional Media Stream, reject an
//! unanswered call, or say a short message and hang up. Every document is built with quick-xml's `Writer`, so
//! values from the outside (URLs, parameter values, spoken text) are always escaped, never pasted into markup.
//!
//! Follows <https://www.twilio.com/docs/voice/twiml/stream>, <https://www.twilio.com/docs/voice/twiml/reject>,
//! <https://www.twilio.com/docs/voice/twiml/say> and <https://www.twilio.com/docs/voice/twiml/hangup>.

use std::borrow::Cow;
use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

/// Why an inbound call is refused, as `<Reject reason="...">` spells it. The caller hears a "not in service" message
/// for [`RejectReason::Rejected`] and a busy tone for [`RejectReason::Busy`]; either way the call is never answered,
/// so it is not billed. See <https://www.twilio.com/docs/voice/twiml/reject>.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `reason="rejected"`: the number appears not to be in service.
    Rejected,
    /// `reason="busy"`: the caller hears a busy signal.
    Busy,
}

impl RejectReason {
    /// The value of the `reason` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Busy => "busy",
        }
    }
}

/// `<Response><Connect><Stream url="..."><Parameter name=".." value=".."/>...</Stream></Connect></Response>`,
/// preceded by the XML declaration: connects the call to a bidirectional Media Stream at `stream_url`.
///
/// `stream_url` must be a `wss://` URL without a query string (Twilio drops query strings; put per-call values in
/// the path or in `parameters`, which arrive as `start.customParameters`). This function escapes but does not check
/// it. `parameters` are `(name, value)` pairs, written in the order given.
///
/// Characters that XML 1.0 cannot carry at all (control characters other than tab, newline and carriage return,
/// U+FFFE, U+FFFF) are replaced with U+FFFD; everything else reaches Twilio intact.
///
/// See <https://www.twilio.com/docs/voice/twiml/stream>.
pub fn connect_stream(stream_url: &str, parameters: &[(&str, &str)]) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| write_connect_stream(writer, stream_url, parameters))?;
        Ok(())
    })
}

/// What a call does before its `<Connect><Stream>`: start recording it, then say a line (the recording notice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prelude<'a> {
    /// Start a dual-channel recording reported to this recording status callback URL:
    /// `<Start><Recording channels="dual" recordingStatusCallback="…" recordingStatusCallbackMethod="POST"
    /// recordingStatusCallbackEvent="completed absent"/></Start>` (<https://www.twilio.com/docs/voice/twiml/recording>).
    pub recording_callback: Option<&'a str>,
    /// Say this before the stream opens (`<Say>`, escaped as in [`say`]).
    pub say: Option<&'a str>,
}

/// `<Response>[<Start><Recording …/></Start>][<Say>…</Say>]<Connect><Stream url="…">…</Stream></Connect></Response>`:
/// [`connect_stream`] after the `prelude`. Twilio starts the recording at once and goes on with the next verb
/// (<https://www.twilio.com/docs/voice/twiml/recording>), so the recording holds the spoken line too; the stream
/// opens once the line is said. With an empty prelude the document is [`connect_stream`]'s.
pub fn connect_stream_after(
    prelude: &Prelude<'_>,
    stream_url: &str,
    parameters: &[(&str, &str)],
) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                if let Some(callback) = prelude.recording_callback {
                    let events = crate::twilio::recording::RECORDING_STATUS_EVENTS.join(" ");
                    writer
                        .create_element("Start")
                        .write_inner_content(|writer| {
                            writer
                                .create_element("Recording")
                                .with_attribute((
                                    "channels",
                                    crate::twilio::recording::RECORDING_CHANNELS,
                                ))
                                .with_attribute(("recordingStatusCallback", xml_chars(callback)))
                                .with_attribute(("recordingStatusCallbackMethod", "POST"))
                                .with_attribute(("recordingStatusCallbackEvent", events.as_str()))
                                .write_empty()?;
                            Ok(())
                        })?;
                }
                if let Some(text) = prelude.say {
                    writer
                        .create_element("Say")
                        .write_text_content(BytesText::new(&xml_chars(text)))?;
                }
                write_connect_stream(writer, stream_url, parameters)
            })?;
        Ok(())
    })
}

/// `<Response><Play digits="…"/><Connect><Stream url="…">…</Stream></Connect></Response>`: plays keypad tones on the
/// call, then connects it to a fresh bidirectional Media Stream (the call update that sends DTMF while a stream runs:
/// Media Streams cannot carry keypresses to the far end). `digits` must already be checked
/// ([`crate::twilio::dtmf::DtmfDigits`]); `stream_url` and `parameters` as for [`connect_stream`].
///
/// See <https://www.twilio.com/docs/voice/twiml/play> ("digits") and <https://www.twilio.com/docs/voice/twiml/stream>.
pub fn play_digits_then_connect(
    digits: &str,
    stream_url: &str,
    parameters: &[(&str, &str)],
) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer
                    .create_element("Play")
                    .with_attribute(("digits", xml_chars(digits)))
                    .write_empty()?;
                write_connect_stream(writer, stream_url, parameters)
            })?;
        Ok(())
    })
}

/// Writes `<Connect><Stream url="…"><Parameter …/>…</Stream></Connect>`.
fn write_connect_stream(
    writer: &mut Writer<Vec<u8>>,
    stream_url: &str,
    parameters: &[(&str, &str)],
) -> io::Result<()> {
    writer
        .create_element("Connect")
        .write_inner_content(|writer| {
            writer
                .create_element("Stream")
                .with_attribute(("url", xml_chars(stream_url)))
                .write_inner_content(|writer| {
                    for (name, value) in parameters {
                        writer
                            .create_element("Parameter")
                            .with_attribute(("name", xml_chars(name)))
                            .with_attribute(("value", xml_chars(value)))
                            .write_empty()?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    Ok(())
}

/// `<Response><Reject reason="rejected|busy"/></Response>`, preceded by the XML declaration: refuses an inbound
/// call before it is answered.
///
/// See <https://www.twilio.com/docs/voice/twiml/reject>.
pub fn reject(reason: RejectReason) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer
                    .create_element("Reject")
                    .with_attribute(("reason", reason.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
        Ok(())
    })
}

/// `<Response><Say>text</Say><Hangup/></Response>`, preceded by the XML declaration: tells the caller why the call
/// cannot be served, then ends it. `text` is escaped; characters XML 1.0 cannot carry become U+FFFD.
///
/// See <https://www.twilio.com/docs/voice/twiml/say> and <https://www.twilio.com/docs/voice/twiml/hangup>.
pub fn say_and_hang_up(text: &str) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer
                    .create_element("Say")
                    .write_text_content(BytesText::new(&xml_chars(text)))?;
                writer.create_element("Hangup").write_empty()?;
                Ok(())
            })?;
        Ok(())
    })
}

/// `<Response><Dial callerId="…" action="…" method="POST" timeout="…"><Number url="…" method="POST">+1…</Number>
/// </Dial></Response>`: transfers the call to `number`, shown to the person as `caller_id`; when the person answers,
/// Twilio runs the TwiML at `whisper_url` for them alone before the two are connected; when the dial ends, Twilio
/// POSTs `DialCallStatus` to `action_url` and runs the TwiML it answers. `timeout_s`: how long it rings.
///
/// See <https://www.twilio.com/docs/voice/twiml/dial> and <https://www.twilio.com/docs/voice/twiml/number>.
pub fn dial_number(
    number: &str,
    caller_id: &str,
    action_url: &str,
    whisper_url: &str,
    timeout_s: u32,
) -> String {
    let timeout = timeout_s.to_string();
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer
                    .create_element("Dial")
                    .with_attribute(("callerId", xml_chars(caller_id)))
                    .with_attribute(("action", xml_chars(action_url)))
                    .with_attribute(("method", "POST"))
                    .with_attribute(("timeout", timeout.as_str()))
                    .write_inner_content(|writer| {
                        writer
                            .create_element("Number")
                            .with_attribute(("url", xml_chars(whisper_url)))
                            .with_attribute(("method", "POST"))
                            .write_text_content(BytesText::new(&xml_chars(number)))?;
                        Ok(())
                    })?;
                Ok(())
            })?;
        Ok(())
    })
}

/// `<Response><Say>text</Say></Response>`: what the person hears before a transferred call is connected (the TwiML
/// of a `<Number url>`). `text` is escaped as in [`say_and_hang_up`].
///
/// See <https://www.twilio.com/docs/voice/twiml/say>.
pub fn say(text: &str) -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer
                    .create_element("Say")
                    .write_text_content(BytesText::new(&xml_chars(text)))?;
                Ok(())
            })?;
        Ok(())
    })
}

/// `<Response><Hangup/></Response>`: ends the call (a transfer's `<Dial action>` answer once the person was reached).
///
/// See <https://www.twilio.com/docs/voice/twiml/hangup>.
pub fn hang_up() -> String {
    render(|writer| {
        writer
            .create_element("Response")
            .write_inner_content(|writer| {
                writer.create_element("Hangup").write_empty()?;
                Ok(())
            })?;
        Ok(())
    })
}

/// Writes the XML declaration, lets `body` write the document element, and returns the document as a `String`.
fn render(body: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> String {
    let mut writer = Writer::new(Vec::new());
    writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|()| body(&mut writer))
        .expect("writing XML into a Vec<u8> cannot fail");
    String::from_utf8(writer.into_inner()).expect("quick-xml writes the UTF-8 it was given")
}

/// True for a character XML 1.0 allows in a document
/// (<https://www.w3.org/TR/xml/#NT-Char>: tab, LF, CR, U+0020–U+D7FF, U+E000–U+FFFD, U+10000–U+10FFFF).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character XML 1.0 cannot represent (not even as a character reference) replaced by U+FFFD.
/// Borrows when there is nothing to replace, which is the usual case.
fn xml_chars(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_xml_char) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if is_xml_char(c) {
                        c
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::Reader;
    use quick_xml::XmlVersion;
    use quick_xml::events::BytesStart;

    const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    /// One parsed element: its name, its attributes (normalized as a conforming XML parser would), its text.
    #[derive(Debug, PartialEq, Eq)]
    struct Element {
        name: String,
        attributes: Vec<(String, String)>,
        text: String,
    }

    fn element(start: &BytesStart<'_>) -> Element {
        let attributes = start
            .attributes()
            .map(|attribute| {
                let attribute = attribute.expect("attribute is well-formed");
                let key = attribute.key.as_ref().to_owned();
                let value = attribute
                    .normalized_value(XmlVersion::Implicit1_0)
                    .expect("attribute value unescapes")
                    .into_owned();
                (key, value)
            })
            .collect();
        Element {
            name: start.name().as_ref().to_owned(),
            attributes,
            text: String::new(),
        }
    }

    /// Parses `xml` strictly (only XML 1.0 characters, one document element, every end tag matching) and returns
    /// its elements in document order. Panics on any well-formedness error, which is what the tests want.
    fn parse(xml: &str) -> Vec<Element> {
        let illegal: Vec<char> = xml.chars().filter(|c| !is_xml_char(*c)).collect();
        assert!(
            illegal.is_empty(),
            "characters XML 1.0 forbids: {illegal:?}"
        );
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let mut elements = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut roots = 0;
        loop {
            match reader.read_event().expect("TwiML is well-formed XML") {
                Event::Start(start) => {
                    roots += usize::from(open.is_empty());
                    open.push(elements.len());
                    elements.push(element(&start));
                }
                Event::Empty(start) => {
                    roots += usize::from(open.is_empty());
                    elements.push(element(&start));
                }
                Event::End(_) => {
                    open.pop().expect("end tag matches a start tag");
                }
                Event::Text(text) => {
                    let index = *open.last().expect("text only inside an element");
                    elements[index].text.push_str(&text.xml10_content());
                }
                Event::GeneralRef(reference) => {
                    let index = *open.last().expect("reference only inside an element");
                    let resolved = match reference.resolve_char_ref().expect("valid char ref") {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&reference)
                            .expect("only predefined entities")
                            .to_owned(),
                    };
                    elements[index].text.push_str(&resolved);
                }
                Event::Eof => break,
                Event::Decl(_) => {}
                other => panic!("unexpected event in TwiML: {other:?}"),
            }
        }
        assert!(open.is_empty(), "every element is closed");
        assert_eq!(roots, 1, "exactly one document element");
        elements
    }

    fn names(elements: &[Element]) -> Vec<&str> {
        elements
            .iter()
            .map(|element| element.name.as_str())
            .collect()
    }

    fn attribute<'a>(element: &'a Element, key: &str) -> Option<&'a str> {
        element
            .attributes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn dial_number_dials_with_caller_id_action_timeout_and_a_whisper_url() {
        let twiml = dial_number(
            "+14155550100",
            "+15550100002",
            "https://cb.test/transfer/t1/action",
            "https://cb.test/transfer/t1/whisper",
            20,
        );

        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<Response><Dial callerId="+15550100002" action="https://cb.test/transfer/t1/action" "#,
                r#"method="POST" timeout="20"><Number url="https://cb.test/transfer/t1/whisper" method="POST">"#,
                r#"+14155550100</Number></Dial></Response>"#,
            )
        );
    }

    #[test]
    fn say_escapes_the_whispered_text() {
        assert!(
            say("Caller <Ann> & billing").contains("<Say>Caller &lt;Ann&gt; &amp; billing</Say>")
        );
        assert!(hang_up().ends_with("<Response><Hangup/></Response>"));
    }

    #[test]
    fn play_digits_then_connect_plays_the_tones_before_the_new_stream() {
        let twiml = play_digits_then_connect(
            "1w#",
            "wss://example.test/media-stream/t2",
            &[("caller", "+1")],
        );

        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<Response><Play digits="1w#"/><Connect><Stream url="wss://example.test/media-stream/t2">"#,
                r#"<Parameter name="caller" value="+1"/></Stream></Connect></Response>"#,
            )
        );
    }

    #[test]
    fn connect_stream_starts_with_the_xml_declaration() {
        let twiml = connect_stream("wss://example.test/media-stream/t", &[]);

        assert!(twiml.starts_with(DECLARATION), "{twiml}");
    }

    #[test]
    fn connect_stream_writes_the_exact_document_twilio_expects() {
        let twiml = connect_stream(
            "wss://example.test/media-stream/abc",
            &[("call_id", "c-1"), ("direction", "inbound")],
        );

        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<Response><Connect><Stream url="wss://example.test/media-stream/abc">"#,
                r#"<Parameter name="call_id" value="c-1"/><Parameter name="direction" value="inbound"/>"#,
                r#"</Stream></Connect></Response>"#,
            )
        );
    }

    #[test]
    fn connect_stream_nests_response_connect_stream_and_parameters() {
        let twiml = connect_stream("wss://example.test/s", &[("a", "1"), ("b", "2")]);

        let elements = parse(&twiml);

        assert_eq!(
            names(&elements),
            ["Response", "Connect", "Stream", "Parameter", "Parameter"]
        );
    }

    #[test]
    fn connect_stream_without_parameters_still_opens_and_closes_the_stream() {
        let twiml = connect_stream("wss://example.test/s", &[]);

        let elements = parse(&twiml);

        assert_eq!(names(&elements), ["Response", "Connect", "Stream"]);
    }

    #[test]
    fn connect_stream_escapes_markup_characters_in_the_url() {
        let url = r#"wss://example.test/a&b<c>d"e'f"#;

        let twiml = connect_stream(url, &[]);

        assert!(
            twiml.contains(r#"url="wss://example.test/a&amp;b&lt;c&gt;d&quot;e&apos;f""#),
            "{twiml}"
        );
        assert_eq!(attribute(&parse(&twiml)[2], "url"), Some(url));
    }

    #[test]
    fn connect_stream_escapes_markup_characters_in_parameter_names_and_values() {
        let name = r#"n&<>"'"#;
        let value = r#"v"/><Hangup/><Parameter name="x"#;

        let twiml = connect_stream("wss://example.test/s", &[(name, value)]);

        let elements = parse(&twiml);
        assert_eq!(
            names(&elements),
            ["Response", "Connect", "Stream", "Parameter"],
            "{twiml}"
        );
        assert_eq!(attribute(&elements[3], "name"), Some(name));
        assert_eq!(attribute(&elements[3], "value"), Some(value));
    }

    #[test]
    fn connect_stream_keeps_newlines_and_tabs_in_values_through_attribute_normalization() {
        let value = "line one\nline two\r\n\tindented";

        let twiml = connect_stream("wss://example.test/s", &[("note", value)]);

        assert_eq!(
            attribute(&parse(&twiml)[3], "value"),
            Some(value),
            "{twiml}"
        );
    }

    #[test]
    fn connect_stream_replaces_characters_xml_cannot_carry() {
        let twiml = connect_stream("wss://example.test/s", &[("k", "a\u{0}b\u{1b}c\u{fffe}")]);

        assert_eq!(
            attribute(&parse(&twiml)[3], "value"),
            Some("a\u{fffd}b\u{fffd}c\u{fffd}")
        );
    }

    #[test]
    fn reject_writes_the_rejected_reason() {
        let twiml = reject(RejectReason::Rejected);

        assert_eq!(
            twiml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="rejected"/></Response>"#
        );
    }

    #[test]
    fn reject_writes_the_busy_reason() {
        let elements = parse(&reject(RejectReason::Busy));

        assert_eq!(names(&elements), ["Response", "Reject"]);
        assert_eq!(attribute(&elements[1], "reason"), Some("busy"));
    }

    #[test]
    fn say_and_hang_up_says_the_text_then_hangs_up() {
        let twiml = say_and_hang_up("Sorry, all lines are busy.");

        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                "<Response><Say>Sorry, all lines are busy.</Say><Hangup/></Response>",
            )
        );
    }

    #[test]
    fn say_and_hang_up_escapes_markup_characters_in_the_text() {
        let text = r#"Tom & Jerry say "<Hangup/>" isn't 'it'"#;

        let twiml = say_and_hang_up(text);

        let elements = parse(&twiml);
        assert_eq!(names(&elements), ["Response", "Say", "Hangup"], "{twiml}");
        assert_eq!(elements[1].text, text);
    }

    #[test]
    fn say_and_hang_up_keeps_a_carriage_return_through_end_of_line_normalization() {
        let text = "first\r\nsecond";

        let elements = parse(&say_and_hang_up(text));

        assert_eq!(elements[1].text, text);
    }

    /// Strings of characters XML 1.0 can carry: the ones that must round-trip exactly.
    fn xml_string() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|s| s.chars().filter(|c| is_xml_char(*c)).collect())
    }

    proptest! {
        #[test]
        fn attribute_values_round_trip_intact_through_an_xml_reader(
            url in xml_string(),
            parameters in proptest::collection::vec((xml_string(), xml_string()), 0..5),
        ) {
            let borrowed: Vec<(&str, &str)> =
                parameters.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();

            let twiml = connect_stream(&url, &borrowed);

            let elements = parse(&twiml);
            prop_assert_eq!(attribute(&elements[2], "url"), Some(url.as_str()));
            let parsed: Vec<(&str, &str)> = elements[3..]
                .iter()
                .map(|p| (attribute(p, "name").unwrap_or("<none>"), attribute(p, "value").unwrap_or("<none>")))
                .collect();
            prop_assert_eq!(parsed, borrowed);
        }

        #[test]
        fn say_text_round_trips_intact_through_an_xml_reader(text in xml_string()) {
            let twiml = say_and_hang_up(&text);

            let elements = parse(&twiml);
            prop_assert_eq!(&elements[1].text, &text);
        }

        #[test]
        fn arbitrary_strings_always_produce_well_formed_twiml(
            url in any::<String>(),
            name in any::<String>(),
            value in any::<String>(),
            text in any::<String>(),
        ) {
            let stream = connect_stream(&url, &[(&name, &value)]);
            let say = say_and_hang_up(&text);

            let stream_elements = parse(&stream);
            let say_elements = parse(&say);
            let expected_value = xml_chars(&value);
            let expected_text = xml_chars(&text);
            prop_assert_eq!(attribute(&stream_elements[3], "value"), Some(expected_value.as_ref()));
            prop_assert_eq!(say_elements[1].text.as_str(), expected_text.as_ref());
        }
    }

    #[test]
    fn a_recorded_stream_starts_the_recording_then_says_the_notice_then_connects() {
        let twiml = connect_stream_after(
            &Prelude {
                recording_callback: Some("https://cb.test/recording-status/call_1?a=1&b=2"),
                say: Some("This call is recorded & kept <30 days>."),
            },
            "wss://cb.test/media-stream/tok",
            &[("caller", "+15550100")],
        );

        let elements = parse(&twiml);
        assert_eq!(
            names(&elements),
            [
                "Response",
                "Start",
                "Recording",
                "Say",
                "Connect",
                "Stream",
                "Parameter"
            ]
        );
        let recording = &elements[2];
        assert_eq!(attribute(recording, "channels"), Some("dual"));
        assert_eq!(
            attribute(recording, "recordingStatusCallback"),
            Some("https://cb.test/recording-status/call_1?a=1&b=2")
        );
        assert_eq!(
            attribute(recording, "recordingStatusCallbackMethod"),
            Some("POST")
        );
        assert_eq!(
            attribute(recording, "recordingStatusCallbackEvent"),
            Some("completed absent")
        );
        assert_eq!(elements[3].text, "This call is recorded & kept <30 days>.");
        assert_eq!(
            attribute(&elements[5], "url"),
            Some("wss://cb.test/media-stream/tok")
        );
    }

    #[test]
    fn an_empty_prelude_gives_the_plain_connect_stream_document() {
        let plain = connect_stream("wss://cb.test/media-stream/tok", &[("caller", "+1")]);
        let after = connect_stream_after(
            &Prelude::default(),
            "wss://cb.test/media-stream/tok",
            &[("caller", "+1")],
        );

        assert_eq!(after, plain);
    }
}
