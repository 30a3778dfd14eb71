//! Process probes from /proc for the comparison benchmark: peak and current
//! RSS, CPU time, and a watcher that notices compilers running while a
//! measure runs (so a skewed row can be flagged instead of trusted).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static COMPILER_SEEN: AtomicBool = AtomicBool::new(false);

/// Starts the background watcher: every 250 ms it looks for `rustc`, `cc`
/// or `ld` processes and remembers that it saw one.
pub(crate) fn start_watcher() {
    std::thread::spawn(|| {
        loop {
            if compiler_running() {
                COMPILER_SEEN.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

static ANY_FLAGGED: AtomicBool = AtomicBool::new(false);

/// One measure's window for the compiler watcher.
#[derive(Debug)]
pub(crate) struct Quiet;

impl Quiet {
    /// Starts a measure: forgets compilers seen before it.
    pub(crate) fn begin() -> Quiet {
        COMPILER_SEEN.store(false, Ordering::Relaxed);
        Quiet
    }

    /// `measure`, with " †" appended if a compiler ran since `begin`.
    pub(crate) fn mark(&self, measure: &str) -> String {
        if COMPILER_SEEN.load(Ordering::Relaxed) {
            ANY_FLAGGED.store(true, Ordering::Relaxed);
            format!("{measure} †")
        } else {
            measure.to_owned()
        }
    }
}

/// Whether any row was marked.
pub(crate) fn any_flagged() -> bool {
    ANY_FLAGGED.load(Ordering::Relaxed)
}

fn compiler_running() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let is_pid = name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| matches!(c.trim(), "rustc" | "cc1" | "ld" | "cc"))
    })
}

/// A field of /proc/PID/status in bytes (e.g. "VmHWM", "VmRSS").
pub(crate) fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User + system CPU seconds the process used so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// [`cpu_seconds`] of `pid` and of its children (nginx's workers).
pub(crate) fn tree_cpu_seconds(pid: u32) -> f64 {
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rfind(')')
                    .and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        });
    cpu_seconds(pid).unwrap_or(0.0) + children.filter_map(cpu_seconds).sum::<f64>()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Samples VmRSS of `pid` every 50 ms until dropped; `peak()` is the largest.
#[derive(Debug)]
pub(crate) struct RssSampler {
    stop: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(status_bytes(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        RssSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling and returns the largest VmRSS seen, in bytes.
    pub(crate) fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `sync`, so dirty pages from the previous run are not written back
/// while the next one is timed.
pub(crate) fn sync_disks() {
    let _ = std::process::Command::new("sync").status();
}
