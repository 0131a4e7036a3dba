//! Test support: the call store on each of its databases, so that one test body runs against both.
//!
//! [`both_backends!`] turns `fn name(store) { ... }` into two tests, `name::sqlite` (a database in memory, or a file
//! with `file fn`) and `name::postgres` (a fresh schema `t_<random>` of the database at
//! `CALLBRIDGE_TEST_DATABASE_URL`, dropped at the end). Without that variable the PostgreSQL test fails with a
//! message naming `make services`, which starts a PostgreSQL for the tests.

use std::ops::Deref;
use std::path::PathBuf;

use super::{CallStore, new_call_id};

/// The variable naming the PostgreSQL database the tests may create and drop schemas in.
pub(crate) const TEST_DATABASE_URL: &str = "CALLBRIDGE_TEST_DATABASE_URL";

/// A call store for one test, and what to clean up after it.
pub(crate) struct TestStore {
    /// The store under test.
    store: CallStore,
    /// Where its records are.
    place: Place,
}

/// Where a [`TestStore`]'s records are.
enum Place {
    /// A SQLite database in memory: gone with the store.
    Memory,
    /// A SQLite file under the temp dir, removed at the end.
    File(PathBuf),
    /// A PostgreSQL schema, dropped at the end.
    Postgres(PgSchema),
}

impl TestStore {
    /// A SQLite store in memory.
    pub(crate) fn sqlite() -> TestStore {
        TestStore {
            store: CallStore::open_in_memory().expect("an in-memory database opens"),
            place: Place::Memory,
        }
    }

    /// A SQLite store in a fresh file (two connections, as the server has), removed at the end.
    pub(crate) fn sqlite_file() -> TestStore {
        let dir = std::env::temp_dir().join(format!(
            "callbridge-test-store-{}-{}",
            std::process::id(),
            new_call_id()
        ));
        let store =
            CallStore::open(&dir.join("callbridge.db")).expect("a fresh database file opens");
        TestStore {
            store,
            place: Place::File(dir),
        }
    }

    /// A PostgreSQL store in a fresh schema of `CALLBRIDGE_TEST_DATABASE_URL`, dropped at the end.
    ///
    /// # Panics
    ///
    /// When the variable is unset (the message names `make services`) or the database cannot be reached.
    pub(crate) fn postgres() -> TestStore {
        let schema = PgSchema::create();
        let store = CallStore::open_url(&schema.url()).expect("the PostgreSQL test schema opens");
        TestStore {
            store,
            place: Place::Postgres(schema),
        }
    }

    /// Another store on the same records, as a restarted server (or a second instance) opens them.
    ///
    /// # Panics
    ///
    /// For a database in memory, which no second store can open.
    pub(crate) fn reopen(&self) -> CallStore {
        match &self.place {
            Place::Memory => panic!("a database in memory cannot be reopened; use `file fn`"),
            Place::File(dir) => CallStore::open(&dir.join("callbridge.db")).expect("reopens"),
            Place::Postgres(schema) => CallStore::open_url(&schema.url()).expect("reopens"),
        }
    }

    /// The PostgreSQL schema of this store, when it has one.
    pub(crate) fn pg_schema(&self) -> Option<&PgSchema> {
        match &self.place {
            Place::Postgres(schema) => Some(schema),
            _ => None,
        }
    }
}

impl Deref for TestStore {
    type Target = CallStore;

    fn deref(&self) -> &CallStore {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Place::File(dir) = &self.place {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh schema in the PostgreSQL test database; dropped (with everything in it) when this is.
pub(crate) struct PgSchema {
    /// `CALLBRIDGE_TEST_DATABASE_URL`.
    base_url: String,
    /// `t_` and 26 random characters.
    name: String,
}

impl PgSchema {
    /// Creates a schema named `t_<random>`.
    ///
    /// # Panics
    ///
    /// When `CALLBRIDGE_TEST_DATABASE_URL` is unset or the schema cannot be created.
    pub(crate) fn create() -> PgSchema {
        let base_url = std::env::var(TEST_DATABASE_URL).unwrap_or_else(|_| {
            panic!(
                "{TEST_DATABASE_URL} is not set: the PostgreSQL store tests need a database they may create schemas \
                 in. Run `make services` (it starts PostgreSQL and Redis for the tests and writes \
                 target/services/env) and export its variables, or point {TEST_DATABASE_URL} at a database, e.g. \
                 postgres://callbridge:callbridge@127.0.0.1:5432/callbridge_test"
            )
        });
        let name = format!("t_{}", &new_call_id()["call_".len()..]);
        admin(&base_url, format!("CREATE SCHEMA {name}"));
        PgSchema { base_url, name }
    }

    /// The test database's URL with this schema first on the `search_path`.
    pub(crate) fn url(&self) -> String {
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

    /// Runs `sql` on a connection of its own in this schema (a test's direct look at the tables).
    pub(crate) fn execute(&self, sql: &str) {
        admin(&self.url(), sql.to_owned());
    }

    /// The first column of the first row `sql` returns, as text (`::text` in the query), on a connection of its own.
    pub(crate) fn query_text(&self, sql: &str) -> Option<String> {
        let url = self.url();
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
            client
                .query_opt(&sql, &[])
                .expect("the query runs")
                .map(|row| row.get(0))
        })
        .join()
        .expect("the query thread did not panic")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, sql) = (
            self.base_url.clone(),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
        // Best effort: a schema left behind only takes space in the test database.
        let _ = std::thread::spawn(move || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut client| client.batch_execute(&sql))
        })
        .join();
    }
}

/// Runs `sql` on a fresh connection to `url`, on a thread of its own (a blocking PostgreSQL client must not run on
/// a test's tokio runtime).
fn admin(url: &str, sql: String) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL test database: {e}"));
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("cannot run {sql:?}: {e}"));
    })
    .join()
    .expect("the PostgreSQL admin thread did not panic");
}

/// Declares one test per database: `both_backends! { fn name(store) { ... } }` gives `name::sqlite` (in memory)
/// and `name::postgres`, each with `store` a [`TestStore`]; `file fn` uses a SQLite file instead of memory (for
/// tests that reopen the store or use it from several threads). Attributes before `fn` go on both tests.
macro_rules! both_backends {
    ($(#[$attr:meta])* fn $name:ident($store:ident) $body:block) => {
        $crate::calls::store::test_db::both_backends!(@ sqlite, $(#[$attr])* fn $name($store) $body);
    };
    ($(#[$attr:meta])* file fn $name:ident($store:ident) $body:block) => {
        $crate::calls::store::test_db::both_backends!(@ sqlite_file, $(#[$attr])* fn $name($store) $body);
    };
    (@ $sqlite:ident, $(#[$attr:meta])* fn $name:ident($store:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            #[test]
            fn sqlite() {
                let $store = $crate::calls::store::test_db::TestStore::$sqlite();
                $body
            }

            $(#[$attr])*
            #[test]
            fn postgres() {
                let $store = $crate::calls::store::test_db::TestStore::postgres();
                $body
            }
        }
    };
}

pub(crate) use both_backends;
