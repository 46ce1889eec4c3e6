//! Self-fencing: a node may write for its cameras only while its etcd lease certainly lives.
//! The lease expires `ttl` after etcd last heard a keep-alive; etcd heard it after it was sent,
//! so `sent + ttl` is a time before which the lease cannot have expired. The fence closes a
//! margin before that, on the monotonic clock (a frozen or stalled process finds it closed when
//! it wakes, whatever the wall clock did).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Until when this node may write for its cameras.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base`; 0 = closed.
    until_ms: AtomicU64,
    margin: Duration,
}

impl Fence {
    /// A closed fence for a lease of `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            // A fifth of the TTL, at least 500 ms: room for a write already past the check.
            margin: (ttl / 5).max(Duration::from_millis(500)),
        }
    }

    /// A keep-alive sent at `sent` was answered with `ttl` left: open until `sent + ttl - margin`.
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        let until = (sent + ttl).saturating_duration_since(self.base);
        let until = until.saturating_sub(self.margin).as_millis() as u64;
        // 0 means closed: an answer too old to open anything leaves it as it is.
        if until > 0 {
            self.until_ms.fetch_max(until, Ordering::SeqCst);
        }
    }

    /// Closes it (the lease is gone or was given up).
    pub fn close(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
    }

    /// How long it stays open from now; None when closed.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::SeqCst);
        let now = self.base.elapsed().as_millis() as u64;
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Whether this node may write now.
    pub fn holds(&self) -> bool {
        self.remaining().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_on_renewal_and_closes_a_margin_before_the_lease_could_expire() {
        let f = Fence::new(Duration::from_secs(5));
        assert!(!f.holds(), "closed until the first renewal");
        let sent = Instant::now();
        f.renewed(sent, Duration::from_secs(5));
        let left = f.remaining().unwrap();
        assert!(
            left <= Duration::from_secs(4) && left > Duration::from_millis(3900),
            "{left:?}"
        );
        // A late answer to an older keep-alive never shortens it.
        f.renewed(sent - Duration::from_secs(3), Duration::from_secs(5));
        assert!(f.remaining().unwrap() > Duration::from_millis(3800));
        // An answer for a keep-alive sent long ago opens nothing.
        let g = Fence::new(Duration::from_secs(2));
        g.renewed(
            Instant::now() - Duration::from_secs(3),
            Duration::from_secs(2),
        );
        assert!(!g.holds());
        f.close();
        assert!(!f.holds());
    }
}
