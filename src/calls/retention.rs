//! The retention of call recordings: a task that deletes each recording at Twilio when its retention ran out
//! (`CALLBRIDGE_RECORDING_RETENTION_DAYS`), and records that it did.
//!
//! The job is durable: each recording's row in the store holds its due time ([`CallStore::apply_recording_update`]
//! sets it when Twilio reports the recording completed), so a restart loses nothing. The task sweeps at start
//! (whatever fell due while the server was down), then sleeps until the next due time, at most [`SWEEP_INTERVAL`],
//! and is woken at once when a new recording is stored ([`RecordingRetention::wake`]). A deletion is
//! `DELETE .../Recordings/{RecordingSid}.json` (<https://www.twilio.com/docs/voice/api/recording>); a recording
//! Twilio no longer has counts as deleted. A failed attempt is written with its error and tried again later
//! ([`retry_delay`]). Every write goes through the store writer with a deadline; every request has one too.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::calls::service::STORE_DEADLINE;
use crate::calls::store::{CallStore, DueRecording};
use crate::calls::writer::{StoreWriter, Write};
use crate::twilio::rest::{REQUEST_TIMEOUT, RestHandle};

/// The longest the task sleeps between two sweeps (a due time missed for any reason is caught by then).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// How many due recordings one query takes.
const BATCH: usize = 20;
/// The shortest pause after a sweep that could not write its results (the database is locked): the rows are still
/// due, and asking again at once would spin.
const STALLED_PAUSE: Duration = Duration::from_secs(5);
/// The first delay before trying a failed deletion again; it doubles with each failure up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest delay between two attempts to delete a recording.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 3600);

/// How long to wait before trying again to delete a recording after `failed_attempts` failures (counting the one
/// that just failed, so at least 1): 1 min, 2 min, 4 min, ... up to 6 h.
pub fn retry_delay(failed_attempts: u32) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// How long the task sleeps when the next deletion is due at `next_due` (none: [`SWEEP_INTERVAL`]): until then, at
/// most [`SWEEP_INTERVAL`], not at all when it is past.
pub fn sleep_until_due(now: OffsetDateTime, next_due: Option<OffsetDateTime>) -> Duration {
    match next_due {
        None => SWEEP_INTERVAL,
        Some(due) => Duration::try_from(due - now)
            .unwrap_or(Duration::ZERO)
            .min(SWEEP_INTERVAL),
    }
}

/// The handle on the retention task: wakes it when a recording was stored. Cheap to clone; a handle without a task
/// (no retention set, or no Twilio credentials) does nothing.
#[derive(Debug, Clone, Default)]
pub struct RecordingRetention {
    /// Wakes the task (a stored permit when it is busy, so no wake-up is lost).
    wake: Arc<Notify>,
}

impl RecordingRetention {
    /// Tells the task a recording was stored: it looks at the next due time again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the task on the current tokio runtime: deletions through `rest`, due rows read from `store`, results
    /// written through `writer`, until `stop` is cancelled.
    pub fn spawn(
        store: CallStore,
        writer: StoreWriter,
        rest: RestHandle,
        stop: CancellationToken,
    ) -> RecordingRetention {
        let handle = RecordingRetention::default();
        let wake = handle.wake.clone();
        tokio::spawn(async move {
            loop {
                let progressed = sweep(&store, &writer, &rest).await;
                let now = OffsetDateTime::now_utc();
                let next_due = store.next_recording_due().unwrap_or_else(|error| {
                    tracing::error!(%error, "cannot read when the next recording deletion is due");
                    None
                });
                let mut wait = sleep_until_due(now, next_due);
                if !progressed {
                    wait = wait.max(STALLED_PAUSE);
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = wake.notified() => {}
                    () = stop.cancelled() => return,
                }
            }
        });
        handle
    }
}

/// Deletes every recording due now, in batches; returns false when a result could not be written (the database
/// is locked), which ends the sweep early.
async fn sweep(store: &CallStore, writer: &StoreWriter, rest: &RestHandle) -> bool {
    loop {
        let due = match store.recordings_due(OffsetDateTime::now_utc(), BATCH) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the recordings due for deletion");
                return false;
            }
        };
        let full = due.len() == BATCH;
        for recording in due {
            let write = delete_one(rest, &recording).await;
            if let Err(error) = writer.write(write, STORE_DEADLINE).await {
                tracing::warn!(
                    recording_sid = %recording.sid,
                    error = ?error,
                    "the outcome of a recording deletion is not stored yet (database locked?)"
                );
                return false;
            }
        }
        if !full {
            return true;
        }
    }
}

/// Deletes one recording at Twilio (within [`REQUEST_TIMEOUT`] and a margin) and returns the write recording the
/// outcome.
async fn delete_one(rest: &RestHandle, recording: &DueRecording) -> Write {
    let deleted = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(5),
        rest.delete_recording(recording.sid.clone()),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let error = match deleted {
        Ok(Ok(())) => {
            return Write::RecordingDeleted {
                sid: recording.sid.clone(),
                at: now,
            };
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "Twilio did not answer in time".to_owned(),
    };
    let failed_attempts = recording.failed_attempts.saturating_add(1);
    let delay = retry_delay(failed_attempts);
    tracing::warn!(
        recording_sid = %recording.sid,
        call_id = %recording.call_id,
        %error,
        failed_attempts,
        retry_in_s = delay.as_secs(),
        "cannot delete a recording at Twilio; trying again later"
    );
    Write::RecordingDeleteFailed {
        sid: recording.sid.clone(),
        retry_at: now + delay,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_deletion_is_retried_after_a_doubling_delay_capped_at_six_hours() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(4), Duration::from_secs(480));
        assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_task_sleeps_until_the_next_due_time_at_most_the_sweep_interval() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);

        assert_eq!(sleep_until_due(now, None), SWEEP_INTERVAL);
        assert_eq!(
            sleep_until_due(now, Some(now + Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            sleep_until_due(now, Some(now - Duration::from_secs(5))),
            Duration::ZERO
        );
        assert_eq!(
            sleep_until_due(now, Some(now + Duration::from_secs(86_400))),
            SWEEP_INTERVAL
        );
    }
}
