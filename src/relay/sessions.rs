//! The Realtime sessions of one call, as the bridge holds them: the session that serves the call, and a second one
//! being opened or waiting to take over (a session rollover, or a session reopened after OpenAI closed one). The
//! conductor decides when to open and when to switch ([`crate::relay::conductor::Action::OpenSession`],
//! [`crate::relay::conductor::Action::SwitchSession`]); this type does the I/O, reusing the pre-connect of
//! [`crate::realtime::client`] with the call's own `session.update`, so the new session has the same settings.

use std::sync::Arc;

use std::time::Instant;

use crate::realtime::client::{
    Preconnect, RealtimeEndpoint, RealtimeError, RealtimeLink, preconnect,
};

/// How to open another session like the call's first one.
#[derive(Debug, Clone)]
pub struct SessionOpener {
    /// Where to connect.
    pub endpoint: RealtimeEndpoint,
    /// The event sent first on the new socket: the call's `session.update` (shared with other calls that have the
    /// same one, see [`crate::relay::call::SessionUpdates`]).
    pub session_update: Arc<str>,
}

/// The call's serving session and the one being opened or ready to take over. The two are separate fields so that
/// the bridge can wait on both at once.
#[derive(Debug)]
pub struct RealtimeSessions {
    /// The session that serves the call; after OpenAI closed it, still here (closed) until the switch.
    pub link: RealtimeLink,
    /// The next session.
    pub next: NextSession,
}

/// The session being opened, or open and waiting for the switch.
#[derive(Debug)]
pub struct NextSession {
    /// Opens it.
    opener: SessionOpener,
    /// The session being opened, on this call's runtime.
    opening: Option<Preconnect>,
    /// The session that opened and waits for the switch (boxed: the call's task holds this slot for the whole
    /// call, and it is empty but for the moments of a rollover).
    ready: Option<Box<RealtimeLink>>,
}

impl RealtimeSessions {
    /// The call's sessions, starting with `link`.
    pub fn new(link: RealtimeLink, opener: SessionOpener) -> Self {
        RealtimeSessions {
            link,
            next: NextSession {
                opener,
                opening: None,
                ready: None,
            },
        }
    }

    /// Makes the session that opened the serving one and closes the old one in the background (a close frame
    /// within the link's close deadline). False when no session is ready (nothing changes).
    pub fn switch(&mut self) -> bool {
        let Some(new) = self.next.ready.take() else {
            return false;
        };
        let old = std::mem::replace(&mut self.link, *new);
        actix_web::rt::spawn(old.close());
        true
    }

    /// Since when the serving session has not taken what is queued for it (for the stall timeout).
    pub fn stalled_since(&self) -> Option<Instant> {
        self.link.stalled_since()
    }

    /// Closes every session: the serving one with a close frame, the others dropped.
    pub async fn close(self) {
        drop(self.next);
        self.link.close().await;
    }
}

impl NextSession {
    /// Starts opening a new session in the background on the current runtime (the call's own, so its socket wakes
    /// this task directly). A session already opening or ready is dropped (closed).
    pub fn open(&mut self) {
        self.ready = None;
        self.opening = Some(preconnect(
            &tokio::runtime::Handle::current(),
            self.opener.endpoint.clone(),
            vec![self.opener.session_update.to_string()],
        ));
    }

    /// Waits for the session being opened: its outcome, once. Pending forever while none is being opened.
    /// Cancel-safe. A session that opened is kept for [`RealtimeSessions::switch`].
    ///
    /// # Errors
    /// What the connector returned (refusal, connect failure, its deadline).
    pub async fn opened(&mut self) -> Result<(), RealtimeError> {
        let Some(opening) = self.opening.as_mut() else {
            return std::future::pending().await;
        };
        let result = opening.wait().await;
        self.opening = None;
        self.ready = Some(Box::new(result?));
        Ok(())
    }
}
