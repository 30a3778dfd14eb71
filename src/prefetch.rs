//! `berth prefetch`: warm a running berth the way a client would. Each
//! image's manifest is fetched through berth (for an index, the manifests
//! of the platforms asked for), then its config and layers, three at a
//! time, so the same single flight and verification apply as for any pull.
//!
//! On a terminal it draws a bar per image and per layer (bytes, rate, time
//! left); otherwise it prints one line per layer. It ends with a summary,
//! and exits non-zero when any image failed. Inside the server,
//! `[cache] prefetch_file` runs the same warming on a schedule and logs.

use berth_oci::{MANIFEST_MEDIA_TYPES, Reference, RepoName, references};
use futures_util::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Blobs downloaded at once per image.
const DOWNLOADS: usize = 3;

/// An image to warm, as berth routes it.
#[derive(Debug, Clone)]
struct Target {
    /// As the user wrote it.
    shown: String,
    registry: String,
    repo: RepoName,
    reference: Reference,
}

/// `[registry/]repository[:tag|@digest]`, Docker Hub by default (with
/// `library/` for single names).
fn parse_target(text: &str) -> Result<Target, String> {
    let (rest, reference) = match text.split_once('@') {
        Some((rest, digest)) => (rest, digest.to_owned()),
        None => match text.rsplit_once(':') {
            Some((rest, tag)) if !tag.contains('/') => (rest, tag.to_owned()),
            _ => (text, "latest".to_owned()),
        },
    };
    let (registry, repo) = match rest.split_once('/') {
        Some((first, repo))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), repo.to_owned())
        }
        _ => ("docker.io".to_owned(), rest.to_owned()),
    };
    let repo = if registry == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    Ok(Target {
        shown: text.to_owned(),
        registry,
        repo: repo
            .parse()
            .map_err(|e| format!("{text:?}: not a repository name: {e}"))?,
        reference: reference
            .parse()
            .map_err(|e| format!("{text:?}: not a tag or digest: {e}"))?,
    })
}

/// What warming took, over every image.
#[derive(Debug, Default)]
struct Totals {
    fetched: AtomicU64,
    cached: AtomicU64,
}

/// How a run reports each layer: bars on a terminal, lines on standard
/// output elsewhere, log lines inside the server.
pub(crate) enum Report {
    /// indicatif bars on standard error.
    Bars(MultiProgress),
    /// A line per layer on standard output.
    Lines,
    /// A log line per layer.
    Log,
}

impl Report {
    fn bars(&self) -> Option<&MultiProgress> {
        match self {
            Self::Bars(bars) => Some(bars),
            Self::Lines | Self::Log => None,
        }
    }

    fn image_bar(&self, target: &Target, blobs: usize) -> Option<ProgressBar> {
        let bars = self.bars()?;
        let bar = bars.add(ProgressBar::new(blobs as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} blobs {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(target.shown.clone());
        Some(bar)
    }

    fn blob_bar(&self, digest: &str, size: u64) -> Option<ProgressBar> {
        let bars = self.bars()?;
        let bar = bars.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(short(digest));
        Some(bar)
    }

    fn line(&self, text: String) {
        match self {
            Self::Bars(bars) => {
                let _ = bars.println(text);
            }
            Self::Lines => outln!("{text}"),
            Self::Log => tracing::info!("prefetch: {text}"),
        }
    }
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// The image references listed in `path`, one per line; blank lines and
/// `#` comments are skipped.
pub(crate) fn read_list(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// What a run did.
#[derive(Debug)]
pub(crate) struct Summary {
    images: usize,
    failed: Vec<String>,
    fetched: u64,
    cached: u64,
    took: std::time::Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prefetched {} of {} images in {:.1} s: {} fetched from upstream, {} already cached, {} failed",
            self.images - self.failed.len(),
            self.images,
            self.took.as_secs_f64(),
            human(self.fetched),
            human(self.cached),
            self.failed.len(),
        )?;
        if !self.failed.is_empty() {
            write!(f, " ({})", self.failed.join(", "))?;
        }
        Ok(())
    }
}

/// Warm `images` (references; a malformed one counts as failed) through
/// the berth at `server`, for `platforms` of an index (none:
/// linux/amd64).
pub(crate) async fn warm_all(
    server: &str,
    images: &[String],
    platforms: &[String],
    report: &Report,
) -> Summary {
    let platforms: Vec<String> = if platforms.is_empty() {
        vec!["linux/amd64".to_owned()]
    } else {
        platforms.to_vec()
    };
    let totals = Totals::default();
    let started = Instant::now();
    let client = client_for(server);
    let server = server.trim_end_matches('/');
    let mut failed = Vec::new();
    for text in images {
        let warmed = match parse_target(text) {
            Ok(target) => warm(&client, server, &target, &platforms, report, &totals).await,
            Err(e) => Err(e),
        };
        if let Err(e) = warmed {
            report.line(format!("{text}: failed: {e}"));
            failed.push(text.clone());
        }
    }
    Summary {
        images: images.len(),
        failed,
        fetched: totals.fetched.load(Ordering::Relaxed),
        cached: totals.cached.load(Ordering::Relaxed),
        took: started.elapsed(),
    }
}

/// `berth prefetch`: warm `images` and those listed in `file` through the
/// berth at `server`, for `platforms` of an index.
pub(crate) fn run(
    server: &str,
    images: &[String],
    file: Option<&std::path::Path>,
    platforms: &[String],
) -> ExitCode {
    let mut texts: Vec<String> = images.to_vec();
    if let Some(path) = file {
        match read_list(path) {
            Ok(listed) => texts.extend(listed),
            Err(e) => {
                eprintln!("berth: {e}");
                return ExitCode::from(66);
            }
        }
    }
    if texts.is_empty() {
        eprintln!("berth: no image to prefetch; name some, or a --file");
        return ExitCode::from(2);
    }
    for text in &texts {
        if let Err(e) = parse_target(text) {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = if std::io::stderr().is_terminal() {
        Report::Bars(MultiProgress::new())
    } else {
        Report::Lines
    };
    let summary = runtime.block_on(warm_all(server, &texts, platforms, &report));
    outln!("{summary}");
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// GET a manifest through berth: its bytes.
async fn manifest(
    client: &reqwest::Client,
    server: &str,
    target: &Target,
    reference: &str,
) -> Result<Vec<u8>, String> {
    let url = format!(
        "{server}/v2/{}/manifests/{reference}?ns={}",
        target.repo, target.registry
    );
    let mut request = client.get(&url);
    for t in MANIFEST_MEDIA_TYPES {
        request = request.header(http::header::ACCEPT, t);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!("manifest {reference}: {status}: {}", text.trim()));
    }
    Ok(body.to_vec())
}

/// Warm one image: its manifest(s), then its blobs.
async fn warm(
    client: &reqwest::Client,
    server: &str,
    target: &Target,
    platforms: &[String],
    report: &Report,
    totals: &Totals,
) -> Result<(), String> {
    let top = manifest(client, server, target, &target.reference.to_string()).await?;
    let named = references(&top);
    let mut blobs = named.blobs;
    for child in named.manifests {
        if platforms.contains(&child.platform) {
            let bytes = manifest(client, server, target, &child.digest.to_string()).await?;
            blobs.extend(references(&bytes).blobs);
        }
    }
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.digest));
    let image_bar = report.image_bar(target, blobs.len());
    let results: Vec<Result<(), String>> = futures_util::stream::iter(blobs)
        .map(|blob| {
            let digest = blob.digest.to_string();
            let url = format!(
                "{server}/v2/{}/blobs/{digest}?ns={}",
                target.repo, target.registry
            );
            let bar = report.blob_bar(&digest, blob.size);
            let image_bar = image_bar.clone();
            async move {
                let started = Instant::now();
                let response = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{digest}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{digest}: {}", response.status()));
                }
                let hit = response
                    .headers()
                    .get("x-cache")
                    .is_some_and(|v| v.as_bytes() == b"HIT");
                let mut body = response.bytes_stream();
                let mut received = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| format!("{digest}: {e}"))?;
                    received += chunk.len() as u64;
                    if let Some(bar) = &bar {
                        bar.set_position(received);
                    }
                }
                if received != blob.size {
                    return Err(format!("{digest}: {received} of {} bytes", blob.size));
                }
                let counter = if hit { &totals.cached } else { &totals.fetched };
                counter.fetch_add(received, Ordering::Relaxed);
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                if let Some(bar) = &image_bar {
                    bar.inc(1);
                }
                report.line(format!(
                    "{}: {} {} {} in {:.1} s",
                    target.shown,
                    short(&digest),
                    human(received),
                    if hit { "already cached" } else { "fetched" },
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
        })
        .buffer_unordered(DOWNLOADS)
        .collect()
        .await;
    if let Some(bar) = image_bar {
        bar.finish_with_message("done");
    }
    results.into_iter().collect()
}

/// The HTTP client for `server`. Over HTTPS to a loopback address (this
/// machine's own berth, whose certificate names its public name, not the
/// loopback address) the certificate is not checked: nothing leaves the
/// machine.
fn client_for(server: &str) -> reqwest::Client {
    let loopback = reqwest::Url::parse(server).is_ok_and(|url| {
        url.scheme() == "https"
            && url.host_str().is_some_and(|host| {
                host == "localhost"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    });
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(loopback)
        .build()
        .unwrap_or_default()
}

/// The URL of the berth listening on `listen`, as this machine reaches it.
pub(crate) fn local_url(listen: std::net::SocketAddr, tls: bool) -> String {
    let host = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    let scheme = if tls { "https" } else { "http" };
    format!(
        "{scheme}://{}",
        std::net::SocketAddr::new(host, listen.port())
    )
}

/// `[cache] prefetch_file` inside the server: warm the images it lists
/// through `server` (berth itself) now and every `every`, reading the
/// file again each time, and log what each run did.
pub(crate) async fn schedule(server: String, file: std::path::PathBuf, every: std::time::Duration) {
    loop {
        match read_list(&file) {
            Ok(images) => {
                let summary = warm_all(&server, &images, &[], &Report::Log).await;
                tracing::info!(file = %file.display(), "{summary}");
            }
            Err(e) => {
                tracing::warn!(error = %e, "prefetch_file not read; trying again at the next interval")
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_route_as_docker_does() {
        let t = parse_target("nginx").unwrap();
        assert_eq!(
            (
                t.registry.as_str(),
                t.repo.to_string(),
                t.reference.to_string()
            ),
            ("docker.io", "library/nginx".to_owned(), "latest".to_owned())
        );
        let t = parse_target("ghcr.io/org/img:v1").unwrap();
        assert_eq!(
            (
                t.registry.as_str(),
                t.repo.to_string(),
                t.reference.to_string()
            ),
            ("ghcr.io", "org/img".to_owned(), "v1".to_owned())
        );
        let t = parse_target("localhost:5000/x/y").unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repo.to_string()),
            ("localhost:5000", "x/y".to_owned())
        );
        let digest = berth_oci::Digest::of(b"m");
        let t = parse_target(&format!("quay.io/a/b@{digest}")).unwrap();
        assert_eq!(t.reference.to_string(), digest.to_string());
        assert!(parse_target("UPPER/case").is_err());
        assert!(parse_target("x:bad tag").is_err());
    }
}
