//! The instance lease: each instance holds `P instance:{id}` with a PX expiry of `CALLBRIDGE_INSTANCE_LEASE_S`,
//! renewed every third of it by [`Fleet::heartbeat`] (which also renews the registry entries and slots of the calls
//! it holds), and is listed in the set `P instances`.
//!
//! An instance whose lease key has expired is dead to the fleet (killed, crashed, cut off from Redis for a whole
//! lease). Every instance looks for such instances after each heartbeat ([`Fleet::claim_lost`]); the first to set
//! `P reap:{id}` (NX, one lease long) claims it and gets the calls it held (`P instance:{id}:calls`: call id →
//! CallSid). The claimant marks them `failed` / `instance_lost` in the call store (shared with PostgreSQL; with one
//! SQLite file per instance only the calls in its own file), then [`Fleet::forget_instance`] frees their slots and
//! registry entries and removes the instance. An instance stopping on SIGTERM removes its own lease after draining
//! ([`Fleet::leave`]).

use std::collections::HashMap;

use super::{Fleet, FleetError, millis};

/// An instance whose lease expired, claimed by this one: its id and the calls it held (call id → CallSid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostInstance {
    /// The dead instance's id.
    pub instance_id: String,
    /// The calls it held when it died: call id → CallSid.
    pub calls: HashMap<String, String>,
}

/// Renews the lease and the held calls. ARGV: prefix, instance id, lease ms, holding ttl ms.
/// Returns {calls held, 1 if the instance had been dropped from `instances` (taken for dead) else 0}.
const HEARTBEAT: &str = r"
local prefix, instance = ARGV[1], ARGV[2]
local lease_ms, holding_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', prefix .. 'instance:' .. instance, now_ms, 'PX', lease_ms)
local rejoined = redis.call('SADD', prefix .. 'instances', instance)
local held = redis.call('HGETALL', prefix .. 'instance:' .. instance .. ':calls')
local slots = prefix .. 'slots'
for i = 1, #held, 2 do
  local call_id, call_sid = held[i], held[i + 1]
  redis.call('PEXPIRE', prefix .. 'call:' .. call_sid, holding_ms)
  redis.call('ZADD', slots, 'XX', now_ms + holding_ms, call_id)
  redis.call('ZADD', slots, 'XX', now_ms + holding_ms, call_sid)
end
return {#held / 2, rejoined}
";

/// Frees what a lost instance held. ARGV: prefix, lost instance id.
const FORGET: &str = r"
local prefix, instance = ARGV[1], ARGV[2]
local hash = prefix .. 'instance:' .. instance .. ':calls'
local held = redis.call('HGETALL', hash)
for i = 1, #held, 2 do
  local call_id, call_sid = held[i], held[i + 1]
  local key = prefix .. 'call:' .. call_sid
  if redis.call('GET', key) == instance then redis.call('DEL', key) end
  redis.call('ZREM', prefix .. 'slots', call_id, call_sid)
end
redis.call('DEL', hash)
redis.call('SREM', prefix .. 'instances', instance)
return #held / 2
";

impl Fleet {
    /// Renews this instance's lease (and lists it in `P instances`), and the registry entries and slots of the calls
    /// it holds. Returns how many calls it holds. Logs a warning when the fleet had taken this instance for dead
    /// (its lease had expired and another instance cleaned up after it).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn heartbeat(&self) -> Result<u64, FleetError> {
        let script = redis::Script::new(HEARTBEAT);
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(self.instance_id())
            .arg(millis(self.lease()))
            .arg(millis(self.holding_ttl()));
        let mut redis = self.connection();
        let (held, rejoined): (u64, u8) = self
            .deadline(
                "renew the instance lease",
                invocation.invoke_async(&mut redis),
            )
            .await?;
        if rejoined == 1 {
            tracing::info!(instance_id = %self.instance_id(), lease_s = self.lease().as_secs(), "instance lease taken: this instance is listed in the fleet");
        }
        Ok(held)
    }

    /// Looks for an instance of the fleet whose lease has expired and claims it (`SET P reap:{id} NX PX lease`), so
    /// that one survivor alone cleans up after it. Returns the claimed instance and the calls it held, or `None`.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn claim_lost(&self) -> Result<Option<LostInstance>, FleetError> {
        let mut redis = self.connection();
        let members: Vec<String> = self
            .deadline(
                "list the instances",
                redis::cmd("SMEMBERS")
                    .arg(self.key("instances"))
                    .query_async(&mut redis),
            )
            .await?;
        for id in members.into_iter().filter(|id| id != self.instance_id()) {
            let alive: bool = self
                .deadline(
                    "check an instance's lease",
                    redis::cmd("EXISTS")
                        .arg(self.key(&format!("instance:{id}")))
                        .query_async(&mut redis),
                )
                .await?;
            if alive {
                continue;
            }
            let claimed: Option<String> = self
                .deadline(
                    "claim a lost instance",
                    redis::cmd("SET")
                        .arg(self.key(&format!("reap:{id}")))
                        .arg(self.instance_id())
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(self.lease()))
                        .query_async(&mut redis),
                )
                .await?;
            if claimed.is_none() {
                tracing::debug!(lost_instance = %id, "lost instance already claimed by another instance");
                continue;
            }
            let calls = self.held_calls(&id).await?;
            tracing::warn!(lost_instance = %id, calls = calls.len(), "instance lease expired: claimed to close its calls");
            return Ok(Some(LostInstance {
                instance_id: id,
                calls,
            }));
        }
        Ok(None)
    }

    /// The calls the instance `instance_id` holds (or held, if it died): call id → CallSid.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn held_calls(
        &self,
        instance_id: &str,
    ) -> Result<HashMap<String, String>, FleetError> {
        let mut redis = self.connection();
        self.deadline(
            "read an instance's calls",
            redis::cmd("HGETALL")
                .arg(self.key(&format!("instance:{instance_id}:calls")))
                .query_async(&mut redis),
        )
        .await
    }

    /// Frees what the lost instance `instance_id` held (its calls' slots and registry entries, its calls hash) and
    /// removes it from `P instances`. Returns how many calls it held.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time (the claim then expires and another survivor, or
    /// this one, tries again).
    pub async fn forget_instance(&self, instance_id: &str) -> Result<u64, FleetError> {
        let script = redis::Script::new(FORGET);
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.prefix()).arg(instance_id);
        let mut redis = self.connection();
        let freed: u64 = self
            .deadline(
                "forget a lost instance",
                invocation.invoke_async(&mut redis),
            )
            .await?;
        Ok(freed)
    }

    /// Leaves the fleet on a graceful stop (after draining): removes this instance's lease, its calls hash (the
    /// drained calls released theirs; any left over are freed) and its entry in `P instances`.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time (the lease then expires and a survivor cleans up).
    pub async fn leave(&self) -> Result<(), FleetError> {
        let freed = self.forget_instance(self.instance_id()).await?;
        let mut redis = self.connection();
        self.deadline(
            "remove the instance lease",
            redis::cmd("DEL")
                .arg(self.key(&format!("instance:{}", self.instance_id())))
                .query_async::<()>(&mut redis),
        )
        .await?;
        tracing::info!(instance_id = %self.instance_id(), calls_left = freed, "instance lease removed: left the fleet");
        Ok(())
    }
}
