//! Builds the actix-web application on a `TcpListener`, runs it, and shuts it down gracefully. Tests bind
//! `127.0.0.1:0` and read the port back.
//!
//! Graceful shutdown (SIGTERM or Ctrl-C, or [`Application::run_until`]'s trigger):
//! 1. draining starts: `GET /ready` answers 503, and a new call is answered with a short apology and hung up
//!    (TwiML `<Say>` + `<Hangup/>`; forged webhooks still get 403);
//! 2. calls in progress may go on for up to `drain_timeout_s`;
//! 3. calls still going are then ended: the assistant is asked to say goodbye, and each call is hung up once that has
//!    played (at most [`GOODBYE_TIMEOUT`] later);
//! 4. every call record is written (logged, and the store writer's queue flushed to the database, for at most
//!    [`STORE_FLUSH_TIMEOUT`]), the webhook delivery thread stops (pending deliveries stay in the outbox for the
//!    next start), the server stops and the process exits 0.
//!
//! A second signal while draining exits at once (status 130). Records that a crash, a kill or a second signal left
//! open are closed at the next start ([`CallStore::reconcile`], end reason `error:server_stopped`).

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::calls::clock::{SharedClock, SystemClock};
use crate::calls::live::LiveCalls;
use crate::calls::model::CallStatus;
use crate::calls::retention::RecordingRetention;
use crate::calls::scheduler;
use crate::calls::service::{CallService, OutboundSettings};
use crate::calls::store::CallStore;
use crate::config::Settings;
use crate::fleet::Fleet;
use crate::http::{self, state::AppState};
use crate::realtime::client::RealtimeEndpoint;
use crate::relay::goodbye::GoodbyeMatcher;
use crate::security::policy::DestinationPolicy;
use crate::security::rate_limit::Limits;
use crate::security::tokens::StreamTokens;
use crate::shutdown::Shutdown;
use crate::twilio::rest::{RestHandle, TwilioRest};
use crate::twilio::signature::WebhookSigning;
use crate::urls::{INCOMING_CALL_PATH, public_endpoint};

/// Most stream tokens (and pending pre-connected sessions) held at once.
const MAX_PENDING_CALLS: u64 = 10_000;
/// After the drain timeout, how long calls get to say goodbye before the server stops anyway.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client has to send a request's head (line and headers) before it is answered 408 and cut off.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// At shutdown, how long the store writer gets to write what is queued (a database locked by another process may
/// hold it up; what is not written by then is closed at the next start).
pub const STORE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection being closed may take to go before it is dropped.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Installs rustls' ring crypto provider for the process. Without a provider the first TLS handshake (to OpenAI or
/// Twilio) panics. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Raises the process's soft `RLIMIT_NOFILE` (open file descriptors: every connection is one) to its hard limit, and
/// returns the new soft limit. The usual soft default of 1,024 lets about a thousand slow clients lock everyone out;
/// the hard limit is what the administrator allows (systemd's `LimitNOFILE=`, `ulimit -Hn`). Where the platform has
/// no such limit, does nothing and returns `u64::MAX`.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// A built, not yet running, server.
pub struct Application {
    /// The port it listens on (the real one when 0 was asked for).
    port: u16,
    /// The actix server future.
    server: Server,
    /// Draining, the goodbye token and the call tasks.
    shutdown: Shutdown,
    /// Live calls and recent call records.
    live_calls: LiveCalls,
    /// How long calls may go on once draining started.
    drain_timeout: Duration,
    /// The call service (store, outbound calls).
    calls: CallService,
    /// Stops the webhook delivery thread (cancelled as the server stops; pending deliveries wait for the next start).
    webhooks_stop: CancellationToken,
    /// The fleet's Redis, when `CALLBRIDGE_REDIS_URL` is set: the lease is held while the server runs.
    fleet: Option<Fleet>,
}

impl Application {
    /// Binds `settings.host:settings.port` and builds the server.
    ///
    /// # Errors
    /// When the address cannot be bound, the public URL cannot be known or Redis (when set) cannot be reached.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Builds the server on an already bound listener. Must be called inside a tokio runtime: that runtime owns the
    /// OpenAI Realtime sockets.
    ///
    /// # Errors
    /// When neither `PUBLIC_URL` nor trusted forwarded headers can tell the public URL, the listener cannot be
    /// used, or `CALLBRIDGE_REDIS_URL` is set and Redis cannot be reached within [`crate::fleet::CONNECT_DEADLINE`].
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, listener, Arc::new(SystemClock)).await
    }

    /// [`Application::build_with_listener`] with the clock scheduled and retried calls are due by (tests move it
    /// forward instead of waiting).
    ///
    /// # Errors
    /// As [`Application::build_with_listener`].
    pub async fn build_with_clock(
        settings: Settings,
        listener: TcpListener,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        let port = listener.local_addr()?.port();
        if settings.public_url.is_none() && !settings.trust_forwarded_headers {
            anyhow::bail!("PUBLIC_URL is not set: Twilio webhooks cannot be verified");
        }
        // Connected on this runtime, which lives as long as the server: the connection's driver task runs here.
        let fleet = Fleet::connect(&settings.fleet)
            .await
            .context("CALLBRIDGE_REDIS_URL is set but Redis cannot be used")?;
        match &settings.public_url {
            Some(url) => tracing::info!(
                port,
                public_url = %url.as_str().trim_end_matches('/'),
                webhook = %public_endpoint(url, INCOMING_CALL_PATH),
                "callbridge listening; set the number's voice webhook (HTTP POST) to the webhook URL"
            ),
            None => tracing::info!(
                port,
                "callbridge listening; PUBLIC_URL is not set, so the public URL is taken from each request's \
                 X-Forwarded-Proto and X-Forwarded-Host (trusted forwarded headers); it is logged with the first call"
            ),
        }
        let rest = settings
            .twilio
            .account_sid
            .clone()
            .filter(|_| settings.has_twilio_rest_credentials())
            .map(|sid| {
                TwilioRest::new(
                    settings.twilio.api_base_url.clone(),
                    sid,
                    settings.twilio.auth_token.clone(),
                )
            });
        let store = match &settings.database_url {
            Some(url) => {
                let store = CallStore::open_url(url.expose_secret()).with_context(|| {
                    format!(
                        "cannot open the call records database {} (CALLBRIDGE_DATABASE_URL)",
                        crate::config::database::redacted(url)
                    )
                })?;
                tracing::info!(
                    store = "postgresql",
                    database = store.postgres_target().unwrap_or_default(),
                    "call records database open (schema migrated)"
                );
                store
            }
            None => {
                let database = settings.database_path();
                let store = CallStore::open(&database).with_context(|| {
                    format!(
                        "cannot open the call records database {}",
                        database.display()
                    )
                })?;
                tracing::info!(store = "sqlite", database = %database.display(), "call records database open");
                store
            }
        };
        // Records an earlier process left open (it crashed, was killed or got a second signal mid-call). A fleet
        // sharing one PostgreSQL database must not do this: the open records include the other instances' live
        // calls. There, the lease reaper closes a lost instance's calls (`instance_lost`), and a restarted instance
        // closes the calls its earlier run held (`crate::calls::fleet_lease`).
        let shared_database =
            settings.fleet.redis_url.is_some() && store.postgres_target().is_some();
        let reconciled = if shared_database {
            tracing::info!(
                "start-up reconcile skipped: the call records database is shared by the fleet (records of lost \
                 instances are closed through their lease)"
            );
            Vec::new()
        } else {
            store
                .reconcile(time::OffsetDateTime::now_utc())
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "cannot close the call records an earlier run left open; they stay open");
                    Vec::new()
                })
        };
        for call in &reconciled {
            tracing::warn!(
                call_id = %call.id,
                call_sid = call.call_sid.as_deref().unwrap_or(""),
                was = %call.was,
                now = %call.now,
                end_reason = %crate::calls::EndReason::Error(crate::calls::CallFailure::ServerStopped),
                "call record left open by an earlier run closed"
            );
        }
        let rest_handle = rest.clone().map(RestHandle::spawn).transpose()?;
        let retention_rest = rest_handle.clone();
        if settings.api_key.expose_secret().is_empty() {
            tracing::info!("CALLBRIDGE_API_KEY is not set: /api and /mcp refuse every request");
        }
        let shutdown = Shutdown::new();
        let live_calls = LiveCalls::default();
        // No time-to-live here: an expired moka entry keeps its value (the open session) until housekeeping
        // runs. The webhook handler removes each entry itself when its token expires.
        let pending: moka::sync::Cache<String, crate::relay::call::PendingSlot> =
            moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING_CALLS)
                .build();
        // Calls answered whose stream has not opened yet count against the concurrency cap. `iter` sees inserts and
        // removals at once (`entry_count` lags until housekeeping).
        let pending_streams = {
            let pending = pending.clone();
            Arc::new(move || pending.iter().count())
        };
        let calls = CallService::with_clock(
            store,
            rest_handle,
            live_calls.clone(),
            OutboundSettings {
                public_url: settings.public_url.clone(),
                from_number: settings.twilio.phone_number.clone(),
                max_call_duration_s: settings.calls.max_call_duration.as_secs(),
                ring_timeout_s: settings.ring_timeout_s,
                destinations: DestinationPolicy::from_settings(&settings.security),
                daily_outbound_budget: settings.security.daily_outbound_budget,
                max_concurrent_calls: settings.security.max_concurrent_calls,
                answering_machine: settings.amd.policy,
                amd_tuning: settings.amd.tuning,
                record: settings.recording.outbound,
                webhooks: crate::webhooks::destination::WebhookPolicy {
                    default_url: settings.webhooks.default_url.clone(),
                    signing: settings.webhooks.secret.is_some(),
                },
                voice_mcp_servers: settings.calls.voice_mcp_servers.clone(),
                daily_cost_budget_usd: settings.cost.daily_cost_budget_usd,
            },
            pending_streams,
            clock,
        );
        // Outbound calls the earlier run left ringing: cancel them at Twilio, so a callee who answers now is not
        // connected to nothing (their webhook would hang up anyway: the record is terminal).
        for call in reconciled {
            if let (CallStatus::Canceled, Some(call_sid)) = (call.now, call.call_sid) {
                let calls = calls.clone();
                tokio::spawn(async move {
                    if let Err(error) = calls.cancel_at_twilio(&call_sid).await {
                        tracing::warn!(%call_sid, %error, "cannot cancel at Twilio an outbound call left ringing");
                    }
                });
            }
        }
        if let Some(fleet) = &fleet {
            calls.join_fleet(fleet.clone());
        }
        let recording_retention =
            start_recording_retention(&settings, &calls, retention_rest, &shutdown);
        let webhooks_stop = CancellationToken::new();
        if let Some(fleet) = &fleet {
            // Controls for calls held by other instances go through Redis; ours come in on our channel, until the
            // server stops (the same moment the webhook delivery stops: after the drain).
            start_control_routing(&settings, fleet, &live_calls, webhooks_stop.clone()).await?;
        }
        if let Some(secret) = settings.webhooks.secret.clone() {
            crate::calls::webhook_delivery::spawn(
                calls.store().clone(),
                calls.writer().clone(),
                calls.changes(),
                crate::calls::webhook_delivery::DeliveryConfig {
                    secret,
                    schedule: settings.webhooks.schedule,
                    clock: Arc::new(crate::calls::webhook_delivery::SystemClock),
                },
                webhooks_stop.clone(),
            )
            .context("cannot start the webhook delivery thread")?;
        }
        let ttl = settings.calls.stream_token_ttl;
        let drain_timeout = settings.drain_timeout;
        let state = web::Data::new(AppState {
            signing: WebhookSigning::new(
                settings.twilio.auth_token.expose_secret(),
                &settings
                    .twilio
                    .signing_keys
                    .iter()
                    .map(|(id, secret)| (id.clone(), secret.expose_secret().to_owned()))
                    .collect::<Vec<_>>(),
            ),
            tokens: StreamTokens::shared(ttl, MAX_PENDING_CALLS, fleet.clone()),
            pending,
            realtime_endpoint: RealtimeEndpoint::new(
                &settings.realtime.url,
                &settings.realtime.model,
                settings.openai_api_key.clone(),
            ),
            realtime_runtime: tokio::runtime::Handle::current(),
            live_calls: live_calls.clone(),
            goodbye: GoodbyeMatcher::new(&settings.realtime.goodbye_phrases),
            rest,
            shutdown: shutdown.clone(),
            calls: calls.clone(),
            api_key: settings.api_key.clone(),
            public_url: settings.public_url.clone(),
            derived_public_url: Default::default(),
            limits: Limits::new(&settings),
            attachments: Default::default(),
            session_updates: Default::default(),
            transfers: Default::default(),
            recording_retention,
            fleet: fleet.clone(),
            settings: Arc::new(settings),
        });
        let max_body_bytes = state.settings.security.max_body_bytes;
        // TCP_NODELAY: marks, clears and 20 ms media frames are small writes that must leave at once; with Nagle's
        // algorithm a small write waits for the previous one's ACK (tens of ms with delayed ACKs), which would skew
        // the playback clock and delay barge-in.
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                // Every body extractor is capped at CALLBRIDGE_MAX_BODY_BYTES; a larger body is refused with 413
                // before it is buffered. Scopes with their own config (`/api` JSON, `/mcp`) keep theirs.
                .app_data(web::PayloadConfig::new(max_body_bytes))
                .app_data(web::FormConfig::default().limit(max_body_bytes))
                .app_data(web::JsonConfig::default().limit(max_body_bytes))
                // Request bodies: a declared length over the limit is a 413 before a byte is read, and a body
                // that has not fully arrived `body_timeout_s` after its head is a 408 (connection closed).
                .wrap(from_fn(http::body_guard::guard_body))
                // Rate limits run before routing (and before the body guard): a refused request reaches no
                // handler.
                .wrap(from_fn(http::rate_limit::limit_requests))
                .configure(|cfg| http::configure(cfg, max_body_bytes))
        })
        .tcp_nodelay(true)
        // Slow clients: a connection must deliver its request head within 5 s (else 408 and closed), and a closing
        // connection gets 1 s to go. Connections are tasks, not threads, but a client that never completes its
        // request must not hold its slot (and its memory) for ever. These are actix's defaults, set here so they
        // cannot change under us.
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .disable_signals()
        // Calls are ended by the drain above; what is left when the server stops is idle keep-alive connections.
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            shutdown,
            live_calls,
            drain_timeout,
            calls,
            webhooks_stop,
            fleet,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The live calls and recent call records of this server.
    pub fn live_calls(&self) -> LiveCalls {
        self.live_calls.clone()
    }

    /// The call service: the call records and outbound calls.
    pub fn calls(&self) -> CallService {
        self.calls.clone()
    }

    /// A token that ends every live call (with a goodbye) when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.goodbye_token()
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully (see the module docs). A second signal exits the
    /// process at once with status 130.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(async {
            wait_for_signal().await;
            tokio::spawn(async {
                wait_for_signal().await;
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            });
        })
        .await
    }

    /// Runs until `stop` completes, then shuts down gracefully (see the module docs).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            server,
            shutdown,
            drain_timeout,
            calls,
            webhooks_stop,
            fleet,
            ..
        } = self;
        let handle = server.handle();
        // Scheduled and retried calls are placed while the server runs, and no longer once it drains.
        let scheduler_stop = CancellationToken::new();
        tokio::spawn(scheduler::run(calls.clone(), scheduler_stop.clone()));
        // With a fleet: the instance lease, its heartbeat and the reaper of lost instances.
        let lease_stop = CancellationToken::new();
        let lease = fleet.clone().map(|fleet| {
            tokio::spawn(crate::calls::fleet_lease::run(
                calls.clone(),
                fleet,
                lease_stop.clone(),
            ))
        });
        tokio::spawn(async move {
            stop.await;
            scheduler_stop.cancel();
            shutdown.start_draining();
            tracing::info!(
                live_calls = shutdown.calls_in_progress(),
                drain_timeout_s = drain_timeout.as_secs(),
                "shutting down: new calls are turned away; calls in progress may finish"
            );
            if !shutdown.wait_for_calls(drain_timeout).await {
                tracing::info!(
                    live_calls = shutdown.calls_in_progress(),
                    "drain timeout: asking the calls still in progress to say goodbye"
                );
                shutdown.ask_calls_to_end();
                if shutdown.wait_for_calls(GOODBYE_TIMEOUT).await {
                    tracing::info!("every call has ended");
                } else {
                    tracing::warn!(
                        live_calls = shutdown.calls_in_progress(),
                        "calls did not end in time; stopping anyway (their records are closed at the next start)"
                    );
                }
            } else {
                tracing::info!("every call has ended");
            }
            shutdown.ask_calls_to_end();
            if calls.writer().flush(STORE_FLUSH_TIMEOUT).await {
                tracing::info!("call records written");
            } else {
                tracing::error!(
                    timeout_s = STORE_FLUSH_TIMEOUT.as_secs(),
                    "call records not all written in time (database locked?); the next start closes them"
                );
            }
            webhooks_stop.cancel();
            if let Some(fleet) = &fleet {
                // Drained: no call is held here any more. Leave the fleet now rather than when the lease expires.
                lease_stop.cancel();
                if let Some(lease) = lease {
                    let _ = lease.await;
                }
                match fleet.leave().await {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot remove the instance lease; it expires by itself")
                    }
                }
            }
            tracing::info!("stopping the server");
            handle.stop(true).await;
        });
        server.await
    }
}

/// Starts the task that deletes recordings at Twilio when their retention runs out, when Twilio REST credentials
/// are set: recordings a retention was set for are deleted even if the retention was turned off since (their due
/// time is stored). Without credentials nothing can be deleted: a retention setting is then warned about.
fn start_recording_retention(
    settings: &Settings,
    calls: &CallService,
    rest: Option<RestHandle>,
    shutdown: &Shutdown,
) -> RecordingRetention {
    match rest {
        Some(rest) => RecordingRetention::spawn(
            calls.store().clone(),
            calls.writer().clone(),
            rest,
            shutdown.goodbye_token(),
        ),
        None => {
            if settings.recording.retention.is_some() {
                tracing::warn!(
                    "CALLBRIDGE_RECORDING_RETENTION_DAYS is set but TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are \
                     not: recordings cannot be deleted at Twilio"
                );
            }
            RecordingRetention::default()
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Routes live-call controls across the fleet: installs [`crate::calls::control_route::FleetRemote`] in `live_calls`
/// and subscribes to this instance's control channel until `stop`.
///
/// # Errors
/// When the Redis URL cannot be used for a pub/sub connection.
async fn start_control_routing(
    settings: &Settings,
    fleet: &Fleet,
    live_calls: &LiveCalls,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use crate::calls::control_route::{FleetRemote, spawn_subscriber};
    let Some(url) = settings.fleet.redis_url.as_ref() else {
        return Ok(());
    };
    let client = redis::Client::open(url.expose_secret())
        .context("CALLBRIDGE_REDIS_URL cannot be used for the live-call control channel")?;
    let remote = Arc::new(FleetRemote::new(fleet.clone(), client));
    live_calls.set_remote(remote.clone());
    spawn_subscriber(remote, live_calls.clone(), stop).await;
    Ok(())
}
