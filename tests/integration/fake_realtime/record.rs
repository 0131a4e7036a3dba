//! What the fake observed, shared by the test's handle and the connection tasks: every event in both directions,
//! the upgrade requests, the sessions, the audio sent and when each connection ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::Notify;

use super::session::Script;

/// One WebSocket upgrade request the fake received (accepted or refused).
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// Path and query as requested, e.g. `/v1/realtime?model=gpt-realtime-2.1`.
    pub path_and_query: String,
    /// Headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Whether the fake accepted the upgrade.
    pub accepted: bool,
}

/// State shared by the handle and the connection tasks.
pub(super) struct Shared {
    /// The script every connection plays.
    pub(super) script: Script,
    /// Everything observed, for the assertions.
    pub(super) record: Mutex<Record>,
    /// Woken on every new record, for the `wait_for_*` helpers.
    pub(super) changed: Notify,
    /// Source of unique ids (events, items, responses, calls) across connections.
    pub(super) next_id: AtomicU64,
}

impl Shared {
    pub(super) fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread may poison the lock; the records are still worth reading.
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record());
        self.changed.notify_waiters();
    }

    /// Records that connection `connection` ended now, unless its end is already recorded (the first end wins).
    pub(super) fn mark_closed(&self, connection: usize) {
        self.update(|record| {
            record
                .closed_at
                .entry(connection)
                .or_insert_with(std::time::Instant::now);
        });
    }

    pub(super) fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_fake{n:016}")
    }
}

/// What the fake observed.
#[derive(Default)]
pub(super) struct Record {
    /// (connection, event) for every client event.
    pub(super) client_events: Vec<(usize, Value)>,
    /// (connection, event) for every server event.
    pub(super) server_events: Vec<(usize, Value)>,
    /// Every upgrade request.
    pub(super) upgrades: Vec<UpgradeRequest>,
    /// Accepted upgrades.
    pub(super) connections: usize,
    /// The `session` of the latest `session.update`.
    pub(super) last_session: Option<Value>,
    /// Audio sent per assistant item, in ms.
    pub(super) audio_sent_ms: HashMap<String, u64>,
    /// When each accepted connection ended, by connection number (`std` time: what the scenario tests compare).
    pub(super) closed_at: HashMap<usize, std::time::Instant>,
}
