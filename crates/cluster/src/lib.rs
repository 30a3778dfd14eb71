//! Several berth replicas acting as one cache, coordinated through Redis
//! (or Valkey). Redis holds soft state only: losing it costs coordination,
//! never data, and every replica keeps serving on its own meanwhile.
//!
//! - [`Redis`]: the connection, its health and the one log line per
//!   outage;
//! - [`SharedIndex`]: tag answers, listings, links and manifest media types
//!   shared by the replicas, over each replica's own index;
//! - [`LeasedFlights`]: single flight over the fleet, by leases renewed
//!   while their holder lives, each with a fencing token;
//! - [`RedisBuckets`]: the `[limits]` rate limits and failed-login
//!   throttling counted over the fleet; [`RedisSlots`]: each upstream's
//!   `max_concurrent` over the fleet;
//! - [`ClusterPeers`]: the other replicas as a blob's source, read from
//!   their peer endpoint while they download it or once they hold it;
//! - [`start_heartbeat`] and [`replicas`]: which replicas are alive;
//!   [`cluster_status`]: the cluster as `/stats` shows it.

mod buckets;
mod index;
mod keys;
mod lease;
mod nodes;
mod peers;
mod redis_link;
mod slots;
mod status;

pub use buckets::RedisBuckets;
pub use index::SharedIndex;
pub use lease::LeasedFlights;
pub use nodes::{Replica, replicas, start_heartbeat};
pub use peers::ClusterPeers;
pub use redis_link::Redis;
pub use slots::RedisSlots;
pub use status::{ClusterStatus, cluster_status};
