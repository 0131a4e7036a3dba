//! Tests of the control messages and the routing decision, without Redis.

use super::*;

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const PREFIX: &str = "cb:";

fn round_trip(control: CallControl) -> Received {
    let text = encode(CALL_SID, &control, None).expect("encodes");
    let (call_sid, received) = decode(PREFIX, text.as_bytes()).expect("decodes");
    assert_eq!(call_sid, CALL_SID);
    received
}

#[test]
fn every_control_but_say_comes_back_as_it_was_sent() {
    let controls = [
        CallControl::HangUp,
        CallControl::Instruct("Offer the 8 pm slot instead.".into()),
        CallControl::AnsweredBy(AnsweredBy::MachineEndBeep),
        CallControl::SendDigits(DtmfDigits::parse("1w#").expect("digits")),
        CallControl::Transfer {
            target: TransferTarget {
                name: Some("desk".into()),
                number: crate::phone::E164::parse("+14155550100").expect("E.164"),
            },
            summary: "Ann wants to move her booking".into(),
        },
        CallControl::TransferEvent(TransferEvent::Answered),
        CallControl::TransferEvent(TransferEvent::Ended(DialStatus::NoAnswer)),
    ];
    for control in controls {
        assert_eq!(round_trip(control.clone()), Received::Control(control));
    }
}

#[test]
fn a_say_travels_with_its_reply_channel_and_without_one_is_not_routable() {
    let request = SayRequest {
        text: "Your table is booked.".into(),
        wait_for_reply: true,
        reply_timeout: Duration::from_millis(7_500),
        hang_up_after: false,
    };
    let (reply, _rx) = crate::calls::say::SayReplySlot::new();
    let control = CallControl::Say {
        request: request.clone(),
        reply,
    };

    let text = encode(CALL_SID, &control, Some("cb:reply:abc")).expect("encodes");
    let decoded = decode(PREFIX, text.as_bytes()).expect("decodes");

    assert_eq!(
        decoded,
        (
            CALL_SID.to_owned(),
            Received::Say {
                request,
                reply_channel: "cb:reply:abc".into()
            }
        )
    );
    assert!(matches!(
        encode(CALL_SID, &control, None),
        Err(WireError::NotRoutable(_))
    ));
}

#[test]
fn the_message_is_versioned_json_tagged_by_kind() {
    let text = encode(CALL_SID, &CallControl::Instruct("hi".into()), None).expect("encodes");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");

    assert_eq!(json["v"], WIRE_VERSION);
    assert_eq!(json["call_sid"], CALL_SID);
    assert_eq!(json["control"]["kind"], "instruct");
    assert_eq!(json["control"]["text"], "hi");
}

/// A payload and the check of the error it must give.
type Case = (&'static str, fn(&WireError) -> bool);

#[test]
fn malformed_messages_of_other_versions_and_invalid_values_are_refused() {
    let cases: [Case; 7] = [
        ("not json", |e| matches!(e, WireError::Malformed(_))),
        (r#"{"v":2,"call_sid":"x"}"#, |e| {
            matches!(e, WireError::Version(2))
        }),
        (
            r#"{"v":1,"call_sid":"CA0123456789abcdef0123456789abcdef","control":{"kind":"explode"}}"#,
            |e| matches!(e, WireError::Malformed(_)),
        ),
        (
            r#"{"v":1,"call_sid":"CA1","control":{"kind":"hang_up"}}"#,
            |e| matches!(e, WireError::Invalid(_)),
        ),
        (
            r#"{"v":1,"call_sid":"CA0123456789abcdef0123456789abcdef","control":{"kind":"send_digits","digits":"12x"}}"#,
            |e| matches!(e, WireError::Invalid(_)),
        ),
        (
            r#"{"v":1,"call_sid":"CA0123456789abcdef0123456789abcdef","control":{"kind":"transfer_ended","dial_call_status":"exploded"}}"#,
            |e| matches!(e, WireError::Invalid(_)),
        ),
        (
            r#"{"v":1,"call_sid":"CA0123456789abcdef0123456789abcdef","control":{"kind":"say","text":"x","wait_for_reply":false,"reply_timeout_ms":1,"hang_up_after":false,"reply_channel":"other:reply:1"}}"#,
            |e| matches!(e, WireError::Invalid(_)),
        ),
    ];
    for (payload, expected) in cases {
        let error = decode(PREFIX, payload.as_bytes()).expect_err(payload);
        assert!(expected(&error), "{payload}: {error:?}");
    }
    let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(decode(PREFIX, &huge), Err(WireError::TooLarge(_))));
}

#[test]
fn say_answers_come_back_as_they_were_sent() {
    let report = SayReport {
        spoken: "Booked.".into(),
        reply: Some("Thanks".into()),
        ..SayReport::default()
    };
    for answer in [
        Ok(report),
        Err(SayRefusal::Busy),
        Err(SayRefusal::NotRelay),
        Err(SayRefusal::Ending),
        Err(SayRefusal::AwaitingVerdict),
    ] {
        assert_eq!(
            decode_reply(encode_reply(&answer).as_bytes()).expect("decodes"),
            answer
        );
    }
    assert!(decode_reply(br#"{"v":1,"answer":{"refused":"bored"}}"#).is_err());
    assert!(matches!(
        decode_reply(br#"{"v":9,"answer":{"refused":"busy"}}"#),
        Err(WireError::Version(9))
    ));
}

#[test]
fn a_local_call_is_served_here_another_holder_gets_it_and_otherwise_nobody() {
    assert_eq!(decide(true, Some("b"), "a"), Route::Local);
    assert_eq!(decide(true, None, "a"), Route::Local);
    assert_eq!(decide(false, Some("b"), "a"), Route::Remote("b".into()));
    assert_eq!(decide(false, None, "a"), Route::Nowhere);
    assert_eq!(
        decide(false, Some("a"), "a"),
        Route::Nowhere,
        "a stale registry entry naming this instance"
    );
}

#[test]
fn channels_start_with_the_key_prefix() {
    assert_eq!(control_channel("cb:", "node-b"), "cb:control:node-b");
    assert_eq!(reply_channel("cb:", "f00d"), "cb:reply:f00d");
}
