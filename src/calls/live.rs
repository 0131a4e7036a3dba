//! The calls in progress on this server, each reachable through a control channel (hang up, inject an instruction),
//! and the records of the most recent finished calls (in memory; a persistent store comes with outbound calls).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use crate::calls::CallRecord;

/// How many finished call records are kept in memory.
pub const RECENT_RECORDS_KEPT: usize = 256;

/// A request to a live call's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// End the call now (end reason `hung_up_by_api`).
    HangUp,
    /// Add this text to the conversation as a system message.
    Instruct(String),
    /// Press these keys on the call's keypad (a call update and a stream handover).
    SendDigits(crate::twilio::dtmf::DtmfDigits),
    /// Transfer the call to a person at `target`, whispering `summary` to them first (a call update to `<Dial>`).
    Transfer {
        /// Who to dial.
        target: crate::twilio::dial::TransferTarget,
        /// What the person hears before the two are connected.
        summary: String,
    },
    /// What Twilio reported about the call's transfer under way (the whisper fetched, the `<Dial action>`).
    TransferEvent(crate::twilio::dial::TransferEvent),
}

/// The live calls by CallSid. Cheap to clone; all clones share one table.
#[derive(Debug, Clone, Default)]
pub struct LiveCalls {
    /// CallSid → the bridge's control sender.
    calls: Arc<Mutex<HashMap<String, mpsc::Sender<CallControl>>>>,
    /// The last [`RECENT_RECORDS_KEPT`] finished calls, oldest first.
    recent: Arc<Mutex<VecDeque<CallRecord>>>,
    /// Woken whenever a record is added.
    finished: Arc<Notify>,
}

/// Removes its call from the table when dropped, so a bridge that ends any way at all is never left listed.
#[derive(Debug)]
pub struct LiveCallGuard {
    calls: LiveCalls,
    call_sid: String,
    /// The sender this registration put in the table, to remove only its own entry.
    sender: mpsc::Sender<CallControl>,
}

impl Drop for LiveCallGuard {
    fn drop(&mut self) {
        let mut calls = self.calls.lock();
        // A later stream of the same CallSid may have replaced this one's entry: leave that one alone.
        if calls
            .get(&self.call_sid)
            .is_some_and(|sender| sender.same_channel(&self.sender))
        {
            calls.remove(&self.call_sid);
        }
    }
}

impl LiveCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<CallControl>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a call; returns its control receiver and the guard that unregisters it.
    pub fn register(&self, call_sid: &str) -> (mpsc::Receiver<CallControl>, LiveCallGuard) {
        let (tx, rx) = mpsc::channel(16);
        self.lock().insert(call_sid.to_owned(), tx.clone());
        (
            rx,
            LiveCallGuard {
                calls: self.clone(),
                call_sid: call_sid.to_owned(),
                sender: tx,
            },
        )
    }

    /// How many calls are live.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Keeps a finished call's record (dropping the oldest beyond [`RECENT_RECORDS_KEPT`]).
    pub fn remember(&self, record: CallRecord) {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() == RECENT_RECORDS_KEPT {
            recent.pop_front();
        }
        recent.push_back(record);
        drop(recent);
        self.finished.notify_waiters();
    }

    /// The record of the finished call `call_sid`, if it is among the recent ones.
    pub fn finished_record(&self, call_sid: &str) -> Option<CallRecord> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|r| r.call_sid == call_sid)
            .cloned()
    }

    /// Waits up to `timeout` for the call `call_sid` to finish and returns its record.
    pub async fn wait_finished(
        &self,
        call_sid: &str,
        timeout: std::time::Duration,
    ) -> Option<CallRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(record) = self.finished_record(call_sid) {
                return Some(record);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.finished_record(call_sid);
            }
        }
    }

    /// True while the call `call_sid` is live on this server.
    pub fn is_live(&self, call_sid: &str) -> bool {
        self.lock().contains_key(call_sid)
    }

    /// Sends `control` to the call `call_sid`; false when no such call is live.
    pub fn send(&self, call_sid: &str, control: CallControl) -> bool {
        let sender = self.lock().get(call_sid).cloned();
        sender.is_some_and(|tx| tx.try_send(control).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_listed_until_its_guard_drops() {
        let live = LiveCalls::default();
        let (_rx, guard) = live.register("CA1");
        assert_eq!(live.count(), 1);
        drop(guard);
        assert_eq!(live.count(), 0);
    }

    #[test]
    fn a_second_stream_of_the_same_call_sid_is_not_unregistered_by_the_first_ending() {
        let live = LiveCalls::default();
        let (_first_rx, first) = live.register("CA1");
        let (mut second_rx, _second) = live.register("CA1");

        drop(first);

        assert_eq!(live.count(), 1, "the second registration stays");
        assert!(live.send("CA1", CallControl::HangUp));
        assert_eq!(second_rx.try_recv().ok(), Some(CallControl::HangUp));
    }

    #[test]
    fn finished_records_are_kept_up_to_the_limit() {
        let live = LiveCalls::default();
        for n in 0..RECENT_RECORDS_KEPT + 1 {
            let record = CallRecord::new(
                format!("CA{n}"),
                crate::calls::Direction::Inbound,
                String::new(),
                String::new(),
            );
            live.remember(record);
        }
        assert!(
            live.finished_record("CA0").is_none(),
            "the oldest is dropped"
        );
        assert!(
            live.finished_record(&format!("CA{RECENT_RECORDS_KEPT}"))
                .is_some()
        );
    }

    #[test]
    fn control_reaches_the_registered_call_only() {
        let live = LiveCalls::default();
        let (mut rx, _guard) = live.register("CA1");
        assert!(live.send("CA1", CallControl::HangUp));
        assert!(!live.send("CA2", CallControl::HangUp));
        assert_eq!(rx.try_recv().ok(), Some(CallControl::HangUp));
    }
}
