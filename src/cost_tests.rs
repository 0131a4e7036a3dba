//! Unit tests of the cost estimate.

use super::*;
use crate::realtime::usage::{InputTokenDetails, OutputTokenDetails};

fn usage(text_in: u64, audio_in: u64, cached: u64, text_out: u64, audio_out: u64) -> Usage {
    Usage {
        total_tokens: text_in + audio_in + text_out + audio_out,
        input_tokens: text_in + audio_in,
        output_tokens: text_out + audio_out,
        input_token_details: InputTokenDetails {
            text_tokens: text_in,
            audio_tokens: audio_in,
            cached_tokens: cached,
        },
        output_token_details: OutputTokenDetails {
            text_tokens: text_out,
            audio_tokens: audio_out,
        },
        live_active_seconds: 0,
    }
}

#[test]
fn a_call_with_known_usage_costs_what_the_published_prices_say() {
    let rates = PriceTable::default().rates("gpt-realtime-2.1", Some("gpt-transcribe"), true);

    // 90 s inbound: 100 text + 1000 audio tokens in, 50 text + 2000 audio tokens out.
    let cost = rates.estimate(&usage(100, 1000, 0, 50, 2000), 90_000);

    // (100 × 4 + 1000 × 32 + 50 × 24 + 2000 × 64) / 1M = 0.1616; 1.5 min × 0.0045; 2 started min × 0.0085.
    assert_eq!(cost.openai_usd, 0.1616);
    assert_eq!(cost.transcription_usd, 0.00675);
    assert_eq!(cost.twilio_usd, 0.017);
    assert_eq!(cost.total_usd, 0.18535);
    assert!(cost.model_priced);
    assert_eq!(cost.prices_as_of, PRICES_AS_OF);
}

#[test]
fn cached_input_is_billed_at_the_cached_price_split_by_kind() {
    let rates = PriceTable::default().rates("gpt-realtime-2.1", None, false);

    // 1000 text + 3000 audio in, 2000 of them cached: 500 text and 1500 audio at 0.40.
    let cost = rates.estimate(&usage(1000, 3000, 2000, 0, 0), 0);

    let expected = (500.0 * 4.0 + 500.0 * 0.40 + 1500.0 * 32.0 + 1500.0 * 0.40) / 1e6;
    assert!((cost.openai_usd - expected).abs() < 1e-9, "{cost:?}");
    assert_eq!(cost.twilio_usd, 0.0, "no minute started");
}

#[test]
fn an_outbound_call_pays_the_outbound_minute_and_every_started_minute_counts() {
    let rates = PriceTable::default().rates("gpt-realtime-2.1", None, false);

    let cost = rates.estimate(&Usage::default(), 60_001);

    assert_eq!(cost.twilio_usd, 2.0 * DEFAULT_TWILIO_OUTBOUND_PER_MIN_USD);
}

#[test]
fn an_unknown_model_is_estimated_without_its_tokens_and_says_so() {
    let rates = PriceTable::default().rates("someone-elses-model", None, true);

    let cost = rates.estimate(&usage(10, 10, 0, 10, 10), 1000);

    assert!(!cost.model_priced);
    assert_eq!(cost.openai_usd, 0.0);
}

#[test]
fn a_dated_snapshot_takes_its_models_price() {
    let table = PriceTable::default();

    assert_eq!(
        table.price("gpt-realtime-2.1-2026-10-01"),
        table.price("gpt-realtime-2.1")
    );
    assert_eq!(table.price("gpt-realtime-2.10"), None);
}

#[test]
fn an_override_changes_the_named_prices_and_can_add_a_per_minute_model() {
    let mut table = PriceTable::default();

    table
        .apply_override("gpt-realtime-2.1: audio_out=50 per_min=0.01")
        .expect("valid");
    table
        .apply_override("gpt-live:per_min=0.06")
        .expect("valid");

    let price = table.price("gpt-realtime-2.1").expect("known");
    assert_eq!(
        (price.audio_out, price.audio_in, price.per_min),
        (50.0, 32.0, 0.01)
    );
    let live = table
        .rates("gpt-live", None, true)
        .estimate(&Usage::default(), 120_000);
    assert_eq!(live.openai_usd, 0.12);
}

#[test]
fn a_malformed_override_is_refused_with_what_is_wrong() {
    let mut table = PriceTable::default();

    let no_model = table.apply_override("audio_out=50");
    let bad_key = table.apply_override("gpt-realtime-2.1:audio=50");
    let negative = table.apply_override("gpt-realtime-2.1:audio_in=-1");

    assert!(no_model.is_err());
    assert!(bad_key.expect_err("unknown key").contains("audio_out"));
    assert!(negative.expect_err("negative").contains(">= 0"));
    assert_eq!(table, PriceTable::default(), "nothing changed");
}

#[test]
fn a_gpt_live_call_is_priced_by_the_active_minutes_it_reported_not_the_call_length() {
    let table = PriceTable::default();
    let usage = Usage {
        live_active_seconds: 90,
        ..Usage::default()
    };

    let cost = table
        .rates("gpt-live-1", None, true)
        .estimate(&usage, 300_000);

    assert!(cost.model_priced);
    assert_eq!(cost.openai_usd, 0.075, "1.5 active minutes at $0.05");
    assert_eq!(cost.transcription_usd, 0.0);
}
