//! How many bcrypt verifications may run at once: a few per client
//! address and a few overall, so a burst of guesses from one address (or
//! many) cannot take every core while a real login waits. Waiting is
//! cheap and bounded: each address gets at most its failed-login burst
//! of attempts in before the limiter answers 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Verifications one address may run at once.
const PER_IP: usize = 2;

/// The caps on verifications in progress.
#[derive(Debug)]
pub(crate) struct Verifications {
    overall: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// A verification's place; frees it when dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    _overall: OwnedSemaphorePermit,
    ip_permit: Option<OwnedSemaphorePermit>,
    ip: IpAddr,
    owner: &'a Verifications,
}

impl Verifications {
    /// At most `overall` verifications at once (at least one).
    pub(crate) fn new(overall: usize) -> Self {
        Self {
            overall: Arc::new(Semaphore::new(overall.max(1))),
            per_ip: Mutex::default(),
        }
    }

    /// Wait for a turn for `ip`: first among its own, then overall.
    pub(crate) async fn turn(&self, ip: IpAddr) -> Option<Turn<'_>> {
        let mine = {
            let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                map.entry(ip)
                    .or_insert_with(|| Arc::new(Semaphore::new(PER_IP))),
            )
        };
        let ip_permit = mine.acquire_owned().await.ok()?;
        let overall = Arc::clone(&self.overall).acquire_owned().await.ok()?;
        Some(Turn {
            _overall: overall,
            ip_permit: Some(ip_permit),
            ip,
            owner: self,
        })
    }

    /// Addresses with a verification running or waiting.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.ip_permit.take());
        let mut map = self
            .owner
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the address once nobody holds or waits for its semaphore.
        if let Some(s) = map.get(&self.ip)
            && Arc::strong_count(s) == 1
        {
            map.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PER_IP, Verifications};
    use std::net::IpAddr;
    use std::time::Duration;

    #[tokio::test]
    async fn one_address_holds_at_most_its_share_and_is_forgotten_after() {
        let v = Verifications::new(8);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..PER_IP {
            held.push(v.turn(ip).await.unwrap());
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), v.turn(ip)).await;
        assert!(blocked.is_err(), "a third turn for one address");
        let other = v.turn("192.0.2.2".parse().unwrap()).await;
        assert!(other.is_some(), "another address waits for nobody");
        drop(other);
        drop(held);
        assert_eq!(v.addresses(), 0);
    }

    #[tokio::test]
    async fn the_overall_cap_holds_across_addresses() {
        let v = Verifications::new(1);
        let first = v.turn("192.0.2.1".parse().unwrap()).await.unwrap();
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            v.turn("192.0.2.2".parse().unwrap()),
        )
        .await;
        assert!(second.is_err());
        drop(first);
        assert!(v.turn("192.0.2.2".parse().unwrap()).await.is_some());
    }
}
