//! Retry back-off: the seed's `min(60, 2^attempt)` seconds plus up to 20% jitter.

use std::time::Duration;

/// Delay before the next attempt after `attempt` failed attempts (1-based).
pub fn delay(attempt: i64, retry_after: Option<Duration>) -> Duration {
    let exp = attempt.clamp(0, 6) as u32;
    let base = 60f64.min(2f64.powi(exp as i32));
    // Jitter spreads retries of events that failed together (an upstream outage).
    let jittered = base * (1.0 + fastrand::f64() * 0.2);
    let d = Duration::from_secs_f64(jittered);
    match retry_after {
        Some(r) if r > d => r,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_capped_with_jitter() {
        for (attempt, base) in [
            (1, 2.0),
            (2, 4.0),
            (3, 8.0),
            (5, 32.0),
            (6, 60.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            for _ in 0..50 {
                let d = delay(attempt, None).as_secs_f64();
                assert!(d >= base && d <= base * 1.2 + 1e-9, "attempt {attempt}: {d}");
            }
        }
        assert_eq!(delay(1, Some(Duration::from_secs(120))), Duration::from_secs(120));
        assert!(delay(6, Some(Duration::from_secs(1))) >= Duration::from_secs(60));
    }
}
