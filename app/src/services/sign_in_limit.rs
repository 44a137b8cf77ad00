//! Rate limit of sign-in attempts, per account and per client address, in memory: a
//! sliding window of recent failures (docs/accounts.md). In memory because a restart
//! forgetting the counts costs an attacker a restart they cannot cause, and several
//! dashboard instances each limit on their own (at most N times the limit).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures per account within the window before its sign-ins are refused.
pub const PER_ACCOUNT: usize = 5;
/// Failures per address within the window (several people may share one address).
pub const PER_ADDRESS: usize = 20;

/// Refused until this much time has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    accounts: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
}

impl SignInLimiter {
    /// Whether an attempt for `account` from `address` may be checked at all, at `now`.
    /// Asked before the password is verified, so a limited account costs no hashing.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let by_account = f.accounts.get_mut(account).and_then(|q| retry(q, PER_ACCOUNT, now));
        let by_address = f.addresses.get_mut(&address).and_then(|q| retry(q, PER_ADDRESS, now));
        match by_account.max(by_address) {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt (unknown accounts too: the same answer either way).
    pub fn failed(&self, account: &str, address: IpAddr, now: Instant) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.accounts.entry(account.to_string()).or_default().push_back(now);
        f.addresses.entry(address).or_default().push_back(now);
        // forget whoever has no failure left in the window, so the maps stay small
        f.accounts.retain(|_, q| !expire(q, now).is_empty());
        f.addresses.retain(|_, q| !expire(q, now).is_empty());
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn succeeded(&self, account: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).accounts.remove(account);
    }
}

fn expire(q: &mut VecDeque<Instant>, now: Instant) -> &mut VecDeque<Instant> {
    while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        q.pop_front();
    }
    q
}

/// How long until fewer than `limit` failures remain in the window, if not already.
fn retry(q: &mut VecDeque<Instant>, limit: usize, now: Instant) -> Option<Duration> {
    let q = expire(q, now);
    (q.len() >= limit).then(|| WINDOW - now.duration_since(q[q.len() - limit]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_is_limited_after_its_failures_until_the_window_passes() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ACCOUNT {
            assert_eq!(limiter.check("bob", A, t0), Ok(()), "attempt {i}");
            limiter.failed("bob", A, t0);
        }
        // from any address
        assert_eq!(limiter.check("bob", B, t0), Err(RetryAfter(WINDOW)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.check("bob", B, later),
            Err(RetryAfter(WINDOW - Duration::from_secs(60)))
        );
        assert_eq!(limiter.check("alice", A, t0), Ok(()), "other accounts are not limited");
        assert_eq!(limiter.check("bob", A, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS {
            limiter.failed(&format!("user{i}"), A, t0);
        }
        assert!(limiter.check("fresh", A, t0).is_err());
        assert_eq!(limiter.check("fresh", B, t0), Ok(()));
    }

    #[test]
    fn success_clears_the_account_and_old_failures_are_forgotten() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_ACCOUNT {
            limiter.failed("bob", A, t0);
        }
        limiter.succeeded("bob");
        assert_eq!(limiter.check("bob", B, t0), Ok(()));
        limiter.failed("carol", A, t0 + WINDOW);
        let f = limiter.failures.lock().unwrap();
        assert_eq!(f.accounts.keys().collect::<Vec<_>>(), ["carol"], "expired entries stay");
        assert_eq!(f.addresses[&A].len(), 1);
    }
}
