//! Time for the shell: the only place wall-clock time is read. The core receives
//! `now` as an argument; the engine also *waits* through its clock, so a test can
//! drive an engine on [`ManualClock`] — timers, retry delays and sleeping no-op
//! actions move when the test advances it, never on the wall clock.

use redrive_core::time::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::watch;

/// A future that resolves once a clock reaches a time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Resolves once [`Clock::now`] is at or past `at`.
    fn sleep_until(&self, at: Timestamp) -> Sleep;
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Timestamp::from_unix_ms(ms)
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        let ms = at.ms_since(self.now()).max(0) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

/// A clock that moves only when told ([`ManualClock::advance`]), for tests.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
    moved: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        let (moved, _) = watch::channel(start.unix_ms());
        ManualClock { now_ms: AtomicI64::new(start.unix_ms()), moved }
    }

    /// Moves the clock forward by `ms`; everything sleeping until then wakes.
    pub fn advance(&self, ms: u64) {
        let now = self.now_ms.fetch_add(ms as i64, Ordering::SeqCst) + ms as i64;
        self.moved.send_replace(now);
    }

    /// How many waits on this clock are pending: a test knows a sleeper is in
    /// place before it moves the clock.
    pub fn sleepers(&self) -> usize {
        self.moved.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.now_ms.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            // A dropped sender (never: the clock owns it) would end the wait too.
            let _ = moved.wait_for(|now| *now >= at.unix_ms()).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_advanced() {
        let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_000)));
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(Timestamp::from_unix_ms(1_500)).await }
        });
        clock.advance(499);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "not yet due");
        clock.advance(1);
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper).await.expect("woken").unwrap();
        assert_eq!(clock.now(), Timestamp::from_unix_ms(1_500));
    }
}
