//! Tests of the PostgreSQL store's own machinery: migrations at open, the store threads' transactions, deadlines
//! and reconnection. The call methods' tests run on both databases beside the SQLite code they mirror.

use super::*;
use crate::calls::store::test_db::{PgSchema, TestStore};
use crate::calls::store::{CallStore, StoreError};

/// The PostgreSQL store of a test store.
fn pg(store: &TestStore) -> &PgDb {
    store.postgres().expect("a PostgreSQL store")
}

#[test]
fn two_instances_opening_an_empty_database_at_once_migrate_it_once() {
    let schema = PgSchema::create();
    let url = schema.url();

    let opened: Vec<Result<CallStore, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| CallStore::open_url(&url)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let applied = schema.query_text("SELECT COUNT(*)::text FROM schema_migrations");
    let newest = schema.query_text("SELECT MAX(version)::text FROM schema_migrations");

    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    assert_eq!(applied, Some(schema::MIGRATIONS.len().to_string()));
    assert_eq!(newest, Some(schema::MIGRATIONS.len().to_string()));
}

#[test]
fn a_second_open_keeps_the_records_and_runs_no_migration_again() {
    let store = TestStore::postgres();
    let call_id = store
        .create(&crate::calls::store::tests::outbound("+15550199"))
        .expect("stored")
        .id;

    let reopened = store.reopen();
    let applied = store
        .pg_schema()
        .expect("a schema")
        .query_text("SELECT COUNT(*)::text FROM schema_migrations");

    assert!(reopened.get(&call_id).expect("read").is_some());
    assert_eq!(applied, Some(schema::MIGRATIONS.len().to_string()));
}

#[test]
fn a_database_migrated_by_a_newer_callbridge_is_refused() {
    let store = TestStore::postgres();
    store
        .pg_schema()
        .expect("a schema")
        .execute("INSERT INTO schema_migrations (version, applied_at_ns) VALUES (99, 0)");

    let result = CallStore::open_url(&store.pg_schema().expect("a schema").url());

    let newest = i64::try_from(schema::MIGRATIONS.len()).expect("a handful");
    assert!(
        matches!(result, Err(StoreError::SchemaTooNew { found: 99, supported }) if supported == newest),
        "{result:?}"
    );
}

#[test]
fn a_write_whose_body_fails_is_rolled_back() {
    let store = TestStore::postgres();

    let result: Result<(), StoreError> = pg(&store).write("test a rollback", |tx| {
        tx.execute(
            "INSERT INTO idempotency_tokens (token, seen_at_ns) VALUES ('rolled-back', 0)",
            &[],
        )
        .map_err(ctx("insert"))?;
        Err(StoreError::NotFound("call_x".into()))
    });
    let kept = store
        .pg_schema()
        .expect("a schema")
        .query_text("SELECT token FROM idempotency_tokens");

    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
    assert_eq!(kept, None);
}

#[test]
fn a_job_that_panics_fails_alone_and_the_store_goes_on() {
    let store = TestStore::postgres();

    let panicked: Result<(), StoreError> = pg(&store).write("panic on purpose", |_| {
        panic!("a bug in a job");
    });
    let next = store.create(&crate::calls::store::tests::outbound("+15550199"));

    assert!(
        matches!(panicked, Err(StoreError::PostgresGone { .. })),
        "{panicked:?}"
    );
    assert!(next.is_ok(), "{next:?}");
}

#[test]
fn a_connection_closed_by_the_server_is_opened_again_for_the_next_job() {
    let store = TestStore::postgres();
    let backend_pid = |store: &TestStore| {
        pg(store).write("read the backend pid", |tx| {
            tx.query_one("SELECT pg_backend_pid()", &[])
                .and_then(|row| row.try_get::<_, i32>(0))
                .map_err(ctx("read the backend pid"))
        })
    };
    let before = backend_pid(&store).expect("a pid");
    store
        .pg_schema()
        .expect("a schema")
        .execute(&format!("SELECT pg_terminate_backend({before})"));

    let first = backend_pid(&store);
    let after = match first {
        Ok(pid) => pid,
        Err(ref error) => {
            assert!(
                error.is_busy(),
                "a lost connection is worth a retry: {error}"
            );
            backend_pid(&store).expect("the retry opens a new connection")
        }
    };

    assert_ne!(after, before, "a new connection");
}

#[test]
fn a_write_held_up_past_the_deadline_fails_as_busy_and_is_not_committed() {
    let store = TestStore::postgres();
    let call = store
        .create(&crate::calls::store::tests::outbound("+15550199"))
        .expect("stored");
    let schema = store.pg_schema().expect("a schema");
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let url = schema.url();
    let id = call.id.clone();
    let holder = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
        let mut tx = client.transaction().expect("begins");
        tx.execute("SELECT 1 FROM calls WHERE id = $1 FOR UPDATE", &[&id])
            .expect("locks the call");
        locked_tx.send(()).expect("told");
        let _ = release.recv();
        tx.rollback().expect("rolls back");
    });
    locked.recv().expect("the call is locked");

    let result = store.set_error(
        &call.id,
        &crate::calls::model::CallError {
            code: Some(1),
            message: "held".into(),
        },
    );
    let _ = release_tx.send(());
    holder.join().expect("the holder did not panic");
    let view = store.get(&call.id).expect("read").expect("present");

    let error = result.expect_err("the write waited on the lock past its deadline");
    assert!(error.is_busy(), "{error}");
    assert_eq!(view.error, None, "nothing was committed");
}

#[test]
fn an_unreachable_database_is_a_clear_error_worth_a_retry() {
    let result = CallStore::open_url("postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=2");

    let error = result.expect_err("nothing listens on port 1");
    assert!(error.is_busy(), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[test]
fn parts_not_ported_yet_report_unsupported() {
    let store = TestStore::postgres();

    let result = store.next_webhook_due();

    assert!(
        matches!(result, Err(StoreError::Unsupported { .. })),
        "{result:?}"
    );
}
