//! One eviction pass over a store's [`Shelf`]: write the noted
//! accesses, scan every blob's size and last use, remove what is
//! older than `max_age`, then, above `max_size`, the least recently used
//! until the store is under the low watermark. Pinned blobs and blobs
//! used since the last flush stay. Blocking; runs on a thread of its own.

use super::{Keeper, Lifecycle, pins};
use crate::{CacheError, Layout, Shelf};
use std::time::{Duration, SystemTime};

/// What a pass did.
#[derive(Debug, Default)]
pub(super) struct Report {
    scanned: u64,
    before: u64,
    removed: u64,
    freed: u64,
    after: u64,
    kept_pinned: u64,
    took: Duration,
}

impl Report {
    /// Log what the pass did; the `first` one also says that the store
    /// is accounted (eviction could not start before).
    pub(super) fn log(&self, first: bool) {
        if first {
            tracing::info!(
                blobs = self.scanned,
                bytes = self.before,
                took_ms = self.took.as_millis() as u64,
                "cache store accounted"
            );
        }
        if self.removed > 0 {
            tracing::info!(
                blobs = self.scanned,
                bytes_before = self.before,
                evicted = self.removed,
                freed = self.freed,
                bytes_after = self.after,
                pinned = self.kept_pinned,
                took_ms = self.took.as_millis() as u64,
                "evicted least recently used blobs"
            );
        } else {
            tracing::debug!(
                blobs = self.scanned,
                bytes = self.after,
                "eviction pass: nothing to evict"
            );
        }
    }
}

/// A pass over the blobs on `shelf`; `layout` is the data directory whose
/// index names the pinned tags.
pub(super) fn pass(
    keeper: &Keeper,
    layout: &Layout,
    shelf: &dyn Shelf,
    lifecycle: &Lifecycle,
) -> Result<Report, CacheError> {
    let started = std::time::Instant::now();
    keeper.last_use.flush(shelf);
    let pinned = pins::pinned_blobs(layout, shelf, &lifecycle.pins);
    let mut entries = shelf.scan()?;
    let mut report = Report {
        scanned: entries.len() as u64,
        before: entries.iter().map(|e| e.bytes).sum(),
        ..Report::default()
    };
    let mut total = report.before;
    entries.sort_by_key(|e| e.used);
    let too_old = lifecycle
        .max_age
        .and_then(|age| SystemTime::now().checked_sub(age));
    let over = |total: u64| lifecycle.max_size.is_some_and(|max| total > max);
    let mut evicting = over(total);
    let low = lifecycle.low_watermark().unwrap_or(0);
    for entry in &entries {
        let old = too_old.is_some_and(|limit| entry.used < limit);
        // Oldest first: once one is neither too old nor needed to get
        // under the watermark, neither is any after it.
        let needed = evicting && total > low;
        if !(old || needed) {
            break;
        }
        if pinned.contains(&entry.digest) {
            report.kept_pinned += 1;
            continue;
        }
        if keeper.last_use.was_used(&entry.digest) {
            continue;
        }
        if !shelf.remove(&entry.digest)? {
            continue;
        }
        let _ = std::fs::remove_file(layout.manifest_type(&entry.digest));
        keeper.removed(&entry.digest);
        total = total.saturating_sub(entry.bytes);
        report.removed += 1;
        report.freed += entry.bytes;
        evicting = evicting && total > low;
    }
    keeper.usage.set(total);
    report.after = total;
    report.took = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::PinPattern;
    use berth_oci::Digest;
    use std::os::unix::fs::MetadataExt as _;

    fn blob(layout: &Layout, data: &[u8], age_secs: u64) -> Digest {
        let digest = Digest::of(data);
        let path = layout.blob(&digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        let used = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(used)
            .unwrap();
        digest
    }

    #[test]
    fn the_least_recently_used_go_first_down_to_the_low_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        // Four blobs of one 4 KiB block each on disk, oldest first.
        let digests: Vec<Digest> = (0..4u8)
            .map(|i| blob(&layout, &[i; 100], 400 - u64::from(i) * 100))
            .collect();
        let keeper = Keeper::default();
        keeper.last_use.note(&digests[0]);
        let block = std::fs::metadata(layout.blob(&digests[0]))
            .unwrap()
            .blocks()
            * 512;
        let lifecycle = Lifecycle {
            max_size: Some(3 * block),
            ..Lifecycle::default()
        };
        let shelf = crate::DiskShelf::new(layout.clone());
        let report = pass(&keeper, &layout, &shelf, &lifecycle).unwrap();
        // The oldest was just used (and is now the newest); the next
        // oldest goes, which leaves three blocks: above 90 % of the cap, so
        // one more goes.
        assert_eq!(report.removed, 2);
        let left: Vec<bool> = digests.iter().map(|d| layout.blob(d).exists()).collect();
        assert_eq!(left, [true, false, false, true]);
        assert_eq!(keeper.usage.get(), 2 * block);
    }

    #[test]
    fn max_age_removes_what_nobody_used_for_that_long_but_pins() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let old = blob(&layout, b"old", 3_600);
        let pinned = blob(&layout, b"pinned", 3_600);
        let fresh = blob(&layout, b"fresh", 10);
        // A pinned tag answers with the manifest `pinned`.
        let key = crate::TagKey {
            upstream: "docker.io".into(),
            repo: "library/kept".into(),
            tag: "latest".into(),
        };
        let record = crate::TagRecord {
            answers: vec![crate::TagAnswer {
                accept: String::new(),
                digest: pinned.to_string(),
                media_type: String::new(),
                size: 6,
                checked_at_ms: 0,
            }],
        };
        std::fs::create_dir_all(layout.tags()).unwrap();
        let stored = crate::index::Stored {
            key: &key,
            record: &record,
        };
        std::fs::write(layout.tag(&key), serde_json::to_vec(&stored).unwrap()).unwrap();
        let lifecycle = Lifecycle {
            max_age: Some(Duration::from_secs(600)),
            pins: vec![PinPattern::parse("docker.io/library/*").unwrap()],
            ..Lifecycle::default()
        };
        let shelf = crate::DiskShelf::new(layout.clone());
        let report = pass(&Keeper::default(), &layout, &shelf, &lifecycle).unwrap();
        assert_eq!((report.removed, report.kept_pinned), (1, 1));
        assert!(!layout.blob(&old).exists());
        assert!(layout.blob(&pinned).exists());
        assert!(layout.blob(&fresh).exists());
    }
}
