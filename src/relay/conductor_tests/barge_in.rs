//! Conductor unit tests: Barge-in: clear, cancel, truncate at what was heard.

use super::*;

#[test]
fn speech_over_unplayed_audio_sends_clear_then_cancels_the_active_response_then_truncates_at_the_time_heard()
 {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);

    let out = call.speech_started(250);

    assert_eq!(
        kinds(&out),
        [
            "twilio:clear",
            "openai:response.cancel",
            "openai:conversation.item.truncate"
        ]
    );
    assert_eq!(
        twilio_frames(&out),
        [json!({"event": "clear", "streamSid": STREAM_SID})]
    );
    let events = openai_events(&out);
    assert_eq!(events[0]["response_id"], RESPONSE_1);
    assert_eq!(events[1]["item_id"], ITEM_1);
    assert_eq!(events[1]["content_index"], 0);
    assert_eq!(events[1]["audio_end_ms"], 250);
}

#[test]
fn a_mark_echo_moves_the_truncate_point_to_the_playback_twilio_confirmed() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    for _ in 0..5 {
        call.audio(0, RESPONSE_1, ITEM_1, 200);
    }
    // Twilio confirms the first 200 ms played only at 300 ms: playback started 100 ms late.
    assert!(call.echo(300, "g0:s0").is_empty());

    let out = call.speech_started(500);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["audio_end_ms"], 400);
}

#[test]
fn speech_over_unplayed_audio_of_a_finished_response_clears_and_truncates_without_a_cancel() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.response_done(50, RESPONSE_1, "completed");

    let out = call.speech_started(600);

    assert_eq!(
        kinds(&out),
        ["twilio:clear", "openai:conversation.item.truncate"]
    );
    assert_eq!(openai_events(&out)[0]["audio_end_ms"], 600);
}

#[test]
fn speech_while_a_response_is_active_but_all_its_audio_played_only_cancels_that_response() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);

    let out = call.speech_started(500);

    assert_eq!(kinds(&out), ["openai:response.cancel"]);
    assert_eq!(
        openai_events(&out)[0],
        json!({"type": "response.cancel", "response_id": RESPONSE_1})
    );
}

#[test]
fn speech_while_a_response_is_active_before_any_audio_only_cancels_that_response() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);

    let out = call.speech_started(100);

    assert_eq!(kinds(&out), ["openai:response.cancel"]);
    assert_eq!(openai_events(&out)[0]["response_id"], RESPONSE_1);
}

#[test]
fn speech_with_nothing_unplayed_and_no_active_response_does_nothing_at_all() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);
    call.response_done(50, RESPONSE_1, "completed");

    let out = call.speech_started(500);

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn only_items_with_unplayed_audio_are_truncated_each_at_the_share_of_it_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);
    call.response_done(10, RESPONSE_1, "completed");
    call.speak(20, RESPONSE_2, ITEM_2, 300);

    // 250 ms played: all of item 1 (100 ms), then 150 ms of item 2.
    let out = call.speech_started(250);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["item_id"], ITEM_2);
    assert_eq!(truncates[0]["audio_end_ms"], 150);
    assert_eq!(
        openai_events_of_type(&out, "response.cancel")[0]["response_id"],
        RESPONSE_2
    );
}

#[test]
fn a_truncate_at_the_end_of_an_odd_sized_delta_does_not_exceed_the_whole_ms_sent() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    // 805 bytes: 100.625 ms, of which 100 whole ms.
    call.openai(
        0,
        &audio_delta_json(RESPONSE_1, ITEM_1, &audio_bytes_b64(805)),
    );

    // At 100 ms, 800 of the 805 bytes have played: audio is unplayed, and 100 whole ms were sent.
    let out = call.speech_started(100);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");

    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["audio_end_ms"], 100);
}

#[test]
fn deltas_of_a_cancelled_response_that_arrive_after_the_barge_in_are_dropped() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let late = call.audio(120, RESPONSE_1, ITEM_1, 200);
    let done = call.response_done(130, RESPONSE_1, "cancelled");
    call.response_created(500, RESPONSE_2);
    let next = call.audio(510, RESPONSE_2, ITEM_2, 200);

    assert!(late.is_empty(), "{late:?}");
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(kinds(&next), ["twilio:media", "twilio:mark g1:s1"]);
}

#[test]
fn marks_echoed_because_of_the_clear_do_nothing() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.audio(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let stale: Vec<Action> = ["g0:s0", "g0:s1"]
        .iter()
        .flat_map(|mark| call.echo(105, mark))
        .collect();
    let never_sent = call.echo(110, "g7:s99");
    let again = call.speech_started(120);

    assert!(stale.is_empty(), "{stale:?}");
    assert!(never_sent.is_empty(), "{never_sent:?}");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn a_second_speech_start_before_the_cancelled_response_is_done_sends_nothing_more() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let out = call.speech_started(150);

    assert!(out.is_empty(), "{out:?}");
}

#[derive(Debug, Clone)]
enum Step {
    Delta { second_item: bool, bytes: usize },
    Wait { ms: u64 },
    EchoOldest,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), 1_usize..4000).prop_map(|(second_item, bytes)| Step::Delta { second_item, bytes }),
        2 => (0_u64..400).prop_map(|ms| Step::Wait { ms }),
        1 => Just(Step::EchoOldest),
    ]
}

proptest! {
    #[test]
    fn a_truncate_never_asks_for_more_audio_than_was_sent_for_its_item_and_comes_with_a_clear(
        steps in prop::collection::vec(step(), 1..40),
        barge_in_after_ms in 0_u64..3000,
    ) {
        let mut call = Call::started();
        call.response_created(0, RESPONSE_1);
        let mut now_ms = 0;
        let mut sent_bytes: HashMap<&str, usize> = HashMap::new();
        let mut pending: VecDeque<String> = VecDeque::new();
        for step in &steps {
            match *step {
                Step::Delta { second_item, bytes } => {
                    let item = if second_item { ITEM_2 } else { ITEM_1 };
                    let out = call.openai(now_ms, &audio_delta_json(RESPONSE_1, item, &audio_bytes_b64(bytes)));
                    *sent_bytes.entry(item).or_default() += bytes;
                    pending.extend(mark_names(&out));
                }
                Step::Wait { ms } => now_ms += ms,
                Step::EchoOldest => {
                    if let Some(mark) = pending.pop_front() {
                        let out = call.echo(now_ms, &mark);
                        prop_assert!(out.is_empty(), "{:?}", out);
                    }
                }
            }
        }

        let out = call.speech_started(now_ms + barge_in_after_ms);

        let truncates = openai_events_of_type(&out, "conversation.item.truncate");
        for truncate in &truncates {
            let item = truncate["item_id"].as_str().expect("truncate names an item");
            let sent_ms = sent_bytes.get(item).copied().unwrap_or(0) as u64 / 8;
            let audio_end_ms = truncate["audio_end_ms"].as_u64().expect("a whole number of ms");
            prop_assert!(audio_end_ms <= sent_ms, "{} > {} for {}", audio_end_ms, sent_ms, item);
            prop_assert_eq!(&truncate["content_index"], &json!(0));
        }
        let cleared = kinds(&out).iter().any(|kind| kind == "twilio:clear");
        prop_assert_eq!(cleared, !truncates.is_empty());
    }
}

#[test]
fn a_barge_in_leaves_an_earlier_reply_that_played_in_full_uninterrupted() {
    // Arrange: a greeting that played in full, then a second reply the caller talks over while it is generated.
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 200);
    call.assistant_said(10, RESPONSE_1, ITEM_1, GREETING);
    call.response_done(20, RESPONSE_1, "completed");
    call.echo(200, "g0:s0");
    call.speak(1000, RESPONSE_2, ITEM_2, 1000);
    call.assistant_said(1010, RESPONSE_2, ITEM_2, TEN_WORDS);

    // Act
    call.speech_started(1500);
    let record = call.finish(EndReason::CallerHungUp, 2000);

    // Assert
    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].text, GREETING);
    assert!(!turns[0].interrupted, "{turns:?}");
    assert!(turns[1].interrupted, "{turns:?}");
    assert!(word_count(&turns[1].text) < 10, "{turns:?}");
}
