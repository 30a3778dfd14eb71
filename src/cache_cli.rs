//! `berth cache ...`: commands on the data directory and the blobs, on
//! disk or in the bucket `[storage]` names, safe while berth serves them
//! (`purge` asks the serving berth to do it, through the control socket,
//! so its in-memory copies go too). Each refuses a directory that is not a berth store, and the
//! exit status says what happened:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | `verify` found corrupt blobs |
//! | 66 | the directory is not a berth store (EX_NOINPUT) |
//! | 74 | the store could not be read or changed (EX_IOERR) |
//! | 78 | the configuration is invalid (EX_CONFIG) |

use berth_cache::{
    Catalog, DiskShelf, Layout, ObjectShelf, PinPattern, Shelf, collect_garbage, store_pins,
    stored_pins, verify_store,
};
use berth_config::Config;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::SystemTime;

/// Exit status: `verify` found corrupt blobs.
const EXIT_CORRUPT: u8 = 1;
/// Exit status: not a berth store (EX_NOINPUT).
const EXIT_NOT_A_STORE: u8 = 66;
/// Exit status: the store could not be read or changed (EX_IOERR).
const EXIT_IO: u8 = 74;

/// The store of `config`: its data directory (the index, the pins) and
/// its blobs, on disk or in a bucket.
struct Store {
    layout: Layout,
    shelf: Box<dyn Shelf>,
    /// What a bucket's calls run on, for as long as the shelf is used.
    _runtime: Option<tokio::runtime::Runtime>,
}

/// The store of `config`, or the exit status for a directory that is not
/// one (or a bucket that cannot be reached).
fn store(config: &Config) -> Result<Store, ExitCode> {
    let layout = Layout::new(&config.data_dir);
    let not_a_store = |what: &str| {
        eprintln!(
            "berth: {} is not a berth store ({what}); check data_dir",
            config.data_dir.display()
        );
        ExitCode::from(EXIT_NOT_A_STORE)
    };
    match &config.storage {
        berth_config::StorageSettings::Fs => {
            if !layout.is_store() {
                return Err(not_a_store("no blobs/sha256 in it"));
            }
            let shelf = Box::new(DiskShelf::new(layout.clone()));
            Ok(Store {
                layout,
                shelf,
                _runtime: None,
            })
        }
        berth_config::StorageSettings::S3(s3) => {
            if !layout.tags().is_dir() {
                return Err(not_a_store("no index in it"));
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| io_failure(&e))?;
            let _entered = runtime.enter();
            let objects = crate::blob_store::connect(s3).map_err(|e| io_failure(&e))?;
            let shelf = ObjectShelf::new(objects, &s3.prefix, layout.last_uses())
                .map_err(|e| io_failure(&e))?;
            drop(_entered);
            Ok(Store {
                layout,
                shelf: Box::new(shelf),
                _runtime: Some(runtime),
            })
        }
    }
}

fn io_failure(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("berth: cannot read the store: {e}");
    ExitCode::from(EXIT_IO)
}

fn catalog(config: &Config) -> Result<Catalog, ExitCode> {
    let store = store(config)?;
    Catalog::read(&store.layout, store.shelf.as_ref()).map_err(|e| io_failure(&e))
}

/// `berth cache verify`.
pub(crate) fn verify(config: &Config, quarantine: bool) -> ExitCode {
    if let berth_config::StorageSettings::S3(s3) = &config.storage {
        eprintln!(
            "berth: verify reads blob files on local disk; the blobs are in bucket {:?}, each checked against its digest before it was stored",
            s3.bucket
        );
        return ExitCode::from(EXIT_NOT_A_STORE);
    }
    if let Err(code) = store(config) {
        return code;
    }
    match verify_store(&config.data_dir, quarantine) {
        Err(e) => io_failure(&e),
        Ok(report) => {
            for (path, problem) in &report.corrupt {
                outln!("corrupt: {}: {problem}", path.display());
            }
            outln!(
                "{} blobs verified, {} corrupt, {} quarantined",
                report.ok,
                report.corrupt.len(),
                report.quarantined
            );
            if report.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_CORRUPT)
            }
        }
    }
}

/// Bytes in a unit a person reads.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How long ago `at` was, in a unit a person reads.
fn ago(at: Option<SystemTime>) -> String {
    let Some(secs) = at.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()) else {
        return "-".to_owned();
    };
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3_600 => format!("{}m ago", secs / 60),
        3_600..86_400 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// A note after a listing line whose content the store holds none of
/// any more (evicted or purged): empty otherwise. Some missing is normal:
/// an index's platforms nobody pulled were never fetched.
fn evicted_note(catalog: &Catalog, blobs: &HashSet<berth_oci::Digest>) -> &'static str {
    if blobs.iter().any(|d| catalog.blobs.contains_key(d)) {
        ""
    } else {
        "  (content evicted; pulled again on use)"
    }
}

/// `berth cache du`: bytes on disk by upstream and repository. A blob
/// shared by several repositories counts in each; the total counts it
/// once.
pub(crate) fn du(config: &Config) -> ExitCode {
    let catalog = match catalog(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut repos: BTreeMap<(String, String), HashSet<berth_oci::Digest>> = BTreeMap::new();
    for tag in &catalog.tags {
        repos
            .entry((tag.key.upstream.clone(), tag.key.repo.clone()))
            .or_default()
            .extend(tag.blobs.iter().copied());
    }
    let mut attributed: HashSet<&berth_oci::Digest> = HashSet::new();
    outln!("{:>10}  {:>6}  repository", "size", "blobs");
    for ((upstream, repo), blobs) in &repos {
        let present: Vec<_> = blobs
            .iter()
            .filter(|d| catalog.blobs.contains_key(d))
            .collect();
        attributed.extend(present.iter().copied());
        outln!(
            "{:>10}  {:>6}  {upstream}/{repo}{}",
            human(catalog.bytes_of(present.iter().copied())),
            present.len(),
            evicted_note(&catalog, blobs)
        );
    }
    let total = catalog.bytes_of(catalog.blobs.keys());
    let other = catalog.bytes_of(catalog.blobs.keys().filter(|d| !attributed.contains(d)));
    outln!(
        "{:>10}  {:>6}  (no cached tag names them)",
        human(other),
        catalog.blobs.len() - attributed.len()
    );
    outln!("{:>10}  {:>6}  total", human(total), catalog.blobs.len());
    ExitCode::SUCCESS
}

/// `berth cache ls [PATTERN]`: cached tags (of repositories matching
/// `PATTERN`, `upstream/repository` with `*` and `**`), with the bytes of
/// what they need and their last use.
pub(crate) fn ls(config: &Config, text: Option<&str>) -> ExitCode {
    let pattern = match text.map(|t| pattern(config, t)).transpose() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let catalog = match catalog(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    outln!("{:>10}  {:>10}  tag", "size", "last use");
    let mut listed = 0;
    for tag in &catalog.tags {
        let name = format!("{}/{}", tag.key.upstream, tag.key.repo);
        if pattern.as_ref().is_some_and(|p| !p.matches(&name)) {
            continue;
        }
        listed += 1;
        outln!(
            "{:>10}  {:>10}  {name}:{}{}",
            human(catalog.bytes_of(&tag.blobs)),
            ago(catalog.last_use(&tag.blobs)),
            tag.key.tag,
            evicted_note(&catalog, &tag.blobs)
        );
    }
    if let (0, Some(p)) = (listed, &pattern) {
        eprintln!("berth: no cached tag matches {p}");
    }
    ExitCode::SUCCESS
}

/// `berth cache gc`.
pub(crate) fn gc(config: &Config) -> ExitCode {
    let store = match store(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match collect_garbage(&store.layout, store.shelf.as_ref()) {
        Ok(report) => {
            outln!(
                "removed {} tag records and {} media-type records whose manifests are gone",
                report.tags,
                report.manifest_types
            );
            ExitCode::SUCCESS
        }
        Err(e) => io_failure(&e),
    }
}

/// A pattern from the command line, or exit status 2. Short names mean
/// what they mean in a pull (`nginx`, `team/app`: Docker Hub's).
fn pattern(config: &Config, text: &str) -> Result<PinPattern, ExitCode> {
    let qualified = config.qualify_repository(text);
    if qualified != text {
        eprintln!("berth: {text} is {qualified}, as a pull would route it");
    }
    PinPattern::parse(&qualified).ok_or_else(|| {
        eprintln!(
            "berth: {text:?} is not a pattern like \"docker.io/library/*\" or \"ghcr.io/myorg/**\""
        );
        ExitCode::from(2)
    })
}

/// The store of `config` and the pattern `text`, or the exit status for
/// whichever is wrong.
fn store_and_pattern(config: &Config, text: &str) -> Result<(Store, PinPattern), ExitCode> {
    Ok((store(config)?, pattern(config, text)?))
}

/// `berth cache pin PATTERN` (`add`) and `unpin PATTERN`: change the pins
/// kept in the data directory, and print them with the configured ones.
/// The next eviction pass of a running berth reads them.
pub(crate) fn pin(config: &Config, text: &str, add: bool) -> ExitCode {
    let (store, wanted) = match store_and_pattern(config, text) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let layout = &store.layout;
    let mut pins = match stored_pins(layout) {
        Ok(p) => p,
        Err(e) => return io_failure(&e),
    };
    let had = pins.contains(&wanted);
    pins.retain(|p| *p != wanted);
    if add {
        pins.push(wanted.clone());
    } else if !had {
        eprintln!("berth: {wanted} was not pinned with `berth cache pin`");
    }
    if let Err(e) = store_pins(layout, &pins) {
        return io_failure(&e);
    }
    for p in &pins {
        outln!("pinned  {p}");
    }
    for p in &config.cache.pin {
        outln!("pinned  {p}  (configuration)");
    }
    ExitCode::SUCCESS
}

/// `berth cache purge PATTERN`: remove the cached tags of the matching
/// repositories and the blobs only they need. A berth serving the
/// directory does it itself (its in-memory copies go too); without one,
/// it is done here.
pub(crate) fn purge(config: &Config, text: &str) -> ExitCode {
    let (store, wanted) = match store_and_pattern(config, text) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let layout = &store.layout;
    let done = match crate::control::ask(layout, &format!("purge {wanted}")) {
        Some(answer) => answer.map(|summary| format!("{summary} (by the serving berth)")),
        // No berth answers. Holding the directory's lock proves none
        // serves it (and keeps one from starting meanwhile).
        None => match berth_cache::DataDirLock::acquire(layout) {
            Ok(_lock) => berth_cache::purge_store(layout, store.shelf.as_ref(), &wanted)
                .map(|report| report.to_string())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!(
                "{e}; its control socket {} did not answer, so it cannot purge its memory: \
                 try again, or stop it first",
                layout.control_socket().display()
            )),
        },
    };
    match done {
        Ok(summary) => {
            outln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => io_failure(&e),
    }
}
