//! An upstream's `max_concurrent` kept over several replicas. With a
//! cluster's [`FleetSlots`], a request that holds one of this replica's
//! slots also takes one of the fleet's before it is sent, so N replicas
//! together send an upstream at most `max_concurrent` requests at once.
//! When the fleet cannot answer, the replica's own slots alone decide.

use async_trait::async_trait;
use std::fmt::Debug;

/// A slot held in the fleet; dropping it frees it.
pub type FleetSlot = Box<dyn Debug + Send + Sync>;

/// Request slots shared by the replicas of a cluster.
#[async_trait]
pub trait FleetSlots: Send + Sync + Debug {
    /// Wait for one of `max` slots of `upstream`: `None` when the fleet
    /// cannot say now (the caller goes on with its own slot). The caller
    /// bounds the wait.
    async fn acquire(&self, upstream: &str, max: u32) -> Option<FleetSlot>;
}
