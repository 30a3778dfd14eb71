//! Process and port plumbing shared by every other harness module: spawning
//! long-running children with their output in a log file, killing them by PID
//! on drop, picking loopback ports, probing HTTP readiness, and running
//! short-lived commands (blocking and async) with captured output.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A spawned long-running process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    port: Option<u16>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`. If `port` is
    /// given, stopping the child also waits until that port is free.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path, port: Option<u16>) -> Self {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {name}: {e} (packages: crates/testkit/fixtures/apt-packages.txt)")
            });
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            port,
        }
    }

    /// The child's PID, or `None` once it has been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the child has already exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything the child wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` turns true; `Err` with the child's log if it
    /// exits first or `timeout` passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                // It never held the port (or no longer does): don't wait for it.
                self.port = None;
                return Err(format!(
                    "{} exited with {status}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready after {timeout:?}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the child by PID, reaps it and waits until its port is free.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(port) = self.port
            && !wait_port_free(port, Duration::from_secs(10))
        {
            eprintln!("warning: {} port {port} still busy after stop", self.name);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago, for a server that must be
/// told its port before it starts. It is drawn below the kernel's
/// ephemeral range (32768 and up), which every `bind(0)` and outgoing
/// connection draws from, so none of those can take it meanwhile; and
/// never twice in one process.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for i in 0..4096u64 {
        let port = 20_000
            + ((seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i * 7919))
                % 12_000) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// True once nothing accepts connections on 127.0.0.1:`port` any more.
pub fn wait_port_free(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    })
}

/// Send `signal` (`STOP`, `CONT`, `TERM`, ...) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Polls `cond` every 20 ms until it is true (returns true) or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status code of a plain `GET path` to `addr`, or `None` if nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a short command to completion; `Ok(stdout)` on success, otherwise
/// `Err` with the command line, exit status and stderr.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    finish(&format!("{cmd:?}"), out)
}

/// Async twin of [`run`]: the child is killed if it outlives `timeout` or the
/// future is dropped.
pub async fn run_async(
    cmd: &mut tokio::process::Command,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let line = format!("{:?}", cmd.as_std());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{line}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => finish(&line, out),
        Ok(Err(e)) => Err(format!("{line}: {e}")),
        Err(_) => Err(format!("{line}: timed out after {timeout:?}")),
    }
}

fn finish(line: &str, out: std::process::Output) -> Result<Vec<u8>, String> {
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{line}: {}\nstderr:\n{}\nstdout:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// A multi-threaded tokio runtime on its own threads, so in-process servers
/// keep serving while a test blocks its own thread (or its own runtime).
#[derive(Debug)]
pub struct Background {
    rt: Option<tokio::runtime::Runtime>,
}

impl Background {
    pub fn new(name: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("build background runtime");
        Background { rt: Some(rt) }
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime is running").handle()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Safe to call from inside another runtime, unlike a plain drop.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
