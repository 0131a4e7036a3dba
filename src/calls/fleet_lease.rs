//! The fleet lease at work: the task that renews this instance's lease every third of `CALLBRIDGE_INSTANCE_LEASE_S`
//! ([`crate::fleet::Fleet::heartbeat`]) and, after each heartbeat, closes the calls of instances whose lease expired
//! ([`reap_lost`]): each call still open in the call store becomes `failed` with the end reason `instance_lost`
//! (its stored turns are kept: they were written as they happened), then its slot and registry entry are freed and
//! the instance removed. Started by `startup` when `CALLBRIDGE_REDIS_URL` is set.

use tokio_util::sync::CancellationToken;

use crate::calls::service::{CallService, STORE_DEADLINE};
use crate::calls::writer::Write;
use crate::fleet::Fleet;

/// Most lost instances cleaned up after one heartbeat (the rest wait for the next).
const MAX_REAPED_PER_ROUND: usize = 16;

/// Renews the lease and reaps lost instances until `stop` is cancelled. Every step has a deadline (each Redis
/// command's, the store's); a failed heartbeat is logged and tried again a third of a lease later.
pub async fn run(calls: CallService, fleet: Fleet, stop: CancellationToken) {
    let period = fleet.lease() / 3;
    reap_previous_run(&calls, &fleet).await;
    loop {
        match fleet.heartbeat().await {
            Ok(held) => tracing::debug!(held, "instance lease renewed"),
            Err(error) => tracing::warn!(%error, "instance lease not renewed; trying again"),
        }
        reap_lost(&calls, &fleet).await;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(period) => {}
        }
    }
    tracing::debug!("instance heartbeat stopped");
}

/// Closes the calls an earlier run of this instance (same `CALLBRIDGE_INSTANCE_ID`, killed before its lease ran out)
/// left in its calls hash, as a survivor would have, and clears the hash; called once at start, before this run
/// holds any call.
pub async fn reap_previous_run(calls: &CallService, fleet: &Fleet) {
    let left = match fleet.held_calls(fleet.instance_id()).await {
        Ok(left) => left,
        Err(error) => {
            tracing::warn!(%error, "cannot read the calls an earlier run of this instance held");
            return;
        }
    };
    if left.is_empty() {
        return;
    }
    tracing::warn!(
        calls = left.len(),
        "an earlier run of this instance left calls in the fleet; closing them"
    );
    let lost = crate::fleet::lease::LostInstance {
        instance_id: fleet.instance_id().to_owned(),
        calls: left,
    };
    close_calls_of(calls, &lost).await;
    if let Err(error) = fleet.forget_instance(fleet.instance_id()).await {
        tracing::warn!(%error, "cannot clear the calls an earlier run of this instance held");
    }
}

/// Claims each instance whose lease expired (one survivor per instance) and closes its calls: every call it held
/// that is still open in this instance's call store becomes `failed` / `instance_lost`; a call the store does not
/// have (each instance with its own SQLite file) is only logged. Then frees their slots and registry entries and
/// removes the instance. Returns how many calls were closed.
pub async fn reap_lost(calls: &CallService, fleet: &Fleet) -> usize {
    let mut closed = 0;
    for _ in 0..MAX_REAPED_PER_ROUND {
        let lost = match fleet.claim_lost().await {
            Ok(Some(lost)) => lost,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot look for lost instances");
                break;
            }
        };
        closed += close_calls_of(calls, &lost).await;
        match fleet.forget_instance(&lost.instance_id).await {
            Ok(freed) => tracing::info!(lost_instance = %lost.instance_id, calls = freed,
                "lost instance removed from the fleet; its slots and registry entries freed"),
            Err(error) => tracing::warn!(%error, lost_instance = %lost.instance_id,
                "lost instance not removed; its claim expires and it is tried again"),
        }
    }
    closed
}

/// Marks each call of `lost` still open in the call store `failed` / `instance_lost` (turns untouched); a call the
/// store does not have is logged. Returns how many were closed.
async fn close_calls_of(calls: &CallService, lost: &crate::fleet::lease::LostInstance) -> usize {
    let mut closed = 0;
    for (call_id, call_sid) in &lost.calls {
        let known = match calls.store().get(call_id) {
            Ok(known) => known,
            Err(error) => {
                tracing::error!(%call_id, %call_sid, %error, "cannot read a lost instance's call");
                continue;
            }
        };
        let Some(call) = known else {
            tracing::info!(%call_id, %call_sid, lost_instance = %lost.instance_id,
                "call of a lost instance is not in this instance's call store (each has its own database)");
            continue;
        };
        if call.status.is_terminal() {
            continue;
        }
        let write = Write::CloseLost {
            id: call_id.clone(),
            at: time::OffsetDateTime::now_utc(),
        };
        match calls.writer().write(write, STORE_DEADLINE).await {
            Ok(()) => {
                closed += 1;
                tracing::warn!(%call_id, %call_sid, lost_instance = %lost.instance_id, was = %call.status,
                    "call of a lost instance marked failed (instance_lost)");
            }
            Err(error) => tracing::error!(%call_id, %call_sid, error = ?error,
                "call of a lost instance not closed yet (the write stays queued)"),
        }
    }
    calls.notify_changed();
    closed
}

#[cfg(test)]
#[path = "fleet_lease_tests.rs"]
mod tests;
