//! Failed dashboard logins, counted per client (CONTRACT §11): after
//! [`MAX_FAILURES`] within [`WINDOW`], the login answers 429 with `Retry-After` until the
//! oldest of them leaves the window.
//!
//! An attempt counts as a failure from the moment it starts and is forgiven if the secret
//! was right, so concurrent guesses cannot all pass the check before the first one fails.
//! Clients are told apart by address (IPv6 by its /64, which one host usually holds
//! whole). The counts live in this process's memory: a login is a request to one process,
//! and several processes each allow their own [`MAX_FAILURES`], which still bounds guessing;
//! behind a reverse proxy every client shares the proxy's address, so one client's failures
//! hold back all (the secret is never weakened, only the login delayed).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed logins a client may make within [`WINDOW`].
pub const MAX_FAILURES: usize = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most clients tracked; past it, new clients share one count (many addresses at once are
/// one attack more often than many people mistyping).
const MAX_CLIENTS: usize = 4096;
/// The shared count of clients past [`MAX_CLIENTS`].
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Recent failed logins by client.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// What a client's login attempt may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Go on; the attempt counts as a failure until [`LoginThrottle::succeeded`].
    Allowed,
    /// Refused: too many failures; the next attempt may come after this long.
    Throttled(Duration),
}

impl LoginThrottle {
    /// Starts an attempt of `client` at `now`, counting it as failed.
    pub fn begin(&self, client: IpAddr, now: Instant) -> Attempt {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_CLIENTS {
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let key = client_key(client);
        let key = if failures.len() >= MAX_CLIENTS && !failures.contains_key(&key) {
            OVERFLOW
        } else {
            key
        };
        let times = failures.entry(key).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= MAX_FAILURES {
            let oldest = times.front().copied().unwrap_or(now);
            return Attempt::Throttled(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Attempt::Allowed
    }

    /// Forgives the attempt `client` began: the secret was right.
    pub fn succeeded(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = failures.get_mut(&client_key(client)) {
            times.pop_back();
        }
    }
}

/// The address failures are counted under: IPv6 addresses by their /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_within_a_minute_is_throttled() {
        let t = LoginThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for i in 0..MAX_FAILURES as u64 {
            assert_eq!(t.begin(a, start + Duration::from_secs(i)), Attempt::Allowed);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(t.begin(a, later), Attempt::Throttled(Duration::from_secs(40)));
        // Another client is not held back; the first may try again once a minute has passed.
        assert_eq!(t.begin(b, later), Attempt::Allowed);
        assert_eq!(t.begin(a, start + WINDOW), Attempt::Allowed);
    }

    #[test]
    fn a_right_secret_is_forgiven_and_ipv6_counts_per_64() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..MAX_FAILURES * 2 {
            assert_eq!(t.begin(one, now), Attempt::Allowed);
            t.succeeded(one);
        }
        for _ in 0..MAX_FAILURES {
            assert_eq!(t.begin(one, now), Attempt::Allowed);
        }
        assert!(matches!(t.begin(same_64, now), Attempt::Throttled(_)));
    }
}
