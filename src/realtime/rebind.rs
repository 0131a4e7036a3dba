//! [`RebindableTcp`]: a TCP stream that can move to another tokio runtime's I/O driver while it is open.
//!
//! The Realtime socket is opened ahead of time on the server's main runtime (pre-connect) and then read and written by
//! the call's bridge task on an actix worker. A tokio socket stays registered with the I/O driver of the runtime that
//! created it, so without a move every event on it would be seen by the main thread's driver and then handed to the
//! worker thread: a cross-thread wake-up per message. [`RebindableTcp::rebind_to_current_runtime`] deregisters the
//! socket and registers the same file descriptor with the current runtime, under the TLS and WebSocket layers, which
//! keep their state (buffers, TLS session) untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that can be moved to the current runtime's I/O driver. Reads and writes go to the stream; after a
/// failed move (the stream is then gone) they fail with [`io::ErrorKind::NotConnected`].
#[derive(Debug)]
pub struct RebindableTcp {
    /// The stream; `None` only after a failed move.
    stream: Option<TcpStream>,
}

impl RebindableTcp {
    /// Wraps an open stream.
    pub fn new(stream: TcpStream) -> Self {
        RebindableTcp {
            stream: Some(stream),
        }
    }

    /// Moves the stream to the I/O driver of the runtime this is called on. Must be called from within a tokio
    /// runtime, with no read or write in progress (a task waiting on the old registration would not be woken).
    ///
    /// # Errors
    /// The error of deregistering or registering the socket; the stream is then closed and every later read or write
    /// fails.
    pub fn rebind_to_current_runtime(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.take() else {
            return Err(not_connected());
        };
        let std_stream = stream.into_std()?;
        self.stream = Some(TcpStream::from_std(std_stream)?);
        Ok(())
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream.as_mut().map(Pin::new).ok_or_else(not_connected)
    }
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost moving it to another runtime",
    )
}

impl AsyncRead for RebindableTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for RebindableTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A socket opened on one runtime keeps working on another after the move, data already waiting included.
    #[test]
    fn a_socket_moved_to_another_runtime_reads_what_was_waiting_and_keeps_working() {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (mut ours, peer) = first.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let mut ours = RebindableTcp::new(client.expect("connect"));
            let (mut peer, _) = accepted.expect("accept");
            peer.write_all(b"before").await.expect("write");
            let mut buf = [0u8; 6];
            ours.read_exact(&mut buf)
                .await
                .expect("read on the first runtime");
            assert_eq!(&buf, b"before");
            // Data that arrives before the move must be seen after it.
            peer.write_all(b"waiting").await.expect("write");
            (ours, peer.into_std().expect("std"))
        });
        drop(first);

        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        second.block_on(async {
            ours.rebind_to_current_runtime().expect("moves");
            let mut buf = [0u8; 7];
            ours.read_exact(&mut buf).await.expect("reads what waited");
            assert_eq!(&buf, b"waiting");
            ours.write_all(b"after").await.expect("writes");
            peer.set_nonblocking(true).expect("nonblocking");
            let mut peer = TcpStream::from_std(peer).expect("peer");
            let mut buf = [0u8; 5];
            peer.read_exact(&mut buf).await.expect("peer reads");
            assert_eq!(&buf, b"after");
        });
    }
}
