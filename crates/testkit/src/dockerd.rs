//! A throw-away docker daemon (Debian's `docker.io`, dockerd 20.10): its
//! own data root, exec root, pid file and unix socket in a temp dir, in the
//! host network namespace with no bridge, no iptables and the `vfs`
//! storage driver, so it needs nothing of the machine's. The mirror comes
//! from `--registry-mirror` or from a daemon.json, as users set it. The
//! CLI is `/usr/bin/docker` of the same package. Dropping it stops the
//! daemon by its pid (SIGTERM, which also stops the containerd it runs)
//! and unmounts what a daemon that did not exit cleanly left mounted in
//! its directory, so that the directory is removed.

use super::proc::ChildGuard;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DOCKERD: &str = "/usr/sbin/dockerd";
const DOCKER: &str = "/usr/bin/docker";

/// How the daemon learns its mirror.
#[derive(Debug, Clone, Copy)]
pub enum MirrorFrom<'a> {
    /// `--registry-mirror URL`.
    Flag(&'a str),
    /// `"registry-mirrors": [URL]` in a daemon.json (`--config-file`).
    DaemonJson(&'a str),
}

/// A running dockerd.
#[derive(Debug)]
pub struct DockerDaemon {
    child: ChildGuard,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl DockerDaemon {
    /// Start a daemon whose Docker Hub mirror is `mirror`, and wait until
    /// it answers.
    pub fn start(mirror: MirrorFrom<'_>) -> DockerDaemon {
        let dir = tempfile::Builder::new()
            .prefix("dockerd")
            .tempdir_in("/tmp") // unix socket paths must stay short
            .expect("temp dir");
        let d = dir.path();
        let socket = d.join("docker.sock");
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ]);
        match mirror {
            MirrorFrom::Flag(url) => {
                cmd.arg("--registry-mirror").arg(url);
                // No daemon.json of the machine's.
                let empty = d.join("daemon.json");
                std::fs::write(&empty, "{}").expect("write daemon.json");
                cmd.arg("--config-file").arg(empty);
            }
            MirrorFrom::DaemonJson(url) => {
                let json = d.join("daemon.json");
                let body = serde_json::json!({ "registry-mirrors": [url] });
                std::fs::write(&json, body.to_string()).expect("write daemon.json");
                cmd.arg("--config-file").arg(json);
            }
        }
        let child = ChildGuard::spawn("dockerd", &mut cmd, &d.join("dockerd.log"), None);
        let mut me = DockerDaemon { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !me.docker(&["version"]).status.success() {
            if let Some(status) = me.child.exited() {
                panic!("dockerd exited with {status}:\n{}", me.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    /// `docker -H unix://SOCKET ARGS`, run to the end.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_input(args, None)
    }

    /// [`DockerDaemon::docker`] with `input` on stdin.
    pub fn docker_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(DOCKER)
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run docker");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.unwrap_or("").as_bytes());
        }
        child.wait_with_output().expect("docker output")
    }

    /// `unix://SOCKET`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Its directory (for build contexts and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        if let Some(pid) = self.child.pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.child.stop();
        // The containerd dockerd started, should it outlive it.
        let pidfile = self.dir.path().join("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(pidfile)
            && let Ok(pid) = pid.trim().parse::<u32>()
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "containerd")
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        unmount_under(self.dir.path());
    }
}

/// Unmounts every mount point below `dir` (deepest first): a daemon killed
/// before its own cleanup leaves its network namespace mounted there, and
/// the directory could not be removed.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").arg("--lazy").arg(point).status();
    }
}
