//! Benchmark of call set-up latency, end to end over loopback: the real app (`Application::build_with_listener`) on
//! `127.0.0.1:0`, pointed at the integration tests' fake OpenAI Realtime server, with Twilio played by
//! `callbridge::simulate` (the signed webhook, then a Media Stream client with real 20 ms pacing).
//!
//! Run with `cargo bench --bench call_latency` (release profile). It prints figures (min / median / p95 / max in
//! ms); it asserts nothing about time (the machines are shared and noisy). What it measures:
//!
//! 1. Assistant speaks first, [`SEQUENTIAL_CALLS`] calls one after the other, then [`CONCURRENT_CALLS`] at once:
//!    webhook → TwiML (the POST until the whole answer is read), the stream's WebSocket upgrade, and `start` sent →
//!    first assistant `media` received. The fake answers every response [`RESPONSE_DELAY`] after
//!    `response.created`, so start → first audio ≈ that delay + the relay's overhead. For each call it also records
//!    whether the pre-connected Realtime session was ready before `start` was sent: the fake had received
//!    `session.update` (and answered `session.updated`) for every call answered so far.
//! 2. Assistant waits for the caller, [`SPEECH_CALLS`] calls: the caller says `tests/fixtures/caller-hello.ulaw`;
//!    end of the caller's audio (its last frame sent) → first assistant audio. This includes the fake's server-VAD
//!    silence (the session's `silence_duration_ms`, less the recording's own trailing silence) and the response delay.
//! 3. A cross-check through `callbridge::simulate::run`, the code path of `callbridge simulate`: its
//!    `SimulationReport` timings for [`SIMULATE_CALLS`] calls.

#[allow(dead_code, unused_imports)]
#[path = "../tests/integration/fake_realtime/mod.rs"]
mod fake_realtime;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use callbridge::config::{Requirement, Settings};
use callbridge::simulate::webhook::random_hex_id;
use callbridge::simulate::{
    MediaClientConfig, MediaStreamClient, Observation, SimulateOptions, WebhookCall,
    local_stream_url,
};
use callbridge::startup::Application;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use fake_realtime::{FakeRealtime, SPEECH_RMS_THRESHOLD, Script, ScriptedResponse, frame_rms};

/// The auth token the app checks webhook signatures with.
const AUTH_TOKEN: &str = "bench-auth-token-0123456789abcdef";
/// The public URL the app believes Twilio reaches it at (signatures are computed over it).
const PUBLIC_URL: &str = "https://callbridge.test";
/// The fake's fixed time from `response.created` to the response's first output (the model's time to first audio).
const RESPONSE_DELAY: Duration = Duration::from_millis(300);
/// Audio of each scripted response, ms.
const RESPONSE_AUDIO_MS: u64 = 600;
/// Calls placed one after the other, assistant speaking first.
const SEQUENTIAL_CALLS: usize = 20;
/// Calls placed at once, assistant speaking first.
const CONCURRENT_CALLS: usize = 10;
/// Calls where the caller speaks first (each lasts about 4.5 s).
const SPEECH_CALLS: usize = 8;
/// Calls through `simulate::run`.
const SIMULATE_CALLS: usize = 3;
/// Longest wait for any one observation before the call counts as failed.
const OBSERVATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of one Twilio media frame of μ-law, bytes (20 ms).
const FRAME_BYTES: usize = 160;

/// The app on a loopback port with its fake OpenAI.
struct BenchApp {
    /// `http://127.0.0.1:PORT`
    address: String,
    /// The fake Realtime server the app talks to.
    fake: FakeRealtime,
    /// Webhooks answered with TwiML so far (each one pre-connects a Realtime session).
    answered: AtomicUsize,
    /// Ends every live call.
    shutdown: CancellationToken,
}

async fn spawn_app(assistant_speaks_first: bool) -> BenchApp {
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(RESPONSE_AUDIO_MS, "Hello!")],
        response_delay: RESPONSE_DELAY,
        ..Script::default()
    })
    .await;
    let env: HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ("OPENAI_API_KEY", "sk-bench-key".to_owned()),
        ("PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("CALLBRIDGE_HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        (
            "CALLBRIDGE_ASSISTANT_SPEAKS_FIRST",
            assistant_speaks_first.to_string(),
        ),
        ("OPENAI_REALTIME_URL", fake.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings =
        Settings::load(&env, None, Requirement::Serve).expect("the bench settings are valid");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    BenchApp {
        address,
        fake,
        answered: AtomicUsize::new(0),
        shutdown,
    }
}

/// What one call measured.
#[derive(Debug, Default)]
struct CallTimings {
    /// POST of the webhook → whole TwiML read.
    webhook_to_twiml: Duration,
    /// The Media Stream WebSocket upgrade (connect → upgraded).
    upgrade: Duration,
    /// `start` sent → first assistant `media` received (assistant speaks first).
    start_to_first_audio: Option<Duration>,
    /// Last frame of the caller's audio sent → first assistant `media` (caller speaks first).
    end_of_speech_to_first_audio: Option<Duration>,
    /// When `start` was sent, the fake had received `session.update` for every call answered so far.
    session_update_before_start: bool,
    /// When `start` was sent, the fake had answered `session.updated` for every call answered so far.
    session_updated_before_start: bool,
    /// TwiML read → `start` sent (on loopback the simulator is far quicker than Twilio's media servers).
    twiml_to_start: Duration,
    /// When the pre-connect was not ready: how long after `start` was sent the fake received the `session.update`
    /// (of every call answered so far).
    session_update_after_start: Option<Duration>,
}

/// Places one call the way Twilio does; with `caller_audio`, the caller says it right after `start`.
async fn place_call(app: &BenchApp, caller_audio: Option<&[u8]>) -> CallTimings {
    let webhook = WebhookCall {
        server_url: app.address.clone(),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: random_hex_id("CA"),
        account_sid: random_hex_id("AC"),
        from: "+15550100001".to_owned(),
        to: "+15550100002".to_owned(),
    };
    let answer = webhook
        .post_incoming()
        .await
        .expect("the webhook is answered");
    assert_eq!(answer.status, 200, "webhook refused: {}", answer.body);
    let twiml_at = Instant::now();
    let stream = answer.stream.expect("TwiML with <Connect><Stream>");
    let answered = app.answered.fetch_add(1, Ordering::SeqCst) + 1;
    let ws_url = local_stream_url(&stream.url, &app.address).expect("a stream URL");

    let connecting = Instant::now();
    let client = MediaStreamClient::connect_with(&ws_url, MediaClientConfig::default())
        .await
        .expect("the media stream upgrade succeeds");
    let upgrade = connecting.elapsed();

    // Pre-connect: has the Realtime session of every call answered so far been configured?
    let session_update_before_start = app.fake.events_of_type("session.update").len() >= answered;
    let session_updated_before_start =
        app.fake.server_events_of_type("session.updated").len() >= answered;
    client
        .start(&webhook.call_sid, &stream.parameters)
        .await
        .expect("start is sent");
    if let Some(audio) = caller_audio {
        client.send_audio(audio);
    }
    let started = client
        .wait_for(
            |e| matches!(e.kind, Observation::Started { .. }),
            OBSERVATION_TIMEOUT,
        )
        .await
        .expect("start is recorded")
        .at;
    let session_update_after_start = if session_update_before_start {
        None
    } else {
        app.fake
            .wait_for_events("session.update", answered, OBSERVATION_TIMEOUT)
            .await
            .map(|_| started.elapsed())
    };
    let first_audio = client
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            OBSERVATION_TIMEOUT,
        )
        .await
        .map(|e| e.at);

    let mut timings = CallTimings {
        webhook_to_twiml: answer.elapsed,
        upgrade,
        session_update_before_start,
        session_updated_before_start,
        twiml_to_start: started.saturating_duration_since(twiml_at),
        session_update_after_start,
        ..CallTimings::default()
    };
    match caller_audio {
        None => timings.start_to_first_audio = first_audio.map(|at| at - started),
        Some(_) => {
            let end_of_speech = client
                .wait_for(
                    |e| matches!(e.kind, Observation::CallerAudioSent { .. }),
                    OBSERVATION_TIMEOUT,
                )
                .await
                .map(|e| e.at);
            timings.end_of_speech_to_first_audio = match (end_of_speech, first_audio) {
                (Some(spoken), Some(heard)) if heard >= spoken => Some(heard - spoken),
                _ => None,
            };
        }
    }
    client.stop().await;
    client
        .wait_for(
            |e| matches!(e.kind, Observation::Closed { .. }),
            Duration::from_secs(2),
        )
        .await;
    timings
}

/// `min / median / p95 / max` of `samples` in ms (nearest-rank percentiles), with how many there were.
fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    format!(
        "min {:>7.1}  median {:>7.1}  p95 {:>7.1}  max {:>7.1} ms  (n={})",
        ms[0],
        rank(0.5),
        rank(0.95),
        ms[ms.len() - 1],
        ms.len()
    )
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

fn print_calls(title: &str, calls: &[CallTimings]) {
    println!("{title}");
    let collect = |f: &dyn Fn(&CallTimings) -> Option<Duration>| -> Vec<Duration> {
        calls.iter().filter_map(f).collect()
    };
    let webhook = collect(&|c| Some(c.webhook_to_twiml));
    let upgrade = collect(&|c| Some(c.upgrade));
    println!("  webhook → TwiML:                 {}", summary(&webhook));
    println!("  stream WebSocket upgrade:        {}", summary(&upgrade));
    let first_audio = collect(&|c| c.start_to_first_audio);
    if !first_audio.is_empty() {
        println!(
            "  start → first assistant audio:   {}",
            summary(&first_audio)
        );
        println!(
            "    = fake's fixed response delay {} ms + relay/loopback overhead (median {:.1} ms)",
            RESPONSE_DELAY.as_millis(),
            median_ms(&first_audio) - RESPONSE_DELAY.as_secs_f64() * 1000.0
        );
    }
    let speech = collect(&|c| c.end_of_speech_to_first_audio);
    if !speech.is_empty() {
        println!(
            "  end of caller audio → first assistant audio: {}",
            summary(&speech)
        );
    }
    let missing = calls
        .iter()
        .filter(|c| c.start_to_first_audio.is_none() && c.end_of_speech_to_first_audio.is_none())
        .count();
    if missing > 0 {
        println!("  calls without assistant audio: {missing}");
    }
    let update = calls
        .iter()
        .filter(|c| c.session_update_before_start)
        .count();
    let updated = calls
        .iter()
        .filter(|c| c.session_updated_before_start)
        .count();
    let twiml_to_start = collect(&|c| Some(c.twiml_to_start));
    println!(
        "  TwiML read → start sent:         {}",
        summary(&twiml_to_start)
    );
    println!(
        "  pre-connect ready before `start`: session.update received by the fake in {update}/{n} calls, \
         session.updated sent back in {updated}/{n}",
        n = calls.len()
    );
    let late: Vec<String> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.session_update_after_start
                .map(|lag| format!("#{} +{:.1} ms", i + 1, lag.as_secs_f64() * 1000.0))
        })
        .collect();
    if !late.is_empty() {
        println!(
            "    not ready: session.update reached the fake after start by: {}",
            late.join(", ")
        );
    }
}

fn print_header() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let profile = if cfg!(debug_assertions) {
        "debug assertions ON (not the bench profile: figures are not representative)"
    } else {
        "optimised, no debug assertions (cargo bench profile)"
    };
    println!(
        "callbridge call latency over loopback (app + fake OpenAI Realtime + simulated Twilio)"
    );
    println!("  machine: {cores} logical CPU(s); build: {profile}");
    println!(
        "  fake Realtime: fixed response delay {} ms (response.created → first delta), {} ms responses in 100 ms \
         deltas at 10× real time",
        RESPONSE_DELAY.as_millis(),
        RESPONSE_AUDIO_MS
    );
    println!();
}

/// `(length ms, trailing silence ms)` of raw μ-law, by the fake's own VAD frame energy test.
fn trailing_silence_ms(mulaw: &[u8]) -> (u64, u64) {
    let frames: Vec<&[u8]> = mulaw.chunks(FRAME_BYTES).collect();
    let last_speech = frames
        .iter()
        .rposition(|frame| frame_rms(frame) >= SPEECH_RMS_THRESHOLD);
    let silent_frames = last_speech.map_or(frames.len(), |i| frames.len() - 1 - i);
    ((mulaw.len() / 8) as u64, (silent_frames * 20) as u64)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let bench_started = std::time::Instant::now();
    print_header();

    // 1. Assistant speaks first.
    let app = Arc::new(spawn_app(true).await);
    // One untimed call warms up the connections' code paths and the allocator.
    place_call(&app, None).await;
    let mut sequential = Vec::with_capacity(SEQUENTIAL_CALLS);
    for _ in 0..SEQUENTIAL_CALLS {
        sequential.push(place_call(&app, None).await);
    }
    print_calls(
        &format!("Assistant speaks first: {SEQUENTIAL_CALLS} calls one after the other"),
        &sequential,
    );
    println!();

    let concurrent_started = Instant::now();
    let handles: Vec<_> = (0..CONCURRENT_CALLS)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { place_call(&app, None).await })
        })
        .collect();
    let mut concurrent = Vec::with_capacity(CONCURRENT_CALLS);
    for handle in handles {
        concurrent.push(handle.await.expect("a concurrent call task completes"));
    }
    print_calls(
        &format!(
            "Assistant speaks first: {CONCURRENT_CALLS} calls at once (all done in {:.2} s)",
            concurrent_started.elapsed().as_secs_f64()
        ),
        &concurrent,
    );
    println!(
        "  (concurrent readiness is conservative: a call counts as ready only if every call answered so far was)"
    );
    println!();

    // 3. The `callbridge simulate` code path, on the same app.
    let mut report_first_audio = Vec::new();
    let mut report_webhook = Vec::new();
    for _ in 0..SIMULATE_CALLS {
        let mut options = SimulateOptions::new(&app.address, PUBLIC_URL, AUTH_TOKEN, Vec::new());
        options.max_duration = Duration::from_millis(1_200);
        let report = callbridge::simulate::run(options)
            .await
            .expect("the simulated call runs");
        report_webhook.push(report.webhook_to_twiml);
        report_first_audio.extend(report.start_to_first_audio);
    }
    app.shutdown.cancel();

    // 2. The caller speaks first.
    let caller_hello = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caller-hello.ulaw"),
    )
    .expect("tests/fixtures/caller-hello.ulaw");
    let (speech_ms, trailing_ms) = trailing_silence_ms(&caller_hello);
    let speech_app = spawn_app(false).await;
    let mut speech_calls = Vec::with_capacity(SPEECH_CALLS);
    for _ in 0..SPEECH_CALLS {
        speech_calls.push(place_call(&speech_app, Some(&caller_hello)).await);
    }
    let silence_duration_ms = speech_app
        .fake
        .last_session()
        .and_then(|session| {
            session
                .pointer("/audio/input/turn_detection/silence_duration_ms")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(500);
    print_calls(
        &format!(
            "Caller speaks first ({} ms of recorded speech, caller-hello.ulaw): {SPEECH_CALLS} calls one after the other",
            speech_ms
        ),
        &speech_calls,
    );
    let floor_ms =
        silence_duration_ms.saturating_sub(trailing_ms) + RESPONSE_DELAY.as_millis() as u64;
    println!(
        "    floor = VAD silence {silence_duration_ms} ms − {trailing_ms} ms of trailing silence in the recording \
         + response delay {} ms = {floor_ms} ms",
        RESPONSE_DELAY.as_millis()
    );
    let speech_samples: Vec<Duration> = speech_calls
        .iter()
        .filter_map(|c| c.end_of_speech_to_first_audio)
        .collect();
    if !speech_samples.is_empty() {
        println!(
            "    relay/loopback overhead over the floor: median {:.1} ms (VAD frames are 20 ms)",
            median_ms(&speech_samples) - floor_ms as f64
        );
    }
    speech_app.shutdown.cancel();
    println!();

    println!(
        "`callbridge simulate` code path (simulate::run, SimulationReport), {SIMULATE_CALLS} calls, assistant first:"
    );
    println!("  webhook_to_twiml:     {}", summary(&report_webhook));
    println!("  start_to_first_audio: {}", summary(&report_first_audio));
    println!();
    println!(
        "Total benchmark time: {:.1} s",
        bench_started.elapsed().as_secs_f64()
    );
}
