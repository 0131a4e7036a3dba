//! The scheduler: one background task that places the attempts of scheduled and retried calls when they are due
//! (by the service's clock). It reads the due calls from the store, so a call scheduled before a restart is placed
//! by the next process; it looks again when a call is scheduled ([`CallService::wake_scheduler`]), when the next
//! attempt falls due, and at least every [`MAX_IDLE`]. What each attempt checks and does is
//! [`CallService::place_due_attempt`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::calls::service::CallService;

/// The longest the scheduler sleeps between two looks at the store (a clock moved forward is noticed by then).
pub const MAX_IDLE: Duration = Duration::from_secs(1);
/// The shortest pause between two looks, so a store that keeps failing is not read in a busy loop.
pub const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Places due attempts until `stop` is cancelled.
pub async fn run(service: CallService, stop: CancellationToken) {
    let wake = service.scheduler_wake();
    loop {
        let now = service.now();
        match service.store().due_attempts(now) {
            Ok(due) => {
                for id in due {
                    if stop.is_cancelled() {
                        return;
                    }
                    if let Err(error) = service.place_due_attempt(&id).await {
                        tracing::warn!(call_id = %id, %error, "scheduled attempt not placed; tried again shortly");
                        // On PostgreSQL reading it claimed it: give the claim back so it is tried again at once.
                        if let Err(error) = service.store().release_attempt(&id) {
                            tracing::warn!(call_id = %id, %error, "cannot give back a call's claim; tried again when it expires");
                        }
                    }
                }
            }
            Err(error) => tracing::error!(%error, "cannot read the calls due for an attempt"),
        }
        let pause = match service.store().next_attempt_due() {
            Ok(Some(due)) => {
                let until = due - service.now();
                Duration::try_from(until).unwrap_or(Duration::ZERO)
            }
            Ok(None) => MAX_IDLE,
            Err(error) => {
                tracing::error!(%error, "cannot read when the next attempt is due");
                MAX_IDLE
            }
        }
        .clamp(MIN_PAUSE, MAX_IDLE);
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
