//! An upstream's request slots (`max_concurrent`), handed out by urgency.
//! A request a client waits for takes any free slot and goes before every
//! prefetch in the queue. A prefetch (a layer fetched before a client asks
//! for it) takes a slot only while a quarter of them stay free for
//! clients, and moves up the moment a client starts waiting for it.
//!
//! A slot is returned when its [`Slot`] is dropped, also when the request
//! that waited for it was abandoned after it was handed over.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, watch};

/// How urgent a request is. A prefetch's urgency can be raised while it
/// waits, by whoever starts waiting for its result.
#[derive(Debug, Clone)]
pub struct Urgency(Arc<watch::Sender<bool>>);

impl Urgency {
    /// A client waits for this request.
    pub fn now() -> Self {
        Self(Arc::new(watch::Sender::new(true)))
    }

    /// Nobody waits yet: a prefetch.
    pub fn later() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// A client now waits for it.
    pub fn raise(&self) {
        self.0.send_replace(true);
    }

    /// Whether a client waits for it.
    pub fn is_urgent(&self) -> bool {
        *self.0.borrow()
    }

    /// Changes of [`Urgency::is_urgent`].
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// One held slot; dropping it frees the slot for the next in line.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    /// The fleet's slot held with it, in a cluster.
    pub(crate) fleet: Option<crate::FleetSlot>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.state().free += 1;
        self.slots.dispatch();
    }
}

#[derive(Debug)]
struct Waiter {
    urgency: Urgency,
    grant: oneshot::Sender<Slot>,
}

#[derive(Debug)]
struct State {
    free: usize,
    queue: VecDeque<Waiter>,
}

/// The slots of one upstream.
#[derive(Debug)]
pub(crate) struct Slots {
    state: Mutex<State>,
    /// Slots a prefetch leaves free for clients.
    kept_for_clients: usize,
}

impl Slots {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: total,
                queue: VecDeque::new(),
            }),
            kept_for_clients: (total / 4).max(1).min(total.saturating_sub(1)),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn may_take(&self, free: usize, urgency: &Urgency) -> bool {
        if urgency.is_urgent() {
            free > 0
        } else {
            free > self.kept_for_clients
        }
    }

    /// Wait for a slot: urgent requests in order of arrival, then
    /// prefetches, each as soon as its rule allows. Cancel-safe.
    pub(crate) async fn acquire(self: &Arc<Self>, urgency: &Urgency) -> Slot {
        let receiver = {
            let mut state = self.state();
            let urgent_waiting = state.queue.iter().any(|w| w.urgency.is_urgent());
            if !urgent_waiting && self.may_take(state.free, urgency) {
                state.free -= 1;
                return Slot {
                    slots: Arc::clone(self),
                    fleet: None,
                };
            }
            let (grant, receiver) = oneshot::channel();
            state.queue.push_back(Waiter {
                urgency: urgency.clone(),
                grant,
            });
            receiver
        };
        let mut raised = urgency.watch();
        tokio::pin!(receiver);
        loop {
            tokio::select! {
                slot = &mut receiver => {
                    // The sender lives in the queue until it grants, so it
                    // is only dropped by granting.
                    if let Ok(slot) = slot {
                        return slot;
                    }
                }
                changed = raised.wait_for(|urgent| *urgent), if !urgency.is_urgent() => {
                    if changed.is_ok() {
                        self.dispatch();
                    }
                }
            }
        }
    }

    /// Hand free slots to the waiters the rules allow: the first urgent
    /// one, else the first prefetch.
    fn dispatch(self: &Arc<Self>) {
        loop {
            let granted = {
                let mut state = self.state();
                state.queue.retain(|w| !w.grant.is_closed());
                let urgent = state.queue.iter().position(|w| w.urgency.is_urgent());
                let next = urgent.or_else(|| (!state.queue.is_empty()).then_some(0));
                match next {
                    Some(i) if self.may_take(state.free, &state.queue[i].urgency) => {
                        state.free -= 1;
                        state.queue.remove(i)
                    }
                    _ => None,
                }
            };
            let Some(waiter) = granted else { return };
            // A waiter that left after the check gets its slot back to the
            // pool when the refused slot is dropped here, outside the lock.
            let _ = waiter.grant.send(Slot {
                slots: Arc::clone(self),
                fleet: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pending<F: std::future::Future>(f: F) -> std::pin::Pin<Box<F>> {
        Box::pin(f)
    }

    async fn is_pending<F: std::future::Future + Unpin>(f: &mut F) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn clients_go_before_prefetches_and_a_raised_prefetch_moves_up() {
        let slots = Slots::new(4); // one kept for clients
        let prefetch = Urgency::later();
        let mut prefetches = Vec::new();
        for _ in 0..3 {
            prefetches.push(slots.acquire(&prefetch).await);
        }
        // A fourth prefetch waits: the last slot is kept for clients...
        let later = Urgency::later();
        let mut waiting = pending(slots.acquire(&later));
        assert!(is_pending(&mut waiting).await);
        // ... which a client takes at once.
        let client = slots.acquire(&Urgency::now()).await;
        // Another client queues, and gets the next freed slot before the
        // prefetch that waited longer.
        let now = Urgency::now();
        let mut second = pending(slots.acquire(&now));
        assert!(is_pending(&mut second).await);
        drop(client);
        let second = second.await;
        assert!(is_pending(&mut waiting).await);
        // A client starts waiting for the queued prefetch: it takes the
        // next slot, though that leaves none for other clients.
        later.raise();
        assert!(is_pending(&mut waiting).await);
        drop(prefetches);
        let raised = waiting.await;
        drop((raised, second));
        assert_eq!(slots.state().free, 4);
    }

    #[tokio::test]
    async fn an_abandoned_waiter_loses_no_slot() {
        let slots = Slots::new(1);
        let held = slots.acquire(&Urgency::now()).await;
        let now = Urgency::now();
        let mut gone = pending(slots.acquire(&now));
        assert!(is_pending(&mut gone).await);
        drop(gone);
        drop(held);
        let _again = slots.acquire(&Urgency::now()).await;
        assert_eq!(slots.state().free, 0);
    }
}
