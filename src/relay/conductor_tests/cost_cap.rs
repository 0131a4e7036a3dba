//! Conductor unit tests: the cost meter and its cap.

use super::*;
use crate::cost::PriceTable;

/// 1000 audio output tokens: $0.064 at gpt-realtime-2.1's price.
fn usage_of_1000_audio_tokens_out() -> Value {
    json!({"total_tokens": 1000, "input_tokens": 0, "output_tokens": 1000,
           "output_token_details": {"text_tokens": 0, "audio_tokens": 1000}})
}

/// A started call metered at gpt-realtime-2.1's prices with no Twilio or transcription price, capped at `cap_usd`.
fn metered(cap_usd: Option<f64>) -> Call {
    let mut call = Call::started();
    let mut prices = PriceTable::default();
    prices.twilio_inbound_per_min_usd = 0.0;
    call.conductor.set_cost_meter(CostMeter {
        rates: prices.rates("gpt-realtime-2.1", None, true),
        cap_usd,
    });
    call
}

#[test]
fn a_response_that_reaches_the_cap_asks_the_model_to_wrap_up_and_say_goodbye() {
    let mut call = metered(Some(0.05));
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    let out = call.openai(
        200,
        &response_done_json(RESPONSE_1, "completed", usage_of_1000_audio_tokens_out()),
    );

    let events = openai_events(&out);
    assert_eq!(events.len(), 2, "{out:?}");
    assert_eq!(events[0]["type"], "conversation.item.create");
    assert_eq!(
        events[0]["item"]["content"][0]["text"],
        COST_CAP_INSTRUCTION
    );
    assert_eq!(events[1], json!({"type": "response.create"}));
}

#[test]
fn below_the_cap_nothing_is_asked() {
    let mut call = metered(Some(0.10));
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    let out = call.openai(
        200,
        &response_done_json(RESPONSE_1, "completed", usage_of_1000_audio_tokens_out()),
    );

    assert!(openai_events(&out).is_empty(), "{out:?}");
}

#[test]
fn the_goodbye_after_the_cap_ends_the_call_as_cost_cap_when_its_mark_is_echoed() {
    let mut call = metered(Some(0.05));
    call.speak(100, RESPONSE_1, ITEM_1, 500);
    call.openai(
        200,
        &response_done_json(RESPONSE_1, "completed", usage_of_1000_audio_tokens_out()),
    );
    call.speak(300, RESPONSE_2, ITEM_2, 800);
    let done = call.response_done(400, RESPONSE_2, "completed");
    let final_mark = mark_names(&done);
    assert_eq!(final_mark.len(), 1, "{done:?}");

    let out = call.echo(1200, &final_mark[0]);

    assert_eq!(out, [Action::HangUp(EndReason::CostCap)]);
    let record = call.finish(EndReason::CostCap, 1200);
    let cost = record.cost.expect("a metered call is priced");
    assert_eq!(cost.openai_usd, 0.064);
}

#[test]
fn a_goodbye_that_never_plays_ends_the_call_as_cost_cap_at_the_deadline() {
    let mut call = metered(Some(0.05));
    call.speak(100, RESPONSE_1, ITEM_1, 500);
    call.openai(
        200,
        &response_done_json(RESPONSE_1, "completed", usage_of_1000_audio_tokens_out()),
    );
    let deadline_ms = 200 + COST_CAP_GOODBYE_TIMEOUT.as_millis() as u64;

    let before = call.tick(deadline_ms - 1);
    let at = call.tick(deadline_ms);

    assert!(before.is_empty(), "{before:?}");
    assert_eq!(at, [Action::HangUp(EndReason::CostCap)]);
}

#[test]
fn without_a_cap_the_call_is_still_priced_at_its_end() {
    let mut call = metered(None);
    call.speak(100, RESPONSE_1, ITEM_1, 500);
    let out = call.openai(
        200,
        &response_done_json(RESPONSE_1, "completed", usage_of_1000_audio_tokens_out()),
    );

    let record = call.finish(EndReason::CallerHungUp, 1000);

    assert!(openai_events(&out).is_empty(), "{out:?}");
    assert_eq!(record.cost.map(|c| c.total_usd), Some(0.064));
}
