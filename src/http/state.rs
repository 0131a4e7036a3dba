//! The state every handler shares.

use std::sync::{Arc, Mutex};

use url::Url;

use crate::calls::live::LiveCalls;
use crate::config::Settings;
use crate::realtime::client::RealtimeEndpoint;
use crate::relay::call::{CallDeps, PendingSlot};
use crate::relay::goodbye::GoodbyeMatcher;
use crate::security::tokens::StreamTokens;
use crate::twilio::rest::TwilioRest;
use crate::twilio::signature::WebhookSigning;

/// Shared state of the server.
pub struct AppState {
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// The configured public base URL, if any (else derived per request from trusted forwarded headers).
    pub public_url: Option<Url>,
    /// The last public URL derived from forwarded headers, to log when it changes.
    pub derived_public_url: Mutex<Option<String>>,
    /// Checks `X-Twilio-Signature`: with the auth token, or the SharedKey a webhook's
    /// `X-Twilio-Webhooks-Signature-Settings` names.
    pub signing: WebhookSigning,
    /// Single-use media-stream tokens.
    pub tokens: StreamTokens,
    /// Pending calls by stream token. The webhook handler removes an entry when its token expires, which closes an
    /// unused Realtime session; the media-stream upgrade takes it out before that.
    pub pending: moka::sync::Cache<String, PendingSlot>,
    /// Where the Realtime sessions connect.
    pub realtime_endpoint: RealtimeEndpoint,
    /// The runtime that owns the Realtime sockets (see `realtime::client`).
    pub realtime_runtime: tokio::runtime::Handle,
    /// Calls in progress.
    pub live_calls: LiveCalls,
    /// Goodbye phrases.
    pub goodbye: GoodbyeMatcher,
    /// REST client for hang-ups, when credentials are configured.
    pub rest: Option<TwilioRest>,
    /// Calls: the store, outbound calls, waiting, hang-up.
    pub calls: crate::calls::service::CallService,
    /// Bearer key for `/api` and `/mcp` (empty: those endpoints refuse everything).
    pub api_key: secrecy::SecretString,
    /// The server's shutdown: draining (new calls turned away), the goodbye token every bridge watches, the tracked
    /// call tasks.
    pub shutdown: crate::shutdown::Shutdown,
    /// Request rate limits per client IP and per API key (checked before routing).
    pub limits: crate::security::rate_limit::Limits,
    /// Running calls that can take a new media stream (a stream handover).
    pub attachments: crate::relay::handover::StreamAttachments,
    /// The `session.update` texts calls share (see [`crate::relay::call::SessionUpdates`]).
    pub session_updates: crate::relay::call::SessionUpdates,
    /// Transfers under way, by id (the whisper and `<Dial action>` webhooks).
    pub transfers: crate::relay::transfer::Transfers,
    /// The recording retention task, woken when a recording is stored.
    pub recording_retention: crate::calls::retention::RecordingRetention,
    /// The fleet's Redis when `CALLBRIDGE_REDIS_URL` is set (several instances); `None` for one instance.
    pub fleet: Option<crate::fleet::Fleet>,
}

impl AppState {
    /// The handles a call's media stream runs with ([`crate::relay::call::run_call`]).
    pub fn call_deps(&self) -> CallDeps {
        CallDeps {
            settings: Arc::clone(&self.settings),
            calls: self.calls.clone(),
            live_calls: self.live_calls.clone(),
            rest: self.rest.clone(),
            goodbye: self.goodbye.clone(),
            shutdown: self.shutdown.goodbye_token(),
            tokens: self.tokens.clone(),
            realtime_endpoint: self.realtime_endpoint.clone(),
            attachments: self.attachments.clone(),
            transfers: self.transfers.clone(),
            fleet: self.fleet.clone(),
        }
    }
}
