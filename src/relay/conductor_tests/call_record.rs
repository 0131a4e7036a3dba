//! Conductor unit tests: The call record.

use super::*;

#[test]
fn caller_and_assistant_turns_are_recorded_in_order_with_their_offsets() {
    let mut call = Call::started();
    call.caller_said(1200, "Hi, I'd like a table for four.");
    call.speak(1300, RESPONSE_1, ITEM_1, 2000);
    call.assistant_said(1400, RESPONSE_1, ITEM_1, "Sure, for what time?");
    call.response_done(1450, RESPONSE_1, "completed");
    call.caller_said(5000, "Seven thirty.");

    let record = call.finish(EndReason::CallerHungUp, 6000);

    let turns: Vec<(Speaker, &str, u64, bool, Option<&str>)> = record
        .turns
        .iter()
        .map(|t| {
            (
                t.speaker,
                t.text.as_str(),
                t.offset_ms,
                t.interrupted,
                t.item_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            (
                Speaker::Caller,
                "Hi, I'd like a table for four.",
                1200,
                false,
                None
            ),
            (
                Speaker::Assistant,
                "Sure, for what time?",
                1400,
                false,
                Some(ITEM_1)
            ),
            (Speaker::Caller, "Seven thirty.", 5000, false, None),
        ]
    );
}

#[test]
fn an_assistant_turn_whose_transcript_arrives_after_the_barge_in_is_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.speech_started(2000);

    call.assistant_said(2100, RESPONSE_1, ITEM_1, TEN_WORDS);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(word_count(&turns[0].text), 5, "{}", turns[0].text);
    assert_eq!(turns[0].text, "One two three four five");
}

#[test]
fn an_assistant_turn_recorded_before_the_barge_in_is_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");
    assert!(!assistant_turns(call.conductor.record())[0].interrupted);

    call.speech_started(2000);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(word_count(&turns[0].text), 5, "{}", turns[0].text);
    assert_eq!(turns[0].offset_ms, 10);
}

#[test]
fn a_turn_cancelled_while_generating_keeps_no_more_words_than_could_be_spoken_in_the_time_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 2000);
    call.speech_started(1000);

    call.assistant_said(
        1100,
        RESPONSE_1,
        ITEM_1,
        &format!("{TEN_WORDS} {TEN_WORDS}"),
    );
    let record = call.finish(EndReason::CallerHungUp, 9000);

    // Half the audio sent would be 10 of the 20 words; one second heard at a brisk 3 words/s is 3.
    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(turns[0].text, "One two three");
}

#[test]
fn an_assistant_turn_of_which_nothing_was_heard_is_not_recorded_when_its_transcript_arrives_after_the_barge_in()
 {
    let mut call = Call::started();
    call.speak(1000, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(1000);

    call.assistant_said(1100, RESPONSE_1, ITEM_1, "Sure, Friday at seven.");
    let record = call.finish(EndReason::CallerHungUp, 9000);

    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn an_assistant_turn_of_which_nothing_was_heard_is_not_kept_as_an_empty_turn_when_its_transcript_came_first()
 {
    let mut call = Call::started();
    call.speak(1000, RESPONSE_1, ITEM_1, 1000);
    call.assistant_said(1000, RESPONSE_1, ITEM_1, "Sure, Friday at seven.");
    call.response_done(1000, RESPONSE_1, "completed");

    call.speech_started(1000);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    // Same record as when the transcript arrives after the barge-in: no turn for words nobody heard.
    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn a_reply_cancelled_before_any_of_its_audio_was_sent_is_not_recorded_as_heard() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    call.openai(
        50,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "Sure, Friday at"),
    );

    call.speech_started(100);
    call.assistant_said(120, RESPONSE_1, ITEM_1, "Sure, Friday at");
    call.response_done(130, RESPONSE_1, "cancelled");
    let record = call.finish(EndReason::CallerHungUp, 9000);

    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn finishing_a_call_hung_up_mid_reply_cuts_the_unplayed_turn() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");

    let record = call.finish(EndReason::CallerHungUp, 1000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    // 1000 of 4000 ms heard: a quarter of ten words, rounded.
    assert_eq!(turns[0].text, "One two three");
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp));
    assert_eq!(record.duration_ms, 1000);
}

#[test]
fn finishing_a_call_whose_reply_fully_played_keeps_the_whole_turn() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");

    let record = call.finish(EndReason::Goodbye, 1000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(!turns[0].interrupted);
    assert_eq!(turns[0].text, TEN_WORDS);
    assert_eq!(record.end_reason, Some(EndReason::Goodbye));
}

#[test]
fn finishing_mid_reply_records_the_transcript_received_so_far_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.openai(
        10,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "One two three four five "),
    );
    call.openai(
        20,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "six seven eight nine ten."),
    );

    let record = call.finish(EndReason::CallerHungUp, 2000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(turns[0].text, "One two three four five");
}

#[test]
fn usage_is_summed_over_every_response_done() {
    let mut call = Call::started();
    let usage = json!({
        "total_tokens": 100,
        "input_tokens": 60,
        "output_tokens": 40,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 50, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 5, "audio_tokens": 35}
    });

    call.openai(100, OPENAI_RESPONSE_DONE);
    call.openai(200, &response_done_json(RESPONSE_2, "completed", usage));

    let total = call.conductor.record().usage;
    assert_eq!(total.total_tokens, 1742 + 100);
    assert_eq!(total.input_tokens, 1418 + 60);
    assert_eq!(total.output_tokens, 324 + 40);
    assert_eq!(total.input_token_details.text_tokens, 612 + 10);
    assert_eq!(total.input_token_details.audio_tokens, 806 + 50);
    assert_eq!(total.input_token_details.cached_tokens, 1152);
    assert_eq!(total.output_token_details.text_tokens, 71 + 5);
    assert_eq!(total.output_token_details.audio_tokens, 253 + 35);
}
