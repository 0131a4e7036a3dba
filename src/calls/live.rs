//! The calls in progress on this server, each reachable through a control channel (hang up, inject an instruction,
//! the answering machine verdict). A finished call's record is in the call store ([`crate::calls::store`]).
//!
//! An answering machine verdict can arrive before its call's media stream has started (Twilio runs the TwiML and the
//! detection at once): it is kept under the CallSid ([`LiveCalls::deliver_verdict`]) and handed to the call's bridge
//! as the first control message when it registers, so none is lost.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::twilio::amd::AnsweredBy;

/// The most verdicts kept for calls whose bridge has not registered yet; more are dropped (and logged).
pub const PENDING_VERDICTS_KEPT: usize = 1024;
/// How long a verdict waits for its call's bridge: a stream that has not started by then never will (its token
/// lasted 60 s).
pub const PENDING_VERDICT_TTL: Duration = Duration::from_secs(300);

/// A request to a live call's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// End the call now (end reason `hung_up_by_api`).
    HangUp,
    /// Add this text to the conversation as a system message.
    Instruct(String),
    /// Twilio's answering machine verdict for this call (`AsyncAmdStatusCallback`).
    AnsweredBy(AnsweredBy),
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
    /// Speak this line verbatim on a relay-mode call; the report (or the refusal) goes back through `reply`.
    Say {
        /// The line and how to wait.
        request: crate::calls::say::SayRequest,
        /// Where the call answers.
        reply: crate::calls::say::SayReplySlot,
    },
}

/// What became of an answering machine verdict handed to [`LiveCalls::deliver_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictDelivery {
    /// The call's bridge has it.
    Delivered,
    /// No bridge runs for the CallSid yet: kept until one registers (or for [`PENDING_VERDICT_TTL`]).
    Kept,
    /// Dropped: too many verdicts wait already, or the bridge's control channel is full.
    Dropped,
}

/// A boxed future of [`RemoteCalls`].
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a control could not be routed to the instance holding the call (Redis failed or did not answer in time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the control could not reach the instance holding the call: {0}")]
pub struct RemoteError(pub String);

/// Where controls for calls that do not run on this instance go: the fleet's routing to the instance that holds
/// them ([`crate::calls::control_route`]). Set once at start-up when a fleet is configured.
pub trait RemoteCalls: Send + Sync + std::fmt::Debug {
    /// Sends `control` to the instance holding the call `call_sid`: `Ok(true)` when an instance received it,
    /// `Ok(false)` when no instance holds the call. A `say`'s answer arrives through its reply slot.
    fn send<'a>(
        &'a self,
        call_sid: &'a str,
        control: CallControl,
    ) -> RemoteFuture<'a, Result<bool, RemoteError>>;

    /// True when another instance holds the call `call_sid` (its live call runs there).
    fn is_held<'a>(&'a self, call_sid: &'a str) -> RemoteFuture<'a, Result<bool, RemoteError>>;
}

/// A call's control receiver. Controls come boxed: a channel preallocates a block of slots, and a slot the size of
/// the largest control would cost every call about 2 KiB for messages that seldom come.
pub type ControlReceiver = mpsc::Receiver<Box<CallControl>>;

/// The live calls by CallSid. Cheap to clone; all clones share one table.
#[derive(Debug, Clone, Default)]
pub struct LiveCalls {
    /// Controls for calls held by other instances go there (set once, with a fleet).
    remote: Arc<OnceLock<Arc<dyn RemoteCalls>>>,
    /// CallSid → the bridge's control sender.
    calls: Arc<Mutex<HashMap<String, mpsc::Sender<Box<CallControl>>>>>,
    /// Verdicts for calls not registered yet: CallSid → the verdict and when it came. Locked before `calls`
    /// whenever both are held.
    verdicts: Arc<Mutex<HashMap<String, (AnsweredBy, Instant)>>>,
}

/// Removes its call from the table when dropped, so a bridge that ends any way at all is never left listed.
#[derive(Debug)]
pub struct LiveCallGuard {
    calls: LiveCalls,
    call_sid: String,
    /// The sender this registration put in the table, to remove only its own entry.
    sender: mpsc::Sender<Box<CallControl>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Box<CallControl>>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AnsweredBy, Instant)>> {
        // Single inserts and removes: a panic cannot leave the map inconsistent.
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a call; returns its control receiver and the guard that unregisters it. A verdict kept for the
    /// CallSid is the receiver's first message.
    pub fn register(&self, call_sid: &str) -> (ControlReceiver, LiveCallGuard) {
        let (tx, rx) = mpsc::channel(16);
        let mut verdicts = self.lock_verdicts();
        if let Some((answered_by, _)) = verdicts.remove(call_sid) {
            let _ = tx.try_send(Box::new(CallControl::AnsweredBy(answered_by)));
        }
        self.lock().insert(call_sid.to_owned(), tx.clone());
        drop(verdicts);
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

    /// True while the call `call_sid` is registered (its bridge runs, or is storing its record and closing).
    pub fn is_live(&self, call_sid: &str) -> bool {
        self.lock().contains_key(call_sid)
    }

    /// Hands Twilio's answering machine verdict to the call `call_sid` now if its bridge runs, else keeps it for
    /// the bridge that registers under that CallSid within [`PENDING_VERDICT_TTL`] (the first verdict kept stays).
    pub fn deliver_verdict(
        &self,
        call_sid: &str,
        answered_by: AnsweredBy,
        now: Instant,
    ) -> VerdictDelivery {
        let mut verdicts = self.lock_verdicts();
        let sender = self.lock().get(call_sid).cloned();
        if let Some(sender) = sender {
            return match sender.try_send(Box::new(CallControl::AnsweredBy(answered_by))) {
                Ok(()) => VerdictDelivery::Delivered,
                Err(_) => VerdictDelivery::Dropped,
            };
        }
        verdicts.retain(|_, (_, at)| now.saturating_duration_since(*at) < PENDING_VERDICT_TTL);
        if verdicts.len() >= PENDING_VERDICTS_KEPT && !verdicts.contains_key(call_sid) {
            return VerdictDelivery::Dropped;
        }
        verdicts
            .entry(call_sid.to_owned())
            .or_insert((answered_by, now));
        VerdictDelivery::Kept
    }

    /// Sends `control` to the call `call_sid` on this instance; false when no such call is live here.
    pub fn send(&self, call_sid: &str, control: CallControl) -> bool {
        let sender = self.lock().get(call_sid).cloned();
        sender.is_some_and(|tx| tx.try_send(Box::new(control)).is_ok())
    }

    /// Routes controls for calls held by other instances through `remote` from now on (the first one set stays).
    pub fn set_remote(&self, remote: Arc<dyn RemoteCalls>) {
        let _ = self.remote.set(remote);
    }

    /// Sends `control` to the call `call_sid` wherever it runs: here ([`LiveCalls::send`]), else through the fleet
    /// to the instance that holds it. `Ok(false)` when no instance holds the call (or, without a fleet, it is not
    /// live here).
    ///
    /// # Errors
    /// [`RemoteError`] when the call is not here and the fleet's routing failed.
    pub async fn route(&self, call_sid: &str, control: CallControl) -> Result<bool, RemoteError> {
        let sender = self.lock().get(call_sid).cloned();
        let control = match sender {
            Some(tx) => match tx.try_send(Box::new(control)) {
                Ok(()) => return Ok(true),
                // The call ended (or is ending) here meanwhile: another instance cannot hold it either.
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(false),
                Err(mpsc::error::TrySendError::Full(_)) => return Ok(false),
            },
            None => control,
        };
        match self.remote.get() {
            Some(remote) => remote.send(call_sid, control).await,
            None => Ok(false),
        }
    }

    /// True when the call `call_sid` runs here or, with a fleet, on another instance.
    ///
    /// # Errors
    /// [`RemoteError`] when it is not here and the fleet's registry cannot be read.
    pub async fn is_held_anywhere(&self, call_sid: &str) -> Result<bool, RemoteError> {
        if self.is_live(call_sid) {
            return Ok(true);
        }
        match self.remote.get() {
            Some(remote) => remote.is_held(call_sid).await,
            None => Ok(false),
        }
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
        assert!(live.is_live("CA1") && !live.is_live("CA2"));
        drop(guard);
        assert_eq!(live.count(), 0);
        assert!(!live.is_live("CA1"));
    }

    #[test]
    fn a_second_stream_of_the_same_call_sid_is_not_unregistered_by_the_first_ending() {
        let live = LiveCalls::default();
        let (_first_rx, first) = live.register("CA1");
        let (mut second_rx, _second) = live.register("CA1");

        drop(first);

        assert_eq!(live.count(), 1, "the second registration stays");
        assert!(live.send("CA1", CallControl::HangUp));
        assert_eq!(
            second_rx.try_recv().ok().map(|c| *c),
            Some(CallControl::HangUp)
        );
    }

    #[test]
    fn a_verdict_for_a_running_call_reaches_its_bridge_at_once() {
        let live = LiveCalls::default();
        let (mut rx, _guard) = live.register("CA1");

        let delivery = live.deliver_verdict("CA1", AnsweredBy::Human, Instant::now());

        assert_eq!(delivery, VerdictDelivery::Delivered);
        assert_eq!(
            rx.try_recv().ok().map(|c| *c),
            Some(CallControl::AnsweredBy(AnsweredBy::Human))
        );
    }

    #[test]
    fn a_verdict_that_arrives_before_the_stream_is_the_first_message_of_the_bridge_that_registers()
    {
        let live = LiveCalls::default();

        let delivery = live.deliver_verdict("CA1", AnsweredBy::MachineEndBeep, Instant::now());
        let repeated = live.deliver_verdict("CA1", AnsweredBy::Human, Instant::now());
        let (mut rx, _guard) = live.register("CA1");

        assert_eq!(delivery, VerdictDelivery::Kept);
        assert_eq!(repeated, VerdictDelivery::Kept);
        assert_eq!(
            rx.try_recv().ok().map(|c| *c),
            Some(CallControl::AnsweredBy(AnsweredBy::MachineEndBeep)),
            "the first verdict is kept"
        );
        assert!(rx.try_recv().is_err(), "and only once");
    }

    #[test]
    fn a_kept_verdict_expires_and_the_number_kept_is_bounded() {
        let live = LiveCalls::default();
        let start = Instant::now();
        live.deliver_verdict("CA-old", AnsweredBy::Human, start);
        for n in 0..PENDING_VERDICTS_KEPT - 1 {
            live.deliver_verdict(
                &format!("CA{n}"),
                AnsweredBy::Human,
                start + PENDING_VERDICT_TTL,
            );
        }
        let last = start + PENDING_VERDICT_TTL;

        let room_after_expiry = live.deliver_verdict("CA-new", AnsweredBy::Fax, last);
        let over = live.deliver_verdict("CA-over", AnsweredBy::Fax, last);
        let (mut old_rx, _guard) = live.register("CA-old");

        assert_eq!(room_after_expiry, VerdictDelivery::Kept);
        assert_eq!(over, VerdictDelivery::Dropped);
        assert!(old_rx.try_recv().is_err(), "the expired verdict is gone");
    }

    #[test]
    fn control_reaches_the_registered_call_only() {
        let live = LiveCalls::default();
        let (mut rx, _guard) = live.register("CA1");
        assert!(live.send("CA1", CallControl::HangUp));
        assert!(!live.send("CA2", CallControl::HangUp));
        assert_eq!(rx.try_recv().ok().map(|c| *c), Some(CallControl::HangUp));
    }
}
