//! How often a token naming an unknown kid may make the worker fetch.
//!
//! A token's kid is chosen by whoever sends the token, so unknown kids
//! cost the sender nothing: without a limit, a stream of made-up kids
//! would become a stream of requests to the provider (which may then rate
//! limit or block the database's address) and keep the worker busy.
//!
//! The rule, per source: an unknown kid starts a fetch only when no fetch
//! of that source, for any reason (schedule, unknown kid, an
//! administrator's request), has started within `interval`. A scheduled
//! fetch that just ran already saw the provider's newest keys. The
//! interval is never below `MIN_INTERVAL`, whatever is configured. State is
//! one instant per source, never per kid, so made-up kids cannot grow it.
//!
//! Time is passed in (`now`), so the limiter is pure and tests drive it
//! with any instants they like.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shortest interval the limiter accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The interval used unless an administrator sets another. After a
/// rotation the first token with the new kid refetches at once; this
/// only spaces out the ones after it.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Per-source record of when fetches last started.
#[derive(Debug, Clone)]
pub struct RefetchLimiter {
    interval: Duration,
    last: HashMap<String, Instant>,
}

impl Default for RefetchLimiter {
    fn default() -> RefetchLimiter {
        RefetchLimiter::new(DEFAULT_INTERVAL)
    }
}

impl RefetchLimiter {
    /// A limiter allowing one unknown-kid fetch per source per `interval`
    /// (raised to `MIN_INTERVAL` if shorter).
    pub fn new(interval: Duration) -> RefetchLimiter {
        RefetchLimiter {
            interval: interval.max(MIN_INTERVAL),
            last: HashMap::new(),
        }
    }

    /// The interval in force.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records that a fetch of `source` started at `now`, whatever its
    /// reason. An instant earlier than the one recorded is ignored.
    pub fn fetched(&mut self, source: &str, now: Instant) {
        let last = self.last.entry(source.to_string()).or_insert(now);
        *last = (*last).max(now);
    }

    /// Whether a token with an unknown kid may start a fetch of `source` at
    /// `now`. When it may, the fetch is recorded as started.
    pub fn try_unknown_kid(&mut self, source: &str, now: Instant) -> bool {
        if !self.wait(source, now).is_zero() {
            return false;
        }
        self.fetched(source, now);
        true
    }

    /// How long from `now` until an unknown kid may start a fetch of
    /// `source`; zero when it may now.
    pub fn wait(&self, source: &str, now: Instant) -> Duration {
        match self.last.get(source) {
            None => Duration::ZERO,
            // A `now` before the last start (instants handed in out of
            // order) waits the whole interval rather than none of it.
            Some(last) => match now.checked_duration_since(*last) {
                Some(since) => self.interval.saturating_sub(since),
                None => self.interval,
            },
        }
    }

    /// Forgets a source (removed from the configuration).
    pub fn forget(&mut self, source: &str) {
        self.last.remove(source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_unknown_kid_fetches_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(secs(60));
        assert!(l.try_unknown_kid("a", t0));
        for s in [0, 1, 30, 59] {
            assert!(!l.try_unknown_kid("a", t0 + secs(s)), "at {s} s");
        }
        assert_eq!(l.wait("a", t0 + secs(59)), secs(1));
        assert!(l.try_unknown_kid("a", t0 + secs(60)));
        assert!(!l.try_unknown_kid("a", t0 + secs(61)));
        assert!(l.try_unknown_kid("a", t0 + secs(125)));
    }

    /// Refused attempts do not push the next allowed one back.
    #[test]
    fn refusals_do_not_extend_the_wait() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(secs(60));
        assert!(l.try_unknown_kid("a", t0));
        for s in 1..60 {
            assert!(!l.try_unknown_kid("a", t0 + secs(s)));
        }
        assert!(l.try_unknown_kid("a", t0 + secs(60)));
    }

    #[test]
    fn sources_are_limited_separately() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(secs(60));
        assert!(l.try_unknown_kid("a", t0));
        assert!(l.try_unknown_kid("b", t0 + secs(1)));
        assert!(!l.try_unknown_kid("a", t0 + secs(2)));
        l.forget("a");
        assert!(l.try_unknown_kid("a", t0 + secs(3)));
    }

    #[test]
    fn a_scheduled_fetch_counts() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(secs(60));
        l.fetched("a", t0 + secs(100));
        assert!(!l.try_unknown_kid("a", t0 + secs(130)));
        assert!(l.try_unknown_kid("a", t0 + secs(160)));
    }

    #[test]
    fn the_interval_has_a_floor() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(Duration::ZERO);
        assert_eq!(l.interval(), MIN_INTERVAL);
        assert!(l.try_unknown_kid("a", t0));
        assert!(!l.try_unknown_kid("a", t0));
        assert!(!l.try_unknown_kid("a", t0 + secs(9)));
        assert!(l.try_unknown_kid("a", t0 + secs(10)));
        assert_eq!(RefetchLimiter::default().interval(), DEFAULT_INTERVAL);
    }

    #[test]
    fn instants_out_of_order_never_open_the_gate_early() {
        let t0 = Instant::now();
        let mut l = RefetchLimiter::new(secs(60));
        assert!(l.try_unknown_kid("a", t0 + secs(100)));
        assert!(!l.try_unknown_kid("a", t0 + secs(50)));
        assert_eq!(l.wait("a", t0 + secs(50)), secs(60));
        l.fetched("a", t0);
        assert!(!l.try_unknown_kid("a", t0 + secs(159)));
        assert!(l.try_unknown_kid("a", t0 + secs(160)));
    }
}
