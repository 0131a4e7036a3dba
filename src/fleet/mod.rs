//! The fleet: several callbridge instances sharing one Redis (`CALLBRIDGE_REDIS_URL`) for what is shared and
//! short-lived. Without a Redis URL there is no [`Fleet`] and every instance keeps that state in process.
//!
//! What lives in Redis, every key starting with `CALLBRIDGE_REDIS_KEY_PREFIX` (`P`, default `callbridge:`):
//! - `P token:{token}`: a stream token's grant, JSON, with a PX expiry; consumed with `GETDEL` (single use across
//!   the fleet; see `security::tokens`).
//! - `P call:{CallSid}` → the id of the instance that holds the call (its live call runs there), with a PX expiry
//!   the holder's heartbeat renews; `P instance:{id}:calls`, a hash of the calls an instance holds, call id →
//!   CallSid, which the reaper reads when the instance is gone ([`Fleet::register_call`], [`Fleet::instance_of`]).
//! - `P slots`: a sorted set of call slots under the fleet's concurrency cap, call id → expiry (ms, Redis time);
//!   `P budget:outbound:{YYYY-MM-DD}` and `P budget:cost_micros:{YYYY-MM-DD}`: the UTC day's outbound attempts and
//!   estimated spend (see `admission`).
//! - `P instance:{id}`: the instance's lease (PX `lease_s`), renewed every third of it; `P instances`: the set of
//!   instance ids; `P reap:{id}`: the claim of the survivor that cleans up after a dead instance (see `lease`).
//!
//! One Redis (with replicas if you like), not Redis Cluster: the scripts build their keys from the prefix. Redis 6.2
//! or later (`GETDEL`), checked at start-up. Every command runs under a deadline ([`OP_DEADLINE`]) and fails with a
//! [`FleetError`] naming what it was doing.

pub mod admission;
pub mod lease;
#[cfg(test)]
pub(crate) mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::fleet::{FleetSettings, redacted_redis_url};

/// How long start-up waits for Redis to answer before it gives up (a clear start-up error).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// The deadline of every Redis command once running: a call's path never waits longer on Redis.
pub const OP_DEADLINE: Duration = Duration::from_secs(2);
/// The oldest Redis version callbridge works with: `GETDEL` came with 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Redis could not be reached or refused the connection at start-up (the URL is shown without its password).
    #[error("cannot connect to Redis at {url}: {reason}")]
    Unreachable {
        /// `CALLBRIDGE_REDIS_URL`, redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The Redis server is older than [`MIN_REDIS_VERSION`].
    #[error("Redis at {url} is version {version}; callbridge needs 6.2 or later (GETDEL)")]
    TooOld {
        /// `CALLBRIDGE_REDIS_URL`, redacted.
        url: String,
        /// The server's `redis_version`.
        version: String,
    },
    /// A command got no answer within [`OP_DEADLINE`].
    #[error("Redis did not answer within {deadline_ms} ms ({op})")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The deadline, ms.
        deadline_ms: u64,
    },
    /// Redis answered with an error, or the connection failed.
    #[error("Redis failed ({op}): {source}")]
    Redis {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: redis::RedisError,
    },
}

/// This instance's handle on the fleet's Redis. Cheap to clone (clones share one multiplexed connection, which
/// reconnects by itself after a failure).
#[derive(Clone)]
pub struct Fleet {
    /// This instance's id (`CALLBRIDGE_INSTANCE_ID`).
    instance_id: Arc<str>,
    /// The key prefix (`CALLBRIDGE_REDIS_KEY_PREFIX`).
    prefix: Arc<str>,
    /// The connection; its driver task runs on the runtime that connected (the main one).
    redis: ConnectionManager,
    /// The instance lease (`CALLBRIDGE_INSTANCE_LEASE_S`).
    lease: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance_id", &self.instance_id)
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Connects to `settings.redis_url` within [`CONNECT_DEADLINE`] and checks the server's version; `Ok(None)`
    /// when no URL is set (one instance, state in process). Call it on the runtime that lives as long as the server:
    /// the connection's driver task runs there.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`] when Redis cannot be reached in time or refuses us (wrong password, ...);
    /// [`FleetError::TooOld`] for a Redis before 6.2.
    pub async fn connect(settings: &FleetSettings) -> Result<Option<Fleet>, FleetError> {
        let Some(url) = settings.redis_url.as_ref() else {
            return Ok(None);
        };
        let shown = redacted_redis_url(url.expose_secret());
        let unreachable = |reason: String| FleetError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let client =
            redis::Client::open(url.expose_secret()).map_err(|e| unreachable(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_DEADLINE))
            .set_response_timeout(Some(OP_DEADLINE))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut redis = tokio::time::timeout(
            CONNECT_DEADLINE,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_DEADLINE.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
        let info: String = tokio::time::timeout(
            CONNECT_DEADLINE,
            redis::cmd("INFO").arg("server").query_async(&mut redis),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_DEADLINE.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
        let version = redis_version(&info).unwrap_or_default();
        if !version_at_least(&version, MIN_REDIS_VERSION) {
            return Err(FleetError::TooOld {
                url: shown,
                version,
            });
        }
        tracing::info!(
            redis = %shown,
            redis_version = %version,
            instance_id = %settings.instance_id,
            key_prefix = %settings.key_prefix,
            lease_s = settings.lease_s,
            "Redis connected: this instance is part of a fleet"
        );
        Ok(Some(Fleet {
            instance_id: Arc::from(settings.instance_id.as_str()),
            prefix: Arc::from(settings.key_prefix.as_str()),
            redis,
            lease: Duration::from_secs(u64::from(settings.lease_s)),
        }))
    }

    /// This instance's id in the fleet.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The key prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long this instance's lease lasts without a heartbeat.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The full Redis key for `suffix`: the prefix, then `suffix` (`token:abc` → `callbridge:token:abc`).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// How long a registry entry (`call:{CallSid}`) and a held call's slot last without a heartbeat: two leases,
    /// so one missed heartbeat loses nothing.
    pub fn holding_ttl(&self) -> Duration {
        self.lease * 2
    }

    /// A connection to run commands on (a clone of the shared one).
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Runs `command` under [`OP_DEADLINE`], naming `op` in the error.
    ///
    /// # Errors
    /// [`FleetError::Timeout`] past the deadline, [`FleetError::Redis`] when Redis fails.
    pub async fn deadline<T>(
        &self,
        op: &'static str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(OP_DEADLINE, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(FleetError::Redis { op, source }),
            Err(_) => Err(FleetError::Timeout {
                op,
                deadline_ms: u64::try_from(OP_DEADLINE.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Records that this instance holds the call `call_sid` (our id `call_id`): `P call:{CallSid}` → this instance's
    /// id (expiring after [`Fleet::holding_ttl`] unless the heartbeat renews it), and the call in
    /// `P instance:{id}:calls`; its fleet slot, if it has one, now lives as long as the heartbeat renews it. Call it
    /// when the call's media stream starts on this instance.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn register_call(&self, call_sid: &str, call_id: &str) -> Result<(), FleetError> {
        let script = redis::Script::new(REGISTER_CALL);
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&*self.prefix)
            .arg(&*self.instance_id)
            .arg(call_sid)
            .arg(call_id)
            .arg(millis(self.holding_ttl()));
        let mut redis = self.connection();
        self.deadline("register a call", invocation.invoke_async::<()>(&mut redis))
            .await?;
        tracing::debug!(call_sid, call_id, instance_id = %self.instance_id, "call registered in the fleet");
        Ok(())
    }

    /// Forgets that this instance holds the call: removes `P call:{CallSid}` (if it still names this instance) and
    /// the call from `P instance:{id}:calls`, and frees its fleet slot. Call it when the call ends.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time (the entries then expire by themselves).
    pub async fn release_call(&self, call_sid: &str, call_id: &str) -> Result<(), FleetError> {
        let mut redis = self.connection();
        let script = redis::Script::new(RELEASE_CALL);
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&*self.prefix)
            .arg(&*self.instance_id)
            .arg(call_sid)
            .arg(call_id);
        self.deadline("release a call", invocation.invoke_async::<()>(&mut redis))
            .await?;
        tracing::debug!(call_sid, call_id, instance_id = %self.instance_id, "call released in the fleet");
        Ok(())
    }

    /// Stores a stream token's grant (`grant_json`) under `P token:{token}` for `ttl`, unless the key exists
    /// (`SET NX PX`). `false` when it existed (a token drawn twice: never in practice with 256 random bits).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn put_token(
        &self,
        token: &str,
        grant_json: &str,
        ttl: Duration,
    ) -> Result<bool, FleetError> {
        let mut redis = self.connection();
        let set: Option<String> = self
            .deadline(
                "store a stream token",
                redis::cmd("SET")
                    .arg(self.key(&format!("token:{token}")))
                    .arg(grant_json)
                    .arg("PX")
                    .arg(millis(ttl))
                    .arg("NX")
                    .query_async(&mut redis),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Takes a stream token's grant out of Redis atomically (`GETDEL`): of many instances consuming one token at
    /// once exactly one gets it. `None` when it was never stored, was taken already or has expired.
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn take_token(&self, token: &str) -> Result<Option<String>, FleetError> {
        let mut redis = self.connection();
        self.deadline(
            "consume a stream token",
            redis::cmd("GETDEL")
                .arg(self.key(&format!("token:{token}")))
                .query_async(&mut redis),
        )
        .await
    }

    /// The id of the instance that holds the call `call_sid`, if one does (its media stream runs there).
    ///
    /// # Errors
    /// [`FleetError`] when Redis fails or does not answer in time.
    pub async fn instance_of(&self, call_sid: &str) -> Result<Option<String>, FleetError> {
        let mut redis = self.connection();
        let key = self.key(&format!("call:{call_sid}"));
        self.deadline(
            "look up the instance of a call",
            redis::cmd("GET").arg(key).query_async(&mut redis),
        )
        .await
    }
}

/// Registers a call held by an instance. ARGV: prefix, instance id, CallSid, call id, ttl ms. Its slot (keyed by the
/// call id or the CallSid) now expires a ttl from now, unless renewed by the heartbeat.
const REGISTER_CALL: &str = r"
local prefix, instance, call_sid, call_id, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('SET', prefix .. 'call:' .. call_sid, instance, 'PX', ttl)
redis.call('HSET', prefix .. 'instance:' .. instance .. ':calls', call_id, call_sid)
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
redis.call('ZADD', prefix .. 'slots', 'XX', until_ms, call_id)
redis.call('ZADD', prefix .. 'slots', 'XX', until_ms, call_sid)
return 1
";

/// Releases a call held by an instance. ARGV: prefix, instance id, CallSid, call id. Deletes `call:{CallSid}` only
/// if it names this instance, removes the call from the instance's hash and its slot.
const RELEASE_CALL: &str = r"
local prefix, instance, call_sid, call_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 'call:' .. call_sid
if redis.call('GET', key) == instance then redis.call('DEL', key) end
redis.call('HDEL', prefix .. 'instance:' .. instance .. ':calls', call_id)
redis.call('ZREM', prefix .. 'slots', call_id, call_sid)
return 1
";

/// `duration` in whole milliseconds (at least 1: Redis refuses an expiry of 0).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The `redis_version:` of an `INFO server` answer.
fn redis_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_owned())
}

/// Whether `version` (`7.0.15`) is at least `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}
