//! The limits a blob download ("fill") keeps. Whoever waits for it, it
//! never grows past its upstream's `max_blob_size`, and a body of unknown
//! length stops before the cache disk is full. Once no client waits for
//! it, it may go on (the blob is worth caching) only while it holds one of
//! its upstream's `unattended_fills` permits, and only until a deadline
//! that grows with its size; so abandoned downloads cannot hold every
//! upstream slot, nor one slot for ever. A body of unknown length has no
//! size to grow a deadline from: once nobody waits for it, it may take
//! `UNKNOWN_UNATTENDED_BYTES` more, and its deadline is that of the
//! bytes it had when the last client left.

use berth_cache::Progress;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Time any unattended fill gets, whatever its size.
const DEADLINE_BASE: Duration = Duration::from_secs(10 * 60);
/// Plus its size at this rate (bytes per second): the slowest average an
/// unattended fill may keep.
const MIN_RATE: u64 = 64 << 10;
/// Bytes a body of unknown length may still take once no client waits.
pub(super) const UNKNOWN_UNATTENDED_BYTES: u64 = 128 << 20;
/// A body of unknown length checks the free space this often (bytes).
pub(super) const SPACE_CHECK_EVERY: u64 = 8 << 20;
/// ... and stops unless this much is still free.
pub(super) const SPACE_RESERVE: u64 = 64 << 20;

/// How long a fill of `size` bytes may run, counted from its start, once
/// no client waits for it.
pub(super) fn deadline(size: u64) -> Duration {
    DEADLINE_BASE + Duration::from_secs(size / MIN_RATE)
}

/// Watches whether anyone still waits for a fill, and holds its
/// unattended permit while nobody does.
#[derive(Debug)]
pub(super) struct Unattended {
    permits: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    started: Instant,
    /// Bytes received when the last client left, while none is back.
    left_at: Option<u64>,
}

impl Unattended {
    /// A watch over a fill starting now, drawing on `permits` (its
    /// upstream's share of unattended fills), unless it holds a permit
    /// already (a prefetch's share of the eager byte budget) until a
    /// client comes.
    pub(super) fn new(permits: Arc<Semaphore>, held: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            permits,
            permit: held,
            started: Instant::now(),
            left_at: None,
        }
    }

    /// Resolves only when the fill must stop, with the reason: no reader of
    /// `progress` is left, and either no unattended permit is free, or the
    /// fill ran past the deadline for its declared `size` (unknown: for
    /// the bytes it had when the last reader left), or a body of unknown
    /// length took `UNKNOWN_UNATTENDED_BYTES` past that point, `received`
    /// being the bytes so far. Cancel-safe: a permit taken stays held
    /// until a reader comes back or the fill ends.
    pub(super) async fn must_stop(
        &mut self,
        progress: &watch::Sender<Progress>,
        size: Option<u64>,
        received: u64,
    ) -> String {
        loop {
            if progress.receiver_count() > 0 {
                self.permit = None;
                self.left_at = None;
                progress.closed().await;
                continue;
            }
            let left_at = *self.left_at.get_or_insert(received);
            if size.is_none() && received.saturating_sub(left_at) >= UNKNOWN_UNATTENDED_BYTES {
                return format!(
                    "every client left and its body of unknown length took {} MiB more",
                    UNKNOWN_UNATTENDED_BYTES >> 20
                );
            }
            if self.permit.is_none() {
                match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => self.permit = Some(permit),
                    Err(_) => {
                        return "every client left and the upstream's unattended_fills are taken"
                            .to_owned();
                    }
                }
            }
            let limit = deadline(size.unwrap_or(left_at));
            if self.started.elapsed() >= limit {
                return format!("every client left and it ran past its deadline of {limit:?}");
            }
            tokio::time::sleep_until(self.started + limit).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cache::ProgressState;

    fn progress() -> watch::Sender<Progress> {
        watch::Sender::new(Progress {
            written: 0,
            state: ProgressState::Filling,
        })
    }

    #[test]
    fn the_deadline_grows_with_the_size() {
        assert_eq!(deadline(0), Duration::from_secs(600));
        assert_eq!(deadline(64 << 20), Duration::from_secs(600 + 1024));
        assert!(deadline(64 << 30) > Duration::from_secs(12 * 24 * 3600));
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_fills_beyond_the_share_stop_and_the_rest_keep_a_deadline() {
        let permits = Arc::new(Semaphore::new(1));
        let (first, second) = (progress(), progress());
        let reader = first.subscribe();
        let mut kept = Unattended::new(Arc::clone(&permits), None);
        let mut extra = Unattended::new(Arc::clone(&permits), None);
        let waiting =
            tokio::time::timeout(Duration::from_secs(300), kept.must_stop(&first, Some(0), 0));
        drop(reader);
        // The first abandoned fill takes the one permit and goes on...
        assert!(
            waiting.await.is_err(),
            "an abandoned fill within its share and deadline goes on"
        );
        // ... the second finds none and stops at once.
        let why = extra.must_stop(&second, Some(0), 0).await;
        assert!(why.contains("unattended_fills"), "{why}");
        // The first stops at its deadline.
        let why = kept.must_stop(&first, Some(0), 0).await;
        assert!(why.contains("deadline"), "{why}");
        assert!(kept.started.elapsed() >= deadline(0));
        // A fill with a reader is never stopped, and holds no permit.
        let third = progress();
        let _reader = third.subscribe();
        let mut attended = Unattended::new(Arc::clone(&permits), None);
        drop(kept);
        let waiting = tokio::time::timeout(
            Duration::from_secs(100_000),
            attended.must_stop(&third, Some(0), 0),
        );
        assert!(waiting.await.is_err());
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_body_of_unknown_length_is_bounded_by_bytes() {
        let permits = Arc::new(Semaphore::new(1));
        let fill = progress();
        let mut watch = Unattended::new(permits, None);
        // The last client leaves at 10 MiB; the body goes on fast.
        let mut received = 10 << 20;
        let quick = Duration::from_secs(1);
        assert!(
            tokio::time::timeout(quick, watch.must_stop(&fill, None, received))
                .await
                .is_err()
        );
        received += UNKNOWN_UNATTENDED_BYTES - 1;
        assert!(
            tokio::time::timeout(quick, watch.must_stop(&fill, None, received))
                .await
                .is_err(),
            "within its bytes it goes on"
        );
        received += 1;
        let why = watch.must_stop(&fill, None, received).await;
        assert!(why.contains("unknown length"), "{why}");
        // Its deadline does not grow with what it receives meanwhile.
        let mut slow = Unattended::new(Arc::new(Semaphore::new(1)), None);
        let why = slow.must_stop(&fill, None, 0).await;
        assert!(why.contains("deadline"), "{why}");
        let far = slow.must_stop(&fill, None, 100 << 20).await;
        assert!(
            far.contains("unknown length") || far.contains("deadline"),
            "{far}"
        );
        assert!(
            slow.started.elapsed() < deadline(1 << 20),
            "{:?}",
            slow.started.elapsed()
        );
    }
}
