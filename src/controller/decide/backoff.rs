//! Per-object exponential backoff, computed from status fields so that it survives restarts.

use std::time::Duration;

/// Delay before the next attempt after `failures` consecutive failures: `base`, doubled per
/// further failure, capped at `cap`, then spread by up to ±10% using `seed` (stable per object)
/// so that objects failing together do not retry in lockstep.
pub fn delay(base: Duration, cap: Duration, failures: u32, seed: u64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let cap = cap.max(base);
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    let raw = base.saturating_mul(factor).min(cap);
    // seed % 21 gives 0..=20, i.e. -10%..=+10% in 1% steps.
    let percent = 90 + (seed % 21) as u32;
    raw * percent / 100
}

/// How long to wait before acting again, given when the last failure happened. `None` when the
/// backoff has passed and the object may be worked on now.
pub fn remaining(
    base: Duration,
    cap: Duration,
    failures: u32,
    seed: u64,
    since_last_failure: Duration,
) -> Option<Duration> {
    let wait = delay(base, cap, failures, seed);
    wait.checked_sub(since_last_failure)
        .filter(|d| !d.is_zero())
}

/// A stable seed from an object's UID.
pub fn seed(uid: &str) -> u64 {
    // FNV-1a: stable across builds and processes, unlike std's RandomState.
    uid.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_and_caps() {
        // seed 10 → factor 100%.
        assert_eq!(delay(30 * S, 600 * S, 0, 10), Duration::ZERO);
        assert_eq!(delay(30 * S, 600 * S, 1, 10), 30 * S);
        assert_eq!(delay(30 * S, 600 * S, 2, 10), 60 * S);
        assert_eq!(delay(30 * S, 600 * S, 3, 10), 120 * S);
        assert_eq!(delay(30 * S, 600 * S, 6, 10), 600 * S);
        assert_eq!(delay(30 * S, 600 * S, u32::MAX, 10), 600 * S);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for seed in 0..100 {
            let d = delay(100 * S, 1000 * S, 1, seed);
            assert!(d >= 90 * S && d <= 110 * S, "{d:?}");
        }
        assert_ne!(
            delay(100 * S, 1000 * S, 1, 0),
            delay(100 * S, 1000 * S, 1, 20)
        );
    }

    #[test]
    fn cap_below_base_uses_base() {
        assert_eq!(delay(30 * S, 10 * S, 3, 10), 30 * S);
    }

    #[test]
    fn remaining_counts_from_the_last_failure() {
        assert_eq!(remaining(30 * S, 600 * S, 1, 10, 10 * S), Some(20 * S));
        assert_eq!(remaining(30 * S, 600 * S, 1, 10, 30 * S), None);
        assert_eq!(remaining(30 * S, 600 * S, 1, 10, 45 * S), None);
        assert_eq!(remaining(30 * S, 600 * S, 0, 10, Duration::ZERO), None);
    }

    #[test]
    fn seed_is_stable() {
        assert_eq!(seed("abc"), seed("abc"));
        assert_ne!(seed("abc"), seed("abd"));
    }
}
