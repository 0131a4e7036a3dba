//! Conductor unit tests: Floods: the DTMF rate limit, log budgets, protocol violations.

use super::*;

/// A `Write` into a buffer shared with the test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no test panics while holding the log buffer")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `act` with every log line at `info` and above (the server's default level) written to a buffer, and returns
/// those lines.
fn lines_logged_at_info(act: impl FnOnce()) -> Vec<String> {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, act);
    let bytes = buffer.0.lock().expect("the test is done logging").clone();
    String::from_utf8(bytes)
        .expect("log lines are UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn lines_containing<'a>(lines: &'a [String], message: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(message)).collect()
}

fn stop_json(call_sid: &str, stream_sid: &str) -> String {
    json!({
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": stream_sid,
        "stop": {"accountSid": "AC5f1e2d3c4b5a69788796a5b4c3d2e1f0", "callSid": call_sid}
    })
    .to_string()
}

fn error_event_json(code: &str, message: &str) -> String {
    json!({
        "type": "error",
        "event_id": "event_C9xL0018gH7kTq2Ws",
        "error": {"type": "invalid_request_error", "code": code, "message": message, "param": null, "event_id": null}
    })
    .to_string()
}

/// The DTMF items the actions send to the model, as their texts.
fn dtmf_texts(actions: &[Action]) -> Vec<String> {
    openai_events_of_type(actions, "conversation.item.create")
        .iter()
        .map(|e| {
            e["item"]["content"][0]["text"]
                .as_str()
                .expect("a text item")
                .to_owned()
        })
        .collect()
}

#[test]
fn a_dtmf_digit_outside_the_keypad_is_a_skipped_frame_and_nothing_reaches_the_model() {
    let mut call = Call::started();
    let text = dtmf_json(&"7".repeat(60_000));

    // What the bridge does with a frame that does not parse.
    let parsed = parse_twilio_event(&text);
    let logged = call.conductor.on_skipped_frame(call.at(100));

    assert!(parsed.is_err(), "{parsed:?}");
    assert_eq!(logged, Some(0));
    assert_eq!(call.conductor.record().skipped_frames, 1);
}

#[test]
fn a_burst_of_dtmf_keys_is_passed_on_up_to_the_burst_and_the_rest_is_dropped_and_counted() {
    let mut call = Call::started();

    let out: Vec<Action> = (0..100).flat_map(|_| call.dtmf(100, "5")).collect();

    assert_eq!(dtmf_texts(&out).len(), DTMF_BURST as usize);
    assert!(
        dtmf_texts(&out)
            .iter()
            .all(|text| text == "The caller pressed 5")
    );
    assert_eq!(
        call.conductor.record().dropped.dtmf_digits,
        100 - u64::from(DTMF_BURST)
    );
}

#[test]
fn after_the_burst_one_dtmf_key_passes_per_refill_interval() {
    let mut call = Call::started();
    for _ in 0..DTMF_BURST {
        call.dtmf(100, "1");
    }
    let refill_ms = DTMF_REFILL.as_millis() as u64;

    let too_early = call.dtmf(100 + refill_ms - 1, "2");
    let on_time = call.dtmf(100 + refill_ms, "3");
    let right_after = call.dtmf(100 + refill_ms + 1, "4");

    assert!(dtmf_texts(&too_early).is_empty(), "{too_early:?}");
    assert_eq!(dtmf_texts(&on_time), ["The caller pressed 3"]);
    assert!(dtmf_texts(&right_after).is_empty(), "{right_after:?}");
    assert_eq!(call.conductor.record().dropped.dtmf_digits, 2);
}

#[test]
fn a_caller_pressing_three_keys_a_second_for_ten_minutes_never_meets_the_dtmf_limit() {
    let mut call = Call::started();

    let passed: usize = (0..1800u64)
        .map(|i| dtmf_texts(&call.dtmf(100 + i * 333, "#")).len())
        .sum();

    assert_eq!(passed, 1800);
    assert_eq!(call.conductor.record().dropped.dtmf_digits, 0);
}

#[test]
fn a_dtmf_flood_writes_at_most_the_log_burst_of_each_kind_and_bounded_text_to_the_model() {
    let mut call = Call::started();
    let mut out = Vec::new();

    let lines = lines_logged_at_info(|| {
        for i in 0..5_000u64 {
            out.extend(call.dtmf(100 + i / 10, "9"));
        }
    });

    assert_eq!(
        lines_containing(&lines, "caller pressed a key").len(),
        LOG_BURST as usize
    );
    assert_eq!(
        lines_containing(&lines, "DTMF key over the rate limit dropped").len(),
        LOG_BURST as usize
    );
    assert_eq!(lines.len(), 2 * LOG_BURST as usize, "{lines:#?}");
    // 500 ms of flood: the burst and two refills.
    assert_eq!(dtmf_texts(&out).len(), DTMF_BURST as usize + 2);
    assert_eq!(
        call.conductor.record().dropped.dtmf_digits,
        5_000 - u64::from(DTMF_BURST) - 2
    );
}

#[test]
fn a_stop_naming_another_call_sid_is_ignored_and_counted() {
    let mut call = Call::started();

    let out = call.twilio(
        5000,
        &stop_json("CA00000000000000000000000000000001", STREAM_SID),
    );

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1);
    assert_eq!(call.twilio(5020, TWILIO_MEDIA).len(), 1);
}

#[test]
fn a_stop_naming_another_stream_sid_is_ignored_and_counted() {
    let mut call = Call::started();

    let out = call.twilio(
        5000,
        &stop_json(CALL_SID, "MZ00000000000000000000000000000001"),
    );

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1);
}

#[test]
fn a_flood_of_foreign_stops_is_logged_within_the_budget_with_the_call_sid_clipped() {
    let mut call = Call::started();
    let long_call_sid = format!("CA{}", "f".repeat(60_000));
    let stop = stop_json(&long_call_sid, STREAM_SID);

    let lines = lines_logged_at_info(|| {
        for _ in 0..1_000 {
            call.twilio(5000, &stop);
        }
    });

    assert_eq!(lines.len(), LOG_BURST as usize, "{lines:#?}");
    assert!(lines.iter().all(|l| l.len() < 1_000), "a line of 60 KB");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1_000);
    assert_eq!(
        call.twilio(5020, TWILIO_STOP),
        [Action::HangUp(EndReason::CallerHungUp)]
    );
}

#[test]
fn repeated_starts_are_ignored_counted_and_logged_within_the_budget() {
    let mut call = Call::started();

    let lines = lines_logged_at_info(|| {
        for _ in 0..1_000 {
            let out = call.twilio(10, TWILIO_START);
            assert!(out.is_empty(), "{out:?}");
        }
    });

    assert_eq!(
        lines_containing(&lines, "second start message ignored").len(),
        LOG_BURST as usize
    );
    assert_eq!(call.conductor.record().dropped.repeated_starts, 1_000);
    assert_eq!(call.conductor.stream_sid(), Some(STREAM_SID));
}

#[test]
fn an_error_event_flood_is_counted_logged_within_the_budget_and_the_call_goes_on() {
    let mut call = Call::started();
    let refill_ms = LOG_REFILL.as_millis() as u64;
    let mut out = Vec::new();

    let lines = lines_logged_at_info(|| {
        for _ in 0..20_000 {
            out.extend(call.openai(1_000, OPENAI_ERROR));
        }
        out.extend(call.openai(1_000 + refill_ms, OPENAI_ERROR));
    });

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.openai_errors, 20_001);
    assert_eq!(lines.len(), LOG_BURST as usize + 1, "{lines:#?}");
    let suppressed = 20_000 - u64::from(LOG_BURST);
    assert!(
        lines[LOG_BURST as usize].contains(&format!("suppressed={suppressed}")),
        "{}",
        lines[LOG_BURST as usize]
    );
    assert_eq!(call.twilio(1_000 + refill_ms, TWILIO_MEDIA).len(), 1);
}

#[test]
fn an_error_message_of_60000_characters_is_logged_clipped() {
    let mut call = Call::started();
    let error = error_event_json("server_error", &"x".repeat(60_000));

    let lines = lines_logged_at_info(|| {
        call.openai(1_000, &error);
    });

    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(&"x".repeat(LOGGED_TEXT_MAX_BYTES)));
    assert!(!lines[0].contains(&"x".repeat(LOGGED_TEXT_MAX_BYTES + 1)));
}

#[test]
fn a_fatal_error_still_ends_the_call_after_an_error_flood() {
    let mut call = Call::started();
    for _ in 0..100 {
        call.openai(1_000, OPENAI_ERROR);
    }

    let out = call.openai(1_000, &error_event_json("insufficient_quota", "quota"));

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(CallFailure::OpenAiFatal(
            "insufficient_quota".into()
        )))]
    );
}

#[test]
fn skipped_frames_may_be_logged_for_the_burst_then_once_per_refill_with_the_suppressed_count() {
    let mut call = Call::started();
    let refill_ms = LOG_REFILL.as_millis() as u64;

    let burst: Vec<Option<u64>> = (0..LOG_BURST + 100)
        .map(|_| call.conductor.on_skipped_frame(call.at(100)))
        .collect();
    let after_refill = call.conductor.on_skipped_frame(call.at(100 + refill_ms));

    assert!(burst[..LOG_BURST as usize].iter().all(|l| *l == Some(0)));
    assert!(burst[LOG_BURST as usize..].iter().all(Option::is_none));
    assert_eq!(after_refill, Some(100));
    assert_eq!(
        call.conductor.record().skipped_frames,
        u64::from(LOG_BURST) + 101
    );
}

#[test]
fn malformed_openai_events_are_counted_and_may_be_logged_within_the_budget() {
    let mut call = Call::started();

    let logged = (0..1_000)
        .filter(|_| {
            call.conductor
                .on_malformed_openai_event(call.at(100))
                .is_some()
        })
        .count();

    assert_eq!(logged, LOG_BURST as usize);
    assert_eq!(
        call.conductor.record().dropped.malformed_openai_events,
        1_000
    );
}
