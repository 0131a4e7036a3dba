//! Live-call control across a fleet, over Redis pub/sub: the thin I/O around [`crate::calls::control_wire`].
//!
//! A control for a call that does not run here ([`LiveCalls::route`]) goes to the instance the fleet's registry names
//! as its holder ([`Fleet::instance_of`]): it is published on that instance's channel `PREFIX control:{instance}`,
//! and PUBLISH's receiver count tells whether an instance received it (0: nobody holds the call any more). Every
//! instance subscribes to its own channel ([`spawn_subscriber`], reconnecting after a lost connection) and hands
//! what it reads to its local call. A `say` travels with a reply channel `PREFIX reply:{id}` the sender subscribed
//! to first; the holder publishes the call's answer there, and the sender waits for it with a deadline.
//! Redis pub/sub: <https://redis.io/docs/latest/develop/interact/pubsub/>; PUBLISH's answer:
//! <https://redis.io/docs/latest/commands/publish/>.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::TryRng as _;
use tokio_util::sync::CancellationToken;

use crate::calls::control_wire::{
    Received, Route, control_channel, decide, decode, decode_reply, encode, encode_reply,
    reply_channel,
};
use crate::calls::live::{CallControl, LiveCalls, RemoteCalls, RemoteError, RemoteFuture};
use crate::calls::say::{
    REPLY_TRANSCRIPT_GRACE, SAY_SPEAKING_TIMEOUT, SayRefusal, SayReplySlot, SayRequest,
};
use crate::fleet::{Fleet, OP_DEADLINE};

/// The longest wait between two attempts to (re)subscribe to this instance's control channel.
pub const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);
/// The first wait before resubscribing after a lost connection; it doubles up to [`MAX_RESUBSCRIBE_DELAY`].
pub const FIRST_RESUBSCRIBE_DELAY: Duration = Duration::from_millis(100);
/// What a remote `say` may take beyond its words and its reply timeout before its answer is given up on.
pub const REMOTE_SAY_MARGIN: Duration = Duration::from_secs(10);

/// The fleet's routing of controls to other instances; installed in [`LiveCalls`] with
/// [`LiveCalls::set_remote`] at start-up.
#[derive(Clone)]
pub struct FleetRemote {
    /// The fleet's shared connection (registry look-ups, PUBLISH).
    fleet: Fleet,
    /// Opens the dedicated pub/sub connections (a `say`'s reply channel).
    client: redis::Client,
}

impl std::fmt::Debug for FleetRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetRemote")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

fn remote_error(what: &str, error: impl std::fmt::Display) -> RemoteError {
    RemoteError(format!("{what}: {error}"))
}

/// How long a `say` may take at most: the words, the reply timeout, the transcript and a margin.
fn say_deadline(request: &SayRequest) -> Duration {
    SAY_SPEAKING_TIMEOUT + request.reply_timeout + REPLY_TRANSCRIPT_GRACE + REMOTE_SAY_MARGIN
}

/// Fresh random hex for a reply channel.
fn random_id() -> String {
    let mut random = [0_u8; 16];
    // No randomness means a broken host; a fixed id would still work for one `say` at a time.
    let _ = rand::rngs::SysRng.try_fill_bytes(&mut random);
    hex::encode(random)
}

impl FleetRemote {
    /// Routing through `fleet`; `client` opens the pub/sub connections (the fleet's Redis URL).
    pub fn new(fleet: Fleet, client: redis::Client) -> Self {
        Self { fleet, client }
    }

    /// Publishes `payload` on `channel` under the deadline; the number of instances that received it.
    async fn publish(&self, channel: &str, payload: &str) -> Result<u64, RemoteError> {
        let mut redis = self.fleet.connection();
        self.fleet
            .deadline(
                "publish a control",
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<u64>(&mut redis),
            )
            .await
            .map_err(|e| remote_error("PUBLISH", e))
    }

    /// Opens a pub/sub connection subscribed to `channel`, under the deadline.
    async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, RemoteError> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        tokio::time::timeout(OP_DEADLINE, connect)
            .await
            .map_err(|_| RemoteError(format!("SUBSCRIBE {channel}: no answer in time")))?
            .map_err(|e| remote_error("SUBSCRIBE", e))
    }

    /// Publishes `control` for `call_sid` to `instance`; true when an instance received it. A `say` first subscribes
    /// to its reply channel, then forwards the answer to its reply slot from a task of its own.
    async fn publish_to(
        &self,
        instance: &str,
        call_sid: &str,
        control: CallControl,
    ) -> Result<bool, RemoteError> {
        let channel = control_channel(self.fleet.prefix(), instance);
        let CallControl::Say { request, reply } = &control else {
            let payload =
                encode(call_sid, &control, None).map_err(|e| remote_error("encode", e))?;
            return Ok(self.publish(&channel, &payload).await? > 0);
        };
        let reply_to = reply_channel(self.fleet.prefix(), &random_id());
        let pubsub = self.subscribe(&reply_to).await?;
        let payload =
            encode(call_sid, &control, Some(&reply_to)).map_err(|e| remote_error("encode", e))?;
        if self.publish(&channel, &payload).await? == 0 {
            return Ok(false);
        }
        let (reply, deadline) = (reply.clone(), say_deadline(request));
        tokio::spawn(forward_reply(pubsub, reply, deadline));
        Ok(true)
    }
}

/// Waits up to `deadline` for the `say`'s answer on `pubsub` and hands it to `reply`; a malformed answer is logged
/// and the slot dropped (the `say` then reports the call as not live).
async fn forward_reply(pubsub: redis::aio::PubSub, reply: SayReplySlot, deadline: Duration) {
    let mut messages = pubsub.into_on_message();
    match tokio::time::timeout(deadline, messages.next()).await {
        Ok(Some(message)) => match decode_reply(message.get_payload_bytes()) {
            Ok(answer) => reply.send(answer),
            Err(e) => {
                tracing::warn!(error = %e, "malformed say answer from another instance skipped")
            }
        },
        Ok(None) => tracing::warn!("the say's reply channel closed before its answer came"),
        Err(_) => tracing::warn!("no answer to the say from the instance holding the call in time"),
    }
}

impl RemoteCalls for FleetRemote {
    fn send<'a>(
        &'a self,
        call_sid: &'a str,
        control: CallControl,
    ) -> RemoteFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let holder = self
                .fleet
                .instance_of(call_sid)
                .await
                .map_err(|e| remote_error("registry", e))?;
            match decide(false, holder.as_deref(), self.fleet.instance_id()) {
                Route::Remote(instance) => {
                    let received = self.publish_to(&instance, call_sid, control).await?;
                    tracing::info!(%call_sid, %instance, received, "control routed to the instance holding the call");
                    Ok(received)
                }
                Route::Local | Route::Nowhere => Ok(false),
            }
        })
    }

    fn is_held<'a>(&'a self, call_sid: &'a str) -> RemoteFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let holder = self
                .fleet
                .instance_of(call_sid)
                .await
                .map_err(|e| remote_error("registry", e))?;
            Ok(matches!(
                decide(false, holder.as_deref(), self.fleet.instance_id()),
                Route::Remote(_)
            ))
        })
    }
}

/// Subscribes to this instance's control channel and hands every control read there to the local call, until
/// `shutdown`; a lost connection is reopened (waiting [`FIRST_RESUBSCRIBE_DELAY`], doubling up to
/// [`MAX_RESUBSCRIBE_DELAY`]). Returns once the first subscription holds (or failed within [`OP_DEADLINE`]: it is
/// retried in the background), so that controls published after start-up are received.
pub async fn spawn_subscriber(
    remote: Arc<FleetRemote>,
    live: LiveCalls,
    shutdown: CancellationToken,
) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(subscribe_loop(remote, live, shutdown, ready_tx));
    let _ = tokio::time::timeout(OP_DEADLINE, ready_rx).await;
}

async fn subscribe_loop(
    remote: Arc<FleetRemote>,
    live: LiveCalls,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let channel = control_channel(remote.fleet.prefix(), remote.fleet.instance_id());
    let mut ready = Some(ready);
    let mut delay = FIRST_RESUBSCRIBE_DELAY;
    while !shutdown.is_cancelled() {
        match remote.subscribe(&channel).await {
            Ok(pubsub) => {
                tracing::info!(%channel, "listening for live-call controls from the fleet");
                delay = FIRST_RESUBSCRIBE_DELAY;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => handle(&remote, &live, message.get_payload_bytes()),
                            None => break,
                        },
                    }
                }
                tracing::warn!(%channel, "control subscription lost; resubscribing");
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "cannot subscribe to the control channel; retrying")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
    }
}

/// Hands one control message to its local call; a malformed one is logged and skipped.
fn handle(remote: &Arc<FleetRemote>, live: &LiveCalls, payload: &[u8]) {
    let (call_sid, received) = match decode(remote.fleet.prefix(), payload) {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::warn!(error = %e, "control message skipped");
            return;
        }
    };
    match received {
        Received::Control(control) => {
            if live.send(&call_sid, control) {
                tracing::info!(%call_sid, "control from another instance delivered");
            } else {
                tracing::info!(%call_sid, "control from another instance for a call not running here; dropped");
            }
        }
        Received::Say {
            request,
            reply_channel,
        } => {
            let deadline = say_deadline(&request);
            let (reply, answer) = SayReplySlot::new();
            let taken = live.send(&call_sid, CallControl::Say { request, reply });
            let remote = Arc::clone(remote);
            tokio::spawn(async move {
                let answer = if taken {
                    match tokio::time::timeout(deadline, answer).await {
                        Ok(Ok(answer)) => answer,
                        // The call ended without answering, or never did in time: it is ending.
                        _ => Err(SayRefusal::Ending),
                    }
                } else {
                    Err(SayRefusal::Ending)
                };
                if let Err(e) = remote.publish(&reply_channel, &encode_reply(&answer)).await {
                    tracing::warn!(%call_sid, error = %e, "the say's answer could not be sent back");
                }
            });
        }
    }
}

#[cfg(test)]
#[path = "control_route_tests.rs"]
mod tests;
