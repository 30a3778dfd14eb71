//! Spawns the real `berth` binary with a generated config on a free
//! loopback port, waits for its "listening" line, and keeps its log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running berth process. Killed on drop.
#[derive(Debug)]
pub struct Berth {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`, or `https://` when it serves HTTPS.
    url: String,
    /// Its data directory (kept across restarts when reused).
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl Berth {
    /// Start berth with `body` as the config (without `listen` and
    /// `data_dir`, which the harness sets) and a fresh data dir.
    pub fn start(body: &str) -> Berth {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut b = Self::start_with_data(body, &data);
        b._dir = Some(dir);
        b
    }

    /// [`Berth::start`] with these environment variables set.
    pub fn start_with_env(body: &str, env: &[(&str, &str)]) -> Berth {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut b = Self::launch(body, &data, env);
        b._dir = Some(dir);
        b
    }

    /// Start berth on an existing data directory (for restarts).
    pub fn start_with_data(body: &str, data_dir: &Path) -> Berth {
        Self::launch(body, data_dir, &[])
    }

    fn launch(body: &str, data_dir: &Path, env: &[(&str, &str)]) -> Berth {
        std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
        let mut child = spawn_serve(body, data_dir, "toml", env);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("berth listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(url);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("berth did not start:\n{}", log.lock().unwrap());
        };
        let addr = url.split_once("://").map_or(&*url, |(_, a)| a).to_owned();
        Berth {
            child,
            addr,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
            _dir: None,
        }
    }

    /// berth with one upstream, `docker.io` at `upstream_url`, as the
    /// default with `library/` for single-segment names, plus `extra` keys.
    pub fn hub(upstream_url: &str, extra: &str) -> Berth {
        Self::start(&upstream_toml(
            "docker.io",
            upstream_url,
            &format!("default = true\nauto_library = true\n{extra}"),
        ))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.url()))
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    /// `http://127.0.0.1:PORT` (`https://` when it serves HTTPS).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap()
    }

    /// `http://ADDR` of the listener logged as `what` (`admin listener`,
    /// `redirect listener`), once berth has logged it.
    pub async fn side_url(&self, what: &str) -> String {
        let marker = format!("{what} on http://");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.log().lines().find_map(|line| {
                let rest = line.split(&marker).nth(1)?;
                Some(rest.split_whitespace().next()?.to_owned())
            });
            if let Some(addr) = found {
                return format!("http://{addr}");
            }
            assert!(Instant::now() < deadline, "no {what}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://ADDR` of the admin listener, once berth has logged it.
    pub async fn admin_url(&self) -> String {
        self.side_url("admin listener").await
    }

    /// The config file the harness wrote for this instance.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.with_extension("toml")
    }

    /// The berth process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything berth logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether berth logs `text` within ten seconds: its log is written by
    /// a background thread, so a line can trail the answer it explains.
    pub fn logged(&self, text: &str) -> bool {
        crate::proc::wait_until(Duration::from_secs(10), || self.log().contains(text))
    }

    /// Send SIGHUP: reload the config file now.
    pub fn hangup(&self) {
        let hup = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
    }

    /// Change `from` to `to` in the config file (written whole, by a
    /// rename), send SIGHUP and wait until berth logs that it reloaded:
    /// how a test moves past a TTL without waiting for it
    /// (`tag_ttl = "1h"` to `"0s"`).
    pub fn reconfigure(&self, from: &str, to: &str) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(from),
            "{from:?} is not in the config:\n{text}"
        );
        let reloads = || self.log().matches("configuration reloaded").count();
        let before = reloads();
        let staged = path.with_extension("toml.new");
        std::fs::write(&staged, text.replace(from, to)).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        self.hangup();
        assert!(
            crate::proc::wait_until(Duration::from_secs(10), || reloads() > before),
            "berth did not reload its config:\n{}",
            self.log()
        );
    }

    /// Send SIGKILL and wait.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait up to `limit` for exit; returns the status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.send_terminate();
        self.wait_exit(limit)
    }

    /// Send SIGTERM (a graceful stop) and return at once.
    pub fn send_terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Wait up to `limit` for the process to exit; returns the status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Take the temp dir so the data outlives this process.
    pub fn keep_data(&mut self) -> Option<tempfile::TempDir> {
        self._dir.take()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream entry for the config: `name` pointing at `url`.
pub fn upstream_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[upstreams]]\nname = {name:?}\nurl = {url:?}\n{extra}\n")
}

/// `berth check-config --probe` on the config `text`, written to
/// `path`: its exit code and what it printed (stdout, then stderr).
pub fn check_config_probe(path: &Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(path, text).unwrap();
    let out = Command::new(crate::berth_binary())
        .args(["check-config", "--probe", "--config"])
        .arg(path)
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_CLUSTER_NODE_URL")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// Run `berth serve` with `body` (like [`Berth::start_with_data`]) on
/// `data_dir`, with a config file of its own, and wait up to `limit` for it
/// to exit: its status and stderr, or `None` (and it is killed) if it was
/// still running.
pub fn serve_until_exit(
    body: &str,
    data_dir: &Path,
    limit: Duration,
) -> Option<(std::process::ExitStatus, String)> {
    let mut child = spawn_serve(body, data_dir, "other.toml", &[]);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            use std::io::Read as _;
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            return Some((status, stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `berth serve` with `body` as its config (written beside `data_dir`
/// with the extension `ext`), listening on a free loopback port.
fn spawn_serve(
    body: &str,
    data_dir: &Path,
    ext: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let config_path = data_dir.with_extension(ext);
    // A body that names its own `listen` (at the top) keeps it.
    let listen = if body.starts_with("listen = ") {
        ""
    } else {
        "listen = \"127.0.0.1:0\"\n"
    };
    let config = format!(
        "{listen}data_dir = {:?}\nshutdown_grace = \"2s\"\nbuiltin_upstreams = false\n{body}",
        data_dir.display().to_string()
    );
    std::fs::write(&config_path, config).unwrap();
    Command::new(crate::berth_binary())
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
