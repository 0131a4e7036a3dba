//! The server side of the Twilio Media Streams WebSocket: a frame reader that refuses an oversized frame from its
//! header, and a writer that never blocks the bridge.
//!
//! actix-ws's own `MessageStream` buffers a frame whole before it compares its length with the limit (a header that
//! declares 2^40 bytes is read into memory), and its `Session` awaits a bounded channel (a peer that stops reading
//! blocks whoever sends). Both are replaced here on top of actix-http's WebSocket codec (RFC 6455 framing), the one
//! actix-ws itself is built on; the message types stay actix-ws's:
//!
//! - [`TwilioReader`] reads the frame header first. A frame over `max_frame_bytes` is discarded as its bytes arrive,
//!   never buffered, and reported as [`ReadError::Oversized`] (the call goes on); one that declares more than
//!   [`DISCARD_LIMIT_BYTES`] is refused at once ([`ReadError::TooLarge`]; the bridge closes with 1009). The reader
//!   pulls from the connection only when it holds no complete frame, so it buffers at most one frame plus one read,
//!   in a buffer of its own sized for what each read brought.
//! - [`TwilioWriter`] encodes each frame straight into an outbox that the connection drains as the response body:
//!   every frame queued while the connection was busy leaves in one write. Queuing is synchronous and cannot block.
//!   When the outbox has data that the connection has not taken for a while, [`TwilioWriter::stalled_since`] says
//!   since when, and the bridge ends the call (`error:twilio_stalled`); past [`MAX_OUTBOX_BYTES`] a send fails at
//!   once. [`TwilioWriter::abort`] drops the connection without a close frame.
//!
//! The writer and the response body share one `Rc<RefCell<..>>`: the handler, the bridge task it spawns and the HTTP/1
//! dispatcher that polls the body all run on the same actix worker thread, and no borrow is held across an `.await`.
//! Follows <https://www.rfc-editor.org/rfc/rfc6455#section-5.2> and
//! <https://www.twilio.com/docs/voice/media-streams/websocket-messages>.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use actix_codec::Decoder as _;
use actix_http::ws::{self, Codec, Frame, OpCode, Parser};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::dev::Payload;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Buf as _, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

/// The message vocabulary is actix-ws's (re-exported from actix-http), so the bridge reads the same types it did.
pub use actix_ws::{CloseCode, CloseReason, Message, ProtocolError};

/// A frame declaring more than this is refused outright (close 1009) instead of being discarded as it arrives:
/// nobody sends a media-stream frame that large by mistake, and discarding it would hold the connection for as long
/// as the peer cares to send.
pub const DISCARD_LIMIT_BYTES: u64 = 1024 * 1024;
/// Most encoded bytes the outbox holds before a send fails at once (about 2 minutes of base64 μ-law audio with its
/// JSON and marks): a peer that lets this much pile up is not reading.
pub const MAX_OUTBOX_BYTES: usize = 2 * 1024 * 1024;

/// Why the stream yielded an error instead of a message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A frame over the configured maximum was discarded unread; the stream goes on.
    #[error("a frame of {declared_bytes} bytes (over the maximum frame size) was skipped")]
    Oversized {
        /// The payload length its header declared.
        declared_bytes: u64,
    },
    /// A frame declared more than [`DISCARD_LIMIT_BYTES`]: the stream cannot go on.
    #[error("a frame declared {declared_bytes} bytes, over the {DISCARD_LIMIT_BYTES}-byte limit")]
    TooLarge {
        /// The payload length its header declared.
        declared_bytes: u64,
    },
    /// The peer broke the WebSocket protocol (unmasked frame, bad opcode, a text frame that is not UTF-8, ...).
    #[error("WebSocket protocol error: {0}")]
    Protocol(ProtocolError),
    /// The connection failed while the body was being read.
    #[error("the connection failed: {0}")]
    Connection(String),
}

impl ReadError {
    /// True when the stream can go on after this error (the frame was skipped).
    pub fn is_skippable(&self) -> bool {
        matches!(self, ReadError::Oversized { .. })
    }
}

/// The length fields of a frame header: `(header_bytes, payload_bytes)`, or `None` while fewer bytes than the header
/// are buffered. `header_bytes` counts the masking key when the mask bit is set (RFC 6455 §5.2: 2 bytes, then a 16-
/// or 64-bit extended length for 126 / 127, then 4 bytes of key).
pub fn frame_lengths(buf: &[u8]) -> Option<(usize, u64)> {
    let second = *buf.get(1)?;
    let mask_bytes = if second & 0x80 != 0 { 4 } else { 0 };
    let (length_bytes, payload_bytes) = match second & 0x7F {
        126 => (
            2,
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (8, u64::from_be_bytes(bytes))
        }
        short => (0, u64::from(short)),
    };
    let header_bytes = 2 + length_bytes + mask_bytes;
    (buf.len() >= header_bytes).then_some((header_bytes, payload_bytes))
}

/// Frames from Twilio (see the module docs).
pub struct TwilioReader {
    /// The request body: the raw bytes of the upgraded connection.
    payload: Payload,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// actix-http's RFC 6455 decoder (server side: frames must be masked), limited to the maximum frame size.
    codec: Codec,
    /// The configured maximum frame payload, bytes.
    max_frame_bytes: u64,
    /// Payload bytes of an oversized frame still to discard.
    discarding: u64,
    /// The declared size of the frame being discarded.
    discarding_declared: u64,
    /// The connection has ended (or failed): nothing more will be read.
    ended: bool,
}

impl TwilioReader {
    /// A reader over `payload` that accepts frames of up to `max_frame_bytes`.
    pub fn new(payload: Payload, max_frame_bytes: usize) -> Self {
        TwilioReader {
            payload,
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max_frame_bytes),
            max_frame_bytes: max_frame_bytes as u64,
            discarding: 0,
            discarding_declared: 0,
            ended: false,
        }
    }

    /// The next message, a skippable or fatal [`ReadError`], or `None` once the connection has ended. Cancel-safe:
    /// everything read is kept in the reader.
    pub async fn recv(&mut self) -> Option<Result<Message, ReadError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// After a fatal error: nothing more is decoded or read.
    fn give_up(&mut self) {
        self.ended = true;
        self.discarding = 0;
        self.buf = BytesMut::new();
    }

    /// Decodes what is buffered: `Some` when a message or an error is ready, `None` when more bytes are needed.
    fn decode_buffered(&mut self) -> Option<Result<Message, ReadError>> {
        loop {
            if self.discarding > 0 {
                let n = self.discarding.min(self.buf.len() as u64);
                // `n` is at most `buf.len()`, a usize.
                self.buf.advance(n as usize);
                self.discarding -= n;
                if self.discarding > 0 {
                    return None;
                }
                return Some(Err(ReadError::Oversized {
                    declared_bytes: self.discarding_declared,
                }));
            }
            let (header_bytes, payload_bytes) = frame_lengths(&self.buf)?;
            if payload_bytes > self.max_frame_bytes {
                if payload_bytes > DISCARD_LIMIT_BYTES {
                    self.give_up();
                    return Some(Err(ReadError::TooLarge {
                        declared_bytes: payload_bytes,
                    }));
                }
                self.buf.advance(header_bytes);
                self.discarding = payload_bytes;
                self.discarding_declared = payload_bytes;
                continue;
            }
            return match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    let message = message(frame);
                    if message.is_err() {
                        self.give_up();
                    }
                    Some(message)
                }
                Ok(None) => None,
                Err(e) => {
                    self.give_up();
                    Some(Err(ReadError::Protocol(e)))
                }
            };
        }
    }
}

/// The message a decoded frame carries.
///
/// # Errors
/// A text frame that is not UTF-8 is a protocol error (RFC 6455 §8.1; close code 1007).
fn message(frame: Frame) -> Result<Message, ReadError> {
    Ok(match frame {
        Frame::Text(bytes) => {
            return ByteString::try_from(bytes).map(Message::Text).map_err(|_| {
                ReadError::Protocol(ProtocolError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a text frame is not UTF-8",
                )))
            });
        }
        Frame::Binary(bytes) => Message::Binary(bytes),
        Frame::Ping(bytes) => Message::Ping(bytes),
        Frame::Pong(bytes) => Message::Pong(bytes),
        Frame::Close(reason) => Message::Close(reason),
        Frame::Continuation(item) => Message::Continuation(item),
    })
}

impl Stream for TwilioReader {
    type Item = Result<Message, ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.buf.is_empty() || this.discarding > 0 {
                match this.decode_buffered() {
                    Some(item) => return Poll::Ready(Some(item)),
                    None if this.ended => return Poll::Ready(None),
                    None => {}
                }
            } else if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                // Copied: the chunk shares the connection's read buffer, and keeping it would keep that whole
                // buffer alive with the call. Into a buffer of the chunk's size when nothing is left over from the
                // last read (as a rule: one frame per read), so that a burst (frames that piled up while the call
                // was set up) does not leave the reader holding a buffer of its size for the rest of the call.
                Poll::Ready(Some(Ok(bytes))) if this.buf.is_empty() => {
                    this.buf = BytesMut::from(&bytes[..]);
                }
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ReadError::Connection(e.to_string()))));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The connection has ended (or the writer was closed): nobody will read the frame.
    #[error("the media stream connection has ended")]
    Gone,
    /// The outbox holds [`MAX_OUTBOX_BYTES`] the peer has not taken.
    #[error("the media stream peer is not reading (outbox full)")]
    Full,
}

/// What the writer and the response body share.
#[derive(Debug)]
struct Outbox {
    /// Encoded frames the connection has not taken yet.
    buf: BytesMut,
    /// The response body's waker, to call when frames are queued.
    waker: Option<Waker>,
    /// A close frame is queued (or the writer gave up): the body ends once `buf` is taken.
    closed: bool,
    /// End the connection at once, without flushing `buf`.
    aborted: bool,
    /// The body was dropped: the connection has ended.
    connection_gone: bool,
    /// Since when `buf` has held data that the connection has not taken (reset whenever it takes some).
    waiting_since: Option<Instant>,
}

/// Queues frames for Twilio (see the module docs). Dropping it without [`Self::close`] ends the body after what is
/// queued.
#[derive(Debug)]
pub struct TwilioWriter {
    outbox: Rc<RefCell<Outbox>>,
}

impl TwilioWriter {
    /// Queues a text frame (a Media Streams message, JSON).
    ///
    /// # Errors
    /// [`WriteError::Gone`] when the connection has ended; [`WriteError::Full`] when the peer has left
    /// [`MAX_OUTBOX_BYTES`] unread.
    pub fn send_text(&mut self, text: &str) -> Result<(), WriteError> {
        self.queue(OpCode::Text, text.as_bytes())
    }

    /// Queues a pong answering a ping with this payload.
    ///
    /// # Errors
    /// As [`Self::send_text`].
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        self.queue(OpCode::Pong, payload)
    }

    fn queue(&mut self, op: OpCode, payload: &[u8]) -> Result<(), WriteError> {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.connection_gone || outbox.closed || outbox.aborted {
            return Err(WriteError::Gone);
        }
        if outbox.buf.len() + payload.len() > MAX_OUTBOX_BYTES {
            return Err(WriteError::Full);
        }
        if outbox.buf.is_empty() {
            outbox.waiting_since = Some(Instant::now());
        }
        Parser::write_message(&mut outbox.buf, payload, op, true, false);
        if let Some(waker) = outbox.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Since when queued frames have waited for the connection to take them; `None` when the outbox is empty.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.outbox.borrow().waiting_since
    }

    /// True once the connection has ended.
    pub fn is_gone(&self) -> bool {
        self.outbox.borrow().connection_gone
    }

    /// Queues a close frame after what is queued; the connection ends once it is written.
    pub fn close(self, reason: Option<CloseReason>) {
        let mut outbox = self.outbox.borrow_mut();
        if !outbox.closed && !outbox.aborted && !outbox.connection_gone {
            Parser::write_close(&mut outbox.buf, reason, false);
            outbox.closed = true;
            if outbox.waiting_since.is_none() {
                outbox.waiting_since = Some(Instant::now());
            }
            if let Some(waker) = outbox.waker.take() {
                waker.wake();
            }
        }
    }

    /// Ends the connection at once: what is queued is dropped and no close frame is sent (for a peer that does not
    /// read, a close frame would never arrive).
    pub fn abort(&self) {
        let mut outbox = self.outbox.borrow_mut();
        outbox.aborted = true;
        outbox.buf = BytesMut::new();
        if let Some(waker) = outbox.waker.take() {
            waker.wake();
        }
    }

    /// A handle that can [`Self::abort`] the connection later (after [`Self::close`], should the close not get
    /// through).
    pub fn abort_handle(&self) -> TwilioWriter {
        TwilioWriter {
            outbox: Rc::clone(&self.outbox),
        }
    }
}

/// The response body: hands the connection everything queued at once.
struct OutboxBody {
    outbox: Rc<RefCell<Outbox>>,
}

/// The error that ends an aborted connection.
#[derive(Debug, thiserror::Error)]
#[error("media stream connection aborted: the peer was not reading")]
struct Aborted;

impl Stream for OutboxBody {
    type Item = Result<Bytes, Aborted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.aborted {
            return Poll::Ready(Some(Err(Aborted)));
        }
        if !outbox.buf.is_empty() {
            outbox.waiting_since = None;
            return Poll::Ready(Some(Ok(outbox.buf.split().freeze())));
        }
        if outbox.closed {
            return Poll::Ready(None);
        }
        outbox.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for OutboxBody {
    fn drop(&mut self) {
        let mut outbox = self.outbox.borrow_mut();
        outbox.connection_gone = true;
        outbox.waiting_since = None;
        outbox.buf = BytesMut::new();
    }
}

/// Answers a WebSocket upgrade: the `101 Switching Protocols` response (whose body is the writer's outbox), the
/// writer and the reader.
///
/// # Errors
/// The handshake error (400 and friends, via its `ResponseError`) when `req` is not a valid upgrade.
pub fn accept(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    max_frame_bytes: usize,
) -> Result<(HttpResponse, TwilioWriter, TwilioReader), ws::HandshakeError> {
    let mut response = ws::handshake(req.head())?;
    let outbox = Rc::new(RefCell::new(Outbox {
        buf: BytesMut::new(),
        waker: None,
        closed: false,
        aborted: false,
        connection_gone: false,
        waiting_since: None,
    }));
    let body = BodyStream::new(OutboxBody {
        outbox: Rc::clone(&outbox),
    });
    let response = response.message_body(body.boxed());
    // `message_body` on a fresh builder cannot fail: no invalid header was set.
    let response = match response {
        Ok(response) => HttpResponse::from(response),
        Err(_) => HttpResponse::InternalServerError().finish(),
    };
    Ok((
        response,
        TwilioWriter { outbox },
        TwilioReader::new(payload.into_inner(), max_frame_bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use proptest::prelude::*;

    fn masked_frame(op: OpCode, payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        Parser::write_message(&mut buf, payload, op, true, true);
        buf
    }

    #[test]
    fn frame_lengths_reads_the_three_length_forms_and_the_mask() {
        assert_eq!(
            frame_lengths(&masked_frame(OpCode::Text, b"hi")),
            Some((6, 2))
        );
        assert_eq!(
            frame_lengths(&masked_frame(OpCode::Text, &[b'a'; 300])),
            Some((8, 300))
        );
        assert_eq!(
            frame_lengths(&masked_frame(OpCode::Binary, &[0; 70_000])),
            Some((14, 70_000))
        );
        let mut unmasked = BytesMut::new();
        Parser::write_message(&mut unmasked, b"x", OpCode::Text, true, false);
        assert_eq!(frame_lengths(&unmasked), Some((2, 1)));
    }

    #[test]
    fn frame_lengths_waits_for_the_whole_header() {
        let header = [0x81, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        for cut in 0..header.len() {
            assert_eq!(frame_lengths(&header[..cut]), None, "cut at {cut}");
        }
        assert_eq!(frame_lengths(&header), Some((14, 1 << 40)));
    }

    /// A reader over these chunks (as the connection would deliver them), then the end of the connection. The
    /// counter tells how many chunks the reader has pulled.
    fn reader_over(
        chunks: Vec<Bytes>,
        max_frame_bytes: usize,
    ) -> (TwilioReader, Rc<std::cell::Cell<usize>>) {
        let pulled = Rc::new(std::cell::Cell::new(0));
        let counter = Rc::clone(&pulled);
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            counter.set(counter.get() + 1);
            Ok::<_, actix_http::error::PayloadError>(chunk)
        });
        let payload: actix_http::BoxedPayloadStream = Box::pin(stream);
        let payload = Payload::Stream { payload };
        (TwilioReader::new(payload, max_frame_bytes), pulled)
    }

    #[actix_web::test]
    async fn a_frame_declaring_a_terabyte_is_refused_after_its_header_without_reading_on() {
        let mut header = BytesMut::new();
        header.extend_from_slice(&[0x81, 0xFF]);
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let mut chunks = vec![header.freeze()];
        chunks.extend((0..64).map(|_| Bytes::from(vec![0u8; 64 * 1024])));
        let (mut reader, pulled) = reader_over(chunks, 64 * 1024);

        let first = reader.recv().await.expect("an item");

        assert!(
            matches!(first, Err(ReadError::TooLarge { declared_bytes }) if declared_bytes == 1 << 40),
            "{first:?}"
        );
        assert_eq!(pulled.get(), 1, "only the header's chunk was read");
        assert!(
            reader.recv().await.is_none(),
            "nothing follows a refused frame"
        );
    }

    #[actix_web::test]
    async fn an_oversized_frame_is_discarded_as_it_arrives_and_the_next_frame_is_read() {
        let big = masked_frame(OpCode::Text, &vec![b'A'; 100 * 1024]).freeze();
        let mut chunks: Vec<Bytes> = big.chunks(4096).map(Bytes::copy_from_slice).collect();
        chunks.push(masked_frame(OpCode::Text, b"{\"event\":\"mark\"}").freeze());
        let (mut reader, _) = reader_over(chunks, 64 * 1024);

        let first = reader.recv().await.expect("an item");
        assert!(
            matches!(
                first,
                Err(ReadError::Oversized {
                    declared_bytes: 102_400
                })
            ),
            "{first:?}"
        );
        assert!(
            reader.buf.capacity() < 16 * 1024,
            "the oversized frame was never buffered"
        );
        let second = reader.recv().await.expect("an item").expect("a message");
        assert_eq!(second, Message::Text("{\"event\":\"mark\"}".into()));
        assert!(reader.recv().await.is_none());
    }

    #[actix_web::test]
    async fn frames_split_across_reads_and_packed_into_one_read_are_all_decoded() {
        let mut both = masked_frame(OpCode::Text, b"one");
        both.extend_from_slice(&masked_frame(OpCode::Ping, b"p"));
        let both = both.freeze();
        let chunks = vec![both.slice(..3), both.slice(3..)];
        let (mut reader, _) = reader_over(chunks, 1024);

        assert_eq!(
            reader.recv().await.expect("item").expect("text"),
            Message::Text("one".into())
        );
        assert_eq!(
            reader.recv().await.expect("item").expect("ping"),
            Message::Ping(Bytes::from_static(b"p"))
        );
        assert!(reader.recv().await.is_none());
    }

    #[actix_web::test]
    async fn after_a_burst_of_frames_the_reader_keeps_a_buffer_of_one_frame_not_of_the_burst() {
        let frame = |n: u8| masked_frame(OpCode::Text, &[b'0' + n; 300]);
        // Twenty frames that piled up while the call was setting up arrive in one read, then one frame at a time.
        let mut burst = BytesMut::new();
        for n in 0..20 {
            burst.extend_from_slice(&frame(n % 10));
        }
        let chunks = vec![burst.freeze(), frame(1).freeze(), frame(2).freeze()];
        let (mut reader, _) = reader_over(chunks, 1024);

        for _ in 0..20 {
            reader.recv().await.expect("item").expect("text");
        }
        let next = reader.recv().await.expect("item").expect("text");

        assert_eq!(
            next,
            Message::Text(String::from_utf8(vec![b'1'; 300]).unwrap().into())
        );
        assert!(
            reader.buf.capacity() < 2 * frame(1).len(),
            "the burst's buffer was given back: {} bytes kept",
            reader.buf.capacity()
        );
    }

    #[actix_web::test]
    async fn an_unmasked_frame_and_text_that_is_not_utf8_are_protocol_errors() {
        let mut unmasked = BytesMut::new();
        Parser::write_message(&mut unmasked, b"x", OpCode::Text, true, false);
        let (mut reader, _) = reader_over(vec![unmasked.freeze()], 1024);
        assert!(matches!(
            reader.recv().await,
            Some(Err(ReadError::Protocol(_)))
        ));
        assert!(reader.recv().await.is_none());

        let (mut reader, _) = reader_over(
            vec![masked_frame(OpCode::Text, &[0xFF, 0xFE]).freeze()],
            1024,
        );
        assert!(matches!(
            reader.recv().await,
            Some(Err(ReadError::Protocol(_)))
        ));
    }

    proptest! {
        #[test]
        fn frame_lengths_agrees_with_the_encoder(len in 0usize..70_000, masked in any::<bool>()) {
            let mut buf = BytesMut::new();
            Parser::write_message(&mut buf, vec![7u8; len], OpCode::Binary, true, masked);
            let (header, payload) = frame_lengths(&buf).expect("a whole frame holds its header");
            prop_assert_eq!(payload, len as u64);
            prop_assert_eq!(header + len, buf.len());
        }

        #[test]
        fn frame_lengths_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = frame_lengths(&bytes);
        }
    }
}
