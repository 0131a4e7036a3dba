//! Single-use stream tokens: the third security layer (ARCHITECTURE.md, "Where each security layer lives").
//!
//! The voice webhook, once its `X-Twilio-Signature` has checked out, issues a token bound to the call's CallSid and
//! puts it in the Media Stream URL (`wss://PUBLIC/media-stream/TOKEN`). The WebSocket upgrade consumes it: a token
//! works once, for a short time (60 s by default), and only for the call it was issued to (the caller compares
//! [`StreamGrant::call_sid`] with the `start` message). Unknown, used and expired tokens are indistinguishable.
//!
//! Tokens live in an in-process moka cache. With a fleet (`CALLBRIDGE_REDIS_URL`) each grant is also written to
//! Redis (`SET P token:{token} <grant JSON> PX ttl NX`, see [`GrantRecord`]) and consuming takes it from there with
//! an atomic `GETDEL`, so a token issued by one instance works once on any instance of the fleet. Issuing stays
//! synchronous (the webhooks issue under their admission lock): the Redis write starts at once in a task of its
//! own, and [`StreamTokens::published`] waits for it, so a webhook answers its TwiML only once the grant is shared.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use rand::TryRng as _;
use rand::rngs::SysRng;
use tokio::sync::watch;

use crate::fleet::{Fleet, OP_DEADLINE};

/// Bytes of OS randomness in a token: 256 bits, twice the 128-bit floor the design sets.
const TOKEN_RANDOM_BYTES: usize = 32;

/// Length of an issued token: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// The default lifetime of a stream token: Twilio opens the stream within a second or two of receiving the TwiML.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);

/// What a consumed token grants: a Media Stream for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGrant {
    /// The CallSid (`CA` + 32 hex) the token was issued for; the stream's `start.callSid` must equal it.
    pub call_sid: String,
    /// When the token was issued; it expires `ttl` later.
    pub issued_at: Instant,
    /// True for a token a running call issued for its next stream (a stream handover: keypad tones, a transfer
    /// that came back): the upgrade hands the socket to that call instead of starting one.
    pub handover: bool,
    /// The instance that issued the token (`CALLBRIDGE_INSTANCE_ID`), when it came through the fleet's Redis;
    /// `None` for an in-process token.
    pub issued_by: Option<String>,
    /// The stream plan the issuing instance shared with the token (fleet only, [`StreamTokens::issue_with_plan`]),
    /// so that another instance can run the stream; `None` otherwise.
    pub plan: Option<serde_json::Value>,
}

/// A grant as stored in Redis: JSON, `{"call_sid":"CA…","handover":false,"issued_at_unix_ms":1767225600000,
/// "issued_by":"node-a"}`. Unknown fields are ignored, so a newer instance may add optional ones (the stream plan,
/// for a stream that lands on another instance) without breaking an older one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GrantRecord {
    /// The CallSid the token is bound to.
    pub call_sid: String,
    /// A handover token (see [`StreamGrant::handover`]).
    #[serde(default)]
    pub handover: bool,
    /// When it was issued, ms since the Unix epoch (wall clock of the issuing instance).
    pub issued_at_unix_ms: u64,
    /// The issuing instance's id.
    pub issued_by: String,
    /// Optional data the issuing instance shares with the one that takes the stream (the stream plan); absent
    /// when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The token was never issued, was already used, or has expired. The three cases are indistinguishable on
    /// purpose: a prober learns nothing. Maps to HTTP 403 at the WebSocket upgrade.
    #[error("unknown stream token")]
    Unknown,
    /// The fleet's Redis failed or did not answer in time, so the token could not be shared or checked (logged
    /// with the cause). Also a 403 at the upgrade: a token that cannot be checked is not accepted.
    #[error("the stream token store (Redis) is unavailable")]
    StoreUnavailable,
}

/// Where a token's grant is on its way to Redis: `None` while the write runs, then whether it landed.
type Publishing = watch::Receiver<Option<bool>>;

/// The store of outstanding stream tokens.
///
/// Cheap to clone: clones share one cache. `Send + Sync`; every operation is safe from any thread.
#[derive(Clone)]
pub struct StreamTokens {
    /// Outstanding tokens → the grant each one carries. Entries also expire here after `ttl`, which bounds memory;
    /// correctness does not rely on when moka evicts them (see [`StreamTokens::consume`]).
    cache: Cache<String, StreamGrant>,
    /// How long a token stays valid after it is issued.
    ttl: Duration,
    /// The fleet's Redis, where grants are shared when set.
    fleet: Option<Fleet>,
    /// Tokens whose grant is being written to Redis (fleet only), so the webhook can wait for the write.
    publishing: Cache<String, Publishing>,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cache keys are secrets: print only how many there are.
        f.debug_struct("StreamTokens")
            .field("outstanding", &self.cache.entry_count())
            .field("ttl", &self.ttl)
            .field("shared", &self.fleet.is_some())
            .finish()
    }
}

impl StreamTokens {
    /// A token store whose tokens live for `ttl` (normally [`DEFAULT_TOKEN_TTL`]) and which holds at most
    /// `max_capacity` outstanding tokens; past that, moka evicts the least useful entries (those calls then fail
    /// to open their stream, which beats unbounded memory under a flood of webhooks).
    pub fn new(ttl: Duration, max_capacity: u64) -> Self {
        Self::shared(ttl, max_capacity, None)
    }

    /// [`StreamTokens::new`], sharing the tokens through the fleet's Redis when `fleet` is set.
    pub fn shared(ttl: Duration, max_capacity: u64, fleet: Option<Fleet>) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_capacity)
            .time_to_live(ttl)
            .build();
        let publishing = Cache::builder()
            .max_capacity(max_capacity)
            .time_to_live(ttl)
            .build();
        Self {
            cache,
            ttl,
            fleet,
            publishing,
        }
    }

    /// Issues a fresh token for the call `call_sid` and returns it.
    ///
    /// The token is 32 bytes from the operating system's random source, encoded as unpadded base64url:
    /// [`TOKEN_LEN`] characters of `[A-Za-z0-9_-]`, safe in a URL path segment as is. With a fleet, the grant's
    /// write to Redis starts now; await [`StreamTokens::published`] before handing the token to Twilio.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide randomness (`getrandom` fails). That is a broken host, not
    /// something a peer can cause, and issuing a guessable token instead would be worse.
    pub fn issue(&self, call_sid: &str) -> String {
        self.issue_grant(call_sid, false, None)
    }

    /// [`StreamTokens::issue`], with the call's stream plan (JSON) shared in the grant's `plan` field when the
    /// token goes through the fleet's Redis (without a fleet the plan stays with the instance: it is dropped here).
    ///
    /// # Panics
    ///
    /// As [`StreamTokens::issue`].
    pub fn issue_with_plan(&self, call_sid: &str, plan: Option<serde_json::Value>) -> String {
        let plan = plan.filter(|_| self.fleet.is_some());
        self.issue_grant(call_sid, false, plan)
    }

    /// Issues a fresh token for the next media stream of the running call `call_sid` (a stream handover); its grant
    /// has [`StreamGrant::handover`] set. Otherwise exactly as [`StreamTokens::issue`].
    ///
    /// # Panics
    ///
    /// As [`StreamTokens::issue`].
    pub fn issue_handover(&self, call_sid: &str) -> String {
        self.issue_grant(call_sid, true, None)
    }

    fn issue_grant(
        &self,
        call_sid: &str,
        handover: bool,
        plan: Option<serde_json::Value>,
    ) -> String {
        let mut random = [0_u8; TOKEN_RANDOM_BYTES];
        SysRng
            .try_fill_bytes(&mut random)
            .expect("the operating system's random source is available");
        let token = URL_SAFE_NO_PAD.encode(random);
        let grant = StreamGrant {
            call_sid: call_sid.to_owned(),
            issued_at: Instant::now(),
            handover,
            issued_by: self.fleet.as_ref().map(|f| f.instance_id().to_owned()),
            plan,
        };
        if let Some(fleet) = &self.fleet {
            self.start_publishing(fleet, &token, &grant);
        }
        self.cache.insert(token.clone(), grant);
        token
    }

    /// Starts writing `grant` to Redis in a task of its own (on the current tokio runtime).
    fn start_publishing(&self, fleet: &Fleet, token: &str, grant: &StreamGrant) {
        let (done, publishing) = watch::channel(None);
        self.publishing.insert(token.to_owned(), publishing);
        let record = GrantRecord {
            call_sid: grant.call_sid.clone(),
            handover: grant.handover,
            issued_at_unix_ms: unix_ms(),
            issued_by: fleet.instance_id().to_owned(),
            plan: grant.plan.clone(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(call_sid = %grant.call_sid, "stream token not shared: no tokio runtime to write it to Redis");
            let _ = done.send(Some(false));
            return;
        };
        let fleet = fleet.clone();
        let token = token.to_owned();
        let ttl = self.ttl;
        runtime.spawn(async move {
            let json = serde_json::to_string(&record).expect("a grant serializes");
            let stored = match fleet.put_token(&token, &json, ttl).await {
                Ok(true) => true,
                Ok(false) => {
                    tracing::error!(call_sid = %record.call_sid, "stream token already in Redis; not shared");
                    false
                }
                Err(error) => {
                    tracing::error!(call_sid = %record.call_sid, %error, "stream token not shared through Redis");
                    false
                }
            };
            let _ = done.send(Some(stored));
        });
    }

    /// Waits until the grant of `token` is in the fleet's Redis (at most [`OP_DEADLINE`]); at once without a
    /// fleet. Await it before the token leaves this instance (in TwiML or a call update), so that no instance can
    /// be asked for the token before it is shared.
    ///
    /// # Errors
    /// [`TokenError::StoreUnavailable`] when the write failed or did not finish in time (logged).
    pub async fn published(&self, token: &str) -> Result<(), TokenError> {
        let Some(mut publishing) = self.publishing.get(token) else {
            return Ok(());
        };
        let landed = tokio::time::timeout(OP_DEADLINE, publishing.wait_for(Option::is_some)).await;
        match landed {
            Ok(Ok(state)) if *state == Some(true) => Ok(()),
            _ => Err(TokenError::StoreUnavailable),
        }
    }

    /// Waits until every grant this instance is writing to Redis has landed (at most [`OP_DEADLINE`] in all), for
    /// a caller that issued a token without keeping it (a stream handover's TwiML); at once without a fleet.
    ///
    /// # Errors
    /// [`TokenError::StoreUnavailable`] when a write failed or did not finish in time.
    pub async fn all_published(&self) -> Result<(), TokenError> {
        let in_flight: Vec<Publishing> = self.publishing.iter().map(|(_, p)| p).collect();
        let all = async {
            for mut publishing in in_flight {
                if publishing.wait_for(Option::is_some).await.map(|s| *s).ok() != Some(Some(true)) {
                    return Err(TokenError::StoreUnavailable);
                }
            }
            Ok(())
        };
        tokio::time::timeout(OP_DEADLINE, all)
            .await
            .unwrap_or(Err(TokenError::StoreUnavailable))
    }

    /// Consumes `token`: removes it atomically (so of many concurrent callers, on this instance or, with a fleet,
    /// on any instance, exactly one can succeed) and returns its grant if it has not expired. With a fleet the
    /// grant is taken from Redis (`GETDEL`, under [`OP_DEADLINE`]); without one, from this instance's cache.
    ///
    /// # Errors
    ///
    /// [`TokenError::Unknown`] when the token was never issued, was already consumed, or is at least `ttl` old;
    /// [`TokenError::StoreUnavailable`] when the fleet's Redis cannot be asked (logged).
    pub async fn consume(&self, token: &str) -> Result<StreamGrant, TokenError> {
        let Some(fleet) = &self.fleet else {
            return self.consume_in_process(token);
        };
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Unknown);
        }
        // This instance's copy is only a staging place for the write: Redis decides.
        self.cache.remove(token);
        if self.publishing.contains_key(token) {
            // Issued here a moment ago: make sure the write has landed before asking for it.
            let _ = self.published(token).await;
            self.publishing.remove(token);
        }
        let json = match fleet.take_token(token).await {
            Ok(Some(json)) => json,
            Ok(None) => return Err(TokenError::Unknown),
            Err(error) => {
                tracing::error!(%error, "stream token cannot be checked: Redis is unavailable");
                return Err(TokenError::StoreUnavailable);
            }
        };
        let record: GrantRecord = serde_json::from_str(&json).map_err(|error| {
            tracing::error!(%error, "stream token in Redis is not a grant; refused");
            TokenError::Unknown
        })?;
        let age_ms = unix_ms().saturating_sub(record.issued_at_unix_ms);
        let age = Duration::from_millis(age_ms);
        if age >= self.ttl {
            return Err(TokenError::Unknown);
        }
        Ok(StreamGrant {
            call_sid: record.call_sid,
            issued_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            handover: record.handover,
            issued_by: Some(record.issued_by),
            plan: record.plan,
        })
    }

    /// Consumes `token` from this instance's cache alone (the path without a fleet): as [`StreamTokens::consume`].
    ///
    /// # Errors
    ///
    /// [`TokenError::Unknown`] when the token was never issued, was already consumed, or is at least `ttl` old
    /// (checked here against `issued_at`, whatever moka's eviction has or has not done yet).
    pub fn consume_in_process(&self, token: &str) -> Result<StreamGrant, TokenError> {
        if token.len() != TOKEN_LEN {
            // Cannot have been issued; skip hashing an arbitrarily long attacker string.
            return Err(TokenError::Unknown);
        }
        let grant = self.cache.remove(token).ok_or(TokenError::Unknown)?;
        if grant.issued_at.elapsed() >= self.ttl {
            return Err(TokenError::Unknown);
        }
        Ok(grant)
    }
}

/// Milliseconds since the Unix epoch, by this host's clock.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";

    fn tokens() -> StreamTokens {
        StreamTokens::new(DEFAULT_TOKEN_TTL, 1_000)
    }

    #[test]
    fn a_handover_token_is_single_use_bound_to_its_call_and_marked_as_a_handover() {
        let tokens = tokens();
        let first = tokens.issue(CALL_SID);
        let next = tokens.issue_handover(CALL_SID);

        let first_grant = tokens
            .consume_in_process(&first)
            .expect("the first token works");
        let next_grant = tokens
            .consume_in_process(&next)
            .expect("the handover token works");

        assert!(!first_grant.handover);
        assert!(next_grant.handover);
        assert_eq!(next_grant.call_sid, CALL_SID);
        assert_eq!(tokens.consume_in_process(&next), Err(TokenError::Unknown));
    }

    #[test]
    fn a_token_works_once_and_the_second_consume_fails() {
        let tokens = tokens();
        let token = tokens.issue(CALL_SID);

        let first = tokens.consume_in_process(&token);
        let second = tokens.consume_in_process(&token);

        assert!(first.is_ok(), "{first:?}");
        assert_eq!(second, Err(TokenError::Unknown));
    }

    #[test]
    fn an_unknown_token_fails() {
        let tokens = tokens();
        let _issued = tokens.issue(CALL_SID);

        let result = tokens.consume_in_process("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");

        assert_eq!(result, Err(TokenError::Unknown));
    }

    #[test]
    fn malformed_tokens_fail() {
        let tokens = tokens();
        let token = tokens.issue(CALL_SID);

        let results = [
            tokens.consume_in_process(""),
            tokens.consume_in_process(&token[1..]),
            tokens.consume_in_process(&format!("{token}x")),
            tokens.consume_in_process(&"a".repeat(10_000)),
        ];

        assert!(
            results
                .iter()
                .all(|result| *result == Err(TokenError::Unknown)),
            "{results:?}"
        );
        assert!(
            tokens.consume_in_process(&token).is_ok(),
            "near misses must not burn the real token"
        );
    }

    #[test]
    fn an_expired_token_fails() {
        let tokens = StreamTokens::new(Duration::from_millis(50), 1_000);
        let token = tokens.issue(CALL_SID);

        std::thread::sleep(Duration::from_millis(80));
        let result = tokens.consume_in_process(&token);

        assert_eq!(result, Err(TokenError::Unknown));
    }

    #[test]
    fn a_token_consumed_before_its_ttl_works() {
        let tokens = StreamTokens::new(Duration::from_secs(5), 1_000);
        let token = tokens.issue(CALL_SID);

        std::thread::sleep(Duration::from_millis(20));
        let result = tokens.consume_in_process(&token);

        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn the_grant_carries_the_call_sid_the_token_was_issued_for() {
        let tokens = tokens();
        let other = tokens.issue("CAffffffffffffffffffffffffffffffff");
        let token = tokens.issue(CALL_SID);

        let grant = tokens.consume_in_process(&token).expect("fresh token");
        let other_grant = tokens.consume_in_process(&other).expect("fresh token");

        assert_eq!(grant.call_sid, CALL_SID);
        assert_eq!(other_grant.call_sid, "CAffffffffffffffffffffffffffffffff");
    }

    #[test]
    fn the_grant_records_when_the_token_was_issued() {
        let tokens = tokens();
        let before = Instant::now();
        let token = tokens.issue(CALL_SID);
        let after = Instant::now();

        let grant = tokens.consume_in_process(&token).expect("fresh token");

        assert!(before <= grant.issued_at && grant.issued_at <= after);
    }

    #[test]
    fn two_tokens_differ_even_for_the_same_call() {
        let tokens = tokens();

        let issued: std::collections::HashSet<String> =
            (0..1_000).map(|_| tokens.issue(CALL_SID)).collect();

        assert_eq!(issued.len(), 1_000);
    }

    #[test]
    fn tokens_are_43_url_path_safe_characters() {
        let tokens = tokens();

        let token = tokens.issue(CALL_SID);

        assert_eq!(token.len(), TOKEN_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        let decoded = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
        assert_eq!(decoded.len(), TOKEN_RANDOM_BYTES);
    }

    #[test]
    fn clones_share_the_same_tokens() {
        let tokens = tokens();
        let clone = tokens.clone();
        let token = tokens.issue(CALL_SID);

        let via_clone = clone.consume_in_process(&token);
        let via_original = tokens.consume_in_process(&token);

        assert!(via_clone.is_ok(), "{via_clone:?}");
        assert_eq!(via_original, Err(TokenError::Unknown));
    }

    #[test]
    fn debug_output_does_not_contain_tokens() {
        let tokens = tokens();
        let token = tokens.issue(CALL_SID);

        let printed = format!("{tokens:?}");

        assert!(!printed.contains(&token), "{printed}");
    }

    #[test]
    fn concurrent_consumes_of_one_token_succeed_exactly_once() {
        const THREADS: usize = 16;
        let tokens = tokens();
        let token = tokens.issue(CALL_SID);
        let start = Arc::new(Barrier::new(THREADS));

        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let tokens = tokens.clone();
                let token = token.clone();
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    tokens.consume_in_process(&token).is_ok()
                })
            })
            .collect();
        let successes = handles
            .into_iter()
            .map(|handle| handle.join().expect("consumer thread does not panic"))
            .filter(|ok| *ok)
            .count();

        assert_eq!(successes, 1);
    }

    /// Compile-time check: one `StreamTokens` can be cloned into every handler and thread.
    const _: fn() = || {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<StreamTokens>();
    };
}

#[cfg(test)]
#[path = "tokens_shared_tests.rs"]
mod shared_tests;
