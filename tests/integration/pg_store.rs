//! The call store on PostgreSQL (`CALLBRIDGE_DATABASE_URL`): a call's record, status and turns land in the
//! database, not in the data directory's SQLite file, and a second start on the same database migrates nothing and
//! reads them back. Each test works in a fresh schema of `CALLBRIDGE_TEST_DATABASE_URL` (`make services`).

use std::sync::Arc;
use std::time::Duration;

use callbridge::calls::clock::SystemClock;
use callbridge::calls::model::CallStatus;
use callbridge::calls::store::CallStore;
use callbridge::calls::{EndReason, Speaker};
use callbridge::simulate::Observation;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{ACCOUNT_SID, CALLER_HELLO, post_signed, spawn_app_with_clock, temp_data_dir};

/// A fresh schema `t_<random>` in the PostgreSQL test database, dropped when this is.
struct Schema {
    /// `CALLBRIDGE_TEST_DATABASE_URL`.
    base_url: String,
    /// The schema's name.
    name: String,
}

impl Schema {
    fn create() -> Schema {
        let base_url = std::env::var("CALLBRIDGE_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "CALLBRIDGE_TEST_DATABASE_URL is not set: this test needs a PostgreSQL database it may create \
                 schemas in. Run `make services` and export the variables it writes to target/services/env."
            )
        });
        let name = format!(
            "t_{}",
            &callbridge::calls::store::new_call_id()["call_".len()..]
        );
        admin(&base_url, &format!("CREATE SCHEMA {name}"));
        Schema { base_url, name }
    }

    /// The database URL with this schema on the `search_path`, as `CALLBRIDGE_DATABASE_URL`.
    fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, sql) = (
            self.base_url.clone(),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
        let _ = std::thread::spawn(move || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut client| client.batch_execute(&sql))
        })
        .join();
    }
}

/// Runs `sql` on a connection of its own (on a thread: a blocking client must not run on the test's runtime).
fn admin(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL test database: {e}"));
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("cannot run {sql:?}: {e}"));
    })
    .join()
    .expect("the admin thread did not panic");
}

#[actix_web::test]
async fn a_call_made_with_a_database_url_is_stored_in_postgresql_and_a_second_start_reads_it() {
    let schema = Schema::create();
    let url = schema.url();
    let data_dir = temp_data_dir();
    let data_dir_text = data_dir.display().to_string();
    let env = [
        ("CALLBRIDGE_DATABASE_URL", url.as_str()),
        ("CALLBRIDGE_DATA_DIR", data_dir_text.as_str()),
    ];
    let script = Script {
        responses: vec![ScriptedResponse::speak(500, "Hello there.")],
        caller_transcripts: vec!["Hi.".into()],
        ..Script::default()
    };
    let (app, stop) = spawn_app_with_clock(script, &env, Arc::new(SystemClock)).await;

    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect("the reply", Duration::from_secs(15), |o| {
        matches!(o, Observation::Media { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.stream.stop().await;
    let call_sid = call.webhook.call_sid.clone();
    let served = app.record(&call_sid, Duration::from_secs(5)).await;
    let (code, body) = post_signed(
        &app.address,
        "/call-status",
        &[
            ("CallSid", call_sid.as_str()),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", "completed"),
        ],
        None,
        Some("pg-store-completed"),
    )
    .await;
    assert_eq!(code, 204, "{body}");
    assert!(app.calls.writer().flush(Duration::from_secs(10)).await);
    stop.stop().await;

    let (second, second_stop) =
        spawn_app_with_clock(Script::default(), &env, Arc::new(SystemClock)).await;
    let after_restart = second
        .stored(&call_sid)
        .expect("the second start reads the call");
    second_stop.stop().await;
    let url_for_read = url.clone();
    let call_sid_for_read = call_sid.clone();
    let (stored, listed) = tokio::task::spawn_blocking(move || {
        let store = CallStore::open_url(&url_for_read).expect("the database opens");
        (
            store
                .get_by_call_sid(&call_sid_for_read)
                .expect("reads")
                .expect("the call is in PostgreSQL"),
            store.list(10).expect("lists"),
        )
    })
    .await
    .expect("the read ran");
    let migrations = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
            client
                .query_one("SELECT COUNT(*), MAX(version) FROM schema_migrations", &[])
                .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
                .expect("counted")
        })
        .join()
        .expect("the count ran")
    };

    assert_eq!(stored.status, CallStatus::Completed, "{stored:?}");
    assert_eq!(
        stored.status_timeline.last().map(|c| c.status),
        Some(CallStatus::Completed)
    );
    assert_eq!(stored.end_reason, Some(EndReason::CallerHungUp.to_string()));
    let speakers: Vec<Speaker> = stored.transcript.iter().map(|t| t.speaker).collect();
    assert_eq!(
        speakers,
        [Speaker::Caller, Speaker::Assistant],
        "{:?}",
        stored.transcript
    );
    assert_eq!(stored.transcript, served.transcript);
    assert_eq!(
        after_restart, stored,
        "the second start reads the same record"
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        migrations.0, migrations.1,
        "each migration was applied once, by the first start"
    );
    assert!(
        !data_dir.join("callbridge.db").exists(),
        "nothing went to the SQLite file"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn callbridge_calls_reads_the_records_from_the_database_url() {
    let schema = Schema::create();
    let url = schema.url();
    let store = CallStore::open_url(&url).expect("the database opens");
    let call = store
        .create(&callbridge::calls::model::NewCall {
            direction: callbridge::calls::Direction::OutboundApi,
            from: "+14155550100".into(),
            to: "+14155552671".into(),
            call_sid: None,
            instructions: Some("Book a table.".into()),
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            answering: Default::default(),
            record: false,
            webhook_url: None,
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
            engine: None,
        })
        .expect("stored");
    let empty_data_dir = temp_data_dir();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .arg("calls")
            .args(args)
            .env_clear()
            .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
            .env("CALLBRIDGE_DATA_DIR", &empty_data_dir)
            .env("CALLBRIDGE_DATABASE_URL", &url)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("the binary runs")
    };

    let listed = run(&["list", "--json"]);
    let shown = run(&["show", &call.id, "--json"]);

    assert!(listed.status.success(), "{listed:?}");
    let summaries: Vec<callbridge::calls::model::CallSummary> =
        serde_json::from_slice(&listed.stdout).expect("a JSON list");
    assert_eq!(summaries, [call.summary()]);
    assert!(shown.status.success(), "{shown:?}");
    let view: callbridge::calls::model::CallView =
        serde_json::from_slice(&shown.stdout).expect("a JSON call");
    assert_eq!(view, call);
}
