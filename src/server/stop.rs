//! Telling every session to stop, with nothing shared on a session's wait path.
//!
//! A session polls its stop signal each time it waits for input. A channel or an event would
//! lock one list shared by all sessions on every such poll; here a poll reads one flag that is
//! written once, and registers the waker in the session's own slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

#[derive(Default)]
struct StopState {
    stopped: AtomicBool,
    next_id: AtomicU64,
    /// The wakers of the sessions alive now; locked only when one starts or ends, and at stop.
    listeners: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl StopState {
    fn listeners(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AtomicWaker>>> {
        // The map stays consistent whatever a panicking holder did: each step is one insert or remove.
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side: [`Stop::stop`] completes every [`Stopped`] made by [`Stop::listen`].
#[derive(Default)]
pub(crate) struct Stop {
    shared: Arc<StopState>,
}

impl Stop {
    /// A future that completes once [`Stop::stop`] is called, even if that was before.
    pub(crate) fn listen(&self) -> Stopped {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.shared.listeners().insert(id, waker.clone());
        Stopped { shared: self.shared.clone(), id, waker }
    }

    /// Completes every listener, now and later.
    pub(crate) fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        for waker in self.shared.listeners().values() {
            waker.wake();
        }
    }
}

/// Completes when the [`Stop`] it came from is stopped.
pub(crate) struct Stopped {
    shared: Arc<StopState>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Stopped {
    /// A flag that tells whether stop was asked, for code that checks rather than waits.
    pub(crate) fn flag(&self) -> StopFlag {
        StopFlag(self.shared.clone())
    }

    /// What `fut` gives, or `None` if the stop comes first: for the steps before a session
    /// (a PROXY header, a TLS handshake), which wait on the peer.
    #[cfg(any(feature = "tls", feature = "proxy"))]
    pub(crate) async fn until<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        use futures_lite::FutureExt;
        let stopped = async {
            self.await;
            None
        };
        async { Some(fut.await) }.or(stopped).await
    }
}

/// Whether stop was asked, read without waiting.
#[derive(Clone)]
pub(crate) struct StopFlag(Arc<StopState>);

impl StopFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for StopFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StopFlag").field(&self.is_set()).finish()
    }
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A stop between the first check and the registration woke no one: look again.
        if self.shared.stopped.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.shared.listeners().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future;

    use super::*;

    #[test]
    fn stop_completes_listeners_made_before_and_after() {
        let stop = Stop::default();
        let mut before = stop.listen();
        assert!(future::block_on(future::poll_once(&mut before)).is_none());
        stop.stop();
        future::block_on(before);
        future::block_on(stop.listen());
    }

    #[test]
    fn a_waiting_listener_is_woken() {
        let stop = Arc::new(Stop::default());
        let stopper = stop.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            stopper.stop();
        });
        future::block_on(stop.listen());
        thread.join().unwrap();
    }

    #[test]
    fn ended_listeners_are_forgotten() {
        let stop = Stop::default();
        drop(stop.listen());
        assert!(stop.shared.listeners().is_empty());
    }
}
