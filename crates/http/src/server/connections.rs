//! The table of open client connections: the caps overall and per client
//! IP, what each connection is doing (requests in flight, when it last
//! made progress), and which idle connection makes room when a cap is
//! reached. It decides; the connection tasks in `server` act on it.

use berth_metrics::ConnectionMetrics;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Milliseconds on a clock shared by the table and its connections.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// What one connection is doing, shared by its requests and its task.
#[derive(Debug)]
pub(crate) struct Activity {
    clock: Clock,
    in_flight: AtomicU32,
    /// When the last request ended (or the connection opened).
    idle_since_ms: AtomicU64,
    /// When the connection last wrote bytes (or a request began).
    progress_ms: AtomicU64,
    /// Told when the table sheds this connection.
    shed: Notify,
}

/// What a connection's task should do about its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing yet; look again after this long.
    Wait(Duration),
    /// No request in flight for the idle limit: close it.
    Idle,
    /// Requests in flight but nothing written for the stall limit.
    Stalled,
}

impl Activity {
    fn new(clock: Clock) -> Self {
        let now = clock.now_ms();
        Self {
            clock,
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(now),
            progress_ms: AtomicU64::new(now),
            shed: Notify::new(),
        }
    }

    /// A request began; it ends when the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.wrote();
        RequestGuard(Arc::clone(self))
    }

    /// The connection wrote bytes to its client.
    pub(crate) fn wrote(&self) {
        self.progress_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
    }

    /// Resolves when the table sheds this connection.
    pub(crate) async fn shed(&self) {
        self.shed.notified().await;
    }

    fn idle_for_ms(&self, now: u64) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| now.saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)))
    }

    /// Whether the connection is past a limit, or how long until it may be.
    pub(crate) fn verdict(&self, idle: Duration, stall: Duration) -> Verdict {
        let now = self.clock.now_ms();
        let (limit, spent, verdict) = match self.idle_for_ms(now) {
            Some(spent) => (idle, spent, Verdict::Idle),
            None => {
                let since = self.progress_ms.load(Ordering::Relaxed);
                (stall, now.saturating_sub(since), Verdict::Stalled)
            }
        };
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        if spent >= limit_ms {
            verdict
        } else {
            // Look again when the limit would be reached, but soon enough to
            // notice a change of state.
            Verdict::Wait(Duration::from_millis(limit_ms - spent).min(idle.min(stall)))
        }
    }
}

/// Holds a request in flight on its connection.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.clock.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The caps the table enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) total: u32,
    pub(crate) per_ip: u32,
}

#[derive(Debug, Default)]
struct Table {
    open: HashMap<u64, (IpAddr, Arc<Activity>)>,
    per_ip: HashMap<IpAddr, u32>,
    next_id: u64,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Activity>> {
        let (ip, activity) = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(activity)
    }

    /// The connection idle longest, among those from `ip` if given.
    fn longest_idle(&self, ip: Option<IpAddr>, now: u64) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, (from, _))| ip.is_none_or(|ip| *from == ip))
            .filter_map(|(id, (_, a))| a.idle_for_ms(now).map(|idle| (idle, *id)))
            .max()
            .map(|(_, id)| id)
    }
}

/// Every open client connection.
#[derive(Debug)]
pub(crate) struct Connections {
    caps: Caps,
    clock: Clock,
    table: Mutex<Table>,
    metrics: ConnectionMetrics,
    /// Told whenever the table becomes empty.
    emptied: Notify,
}

/// Why a new connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` open, none idle.
    Total,
    /// `max_connections_per_ip` open from this IP, none idle.
    PerIp,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerIp => "per_ip",
        }
    }
}

impl Connections {
    pub(crate) fn new(caps: Caps, metrics: ConnectionMetrics) -> Self {
        Self {
            caps,
            clock: Clock(Instant::now()),
            table: Mutex::default(),
            metrics,
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a connection from `ip`, shedding the longest-idle connection
    /// (from the same IP when that cap is the one reached) to make room.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut table = self.lock();
        let now = self.clock.now_ms();
        if table.per_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
            let victim = table.longest_idle(Some(ip), now).ok_or(Refused::PerIp)?;
            self.shed(&mut table, victim);
        }
        if table.open.len() >= self.caps.total as usize {
            let victim = table.longest_idle(None, now).ok_or(Refused::Total)?;
            self.shed(&mut table, victim);
        }
        let id = table.next_id;
        table.next_id += 1;
        let activity = Arc::new(Activity::new(self.clock));
        table.open.insert(id, (ip, Arc::clone(&activity)));
        *table.per_ip.entry(ip).or_default() += 1;
        self.metrics.open.inc();
        Ok(Slot {
            table: Arc::clone(self),
            id,
            activity,
        })
    }

    fn shed(&self, table: &mut Table, id: u64) {
        if let Some(activity) = table.remove(id) {
            activity.shed.notify_one();
            self.metrics.close("shed");
        }
    }

    /// Connections open now.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Resolves once no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.metrics.open.get() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's place in the table, given back when it drops.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Slot {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        table.remove(self.id);
        drop(table);
        if self.table.metrics.open.dec() == 1 {
            self.table.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(total: u32, per_ip: u32) -> Arc<Connections> {
        Arc::new(Connections::new(
            Caps { total, per_ip },
            ConnectionMetrics::default(),
        ))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn a_full_table_sheds_the_longest_idle_connection() {
        let t = table(2, 2);
        let old = t.admit(A).unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let busy = t.admit(B).unwrap();
        let _request = busy.activity().begin();
        let shed = old.activity().shed();
        tokio::pin!(shed);
        let _new = t.admit(B).unwrap();
        tokio::time::timeout(Duration::from_millis(1), &mut shed)
            .await
            .expect("the idle connection is told to close");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.metrics
                .closed
                .get_or_create(&berth_metrics::ConnectionLabels { reason: "shed" })
                .get(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_are_never_shed() {
        let t = table(2, 2);
        let a = t.admit(A).unwrap();
        let b = t.admit(B).unwrap();
        let _ra = a.activity().begin();
        let _rb = b.activity().begin();
        assert_eq!(t.admit(A).unwrap_err(), Refused::Total);
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_ip_cap_sheds_only_that_ips_connections() {
        let t = table(10, 1);
        let b = t.admit(B).unwrap();
        let a = t.admit(A).unwrap();
        let _ra = a.activity().begin();
        assert_eq!(t.admit(A).unwrap_err(), Refused::PerIp);
        drop(_ra);
        let _a2 = t.admit(A).expect("A's idle connection makes room");
        let b_shed = tokio::time::timeout(Duration::from_millis(1), b.activity().shed()).await;
        assert!(b_shed.is_err(), "B's idle connection is not A's to shed");
        assert_eq!(t.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_stalled_verdicts_follow_the_clock() {
        let t = table(10, 10);
        let slot = t.admit(A).unwrap();
        let idle = Duration::from_secs(60);
        let stall = Duration::from_secs(120);
        let a = slot.activity();
        assert_eq!(a.verdict(idle, stall), Verdict::Wait(idle));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.verdict(idle, stall), Verdict::Idle);
        let request = a.begin();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(matches!(a.verdict(idle, stall), Verdict::Wait(_)));
        a.wrote();
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(matches!(a.verdict(idle, stall), Verdict::Wait(_)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(a.verdict(idle, stall), Verdict::Stalled);
        drop(request);
        assert!(
            matches!(a.verdict(idle, stall), Verdict::Wait(_)),
            "idle clock restarts"
        );
    }
}
