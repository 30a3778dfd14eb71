//! Runs `wrk` (Debian package wrk) against one URL and parses its summary:
//! requests, bytes read, duration, socket errors and non-2xx answers.

use std::time::Duration;

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wrk {
    /// Completed requests.
    pub(crate) requests: u64,
    /// Bytes read, including responses still in flight at the end.
    pub(crate) bytes: f64,
    pub(crate) seconds: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    pub(crate) errors: u64,
}

impl Wrk {
    pub(crate) fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub(crate) fn bytes_per_sec(&self) -> f64 {
        self.bytes / self.seconds
    }
}

/// `wrk -tTHREADS -cCONNS -dDURATION [-H header]... URL`.
pub(crate) async fn run(
    url: &str,
    threads: u32,
    connections: u32,
    duration: Duration,
    headers: &[&str],
) -> Wrk {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("--timeout")
        .arg("60s");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(url).kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("wrk: {e} (apt-get install wrk)"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    parse(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}"))
}

/// Parses wrk 4's summary.
fn parse(text: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    let summary = text.lines().find(|l| l.contains(" requests in "))?;
    // "  216 requests in 5.01s, 10.13GB read"
    let mut parts = summary.split_whitespace();
    w.requests = parts.next()?.parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    w.seconds = time(rest.get(2)?.trim_end_matches(','))?;
    w.bytes = size(rest.get(3)?)?;
    for line in text.lines().map(str::trim) {
        if let Some(errs) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for pair in errs.split(',') {
                w.errors += pair
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.errors += n.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(w)
}

/// "5.01s", "1.00m", "900.00ms" as seconds.
fn time(s: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s.strip_suffix('h')?, 3600.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// "10.13GB", "512.00KB", "900.00B" (binary units) as bytes.
fn size(s: &str) -> Option<f64> {
    let s = s.strip_suffix('B')?;
    let (number, power) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1),
        'M' => (&s[..s.len() - 1], 2),
        'G' => (&s[..s.len() - 1], 3),
        'T' => (&s[..s.len() - 1], 4),
        _ => (s, 0),
    };
    Some(number.parse::<f64>().ok()? * 1024f64.powi(power))
}
