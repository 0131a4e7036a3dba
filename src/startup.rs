//! Builds the actix-web application on a `TcpListener` and runs it. Tests bind `127.0.0.1:0` and read the port back.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::calls::live::LiveCalls;
use crate::config::{Settings, public_endpoint};
use crate::http::{self, state::AppState};
use crate::realtime::client::RealtimeEndpoint;
use crate::relay::goodbye::GoodbyeMatcher;
use crate::security::tokens::StreamTokens;
use crate::twilio::rest::TwilioRest;
use crate::twilio::signature::RequestValidator;

/// Most stream tokens (and pending pre-connected sessions) held at once.
const MAX_PENDING_CALLS: u64 = 10_000;

/// Installs rustls' ring crypto provider for the process. Without a provider the first TLS handshake (to OpenAI or
/// Twilio) panics. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A built, not yet running, server.
pub struct Application {
    /// The port it listens on (the real one when 0 was asked for).
    port: u16,
    /// The actix server future.
    server: Server,
    /// Cancelled to end every live call (shutdown).
    shutdown: CancellationToken,
    /// Live calls and recent call records.
    live_calls: LiveCalls,
}

impl Application {
    /// Binds `settings.host:settings.port` and builds the server.
    ///
    /// # Errors
    /// When the address cannot be bound or `PUBLIC_URL` is missing.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        Self::build_with_listener(settings, listener)
    }

    /// Builds the server on an already bound listener. Must be called inside a tokio runtime: that runtime owns the
    /// OpenAI Realtime sockets.
    ///
    /// # Errors
    /// When `PUBLIC_URL` is missing or the listener cannot be used.
    pub fn build_with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        install_crypto_provider();
        let port = listener.local_addr()?.port();
        let public_url = settings
            .public_url
            .clone()
            .context("PUBLIC_URL is not set: Twilio webhooks cannot be verified")?;
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
        let shutdown = CancellationToken::new();
        let live_calls = LiveCalls::default();
        let ttl = settings.calls.stream_token_ttl;
        let state = web::Data::new(AppState {
            validator: RequestValidator::new(settings.twilio.auth_token.expose_secret()),
            tokens: StreamTokens::new(ttl, MAX_PENDING_CALLS),
            // No time-to-live here: an expired moka entry keeps its value (the open session) until housekeeping
            // runs. The webhook handler removes each entry itself when its token expires.
            pending: moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING_CALLS)
                .build(),
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
            public_url: public_url.clone(),
            settings: Arc::new(settings),
        });
        tracing::info!(
            port,
            public_url = %public_url,
            webhook = %public_endpoint(&public_url, "/incoming-call"),
            "callbridge listening; set the number's voice webhook (HTTP POST) to the webhook URL"
        );
        // TCP_NODELAY: marks, clears and 20 ms media frames are small writes that must leave at once; with Nagle's
        // algorithm a small write waits for the previous one's ACK (tens of ms with delayed ACKs), which would skew
        // the playback clock and delay barge-in.
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(http::configure)
        })
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            shutdown,
            live_calls,
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

    /// A token that ends every live call when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the server stops (Ctrl-C / SIGTERM are handled by actix: stop accepting, then stop workers).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        let result = self.server.await;
        shutdown.cancel();
        result
    }
}
