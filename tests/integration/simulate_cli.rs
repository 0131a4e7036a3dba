//! `callbridge simulate`, the binary, against a running server: what a user runs to check a setup without a phone.

use std::process::Stdio;
use std::time::Duration;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, fixture, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_places_a_signed_call_and_reports_its_timings() {
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(700, "Sure, what time?")],
        ..Script::default()
    })
    .await;
    let saved =
        std::env::temp_dir().join(format!("callbridge-simulate-{}.wav", std::process::id()));

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args([
            "simulate",
            "--server",
            &app.address,
            "--public-url",
            PUBLIC_URL,
            "--max-duration",
            "6",
        ])
        .arg("--audio")
        .arg(fixture("caller-hello.ulaw"))
        .arg("--save-audio")
        .arg(&saved)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("simulate finishes")
        .expect("simulate runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("webhook"), "{stdout}");
    assert!(stdout.contains("first assistant audio"), "{stdout}");
    let wav = hound::WavReader::open(&saved).expect("the assistant audio was saved as WAV");
    assert_eq!(wav.spec().sample_rate, 8000);
    assert_eq!(
        wav.len(),
        700 * 8,
        "700 ms of assistant audio, one sample per μ-law byte"
    );
    let _ = std::fs::remove_file(&saved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_with_the_wrong_token_explains_the_403() {
    let app = spawn_app(Script::default()).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args([
            "simulate",
            "--server",
            &app.address,
            "--public-url",
            PUBLIC_URL,
            "--max-duration",
            "2",
        ])
        .arg("--audio")
        .arg(fixture("caller-interrupt.ulaw"))
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", "wrong-token")
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("simulate runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(stderr.contains("TWILIO_AUTH_TOKEN"), "{stderr}");
}

/// OpenAI's answer to a Realtime upgrade with a bad key: 401 and its JSON error body
/// (<https://platform.openai.com/docs/guides/error-codes>).
const INVALID_API_KEY_BODY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-test-key. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;

/// A Realtime endpoint that answers every upgrade request with HTTP 401 and [`INVALID_API_KEY_BODY`], as OpenAI
/// does for a bad key; returns its `ws://` URL.
async fn realtime_refusing_with_401() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{INVALID_API_KEY_BODY}",
                    INVALID_API_KEY_BODY.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_fails_with_the_end_reason_when_openai_refuses_the_key() {
    let refusing = realtime_refusing_with_401().await;
    let app = spawn_app_with(Script::default(), &[("OPENAI_REALTIME_URL", &refusing)]).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args([
            "simulate",
            "--server",
            &app.address,
            "--public-url",
            PUBLIC_URL,
            "--max-duration",
            "10",
        ])
        .arg("--audio")
        .arg(fixture("caller-hello.ulaw"))
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("simulate finishes")
        .expect("simulate runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("the call failed: the server ended it with error:invalid_api_key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("OPENAI_API_KEY"),
        "the hint names the key: {stderr}"
    );
    let call_sid = stdout
        .split_whitespace()
        .find(|word| word.starts_with("CA"))
        .expect("the report names the CallSid");
    // The record is written by the store's writer thread, maybe just after the stream closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let end_reason = loop {
        let record = app
            .calls
            .store()
            .get_by_call_sid(call_sid)
            .expect("reads")
            .expect("the call was stored");
        if record.end_reason.is_some() || tokio::time::Instant::now() >= deadline {
            break record.end_reason;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(end_reason.as_deref(), Some("error:invalid_api_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_with_a_missing_audio_file_names_it() {
    let missing = std::env::temp_dir().join("callbridge-no-such-question.wav");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["simulate", "--server", "http://127.0.0.1:9"])
        .arg("--audio")
        .arg(&missing)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("simulate runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_against_a_server_that_is_down_suggests_starting_it() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["simulate", "--server", "http://127.0.0.1:9"])
        .arg("--audio")
        .arg(fixture("caller-hello.ulaw"))
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("simulate runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is the server running at http://127.0.0.1:9?"),
        "{stderr}"
    );
    assert!(stderr.contains("make dev"), "{stderr}");
}
