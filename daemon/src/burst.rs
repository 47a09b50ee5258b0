//! Knowing when a burst is being received, so background work (pipeline runs) can step aside:
//! the one writer is what every receive waits for, and each run adds two writes to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Counts requests being received; at `threshold` or more at once, it is a burst.
pub struct Burst {
    in_flight: AtomicUsize,
    threshold: usize,
    begun: Notify,
    over: Notify,
}

/// One request being received; counted until dropped.
pub struct Receiving(Arc<Burst>);

impl Burst {
    /// A gate that calls `threshold` concurrent receives a burst (0: never).
    pub fn new(threshold: usize) -> Arc<Burst> {
        Arc::new(Burst {
            in_flight: AtomicUsize::new(0),
            threshold,
            begun: Notify::new(),
            over: Notify::new(),
        })
    }

    /// Counts a request until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Receiving {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.threshold > 0 && before + 1 == self.threshold {
            self.begun.notify_waiters();
        }
        Receiving(self.clone())
    }

    /// Requests being received now.
    pub fn receiving(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn bursting(&self) -> bool {
        self.threshold > 0 && self.in_flight.load(Ordering::Relaxed) >= self.threshold
    }

    /// Returns once no burst is being received.
    pub async fn quiet(&self) {
        Self::until(&self.over, || !self.bursting()).await;
    }

    /// Returns once a burst is being received.
    pub async fn begun(&self) {
        Self::until(&self.begun, || self.bursting()).await;
    }

    async fn until(change: &Notify, done: impl Fn() -> bool) {
        loop {
            // Registered before checking, so a change between the check and the wait is not
            // missed.
            let changed = change.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let before = self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if before == self.0.threshold {
            self.0.over.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        f.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn waiters_pass_below_the_threshold_and_wait_at_it() {
        let burst = Burst::new(2);
        assert!(ready(pin!(burst.quiet())), "nothing received: quiet");
        let a = burst.enter();
        assert!(ready(pin!(burst.quiet())), "one request is no burst");
        let mut waiting = pin!(burst.quiet());
        let mut begun = pin!(burst.begun());
        assert!(!ready(begun.as_mut()));
        let b = burst.enter();
        assert!(ready(begun.as_mut()), "woken when it reaches the threshold");
        assert!(!ready(waiting.as_mut()), "two at once are");
        let c = burst.enter();
        drop(c);
        assert!(!ready(waiting.as_mut()), "still two");
        drop(b);
        assert!(ready(waiting.as_mut()), "woken when it drops below");
        drop(a);
    }

    #[test]
    fn threshold_zero_never_waits() {
        let burst = Burst::new(0);
        let _held: Vec<Receiving> = (0..100).map(|_| burst.enter()).collect();
        assert!(ready(pin!(burst.quiet())));
        assert!(!ready(pin!(burst.begun())));
    }
}
