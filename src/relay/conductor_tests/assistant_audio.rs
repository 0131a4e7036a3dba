//! Conductor unit tests: Assistant audio deltas forwarded to Twilio with their marks.

use super::*;

#[test]
fn an_audio_delta_becomes_a_twilio_media_with_the_same_payload_followed_by_mark_g0_s0() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    let payload = parse_json(OPENAI_AUDIO_DELTA)["delta"].clone();

    let out = call.openai(120, OPENAI_AUDIO_DELTA);

    assert_eq!(
        twilio_frames(&out),
        [
            json!({"event": "media", "streamSid": STREAM_SID, "media": {"payload": payload}}),
            json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g0:s0"}}),
        ]
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn assistant_audio_before_start_is_not_forwarded_nor_counted() {
    let mut call = Call::new(config());
    call.response_created(0, RESPONSE_1);

    let before_start = call.audio(10, RESPONSE_1, ITEM_1, 100);
    call.twilio(20, TWILIO_START);
    let after_start = call.audio(30, RESPONSE_1, ITEM_1, 100);

    assert!(before_start.is_empty(), "{before_start:?}");
    assert_eq!(kinds(&after_start), ["twilio:media", "twilio:mark g0:s0"]);
}

#[test]
fn successive_deltas_are_each_followed_by_a_mark_with_the_next_sequence_number() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);

    let marks: Vec<String> = (0..3)
        .flat_map(|i| mark_names(&call.audio(10 + i, RESPONSE_1, ITEM_1, 40)))
        .collect();

    assert_eq!(marks, ["g0:s0", "g0:s1", "g0:s2"]);
}
