//! `callbridge simulate`, the binary, against a running server: what a user runs to check a setup without a phone.

use std::process::Stdio;
use std::time::Duration;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, fixture, spawn_app};

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
