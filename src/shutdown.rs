//! The server's shutdown, as one type every part shares: whether the server is draining (new calls are turned away,
//! `/ready` answers 503), the token on which live calls say goodbye, and the call tasks themselves, tracked so that
//! shutdown waits for them to end instead of polling a count (tokio-util's `TaskTracker`).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TrackedFuture;

/// A handle on the server's shutdown; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled when draining starts.
    draining: CancellationToken,
    /// Cancelled when live calls must say goodbye and end.
    goodbye: CancellationToken,
    /// Every call task ([`Shutdown::track`]).
    calls: TaskTracker,
}

impl Shutdown {
    /// A server that is not shutting down.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once draining has started.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Starts draining: new calls are turned away from now on.
    pub fn start_draining(&self) {
        self.draining.cancel();
    }

    /// The token live calls watch: cancelled, they say goodbye and end.
    pub fn goodbye_token(&self) -> CancellationToken {
        self.goodbye.clone()
    }

    /// Asks every live call to say goodbye and end.
    pub fn ask_calls_to_end(&self) {
        self.goodbye.cancel();
    }

    /// Wraps a call's task so that [`Shutdown::wait_for_calls`] waits for it.
    pub fn track<F: Future>(&self, call: F) -> TrackedFuture<F> {
        self.calls.track_future(call)
    }

    /// Calls in progress (tracked tasks not finished yet).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// Waits up to `timeout` for every tracked call to end; true when they did. Calls tracked while waiting are
    /// waited for too.
    pub async fn wait_for_calls(&self, timeout: Duration) -> bool {
        self.calls.close();
        let ended = tokio::time::timeout(timeout, self.calls.wait())
            .await
            .is_ok();
        self.calls.reopen();
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_when_the_last_call_ends_and_not_before() {
        let shutdown = Shutdown::new();
        let (end_call, call_ended) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(shutdown.track(async move {
            let _ = call_ended.await;
        }));

        assert_eq!(shutdown.calls_in_progress(), 1);
        assert!(
            !shutdown.wait_for_calls(Duration::from_secs(5)).await,
            "the call is still going"
        );
        end_call.send(()).expect("the call waits");
        assert!(shutdown.wait_for_calls(Duration::from_secs(5)).await);
        assert_eq!(shutdown.calls_in_progress(), 0);
    }

    #[test]
    fn draining_and_goodbye_are_separate_steps() {
        let shutdown = Shutdown::new();
        let goodbye = shutdown.goodbye_token();

        shutdown.start_draining();

        assert!(shutdown.is_draining());
        assert!(!goodbye.is_cancelled(), "draining lets calls finish");
        shutdown.ask_calls_to_end();
        assert!(goodbye.is_cancelled());
    }
}
