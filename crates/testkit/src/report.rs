//! What the benchmarks print: a line naming the machine, then one markdown
//! table per benchmark with the columns measure | berth | reference | ratio
//! | goal, plus notes. Absolute numbers on a shared machine are noise; the
//! ratios are the figures.

use std::time::Duration;

/// One markdown table being filled in.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 5]>,
    notes: Vec<String>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row; every cell is already formatted.
    pub fn row(
        &mut self,
        measure: &str,
        berth: String,
        reference: String,
        ratio: String,
        goal: &str,
    ) {
        self.rows
            .push([measure.to_owned(), berth, reference, ratio, goal.to_owned()]);
    }

    /// A line printed under the table.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Prints the title, the machine line, the table and the notes.
    pub fn print(&self, title: &str) {
        println!("\n### {title}\n");
        println!("{}\n", machine());
        println!("| measure | berth | reference | ratio | goal |");
        println!("|---|---|---|---|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
        println!();
    }
}

/// "machine: 2 cores (nproc), AMD EPYC, Linux 6.1.0".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {cores} cores (nproc), {model}, Linux {}",
        kernel.trim()
    )
}

/// The median (upper median for an even count); zero when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `b / a` with two decimals, or "—" when `a` is zero.
pub fn ratio(berth: f64, reference: f64) -> String {
    if reference == 0.0 {
        "—".to_owned()
    } else {
        format!("{:.2}", berth / reference)
    }
}

/// "1.234 s"
pub fn secs(d: f64) -> String {
    format!("{d:.3} s")
}

/// A duration as seconds.
pub fn f(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Bytes per second as "1.23 GiB/s".
pub fn gibps(bytes_per_sec: f64) -> String {
    format!("{:.2} GiB/s", bytes_per_sec / f64::from(1u32 << 30))
}

/// Bytes as "12.3 MiB".
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1u32 << 20))
}
