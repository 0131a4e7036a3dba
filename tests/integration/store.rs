//! `callbridge calls list` and `callbridge calls show`, the binary, on a database this test writes with
//! [`CallStore`] in a temporary data directory: what is printed, the JSON, the exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;

use callbridge::calls::model::{CallStatus, CallSummary, CallView, NewCall};
use callbridge::calls::store::CallStore;
use callbridge::calls::{CallRecord, Direction, EndReason, Speaker};

/// A data directory of its own under the system temp dir, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!(
            "callbridge-calls-cli-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    fn store(&self) -> CallStore {
        CallStore::open(&self.0.join("callbridge.db")).expect("the test database opens")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `callbridge calls ARGS` with only `CALLBRIDGE_DATA_DIR` set.
fn calls(data_dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("calls")
        .args(args)
        .env_clear()
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .env("CALLBRIDGE_DATA_DIR", data_dir)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn new_call(direction: Direction, from: &str, to: &str) -> NewCall {
    NewCall {
        direction,
        from: from.into(),
        to: to.into(),
        call_sid: None,
        instructions: Some("Book a table for 4 tonight at 7:30 under Rivera".into()),
        greeting: None,
        voice: None,
        language: None,
        max_duration_s: Some(300),
        metadata: None,
        answering: Default::default(),
        record: false,
        webhook_url: None,
        outcome_schema: None,
        mcp_servers: None,
        mode: Default::default(),
        max_cost_usd: None,
        engine: None,
    }
}

/// Stores a completed outbound call with a two-turn transcript and an outcome; returns its id.
fn store_completed_call(store: &CallStore) -> String {
    let call = store
        .create(&new_call(Direction::OutboundApi, "+15550100", "+15550199"))
        .expect("stored");
    store
        .set_call_sid(&call.id, "CA0123456789abcdef")
        .expect("stored");
    let now = time::OffsetDateTime::now_utc();
    for status in [
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
    ] {
        store.update_status(&call.id, status, now).expect("updated");
    }
    let mut record = CallRecord::new(
        "CA0123456789abcdef".into(),
        Direction::OutboundApi,
        "+15550100".into(),
        "+15550199".into(),
    );
    record.push_turn(
        Speaker::Caller,
        "Trattoria Rivera, good evening.",
        1_200,
        false,
        None,
    );
    record.push_turn(
        Speaker::Assistant,
        "Hi, I'd like to book",
        4_500,
        true,
        Some("item_1"),
    );
    record.outcome = Some("Booked 4 people at 19:30 under Rivera".into());
    record.usage.total_tokens = 1234;
    record.finish(EndReason::Goodbye, 65_000);
    store.finish(&call.id, &record).expect("finished");
    call.id
}

#[test]
fn calls_list_prints_the_stored_calls_newest_first() {
    let dir = DataDir::new("list");
    let store = dir.store();
    let older = store_completed_call(&store);
    let newer = store
        .create(&new_call(Direction::Inbound, "+15550142", "+15550100"))
        .expect("stored")
        .id;

    let output = calls(&dir.0, &["list"]);

    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with(&newer) && lines[1].contains("from +15550142"),
        "{out}"
    );
    assert!(lines[1].contains("queued"), "{out}");
    assert!(
        lines[2].starts_with(&older) && lines[2].contains("to +15550199"),
        "{out}"
    );
    assert!(
        lines[2].contains("completed") && lines[2].contains("1:05"),
        "{out}"
    );
    assert!(
        lines[2].contains("Booked 4 people at 19:30 under Rivera"),
        "{out}"
    );
}

#[test]
fn calls_list_json_prints_the_summaries_the_api_returns() {
    let dir = DataDir::new("list-json");
    let store = dir.store();
    store_completed_call(&store);
    store_completed_call(&store);
    store_completed_call(&store);

    let output = calls(&dir.0, &["list", "--limit", "2", "--json"]);

    assert!(output.status.success(), "{}", stderr(&output));
    let printed: Vec<CallSummary> = serde_json::from_slice(&output.stdout).expect("JSON summaries");
    assert_eq!(printed, store.list(2).expect("listed"));
    assert_eq!(printed.len(), 2);
}

#[test]
fn calls_show_prints_the_timeline_the_transcript_and_the_outcome() {
    let dir = DataDir::new("show");
    let store = dir.store();
    let id = store_completed_call(&store);

    let output = calls(&dir.0, &["show", &id]);

    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.contains(&format!("Call:         {id}\n")), "{out}");
    assert!(out.contains("CallSid:      CA0123456789abcdef\n"), "{out}");
    let statuses: Vec<&str> = ["queued", "ringing", "in-progress", "completed"]
        .into_iter()
        .filter(|s| out.lines().any(|line| line.ends_with(&format!("  {s}"))))
        .collect();
    assert_eq!(
        statuses,
        ["queued", "ringing", "in-progress", "completed"],
        "{out}"
    );
    assert!(
        out.contains("  [+1.2s] caller: Trattoria Rivera, good evening.\n"),
        "{out}"
    );
    assert!(
        out.contains("  [+4.5s] assistant: Hi, I'd like to book (interrupted)\n"),
        "{out}"
    );
    assert!(
        out.contains("Outcome:      Booked 4 people at 19:30 under Rivera\n"),
        "{out}"
    );
    assert!(out.contains("End reason:   goodbye\n"), "{out}");
    assert!(out.contains("Tokens:       1234 total"), "{out}");
}

#[test]
fn calls_show_finds_a_call_by_its_call_sid_and_prints_the_api_json() {
    let dir = DataDir::new("show-sid");
    let store = dir.store();
    let id = store_completed_call(&store);

    let output = calls(&dir.0, &["show", "CA0123456789abcdef", "--json"]);

    assert!(output.status.success(), "{}", stderr(&output));
    let printed: CallView = serde_json::from_slice(&output.stdout).expect("a JSON call");
    assert_eq!(Some(printed), store.get(&id).expect("read"));
}

#[test]
fn calls_show_with_an_unknown_id_says_so_and_exits_1() {
    let dir = DataDir::new("show-unknown");
    store_completed_call(&dir.store());

    let output = calls(&dir.0, &["show", "call_doesnotexist"]);

    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("No call with id or CallSid \"call_doesnotexist\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn calls_list_without_a_database_says_so_and_creates_nothing() {
    let dir = DataDir::new("no-db");

    let output = calls(&dir.0, &["list"]);

    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("No call records yet"), "{err}");
    assert!(
        err.contains(&dir.0.join("callbridge.db").display().to_string()),
        "{err}"
    );
    assert!(!dir.0.exists(), "the CLI only reads");
}
