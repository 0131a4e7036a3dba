//! `callbridge calls list` and `callbridge calls show ID`: print the stored call records, read straight from the
//! database file (`data_dir/callbridge.db`; `data_dir` comes from the usual settings: `CALLBRIDGE_DATA_DIR`,
//! `callbridge.toml`, default `./data`), or from PostgreSQL when `CALLBRIDGE_DATABASE_URL` is set. A running server may
//! keep writing meanwhile: the SQLite database is in WAL mode.
//!
//! Human output is a table (`list`) or a report (`show`: header fields, status timeline, transcript, outcome, end
//! reason, tokens); `--json` prints the API's JSON ([`CallSummary`] list, [`CallView`]). Text that came from a peer
//! (transcripts, outcomes, numbers) is printed with control characters replaced, so it cannot drive the terminal.
//!
//! Exit codes: 0 printed; 1 no database yet, no such call, or the database could not be read; 2 invalid settings.

use std::fmt::Write as _;
use std::process::ExitCode;

use time::OffsetDateTime;

use crate::calls::model::{CallSummary, CallView};
use crate::calls::schedule::RetryOn;
use crate::calls::store::{CallStore, StoreError};
use crate::calls::{Direction, Speaker};
use crate::config::{Requirement, Settings};

use super::output::{emit, format_duration, printable};

/// Exit code: no database yet, no such call, or the database could not be read.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: the settings are invalid.
const EXIT_CONFIGURATION: u8 = 2;

/// The longest outcome shown in a `list` row, in characters.
const LIST_OUTCOME_CHARS: usize = 60;

/// Arguments of `callbridge calls`.
#[derive(Debug, clap::Args)]
pub struct CallsArgs {
    /// What to print.
    #[command(subcommand)]
    pub command: CallsCommand,
}

/// The `callbridge calls` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CallsCommand {
    /// List stored calls, newest first. Exit 1 when there is no database yet.
    List(ListArgs),
    /// Show one call: status timeline, transcript, outcome, token usage. Exit 1 when there is no such call.
    Show(ShowArgs),
}

/// Arguments of `callbridge calls list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many calls to list (the newest ones).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the calls as JSON (the REST API's list items) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `callbridge calls show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The call's id (`call_...`) or its Twilio CallSid (`CA...`).
    pub id: String,
    /// Print the call as JSON (the REST API's call object) instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// Runs `callbridge calls ...`: output on stdout, problems on stderr; see the module docs for the exit codes.
pub fn run(args: CallsArgs) -> ExitCode {
    let settings = match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("invalid settings:\n{e}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let store = match &settings.database_url {
        Some(url) => CallStore::open_url(secrecy::ExposeSecret::expose_secret(url)),
        None => match open_sqlite(&settings) {
            Ok(opened) => opened,
            Err(code) => return code,
        },
    };
    let store = match store {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_NOT_FOUND);
        }
    };
    let printed = match args.command {
        CallsCommand::List(args) => list(&store, &args),
        CallsCommand::Show(args) => show(&store, &args),
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_NOT_FOUND)
        }
    }
}

/// The SQLite call store of the data directory, or the exit code when there is none yet.
fn open_sqlite(settings: &Settings) -> Result<Result<CallStore, StoreError>, ExitCode> {
    let path = settings.database_path();
    if !path.is_file() {
        eprintln!(
            "No call records yet: {} does not exist. `callbridge serve` creates it when it starts; set \
             CALLBRIDGE_DATA_DIR (or data_dir in callbridge.toml) if the server keeps its data elsewhere.",
            path.display()
        );
        return Err(ExitCode::from(EXIT_NOT_FOUND));
    }
    Ok(CallStore::open(&path))
}

/// `callbridge calls list`.
fn list(store: &CallStore, args: &ListArgs) -> Result<(), String> {
    let calls = store.list(args.limit).map_err(|e| e.to_string())?;
    if args.json {
        emit(&format!("{}\n", to_json(&calls)))
    } else if calls.is_empty() {
        emit("No calls stored yet.\n")
    } else {
        emit(&render_list(&calls))
    }
}

/// `callbridge calls show`: by call id, else by CallSid.
fn show(store: &CallStore, args: &ShowArgs) -> Result<(), String> {
    let by_id = store.get(&args.id).map_err(|e| e.to_string())?;
    let call = match by_id {
        Some(call) => Some(call),
        None => store.get_by_call_sid(&args.id).map_err(|e| e.to_string())?,
    };
    let Some(call) = call else {
        return Err(format!(
            "No call with id or CallSid {:?}. `callbridge calls list` shows the stored calls.",
            printable(&args.id)
        ));
    };
    if args.json {
        emit(&format!("{}\n", to_json(&call)))
    } else {
        emit(&render_call(&call))
    }
}

/// Pretty JSON of a model type (plain data: serializing cannot fail).
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("the call model serializes to JSON")
}

/// The `list` table: a header row, then one row per call (id, created, direction, the other party, status (see
/// `list_status`), duration, estimated cost, outcome cut to 60 characters), columns padded to their widest cell.
pub fn render_list(calls: &[CallSummary]) -> String {
    let header = [
        "ID",
        "CREATED (UTC)",
        "DIRECTION",
        "NUMBER",
        "STATUS",
        "DURATION",
        "COST",
        "OUTCOME",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = calls
        .iter()
        .map(|call| {
            [
                printable(&call.id),
                format_time(call.created_at),
                direction_name(call.direction).to_owned(),
                other_party(call.direction, &call.from, &call.to),
                list_status(call),
                call.duration_ms
                    .map_or_else(|| "-".to_owned(), format_duration),
                call.cost_usd.map_or_else(|| "-".to_owned(), format_usd),
                call.outcome.as_deref().map_or_else(
                    || "-".to_owned(),
                    |o| cut_chars(&printable(o), LIST_OUTCOME_CHARS),
                ),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `list` table's status: Twilio's status, except that a call that ended with an error reads
/// `failed (error:<what>)`: for Twilio it was answered and `completed`, but it did not work.
fn list_status(call: &CallSummary) -> String {
    match call.end_reason.as_deref() {
        Some(reason) if reason.starts_with("error:") => format!("failed ({})", printable(reason)),
        _ => call.status.to_string(),
    }
}

/// The `show` report: header fields, the status timeline, the transcript (`[+12.3s] caller: text`, an interrupted
/// assistant turn marked `(interrupted)`), outcome, end reason, token usage and estimated cost.
pub fn render_call(call: &CallView) -> String {
    let mut out = String::new();
    let mut field = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "{:<14}{value}", format!("{label}:"));
        }
    };
    field("Call", Some(printable(&call.id)));
    field("Direction", Some(direction_name(call.direction).to_owned()));
    field("From", Some(printable(&call.from)));
    field("To", Some(printable(&call.to)));
    field("CallSid", call.call_sid.as_deref().map(printable));
    field("Status", Some(call.status.to_string()));
    field("Created", Some(format_time(call.created_at)));
    field("Answered", call.answered_at.map(format_time));
    field("Ended", call.ended_at.map(format_time));
    field("Duration", call.duration_ms.map(format_duration));
    field("Instructions", call.instructions.as_deref().map(printable));
    field("Greeting", call.greeting.as_deref().map(printable));
    field("Voice", call.voice.as_deref().map(printable));
    field("Language", call.language.as_deref().map(printable));
    field(
        "Max duration",
        call.max_duration_s.map(|s| format!("{s} s")),
    );
    field(
        "Metadata",
        call.metadata.as_ref().map(|m| printable(&m.to_string())),
    );
    field(
        "Schema",
        call.outcome_schema
            .as_ref()
            .map(|s| printable(&s.to_string())),
    );
    field(
        "MCP servers",
        call.mcp_servers.as_ref().map(|labels| {
            if labels.is_empty() {
                "(none)".to_owned()
            } else {
                printable(&labels.join(", "))
            }
        }),
    );
    field(
        "Error",
        call.error.as_ref().map(|e| match e.code {
            Some(code) => format!("{code}: {}", printable(&e.message)),
            None => printable(&e.message),
        }),
    );

    field(
        "Rollovers",
        (!call.rollovers.is_empty()).then(|| {
            call.rollovers
                .iter()
                .map(|r| {
                    let gap = r
                        .gap_ms
                        .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
                    format!("at {} s ({}, gap {gap})", r.at_s, printable(&r.reason))
                })
                .collect::<Vec<_>>()
                .join("; ")
        }),
    );

    render_schedule(&mut out, call);

    out.push_str("\nStatus timeline:\n");
    for change in &call.status_timeline {
        let _ = writeln!(out, "  {}  {}", format_time(change.at), change.status);
    }

    out.push_str("\nTranscript:\n");
    if call.transcript.is_empty() {
        out.push_str("  (no turns)\n");
    }
    for turn in &call.transcript {
        let speaker = match turn.speaker {
            Speaker::Caller => "caller",
            Speaker::Assistant => "assistant",
            Speaker::Action => "action",
        };
        let interrupted = if turn.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  [+{}.{}s] {speaker}: {}{interrupted}",
            turn.offset_ms / 1000,
            turn.offset_ms % 1000 / 100,
            printable(&turn.text)
        );
    }
    render_recordings(&mut out, call);

    out.push('\n');
    let none = || "-".to_owned();
    let _ = writeln!(
        out,
        "{:<14}{}",
        "Outcome:",
        call.outcome.as_deref().map_or_else(none, printable)
    );
    let _ = writeln!(
        out,
        "{:<14}{}",
        "End reason:",
        call.end_reason.as_deref().map_or_else(none, printable)
    );
    let usage = &call.usage;
    let _ = writeln!(
        out,
        "{:<14}{} total ({} input, {} cached; {} output)",
        "Tokens:",
        usage.total_tokens,
        usage.input_tokens,
        usage.input_token_details.cached_tokens,
        usage.output_tokens
    );
    if let Some(cost) = &call.cost {
        let _ = writeln!(
            out,
            "{:<14}{} estimated (OpenAI {}, transcription {}, Twilio {}; {} prices of {})",
            "Cost:",
            format_usd(cost.total_usd),
            format_usd(cost.openai_usd),
            format_usd(cost.transcription_usd),
            format_usd(cost.twilio_usd),
            printable(&cost.model),
            printable(&cost.prices_as_of),
        );
    }
    out
}

/// The `Recordings:` part of the report, for a call that was to be recorded: one line per recording (`RE…
/// completed 42 s, 2 channels` and its URL; when it is to be deleted at Twilio, or was).
fn render_recordings(out: &mut String, call: &CallView) {
    if !call.record && call.recordings.is_empty() {
        return;
    }
    out.push_str("\nRecordings:\n");
    if call.recordings.is_empty() {
        out.push_str("  (none reported yet)\n");
    }
    for recording in &call.recordings {
        let mut line = format!(
            "  {} {}",
            printable(&recording.sid),
            printable(&recording.status)
        );
        if let Some(duration_s) = recording.duration_s {
            let _ = write!(line, " {duration_s} s");
        }
        if let Some(channels) = recording.channels {
            let _ = write!(line, ", {channels} channels");
        }
        if let Some(at) = recording.deleted_at {
            let _ = write!(line, ", deleted at Twilio {}", format_time(at));
        } else if let Some(at) = recording.delete_due_at {
            let _ = write!(line, ", to be deleted {}", format_time(at));
        }
        let _ = writeln!(out, "{line}");
        if let Some(url) = recording
            .url
            .as_deref()
            .filter(|_| recording.deleted_at.is_none())
        {
            let _ = writeln!(out, "    {}", printable(url));
        }
    }
}

/// A scheduled or retried call's plan, next due time and attempts (nothing for a call placed at once).
fn render_schedule(out: &mut String, call: &CallView) {
    let schedule = &call.schedule;
    if let Some(window) = &schedule.call_window {
        let _ = writeln!(out, "{:<14}{}", "Call window:", printable(window));
    }
    if let Some(not_before) = schedule.not_before {
        let _ = writeln!(out, "{:<14}{}", "Not before:", format_time(not_before));
    }
    if let Some(retry) = &schedule.retry {
        let on: Vec<&str> = retry
            .retry_on
            .iter()
            .map(|r| match r {
                RetryOn::Busy => "busy",
                RetryOn::NoAnswer => "no-answer",
                RetryOn::Failed => "failed",
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<14}up to {} attempts, {} s apart, on {}",
            "Retry:",
            retry.max_attempts,
            retry.backoff_s,
            on.join(", ")
        );
    }
    if let Some(due) = schedule.next_attempt_at {
        let _ = writeln!(out, "{:<14}{}", "Next attempt:", format_time(due));
    }
    if schedule.attempts.is_empty() {
        return;
    }
    out.push_str("\nAttempts:\n");
    for attempt in &schedule.attempts {
        let ended = attempt
            .ended_at
            .map(|at| format!(" - {}", format_time(at)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}. {}  {}{ended}  {}",
            attempt.number,
            attempt
                .call_sid
                .as_deref()
                .map_or_else(|| "-".to_owned(), printable),
            format_time(attempt.started_at),
            attempt
                .result
                .as_deref()
                .map_or_else(|| attempt.status.to_string(), printable)
        );
    }
}

/// A dollar amount as `$0.0123` (four decimals: a call costs cents).
fn format_usd(usd: f64) -> String {
    format!("${usd:.4}")
}

/// `inbound` or `outbound-api`.
fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::OutboundApi => "outbound-api",
    }
}

/// The number at the other end: `from +1555...` for an inbound call, `to +1555...` for an outbound one.
fn other_party(direction: Direction, from: &str, to: &str) -> String {
    match direction {
        Direction::Inbound => format!("from {}", printable(from)),
        Direction::OutboundApi => format!("to {}", printable(to)),
    }
}

/// `2025-03-04 05:06:07` in UTC.
fn format_time(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

/// At most `max` characters of `text`, ending in `…` when cut.
fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Turn;
    use crate::calls::model::{CallError, CallStatus, StatusChange};
    use crate::realtime::usage::Usage;
    use time::macros::datetime;

    fn summary(id: &str, outcome: Option<&str>) -> CallSummary {
        CallSummary {
            id: id.into(),
            direction: Direction::OutboundApi,
            from: "+15550100".into(),
            to: "+15550199".into(),
            status: CallStatus::Completed,
            created_at: datetime!(2025-03-04 05:06:07.5 UTC),
            outcome: outcome.map(str::to_owned),
            end_reason: Some("goodbye".into()),
            duration_ms: Some(83_400),
            cost_usd: None,
        }
    }

    #[test]
    fn a_list_row_shows_the_call_with_its_outcome_cut_to_sixty_characters() {
        let long = "Booked 4 people at 19:30 under Rivera; the window seat is not available tonight, sorry";

        let table = render_list(&[summary("call_a", Some(long))]);

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"), "{table}");
        let row = lines[1];
        assert!(
            row.starts_with("call_a  2025-03-04 05:06:07  outbound-api  to +15550199  completed"),
            "{row}"
        );
        assert!(row.contains("1:23"), "{row}");
        let outcome = &row[row.find("Booked").expect("outcome shown")..];
        assert_eq!(outcome.chars().count(), 60);
        assert!(outcome.ends_with('…'));
    }

    #[test]
    fn a_call_that_ended_with_an_error_is_listed_as_failed_with_its_reason() {
        let mut failed = summary("call_f", None);
        failed.end_reason = Some("error:invalid_api_key".into());

        let table = render_list(&[failed, summary("call_ok", None)]);

        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains("  failed (error:invalid_api_key)  "),
            "{table}"
        );
        assert!(lines[2].contains("  completed  "), "{table}");
    }

    #[test]
    fn list_columns_line_up_across_rows() {
        let table = render_list(&[
            summary("call_short", None),
            summary("call_much_longer_id", Some("ok")),
        ]);

        let starts: Vec<usize> = table
            .lines()
            .skip(1)
            .map(|line| line.find("20").expect("a date in every row"))
            .collect();
        assert_eq!(starts[0], starts[1], "{table}");
    }

    #[test]
    fn a_report_shows_the_timeline_the_transcript_and_the_tokens() {
        let call = CallView {
            engine: None,
            id: "call_x".into(),
            direction: Direction::Inbound,
            from: "+15550100".into(),
            to: "+15550199".into(),
            call_sid: Some("CA1".into()),
            status: CallStatus::Completed,
            instructions: None,
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            outcome: Some("Booked".into()),
            end_reason: Some("goodbye".into()),
            error: Some(CallError {
                code: Some(21211),
                message: "Invalid 'To'".into(),
            }),
            created_at: datetime!(2025-03-04 05:06:07 UTC),
            answered_at: None,
            ended_at: None,
            duration_ms: Some(12_345),
            answering: Default::default(),
            status_timeline: vec![
                StatusChange {
                    status: CallStatus::Queued,
                    at: datetime!(2025-03-04 05:06:07 UTC),
                },
                StatusChange {
                    status: CallStatus::Completed,
                    at: datetime!(2025-03-04 05:06:20 UTC),
                },
            ],
            transcript: vec![
                Turn {
                    speaker: Speaker::Caller,
                    text: "Hello?\n\u{1b}[2J".into(),
                    at: datetime!(2025-03-04 05:06:08 UTC),
                    offset_ms: 1_250,
                    interrupted: false,
                    item_id: None,
                },
                Turn {
                    speaker: Speaker::Assistant,
                    text: "Hi, I'd like".into(),
                    at: datetime!(2025-03-04 05:06:19 UTC),
                    offset_ms: 12_300,
                    interrupted: true,
                    item_id: Some("item_1".into()),
                },
            ],
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
            usage: Usage {
                total_tokens: 900,
                input_tokens: 600,
                output_tokens: 300,
                ..Usage::default()
            },
            outcome_schema: None,
            structured_outcome: None,
            mcp_servers: None,
            mode: Default::default(),
            cost: None,
            max_cost_usd: None,
        };

        let report = render_call(&call);

        assert!(report.contains("CallSid:      CA1\n"), "{report}");
        assert!(
            report.contains("Error:        21211: Invalid 'To'\n"),
            "{report}"
        );
        assert!(
            report.contains("  2025-03-04 05:06:07  queued\n  2025-03-04 05:06:20  completed\n"),
            "{report}"
        );
        assert!(
            report.contains("  [+1.2s] caller: Hello?  [2J\n"),
            "{report}"
        );
        assert!(
            report.contains("  [+12.3s] assistant: Hi, I'd like (interrupted)\n"),
            "{report}"
        );
        assert!(report.contains("Outcome:      Booked\n"), "{report}");
        assert!(report.contains("End reason:   goodbye\n"), "{report}");
        assert!(
            report.contains("Tokens:       900 total (600 input, 0 cached; 300 output)\n"),
            "{report}"
        );
        assert!(!report.contains('\u{1b}'), "no escape reaches the terminal");
        assert!(!report.contains("Answered:"), "unset fields are left out");
    }

    #[test]
    fn a_report_shows_the_recordings_beside_the_transcript_with_their_url_and_deletion() {
        use crate::twilio::recording::{RecordingStatus, RecordingUpdate};
        let store = CallStore::open_in_memory().expect("opens");
        let call = store
            .create(&crate::calls::model::NewCall {
                direction: Direction::Inbound,
                from: "+15550100".into(),
                to: "+15550199".into(),
                call_sid: Some("CA1".into()),
                instructions: None,
                greeting: None,
                voice: None,
                language: None,
                max_duration_s: None,
                metadata: None,
                answering: Default::default(),
                record: true,
                webhook_url: None,
                outcome_schema: None,
                mcp_servers: None,
                mode: Default::default(),
                max_cost_usd: None,
                engine: None,
            })
            .expect("stored");
        let before = render_call(&call);
        let update = |sid: &str| RecordingUpdate {
            sid: sid.into(),
            status: RecordingStatus::Completed,
            url: Some(format!("https://api.twilio.com/Recordings/{sid}")),
            duration_s: Some(42),
            channels: Some(2),
            source: None,
            error_code: None,
        };
        let at = datetime!(2025-03-04 05:06:07 UTC);
        let retention = Some(std::time::Duration::from_secs(60));
        for sid in ["RE1", "RE2"] {
            store
                .apply_recording_update(&call.id, &update(sid), at, retention)
                .expect("stored");
        }
        store
            .mark_recording_deleted("RE2", datetime!(2025-03-04 05:07:30 UTC))
            .expect("deleted");
        let call = store.get(&call.id).expect("reads").expect("exists");

        let report = render_call(&call);

        assert!(
            before.contains("\nRecordings:\n  (none reported yet)\n"),
            "{before}"
        );
        let recordings = &report[report.find("Transcript:").expect("transcript")..];
        assert!(
            recordings.contains(
                "Recordings:\n  RE1 completed 42 s, 2 channels, to be deleted 2025-03-04 05:07:07\n    \
                 https://api.twilio.com/Recordings/RE1\n  RE2 deleted 42 s, 2 channels, deleted at Twilio \
                 2025-03-04 05:07:30\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn a_report_shows_a_retried_calls_plan_next_attempt_and_attempts() {
        use crate::calls::model::{Attempt, Schedule};
        use crate::calls::schedule::RetryPlan;
        let mut call: CallView = serde_json::from_value(serde_json::json!({
            "id": "call_x", "direction": "outbound-api", "from": "+15550100", "to": "+15550199",
            "call_sid": null, "status": "retry-pending", "instructions": null, "greeting": null, "voice": null,
            "language": null, "max_duration_s": null, "metadata": null, "outcome": null, "end_reason": null,
            "error": null, "created_at": "2026-01-15T08:00:00Z", "duration_ms": null, "status_timeline": [],
            "transcript": []
        }))
        .expect("a minimal call");
        call.schedule = Schedule {
            retry: Some(RetryPlan {
                max_attempts: 3,
                backoff_s: 600,
                retry_on: vec![RetryOn::Busy, RetryOn::NoAnswer],
            }),
            not_before: None,
            call_window: Some("09:00-18:00 Europe/Berlin".into()),
            next_attempt_at: Some(datetime!(2026-01-15 08:11 UTC)),
            attempts: vec![Attempt {
                number: 1,
                call_sid: Some("CA1".into()),
                status: CallStatus::Busy,
                started_at: datetime!(2026-01-15 08:00 UTC),
                ended_at: Some(datetime!(2026-01-15 08:01 UTC)),
                result: Some("busy, retried".into()),
            }],
        };

        let report = render_call(&call);

        assert!(report.contains("Status:       retry-pending\n"), "{report}");
        assert!(
            report.contains("Call window:  09:00-18:00 Europe/Berlin\n"),
            "{report}"
        );
        assert!(
            report.contains("Retry:        up to 3 attempts, 600 s apart, on busy, no-answer\n"),
            "{report}"
        );
        assert!(
            report.contains("Next attempt: 2026-01-15 08:11:00\n"),
            "{report}"
        );
        assert!(
            report.contains("  1. CA1  2026-01-15 08:00:00 - 2026-01-15 08:01:00  busy, retried\n"),
            "{report}"
        );
    }

    #[test]
    fn a_report_of_a_call_with_a_schema_shows_it_the_mcp_servers_and_the_json_outcome() {
        let call: CallView = serde_json::from_value(serde_json::json!({
            "id": "call_x", "direction": "outbound-api", "from": "+15550100", "to": "+15550199",
            "status": "completed", "created_at": "2025-03-04T05:06:07Z", "status_timeline": [], "transcript": [],
            "outcome": "{\"booked\":true}", "outcome_schema": {"type": "object"},
            "structured_outcome": {"booked": true}, "mcp_servers": ["calendar", "crm"],
        }))
        .expect("a call");

        let report = render_call(&call);

        assert!(
            report.contains("Schema:       {\"type\":\"object\"}\n"),
            "{report}"
        );
        assert!(report.contains("MCP servers:  calendar, crm\n"), "{report}");
        assert!(
            report.contains("Outcome:      {\"booked\":true}\n"),
            "{report}"
        );
    }

    #[test]
    fn a_report_shows_each_move_to_a_new_realtime_session_with_its_gap() {
        let mut call: CallView = serde_json::from_value(serde_json::json!({
            "id": "call_r", "direction": "inbound", "from": "+15550100", "to": "+15550199",
            "status": "completed", "created_at": "2025-03-04T05:06:07Z", "status_timeline": [], "transcript": [],
            "rollovers": [
                {"at_s": 3300, "gap_ms": 18, "reason": "session_limit", "attempts": 1},
                {"at_s": 3400, "gap_ms": null, "reason": "session_closed", "attempts": 2}
            ]
        }))
        .expect("a stored call's JSON");

        let report = render_call(&call);
        call.rollovers.clear();
        let without = render_call(&call);

        assert!(
            report.contains(
                "Rollovers:    at 3300 s (session_limit, gap 18 ms); at 3400 s (session_closed, gap -)\n"
            ),
            "{report}"
        );
        assert!(!without.contains("Rollovers:"), "{without}");
    }
}
