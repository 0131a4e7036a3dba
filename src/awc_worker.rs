//! A thread of its own for awc, the HTTP client: awc's client and its futures belong to the thread that made them
//! (they are not `Send`), while the call service, the REST API, the MCP tools and the CLI need `Send` futures.
//!
//! An [`AwcWorker`] runs one thread with a single-threaded tokio runtime and a `LocalSet`, holding a state `S` made on
//! that thread (a REST client, an API key). [`AwcWorker::run`] hands it a job that builds a (non-`Send`) future from
//! the state, runs it there, and awaits its (`Send`) result; jobs run concurrently. The thread ends when the last
//! handle is dropped. This is the one place the crate bridges awc to `Send` code.

use std::future::Future;

use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, oneshot};

/// A job: builds the future to run on the worker thread from its state.
type Job<S> = Box<dyn FnOnce(&S) -> LocalBoxFuture<'static, ()> + Send>;

/// The worker thread has stopped (its runtime failed, or the process is ending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the HTTP client thread has stopped")]
pub struct WorkerStopped;

/// A `Send + Clone` handle on an awc thread holding `S` (see the module docs).
pub struct AwcWorker<S: 'static> {
    /// Jobs for the thread.
    jobs: mpsc::UnboundedSender<Job<S>>,
}

impl<S: 'static> Clone for AwcWorker<S> {
    fn clone(&self) -> Self {
        AwcWorker {
            jobs: self.jobs.clone(),
        }
    }
}

impl<S: 'static> std::fmt::Debug for AwcWorker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwcWorker").finish_non_exhaustive()
    }
}

impl<S: 'static> AwcWorker<S> {
    /// Starts the thread `thread_name`; `make_state` runs on it first.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    pub fn spawn(
        thread_name: &str,
        make_state: impl FnOnce() -> S + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job<S>>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                let state = make_state();
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = queue.recv().await {
                        tokio::task::spawn_local(job(&state));
                    }
                });
            })?;
        Ok(AwcWorker { jobs })
    }

    /// Runs `job` on the thread and returns its result.
    ///
    /// # Errors
    /// [`WorkerStopped`] when the thread is gone.
    pub async fn run<T, F, Fut>(&self, job: F) -> Result<T, WorkerStopped>
    where
        T: Send + 'static,
        F: FnOnce(&S) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (answer, result) = oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            let future = job(state);
            Box::pin(async move {
                // The caller may have given up (its future dropped); nobody is left to tell.
                let _ = answer.send(future.await);
            })
        });
        self.jobs.send(job).map_err(|_| WorkerStopped)?;
        result.await.map_err(|_| WorkerStopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_on_the_worker_thread_with_its_state() {
        let worker = AwcWorker::spawn("test-awc-worker", || std::rc::Rc::new(41)).expect("spawn");

        let (value, thread) = worker
            .run(|state| {
                let value = **state + 1;
                async move { (value, std::thread::current().name().map(str::to_owned)) }
            })
            .await
            .expect("the worker runs");

        assert_eq!(value, 42);
        assert_eq!(thread.as_deref(), Some("test-awc-worker"));
    }
}
