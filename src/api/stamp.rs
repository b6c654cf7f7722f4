//! When a request really left: the connection's I/O reports its first write.
//!
//! The rate limit holds at the server's arrivals (SPEC §1), so the gate must
//! count a request from the moment its bytes reach the kernel, not from the
//! moment it was admitted: under CPU load a task can be admitted and then wait
//! tens of milliseconds before hyper's connection task writes it. [`Stamped`]
//! wraps a connection's I/O and, when armed, reports the time the first write
//! after arming returned. Over plain TCP that is when the bytes are with the
//! kernel; over TLS it is when rustls took them, which for a small request on
//! an idle connection is the same moment (its records go out in that call).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::sync::oneshot;

/// Where the next write on a connection is reported, if anyone asked.
#[derive(Default)]
pub struct WriteSlot(Mutex<Option<oneshot::Sender<Instant>>>);

impl WriteSlot {
    /// Reports the next write on this connection through the returned receiver.
    /// If the slot is disarmed first, the receiver resolves to an error.
    pub fn arm(&self) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        *self.lock() = Some(tx);
        rx
    }

    /// Stops waiting for a write (the exchange ended without one being seen).
    pub fn disarm(&self) {
        self.lock().take();
    }

    fn wrote(&self, at: Instant) {
        if let Some(tx) = self.lock().take() {
            let _ = tx.send(at);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<Instant>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's I/O that reports writes to its [`WriteSlot`].
pub struct Stamped<T> {
    inner: T,
    slot: Arc<WriteSlot>,
}

impl<T> Stamped<T> {
    pub fn new(inner: T, slot: Arc<WriteSlot>) -> Self {
        Stamped { inner, slot }
    }

    fn after_write(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if *n > 0 {
                self.slot.wrote(Instant::now());
            }
        }
    }
}

impl<T: Read + Unpin> Read for Stamped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Stamped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use std::future::poll_fn;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    async fn write(io: &mut Stamped<TokioIo<tokio::io::DuplexStream>>, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            done += poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &bytes[done..]))
                .await
                .unwrap();
        }
    }

    async fn within(rx: oneshot::Receiver<Instant>) -> Instant {
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the write was not reported within 5 s")
            .expect("the slot was disarmed without a write")
    }

    #[tokio::test]
    async fn reports_the_first_write_after_arming_once_it_has_gone_through() {
        // A 4-byte pipe: the write cannot go through until the reader drains it.
        let (client, mut server) = tokio::io::duplex(4);
        let slot = Arc::new(WriteSlot::default());
        let mut io = Stamped::new(TokioIo::new(client), slot.clone());

        // Not armed: a write reports nothing.
        write(&mut io, b"abcd").await;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();

        let armed = slot.arm();
        let start = Instant::now();
        write(&mut io, b"1234").await; // fills the pipe: the first write returns at once
        let first = within(armed).await;
        assert!(first >= start);

        // A write blocked on a full pipe is stamped when it returns, not when it was asked.
        let blocked = slot.arm();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 8];
            server.read_exact(&mut buf).await.unwrap();
            server
        });
        let asked = Instant::now();
        write(&mut io, b"5678").await;
        let at = within(blocked).await;
        assert!(
            at >= asked + Duration::from_millis(90),
            "stamped {:?} after being asked, before the pipe had room",
            at - asked
        );
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn disarming_resolves_the_receiver() {
        let slot = WriteSlot::default();
        let rx = slot.arm();
        slot.disarm();
        assert!(rx.await.is_err());
    }
}
