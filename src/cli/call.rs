//! `callbridge call +14155550100 --instructions "..."`: places an outbound call through a running server's REST API
//! ([`ApiClient`]) and follows it to the end from the terminal.
//!
//! The server is `CALLBRIDGE_URL` (default `http://127.0.0.1:PORT`), the key `CALLBRIDGE_API_KEY` (the usual
//! settings: environment, `.env`, `callbridge.toml`). Following polls `GET /api/calls/{id}?wait_s=30` and prints each
//! status change (`12:00:03  ringing`, times in UTC), each transcript turn as it completes (`  caller: ...`,
//! `  assistant: ...`), and at the end the outcome, the end reason and the duration (`m:ss`). Text that came from a
//! peer (transcripts, outcomes, error messages) is printed with control characters replaced, so it cannot drive the
//! terminal.
//!
//! Exit codes: 0 the call completed (or, with `--no-follow`, was placed); 1 it ended busy, no-answer, failed or
//! canceled; 2 it could not be placed (bad number, wrong key, server unreachable, settings); 3 the call was placed but
//! following it failed; 130 interrupted (Ctrl-C; the call goes on).

use std::process::ExitCode;
use std::time::Duration;

use time::OffsetDateTime;

use super::api_client::ApiClient;
use super::output::{emit, format_duration, printable};
use crate::calls::Speaker;
use crate::calls::backend::BackendError;
use crate::calls::model::{CallStatus, CallView};
use crate::calls::schedule::{RetryOn, RetryPlan};
use crate::calls::service::PlaceCall;
use crate::twilio::amd::MachinePolicy;

/// Exit code: the call ended without completing (busy, no-answer, failed, canceled).
const EXIT_NOT_COMPLETED: u8 = 1;
/// Exit code: the call could not be placed.
const EXIT_NOT_PLACED: u8 = 2;
/// Exit code: the call was placed but could not be followed to its end.
const EXIT_LOST_TRACK: u8 = 3;
/// Exit code: interrupted with Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

/// How long each poll asks the server to wait for a change, seconds.
pub const FOLLOW_WAIT_S: u64 = 30;
/// How many polls in a row may fail (server restarting, network blip) before following gives up.
const MAX_FOLLOW_FAILURES: u32 = 5;
/// Pause after a failed poll.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// After an answered call reached its final status, how long to wait for the relay to store its end (end reason,
/// outcome, last transcript turns): Twilio's `completed` callback can overtake it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between reads while settling.
const SETTLE_PAUSE: Duration = Duration::from_millis(500);

/// Arguments of `callbridge call`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Who to call, in E.164 form: a plus sign, the country code and the number, no spaces (+14155550100).
    pub to: String,
    /// What the voice model should do on this call, in plain words.
    #[arg(long)]
    pub instructions: String,
    /// What the model says as soon as the callee answers (default: it waits for the callee's "hello").
    #[arg(long)]
    pub greeting: Option<String>,
    /// The Realtime voice for this call (default: the server's voice).
    #[arg(long)]
    pub voice: Option<String>,
    /// The language to speak (en, fr-FR, ...).
    #[arg(long)]
    pub language: Option<String>,
    /// The longest the call may last, seconds (the server's maximum also caps it).
    #[arg(long = "max-duration", value_name = "S")]
    pub max_duration_s: Option<u64>,
    /// When an answering machine picks up: hang_up, leave_message or ignore (default: the server's setting).
    #[arg(long = "answering-machine", value_name = "POLICY")]
    pub answering_machine: Option<MachinePolicy>,
    /// For leave_message: what to say after the beep (default: the model composes it from the instructions).
    #[arg(long = "voicemail-message", value_name = "TEXT")]
    pub voicemail_message: Option<String>,
    /// Keys Twilio presses as soon as the call is answered, for an extension known in advance: 0-9, *, #, and w
    /// for a half-second pause (e.g. ww123). The server refuses anything else (exit 2).
    #[arg(long = "send-digits", value_name = "KEYS")]
    pub send_digits: Option<String>,
    /// Record the call at Twilio, both sides (default: the server's CALLBRIDGE_RECORDING).
    #[arg(long, conflicts_with = "no_record")]
    pub record: bool,
    /// Do not record the call, whatever the server's default.
    #[arg(long = "no-record")]
    pub no_record: bool,
    /// Where to POST this call's signed webhooks (https, or http to a loopback host); default: the server's
    /// CALLBRIDGE_WEBHOOK_URL.
    #[arg(long = "webhook-url", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Try the call again when it ends busy, no-answer or failed (see --retry-on): at most N attempts in all.
    #[arg(long = "retry-max-attempts", value_name = "N")]
    pub retry_max_attempts: Option<u32>,
    /// Seconds between the end of an attempt and the next one (default 300).
    #[arg(long = "retry-backoff", value_name = "S")]
    pub retry_backoff_s: Option<u64>,
    /// Which results are tried again, comma-separated: busy, no-answer, failed (default busy,no-answer).
    #[arg(long = "retry-on", value_name = "RESULTS", value_delimiter = ',', value_parser = parse_retry_on)]
    pub retry_on: Vec<RetryOn>,
    /// The earliest the call may start, RFC 3339 (2026-01-15T09:30:00+01:00).
    #[arg(long = "not-before", value_name = "TIME")]
    pub not_before: Option<String>,
    /// Local hours the call (and each retry) may start in, with an IANA time zone: "09:00-18:00 Europe/Berlin".
    #[arg(long = "call-window", value_name = "WINDOW")]
    pub call_window: Option<String>,
    /// A JSON Schema the call's outcome must match: a file, or the JSON itself (starting with `{`); at most
    /// 16 KiB. The model's end_call then returns an outcome of that shape, shown as JSON at the end.
    #[arg(long = "outcome-schema", value_name = "FILE|JSON")]
    pub outcome_schema: Option<String>,
    /// A remote MCP server for the call's voice, by its label in the server's CALLBRIDGE_VOICE_MCP_SERVERS
    /// (repeatable; default: the server's default ones).
    #[arg(long = "mcp-server", value_name = "LABEL")]
    pub mcp_servers: Vec<String>,
    /// Who decides what the voice says: autonomous (the voice model, the default) or relay (an agent, through
    /// POST /api/calls/{id}/say or the MCP say tool).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<crate::calls::say::CallMode>,
    /// The most the call may cost, US dollars (estimated); at it the assistant wraps up and says goodbye.
    #[arg(long = "max-cost", value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// The OpenAI voice API for this call: realtime or live (default: the server's CALLBRIDGE_ENGINE).
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    pub engine: Option<crate::config::Engine>,
    /// Place the call, print its id and exit without following it.
    #[arg(long)]
    pub no_follow: bool,
}

/// Runs `callbridge call`: output on stdout, problems on stderr; see the module docs for the exit codes.
pub async fn run(args: CallArgs) -> ExitCode {
    let client = match ApiClient::from_settings() {
        Ok(client) => client,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_NOT_PLACED);
        }
    };
    let outcome_schema = match args
        .outcome_schema
        .as_deref()
        .map(read_outcome_schema)
        .transpose()
    {
        Ok(schema) => schema,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_NOT_PLACED);
        }
    };
    let request = PlaceCall {
        outcome_schema,
        ..place_request(&args)
    };
    let placed = match client.place_call(request).await {
        Ok(call) => call,
        Err(error) => {
            eprintln!("could not place the call: {}", printable(&error.message));
            return ExitCode::from(EXIT_NOT_PLACED);
        }
    };
    emit_lines(&[placed_line(&placed)]);
    if placed.mode == crate::calls::say::CallMode::Relay {
        emit_lines(&[format!(
            "Relay mode: the voice speaks only what POST /api/calls/{}/say (or the MCP say tool) gives it",
            placed.id
        )]);
    }
    if args.no_follow {
        return ExitCode::SUCCESS;
    }
    let id = placed.id.clone();
    tokio::select! {
        code = follow(&client, placed) => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nstopped following; the call goes on (hang it up with POST /api/calls/{id}/hangup)");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    }
}

/// Follows the call until it ends, printing as it goes; returns the exit code.
/// The `place_call` request the command line asks for (the server validates it).
fn place_request(args: &CallArgs) -> PlaceCall {
    PlaceCall {
        to: args.to.clone(),
        instructions: args.instructions.clone(),
        greeting: args.greeting.clone(),
        voice: args.voice.clone(),
        language: args.language.clone(),
        max_duration_s: args.max_duration_s,
        metadata: None,
        answering_machine: args.answering_machine,
        voicemail_message: args.voicemail_message.clone(),
        send_digits: args.send_digits.clone(),
        record: match (args.record, args.no_record) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        webhook_url: args.webhook_url.clone(),
        retry: retry_plan(args),
        not_before: args.not_before.clone(),
        call_window: args.call_window.clone(),
        outcome_schema: None,
        mcp_servers: (!args.mcp_servers.is_empty()).then(|| args.mcp_servers.clone()),
        mode: args.mode,
        max_cost_usd: args.max_cost_usd,
        engine: args.engine,
    }
}

/// The `retry` of the command line: `None` unless a `--retry-*` option is given; the others default.
fn retry_plan(args: &CallArgs) -> Option<RetryPlan> {
    if args.retry_max_attempts.is_none()
        && args.retry_backoff_s.is_none()
        && args.retry_on.is_empty()
    {
        return None;
    }
    let defaults: RetryPlan = serde_json::from_str("{}").expect("every retry field has a default");
    Some(RetryPlan {
        max_attempts: args.retry_max_attempts.unwrap_or(defaults.max_attempts),
        backoff_s: args.retry_backoff_s.unwrap_or(defaults.backoff_s),
        retry_on: if args.retry_on.is_empty() {
            defaults.retry_on
        } else {
            args.retry_on.clone()
        },
    })
}

/// One `--retry-on` result: `busy`, `no-answer` or `failed`.
fn parse_retry_on(text: &str) -> Result<RetryOn, String> {
    RetryOn::from_status(text.trim())
        .ok_or_else(|| format!("{text:?} is not one of busy, no-answer, failed"))
}

/// `--outcome-schema`: the JSON itself when it starts with `{`, else the file it names, parsed as JSON (the server
/// checks that it is a valid JSON Schema).
///
/// # Errors
/// A line naming the file that cannot be read, or the JSON error.
fn read_outcome_schema(arg: &str) -> Result<serde_json::Value, String> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|e| format!("--outcome-schema: cannot read {arg:?}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("--outcome-schema: not JSON: {e}"))
}

/// `--engine`: `realtime` or `live`.
fn parse_engine(text: &str) -> Result<crate::config::Engine, String> {
    text.parse()
}

async fn follow(client: &ApiClient, placed: CallView) -> ExitCode {
    let mut follower = Follower::default();
    emit_lines(&follower.update(&placed));
    let mut call = placed;
    let mut failures = 0;
    while !call.status.is_terminal() {
        match client.get_call(&call.id, Some(FOLLOW_WAIT_S)).await {
            Ok(now) => {
                failures = 0;
                emit_lines(&follower.update(&now));
                call = now;
            }
            Err(error) => {
                failures += 1;
                if !retryable(&error) || failures >= MAX_FOLLOW_FAILURES {
                    eprintln!(
                        "lost track of call {}: {} (the call may go on)",
                        call.id,
                        printable(&error.message)
                    );
                    return ExitCode::from(EXIT_LOST_TRACK);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    // Twilio's `completed` callback may arrive before the relay stored the call's end: give it a moment.
    let settle_deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    while needs_settling(&call) && tokio::time::Instant::now() < settle_deadline {
        tokio::time::sleep(SETTLE_PAUSE).await;
        if let Ok(now) = client.get_call(&call.id, None).await {
            emit_lines(&follower.update(&now));
            call = now;
        }
    }
    emit_lines(&summary_lines(&call));
    ExitCode::from(exit_code(call.status))
}

/// Whether another poll is worth it after `error`: only when the server could not be reached for a moment.
fn retryable(error: &BackendError) -> bool {
    error.code == "unavailable"
}

/// True for a call that was answered and ended, but whose end the relay has not stored yet.
fn needs_settling(call: &CallView) -> bool {
    call.status.is_terminal() && call.answered_at.is_some() && call.end_reason.is_none()
}

/// The exit code for a call that ended with `status`: 0 for `completed`, 1 for any other end.
pub fn exit_code(status: CallStatus) -> u8 {
    if status == CallStatus::Completed {
        0
    } else {
        EXIT_NOT_COMPLETED
    }
}

/// What the terminal has been shown of a call so far; [`Follower::update`] gives the lines for what is new.
#[derive(Debug, Default)]
pub struct Follower {
    /// How many status changes of the timeline were printed.
    statuses_shown: usize,
    /// How many transcript turns were printed.
    turns_shown: usize,
}

impl Follower {
    /// The lines for whatever `call` shows that was not shown yet: new status changes (`12:00:03  ringing`, UTC) and
    /// new transcript turns (`  caller: ...`), in the order they happened.
    pub fn update(&mut self, call: &CallView) -> Vec<String> {
        let mut events: Vec<(OffsetDateTime, u8, String)> = Vec::new();
        for change in call.status_timeline.iter().skip(self.statuses_shown) {
            // At equal times a status change comes before a turn, except the final one, which comes after.
            let order = if change.status.is_terminal() { 2 } else { 0 };
            events.push((
                change.at,
                order,
                format!("{}  {}", clock(change.at), change.status),
            ));
        }
        for turn in call.transcript.iter().skip(self.turns_shown) {
            let speaker = match turn.speaker {
                Speaker::Caller => "caller",
                Speaker::Assistant => "assistant",
                Speaker::Action => "action",
            };
            let cut = if turn.interrupted {
                " [interrupted]"
            } else {
                ""
            };
            events.push((
                turn.at,
                1,
                format!("  {speaker}: {}{cut}", printable(&turn.text)),
            ));
        }
        self.statuses_shown = self.statuses_shown.max(call.status_timeline.len());
        self.turns_shown = self.turns_shown.max(call.transcript.len());
        events.sort_by_key(|(at, order, _)| (*at, *order));
        events.into_iter().map(|(_, _, line)| line).collect()
    }
}

/// The first line: who is being called, and the call's ids.
fn placed_line(call: &CallView) -> String {
    let sid = call
        .call_sid
        .as_deref()
        .map(|sid| format!(", CallSid {}", printable(sid)))
        .unwrap_or_default();
    let due = call
        .schedule
        .next_attempt_at
        .map(|at| format!(", first attempt due {}", clock(at)))
        .unwrap_or_default();
    format!(
        "Calling {} from {} (call {}{sid}{due}); times are UTC",
        printable(&call.to),
        printable(&call.from),
        call.id
    )
}

/// The closing lines: final status, outcome, end reason, Twilio's error if any, and the duration.
pub fn summary_lines(call: &CallView) -> Vec<String> {
    let mut lines = vec![String::new(), format!("Status:     {}", call.status)];
    if let Some(outcome) = &call.outcome {
        lines.push(format!("Outcome:    {}", printable(outcome)));
    }
    if let Some(reason) = &call.end_reason {
        lines.push(format!("End reason: {}", printable(reason)));
    }
    if let Some(answered_by) = call.answering.answered_by {
        lines.push(format!("Answered by: {answered_by}"));
    }
    if let Some(message) = &call.answering.voicemail_transcript {
        lines.push(format!("Voicemail:  {}", printable(message)));
    }
    if let Some(error) = &call.error {
        let code = error
            .code
            .map(|c| format!(" (Twilio error {c})"))
            .unwrap_or_default();
        lines.push(format!("Error:      {}{code}", printable(&error.message)));
    }
    let duration_ms = call.duration_ms.or_else(|| {
        let answered = call.answered_at?;
        let ended = call.ended_at?;
        u64::try_from((ended - answered).whole_milliseconds()).ok()
    });
    let duration = duration_ms.map_or_else(|| "not answered".to_owned(), format_duration);
    lines.push(format!("Duration:   {duration}"));
    lines
}

/// `HH:MM:SS` of `at`, in UTC.
fn clock(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

/// Prints `lines` on stdout; a closed stdout (a pipe whose reader left) or a failed write is not worth stopping
/// the follow for.
fn emit_lines(lines: &[String]) {
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let _ = emit(&text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::model::StatusChange;
    use crate::calls::{Direction, Turn};
    use time::macros::datetime;

    fn call(status: CallStatus) -> CallView {
        CallView {
            engine: None,
            id: "call_0123456789abcdefghjkmnpqrs".into(),
            direction: Direction::OutboundApi,
            from: "+15550100000".into(),
            to: "+14155550100".into(),
            call_sid: Some("CA0123".into()),
            status,
            instructions: Some("Book a table".into()),
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: Some(300),
            metadata: None,
            outcome: None,
            end_reason: None,
            error: None,
            created_at: datetime!(2025-01-02 12:00:00 UTC),
            answered_at: None,
            ended_at: None,
            duration_ms: None,
            status_timeline: vec![StatusChange {
                status: CallStatus::Queued,
                at: datetime!(2025-01-02 12:00:00 UTC),
            }],
            transcript: Vec::new(),
            stream_sid: None,
            skipped_frames: 0,
            dropped: Default::default(),
            handovers: Vec::new(),
            transfers: Vec::new(),
            record: false,
            recordings: Vec::new(),
            webhook_url: None,
            schedule: Default::default(),
            rollovers: Vec::new(),
            usage: Default::default(),
            answering: Default::default(),
            outcome_schema: None,
            structured_outcome: None,
            mcp_servers: None,
            mode: Default::default(),
            cost: None,
            max_cost_usd: None,
        }
    }

    fn turn(speaker: Speaker, text: &str, at: OffsetDateTime) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            at,
            offset_ms: 0,
            interrupted: false,
            item_id: None,
        }
    }

    #[test]
    fn the_phone_network_options_reach_the_place_call_request() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "callbridge",
            "call",
            "+14155550100",
            "--instructions",
            "Book a table",
            "--answering-machine",
            "leave_message",
            "--voicemail-message",
            "Please call back",
            "--send-digits",
            "ww123",
        ])
        .expect("parses");
        let crate::cli::Command::Call(args) = cli.command else {
            panic!("not the call command");
        };

        let request = place_request(&args);

        assert_eq!(request.to, "+14155550100");
        assert_eq!(request.answering_machine, Some(MachinePolicy::LeaveMessage));
        assert_eq!(
            request.voicemail_message.as_deref(),
            Some("Please call back")
        );
        assert_eq!(request.send_digits.as_deref(), Some("ww123"));
        assert_eq!(request.record, None, "the server's default");
    }

    #[test]
    fn record_and_no_record_reach_the_place_call_request_and_cannot_be_given_together() {
        use clap::Parser as _;
        let parse = |flags: &[&str]| {
            let mut argv = vec!["callbridge", "call", "+14155550100", "--instructions", "Hi"];
            argv.extend_from_slice(flags);
            crate::cli::Cli::try_parse_from(argv).map(|cli| match cli.command {
                crate::cli::Command::Call(args) => place_request(&args).record,
                _ => panic!("not the call command"),
            })
        };

        assert_eq!(parse(&["--record"]).expect("parses"), Some(true));
        assert_eq!(parse(&["--no-record"]).expect("parses"), Some(false));
        assert!(parse(&["--record", "--no-record"]).is_err());
    }

    #[test]
    fn the_retry_and_window_options_reach_the_place_call_request() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "callbridge",
                "call",
                "+14155550100",
                "--instructions",
                "Ask",
            ];
            argv.extend_from_slice(extra);
            let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
            let crate::cli::Command::Call(args) = cli.command else {
                panic!("not the call command");
            };
            Ok::<_, String>(place_request(&args))
        };

        let request = parse(&[
            "--retry-max-attempts",
            "4",
            "--retry-on",
            "busy,failed",
            "--not-before",
            "2026-01-15T09:30:00+01:00",
            "--call-window",
            "09:00-18:00 Europe/Berlin",
        ])
        .expect("parses");
        let plain = parse(&[]).expect("parses");
        let bad = parse(&["--retry-on", "completed"]);

        assert_eq!(
            request.retry,
            Some(RetryPlan {
                max_attempts: 4,
                backoff_s: crate::calls::schedule::DEFAULT_BACKOFF_S,
                retry_on: vec![RetryOn::Busy, RetryOn::Failed],
            })
        );
        assert_eq!(
            request.not_before.as_deref(),
            Some("2026-01-15T09:30:00+01:00")
        );
        assert_eq!(
            request.call_window.as_deref(),
            Some("09:00-18:00 Europe/Berlin")
        );
        assert_eq!(plain.retry, None, "no --retry-* option, no retry");
        let bad = bad.expect_err("completed is never retried");
        assert!(bad.contains("busy, no-answer, failed"), "{bad}");
    }

    #[test]
    fn repeated_mcp_server_options_reach_the_place_call_request_and_none_leaves_the_default() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "callbridge",
                "call",
                "+14155550100",
                "--instructions",
                "Book",
            ];
            argv.extend_from_slice(extra);
            let cli = crate::cli::Cli::try_parse_from(argv).expect("parses");
            let crate::cli::Command::Call(args) = cli.command else {
                panic!("not the call command");
            };
            place_request(&args)
        };

        let named = parse(&["--mcp-server", "calendar", "--mcp-server", "crm"]);
        let default = parse(&[]);

        assert_eq!(
            named.mcp_servers,
            Some(vec!["calendar".to_owned(), "crm".to_owned()])
        );
        assert_eq!(default.mcp_servers, None);
    }

    #[test]
    fn an_outcome_schema_is_read_inline_or_from_a_file_and_bad_json_is_named() {
        let path =
            std::env::temp_dir().join(format!("callbridge-schema-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"type":"object"}"#).expect("write the schema");

        let inline = read_outcome_schema(r#" {"type":"object"}"#);
        let from_file = read_outcome_schema(path.to_str().expect("UTF-8 path"));
        let missing = read_outcome_schema("/nonexistent/booking.json");
        let bad = read_outcome_schema("{type: object}");
        std::fs::remove_file(&path).expect("remove the schema");

        assert_eq!(inline, Ok(serde_json::json!({"type": "object"})));
        assert_eq!(from_file, inline);
        assert!(
            missing
                .expect_err("no file")
                .contains("cannot read \"/nonexistent/booking.json\"")
        );
        assert!(
            bad.expect_err("not JSON")
                .starts_with("--outcome-schema: not JSON")
        );
    }

    #[test]
    fn each_status_change_is_printed_once_with_its_utc_time() {
        let mut follower = Follower::default();
        let mut view = call(CallStatus::Queued);
        let first = follower.update(&view);
        view.status = CallStatus::Ringing;
        view.status_timeline.push(StatusChange {
            status: CallStatus::Ringing,
            at: datetime!(2025-01-02 12:00:03 UTC),
        });

        let second = follower.update(&view);
        let third = follower.update(&view);

        assert_eq!(first, ["12:00:00  queued"]);
        assert_eq!(second, ["12:00:03  ringing"]);
        assert!(third.is_empty(), "{third:?}");
    }

    #[test]
    fn new_turns_and_statuses_are_printed_in_the_order_they_happened() {
        let mut follower = Follower::default();
        let mut view = call(CallStatus::Completed);
        let answered = datetime!(2025-01-02 12:00:05 UTC);
        let ended = datetime!(2025-01-02 12:00:20 UTC);
        view.status_timeline.push(StatusChange {
            status: CallStatus::InProgress,
            at: answered,
        });
        view.status_timeline.push(StatusChange {
            status: CallStatus::Completed,
            at: ended,
        });
        view.transcript = vec![
            turn(
                Speaker::Caller,
                "Hello?",
                datetime!(2025-01-02 12:00:07 UTC),
            ),
            turn(Speaker::Assistant, "Hi,\x1b[2J I'd like a table.", ended),
        ];

        let lines = follower.update(&view);

        assert_eq!(
            lines,
            [
                "12:00:00  queued",
                "12:00:05  in-progress",
                "  caller: Hello?",
                "  assistant: Hi, [2J I'd like a table.",
                "12:00:20  completed",
            ]
        );
    }

    #[test]
    fn an_interrupted_turn_is_marked() {
        let mut follower = Follower::default();
        let mut view = call(CallStatus::InProgress);
        view.status_timeline.clear();
        let mut cut = turn(
            Speaker::Assistant,
            "We have a",
            datetime!(2025-01-02 12:00:09 UTC),
        );
        cut.interrupted = true;
        view.transcript.push(cut);

        let lines = follower.update(&view);

        assert_eq!(lines, ["  assistant: We have a [interrupted]"]);
    }

    #[test]
    fn the_summary_shows_outcome_end_reason_and_duration() {
        let mut view = call(CallStatus::Completed);
        view.outcome = Some("Booked 4 at 19:30\nunder Rivera".into());
        view.end_reason = Some("goodbye".into());
        view.duration_ms = Some(65_000);

        let lines = summary_lines(&view);

        assert!(
            lines.contains(&"Status:     completed".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"Outcome:    Booked 4 at 19:30 under Rivera".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"End reason: goodbye".to_owned()),
            "{lines:?}"
        );
        assert!(lines.contains(&"Duration:   1:05".to_owned()), "{lines:?}");
    }

    #[test]
    fn the_summary_of_an_unanswered_call_shows_twilios_error_and_no_duration() {
        let mut view = call(CallStatus::Failed);
        view.error = Some(crate::calls::model::CallError {
            code: Some(21211),
            message: "Invalid 'To' Phone Number".into(),
        });

        let lines = summary_lines(&view);

        assert!(
            lines
                .contains(&"Error:      Invalid 'To' Phone Number (Twilio error 21211)".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"Duration:   not answered".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn only_a_completed_call_exits_zero() {
        let codes: Vec<u8> = CallStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(exit_code)
            .collect();

        assert_eq!(codes, [0, 1, 1, 1, 1]);
    }

    #[test]
    fn an_answered_call_without_its_end_reason_waits_to_settle() {
        let mut view = call(CallStatus::Completed);
        view.answered_at = Some(datetime!(2025-01-02 12:00:05 UTC));
        let unsettled = needs_settling(&view);
        view.end_reason = Some("goodbye".into());
        let settled = !needs_settling(&view);
        let unanswered = !needs_settling(&call(CallStatus::Busy));

        assert!(unsettled && settled && unanswered);
    }
}
