//! The physical reference: nginx with `sendfile on` serving blob files
//! statically on a loopback port, with its config, pid file, logs and
//! document root in a temp dir. Stopped by SIGTERM to its master's PID (so
//! the workers exit too), then SIGKILL if it lingers.

use berth_testkit::proc::{free_port, http_status, wait_port_free, wait_until};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running nginx. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves each `(url_path, file)`: the file is hard-linked (or copied)
    /// into the document root at `url_path`.
    pub(crate) fn start(files: &[(String, &Path)]) -> Nginx {
        Self::start_with(files, None)
    }

    /// [`Nginx::start`] over HTTPS with this certificate and key (TLS 1.3,
    /// session cache and tickets on), for `https://localhost:PORT`.
    pub(crate) fn start_tls(files: &[(String, &Path)], cert: &Path, key: &Path) -> Nginx {
        Self::start_with(files, Some((cert, key)))
    }

    fn start_with(files: &[(String, &Path)], tls: Option<(&Path, &Path)>) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        for (url_path, src) in files {
            let dest = root.join(url_path.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            if std::fs::hard_link(src, &dest).is_err() {
                std::fs::copy(src, &dest).expect("copy blob for nginx");
            }
        }
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let d = dir.path().display();
        let listen = match tls {
            None => addr.to_string(),
            Some((cert, key)) => format!(
                "{addr} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
                 ssl_protocols TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n    \
                 ssl_session_tickets on",
                cert.display(),
                key.display()
            ),
        };
        let conf = format!(
            "user root;\ndaemon off;\nworker_processes auto;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log {d}/access.log;\n  sendfile on;\n  tcp_nopush on;\n\
             \x20 keepalive_requests 1000000;\n  default_type application/octet-stream;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen {listen};\n    root {};\n  }}\n}}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nginx: {e} (apt-get install nginx)"));
        let mut nginx = Nginx { child, addr, dir };
        let probe = files.first().map_or("/", |(p, _)| p.as_str()).to_owned();
        let up = wait_until(Duration::from_secs(10), || match tls {
            None => http_status(addr, &probe) == Some(200),
            Some(_) => std::net::TcpStream::connect(addr).is_ok(),
        });
        if !up {
            let log = std::fs::read_to_string(nginx.dir.path().join("error.log"));
            nginx.stop();
            panic!("nginx did not start: {log:?}");
        }
        nginx
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT` (when started with TLS).
    pub(crate) fn tls_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The master's PID (its workers are its children).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let exited = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !wait_port_free(self.addr.port(), Duration::from_secs(10)) {
            eprintln!(
                "warning: nginx port {} still busy after stop",
                self.addr.port()
            );
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
