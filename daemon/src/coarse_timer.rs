//! A coarse timer for hyper's HTTP/1 header-read timeout.
//!
//! hyper arms its header timeout afresh each time it waits for a request head on a keep-alive
//! connection, so under load that is once per request. With tokio's timer every arming locks the
//! timer wheel and, since the new deadline is always sooner than what the runtime's driver sleeps
//! towards, writes the driver's eventfd: a syscall and often a spurious wake-up of a parked worker
//! per request (0.37 extra `write`s per request under the JSON load, the bulk of all hookd's
//! `write`s). Here arming is a push onto a list that one task sweeps every [`TICK`]; a timeout
//! fires up to a tick late, which a client cannot tell from a slightly longer timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often armed timeouts are checked, and so how late one may fire.
pub const TICK: Duration = Duration::from_millis(100);

/// A `hyper::rt::Timer` whose sleeps are checked every [`TICK`] by one task.
#[derive(Clone)]
pub struct CoarseTimer {
    shared: Arc<Shared>,
}

struct Shared {
    /// Sleeps polled before their deadline; dropped ones stay until the next sweep.
    armed: Mutex<Vec<Weak<Entry>>>,
    /// Wakes the sweeper when the list stops being empty, and when the timer is gone.
    work: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.work.notify_one();
    }
}

struct Entry {
    deadline: Instant,
    waker: AtomicWaker,
}

struct CoarseSleep {
    entry: Arc<Entry>,
    shared: Arc<Shared>,
    armed: bool,
}

impl CoarseTimer {
    /// A timer whose sweeper runs on the current tokio runtime until the timer and all its
    /// sleeps are dropped.
    pub fn start() -> Self {
        Self::start_with_handle().0
    }

    fn start_with_handle() -> (Self, JoinHandle<()>) {
        let work = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            armed: Mutex::new(Vec::new()),
            work: work.clone(),
        });
        let sweeper = tokio::spawn(sweeper(Arc::downgrade(&shared), work));
        (Self { shared }, sweeper)
    }
}

/// Sleeps while nothing is armed (no wake-ups on an idle daemon), ticks while something is.
async fn sweeper(shared: Weak<Shared>, work: Arc<Notify>) {
    loop {
        work.notified().await;
        loop {
            if shared.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(TICK).await;
            let Some(s) = shared.upgrade() else { return };
            if s.sweep(Instant::now()) == 0 {
                break;
            }
        }
    }
}

impl Shared {
    fn arm(&self, entry: Weak<Entry>) {
        let was_empty = {
            let mut armed = crate::locks::lock(&self.armed);
            armed.push(entry);
            armed.len() == 1
        };
        if was_empty {
            self.work.notify_one();
        }
    }

    /// Wakes the sleeps due by `now`, forgets them and the dropped ones; returns how many stay.
    fn sweep(&self, now: Instant) -> usize {
        let mut due = Vec::new();
        let left = {
            let mut armed = crate::locks::lock(&self.armed);
            armed.retain(|w| match w.upgrade() {
                None => false,
                Some(e) if e.deadline <= now => {
                    due.push(e);
                    false
                }
                Some(_) => true,
            });
            armed.len()
        };
        // Woken outside the lock: a woken task may arm again at once.
        for e in due {
            e.waker.wake();
        }
        left
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.entry.deadline {
            return Poll::Ready(());
        }
        // Registered before arming, so a sweep that finds the entry due always has a waker.
        this.entry.waker.register(cx.waker());
        if !this.armed {
            this.armed = true;
            this.shared.arm(Arc::downgrade(&this.entry));
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            entry: Arc::new(Entry {
                deadline,
                waker: AtomicWaker::new(),
            }),
            shared: self.shared.clone(),
            armed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn armed(t: &CoarseTimer) -> usize {
        t.shared.armed.lock().map(|a| a.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_sleep_ends_at_or_after_its_deadline() {
        let t = CoarseTimer::start();
        let deadline = Instant::now() + Duration::from_millis(30);
        let sleep = t.sleep_until(deadline);
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the sweeper woke the sleep");
        assert!(Instant::now() >= deadline);
        // A sleep already due is ready without being armed.
        let mut past = t.sleep_until(Instant::now());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(past.as_mut().poll(&mut cx).is_ready());
        assert_eq!(armed(&t), 0);
    }

    #[tokio::test]
    async fn dropped_sleeps_are_forgotten_and_due_ones_woken_by_a_sweep() {
        let (t, _sweeper) = CoarseTimer::start_with_handle();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let far = Instant::now() + Duration::from_secs(3600);
        let mut kept = t.sleep_until(far);
        assert!(kept.as_mut().poll(&mut cx).is_pending());
        for _ in 0..100 {
            let mut s = t.sleep_until(far);
            assert!(s.as_mut().poll(&mut cx).is_pending());
        }
        // Polling an armed sleep again does not arm it twice.
        assert!(kept.as_mut().poll(&mut cx).is_pending());
        assert_eq!(armed(&t), 101);
        assert_eq!(
            t.shared.sweep(Instant::now()),
            1,
            "the dropped 100 are gone"
        );
        assert_eq!(t.shared.sweep(far), 0, "the kept one was due and is woken");
    }

    #[tokio::test]
    async fn the_sweeper_ends_with_the_timer_and_its_sleeps() {
        let (t, sweeper) = CoarseTimer::start_with_handle();
        let mut s = t.sleep(Duration::from_secs(3600));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.as_mut().poll(&mut cx).is_pending());
        drop(t);
        assert!(!sweeper.is_finished());
        drop(s);
        tokio::time::timeout(Duration::from_secs(10), sweeper)
            .await
            .expect("the sweeper ended")
            .expect("the sweeper did not panic");
    }
}
