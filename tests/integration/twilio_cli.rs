//! `callbridge twilio configure` and `callbridge twilio status`, the binary, against a fake Twilio REST API: the exact
//! requests, what is printed, the exit codes, and that the auth token never shows.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::fake_twilio::{FakeTwilio, RecordedRequest, Route};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "cli-auth-token-fedcba9876543210";
const PHONE_NUMBER: &str = "+15550100";
const NUMBER_SID: &str = "PN0123456789abcdef0123456789abcdef";
const PUBLIC_URL: &str = "https://abc.trycloudflare.com";
const WEBHOOK: &str = "https://abc.trycloudflare.com/incoming-call";
const OLD_WEBHOOK: &str = "https://old-tunnel.trycloudflare.com/incoming-call";
const FUNCTION_URL: &str = "https://allowlist-1234.twil.io/allowlist";

/// The IncomingPhoneNumber resource as Twilio sends it (abridged), with this voice URL.
fn number_json(voice_url: &str) -> String {
    serde_json::json!({
        "account_sid": ACCOUNT_SID,
        "sid": NUMBER_SID,
        "phone_number": PHONE_NUMBER,
        "friendly_name": "Front desk",
        "voice_url": voice_url,
        "voice_method": "POST",
        "voice_fallback_url": null,
        "voice_application_sid": "",
        "trunk_sid": null,
        "capabilities": {"voice": true, "sms": true, "mms": false, "fax": false},
    })
    .to_string()
}

/// A list page holding the number, pointing at `voice_url`.
fn list_json(voice_url: &str) -> String {
    format!(
        r#"{{"first_page_uri":"/x","next_page_uri":null,"page":0,"page_size":50,"incoming_phone_numbers":[{}]}}"#,
        number_json(voice_url)
    )
}

/// A fake Twilio whose number points at `current`, and whose update answers the number pointing at `updated`.
fn twilio_with_number(current: &str, updated: &str) -> FakeTwilio {
    FakeTwilio::start_routes(vec![
        Route::new(
            "GET",
            "/IncomingPhoneNumbers.json",
            200,
            &list_json(current),
        ),
        Route::new(
            "POST",
            &format!("/IncomingPhoneNumbers/{NUMBER_SID}.json"),
            200,
            &number_json(updated),
        ),
    ])
}

/// The complete environment for `twilio_url`.
fn env(twilio_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ("TWILIO_PHONE_NUMBER", PHONE_NUMBER.to_owned()),
        ("PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("TWILIO_API_BASE_URL", twilio_url.to_owned()),
    ]
}

/// An empty working directory of its own, so no `.env` or `callbridge.toml` is picked up.
fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "callbridge-twilio-cli-{}-{}",
        std::process::id(),
        callbridge::simulate::webhook::random_hex_id("")
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The outcome of one run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `callbridge twilio ARGS` with only `env` set.
async fn callbridge_twilio(args: &[&str], env: &[(&str, String)]) -> Run {
    let dir = empty_dir();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command
        .arg("twilio")
        .args(args)
        .env_clear()
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let output: Output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the command finishes")
        .expect("the command runs");
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn basic_auth() -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    format!("Basic {credentials}")
}

fn assert_is_the_list_request(request: &RecordedRequest) {
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json")
    );
    assert_eq!(request.query, "PhoneNumber=%2B15550100");
    assert_eq!(
        request.authorization.as_deref(),
        Some(basic_auth().as_str())
    );
}

fn update_form(voice_url: &str) -> Vec<(String, String)> {
    vec![
        ("VoiceUrl".to_owned(), voice_url.to_owned()),
        ("VoiceMethod".to_owned(), "POST".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_finds_the_number_then_posts_the_public_webhook_and_says_it_changed() {
    let twilio = twilio_with_number(OLD_WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(&["configure"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(0), "{}", run.all());
    let requests = twilio.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_is_the_list_request(&requests[0]);
    assert_eq!(requests[1].method, "POST");
    assert_eq!(
        requests[1].path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{NUMBER_SID}.json")
    );
    assert_eq!(requests[1].form, update_form(WEBHOOK));
    assert_eq!(
        requests[1].authorization.as_deref(),
        Some(basic_auth().as_str())
    );
    assert!(run.stdout.contains(PHONE_NUMBER), "{}", run.all());
    assert!(
        run.stdout.contains(&format!("POST {OLD_WEBHOOK}")),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains(&format!("POST {WEBHOOK}")),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("changed"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_dry_run_sends_no_update_and_says_what_would_change() {
    let twilio = twilio_with_number(OLD_WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(&["configure", "--dry-run"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(0), "{}", run.all());
    let requests = twilio.requests();
    assert_eq!(requests.len(), 1, "only the lookup: {requests:#?}");
    assert_is_the_list_request(&requests[0]);
    assert!(
        run.stdout.contains("would change (dry run)"),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains(WEBHOOK), "{}", run.all());
    assert!(run.stdout.contains(OLD_WEBHOOK), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_with_a_function_url_points_the_number_at_the_function() {
    let twilio = twilio_with_number(OLD_WEBHOOK, FUNCTION_URL);

    let run = callbridge_twilio(
        &["configure", "--function-url", FUNCTION_URL],
        &env(&twilio.url),
    )
    .await;

    assert_eq!(run.code, Some(0), "{}", run.all());
    let requests = twilio.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[1].form, update_form(FUNCTION_URL));
    assert!(run.stdout.contains("changed"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_refuses_a_function_url_that_is_not_https_without_asking_twilio() {
    let twilio = twilio_with_number(OLD_WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(
        &[
            "configure",
            "--function-url",
            "http://allowlist-1234.twil.io/allowlist",
        ],
        &env(&twilio.url),
    )
    .await;

    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--function-url"), "{}", run.all());
    assert!(run.stderr.contains("https"), "{}", run.all());
    assert!(twilio.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_of_a_number_already_pointing_here_sends_no_update() {
    let twilio = twilio_with_number(WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(&["configure"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(twilio.requests().len(), 1, "only the lookup");
    assert!(run.stdout.contains("already set"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_number_pointing_here_exits_0_and_says_it_matches() {
    let twilio = twilio_with_number(WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(&["status"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(0), "{}", run.all());
    let requests = twilio.requests();
    assert_eq!(requests.len(), 1, "status only reads: {requests:#?}");
    assert_is_the_list_request(&requests[0]);
    assert!(
        run.stdout.contains(&format!("POST {WEBHOOK}")),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("matches"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_number_pointing_elsewhere_exits_1_and_names_the_command_to_fix_it() {
    let twilio = twilio_with_number(OLD_WEBHOOK, WEBHOOK);

    let run = callbridge_twilio(&["status"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(twilio.requests().len(), 1, "status only reads");
    assert!(run.stdout.contains(OLD_WEBHOOK), "{}", run.all());
    assert!(run.stdout.contains("does not match"), "{}", run.all());
    assert!(
        run.stdout.contains("callbridge twilio configure"),
        "{}",
        run.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_names_the_settings_to_check_and_never_shows_the_token() {
    let twilio = FakeTwilio::start(
        401,
        r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
    );

    let configure = callbridge_twilio(&["configure"], &env(&twilio.url)).await;
    let status = callbridge_twilio(&["status"], &env(&twilio.url)).await;

    for run in [&configure, &status] {
        assert_eq!(run.code, Some(2), "{}", run.all());
        assert!(run.stderr.contains("TWILIO_AUTH_TOKEN"), "{}", run.all());
        assert!(run.stderr.contains("TWILIO_ACCOUNT_SID"), "{}", run.all());
        assert!(run.stderr.contains("20003"), "{}", run.all());
        assert!(!run.all().contains(AUTH_TOKEN), "{}", run.all());
    }
    assert_eq!(
        twilio.requests().len(),
        2,
        "one lookup each, no update after the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_the_account_does_not_own_is_a_clear_error() {
    let twilio = FakeTwilio::start_routes(vec![Route::new(
        "GET",
        "/IncomingPhoneNumbers.json",
        200,
        r#"{"first_page_uri":"/x","next_page_uri":null,"page":0,"page_size":50,"incoming_phone_numbers":[]}"#,
    )]);

    let run = callbridge_twilio(&["configure"], &env(&twilio.url)).await;

    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "TWILIO_PHONE_NUMBER {PHONE_NUMBER} is not a number of account {ACCOUNT_SID}"
        )),
        "{}",
        run.all()
    );
    assert_eq!(twilio.requests().len(), 1, "no update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_settings_are_each_named_on_a_line_and_exit_2() {
    let run = callbridge_twilio(&["status"], &[]).await;

    assert_eq!(run.code, Some(2), "{}", run.all());
    for name in [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_PHONE_NUMBER",
        "PUBLIC_URL",
    ] {
        let lines = run
            .stderr
            .lines()
            .filter(|line| line.contains(&format!("{name} is not set")))
            .count();
        assert_eq!(lines, 1, "{name}: {}", run.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_dry_run_exits_3_like_status_when_twilio_cannot_be_reached() {
    // Nothing listens on port 9: Twilio is never reached, so nothing may say it refused anything.
    let unreachable = env("http://127.0.0.1:9");

    let dry_run = callbridge_twilio(&["configure", "--dry-run"], &unreachable).await;
    let status = callbridge_twilio(&["status"], &unreachable).await;

    assert_eq!(dry_run.code, Some(3), "{}", dry_run.all());
    assert_eq!(status.code, Some(3), "{}", status.all());
    assert!(
        !dry_run.all().contains("Twilio refused"),
        "{}",
        dry_run.all()
    );
    assert!(
        dry_run.all().contains("cannot reach Twilio"),
        "{}",
        dry_run.all()
    );
}
