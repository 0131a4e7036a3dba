//! Stream handover: one call, several media streams, one Realtime session.
//!
//! A Twilio call update (`POST /Calls/{CallSid}.json` with `Twiml=`) replaces the running TwiML and so ends the
//! call's `<Connect><Stream>`: Twilio sends `stop` and closes the socket. To play keypad tones
//! (`<Play digits>`) the running call asks for a handover: the bridge issues a fresh single-use stream token bound
//! to the same CallSid ([`StreamTokens::issue_handover`]), sends the update with TwiML that ends in a new
//! `<Connect><Stream>` on that token, and the conductor marks the call as awaiting a new stream (the old stream's
//! `stop` and close then do not end the call; the idle timer gives way to a handover deadline). When Twilio opens the
//! new stream, the media-stream route consumes the token and hands the socket to the running call through
//! [`StreamAttachments`] instead of starting a call; the bridge swaps its Twilio reader and writer and the conductor
//! starts a new playback-ledger generation for the new StreamSid. Nothing is re-sent to the Realtime session.
//!
//! Follows <https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource>,
//! <https://www.twilio.com/docs/voice/twiml/play> and <https://www.twilio.com/docs/voice/twiml/stream>.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::relay::media_link::RemoteStream;
use crate::relay::transfer::Transfers;
use crate::security::tokens::StreamTokens;
use crate::twilio::dial::{DIAL_TIMEOUT_S, TransferTarget};
use crate::twilio::dtmf::DtmfDigits;
use crate::twilio::twiml;
use crate::urls::{stream_url, transfer_action_path, transfer_whisper_path};

/// A new media stream of a running call, accepted at the upgrade with a handover token. Its socket stays on the
/// worker thread that accepted it ([`crate::relay::media_link::pump`]); the call uses it through channels.
#[derive(Debug)]
pub struct StreamAttachment {
    /// The new stream.
    pub stream: RemoteStream,
    /// When the upgrade was accepted.
    pub opened_at: Instant,
}

/// What a call update does before the call's next stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// Play these keypad tones, then connect a new stream.
    PlayDigits(DtmfDigits),
    /// Dial a person (`<Dial><Number url>`) and whisper `summary` to them; the `<Dial action>` connects a new stream
    /// only if they do not answer.
    Transfer {
        /// Who to dial.
        target: TransferTarget,
        /// What the person hears first (already bounded).
        summary: String,
    },
}

impl CallUpdate {
    /// What the record and the log call this handover: `dtmf`, `transfer`.
    pub fn cause(&self) -> &'static str {
        match self {
            CallUpdate::PlayDigits(_) => "dtmf",
            CallUpdate::Transfer { .. } => "transfer",
        }
    }
}

/// The new streams of a running call, as its bridge receives them. Boxed, as the call's controls: the channel
/// preallocates its slots for every call, and a new stream seldom comes.
pub type AttachmentReceiver = mpsc::Receiver<Box<StreamAttachment>>;

/// The running calls that can take a new stream, by CallSid. Cheap to clone; all clones share one table.
#[derive(Debug, Clone, Default)]
pub struct StreamAttachments {
    /// CallSid → the running call's attachment sender.
    calls: Arc<Mutex<HashMap<String, mpsc::Sender<Box<StreamAttachment>>>>>,
}

/// Removes its call from [`StreamAttachments`] when dropped.
#[derive(Debug)]
pub struct AttachmentGuard {
    attachments: StreamAttachments,
    call_sid: String,
    sender: mpsc::Sender<Box<StreamAttachment>>,
}

impl Drop for AttachmentGuard {
    fn drop(&mut self) {
        let mut calls = self.attachments.lock();
        if calls
            .get(&self.call_sid)
            .is_some_and(|sender| sender.same_channel(&self.sender))
        {
            calls.remove(&self.call_sid);
        }
    }
}

impl StreamAttachments {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Box<StreamAttachment>>>> {
        // Single inserts and removes: a panic under the lock cannot leave the map inconsistent.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers the running call `call_sid`; returns the receiver its bridge polls and the guard that unregisters it.
    pub fn register(&self, call_sid: &str) -> (AttachmentReceiver, AttachmentGuard) {
        let (tx, rx) = mpsc::channel(2);
        self.lock().insert(call_sid.to_owned(), tx.clone());
        (
            rx,
            AttachmentGuard {
                attachments: self.clone(),
                call_sid: call_sid.to_owned(),
                sender: tx,
            },
        )
    }

    /// Hands a new stream to the running call `call_sid` (never waits).
    ///
    /// # Errors
    /// The attachment back when no such call is running or it cannot take one now; the caller closes it.
    pub fn attach(
        &self,
        call_sid: &str,
        attachment: StreamAttachment,
    ) -> Result<(), Box<StreamAttachment>> {
        let sender = self.lock().get(call_sid).cloned();
        match sender {
            Some(tx) => tx.try_send(Box::new(attachment)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            }),
            None => Err(Box::new(attachment)),
        }
    }
}

/// What a running call needs to ask for its next stream: the token store, where Twilio reaches the server, and the
/// stream's `<Parameter>`s.
pub struct HandoverDeps {
    /// Issues the handover tokens.
    pub tokens: StreamTokens,
    /// The public base URL the call's webhooks are addressed to (`https://host`), for the transfer's webhook URLs.
    pub public_base: String,
    /// The base URL of this instance's streams ([`crate::urls::stream_base`]), for the new stream URL.
    pub stream_base: String,
    /// The `<Parameter>`s of the call's stream (`caller`, `called`).
    pub parameters: Vec<(String, String)>,
    /// The transfer legs the whisper and action webhooks read.
    pub transfers: Transfers,
    /// The call's Twilio number (E.164): the caller ID a transferred person sees.
    pub twilio_number: String,
}

impl HandoverDeps {
    /// The TwiML of `update` for the call `call_sid`. Keypad tones end in a stream on a fresh handover token; a
    /// transfer opens a leg in [`Transfers`] and dials with its signed whisper and action URLs (the stream that may
    /// bring the caller back is made by the action).
    pub fn update_twiml(&self, call_sid: &str, update: &CallUpdate) -> String {
        match update {
            CallUpdate::PlayDigits(digits) => {
                let token = self.tokens.issue_handover(call_sid);
                let parameters: Vec<(&str, &str)> = self
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                twiml::play_digits_then_connect(
                    digits.as_str(),
                    &stream_url(&self.stream_base, &token),
                    &parameters,
                )
            }
            CallUpdate::Transfer { target, summary } => {
                let id = self.transfers.open(
                    call_sid,
                    &target.label(),
                    summary,
                    self.parameters.clone(),
                );
                twiml::dial_number(
                    target.number.as_str(),
                    &self.twilio_number,
                    &format!("{}{}", self.public_base, transfer_action_path(&id)),
                    &format!("{}{}", self.public_base, transfer_whisper_path(&id)),
                    DIAL_TIMEOUT_S,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dtmf_update_plays_the_digits_then_streams_on_a_fresh_handover_token() {
        let tokens = StreamTokens::new(std::time::Duration::from_secs(60), 100);
        let deps = HandoverDeps {
            tokens: tokens.clone(),
            public_base: "https://cb.test".into(),
            stream_base: "https://cb.test".into(),
            parameters: vec![("caller".into(), "+15550100001".into())],
            transfers: Transfers::default(),
            twilio_number: "+15550100002".into(),
        };
        let update = CallUpdate::PlayDigits(DtmfDigits::parse("1").expect("valid"));

        let twiml = deps.update_twiml("CA0123456789abcdef0123456789abcdef", &update);

        let token = twiml
            .split("wss://cb.test/media-stream/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a stream URL");
        assert!(
            twiml
                .contains(r#"<Play digits="1"/><Connect><Stream url="wss://cb.test/media-stream/"#)
        );
        let grant = tokens
            .consume_in_process(token)
            .expect("the token was issued");
        assert!(grant.handover);
        assert_eq!(grant.call_sid, "CA0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn the_transfer_update_dials_from_the_call_number_with_urls_of_a_stored_leg() {
        let transfers = Transfers::default();
        let deps = HandoverDeps {
            tokens: StreamTokens::new(std::time::Duration::from_secs(60), 100),
            public_base: "https://cb.test".into(),
            stream_base: "https://cb.test".into(),
            parameters: Vec::new(),
            transfers: transfers.clone(),
            twilio_number: "+15550100002".into(),
        };
        let update = CallUpdate::Transfer {
            target: TransferTarget {
                name: Some("desk".into()),
                number: crate::phone::E164::parse("+14155550100").expect("E.164"),
            },
            summary: "Ann wants to move her booking".into(),
        };

        let twiml = deps.update_twiml("CA0123456789abcdef0123456789abcdef", &update);

        let id = twiml
            .split("https://cb.test/transfer/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("a transfer URL");
        assert!(
            twiml.contains(r#"<Dial callerId="+15550100002""#),
            "{twiml}"
        );
        assert!(twiml.contains(&format!(r#"url="https://cb.test/transfer/{id}/whisper""#)));
        assert!(twiml.contains(">+14155550100</Number>"));
        assert!(
            !twiml.contains("booking"),
            "the summary stays on the server"
        );
        let leg = transfers.get(id).expect("the leg is stored");
        assert_eq!(leg.summary, "Ann wants to move her booking");
        assert_eq!(leg.target, "desk (+14155550100)");
    }
}
