//! [`Persistence`]: how a running call's bridge stores its record. The bridge calls it synchronously from its loop;
//! every call only queues a write for the store writer ([`crate::calls::writer`]), so it never blocks the relay,
//! whatever state the database is in.

use crate::calls::service::CallService;
use crate::calls::writer::Write;
use crate::calls::{CallRecord, Turn};

/// The call's stored record: turns are appended as they complete (a crash loses at most the turn in progress), and
/// the whole record is written at the end.
pub struct Persistence {
    /// The call service (its store writer).
    pub calls: CallService,
    /// The call's id in the store.
    pub call_id: String,
}

impl Persistence {
    /// Queues `turns` (the ones not stored yet) to be appended to the transcript. Never blocks.
    pub fn append(&self, turns: &[Turn]) {
        for turn in turns {
            self.calls.writer().submit(Write::AppendTurn {
                id: self.call_id.clone(),
                turn: Box::new(turn.clone()),
            });
        }
    }

    /// Queues the finished record (transcript as cut, outcome, end reason, usage, StreamSid, skipped frames and
    /// dropped input); an inbound call is then `completed` (no status callbacks follow it). Never blocks; readers
    /// waiting for the call are woken once it is written.
    pub fn finish(&self, record: &CallRecord) {
        self.calls.writer().submit(Write::Finish {
            id: self.call_id.clone(),
            record: Box::new(record.clone()),
        });
    }
}
