//! The control socket, `<data_dir>/control.sock`: a Unix socket only the
//! data directory's owner can reach (mode 0600), on which `berth cache
//! purge` asks the berth serving that directory to purge. The server does
//! it itself, so its in-memory copies (hot manifests and small blobs, tag
//! answers) go with the files. One command per connection, one line each
//! way: `purge PATTERN` → `ok SUMMARY` or `error REASON`.

use anyhow::Context as _;
use berth_cache::{Layout, Maintenance, PinPattern};
use std::os::unix::fs::PermissionsExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// Longest command line accepted.
const MAX_LINE: u64 = 4096;

/// Listen on the control socket of `layout` for as long as the process
/// runs.
pub(crate) fn serve(layout: &Layout, maintenance: Maintenance) -> anyhow::Result<()> {
    let path = layout.control_socket();
    // A socket left by a run that ended: this process holds the data
    // directory's lock, so nobody else listens on it.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let maintenance = maintenance.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read.take(MAX_LINE));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = command(line.trim(), &maintenance).await;
                let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            });
        }
    });
    Ok(())
}

async fn command(line: &str, maintenance: &Maintenance) -> String {
    let Some(text) = line.strip_prefix("purge ") else {
        return format!("error unknown command {line:?}");
    };
    let Some(pattern) = PinPattern::parse(text) else {
        return format!("error {text:?} is not a pattern");
    };
    match maintenance.purge(pattern).await {
        Ok(report) => format!("ok {report}"),
        Err(e) => format!("error {e}"),
    }
}

/// Send `command` to the berth serving `layout`: its answer, or `None`
/// when no berth serves it (no socket, or nobody listening).
pub(crate) fn ask(layout: &Layout, command: &str) -> Option<Result<String, String>> {
    use std::io::{BufRead as _, Write as _};
    let mut conn = std::os::unix::net::UnixStream::connect(layout.control_socket()).ok()?;
    let mut exchange = || -> std::io::Result<String> {
        conn.write_all(format!("{command}\n").as_bytes())?;
        let mut line = String::new();
        std::io::BufReader::new(&conn).read_line(&mut line)?;
        Ok(line.trim().to_owned())
    };
    Some(match exchange() {
        Ok(line) => match line.strip_prefix("ok ") {
            Some(summary) => Ok(summary.to_owned()),
            None => Err(line.strip_prefix("error ").unwrap_or(&line).to_owned()),
        },
        Err(e) => Err(format!("the serving berth did not answer: {e}")),
    })
}
