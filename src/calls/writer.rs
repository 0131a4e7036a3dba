//! The store writer: one dedicated thread that performs every write the server makes to the call store, fed by a
//! queue. Whoever writes (a call's bridge, a webhook handler, the API) only enqueues, which never blocks, so a
//! database held locked by another process (a backup, `sqlite3` left open in a shell) stalls no relay and no web
//! worker: the writes wait in the queue, in order, until the lock goes.
//!
//! A write that fails because of another connection's lock (`SQLITE_BUSY`) is retried with a growing delay
//! ([`RetryPolicy`]) for up to [`RETRY_FOR`] (logged); a write that fails for any other reason is logged and dropped.
//! Writes are applied strictly in the order they were queued, so a call's turns, its final record and its status
//! land in the order the call produced them. [`StoreWriter::flush`] waits (with a deadline) until everything queued
//! before it is written: graceful shutdown uses it so the records of the calls it ended are on disk.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};

use crate::calls::model::{CallError, CallStatus, NewCall};
use crate::calls::store::{CallStore, NewSchedule, StoreError};
use crate::calls::{CallRecord, Direction, EndReason, Turn};

/// How long a write is retried while the database is locked before it is given up (and logged as lost). A record
/// given up stays non-terminal until the next start closes it ([`CallStore::reconcile`]).
pub const RETRY_FOR: Duration = Duration::from_secs(600);
/// The first delay before retrying a write that met a lock (the connection's own busy timeout comes on top).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// The longest delay between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How often, at most, a write still waiting for a lock is logged again.
const RETRY_LOG_EVERY: Duration = Duration::from_secs(30);

/// One write to the call store.
#[derive(Debug, Clone)]
pub enum Write {
    /// Store a new call under a chosen id ([`crate::calls::store::new_call_id`]); `answered` moves it to
    /// `in-progress` at once (an inbound call).
    Create {
        /// The id.
        id: String,
        /// The call.
        call: Box<NewCall>,
        /// Whether the call is answered already.
        answered: bool,
    },
    /// Record Twilio's CallSid ([`CallStore::set_call_sid`]).
    SetCallSid {
        /// The call's id.
        id: String,
        /// `CA...`.
        call_sid: String,
    },
    /// Record Twilio's error ([`CallStore::set_error`]).
    SetError {
        /// The call's id.
        id: String,
        /// Twilio's code and message.
        error: CallError,
    },
    /// Move the call forward to `status` ([`CallStore::update_status`]).
    Status {
        /// The call's id.
        id: String,
        /// The new status.
        status: CallStatus,
        /// When it was observed.
        at: OffsetDateTime,
    },
    /// A Twilio status callback ([`CallStore::apply_status_callback`]).
    StatusCallback {
        /// The call's CallSid.
        call_sid: String,
        /// Twilio's `CallStatus`.
        status: CallStatus,
        /// Its `I-Twilio-Idempotency-Token`, when it had one.
        idempotency_token: Option<String>,
        /// When it arrived.
        at: OffsetDateTime,
    },
    /// Append a completed transcript turn ([`CallStore::append_turn`]).
    AppendTurn {
        /// The call's id.
        id: String,
        /// The turn.
        turn: Box<Turn>,
    },
    /// Store the finished record ([`CallStore::finish`]); an inbound call then becomes `completed` (no status
    /// callbacks follow it).
    Finish {
        /// The call's id.
        id: String,
        /// The record as the bridge finished it.
        record: Box<CallRecord>,
    },
    /// Record Twilio's answering machine verdict unless one is stored ([`CallStore::set_answered_by`]).
    AnsweredBy {
        /// The call's id.
        id: String,
        /// The verdict.
        answered_by: crate::twilio::amd::AnsweredBy,
    },
    /// Store a new scheduled call under a chosen id ([`CallStore::create_scheduled`]).
    CreateScheduled {
        /// The id.
        id: String,
        /// The call.
        call: Box<NewCall>,
        /// Its plan and first due time.
        schedule: Box<NewSchedule>,
    },
    /// Start a waiting call's next attempt ([`CallStore::begin_attempt`]).
    BeginAttempt {
        /// The call's id.
        id: String,
        /// When it starts.
        at: OffsetDateTime,
    },
    /// Move a waiting call's next attempt later ([`CallStore::defer_attempt`]).
    DeferAttempt {
        /// The call's id.
        id: String,
        /// The new due time.
        until: OffsetDateTime,
    },
    /// End a waiting call: hung up, or refused by the budget or the policy ([`CallStore::end_waiting`]).
    EndWaiting {
        /// The call's id.
        id: String,
        /// `canceled` or `failed`.
        status: CallStatus,
        /// Why, when refused.
        error: Option<CallError>,
        /// When.
        at: OffsetDateTime,
    },
    /// Twilio refused an attempt's call ([`CallStore::attempt_refused`]).
    AttemptRefused {
        /// The call's id.
        id: String,
        /// Twilio's code and message.
        error: CallError,
        /// When.
        at: OffsetDateTime,
    },
    /// Close an answered call whose stream never opened ([`CallStore::close_unopened`]).
    CloseUnopened {
        /// The call's id.
        id: String,
        /// Why (`error:stream_never_opened`, [`crate::calls::CallFailure::StreamNeverOpened`]).
        end_reason: EndReason,
        /// When the token expired.
        at: OffsetDateTime,
    },
    /// Close a call whose instance was lost ([`CallStore::close_lost`]): `failed`, `instance_lost`.
    CloseLost {
        /// The call's id.
        id: String,
        /// When the lost instance's lease was found expired.
        at: OffsetDateTime,
    },
    /// Store a recording status callback ([`CallStore::apply_recording_update`]).
    Recording {
        /// The call's id.
        call_id: String,
        /// What Twilio reported.
        update: Box<crate::twilio::recording::RecordingUpdate>,
        /// When it arrived.
        at: OffsetDateTime,
        /// How long the recording is kept at Twilio once completed; `None` keeps it.
        retention: Option<Duration>,
    },
    /// Record that a recording was deleted at Twilio ([`CallStore::mark_recording_deleted`]).
    RecordingDeleted {
        /// The RecordingSid.
        sid: String,
        /// When.
        at: OffsetDateTime,
    },
    /// Record a failed attempt to delete a recording and when to try again
    /// ([`CallStore::postpone_recording_deletion`]).
    RecordingDeleteFailed {
        /// The RecordingSid.
        sid: String,
        /// When to try again.
        retry_at: OffsetDateTime,
        /// What went wrong.
        error: String,
    },
    /// A write to the webhook outbox ([`crate::calls::store::OutboxWrite`]).
    Webhook(crate::calls::store::OutboxWrite),
}

impl Write {
    /// What the write does, for the logs.
    fn what(&self) -> &'static str {
        match self {
            Write::Create { .. } => "store a new call",
            Write::SetCallSid { .. } => "record a CallSid",
            Write::SetError { .. } => "record a call's error",
            Write::Status { .. } => "update a call's status",
            Write::StatusCallback { .. } => "apply a status callback",
            Write::AppendTurn { .. } => "append a transcript turn",
            Write::Finish { .. } => "store a call's final record",
            Write::CloseUnopened { .. } => "close a call whose stream never opened",
            Write::CloseLost { .. } => "close a call whose instance was lost",
            Write::AnsweredBy { .. } => "record an answering machine verdict",
            Write::Recording { .. } => "store a recording",
            Write::RecordingDeleted { .. } => "record a recording's deletion",
            Write::RecordingDeleteFailed { .. } => "postpone a recording's deletion",
            Write::Webhook(write) => write.what(),
            Write::CreateScheduled { .. } => "store a scheduled call",
            Write::BeginAttempt { .. } => "start a call's attempt",
            Write::DeferAttempt { .. } => "defer a call's attempt",
            Write::EndWaiting { .. } => "end a waiting call",
            Write::AttemptRefused { .. } => "record a refused attempt",
        }
    }

    /// Performs the write once.
    ///
    /// # Errors
    /// The store's error; [`StoreError::is_busy`] tells whether trying again may succeed.
    pub fn apply(&self, store: &CallStore) -> Result<(), StoreError> {
        match self {
            Write::Create { id, call, answered } => {
                store.create_with_id(id, call)?;
                if *answered {
                    store.update_status(id, CallStatus::InProgress, OffsetDateTime::now_utc())?;
                }
            }
            Write::SetCallSid { id, call_sid } => store.set_call_sid(id, call_sid)?,
            Write::SetError { id, error } => store.set_error(id, error)?,
            Write::Status { id, status, at } => {
                if store.update_status(id, *status, *at)? {
                    tracing::info!(call_id = %id, %status, "call status");
                }
            }
            Write::StatusCallback {
                call_sid,
                status,
                idempotency_token,
                at,
            } => match store.apply_status_callback(
                call_sid,
                *status,
                idempotency_token.as_deref(),
                *at,
            )? {
                Some((id, true)) => {
                    tracing::info!(call_id = %id, %call_sid, %status, "call status")
                }
                Some((_, false)) => {
                    tracing::debug!(%call_sid, %status, "status callback out of order; ignored");
                }
                None => tracing::debug!(
                    %call_sid,
                    %status,
                    "status callback delivered again, or for a call this server does not know; ignored"
                ),
            },
            Write::AppendTurn { id, turn } => store.append_turn(id, turn)?,
            Write::Finish { id, record } => {
                if record.direction == Direction::Inbound {
                    store.finish_completed(id, record, OffsetDateTime::now_utc())?;
                } else {
                    store.finish(id, record)?;
                }
            }
            Write::CloseUnopened { id, end_reason, at } => {
                store.close_unopened(id, end_reason, *at)?;
            }
            Write::CloseLost { id, at } => {
                if store.close_lost(id, *at)? {
                    tracing::warn!(call_id = %id, status = %CallStatus::Failed, end_reason = "instance_lost", "call of a lost instance closed");
                }
            }
            Write::CreateScheduled { id, call, schedule } => {
                store.create_scheduled(id, call, schedule)?;
                tracing::info!(call_id = %id, due = %schedule.first_attempt_at, "call scheduled");
            }
            Write::BeginAttempt { id, at } => {
                if store.begin_attempt(id, *at)? {
                    tracing::info!(call_id = %id, status = %CallStatus::Queued, "call status: attempt started");
                }
            }
            Write::DeferAttempt { id, until } => {
                if store.defer_attempt(id, *until)? {
                    tracing::info!(call_id = %id, due = %until, "attempt deferred");
                }
            }
            Write::EndWaiting {
                id,
                status,
                error,
                at,
            } => {
                if store.end_waiting(id, *status, error.as_ref(), *at)? {
                    tracing::info!(call_id = %id, %status, "call status");
                }
            }
            Write::AttemptRefused { id, error, at } => {
                let retried = store.attempt_refused(id, error, *at)?;
                tracing::info!(call_id = %id, retried, "call status: attempt refused by Twilio");
            }
            Write::AnsweredBy { id, answered_by } => {
                if store.set_answered_by(id, *answered_by)? {
                    tracing::info!(call_id = %id, %answered_by, "answered by");
                }
            }
            Write::Recording {
                call_id,
                update,
                at,
                retention,
            } => {
                let new = store.apply_recording_update(call_id, update, *at, *retention)?;
                tracing::info!(
                    %call_id,
                    recording_sid = %update.sid,
                    status = %update.status,
                    duration_s = ?update.duration_s,
                    new,
                    "recording reported"
                );
            }
            Write::RecordingDeleted { sid, at } => {
                if store.mark_recording_deleted(sid, *at)? {
                    tracing::info!(recording_sid = %sid, "recording deleted at Twilio");
                }
            }
            Write::RecordingDeleteFailed {
                sid,
                retry_at,
                error,
            } => store.postpone_recording_deletion(sid, *retry_at, error)?,
            Write::Webhook(write) => write.apply(store)?,
        }
        Ok(())
    }
}

/// When to try a write again after it met a lock: doubling delays from a first delay up to a maximum, for a
/// bounded time in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the second attempt.
    pub first_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// No attempt starts later than this after the first one.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// 50 ms, doubling up to 5 s, for [`RETRY_FOR`].
    fn default() -> Self {
        RetryPolicy {
            first_delay: FIRST_RETRY_DELAY,
            max_delay: MAX_RETRY_DELAY,
            give_up_after: RETRY_FOR,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failed + 1`, after `failed` attempts (at least 1) failed and `elapsed` has passed
    /// since the first began; `None` when the write should be given up.
    pub fn delay_after(&self, failed: u32, elapsed: Duration) -> Option<Duration> {
        let doubling = 2_u32.saturating_pow(failed.saturating_sub(1));
        let delay = self
            .first_delay
            .saturating_mul(doubling)
            .min(self.max_delay);
        (elapsed.saturating_add(delay) <= self.give_up_after).then_some(delay)
    }
}

/// What to call once a write is done (or given up), with its result.
pub type OnDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A queued item.
enum Job {
    /// A write, and whom to tell when it is done.
    Write(Write, Option<OnDone>),
    /// Answered once everything queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// The handle on the writer thread. Cheap to clone; the thread ends when the last handle is dropped and the queue
/// is empty.
#[derive(Clone)]
pub struct StoreWriter {
    /// The queue (unbounded: a send never blocks; writes are small and a call makes a few per turn).
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter").finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Starts the writer thread over `store`; `changed` is woken after each write that may change what a reader
    /// waiting for a call sees (everything but turn appends).
    ///
    /// # Panics
    /// When the OS cannot start a thread (at start-up).
    pub fn spawn(store: CallStore, changed: Arc<Notify>, policy: RetryPolicy) -> StoreWriter {
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("callbridge-store-writer".into())
            .spawn(move || {
                for job in jobs {
                    match job {
                        Job::Flush(done) => {
                            let _ = done.send(());
                        }
                        Job::Write(write, on_done) => {
                            let result = write_with_retry(&store, &write, policy);
                            if result.is_ok() && !matches!(write, Write::AppendTurn { .. }) {
                                changed.notify_waiters();
                            }
                            if let Some(on_done) = on_done {
                                on_done(result);
                            }
                        }
                    }
                }
            })
            .expect("the OS starts the store writer thread");
        StoreWriter { queue }
    }

    /// Queues `write`; never blocks.
    pub fn submit(&self, write: Write) {
        self.enqueue(Job::Write(write, None));
    }

    /// Queues `write` and calls `on_done` (on the writer thread) once it is written or given up.
    pub fn submit_then(&self, write: Write, on_done: OnDone) {
        self.enqueue(Job::Write(write, Some(on_done)));
    }

    /// Queues `write` and waits up to `deadline` for it to be written.
    ///
    /// # Errors
    /// `Err(None)` when the deadline passed first (the write stays queued and will still happen);
    /// `Err(Some(error))` when the write failed for good.
    pub async fn write(&self, write: Write, deadline: Duration) -> Result<(), Option<StoreError>> {
        let (done, written) = oneshot::channel();
        self.submit_then(
            write,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        );
        match tokio::time::timeout(deadline, written).await {
            Ok(Ok(result)) => result.map_err(Some),
            Ok(Err(_)) | Err(_) => Err(None),
        }
    }

    /// Waits up to `deadline` until every write queued before this call is done; true when it is.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        self.enqueue(Job::Flush(done));
        matches!(tokio::time::timeout(deadline, flushed).await, Ok(Ok(())))
    }

    /// Sends a job to the thread (logged if the thread is gone, which only a panic in it can cause).
    fn enqueue(&self, job: Job) {
        if self.queue.send(job).is_err() {
            tracing::error!("the call store writer has stopped; a write is lost");
        }
    }
}

/// Performs `write`, retrying it per `policy` while the database is locked. Logs a write that waits, one that
/// gets through after waiting, and one given up.
///
/// # Errors
/// The last error when the write failed for another reason than a lock, or the lock outlasted the policy.
pub fn write_with_retry(
    store: &CallStore,
    write: &Write,
    policy: RetryPolicy,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut failed = 0_u32;
    let mut logged_at: Option<Instant> = None;
    loop {
        let error = match write.apply(store) {
            Ok(()) => {
                if failed > 0 {
                    tracing::info!(
                        what = write.what(),
                        attempts = failed + 1,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "call store write done once the lock was released"
                    );
                }
                return Ok(());
            }
            Err(error) => error,
        };
        failed += 1;
        let delay = error
            .is_busy()
            .then(|| policy.delay_after(failed, started.elapsed()))
            .flatten();
        let Some(delay) = delay else {
            tracing::error!(
                what = write.what(),
                %error,
                attempts = failed,
                "call store write given up"
            );
            return Err(error);
        };
        if logged_at.is_none_or(|at| at.elapsed() >= RETRY_LOG_EVERY) {
            tracing::warn!(
                what = write.what(),
                %error,
                attempts = failed,
                "the call database is locked by another connection; the write waits and is retried"
            );
            logged_at = Some(Instant::now());
        }
        std::thread::sleep(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Speaker;
    use rusqlite::Connection;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            give_up_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_maximum() {
        let delays: Vec<Option<Duration>> = (1..=6)
            .map(|failed| policy().delay_after(failed, Duration::ZERO))
            .collect();

        assert_eq!(
            delays,
            [100, 200, 400, 800, 800, 800]
                .map(|ms| Some(Duration::from_millis(ms)))
                .to_vec()
        );
    }

    #[test]
    fn a_retry_that_would_start_after_the_bound_is_given_up() {
        let policy = policy();

        assert_eq!(
            policy.delay_after(9, Duration::from_millis(9_200)),
            Some(Duration::from_millis(800))
        );
        assert_eq!(policy.delay_after(9, Duration::from_millis(9_300)), None);
        assert_eq!(
            policy.delay_after(u32::MAX, Duration::ZERO),
            Some(Duration::from_millis(800))
        );
    }

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "callbridge-writer-{name}-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn inbound_call(call_sid: &str) -> NewCall {
        NewCall {
            engine: None,
            direction: Direction::Inbound,
            from: "+15550100001".into(),
            to: "+15550100002".into(),
            call_sid: Some(call_sid.into()),
            instructions: None,
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
        }
    }

    /// A second real connection holding a write transaction on the file.
    fn lock_database(path: &std::path::Path) -> Connection {
        let locker = Connection::open(path).expect("a second connection opens");
        locker
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO idempotency_tokens (token, seen_at_ns) VALUES ('lock', 0);",
            )
            .expect("the second connection takes the write lock");
        locker
    }

    #[test]
    fn a_final_record_written_while_another_connection_holds_the_lock_lands_once_the_lock_goes() {
        let dir = TempDir::new("lock");
        let path = dir.0.join("callbridge.db");
        let store = CallStore::open(&path).expect("opens");
        let id = crate::calls::store::new_call_id();
        store
            .create_with_id(&id, &inbound_call("CA1"))
            .expect("stored");
        store
            .update_status(&id, CallStatus::InProgress, OffsetDateTime::now_utc())
            .expect("in progress");
        let locker = lock_database(&path);
        let mut record =
            CallRecord::new("CA1".into(), Direction::Inbound, "+1".into(), "+2".into());
        record.push_turn(Speaker::Caller, "Hello there", 500, false, None);
        record.finish(EndReason::Goodbye, 2_000);
        let write = Write::Finish {
            id: id.clone(),
            record: Box::new(record),
        };

        let writer = std::thread::spawn({
            let store = store.clone();
            move || write_with_retry(&store, &write, policy())
        });
        std::thread::sleep(Duration::from_millis(1_500));
        let during = store
            .get(&id)
            .expect("reads while locked")
            .expect("present");
        locker
            .execute_batch("COMMIT")
            .expect("the lock is released");
        let result = writer.join().expect("the writer thread does not panic");
        let after = store.get(&id).expect("read").expect("present");

        assert!(result.is_ok(), "{result:?}");
        assert_eq!(during.end_reason, None, "not written while locked");
        assert_eq!(after.end_reason.as_deref(), Some("goodbye"));
        assert_eq!(after.status, CallStatus::Completed);
        assert_eq!(after.transcript.len(), 1);
    }

    #[test]
    fn a_write_is_given_up_when_the_lock_outlasts_the_policy() {
        let dir = TempDir::new("give-up");
        let path = dir.0.join("callbridge.db");
        let store = CallStore::open(&path).expect("opens");
        let id = crate::calls::store::new_call_id();
        store
            .create_with_id(&id, &inbound_call("CA2"))
            .expect("stored");
        let _locker = lock_database(&path);
        let short = RetryPolicy {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            give_up_after: Duration::from_millis(50),
        };

        let result = write_with_retry(
            &store,
            &Write::Status {
                id,
                status: CallStatus::InProgress,
                at: OffsetDateTime::now_utc(),
            },
            short,
        );

        assert!(
            result.as_ref().is_err_and(StoreError::is_busy),
            "{result:?}"
        );
    }

    #[test]
    fn a_write_that_cannot_succeed_is_not_retried() {
        let store = CallStore::open_in_memory().expect("opens");
        let started = Instant::now();

        let result = write_with_retry(
            &store,
            &Write::SetCallSid {
                id: "call_unknown".into(),
                call_sid: "CA3".into(),
            },
            policy(),
        );

        assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        assert!(started.elapsed() < policy().first_delay, "no retry delay");
    }

    #[tokio::test]
    async fn writes_are_applied_in_queue_order_and_a_flush_waits_for_them() {
        let store = CallStore::open_in_memory().expect("opens");
        let writer = StoreWriter::spawn(store.clone(), Arc::new(Notify::new()), policy());
        let id = crate::calls::store::new_call_id();
        writer.submit(Write::Create {
            id: id.clone(),
            call: Box::new(inbound_call("CA4")),
            answered: true,
        });
        let mut record =
            CallRecord::new("CA4".into(), Direction::Inbound, "+1".into(), "+2".into());
        for n in 0..20 {
            record.push_turn(Speaker::Caller, &format!("turn {n}"), n, false, None);
            writer.submit(Write::AppendTurn {
                id: id.clone(),
                turn: Box::new(record.turns[n as usize].clone()),
            });
        }

        let flushed = writer.flush(Duration::from_secs(5)).await;
        let view = store.get(&id).expect("read").expect("created first");

        assert!(flushed);
        assert_eq!(view.status, CallStatus::InProgress);
        let texts: Vec<String> = view.transcript.into_iter().map(|t| t.text).collect();
        assert_eq!(
            texts,
            (0..20).map(|n| format!("turn {n}")).collect::<Vec<_>>()
        );
    }
}
