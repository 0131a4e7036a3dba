//! Barge-in: the caller talks over a long reply. What the caller heard decides the truncation.

use std::time::Duration;

use callbridge::calls::Speaker;
use callbridge::simulate::Observation;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, CALLER_INTERRUPT, spawn_app};

/// One 20 ms frame of μ-law.
const FRAME_MS: i64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_mid_reply_clears_cancels_and_truncates_at_what_was_heard() {
    // Arrange: a long reply streamed only 2x faster than real time, so the response is still being generated when
    // the caller interrupts; the fake's own VAD interruption comes late, so the relay's response.cancel is the one
    // that counts, and deltas already in flight still arrive after it.
    let app = spawn_app(Script {
        responses: vec![
            ScriptedResponse::speak(
                10_000,
                "Let me tell you about all of our specials tonight, starting with the soup and the bread and then \
                 the three kinds of pasta we make in house every single day",
            ),
            ScriptedResponse::speak(400, "Sure, go ahead."),
        ],
        caller_transcripts: vec!["What's on the menu?".into(), "Wait, sorry, stop.".into()],
        speed_up: 2.0,
        interrupt_delay: Duration::from_millis(500),
        late_deltas_after_cancel: 3,
        ..Script::default()
    })
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect("the long reply to start", Duration::from_secs(15), |o| {
        matches!(o, Observation::Media { .. })
    })
    .await;

    // Act: two seconds into the reply, the caller talks over it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    call.stream.send_audio(&CALLER_INTERRUPT);
    let clear = call
        .expect("clear", Duration::from_secs(5), |o| {
            matches!(o, Observation::Clear { .. })
        })
        .await;
    call.expect(
        "the short reply after the interruption",
        Duration::from_secs(10),
        |o| matches!(o, Observation::PlaybackIdle { .. }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("barge_in");

    // Assert: truncate equals what the caller heard, within one frame.
    let Observation::Clear {
        played_ms_at_clear, ..
    } = clear.kind
    else {
        unreachable!()
    };
    let truncates = app.fake.events_of_type("conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let audio_end_ms = truncates[0]["audio_end_ms"].as_i64().expect("audio_end_ms");
    assert!(
        (audio_end_ms - played_ms_at_clear as i64).abs() <= FRAME_MS,
        "truncated at {audio_end_ms} ms but the caller heard {played_ms_at_clear} ms"
    );
    assert!((1500..3500).contains(&audio_end_ms), "{audio_end_ms}");
    // The API accepted it (never past what was sent) and the cancel hit an active response.
    assert!(
        app.fake.errors_sent().is_empty(),
        "{:?}",
        app.fake.errors_sent()
    );
    assert_eq!(app.fake.events_of_type("response.cancel").len(), 1);

    // Late deltas of the cancelled response were not played: after the clear, only the next reply's audio came.
    let after_clear: usize = call
        .stream
        .events()
        .iter()
        .filter(|e| e.at > clear.at)
        .map(|e| match e.kind {
            Observation::Media { bytes, .. } => bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(
        after_clear,
        400 * 8,
        "only the 400 ms reply may follow the clear"
    );

    // The marks pending at the clear came back stale; the next reply's marks were echoed as played.
    let events = call.stream.events();
    assert!(
        events
            .iter()
            .any(|e| e.at >= clear.at
                && matches!(e.kind, Observation::MarkEchoed { stale: true, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| e.at > clear.at
                && matches!(e.kind, Observation::MarkEchoed { stale: false, .. }))
    );

    // The transcript keeps only the words that were heard, marked as interrupted.
    let cut = record
        .transcript
        .iter()
        .find(|t| t.speaker == Speaker::Assistant && t.interrupted)
        .expect("the interrupted turn");
    let words = cut.text.split_whitespace().count();
    assert!(
        (3..=12).contains(&words),
        "{words} words kept: {:?}",
        cut.text
    );
}
