//! Calls on GPT-Live (`CALLBRIDGE_ENGINE=live`, or `engine: "live"` per call) against the fake Live server: the same
//! scenarios as the Realtime fake's. Each writes the client events it sent for the conformance check
//! (`tests/conformance/test_live_events.py`).

use std::time::Duration;

use callbridge::calls::Speaker;
use callbridge::calls::model::CallStatus;
use callbridge::calls::service::PlaceCall;
use callbridge::config::Engine;
use callbridge::simulate::Observation;

use crate::fake_live::{FakeLive, LiveScript, LiveTurn};
use crate::fake_realtime::Script;
use crate::helpers::{
    CALLER_HELLO, CALLER_INTERRUPT, TestApp, answer_outbound, outbound_env, outbound_twilio,
    server_closed, spawn_app_with,
};

const HELLO: &str = "Hi, I'd like to book a table for four at seven tonight, please.";
const REPLY: &str = "Sure, a table for four at seven tonight. Anything else?";

/// The app with GPT-Live as its default engine, and the fake Live server it talks to.
async fn live_app(script: LiveScript, extra_env: &[(&str, &str)]) -> (TestApp, FakeLive) {
    let live = FakeLive::start(script).await;
    let url = live.url();
    let mut env = vec![
        ("CALLBRIDGE_ENGINE", "live"),
        ("CALLBRIDGE_LIVE_URL", url.as_str()),
    ];
    env.extend_from_slice(extra_env);
    (spawn_app_with(Script::default(), &env).await, live)
}

fn decode_b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_call_on_live_relays_recorded_speech_both_ways_and_keeps_the_transcript() {
    // Arrange
    let (app, live) = live_app(
        LiveScript {
            turns: vec![LiveTurn::speak(1500, REPLY)],
            caller_transcripts: vec![HELLO.into()],
            ..LiveScript::default()
        },
        &[],
    )
    .await;

    // Act: the caller speaks, the model answers, the caller hangs up after hearing it.
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect(
        "the reply to play out",
        Duration::from_secs(15),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 1500),
    )
    .await;
    // The model's turn ends after its quiet gap; then the caller hangs up.
    tokio::time::sleep(Duration::from_millis(900)).await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    live.dump_for_conformance("live_full_inbound_call");

    // Assert: one session, opened with session.start in G.711 μ-law at 8 kHz, on the Live path with no query.
    let (path, _, accepted) = live.upgrades()[0].clone();
    assert_eq!(path, "/v1/live/sessions");
    assert!(accepted);
    let start = &live.events_of_type("session.start")[0]["session"];
    assert_eq!(start["model"], "gpt-live-1");
    assert_eq!(start["audio"]["format"]["type"], "audio/pcmu");
    assert_eq!(start["audio"]["format"]["rate"], 8000);
    assert_eq!(start["delegation"]["type"], "responses");
    assert_eq!(
        start["delegation"]["responses"]["tools"][0]["name"],
        "end_call"
    );
    // The caller's audio reached GPT-Live byte for byte.
    let appended: Vec<u8> = live
        .events_of_type("session.input_audio.append")
        .iter()
        .flat_map(|e| decode_b64(e["audio"].as_str().expect("audio")))
        .collect();
    assert!(
        appended
            .windows(CALLER_HELLO.len())
            .any(|w| w == CALLER_HELLO.as_slice()),
        "the recorded speech must arrive unchanged"
    );
    // The model's audio reached the caller in full, every mark echoed as played.
    assert_eq!(call.assistant_ms_received(), 1500);
    // The record: the caller's turn then the model's, on engine live.
    assert_eq!(record.end_reason.as_deref(), Some("caller_hung_up"));
    assert_eq!(record.engine, Some(Engine::Live));
    let turns: Vec<(Speaker, &str)> = record
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        vec![(Speaker::Caller, HELLO), (Speaker::Assistant, REPLY)]
    );
    // Nothing the relay sent was refused.
    assert!(
        live.server_events_of_type("error").is_empty(),
        "{:?}",
        live.server_events_of_type("error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_talking_over_a_live_reply_clears_twilio_and_cuts_the_transcript_to_what_was_heard()
 {
    // Arrange: a long reply, sent 4x faster than real time: most of it waits in Twilio's buffer.
    let long = "Let me tell you about all of our specials tonight, starting with the soup and the bread and then \
                the three kinds of pasta we make in house every single day";
    let (app, live) = live_app(
        LiveScript {
            turns: vec![
                LiveTurn::speak(8000, long),
                LiveTurn::speak(400, "Sure, go ahead."),
            ],
            caller_transcripts: vec!["What's on the menu?".into(), "Wait, sorry, stop.".into()],
            ..LiveScript::default()
        },
        &[],
    )
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
    call.expect("the short reply", Duration::from_secs(10), |o| {
        matches!(o, Observation::PlaybackIdle { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    live.dump_for_conformance("live_barge_in");

    // Assert: Twilio's buffer was cleared while most of the reply was unplayed.
    let Observation::Clear {
        played_ms_at_clear, ..
    } = clear.kind
    else {
        unreachable!()
    };
    assert!(
        (1500..6000).contains(&played_ms_at_clear),
        "{played_ms_at_clear}"
    );
    // Live has no truncate or cancel: none was sent.
    let types: Vec<String> = live
        .client_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !types
            .iter()
            .any(|t| t.contains("truncate") || t.contains("cancel")),
        "{types:?}"
    );
    // The long turn keeps only what was heard, marked interrupted; the caller's interruption follows it.
    let cut = record
        .transcript
        .iter()
        .find(|t| t.speaker == Speaker::Assistant && t.interrupted)
        .expect("an interrupted assistant turn");
    assert!(cut.text.starts_with("Let me tell you"), "{}", cut.text);
    assert!(cut.text.len() < long.len(), "{}", cut.text);
    assert!(
        record
            .transcript
            .iter()
            .any(|t| t.speaker == Speaker::Caller && t.text == "Wait, sorry, stop."),
        "{:?}",
        record.transcript
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_on_live_hangs_up_once_the_farewell_has_played() {
    // Arrange: the model says goodbye, then its backend calls end_call.
    let farewell = "Thank you for calling, goodbye!";
    let (app, live) = live_app(
        LiveScript {
            turns: vec![LiveTurn::speak(1200, farewell).then_call("end_call", "{}")],
            caller_transcripts: vec!["That's all, bye.".into()],
            ..LiveScript::default()
        },
        &[],
    )
    .await;

    // Act
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    let hang_up = call.expect_hang_up(Duration::from_secs(15)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    live.dump_for_conformance("live_end_call");

    // Assert: the whole farewell was heard before the hang-up (its final mark echoed as played).
    assert_eq!(call.assistant_ms_received(), 1200);
    let events = call.stream.events();
    let last_played = events
        .iter()
        .filter(|e| matches!(e.kind, Observation::MarkEchoed { stale: false, .. }))
        .map(|e| e.at)
        .max()
        .expect("marks echoed");
    assert!(last_played <= hang_up.at);
    assert_eq!(record.end_reason.as_deref(), Some("goodbye"));
    // The tool call was answered through the Responses backend: its output, then response.create.
    let types: Vec<String> = live
        .client_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .filter(|t| t.starts_with("response."))
        .collect();
    assert_eq!(types, ["response.item.create", "response.create"]);
    let output = &live.events_of_type("response.item.create")[0]["item"];
    assert_eq!(output["type"], "function_call_output");
    assert!(
        output["call_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    // The session was closed when the call ended.
    assert!(live.wait_for_closed(1, Duration::from_secs(5)).await);
    assert_eq!(live.events_of_type("session.close").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_on_live_closes_the_session_and_keeps_the_usage() {
    // Arrange
    let (app, live) = live_app(
        LiveScript {
            turns: vec![LiveTurn::speak(600, "Hello, how can I help?")],
            caller_transcripts: vec![HELLO.into()],
            ..LiveScript::default()
        },
        &[],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect(
        "the reply to play out",
        Duration::from_secs(15),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 600),
    )
    .await;

    // Act
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    live.dump_for_conformance("live_caller_hangs_up");

    // Assert
    assert_eq!(record.end_reason.as_deref(), Some("caller_hung_up"));
    assert!(live.wait_for_closed(1, Duration::from_secs(5)).await);
    assert_eq!(live.events_of_type("session.close").len(), 1);
    let reported = live.server_events_of_type("session.usage.updated");
    let seconds = reported.last().expect("usage reported")["usage"]["seconds"]
        .as_u64()
        .expect("seconds");
    assert!(seconds > 0, "the call lasted seconds");
    assert_eq!(record.usage.live_active_seconds, seconds);
    assert_eq!(record.usage.total_tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_live_closing_mid_call_ends_the_call_as_openai_closed() {
    // Arrange: the fake closes the session a second and a half after it started.
    let (app, live) = live_app(
        LiveScript {
            close_after: Some(Duration::from_millis(1500)),
            ..LiveScript::default()
        },
        &[],
    )
    .await;

    // Act
    let call = app.call().await;
    let closed = call.expect_hang_up(Duration::from_secs(10)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    live.dump_for_conformance("live_engine_closes");

    // Assert: the media stream closed with 1011 and the reason.
    let Observation::Closed { code, reason, .. } = closed.kind else {
        unreachable!()
    };
    assert_eq!(code, Some(1011));
    assert_eq!(reason, "error:openai_closed");
    assert_eq!(record.end_reason.as_deref(), Some("error:openai_closed"));
}

const CALL_SID: &str = "CA11112222333344445555666677779999";
const RESTAURANT: &str = "+14155552671";

#[actix_web::test]
async fn an_outbound_call_placed_with_engine_live_runs_on_live_with_its_instructions_and_greeting()
{
    // Arrange: Realtime is the server's default; the call asks for Live.
    let twilio = outbound_twilio(CALL_SID);
    let live = FakeLive::start(LiveScript {
        turns: vec![LiveTurn::speak(800, "Hello, I'm calling to book a table.")],
        ..LiveScript::default()
    })
    .await;
    let url = live.url();
    let mut env = outbound_env(&twilio);
    env.push(("CALLBRIDGE_LIVE_URL", &url));
    let app = spawn_app_with(Script::default(), &env).await;

    // Act: place it, answer it as Twilio would, hear the greeting, hang up.
    let placed = app
        .calls
        .place_call(PlaceCall {
            to: RESTAURANT.into(),
            instructions: "Book a table for 4 tonight at 7:30 under the name Rivera.".into(),
            greeting: Some("Hello, I'm calling to book a table.".into()),
            engine: Some(Engine::Live),
            ..PlaceCall::default()
        })
        .await
        .expect("placed");
    assert_eq!(placed.engine, Some(Engine::Live));
    let stream = answer_outbound(&app, &placed.id, CALL_SID).await;
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= 800),
            Duration::from_secs(15),
        )
        .await
        .expect("the greeting plays");
    stream.stop().await;
    server_closed(&stream, Duration::from_secs(5)).await;
    live.wait_for_closed(1, Duration::from_secs(5)).await;
    live.dump_for_conformance("live_outbound_call");

    // Assert: the session carried this call's instructions; the greeting was asked for as commentary.
    let start = &live.events_of_type("session.start")[0]["session"];
    let instructions = start["instructions"].as_str().expect("instructions");
    assert!(
        instructions.contains("under the name Rivera"),
        "{instructions}"
    );
    assert!(
        start["delegation"]["responses"]["tools"][0]["parameters"]["properties"]["outcome"]
            .is_object(),
        "{start}"
    );
    let commentary = &live.events_of_type("session.commentary.append")[0];
    assert!(
        commentary["content"]
            .as_str()
            .is_some_and(|c| c.contains("Hello, I'm calling to book a table.")),
        "{commentary}"
    );
    // The Realtime fake was never asked for a session.
    assert_eq!(app.fake.connections(), 0);
    let call = app
        .calls
        .get_call(&placed.id, Some(5))
        .await
        .expect("the call");
    assert_eq!(call.engine, Some(Engine::Live));
    assert_ne!(call.status, CallStatus::Queued);
}
